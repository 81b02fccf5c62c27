//! [`Openh264Encoder`]: in-process H.264 with openh264 (built from source, no runtime
//! dependency), muxed into a faststart MP4 by muxide. `mp4` 0.14 writes moov last, which is
//! why muxide (DESIGN.md §7).
//!
//! Setting up an openh264 encoder allocates and clears its tables and frame buffers, which
//! for a small clip costs more than encoding it (a profile of 64×64×4 clips: a fifth of the
//! worker's CPU in `memset` and `MvdCostInit`). So each thread keeps its last encoder and
//! reuses it for the next clip of the same size and rate, starting that clip with an IDR
//! frame: every file still decodes on its own.

use std::cell::RefCell;

use muxide::api::{MuxerBuilder, VideoCodec};
use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::encoder::{
    Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    VuiConfig,
};
use openh264::formats::YUVSlices;

use crate::encoder::{I420, check_frames, clip_pixels};
use crate::{MediaError, MediaErrorKind, RgbImage, VideoEncoder};

/// H.264 through openh264 and muxide, all in this process, at openh264's constant base QP (26).
///
/// Constant QP rather than a bit rate: openh264 meets a bit rate only by skipping frames, which
/// would leave the file short, and without skipping it warns on stderr at every encode and
/// overshoots anyway. Measured on a 48-frame 512² clip: 2 Mbit/s mode gave 154 KB at 44.2 dB
/// PSNR in 0.41 s, QP 26 gives 53 KB at 42.1 dB in 0.29 s (x264 veryfast crf 23: 31 KB). The
/// crate exposes no other fixed QP, hence no knob.
///
/// Low complexity, with scene-change detection, background detection and adaptive quantisation
/// off (a constant QP needs none of them): on a 48-frame 512² zoom over the sample photo the
/// same 35.0 dB PSNR in 36.8 KB instead of 41.7 KB, and the media bench's encodes 28-31 %
/// faster (512²×48 98 → 71 ms, 256²×16 9.8 → 6.8 ms, 64²×4 165 → 130 µs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Openh264Encoder;

fn failed(context: &str, err: impl std::fmt::Display) -> MediaError {
    MediaError::new(MediaErrorKind::EncoderFailed, format!("{context}: {err}"))
}

/// What an encoder was set up for: width, height, frames per second.
type Shape = (u32, u32, u32);

thread_local! {
    /// This thread's last encoder, with the shape it was set up for.
    static REUSABLE: RefCell<Option<(Shape, Encoder)>> = const { RefCell::new(None) };
}

/// An encoder for `shape`: this thread's last one if it matches (told to start with an IDR
/// frame), otherwise a new one.
fn encoder_for(shape: Shape) -> Result<Encoder, MediaError> {
    let reused = REUSABLE.with(|slot| match slot.borrow_mut().take() {
        Some((kept, encoder)) if kept == shape => Some(encoder),
        _ => None,
    });
    if let Some(mut encoder) = reused {
        encoder.force_intra_frame();
        return Ok(encoder);
    }
    let fps = shape.2;
    let config = EncoderConfig::new()
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        .rate_control_mode(RateControlMode::Off)
        .complexity(Complexity::Low)
        .scene_change_detect(false)
        .background_detection(false)
        .adaptive_quantization(false)
        // A skipped frame would leave the file a frame short.
        .skip_frames(false)
        // A keyframe every two seconds: seeking in longer clips stays cheap.
        .intra_frame_period(IntraFramePeriod::from_num_frames(fps * 2))
        // The SPS says what `I420::fill` produced: BT.709, limited range.
        .vui(VuiConfig::bt709());
    Encoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|err| failed("openh264 init", err))
}

/// Clips of at most this many pixels (all frames together: 64×64×4) encode in about 0.13 ms
/// (media bench), less than handing them to a blocking thread and back costs.
const QUICK_CLIP_PIXELS: u64 = 64 * 64 * 4;

impl VideoEncoder for Openh264Encoder {
    fn name(&self) -> &'static str {
        "openh264"
    }

    fn is_quick(&self, frames: &[RgbImage]) -> bool {
        clip_pixels(frames) <= QUICK_CLIP_PIXELS
    }

    fn encode(&self, frames: &[RgbImage], fps: u32) -> Result<Vec<u8>, MediaError> {
        let (width, height) = check_frames(frames, fps)?;
        let shape = (width, height, fps);
        let mut encoder = encoder_for(shape)?;
        let mp4 = encode_with(&mut encoder, frames, width, height, fps)?;
        // Only an encoder that finished its clip cleanly is kept for the next one.
        REUSABLE.with(|slot| *slot.borrow_mut() = Some((shape, encoder)));
        Ok(mp4)
    }
}

fn encode_with(
    encoder: &mut Encoder,
    frames: &[RgbImage],
    width: u32,
    height: u32,
    fps: u32,
) -> Result<Vec<u8>, MediaError> {
    let mut muxer = MuxerBuilder::new(Vec::new())
        .video(VideoCodec::H264, width, height, f64::from(fps))
        .with_fast_start(true)
        .build()
        .map_err(|err| failed("muxide init", err))?;
    let (w, h) = (width as usize, height as usize);
    let mut yuv = I420::default();
    let mut access_unit = Vec::new();
    for (index, frame) in frames.iter().enumerate() {
        yuv.fill(frame);
        let slices = YUVSlices::new((&yuv.y, &yuv.u, &yuv.v), (w, h), (w, w / 2, w / 2));
        let millis = index as u64 * 1000 / u64::from(fps);
        let bitstream = encoder
            .encode_at(&slices, Timestamp::from_millis(millis))
            .map_err(|err| failed("openh264 encode", err))?;
        let keyframe = matches!(bitstream.frame_type(), FrameType::IDR | FrameType::I);
        access_unit.clear();
        bitstream.write_vec(&mut access_unit);
        if access_unit.is_empty() {
            return Err(MediaError::new(
                MediaErrorKind::EncoderFailed,
                format!("openh264 produced no data for frame {index}"),
            ));
        }
        let pts_s = index as f64 / f64::from(fps);
        muxer
            .write_video(pts_s, &access_unit, keyframe)
            .map_err(|err| failed("muxide write", err))?;
    }
    muxer
        .finish_in_place()
        .map_err(|err| failed("muxide finish", err))?;
    Ok(muxer.into_writer())
}
