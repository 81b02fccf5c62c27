//! The models a worker serves, loaded once: every file checked against the manifest's sha256,
//! placed on the device, and warmed up with one forward pass at its real shape — the worker
//! reports ready only after that. A chain entry loads nothing of its own: its stages are entries
//! too, loaded and warmed up like any other.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};
use tracing::info;

use crate::{InferError, InferErrorKind, PARAMS_LEN, VideoModel};
use clipfleet_models::{Manifest, ModelRole, ModelSpec};

/// Largest model file read (a guard against pointing the manifest at something huge).
const MAX_MODEL_BYTES: u64 = 8 << 30;

/// A loaded model and its manifest entry.
#[derive(Debug)]
pub struct LoadedModel {
    /// What the manifest says about it.
    pub spec: ModelSpec,
    /// The module on its device.
    pub model: VideoModel,
    /// Milliseconds the warm-up forward pass took.
    pub warmup_ms: u64,
}

/// Every model of a manifest, ready to run.
#[derive(Debug)]
pub struct ModelRegistry {
    models: HashMap<(String, String), LoadedModel>,
    /// Chain entries, whose stages are in `models`.
    chains: HashMap<(String, String), ModelSpec>,
    device: Device,
}

fn load_error(message: String) -> InferError {
    InferError::new(InferErrorKind::ModelLoad, message)
}

impl ModelRegistry {
    /// Loads, verifies and warms up every model of the manifest at `path` onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<Self, InferError> {
        ModelRegistry::load_manifest(Manifest::load(path)?, device)
    }

    /// Loads only what serving the models `keys` (`name@version`) takes: each of them and a
    /// chain's stages. A worker of one pool holds no other pool's weights.
    pub fn load_serving(path: &Path, device: Device, keys: &[String]) -> Result<Self, InferError> {
        ModelRegistry::load_manifest(Manifest::load(path)?.serving(keys)?, device)
    }

    /// Loads, verifies and warms up every entry of `manifest`.
    pub fn load_manifest(manifest: Manifest, device: Device) -> Result<Self, InferError> {
        let mut models = HashMap::new();
        let mut chains = HashMap::new();
        for spec in manifest.models {
            if spec.is_chain() {
                chains.insert((spec.name.clone(), spec.version.clone()), spec);
                continue;
            }
            let file = manifest.dir.join(&spec.file);
            let bytes = read_verified(&file, &spec.sha256)?;
            let model = VideoModel::load_bytes(&bytes, &file, device, spec.dtype)?;
            let started = Instant::now();
            warm_up(&model, &spec)?;
            let warmup_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            info!(model = %spec.key(), ?device, warmup_ms, "model ready");
            models.insert(
                (spec.name.clone(), spec.version.clone()),
                LoadedModel {
                    spec,
                    model,
                    warmup_ms,
                },
            );
        }
        Ok(ModelRegistry {
            models,
            chains,
            device,
        })
    }

    /// The chain entry `name` at `version`; its stages are [`ModelRegistry::get`]'s.
    pub fn chain(&self, name: &str, version: &str) -> Option<&ModelSpec> {
        self.chains.get(&(name.to_owned(), version.to_owned()))
    }

    /// The manifest entry of every model and chain loaded.
    pub fn specs(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models
            .values()
            .map(|loaded| &loaded.spec)
            .chain(self.chains.values())
    }

    /// The model `name` at `version`.
    pub fn get(&self, name: &str, version: &str) -> Option<&LoadedModel> {
        self.models.get(&(name.to_owned(), version.to_owned()))
    }

    /// Every loaded model.
    pub fn models(&self) -> impl Iterator<Item = &LoadedModel> {
        self.models.values()
    }

    /// Where the models run.
    pub fn device(&self) -> Device {
        self.device
    }
}

/// Reads a model file and checks its digest before anything parses it.
fn read_verified(file: &Path, expected: &str) -> Result<Vec<u8>, InferError> {
    let handle = std::fs::File::open(file)
        .map_err(|err| load_error(format!("open {}: {err}", file.display())))?;
    let mut bytes = Vec::new();
    handle
        .take(MAX_MODEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| load_error(format!("read {}: {err}", file.display())))?;
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(load_error(format!(
            "{} is over {MAX_MODEL_BYTES} bytes",
            file.display()
        )));
    }
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != expected {
        return Err(load_error(format!(
            "{}: sha256 {digest} is not the manifest's {expected}: refusing to run an unreviewed model",
            file.display()
        )));
    }
    Ok(bytes)
}

/// One forward pass at the model's real shape, so the first job does not pay for lazy
/// initialisation (kernel selection, allocator growth) and a broken model fails at start.
fn warm_up(model: &VideoModel, spec: &ModelSpec) -> Result<(), InferError> {
    let (w, h) = (i64::from(spec.input.width), i64::from(spec.input.height));
    let image = Tensor::zeros([1, 3, h, w], (Kind::Float, model.device()));
    match spec.role {
        ModelRole::Generator => {
            let params = Tensor::zeros([1, PARAMS_LEN as i64], (Kind::Float, model.device()));
            model
                .generate(&image, &params, i64::from(spec.frames))
                .map(|_| ())
        }
        ModelRole::Interpolator => {
            let t = Tensor::full([1], 0.5, (Kind::Float, model.device()));
            model
                .interpolate(&image, &image.ones_like(), &t)
                .map(|_| ())
        }
        // Twice: TorchScript's executor profiles a function's first runs before it optimises,
        // and a detector's control flow (pyramid, NMS loops) is where that shows.
        ModelRole::Detector => (0..2).try_for_each(|_| model.detect(&image).map(|_| ())),
    }
}
