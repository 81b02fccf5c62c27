//! The [`VideoEncoder`] trait, the frame checks both encoders share, and RGB → I420 (BT.709,
//! limited range) so both encoders see identical YUV and their colour tags tell the truth.

use crate::{MediaError, MediaErrorKind, RgbImage};

/// Most frames one video may have: a minute at 60 fps, far above any model's clip length, so a
/// runaway caller cannot make an encoder buffer without bound.
pub const MAX_FRAMES: usize = 3_600;

/// Highest frame rate accepted.
pub const MAX_FPS: u32 = 120;

/// Longest side of a video frame: H.264 levels browsers and phones decode stop near 4K.
pub const MAX_VIDEO_SIDE_PX: u32 = 4_096;

/// Turns frames into a playable MP4: H.264 in yuv420p, BT.709 tags, moov before mdat
/// (faststart), one frame per input frame at a constant `fps`.
///
/// Contract: `frames` is non-empty, at most [`MAX_FRAMES`], all the same size, sides even and at
/// most [`MAX_VIDEO_SIDE_PX`]; `fps` is 1..=[`MAX_FPS`]. Anything else is
/// [`MediaErrorKind::InvalidInput`]. Implementations are stateless between calls, so one value
/// serves concurrent jobs.
pub trait VideoEncoder: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and metrics (`ffmpeg-x264`, `openh264`).
    fn name(&self) -> &'static str;

    /// Encodes `frames` at `fps` frames per second into the bytes of an MP4 file.
    fn encode(&self, frames: &[RgbImage], fps: u32) -> Result<Vec<u8>, MediaError>;

    /// Whether encoding `frames` takes so little (well under a millisecond, in this process)
    /// that a caller on an async runtime may run it in place rather than on a blocking thread.
    /// By default no clip is.
    fn is_quick(&self, frames: &[RgbImage]) -> bool {
        let _ = frames;
        false
    }
}

/// Pixels of a clip, all frames together.
pub(crate) fn clip_pixels(frames: &[RgbImage]) -> u64 {
    frames
        .iter()
        .map(|f| u64::from(f.width) * u64::from(f.height))
        .sum()
}

/// Checks the trait's contract and returns the common frame size.
pub(crate) fn check_frames(frames: &[RgbImage], fps: u32) -> Result<(u32, u32), MediaError> {
    let invalid = |why: String| Err(MediaError::new(MediaErrorKind::InvalidInput, why));
    let Some(first) = frames.first() else {
        return invalid("no frames to encode".into());
    };
    if frames.len() > MAX_FRAMES {
        return invalid(format!("{} frames, over {MAX_FRAMES}", frames.len()));
    }
    if fps == 0 || fps > MAX_FPS {
        return invalid(format!("fps {fps} outside 1..={MAX_FPS}"));
    }
    let (width, height) = (first.width, first.height);
    if width % 2 != 0 || height % 2 != 0 || width.max(height) > MAX_VIDEO_SIDE_PX {
        return invalid(format!(
            "{width}x{height}: yuv420p needs even sides of at most {MAX_VIDEO_SIDE_PX}"
        ));
    }
    for (index, frame) in frames.iter().enumerate() {
        if (frame.width, frame.height) != (width, height)
            || frame.data.len() != width as usize * height as usize * 3
        {
            return invalid(format!(
                "frame {index} is {}x{} with {} bytes, frame 0 is {width}x{height}",
                frame.width,
                frame.height,
                frame.data.len()
            ));
        }
    }
    Ok((width, height))
}

/// Planar 4:2:0 YUV of one frame, limited range, BT.709 matrix.
#[derive(Debug, Default)]
pub(crate) struct I420 {
    /// `width * height` luma samples.
    pub(crate) y: Vec<u8>,
    /// `width/2 * height/2` blue-difference samples.
    pub(crate) u: Vec<u8>,
    /// `width/2 * height/2` red-difference samples.
    pub(crate) v: Vec<u8>,
}

// BT.709 coefficients scaled to limited range (219 luma, 224 chroma steps) in 16.16 fixed
// point; each chroma row sums to zero so grey stays exactly neutral.
const Y_R: i32 = 11_966;
const Y_G: i32 = 40_254;
const Y_B: i32 = 4_064;
const U_R: i32 = -6_597;
const U_G: i32 = -22_187;
const U_B: i32 = 28_784;
const V_R: i32 = 28_784;
const V_G: i32 = -26_148;
const V_B: i32 = -2_636;

impl I420 {
    /// Converts `frame` (even sides, checked by [`check_frames`]) into this buffer, reusing it.
    pub(crate) fn fill(&mut self, frame: &RgbImage) {
        let (width, height) = (frame.width as usize, frame.height as usize);
        let (half_width, half_height) = (width / 2, height / 2);
        // Sized once and written by index: no per-sample push, and loops the compiler can
        // unroll (this runs for every frame of every clip).
        self.y.resize(width * height, 0);
        self.u.resize(half_width * half_height, 0);
        self.v.resize(half_width * half_height, 0);
        for (luma, px) in self.y.iter_mut().zip(frame.data.chunks_exact(3)) {
            let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
            *luma = (((Y_R * r + Y_G * g + Y_B * b + 32_768) >> 16) + 16) as u8;
        }
        let stride = width * 3;
        let rows = frame.data.chunks_exact(2 * stride);
        let chroma_rows = self
            .u
            .chunks_exact_mut(half_width)
            .zip(self.v.chunks_exact_mut(half_width));
        for (pair, (u_row, v_row)) in rows.zip(chroma_rows) {
            let (top, bottom) = pair.split_at(stride);
            let quads = top.chunks_exact(6).zip(bottom.chunks_exact(6));
            for ((upper, lower), (cb_out, cr_out)) in
                quads.zip(u_row.iter_mut().zip(v_row.iter_mut()))
            {
                let sum = |c: usize| {
                    i32::from(upper[c])
                        + i32::from(upper[3 + c])
                        + i32::from(lower[c])
                        + i32::from(lower[3 + c])
                };
                // The 2x2 average, kept at 4x scale (>> 18 instead of >> 16) for precision.
                let (r, g, b) = (sum(0), sum(1), sum(2));
                let cb = ((U_R * r + U_G * g + U_B * b + 131_072) >> 18) + 128;
                let cr = ((V_R * r + V_G * g + V_B * b + 131_072) >> 18) + 128;
                *cb_out = cb.clamp(16, 240) as u8;
                *cr_out = cr.clamp(16, 240) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(width: u32, height: u32, rgb: [u8; 3]) -> RgbImage {
        RgbImage::new(width, height, rgb.repeat((width * height) as usize)).unwrap()
    }

    #[test]
    fn known_colours_convert_to_bt709_limited_range() {
        let mut yuv = I420::default();
        for (rgb, expected) in [
            ([0, 0, 0], (16, 128, 128)),
            ([255, 255, 255], (235, 128, 128)),
            ([128, 128, 128], (126, 128, 128)),
            // BT.709 red: Y 63, Cb 102, Cr 240.
            ([255, 0, 0], (63, 102, 240)),
            ([0, 0, 255], (32, 240, 118)),
        ] {
            yuv.fill(&solid(4, 2, rgb));
            assert_eq!(yuv.y.len(), 8);
            assert_eq!((yuv.u.len(), yuv.v.len()), (2, 2));
            assert_eq!((yuv.y[0], yuv.u[0], yuv.v[0]), expected, "{rgb:?}");
        }
    }

    #[test]
    fn frames_must_match_the_contract() {
        let frame = solid(4, 2, [0, 0, 0]);
        assert_eq!(
            check_frames(&[frame.clone(), frame.clone()], 12).unwrap(),
            (4, 2)
        );
        let kind = |frames: &[RgbImage], fps| check_frames(frames, fps).unwrap_err().kind;
        assert_eq!(kind(&[], 12), MediaErrorKind::InvalidInput);
        assert_eq!(
            kind(std::slice::from_ref(&frame), 0),
            MediaErrorKind::InvalidInput
        );
        assert_eq!(
            kind(std::slice::from_ref(&frame), MAX_FPS + 1),
            MediaErrorKind::InvalidInput
        );
        assert_eq!(
            kind(&[solid(3, 2, [0; 3])], 12),
            MediaErrorKind::InvalidInput
        );
        assert_eq!(
            kind(&[frame, solid(2, 2, [0; 3])], 12),
            MediaErrorKind::InvalidInput
        );
    }
}
