//! 8-bit RGB pixels to model tensors and back.

use std::borrow::Borrow;

use tch::{Device, Kind, Tensor};

use crate::{InferError, InferErrorKind};

/// An image as tightly packed 8-bit RGB, row-major (`width * height * 3` bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct RgbFrame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, R G B per pixel.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for RgbFrame {
    // Pixels are user media: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbFrame({}x{})", self.width, self.height)
    }
}

impl RgbFrame {
    /// Checks that `data` holds exactly `width * height` RGB pixels.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self, InferError> {
        let expected = u64::from(width) * u64::from(height) * 3;
        if width == 0 || height == 0 || data.len() as u64 != expected {
            return Err(InferError::new(
                InferErrorKind::InvalidInput,
                format!(
                    "{width}x{height} RGB needs {expected} bytes, got {}",
                    data.len()
                ),
            ));
        }
        Ok(RgbFrame {
            width,
            height,
            data,
        })
    }
}

/// Stacks same-sized frames into a `float32[B, 3, H, W]` batch in [0, 1] on `device`.
/// Takes frames or references to them, so a batch of queued jobs is stacked without copying
/// each image first.
pub fn frames_to_batch<F: Borrow<RgbFrame>>(
    frames: &[F],
    device: Device,
) -> Result<Tensor, InferError> {
    let first = frames
        .first()
        .map(Borrow::borrow)
        .ok_or_else(|| InferError::new(InferErrorKind::InvalidInput, "empty batch"))?;
    let (width, height) = (first.width, first.height);
    if let Some(other) = frames
        .iter()
        .map(Borrow::borrow)
        .find(|f: &&RgbFrame| (f.width, f.height) != (width, height))
    {
        return Err(InferError::new(
            InferErrorKind::InvalidInput,
            format!(
                "batch mixes {width}x{height} with {}x{}",
                other.width, other.height
            ),
        ));
    }
    let batch = i64::try_from(frames.len()).unwrap_or(i64::MAX);
    let shape = [batch, i64::from(height), i64::from(width), 3];
    let tensor = if device == Device::Cpu {
        // One pass in Rust instead of three tensor passes (copy, to float, divide): for small
        // images the passes cost more than the model. Same values as `to_kind` + `/ 255.0`.
        let mut pixels = Vec::with_capacity(first.data.len() * frames.len());
        for frame in frames {
            pixels.extend(frame.borrow().data.iter().map(|&v| f32::from(v) / 255.0));
        }
        Tensor::from_slice(&pixels).f_view(shape)
    } else {
        // Off the CPU, 8 bits travel to the device (a quarter of the bytes) and convert there.
        let mut pixels = Vec::with_capacity(first.data.len() * frames.len());
        for frame in frames {
            pixels.extend_from_slice(&frame.borrow().data);
        }
        Tensor::from_slice(&pixels)
            .f_view(shape)
            .and_then(|t| t.f_to_device(device))
            .and_then(|t| t.f_to_kind(Kind::Float))
            .and_then(|t| t.f_div_scalar(255.0))
    };
    // Channels-first by shape, channels-last in memory (as the pixels came): convolutions on
    // the CPU run faster on this layout than on a contiguous NCHW copy.
    tensor
        .and_then(|t| t.f_permute([0, 3, 1, 2]))
        .map_err(|err| InferError::from_tch("frames to tensor", err, InferErrorKind::InvalidInput))
}

/// Splits a `float32[B, T, 3, H, W]` video into `B` lists of `T` frames, rounding to 8 bits.
pub fn video_to_frames(video: &Tensor) -> Result<Vec<Vec<RgbFrame>>, InferError> {
    let [batch, frames, channels, height, width] = video.size()[..] else {
        return Err(InferError::new(
            InferErrorKind::ModelError,
            format!("video must be [B, T, 3, H, W], got {:?}", video.size()),
        ));
    };
    if channels != 3 {
        return Err(InferError::new(
            InferErrorKind::ModelError,
            format!("video must have 3 channels, got {channels}"),
        ));
    }
    let dims = [batch, frames, height, width].map(|d| usize::try_from(d).unwrap_or(0));
    let [batch, frames, height, width] = dims;
    let plane = height * width;
    let to_frame = |data: Vec<u8>| {
        RgbFrame::new(
            u32::try_from(width).unwrap_or(0),
            u32::try_from(height).unwrap_or(0),
            data,
        )
    };
    let tch_error = |err| InferError::from_tch("tensor to frames", err, InferErrorKind::ModelError);
    let mut videos = Vec::with_capacity(batch);
    if video.device() == Device::Cpu {
        // One copy out of the tensor, then one pass that rounds, clamps and interleaves:
        // instead of five tensor passes and a copy per frame.
        let floats = video
            .f_to_kind(Kind::Float)
            .and_then(|t| t.f_contiguous())
            .and_then(|t| t.f_flatten(0, -1))
            .and_then(|t| Vec::<f32>::try_from(&t))
            .map_err(tch_error)?;
        for clip in floats.chunks_exact((3 * plane * frames).max(1)).take(batch) {
            let mut out = Vec::with_capacity(frames);
            // Each plane to 8 bits in a loop the compiler vectorises, then one interleaving
            // pass over bytes (rounding while interleaving did not vectorise: the worker bench's
            // 64×64×4 noop dispatch rose 7-13 % with this).
            let mut bytes = vec![0u8; 3 * plane];
            for planes in clip.chunks_exact(3 * plane) {
                for (dst, src) in bytes.iter_mut().zip(planes) {
                    *dst = to_u8(*src);
                }
                let (red, rest) = bytes.split_at(plane);
                let (green, blue) = rest.split_at(plane);
                let mut data = vec![0; 3 * plane];
                for (pixel, ((&r, &g), &b)) in data
                    .chunks_exact_mut(3)
                    .zip(red.iter().zip(green).zip(blue))
                {
                    pixel.copy_from_slice(&[r, g, b]);
                }
                out.push(to_frame(data)?);
            }
            videos.push(out);
        }
        return Ok(videos);
    }
    // On a device: round to 8 bits there, so a quarter of the bytes come back.
    let bytes: Vec<u8> = video
        .f_clamp(0.0, 1.0)
        .and_then(|t| t.f_mul_scalar(255.0))
        .and_then(|t| t.f_round())
        .and_then(|t| t.f_to_kind(Kind::Uint8))
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_permute([0, 1, 3, 4, 2]))
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_flatten(0, -1))
        .and_then(|t| Vec::<u8>::try_from(&t))
        .map_err(tch_error)?;
    for clip in bytes.chunks_exact((3 * plane * frames).max(1)).take(batch) {
        let out = clip
            .chunks_exact(3 * plane)
            .map(|chunk| to_frame(chunk.to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        videos.push(out);
    }
    Ok(videos)
}

/// A model's [0, 1] sample as 8 bits, as the device path computes it: clamp, scale, round half
/// to even (`torch.round`); NaN becomes 0.
#[allow(clippy::manual_clamp)] // `clamp` keeps NaN; `max`/`min` turn it into 0
fn to_u8(value: f32) -> u8 {
    // Adding 2^23 rounds a float in [0, 2^23) to an integer, ties to even, in the FPU's default
    // mode, and leaves that integer in the low mantissa bits: what `round_ties_even` does,
    // without the libm call it compiles to on baseline x86-64 (a profile showed `rintf` at 4 %
    // of a noop worker's CPU) and without a saturating cast, so the loop vectorises.
    const SHIFT: f32 = 8_388_608.0;
    let scaled = value.max(0.0).min(1.0) * 255.0;
    (scaled + SHIFT).to_bits() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32, shift: u8) -> RgbFrame {
        let data = (0..width * height * 3)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(shift))
            .collect();
        RgbFrame::new(width, height, data).expect("frame")
    }

    #[test]
    fn pixels_survive_the_round_trip_through_a_video_tensor() {
        let frames = [gradient(5, 3, 0), gradient(5, 3, 100)];
        let batch = frames_to_batch(&frames, Device::Cpu).expect("batch");
        assert_eq!(batch.size(), [2, 3, 3, 5]);
        // A two-frame "video" per image: the image, then the image again.
        let video = Tensor::stack(&[&batch, &batch], 1);
        let back = video_to_frames(&video).expect("frames");
        assert_eq!(back.len(), 2);
        for (original, video) in frames.iter().zip(&back) {
            assert_eq!(video.len(), 2);
            assert!(video.iter().all(|frame| frame == original));
        }
    }

    #[test]
    fn the_cpu_conversion_matches_the_tensor_ops_of_the_device_path() {
        // Out of range, exact halves (ties go to even, as torch.round), NaN, a channels-last
        // (non-contiguous) video: the Rust pass must give the bytes the tensor ops give.
        let mut values: Vec<f32> = vec![-0.5, 1.5, f32::NAN, 0.0, 1.0];
        values.extend((0..=255).map(|k| (k as f32 + 0.5) / 255.0));
        values.extend((0..39).map(|k| k as f32 * 0.0301));
        // 300 samples: one 20x5 frame of 3 channels.
        let count = values.len() as i64;
        assert_eq!(count, 300);
        let video = Tensor::from_slice(&values)
            .view([1, 1, 5, count / 15, 3])
            .permute([0, 1, 4, 2, 3]);
        assert!(!video.is_contiguous());
        let expected: Vec<u8> = Vec::try_from(
            &video
                .clamp(0.0, 1.0)
                .f_mul_scalar(255.0)
                .unwrap()
                .round()
                .to_kind(Kind::Uint8)
                .permute([0, 1, 3, 4, 2])
                .contiguous()
                .flatten(0, -1),
        )
        .unwrap();
        let frames = video_to_frames(&video).expect("frames");
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].len(), 1);
        // NaN: torch's cast of NaN is unspecified; ours is 0. Compare everything else.
        let ours = &frames[0][0].data;
        let nan_at = 2;
        for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
            if i != nan_at {
                assert_eq!(a, b, "sample {i} ({})", values[i]);
            }
        }
        assert_eq!(ours[nan_at], 0);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        assert!(RgbFrame::new(4, 4, vec![0; 47]).is_err());
        let mixed = [gradient(4, 4, 0), gradient(4, 5, 0)];
        let err = frames_to_batch(&mixed, Device::Cpu).expect_err("mixed sizes");
        assert_eq!(err.kind, InferErrorKind::InvalidInput);
        assert!(frames_to_batch::<RgbFrame>(&[], Device::Cpu).is_err());
        let four_d = Tensor::zeros([1, 3, 4, 4], (Kind::Float, Device::Cpu));
        assert_eq!(
            video_to_frames(&four_d).expect_err("not a video").kind,
            InferErrorKind::ModelError
        );
    }
}
