//! [`probe`] and [`decode`]: untrusted photo bytes to header facts or to RGB pixels, bounded by
//! [`Limits`], EXIF orientation applied.
//!
//! JPEG goes to zune-jpeg in strict mode rather than through `image`: `image` returns `Ok` with
//! grey fill for a JPEG cut in its scan data (DESIGN.md §7), and zune-jpeg alone still accepts
//! some cuts, so the marker structure must also reach EOI (`jpeg.rs`). PNG and WebP go through
//! `image` with its limits set, since its defaults accept a 12000×12000 PNG.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::{ImageFormat, Limits, MediaError, MediaErrorKind, RgbImage, sniff};

/// What the header of a photo says, read without decoding pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// The format its magic bytes announce (and its header confirms).
    pub format: ImageFormat,
    /// Width in pixels as stored, before EXIF orientation (HEIC: after the container's own
    /// rotation, which libheif applies).
    pub width: u32,
    /// Height in pixels, on the same terms as `width`.
    pub height: u32,
}

/// JPEG's own ceiling: its header stores sides in 16 bits. zune-jpeg's default cap (16384) would
/// make an oversize JPEG a decode error rather than [`MediaErrorKind::TooLarge`].
const JPEG_MAX_SIDE_PX: usize = 65_535;

/// Reads only the header: format, dimensions, and every limit that can be checked from them.
/// Ingest calls this to refuse oversize photos and pixel bombs before storing them. A JPEG's
/// marker structure is also walked to its end (no pixel is decoded): a truncated upload is
/// refused here rather than by a worker.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<ImageInfo, MediaError> {
    probe_keeping_decoder(bytes, limits).map(|(info, _)| info)
}

/// A JPEG decoder whose headers are read: what [`probe`] parsed, handed on to [`decode`] so
/// that the headers (Huffman tables built, markers walked) are read once per photo.
type ProbedJpeg<'a> = JpegDecoder<ZCursor<&'a [u8]>>;

/// [`probe`], keeping a JPEG's decoder with its headers read.
fn probe_keeping_decoder<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<(ImageInfo, Option<ProbedJpeg<'a>>), MediaError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(MediaError::new(
            MediaErrorKind::TooLarge,
            format!(
                "photo is {} bytes, over the {} byte limit",
                bytes.len(),
                limits.max_input_bytes
            ),
        ));
    }
    let format = sniff(bytes).ok_or_else(|| {
        MediaError::new(
            MediaErrorKind::UnsupportedFormat,
            "not a jpeg, png, webp or heic image",
        )
    })?;
    let mut probed = None;
    let (width, height, bytes_per_pixel) = match format {
        ImageFormat::Jpeg => {
            let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), jpeg_options());
            decoder
                .decode_headers()
                .map_err(|err| bad_image(format, err))?;
            let info = decoder.info().ok_or_else(|| {
                MediaError::new(MediaErrorKind::BadImage, "jpeg has no frame header")
            })?;
            check_jpeg_whole(bytes)?;
            let progressive = info.sof.is_progressive();
            // Output RGB plus, for progressive scans, 16-bit coefficients of every component.
            let bytes_per_pixel = if progressive { 3 + 2 * 3 } else { 3 + 1 };
            let sides = (u32::from(info.width), u32::from(info.height));
            probed = Some(decoder);
            (sides.0, sides.1, bytes_per_pixel)
        }
        ImageFormat::Png | ImageFormat::WebP => {
            // Building the decoder parses only the header (and chunks before the image data,
            // such as compressed text, within the allocation limit). Sides are checked below,
            // with our message rather than `image`'s.
            let mut image_limits = image::Limits::no_limits();
            image_limits.max_alloc = Some(limits.max_alloc_bytes);
            let mut reader = image_reader(bytes, format);
            reader.limits(image_limits);
            let (width, height) = reader
                .into_dimensions()
                .map_err(|err| from_image_error(format, err))?;
            // `image` enforces `max_alloc` itself while decoding; RGB out is the floor.
            (width, height, 3)
        }
        // libheif decodes to YCbCr planes (up to 16-bit 4:4:4) and converts to interleaved RGB.
        ImageFormat::Heic => {
            let (width, height) = crate::heic::dimensions(bytes, limits)?;
            (width, height, 3 + 6)
        }
    };
    check_dimensions(width, height, bytes_per_pixel, limits)?;
    let info = ImageInfo {
        format,
        width,
        height,
    };
    Ok((info, probed))
}

/// Decodes a photo to 8-bit RGB with its EXIF orientation applied. Every colour type (grey,
/// palette, 16-bit, CMYK JPEG) becomes RGB; transparent pixels are composited over white.
/// Fails with a typed error, never a panic, on any input.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<RgbImage, MediaError> {
    let (info, probed) = probe_keeping_decoder(bytes, limits)?;
    decode_probed(bytes, limits, info, probed)
}

/// [`decode`], but only a photo whose header says it has at most `max_pixels` pixels: `None` for
/// a larger one (nothing decoded). A caller on an async runtime decodes small photos in place
/// with it, the header read once, and hands the rest to a blocking thread.
pub fn decode_within(
    bytes: &[u8],
    limits: &Limits,
    max_pixels: u64,
) -> Result<Option<RgbImage>, MediaError> {
    let (info, probed) = probe_keeping_decoder(bytes, limits)?;
    if u64::from(info.width) * u64::from(info.height) > max_pixels {
        return Ok(None);
    }
    decode_probed(bytes, limits, info, probed).map(Some)
}

fn decode_probed(
    bytes: &[u8],
    limits: &Limits,
    info: ImageInfo,
    probed: Option<ProbedJpeg<'_>>,
) -> Result<RgbImage, MediaError> {
    let (image, orientation) = match (info.format, probed) {
        // Its headers read and its markers walked to EOI by the probe.
        (ImageFormat::Jpeg, Some(decoder)) => decode_jpeg(decoder)?,
        (ImageFormat::Jpeg, None) => {
            return Err(MediaError::new(
                MediaErrorKind::BadImage,
                "jpeg has no frame header",
            ));
        }
        (ImageFormat::Png | ImageFormat::WebP, _) => decode_with_image(bytes, info.format, limits)?,
        // libheif applies the container's rotation and mirroring itself.
        (ImageFormat::Heic, _) => (
            crate::heic::decode(bytes, limits)?,
            Orientation::NoTransforms,
        ),
    };
    if (image.width, image.height) != (info.width, info.height) {
        return Err(MediaError::new(
            MediaErrorKind::BadImage,
            format!(
                "{} decoded to {}x{}, header said {}x{}",
                info.format.name(),
                image.width,
                image.height,
                info.width,
                info.height
            ),
        ));
    }
    orient(image, orientation)
}

fn jpeg_options() -> DecoderOptions {
    DecoderOptions::new_safe()
        .set_strict_mode(true)
        .set_max_width(JPEG_MAX_SIDE_PX)
        .set_max_height(JPEG_MAX_SIDE_PX)
        .jpeg_set_out_colorspace(ColorSpace::RGB)
}

/// A JPEG whose marker structure does not reach EOI is cut short (a dropped upload).
fn check_jpeg_whole(bytes: &[u8]) -> Result<(), MediaError> {
    match crate::jpeg::end_of_image(bytes) {
        Some(_) => Ok(()),
        None => Err(MediaError::new(
            MediaErrorKind::BadImage,
            "jpeg is truncated: its data ends before the end-of-image marker",
        )),
    }
}

fn decode_jpeg(mut decoder: ProbedJpeg<'_>) -> Result<(RgbImage, Orientation), MediaError> {
    let format = ImageFormat::Jpeg;
    let pixels = decoder.decode().map_err(|err| bad_image(format, err))?;
    let info = decoder
        .info()
        .ok_or_else(|| MediaError::new(MediaErrorKind::BadImage, "jpeg has no frame header"))?;
    if decoder.output_colorspace() != Some(ColorSpace::RGB) {
        return Err(MediaError::new(
            MediaErrorKind::BadImage,
            "jpeg did not decode to rgb",
        ));
    }
    let orientation = decoder
        .exif()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);
    let image = RgbImage::new(u32::from(info.width), u32::from(info.height), pixels)
        .map_err(|err| MediaError::new(MediaErrorKind::BadImage, err.message))?;
    Ok((image, orientation))
}

fn image_reader(bytes: &[u8], format: ImageFormat) -> ImageReader<Cursor<&[u8]>> {
    let format = match format {
        ImageFormat::Png => image::ImageFormat::Png,
        _ => image::ImageFormat::WebP,
    };
    ImageReader::with_format(Cursor::new(bytes), format)
}

fn decode_with_image(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<(RgbImage, Orientation), MediaError> {
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side_px);
    image_limits.max_image_height = Some(limits.max_side_px);
    image_limits.max_alloc = Some(limits.max_alloc_bytes);
    let mut reader = image_reader(bytes, format);
    reader.limits(image_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|err| from_image_error(format, err))?;
    // A broken EXIF chunk is not worth refusing the photo over: keep it upright as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let decoded =
        DynamicImage::from_decoder(decoder).map_err(|err| from_image_error(format, err))?;
    let (width, height) = (decoded.width(), decoded.height());
    let data = if decoded.color().has_alpha() {
        over_white(decoded.into_rgba8().into_raw())
    } else {
        decoded.into_rgb8().into_raw()
    };
    let image = RgbImage::new(width, height, data)
        .map_err(|err| MediaError::new(MediaErrorKind::BadImage, err.message))?;
    Ok((image, orientation))
}

/// Composites straight-alpha RGBA over white: a transparent logo should not turn black.
fn over_white(rgba: Vec<u8>) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let alpha = u32::from(px[3]);
        for &channel in &px[..3] {
            let blended = (u32::from(channel) * alpha + 255 * (255 - alpha) + 127) / 255;
            rgb.push(blended as u8);
        }
    }
    rgb
}

fn orient(image: RgbImage, orientation: Orientation) -> Result<RgbImage, MediaError> {
    if orientation == Orientation::NoTransforms {
        return Ok(image);
    }
    let RgbImage {
        width,
        height,
        data,
    } = image;
    let Some(buffer) = image::RgbImage::from_raw(width, height, data) else {
        return Err(MediaError::new(
            MediaErrorKind::BadImage,
            "decoded buffer does not match its size",
        ));
    };
    let mut dynamic = DynamicImage::ImageRgb8(buffer);
    dynamic.apply_orientation(orientation);
    let rotated = dynamic.into_rgb8();
    Ok(RgbImage {
        width: rotated.width(),
        height: rotated.height(),
        data: rotated.into_raw(),
    })
}

/// Checks the header's size against `limits`; `bytes_per_pixel` is the format's worst-case
/// decode memory per pixel.
fn check_dimensions(
    width: u32,
    height: u32,
    bytes_per_pixel: u64,
    limits: &Limits,
) -> Result<(), MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::new(
            MediaErrorKind::BadImage,
            format!("image claims {width}x{height} pixels"),
        ));
    }
    let pixels = u64::from(width) * u64::from(height);
    let too_large = |why: String| Err(MediaError::new(MediaErrorKind::TooLarge, why));
    if width.max(height) > limits.max_side_px {
        return too_large(format!(
            "{width}x{height} has a side over {} pixels",
            limits.max_side_px
        ));
    }
    if pixels > limits.max_pixels {
        return too_large(format!(
            "{width}x{height} is over {} pixels",
            limits.max_pixels
        ));
    }
    if pixels * bytes_per_pixel > limits.max_alloc_bytes {
        return too_large(format!(
            "{width}x{height} needs about {} bytes to decode, over the {} byte allocation limit",
            pixels * bytes_per_pixel,
            limits.max_alloc_bytes
        ));
    }
    Ok(())
}

fn bad_image(format: ImageFormat, err: impl std::fmt::Display) -> MediaError {
    MediaError::new(
        MediaErrorKind::BadImage,
        format!("{} does not decode: {err}", format.name()),
    )
}

/// The one place `image`'s errors become kinds.
fn from_image_error(format: ImageFormat, err: image::ImageError) -> MediaError {
    match err {
        image::ImageError::Limits(err) => MediaError::new(
            MediaErrorKind::TooLarge,
            format!("{} over a decode limit: {err}", format.name()),
        ),
        image::ImageError::Unsupported(err) => MediaError::new(
            MediaErrorKind::UnsupportedFormat,
            format!("{} variant not supported: {err}", format.name()),
        ),
        other => bad_image(format, other),
    }
}
