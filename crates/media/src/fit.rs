//! [`fit`]: a decoded photo to the model's input size, with fast_image_resize (10–25× faster
//! than `image::imageops` here, DESIGN.md §7).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::{MediaError, MediaErrorKind, RgbImage};

/// How a photo meets a target size of another aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FitMode {
    /// Scale to cover the target and crop the overflow evenly from both sides: no distortion,
    /// no bars. What model inputs take.
    Cover,
    /// Scale each axis independently to the target: distorts unless the ratios match.
    Stretch,
}

/// Largest side [`fit`] produces: model inputs and video frames are far smaller; this bounds the
/// output allocation against a wrong caller.
pub const MAX_FIT_SIDE_PX: u32 = 8192;

/// Resizes (and for [`FitMode::Cover`], centre-crops) `image` to exactly `width`×`height`.
pub fn fit(
    image: &RgbImage,
    width: u32,
    height: u32,
    mode: FitMode,
) -> Result<RgbImage, MediaError> {
    if width == 0 || height == 0 || width > MAX_FIT_SIDE_PX || height > MAX_FIT_SIDE_PX {
        return Err(MediaError::new(
            MediaErrorKind::InvalidInput,
            format!("cannot fit to {width}x{height}: sides must be 1..={MAX_FIT_SIDE_PX}"),
        ));
    }
    if (image.width, image.height) == (width, height) {
        return Ok(image.clone());
    }
    let internal = |err: &dyn std::fmt::Display| {
        MediaError::new(MediaErrorKind::InvalidInput, format!("resize: {err}"))
    };
    let source = ImageRef::new(image.width, image.height, &image.data, PixelType::U8x3)
        .map_err(|err| internal(&err))?;
    let mut target = Image::new(width, height, PixelType::U8x3);
    // Catmull-Rom: sharper than bilinear on the large downscales photos need, cheaper than
    // Lanczos3. The convolution widens with the ratio, so downscaling does not alias.
    let mut options =
        ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
    if mode == FitMode::Cover {
        options = options.fit_into_destination(Some((0.5, 0.5)));
    }
    Resizer::new()
        .resize(&source, &mut target, &options)
        .map_err(|err| internal(&err))?;
    RgbImage::new(width, height, target.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Left half red, right half blue.
    fn halves(width: u32, height: u32) -> RgbImage {
        let mut data = Vec::new();
        for _ in 0..height {
            for x in 0..width {
                data.extend_from_slice(if x < width / 2 {
                    &[255, 0, 0]
                } else {
                    &[0, 0, 255]
                });
            }
        }
        RgbImage::new(width, height, data).unwrap()
    }

    #[test]
    fn cover_crops_the_long_side_evenly() {
        // 400x100 to 100x100: the middle 100x100 is kept, half red, half blue.
        let out = fit(&halves(400, 100), 100, 100, FitMode::Cover).unwrap();
        assert_eq!((out.width, out.height), (100, 100));
        assert_eq!(out.pixel(10, 50), Some([255, 0, 0]));
        assert_eq!(out.pixel(90, 50), Some([0, 0, 255]));
    }

    #[test]
    fn cover_of_a_left_heavy_image_keeps_the_centre() {
        // 300x100, red in x < 150: the centre crop 100..200 is red up to 150.
        let out = fit(&halves(300, 100), 50, 50, FitMode::Cover).unwrap();
        assert_eq!(out.pixel(5, 25), Some([255, 0, 0]));
        assert_eq!(out.pixel(45, 25), Some([0, 0, 255]));
    }

    #[test]
    fn stretch_keeps_everything() {
        let out = fit(&halves(400, 100), 100, 100, FitMode::Stretch).unwrap();
        assert_eq!((out.width, out.height), (100, 100));
        assert_eq!(out.pixel(2, 50), Some([255, 0, 0]));
        assert_eq!(out.pixel(97, 50), Some([0, 0, 255]));
    }

    #[test]
    fn refuses_empty_or_huge_targets() {
        let image = halves(4, 4);
        assert_eq!(
            fit(&image, 0, 4, FitMode::Cover).unwrap_err().kind,
            MediaErrorKind::InvalidInput
        );
        assert!(fit(&image, MAX_FIT_SIDE_PX + 1, 4, FitMode::Cover).is_err());
        assert_eq!(fit(&image, 4, 4, FitMode::Cover).unwrap(), image);
    }
}
