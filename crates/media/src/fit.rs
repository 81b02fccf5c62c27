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

/// The part of a source image a cover fit keeps: `width`×`height` source pixels from
/// (`left`, `top`), in the target's aspect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    /// Source pixels from the left edge.
    pub left: f64,
    /// Source pixels from the top edge.
    pub top: f64,
    /// Source pixels kept across.
    pub width: f64,
    /// Source pixels kept down.
    pub height: f64,
}

impl Crop {
    /// Where source point (`x`, `y`) lands in the target, in `affine_grid`'s frame: -1 at the
    /// left/top edge, 1 at the right/bottom, 0 in the middle (clamped to the frame).
    pub fn to_frame(&self, x: f64, y: f64) -> (f32, f32) {
        let to = |v: f64, start: f64, len: f64| {
            ((v - start) / len.max(f64::MIN_POSITIVE) * 2.0 - 1.0).clamp(-1.0, 1.0) as f32
        };
        (to(x, self.left, self.width), to(y, self.top, self.height))
    }
}

/// The largest crop of a `src_w`×`src_h` image in the aspect of `dst_w`×`dst_h`, centred on
/// `centre` (source pixels) as far as the image's edges allow.
pub fn cover_crop(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, centre: (f64, f64)) -> Crop {
    let (sw, sh) = (f64::from(src_w), f64::from(src_h));
    let target = f64::from(dst_w.max(1)) / f64::from(dst_h.max(1));
    let (width, height) = if sw / sh.max(1.0) > target {
        (sh * target, sh)
    } else {
        (sw, sw / target)
    };
    let place = |c: f64, len: f64, whole: f64| (c - len / 2.0).clamp(0.0, (whole - len).max(0.0));
    Crop {
        left: place(centre.0, width, sw),
        top: place(centre.1, height, sh),
        width,
        height,
    }
}

/// Resizes (and for [`FitMode::Cover`], centre-crops) `image` to exactly `width`×`height`.
pub fn fit(
    image: &RgbImage,
    width: u32,
    height: u32,
    mode: FitMode,
) -> Result<RgbImage, MediaError> {
    let crop = match mode {
        FitMode::Cover => {
            let middle = (f64::from(image.width) / 2.0, f64::from(image.height) / 2.0);
            Some(cover_crop(image.width, image.height, width, height, middle))
        }
        FitMode::Stretch => None,
    };
    resize(image, width, height, crop)
}

/// Cover-fits `image` to exactly `width`×`height` with the crop centred on `centre` (source
/// pixels) as far as the edges allow: how a photo is framed on its faces. Returns the crop too,
/// to place points of the photo in the frame ([`Crop::to_frame`]).
pub fn fit_around(
    image: &RgbImage,
    width: u32,
    height: u32,
    centre: (f64, f64),
) -> Result<(RgbImage, Crop), MediaError> {
    let crop = cover_crop(image.width, image.height, width, height, centre);
    Ok((resize(image, width, height, Some(crop))?, crop))
}

/// Scales `image` down (never up) to fit inside `max_width`×`max_height`, keeping its aspect:
/// what a detector looks at. Returns the scaled image and the factor from its pixels back to the
/// original's.
pub fn fit_within(
    image: &RgbImage,
    max_width: u32,
    max_height: u32,
) -> Result<(RgbImage, f64), MediaError> {
    let scale = (f64::from(max_width) / f64::from(image.width.max(1)))
        .min(f64::from(max_height) / f64::from(image.height.max(1)))
        .min(1.0);
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
    let (width, height) = (side(image.width), side(image.height));
    let scaled = resize(image, width, height, None)?;
    Ok((scaled, f64::from(image.width) / f64::from(width)))
}

fn resize(
    image: &RgbImage,
    width: u32,
    height: u32,
    crop: Option<Crop>,
) -> Result<RgbImage, MediaError> {
    if width == 0 || height == 0 || width > MAX_FIT_SIDE_PX || height > MAX_FIT_SIDE_PX {
        return Err(MediaError::new(
            MediaErrorKind::InvalidInput,
            format!("cannot fit to {width}x{height}: sides must be 1..={MAX_FIT_SIDE_PX}"),
        ));
    }
    let whole = crop.is_none_or(|c| {
        c.left == 0.0
            && c.top == 0.0
            && c.width == f64::from(image.width)
            && c.height == f64::from(image.height)
    });
    if (image.width, image.height) == (width, height) && whole {
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
    if let Some(c) = crop {
        options = options.crop(c.left, c.top, c.width, c.height);
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
    fn a_crop_around_a_point_keeps_it_and_stops_at_the_edges() {
        // 400x100 to a square around x = 350: the crop is 300..400 (held at the right edge),
        // all blue; around x = 120 it is 70..170, red up to 200.
        let (out, crop) = fit_around(&halves(400, 100), 50, 50, (350.0, 50.0)).unwrap();
        assert_eq!((crop.left, crop.width), (300.0, 100.0));
        assert_eq!(out.pixel(2, 25), Some([0, 0, 255]));
        assert_eq!(crop.to_frame(350.0, 50.0), (0.0, 0.0));
        assert_eq!(crop.to_frame(390.0, 0.0), (0.8, -1.0));
        let (out, crop) = fit_around(&halves(400, 100), 50, 50, (120.0, 50.0)).unwrap();
        assert_eq!(crop.left, 70.0);
        assert_eq!(out.pixel(2, 25), Some([255, 0, 0]));
        assert_eq!(out.pixel(48, 25), Some([255, 0, 0]));
        // A centre crop is the plain cover fit.
        let middle = fit_around(&halves(300, 100), 50, 50, (150.0, 50.0))
            .unwrap()
            .0;
        assert_eq!(
            middle,
            fit(&halves(300, 100), 50, 50, FitMode::Cover).unwrap()
        );
    }

    #[test]
    fn fit_within_scales_down_only_and_keeps_the_aspect() {
        let (out, back) = fit_within(&halves(1280, 320), 640, 640).unwrap();
        assert_eq!((out.width, out.height, back), (640, 160, 2.0));
        let (out, back) = fit_within(&halves(100, 50), 640, 640).unwrap();
        assert_eq!((out.width, out.height, back), (100, 50, 1.0));
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
