//! The inference crate's integration tests in one binary: the reference model against PyTorch,
//! the fleet's models through the manifest and the engine, and the `clip-frames` tool.

#[cfg(feature = "cli")]
mod clip_frames;
mod fleet_models;
mod reference_model;
