//! The inference crate's integration tests in one binary: the reference model against PyTorch,
//! the fleet's models through the manifest and the engine, RIFE and the chains, the MTCNN face
//! detector, and the `clip-frames` tool.

#[cfg(feature = "cli")]
mod adapters;
mod clip_frames;
mod faces;
mod fleet_models;
mod interpolation;
mod reference_model;
mod support;
