//! HEIC through the system libheif (Debian 12's 1.15, with libde265), behind the `heic`
//! feature. Without it HEIC is still recognised, and refused as unsupported by this build.

use crate::{Limits, MediaError};

#[cfg(feature = "heic")]
mod imp {
    use libheif_rs::{ColorSpace, DecodingOptions, HeifContext, LibHeif, RgbChroma};

    use crate::{Limits, MediaError, MediaErrorKind, RgbImage};

    fn bad_image(err: impl std::fmt::Display) -> MediaError {
        MediaError::new(
            MediaErrorKind::BadImage,
            format!("heic does not decode: {err}"),
        )
    }

    /// The primary image's size after libheif's transformations (rotation swaps the sides).
    pub(crate) fn dimensions(bytes: &[u8], _limits: &Limits) -> Result<(u32, u32), MediaError> {
        let context = HeifContext::read_from_bytes(bytes).map_err(bad_image)?;
        let handle = context.primary_image_handle().map_err(bad_image)?;
        Ok((handle.width(), handle.height()))
    }

    pub(crate) fn decode(bytes: &[u8], _limits: &Limits) -> Result<RgbImage, MediaError> {
        // The caller checked the primary image's size against the limits through `dimensions`.
        let context = HeifContext::read_from_bytes(bytes).map_err(bad_image)?;
        let handle = context.primary_image_handle().map_err(bad_image)?;
        let mut options = DecodingOptions::new()
            .ok_or_else(|| MediaError::new(MediaErrorKind::BadImage, "libheif options"))?;
        // 10-bit phone HDR photos: the model takes 8-bit RGB.
        options.set_convert_hdr_to_8bit(true);
        let image = LibHeif::new()
            .decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), Some(options))
            .map_err(bad_image)?;
        let plane = image
            .planes()
            .interleaved
            .ok_or_else(|| MediaError::new(MediaErrorKind::BadImage, "heic has no rgb plane"))?;
        let (width, height) = (plane.width, plane.height);
        let row_bytes = width as usize * 3;
        if plane.storage_bits_per_pixel != 24 || plane.stride < row_bytes {
            return Err(MediaError::new(
                MediaErrorKind::BadImage,
                format!(
                    "heic decoded to {} bits per pixel, stride {}",
                    plane.storage_bits_per_pixel, plane.stride
                ),
            ));
        }
        let mut data = Vec::with_capacity(row_bytes * height as usize);
        for row in plane.data.chunks(plane.stride).take(height as usize) {
            let pixels = row
                .get(..row_bytes)
                .ok_or_else(|| MediaError::new(MediaErrorKind::BadImage, "heic row too short"))?;
            data.extend_from_slice(pixels);
        }
        RgbImage::new(width, height, data)
            .map_err(|err| MediaError::new(MediaErrorKind::BadImage, err.message))
    }
}

#[cfg(not(feature = "heic"))]
mod imp {
    use crate::{Limits, MediaError, MediaErrorKind, RgbImage};

    fn refused() -> MediaError {
        MediaError::new(
            MediaErrorKind::UnsupportedFormat,
            "heic: built without the `heic` feature",
        )
    }

    pub(crate) fn dimensions(_bytes: &[u8], _limits: &Limits) -> Result<(u32, u32), MediaError> {
        Err(refused())
    }

    pub(crate) fn decode(_bytes: &[u8], _limits: &Limits) -> Result<RgbImage, MediaError> {
        Err(refused())
    }
}

pub(crate) fn dimensions(bytes: &[u8], limits: &Limits) -> Result<(u32, u32), MediaError> {
    imp::dimensions(bytes, limits)
}

pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<crate::RgbImage, MediaError> {
    imp::decode(bytes, limits)
}
