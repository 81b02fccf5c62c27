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
    let mut pixels = Vec::with_capacity(first.data.len() * frames.len());
    for frame in frames {
        pixels.extend_from_slice(&frame.borrow().data);
    }
    let batch = i64::try_from(frames.len()).unwrap_or(i64::MAX);
    Tensor::from_slice(&pixels)
        .f_view([batch, i64::from(height), i64::from(width), 3])
        .and_then(|t| t.f_permute([0, 3, 1, 2]))
        .and_then(|t| t.f_to_device(device))
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_div_scalar(255.0))
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
        .map_err(|err| InferError::from_tch("tensor to frames", err, InferErrorKind::ModelError))?;
    let frame_len = usize::try_from(height * width * 3).unwrap_or(0);
    let (width, height) = (
        u32::try_from(width).unwrap_or(0),
        u32::try_from(height).unwrap_or(0),
    );
    let frames_per_video = usize::try_from(frames).unwrap_or(0);
    let mut videos = Vec::with_capacity(usize::try_from(batch).unwrap_or(0));
    for video in bytes.chunks(frame_len * frames_per_video.max(1)) {
        let frames = video
            .chunks(frame_len)
            .map(|chunk| RgbFrame::new(width, height, chunk.to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        videos.push(frames);
    }
    Ok(videos)
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
