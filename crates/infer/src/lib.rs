//! The inference engine: TorchScript image-to-video models on libtorch through `tch`, on CUDA
//! when the node has it and on the CPU everywhere else.
//!
//! A fleet model keeps the contract
//! `forward(image: float32[B, 3, H, W] in [0, 1], params: float32[B, 6], frames: int) ->
//! float32[B, frames, 3, H, W] in [0, 1]` (`models/README.md`); the models a worker serves are
//! listed in `models/manifest.toml`. This crate builds on its own (tch and a few small crates,
//! no AWS SDK, no broker) so it can be vendored onto a GPU node that reaches no registry; see
//! `docs/CUDA-NODES.md`.
//!
//! Modules:
//! - `registry`: [`ModelRegistry`], every model loaded, checksum-verified and warmed up.
//! - `engine`: [`Engine`], the inference thread with dynamic batching.
//! - `split`: halving a failed batch so each job keeps its own result.
//! - `model`: [`VideoModel`], one module on one device, contract-checked both ways.
//! - `adapter`: [`Adapter`], a session's personalised adapter: trained with autograd on the
//!   session's photos ([`train`]), scoped to its account, session and model, applied after the
//!   base model.
//! - `faces`: [`FaceBox`], a detector's face box (held in a job's memory only, never printed).
//! - `frames`: [`RgbFrame`], conversions between 8-bit RGB pixels and tensors.
//! - `error`: [`InferError`] and its [`InferErrorKind`]; tch errors are classified in one place.

mod adapter;
mod engine;
mod error;
mod faces;
mod frames;
mod model;
mod registry;
mod split;

pub use adapter::{Adapter, AdapterScope, TrainingReport, train};
pub use clipfleet_models::{
    AdapterKind, AdapterSpec, BatchLimits, ChainStage, Framing, InputSize, LearningRate,
    MANIFEST_VERSION, Manifest, ManifestError, ModelDtype, ModelOutput, ModelRole, ModelSpec,
};
pub use engine::{
    DetectRequest, Engine, EngineConfig, EngineStats, GenerateRequest, MAX_BATCH_LIMIT,
    PersonalizeRequest,
};
pub use error::{InferError, InferErrorKind};
pub use faces::FaceBox;
pub use frames::{RgbFrame, frames_to_batch, video_to_frames};
pub use model::{PARAMS_LEN, VideoModel};
pub use registry::{LoadedModel, ModelRegistry};
pub use tch::Device;
