//! [`SizeRoutedEncoder`]: small clips to one encoder, the rest to another.
//!
//! Starting `ffmpeg` costs a process spawn, a pipe and x264's setup for every clip (several
//! milliseconds of CPU), which is more than openh264 needs for a whole thumbnail-sized clip;
//! x264's smaller files only pay for themselves on larger clips. The media bench measures both
//! sides (`cargo bench -p clipfleet-benches --bench media`).

use std::sync::Arc;

use crate::encoder::clip_pixels;
use crate::{MediaError, RgbImage, VideoEncoder};

/// Clips of at most this many pixels (width × height × frames) go to the small-clip encoder by
/// default: 256×256×16, about a million.
pub const DEFAULT_SMALL_CLIP_PIXELS: u64 = 256 * 256 * 16;

/// Sends clips of at most `small_clip_pixels` (width × height × frames) to `small`, others to
/// `large`. Both must keep the [`VideoEncoder`] contract; the caller sees one encoder.
#[derive(Debug, Clone)]
pub struct SizeRoutedEncoder {
    small: Arc<dyn VideoEncoder>,
    large: Arc<dyn VideoEncoder>,
    small_clip_pixels: u64,
}

impl SizeRoutedEncoder {
    /// Routes clips of at most `small_clip_pixels` to `small`, the rest to `large`.
    pub fn new(
        small: Arc<dyn VideoEncoder>,
        large: Arc<dyn VideoEncoder>,
        small_clip_pixels: u64,
    ) -> Self {
        SizeRoutedEncoder {
            small,
            large,
            small_clip_pixels,
        }
    }

    /// The encoder that would take `frames`.
    pub fn route(&self, frames: &[RgbImage]) -> &dyn VideoEncoder {
        if clip_pixels(frames) <= self.small_clip_pixels {
            self.small.as_ref()
        } else {
            self.large.as_ref()
        }
    }
}

impl VideoEncoder for SizeRoutedEncoder {
    fn name(&self) -> &'static str {
        "size-routed"
    }

    fn encode(&self, frames: &[RgbImage], fps: u32) -> Result<Vec<u8>, MediaError> {
        self.route(frames).encode(frames, fps)
    }

    fn is_quick(&self, frames: &[RgbImage]) -> bool {
        self.route(frames).is_quick(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records nothing, answers with its name: enough to see where a clip went.
    #[derive(Debug)]
    struct Named(&'static str);

    impl VideoEncoder for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn encode(&self, _frames: &[RgbImage], _fps: u32) -> Result<Vec<u8>, MediaError> {
            Ok(self.0.as_bytes().to_vec())
        }
    }

    fn clip(side: u32, frames: usize) -> Vec<RgbImage> {
        let frame = RgbImage::new(side, side, vec![0; (side * side * 3) as usize]).unwrap();
        vec![frame; frames]
    }

    #[test]
    fn clips_go_by_their_pixel_count() {
        let routed = SizeRoutedEncoder::new(
            Arc::new(Named("small")),
            Arc::new(Named("large")),
            64 * 64 * 4,
        );
        assert_eq!(routed.encode(&clip(64, 4), 24).unwrap(), b"small");
        assert_eq!(routed.encode(&clip(64, 5), 24).unwrap(), b"large");
        assert_eq!(routed.encode(&clip(66, 4), 24).unwrap(), b"large");
        assert_eq!(routed.route(&clip(32, 1)).name(), "small");
        // No frames: the small encoder refuses them as the contract says.
        assert_eq!(routed.route(&[]).name(), "small");
    }

    #[test]
    fn only_clips_the_chosen_encoder_finds_quick_may_run_in_place() {
        let routed = SizeRoutedEncoder::new(
            Arc::new(crate::Openh264Encoder),
            Arc::new(Named("large")),
            DEFAULT_SMALL_CLIP_PIXELS,
        );
        assert!(routed.is_quick(&clip(64, 4)));
        assert!(routed.is_quick(&clip(16, 1)));
        // openh264 takes it, but it is not quick.
        assert!(!routed.is_quick(&clip(64, 5)));
        assert!(!routed.is_quick(&clip(256, 16)));
        // An encoder that does not say is never quick.
        assert!(!Named("large").is_quick(&clip(16, 1)));
    }
}
