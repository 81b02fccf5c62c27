//! Media for clipfleet: untrusted photos in, MP4 video (or a still JPEG) out.
//!
//! Intake takes JPEG, PNG, WebP and (with the `heic` feature) HEIC from users: recognised by
//! magic bytes, probed from the header alone so oversize images and pixel bombs are refused
//! before decoding, decoded within [`Limits`] with EXIF orientation applied, converted to 8-bit
//! RGB and fitted to the model's input. Every failure is a typed [`MediaError`] whose kind maps
//! to a protocol [`clipfleet_proto::ErrorCode`]; no input makes it panic.
//!
//! Output is MP4 (H.264, yuv420p, BT.709-tagged, moov before mdat) through one
//! [`VideoEncoder`] trait with two encoders: [`FfmpegEncoder`] (the `ffmpeg` CLI with libx264,
//! smallest files) and [`Openh264Encoder`] (in-process openh264 + muxide, no runtime
//! dependency). Both are held to the same ffprobe checks in `tests/encoders.rs`;
//! [`SizeRoutedEncoder`] sends small clips to one and the rest to the other.
//!
//! Modules:
//! - `error`: [`MediaError`] and [`MediaErrorKind`].
//! - `frame`: [`RgbImage`], packed RGB8, layout-compatible with the inference crate's frames.
//! - `sniff`: [`sniff`] and [`ImageFormat`].
//! - `limits`: [`Limits`] on bytes, sides, pixels and allocation.
//! - `intake`: [`probe`] (header only) and [`decode`] (bounded, oriented, RGB).
//! - `jpeg`: the check that a JPEG's scans run to its end-of-image marker.
//! - `heic`: libheif behind the `heic` feature.
//! - `fit`: [`fit`] with [`FitMode`], resize and cover-crop; [`fit_around`] a point, [`fit_within`]
//!   a box.
//! - `still`: [`encode_jpeg`], one frame as a metadata-free JPEG (image-to-image jobs).
//! - `encoder`: the [`VideoEncoder`] trait, frame checks, RGB → BT.709 I420.
//! - `ffmpeg`: [`FfmpegEncoder`].
//! - `h264`: [`Openh264Encoder`].
//! - `routed`: [`SizeRoutedEncoder`], small clips to one encoder and the rest to another.

mod encoder;
mod error;
mod ffmpeg;
mod fit;
mod frame;
mod h264;
mod heic;
mod intake;
mod jpeg;
mod limits;
mod routed;
mod sniff;
mod still;

pub use encoder::{MAX_FPS, MAX_FRAMES, MAX_VIDEO_SIDE_PX, VideoEncoder};
pub use error::{MediaError, MediaErrorKind};
pub use ffmpeg::FfmpegEncoder;
pub use fit::{Crop, FitMode, MAX_FIT_SIDE_PX, cover_crop, fit, fit_around, fit_within};
pub use frame::RgbImage;
pub use h264::Openh264Encoder;
pub use intake::{ImageInfo, decode, decode_within, probe};
pub use limits::Limits;
pub use routed::{DEFAULT_SMALL_CLIP_PIXELS, SizeRoutedEncoder};
pub use sniff::{ImageFormat, sniff};
pub use still::{STILL_JPEG_QUALITY, encode_jpeg};
