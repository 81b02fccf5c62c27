//! What a worker process sets up before [`crate::run`]: its models on the engine, its encoder,
//! and the device label its heartbeats carry. Shared by `clip-worker` and the embedded fleet.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clipfleet_infer::{Device, Engine, EngineConfig, ModelRegistry, ModelSpec};
use clipfleet_media::{
    DEFAULT_SMALL_CLIP_PIXELS, FfmpegEncoder, Openh264Encoder, SizeRoutedEncoder, VideoEncoder,
};

/// The repository's model manifest, where a process built from this checkout finds it.
pub const DEFAULT_MANIFEST: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/manifest.toml");

/// Loads what serving the models `served` (`name@version`) takes from `manifest` (each, and a
/// chain's stages; sha256 checked) onto the best device, warms them up and starts the engine;
/// returns it with the loaded entries.
pub fn load_engine(manifest: &Path, served: &[String]) -> anyhow::Result<(Engine, Vec<ModelSpec>)> {
    let registry = ModelRegistry::load_serving(manifest, Device::cuda_if_available(), served)
        .with_context(|| format!("load the models of {}", manifest.display()))?;
    let models = registry.specs().cloned().collect();
    Ok((Engine::start(registry, EngineConfig::default())?, models))
}

/// Where ffmpeg is installed, ffmpeg/x264 for clips over [`DEFAULT_SMALL_CLIP_PIXELS`] (its
/// files are smaller) and openh264 in-process below (a process per clip costs more than such a
/// clip's whole encode); without ffmpeg, openh264 for everything.
pub fn default_encoder() -> Arc<dyn VideoEncoder> {
    match FfmpegEncoder::detect() {
        Ok(ffmpeg) => Arc::new(SizeRoutedEncoder::new(
            Arc::new(Openh264Encoder),
            Arc::new(ffmpeg),
            DEFAULT_SMALL_CLIP_PIXELS,
        )),
        Err(_) => Arc::new(Openh264Encoder),
    }
}

/// Where inference runs (`cpu`, `cuda:0`), for heartbeats.
pub fn device_label() -> String {
    match Device::cuda_if_available() {
        Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".into(),
    }
}
