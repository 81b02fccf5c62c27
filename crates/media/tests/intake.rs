//! Intake against images made here with `image`'s encoders: formats, orientation, truncation,
//! header bombs, limits, and random or mutated bytes.

use clipfleet_media::{
    FitMode, ImageFormat, Limits, MediaErrorKind, RgbImage, decode, decode_within, fit, probe,
    sniff,
};
use clipfleet_testkit::{png_claiming, with_exif_orientation};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder};
use proptest::prelude::*;

/// Left half red, right half blue, with a little texture so JPEG has real scan data.
fn halves(width: u32, height: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let texture = ((x * 7 + y * 13) % 16) as u8;
            if x < width / 2 {
                data.extend_from_slice(&[240 + texture / 2, texture, texture]);
            } else {
                data.extend_from_slice(&[texture, texture, 240 + texture / 2]);
            }
        }
    }
    data
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(
            &halves(width, height),
            width,
            height,
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn png(width: u32, height: u32, pixels: &[u8], colour: ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(pixels, width, height, colour)
        .unwrap();
    out
}

fn webp(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .write_image(
            &halves(width, height),
            width,
            height,
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn is_red(px: [u8; 3]) -> bool {
    px[0] > 180 && px[1] < 70 && px[2] < 70
}

fn is_blue(px: [u8; 3]) -> bool {
    px[2] > 180 && px[0] < 70 && px[1] < 70
}

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn jpeg_png_and_webp_decode_to_rgb() {
    let rgb = ExtendedColorType::Rgb8;
    for (bytes, format) in [
        (jpeg(64, 32), ImageFormat::Jpeg),
        (png(64, 32, &halves(64, 32), rgb), ImageFormat::Png),
        (webp(64, 32), ImageFormat::WebP),
    ] {
        assert_eq!(sniff(&bytes), Some(format));
        let info = probe(&bytes, &limits()).unwrap();
        assert_eq!((info.format, info.width, info.height), (format, 64, 32));
        let image = decode(&bytes, &limits()).unwrap();
        assert_eq!((image.width, image.height), (64, 32), "{format:?}");
        assert_eq!(image.data.len(), 64 * 32 * 3);
        assert!(is_red(image.pixel(8, 16).unwrap()), "{format:?}");
        assert!(is_blue(image.pixel(56, 16).unwrap()), "{format:?}");
    }
}

#[test]
fn grey_16_bit_and_alpha_pngs_become_rgb8() {
    // 16-bit grey: big-endian samples, 0xFFFF is white.
    let grey16: Vec<u8> = [0xFF, 0xFF, 0x00, 0x00].repeat(8);
    let image = decode(&png(4, 4, &grey16, ExtendedColorType::L16), &limits()).unwrap();
    assert_eq!(image.pixel(0, 0), Some([255, 255, 255]));
    assert_eq!(image.pixel(1, 0), Some([0, 0, 0]));
    // Fully transparent black over white is white; opaque red stays red.
    let rgba: Vec<u8> = [[0, 0, 0, 0], [255, 0, 0, 255]].concat().repeat(8);
    let image = decode(&png(4, 4, &rgba, ExtendedColorType::Rgba8), &limits()).unwrap();
    assert_eq!(image.pixel(0, 0), Some([255, 255, 255]));
    assert_eq!(image.pixel(1, 0), Some([255, 0, 0]));
}

#[test]
fn exif_orientation_6_rotates_a_jpeg_clockwise() {
    let stored = jpeg(40, 20);
    let rotated = with_exif_orientation(&stored, 6);
    // The header reports the stored size; the pixels come out upright.
    let info = probe(&rotated, &limits()).unwrap();
    assert_eq!((info.width, info.height), (40, 20));
    let image = decode(&rotated, &limits()).unwrap();
    assert_eq!((image.width, image.height), (20, 40));
    // Rotating 90° clockwise puts the stored left (red) half on top.
    assert!(is_red(image.pixel(10, 5).unwrap()));
    assert!(is_blue(image.pixel(10, 35).unwrap()));
    // Orientation 1 leaves it as stored.
    let upright = decode(&with_exif_orientation(&stored, 1), &limits()).unwrap();
    assert_eq!((upright.width, upright.height), (40, 20));
}

#[test]
fn exif_orientation_8_rotates_a_jpeg_counter_clockwise() {
    let image = decode(&with_exif_orientation(&jpeg(40, 20), 8), &limits()).unwrap();
    assert_eq!((image.width, image.height), (20, 40));
    assert!(is_blue(image.pixel(10, 5).unwrap()));
    assert!(is_red(image.pixel(10, 35).unwrap()));
}

#[test]
fn a_jpeg_cut_in_its_scan_data_is_a_bad_image() {
    let whole = jpeg(256, 256);
    decode(&whole, &limits()).unwrap();
    let sos = whole
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a baseline jpeg has a scan");
    for cut in [
        sos + 200,
        (sos + whole.len()) / 2,
        whole.len() - 10,
        whole.len() - 2,
    ] {
        let err = decode(&whole[..cut], &limits()).unwrap_err();
        assert_eq!(err.kind, MediaErrorKind::BadImage, "cut at {cut}: {err}");
    }
}

#[test]
fn decode_within_decodes_only_photos_up_to_its_pixel_count() {
    let rgb = ExtendedColorType::Rgb8;
    for bytes in [
        jpeg(64, 32),
        png(64, 32, &halves(64, 32), rgb),
        webp(64, 32),
    ] {
        let whole = decode(&bytes, &limits()).unwrap();
        let within = decode_within(&bytes, &limits(), 64 * 32).unwrap();
        assert_eq!(within.map(|image| image.data), Some(whole.data));
        assert!(
            decode_within(&bytes, &limits(), 64 * 32 - 1)
                .unwrap()
                .is_none()
        );
    }
    // A bad photo is an error either way, never "too large to look at".
    let whole = jpeg(64, 32);
    let err = decode_within(&whole[..whole.len() - 10], &limits(), 1 << 20).unwrap_err();
    assert_eq!(err.kind, MediaErrorKind::BadImage);
    let err = decode_within(b"not a photo", &limits(), 1 << 20).unwrap_err();
    assert_eq!(err.kind, MediaErrorKind::UnsupportedFormat, "{err}");
}

const PROGRESSIVE: &[u8] = include_bytes!("data/progressive-restart.jpg");
const GREY: &[u8] = include_bytes!("data/grey.jpg");

#[test]
fn progressive_with_restarts_and_greyscale_jpegs_decode() {
    let image = decode(PROGRESSIVE, &limits()).unwrap();
    assert_eq!((image.width, image.height), (96, 64));
    let image = decode(GREY, &limits()).unwrap();
    assert_eq!((image.width, image.height), (96, 64));
    assert!(
        image
            .data
            .chunks_exact(3)
            .all(|px| px[0] == px[1] && px[1] == px[2])
    );
}

#[test]
fn a_progressive_jpeg_cut_between_or_inside_scans_is_a_bad_image() {
    let scans: Vec<usize> = PROGRESSIVE
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0xDA])
        .map(|(at, _)| at)
        .collect();
    assert!(scans.len() > 2, "a progressive jpeg has several scans");
    for cut in [
        scans[1],
        scans[1] + 20,
        scans[scans.len() - 1] + 30,
        PROGRESSIVE.len() - 2,
    ] {
        let err = decode(&PROGRESSIVE[..cut], &limits()).unwrap_err();
        assert_eq!(err.kind, MediaErrorKind::BadImage, "cut at {cut}: {err}");
    }
}

#[test]
fn a_truncated_png_is_a_bad_image() {
    let whole = png(64, 64, &halves(64, 64), ExtendedColorType::Rgb8);
    let err = decode(&whole[..whole.len() / 2], &limits()).unwrap_err();
    assert_eq!(err.kind, MediaErrorKind::BadImage, "{err}");
}

#[test]
fn a_png_claiming_100000_squared_pixels_is_refused_from_its_header() {
    let bomb = png_claiming(100_000, 100_000);
    assert_eq!(
        probe(&bomb, &limits()).unwrap_err().kind,
        MediaErrorKind::TooLarge
    );
    assert_eq!(
        decode(&bomb, &limits()).unwrap_err().kind,
        MediaErrorKind::TooLarge
    );
    // Within the side limit but over the pixel limit.
    let wide = png_claiming(16_000, 16_000);
    assert_eq!(
        probe(&wide, &limits()).unwrap_err().kind,
        MediaErrorKind::TooLarge
    );
    // A small claim passes the header check (and then fails to decode its empty data).
    assert_eq!(probe(&png_claiming(8, 8), &limits()).unwrap().width, 8);
    assert_eq!(
        decode(&png_claiming(8, 8), &limits()).unwrap_err().kind,
        MediaErrorKind::BadImage
    );
}

#[test]
fn byte_pixel_and_allocation_limits_are_enforced() {
    let photo = jpeg(64, 32);
    let kind = |limits: Limits| decode(&photo, &limits).unwrap_err().kind;
    let bytes = Limits {
        max_input_bytes: photo.len() - 1,
        ..limits()
    };
    assert_eq!(kind(bytes), MediaErrorKind::TooLarge);
    let side = Limits {
        max_side_px: 63,
        ..limits()
    };
    assert_eq!(kind(side), MediaErrorKind::TooLarge);
    let pixels = Limits {
        max_pixels: 64 * 32 - 1,
        ..limits()
    };
    assert_eq!(kind(pixels), MediaErrorKind::TooLarge);
    let alloc = Limits {
        max_alloc_bytes: 64 * 32 * 3 - 1,
        ..limits()
    };
    assert_eq!(kind(alloc), MediaErrorKind::TooLarge);
    let exact = Limits {
        max_input_bytes: photo.len(),
        max_side_px: 64,
        max_pixels: 64 * 32,
        max_alloc_bytes: 64 * 32 * 4,
    };
    assert!(decode(&photo, &exact).is_ok());
}

#[test]
fn other_formats_are_unsupported() {
    for bytes in [
        &b"GIF89a\x01\0\x01\0\0\0\0"[..],
        b"",
        b"hello world, not an image",
        b"\0\0\0\x18ftypavif\0\0\0\0",
    ] {
        assert_eq!(
            decode(bytes, &limits()).unwrap_err().kind,
            MediaErrorKind::UnsupportedFormat
        );
    }
}

#[cfg(not(feature = "heic"))]
#[test]
fn heic_is_refused_clearly_without_the_feature() {
    let err = decode(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", &limits()).unwrap_err();
    assert_eq!(err.kind, MediaErrorKind::UnsupportedFormat);
    assert!(err.message.contains("`heic` feature"), "{err}");
}

#[test]
fn decode_then_fit_gives_the_model_input() {
    let image = decode(&jpeg(400, 300), &limits()).unwrap();
    let input = fit(&image, 128, 128, FitMode::Cover).unwrap();
    assert_eq!(
        (input.width, input.height, input.data.len()),
        (128, 128, 128 * 128 * 3)
    );
    assert!(is_red(input.pixel(20, 64).unwrap()));
    assert!(is_blue(input.pixel(108, 64).unwrap()));
}

/// Small real images of every format, the seeds mutations start from.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        jpeg(24, 16),
        with_exif_orientation(&jpeg(16, 8), 6),
        png(12, 10, &halves(12, 10), ExtendedColorType::Rgb8),
        png(
            8,
            8,
            &[[10, 20, 30, 128]; 64].concat(),
            ExtendedColorType::Rgba8,
        ),
        webp(16, 12),
        PROGRESSIVE.to_vec(),
        GREY.to_vec(),
    ]
}

/// What decoding untrusted bytes may give: pixels matching the header, or an intake error.
fn assert_typed(bytes: &[u8]) {
    match decode(bytes, &limits()) {
        Ok(RgbImage {
            width,
            height,
            data,
        }) => {
            assert_eq!(data.len(), width as usize * height as usize * 3);
        }
        Err(err) => assert!(
            matches!(
                err.kind,
                MediaErrorKind::UnsupportedFormat
                    | MediaErrorKind::TooLarge
                    | MediaErrorKind::BadImage
            ),
            "{err}"
        ),
    }
    let _ = probe(bytes, &limits());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        format in 0usize..4,
    ) {
        // Behind each format's magic bytes, so the decoders and not the sniffer see them.
        let magic: [&[u8]; 4] =
            [&[0xFF, 0xD8, 0xFF], b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBP", b""];
        let mut input = magic[format].to_vec();
        input.extend_from_slice(&bytes);
        assert_typed(&input);
    }

    #[test]
    fn truncated_and_bit_flipped_images_never_panic(
        seed in 0usize..7,
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..6),
    ) {
        let mut bytes = seeds().swap_remove(seed);
        for (at, bit) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep.max(1));
        assert_typed(&bytes);
    }
}
