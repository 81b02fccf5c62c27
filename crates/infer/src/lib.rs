//! The inference engine: TorchScript image-to-video models on libtorch through `tch`, on CUDA
//! when the node has it and on the CPU everywhere else.
//!
//! A model is a TorchScript module with the contract
//! `forward(image: float32[B, 3, H, W] in [0, 1]) -> float32[B, T, 3, H, W] in [0, 1]`.
//! This crate builds on its own (tch and a few small crates, no AWS SDK, no broker) so it can be
//! vendored onto a GPU node that reaches no registry; see `docs/CUDA-NODES.md`.
//!
//! Modules:
//! - `model`: [`VideoModel`], loading a module onto a device and running a batch through it.
//! - `frames`: [`RgbFrame`], conversions between 8-bit RGB pixels and model tensors.
//! - `error`: [`InferError`] and its [`InferErrorKind`]; tch errors are classified in one place.

mod error;
mod frames;
mod model;

pub use error::{InferError, InferErrorKind};
pub use frames::{RgbFrame, frames_to_batch, video_to_frames};
pub use model::VideoModel;
pub use tch::Device;
