//! HEIC through the system libheif, with images encoded here by libheif's x265 encoder.
#![cfg(feature = "heic")]

use clipfleet_media::{ImageFormat, Limits, MediaErrorKind, decode, probe, sniff};
use libheif_rs::{
    Channel, ColorSpace, CompressionFormat, EncoderQuality, HeifContext, Image, LibHeif, RgbChroma,
};

/// A `width`×`height` HEIC, left half red and right half blue.
fn heic(width: u32, height: u32) -> Vec<u8> {
    let mut image = Image::new(width, height, ColorSpace::Rgb(RgbChroma::Rgb)).unwrap();
    image
        .create_plane(Channel::Interleaved, width, height, 8)
        .unwrap();
    let planes = image.planes_mut();
    let plane = planes.interleaved.unwrap();
    for y in 0..height as usize {
        for x in 0..width as usize {
            let at = y * plane.stride + x * 3;
            let rgb = if x < width as usize / 2 {
                [255, 0, 0]
            } else {
                [0, 0, 255]
            };
            plane.data[at..at + 3].copy_from_slice(&rgb);
        }
    }
    let lib = LibHeif::new();
    let mut encoder = lib.encoder_for_format(CompressionFormat::Hevc).unwrap();
    encoder.set_quality(EncoderQuality::Lossy(90)).unwrap();
    let mut context = HeifContext::new().unwrap();
    context.encode_image(&image, &mut encoder, None).unwrap();
    context.write_to_bytes().unwrap()
}

#[test]
fn a_heic_photo_decodes_to_rgb() {
    let bytes = heic(64, 32);
    assert_eq!(sniff(&bytes), Some(ImageFormat::Heic));
    let info = probe(&bytes, &Limits::default()).unwrap();
    assert_eq!(
        (info.format, info.width, info.height),
        (ImageFormat::Heic, 64, 32)
    );
    let image = decode(&bytes, &Limits::default()).unwrap();
    assert_eq!((image.width, image.height), (64, 32));
    let [r, g, b] = image.pixel(8, 16).unwrap();
    assert!(r > 180 && g < 70 && b < 70, "left is {r},{g},{b}");
    let [r, g, b] = image.pixel(56, 16).unwrap();
    assert!(b > 180 && r < 70 && g < 70, "right is {r},{g},{b}");
}

#[test]
fn heic_limits_are_checked_from_the_container() {
    let bytes = heic(64, 32);
    let limits = Limits {
        max_pixels: 64 * 32 - 1,
        ..Limits::default()
    };
    assert_eq!(
        decode(&bytes, &limits).unwrap_err().kind,
        MediaErrorKind::TooLarge
    );
}

#[test]
fn a_truncated_heic_is_a_bad_image() {
    let bytes = heic(64, 32);
    for cut in [16, bytes.len() / 3, bytes.len() / 2, bytes.len() - 8] {
        let err = decode(&bytes[..cut], &Limits::default()).unwrap_err();
        assert_eq!(err.kind, MediaErrorKind::BadImage, "cut at {cut}: {err}");
    }
}

mod mutated {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]

        #[test]
        fn truncated_and_bit_flipped_heic_never_panics(
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..6),
        ) {
            let mut bytes = heic(32, 16);
            for (at, bit) in flips {
                let at = at.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
            bytes.truncate(cut.index(bytes.len() + 1).max(1));
            match decode(&bytes, &Limits::default()) {
                Ok(image) => {
                    let pixels = image.width as usize * image.height as usize;
                    prop_assert_eq!(image.data.len(), pixels * 3);
                }
                Err(err) => prop_assert!(matches!(
                    err.kind,
                    MediaErrorKind::UnsupportedFormat
                        | MediaErrorKind::TooLarge
                        | MediaErrorKind::BadImage
                )),
            }
        }
    }
}
