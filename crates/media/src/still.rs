//! Still-image output: one frame as a baseline JPEG. The encoder writes pixels only — no EXIF,
//! no ICC profile, no comment — so nothing of the photo's metadata (camera, place, time) can
//! reach the stored image.

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::{MediaError, MediaErrorKind, RgbImage};

/// The quality still images are written at (libjpeg's scale): visually lossless for
/// photographs at a fraction of the size.
pub const STILL_JPEG_QUALITY: u8 = 90;

/// Encodes `image` as a JPEG at `quality` (1..=100), metadata-free.
pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .write_image(
            &image.data,
            image.width,
            image.height,
            ExtendedColorType::Rgb8,
        )
        .map_err(|err| {
            MediaError::new(MediaErrorKind::InvalidInput, format!("encode jpeg: {err}"))
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_still_is_a_jpeg_of_the_frame_with_no_metadata() {
        let data = (0..64 * 48 * 3).map(|i| (i % 251) as u8).collect();
        let frame = RgbImage::new(64, 48, data).unwrap();
        let jpeg = encode_jpeg(&frame, STILL_JPEG_QUALITY).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let decoded = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (64, 48));
        // No APP1 (EXIF/XMP), APP2 (ICC) or COM segment: the markers a JPEG carries metadata in.
        for marker in [[0xFF, 0xE1], [0xFF, 0xE2], [0xFF, 0xFE]] {
            assert!(!jpeg.windows(2).any(|w| w == marker), "{marker:02x?}");
        }
    }
}
