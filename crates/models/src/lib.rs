//! `models/manifest.toml`: which models the fleet serves, where their files are, their checksum,
//! input size, frames, fps and batch limit. A proprietary model drops in by adding an entry
//! (contract in `models/README.md`); no code changes.
//!
//! Workers load the files (through `clipfleet-infer`); ingest only reads the shapes to fill in
//! a job's parameters, so this crate has no libtorch. The repository's manifest is embedded
//! ([`Manifest::embedded`]) for processes that ship without the `models/` folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A manifest that cannot be read or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(String);

/// The repository's `models/manifest.toml`, as built into this crate.
pub const EMBEDDED_MANIFEST: &str = include_str!("../../../models/manifest.toml");

/// The manifest schema version this crate reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Element type a model computes in. Inputs are converted to it and outputs back to float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelDtype {
    /// 32-bit floats (every CPU and GPU).
    Float32,
    /// 16-bit floats (GPUs; halves activation memory).
    Float16,
}

/// Input size a model expects; the worker fits every photo to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSize {
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

/// Batching limits of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchLimits {
    /// Most jobs in one forward pass (what fits the device's memory at the model's shape).
    pub max: usize,
}

/// What a model entry does, which fixes the contract its TorchScript keeps (`models/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// Photo in, video out: `forward(image, params, frames)`. What jobs ask for.
    #[default]
    Generator,
    /// Two frames and an instant in, the frame between out: `forward(img0, img1, t)`. Runs only
    /// as a stage of a chain, never as a job's model.
    Interpolator,
    /// A photo in, face boxes out: `forward(image) -> boxes[N, 5]`. Frames the photo for the
    /// entries that name it in `framing`; never a job's model.
    Detector,
}

/// What a generator's job delivers: the frames it renders as an MP4, or its one frame as a
/// still image (image-to-image: portraits, beautification). Jobs of an `image` model are
/// `image` jobs on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelOutput {
    /// An H.264 MP4 of `frames` frames at `fps`.
    #[default]
    Video,
    /// A still image (JPEG, no metadata): the model renders `frames = 1`.
    Image,
}

/// The detector an entry frames its photos with (`framing = { model = "mtcnn", version =
/// "2.6.0" }`): the worker crops the photo around the faces it finds and hands the model their
/// centre as the camera's focus, instead of the middle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framing {
    /// Manifest name of a `detector` entry.
    pub model: String,
    /// Its version.
    pub version: String,
}

impl Framing {
    /// `name@version`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.model, self.version)
    }
}

/// The architecture of a personalised adapter (`models/README.md`, "Personalised adapters").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// A per-pixel residual MLP on the model's output colours (`3 → hidden → 3`, two 1×1
    /// convolutions, the second zero at the start so the untrained adapter is the identity):
    /// trained to keep the session's own tones under the model's style.
    Tone,
}

/// A learning rate: a positive float, compared by its bits (so a spec stays `Eq`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
pub struct LearningRate(pub f64);

impl PartialEq for LearningRate {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for LearningRate {}

/// How a session's personalised adapter of an image generator is trained (`adapter = { kind =
/// "tone", hidden = 16, steps = 200, learning_rate = 0.02, train_size = 128 }`): a
/// `personalize` job of the session runs `steps` Adam steps on its photos fitted to
/// `train_size`², the base model frozen; the session's later jobs of the model run through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterSpec {
    /// The architecture.
    pub kind: AdapterKind,
    /// Width of its hidden layer (1..=256).
    pub hidden: u32,
    /// Gradient steps per training (1..=5000).
    pub steps: u32,
    /// Adam's learning rate (0 < lr <= 1).
    pub learning_rate: LearningRate,
    /// The side of the square the photos are fitted to for training (16..=1024).
    pub train_size: u32,
}

/// One stage of a chain: the generator first (with the keyframes it renders), then each
/// interpolator (with the factor it multiplies the frame rate by).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainStage {
    /// Manifest name of the stage's model.
    pub model: String,
    /// Its version.
    pub version: String,
    /// The generator's keyframes (first stage only).
    #[serde(default)]
    pub frames: Option<u32>,
    /// Frames per gap after this interpolator: it fills `factor - 1` frames between each pair
    /// (interpolator stages only).
    #[serde(default)]
    pub factor: Option<u32>,
}

impl ChainStage {
    /// `name@version`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.model, self.version)
    }
}

/// One model of the manifest: a TorchScript file, or a chain of other entries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Name jobs ask for (`motion`).
    pub name: String,
    /// Version jobs ask for (`1`).
    pub version: String,
    /// What its TorchScript computes (generator unless said).
    #[serde(default)]
    pub role: ModelRole,
    /// TorchScript file, relative to the manifest (none for a chain).
    #[serde(default)]
    pub file: PathBuf,
    /// SHA-256 of the file (64 lowercase hex): a model that is not the one reviewed never runs.
    #[serde(default)]
    pub sha256: String,
    /// The models a chain runs, in order (empty for a file): a generator's keyframes, then each
    /// interpolator's in-betweens. The engine batches every stage across jobs.
    #[serde(default)]
    pub chain: Vec<ChainStage>,
    /// What it is, for operators.
    #[serde(default)]
    pub description: String,
    /// Where the weights come from (a package on a registry, or "ours").
    #[serde(default)]
    pub source: String,
    /// The weights' licence (SPDX id).
    #[serde(default)]
    pub licence: String,
    /// Input size.
    pub input: InputSize,
    /// Frames per video (a chain's after every stage; unused by an interpolator).
    #[serde(default)]
    pub frames: u32,
    /// Frames per second of the video (unused by an interpolator).
    #[serde(default)]
    pub fps: u32,
    /// Batch limits (an interpolator's: frames per pass).
    pub batch: BatchLimits,
    /// Compute type.
    #[serde(default = "float32")]
    pub dtype: ModelDtype,
    /// Aspect buckets it also renders (`"9:16"`, `"3:4"`, `"1:1"`, `"4:3"`, `"16:9"`), each at
    /// the pixel budget of `input` (see [`ModelSpec::aspect_size`]). Empty: `input` only.
    #[serde(default)]
    pub aspects: Vec<String>,
    /// What its jobs deliver (generators only): a video unless said.
    #[serde(default)]
    pub output: ModelOutput,
    /// The detector that frames its photos (generators and chains only). For a detector,
    /// `input` is the box a photo is scaled down into for detection.
    #[serde(default)]
    pub framing: Option<Framing>,
    /// The personalised adapter a session may train for it (image generators only); none: the
    /// model serves sessions without one, and `personalize` jobs for it are refused.
    #[serde(default)]
    pub adapter: Option<AdapterSpec>,
}

fn float32() -> ModelDtype {
    ModelDtype::Float32
}

/// The aspect buckets a manifest may list, as `width:height`.
pub const ASPECT_BUCKETS: [(&str, u32, u32); 5] = [
    ("9:16", 9, 16),
    ("3:4", 3, 4),
    ("1:1", 1, 1),
    ("4:3", 4, 3),
    ("16:9", 16, 9),
];

/// Sides of a bucket size are multiples of this (H.264 macroblocks; even for yuv420).
pub const SIDE_STEP: u32 = 16;

fn bucket(name: &str) -> Option<(u32, u32)> {
    ASPECT_BUCKETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, w, h)| (*w, *h))
}

impl ModelSpec {
    /// `name@version`, how logs and heartbeats name a model.
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Whether it is a chain of other entries rather than a file.
    pub fn is_chain(&self) -> bool {
        !self.chain.is_empty()
    }

    /// Whether jobs may ask for it (a generator or a chain, not an interpolator).
    pub fn is_servable(&self) -> bool {
        self.role == ModelRole::Generator
    }

    /// The models that run for a job of this entry, in order: its framing detector, then
    /// itself or its chain's stages (`mtcnn@2.6.0 → motion@1 → rife@3.9`).
    pub fn runs(&self) -> Vec<String> {
        let framing = self.framing.iter().map(Framing::key);
        if self.is_chain() {
            framing
                .chain(self.chain.iter().map(ChainStage::key))
                .collect()
        } else {
            framing.chain([self.key()]).collect()
        }
    }

    /// For a chain: the generator's keyframes that give `frames` frames after every
    /// interpolator, `None` when no whole number does (or for a file).
    pub fn keyframes_for(&self, frames: u32) -> Option<u32> {
        if !self.is_chain() {
            return None;
        }
        let factor: u32 = self.chain[1..]
            .iter()
            .map(|stage| stage.factor.unwrap_or(1))
            .product();
        let gaps = frames.checked_sub(1)?;
        (factor > 0 && gaps > 0 && gaps % factor == 0).then(|| gaps / factor + 1)
    }

    /// The size the model renders bucket `aspect` at: the largest sides, multiples of
    /// [`SIDE_STEP`], in that ratio (to the step) whose area is within `input`'s. A model that
    /// lists no buckets renders only its input size, which `1:1` names when it is square. `None`
    /// for any other bucket the model does not list.
    pub fn aspect_size(&self, aspect: &str) -> Option<(u32, u32)> {
        let (w, h) = (self.input.width, self.input.height);
        if self.aspects.is_empty() && aspect == "1:1" && w == h {
            return Some((w, h));
        }
        if !self.aspects.iter().any(|a| a == aspect) {
            return None;
        }
        let (aw, ah) = bucket(aspect)?;
        let budget = f64::from(self.input.width) * f64::from(self.input.height);
        let height = (budget * f64::from(ah) / f64::from(aw)).sqrt();
        let width = height * f64::from(aw) / f64::from(ah);
        let down = |side: f64| ((side / f64::from(SIDE_STEP)).floor() as u32).max(1) * SIDE_STEP;
        Some((down(width), down(height)))
    }

    /// The listed bucket nearest a `width`×`height` photo's aspect (by the ratio of ratios);
    /// `None` when the model lists none.
    pub fn nearest_aspect(&self, width: u32, height: u32) -> Option<&str> {
        let ratio = f64::from(width.max(1)) / f64::from(height.max(1));
        self.aspects
            .iter()
            .filter_map(|name| bucket(name).map(|(w, h)| (name, f64::from(w) / f64::from(h))))
            .min_by(|(_, a), (_, b)| (ratio / a).ln().abs().total_cmp(&(ratio / b).ln().abs()))
            .map(|(name, _)| name.as_str())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: u32,
    #[serde(rename = "model", default)]
    models: Vec<ModelSpec>,
}

/// A parsed and checked manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Directory the model files are relative to.
    pub dir: PathBuf,
    /// The models, in file order.
    pub models: Vec<ModelSpec>,
}

fn invalid(message: String) -> ManifestError {
    ManifestError(message)
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| invalid(format!("read manifest {}: {err}", path.display())))?;
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Manifest::parse(&text, dir)
    }

    /// The repository's manifest as built in, its files relative to `dir` (where a worker
    /// would find them; ingest never opens them).
    pub fn embedded(dir: PathBuf) -> Result<Self, ManifestError> {
        Manifest::parse(EMBEDDED_MANIFEST, dir)
    }

    /// The model `name@version`, if listed.
    pub fn find(&self, name: &str, version: &str) -> Option<&ModelSpec> {
        self.models
            .iter()
            .find(|spec| spec.name == name && spec.version == version)
    }

    /// The entries a worker needs to serve the models `keys` (`name@version`): each of them and
    /// the stages of a chain, in file order. A key the manifest does not list is an error.
    pub fn serving(&self, keys: &[String]) -> Result<Manifest, ManifestError> {
        let mut wanted: Vec<String> = Vec::new();
        for key in keys {
            let spec = self
                .models
                .iter()
                .find(|spec| &spec.key() == key)
                .ok_or_else(|| invalid(format!("{key} is not in the model manifest")))?;
            wanted.push(spec.key());
            wanted.extend(spec.chain.iter().map(ChainStage::key));
            wanted.extend(spec.framing.iter().map(Framing::key));
        }
        Ok(Manifest {
            dir: self.dir.clone(),
            models: self
                .models
                .iter()
                .filter(|spec| wanted.contains(&spec.key()))
                .cloned()
                .collect(),
        })
    }

    /// Parses manifest text whose files are relative to `dir`.
    pub fn parse(text: &str, dir: PathBuf) -> Result<Self, ManifestError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|err| invalid(format!("manifest: {err}")))?;
        if raw.version != MANIFEST_VERSION {
            return Err(invalid(format!(
                "manifest version {} is not supported (this build reads {MANIFEST_VERSION})",
                raw.version
            )));
        }
        if raw.models.is_empty() {
            return Err(invalid("manifest lists no models".into()));
        }
        for (index, spec) in raw.models.iter().enumerate() {
            let where_ = format!("model {} ({})", index, spec.key());
            if spec.is_chain() {
                check_chain(spec, &raw.models)
                    .map_err(|why| invalid(format!("{where_}: {why}")))?;
            } else {
                let hex_ok = spec.sha256.len() == 64
                    && spec
                        .sha256
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !hex_ok {
                    return Err(invalid(format!(
                        "{where_}: sha256 must be 64 lowercase hex characters"
                    )));
                }
                if spec.file.as_os_str().is_empty()
                    || spec.file.is_absolute()
                    || spec
                        .file
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(invalid(format!(
                        "{where_}: file must be a path inside the manifest's folder"
                    )));
                }
            }
            if spec.output == ModelOutput::Image
                && (spec.role != ModelRole::Generator || spec.is_chain() || spec.frames != 1)
            {
                return Err(invalid(format!(
                    "{where_}: an image model is a generator of one frame (frames = 1), not a chain"
                )));
            }
            if let Some(adapter) = &spec.adapter {
                let ranges_ok = (1..=256).contains(&adapter.hidden)
                    && (1..=5000).contains(&adapter.steps)
                    && adapter.learning_rate.0 > 0.0
                    && adapter.learning_rate.0 <= 1.0
                    && (16..=1024).contains(&adapter.train_size);
                if spec.output != ModelOutput::Image || spec.role != ModelRole::Generator {
                    return Err(invalid(format!(
                        "{where_}: only an image generator takes a personalised adapter"
                    )));
                }
                if !ranges_ok {
                    return Err(invalid(format!(
                        "{where_}: adapter hidden, steps, learning_rate or train_size out of range"
                    )));
                }
            }
            if let Some(framing) = &spec.framing {
                check_framing(spec, framing, &raw.models)
                    .map_err(|why| invalid(format!("{where_}: {why}")))?;
            }
            let video_ok = spec.role != ModelRole::Generator
                || ((1..=1024).contains(&spec.frames) && (1..=240).contains(&spec.fps));
            let sizes_ok = (1..=8192).contains(&spec.input.width)
                && (1..=8192).contains(&spec.input.height)
                && video_ok
                && (1..=1024).contains(&spec.batch.max);
            if !sizes_ok {
                return Err(invalid(format!(
                    "{where_}: input, frames, fps or batch.max out of range"
                )));
            }
            if raw.models[..index]
                .iter()
                .any(|other| other.key() == spec.key())
            {
                return Err(invalid(format!("{where_}: listed twice")));
            }
            for (i, aspect) in spec.aspects.iter().enumerate() {
                if bucket(aspect).is_none() || spec.aspects[..i].contains(aspect) {
                    let names: Vec<&str> = ASPECT_BUCKETS.iter().map(|(n, _, _)| *n).collect();
                    return Err(invalid(format!(
                        "{where_}: aspect {aspect:?} is not one of {names:?}, or is listed twice"
                    )));
                }
            }
        }
        Ok(Manifest {
            dir,
            models: raw.models,
        })
    }
}

/// A framing detector: a file-backed `detector` entry, named by a generator or a chain.
fn check_framing(spec: &ModelSpec, framing: &Framing, models: &[ModelSpec]) -> Result<(), String> {
    if spec.role != ModelRole::Generator {
        return Err("only a generator or a chain frames its photos".into());
    }
    match models
        .iter()
        .find(|m| m.name == framing.model && m.version == framing.version)
    {
        Some(detector) if detector.role == ModelRole::Detector && !detector.is_chain() => Ok(()),
        Some(_) => Err(format!("framing {} is not a detector", framing.key())),
        None => Err(format!("framing {} is not in the manifest", framing.key())),
    }
}

/// A chain's stages: a file-backed generator with its keyframes, then file-backed
/// interpolators with their factors, giving exactly the entry's frames.
fn check_chain(spec: &ModelSpec, models: &[ModelSpec]) -> Result<(), String> {
    if !spec.file.as_os_str().is_empty() || !spec.sha256.is_empty() {
        return Err("a chain runs other entries: it has no file or sha256 of its own".into());
    }
    if spec.role != ModelRole::Generator {
        return Err("a chain is a generator".into());
    }
    if spec.chain.len() < 2 {
        return Err("a chain needs a generator and at least one interpolator".into());
    }
    let mut frames = 0u32;
    for (index, stage) in spec.chain.iter().enumerate() {
        let Some(model) = models
            .iter()
            .find(|m| m.name == stage.model && m.version == stage.version)
        else {
            return Err(format!("stage {} is not in the manifest", stage.key()));
        };
        if model.is_chain() {
            return Err(format!("stage {} is itself a chain", stage.key()));
        }
        let want = if index == 0 {
            ModelRole::Generator
        } else {
            ModelRole::Interpolator
        };
        if model.role != want {
            return Err(format!(
                "stage {} must be a {want:?} (the generator first, then interpolators)",
                stage.key()
            ));
        }
        if (model.input.width, model.input.height) != (spec.input.width, spec.input.height) {
            return Err(format!("stage {} has another input size", stage.key()));
        }
        frames = match (index, stage.frames, stage.factor) {
            (0, Some(keyframes), None) if (2..=1024).contains(&keyframes) => keyframes,
            (0, _, _) => {
                return Err("the generator stage names its keyframes (2..=1024) only".into());
            }
            (_, None, Some(factor)) if (2..=16).contains(&factor) => (frames - 1) * factor + 1,
            (_, _, _) => {
                return Err(format!(
                    "stage {} names its factor (2..=16) only",
                    stage.key()
                ));
            }
        };
    }
    if frames != spec.frames {
        return Err(format!(
            "the stages give {frames} frames, the entry says {}",
            spec.frames
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
version = 1
[[model]]
name = "m"
version = "1"
file = "m.pt"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
input = { width = 64, height = 32 }
frames = 8
fps = 8
batch = { max = 4 }
dtype = "float32"
"#;

    #[test]
    fn a_valid_manifest_parses() {
        let manifest = Manifest::parse(ONE, PathBuf::from("/m")).expect("valid");
        assert_eq!(manifest.models[0].key(), "m@1");
        assert_eq!(
            manifest.models[0].input,
            InputSize {
                width: 64,
                height: 32
            }
        );
    }

    #[test]
    fn the_embedded_manifest_parses_and_finds_its_models() {
        let manifest = Manifest::embedded(PathBuf::from("models")).expect("embedded");
        let motion = manifest.find("motion", "1").expect("motion@1");
        assert_eq!(motion.key(), "motion@1");
        assert!(manifest.find("motion", "999").is_none());
    }

    #[test]
    fn adapters_belong_to_image_generators_and_are_bounded() {
        let image = ONE.replace("frames = 8", "frames = 1").replace(
            "dtype = \"float32\"",
            "dtype = \"float32\"\noutput = \"image\"",
        );
        let with = |text: &str, adapter: &str| format!("{text}adapter = {adapter}\n");
        let good =
            "{ kind = \"tone\", hidden = 16, steps = 200, learning_rate = 0.02, train_size = 128 }";
        let manifest = Manifest::parse(&with(&image, good), PathBuf::from("/m")).expect("parses");
        let adapter = manifest.models[0].adapter.expect("adapter");
        assert_eq!(
            (adapter.kind, adapter.hidden, adapter.steps),
            (AdapterKind::Tone, 16, 200)
        );
        let err = Manifest::parse(&with(ONE, good), PathBuf::from("/m")).unwrap_err();
        assert!(err.to_string().contains("only an image generator"), "{err}");
        for bad in [
            good.replace("hidden = 16", "hidden = 0"),
            good.replace("learning_rate = 0.02", "learning_rate = 0.0"),
            good.replace("train_size = 128", "train_size = 8"),
        ] {
            let err = Manifest::parse(&with(&image, &bad), PathBuf::from("/m")).unwrap_err();
            assert!(err.to_string().contains("out of range"), "{err}");
        }
        let embedded = Manifest::embedded(PathBuf::from("models")).expect("embedded");
        assert!(
            embedded
                .find("portrait", "1")
                .and_then(|m| m.adapter)
                .is_some()
        );
    }

    #[test]
    fn aspect_buckets_keep_the_pixel_budget_in_steps_of_16() {
        let text = ONE.replace(
            "input = { width = 64, height = 32 }",
            "input = { width = 512, height = 512 }\naspects = [\"9:16\", \"3:4\", \"1:1\", \"4:3\", \"16:9\"]",
        );
        let manifest = Manifest::parse(&text, PathBuf::from("/m")).expect("parses");
        let spec = &manifest.models[0];
        assert_eq!(spec.aspect_size("1:1"), Some((512, 512)));
        assert_eq!(spec.aspect_size("16:9"), Some((672, 384)));
        assert_eq!(spec.aspect_size("9:16"), Some((384, 672)));
        assert_eq!(spec.aspect_size("4:3"), Some((576, 432)));
        assert_eq!(spec.aspect_size("3:4"), Some((432, 576)));
        for (name, _, _) in ASPECT_BUCKETS {
            let (w, h) = spec.aspect_size(name).expect("listed");
            assert!(
                w * h <= 512 * 512 && w % 16 == 0 && h % 16 == 0,
                "{name}: {w}x{h}"
            );
        }
        // A phone's portrait photo, its landscape twin, a panorama, a square.
        assert_eq!(spec.nearest_aspect(3024, 4032), Some("3:4"));
        assert_eq!(spec.nearest_aspect(1080, 1920), Some("9:16"));
        assert_eq!(spec.nearest_aspect(4032, 3024), Some("4:3"));
        assert_eq!(spec.nearest_aspect(6000, 2000), Some("16:9"));
        assert_eq!(spec.nearest_aspect(800, 790), Some("1:1"));
        let bare = Manifest::parse(ONE, PathBuf::from("/m")).expect("parses");
        assert_eq!(bare.models[0].nearest_aspect(10, 20), None);
        assert_eq!(bare.models[0].aspect_size("1:1"), None);
        for bad in ["[\"2:1\"]", "[\"1:1\", \"1:1\"]"] {
            let text = ONE.replace(
                "input = { width = 64, height = 32 }",
                &format!("input = {{ width = 64, height = 32 }}\naspects = {bad}"),
            );
            assert!(
                Manifest::parse(&text, PathBuf::from("/m")).is_err(),
                "{bad}"
            );
        }
    }

    /// `text` is refused with a message saying `why`.
    fn assert_refused(text: &str, why: &str) {
        let err = Manifest::parse(text, PathBuf::from("/m"))
            .expect_err(why)
            .to_string();
        assert!(err.contains(why), "{why}: {err}");
    }

    const CHAIN: &str = r#"
[[model]]
name = "i"
version = "1"
role = "interpolator"
file = "i.pt"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
input = { width = 64, height = 32 }
batch = { max = 8 }

[[model]]
name = "c"
version = "1"
chain = [{ model = "m", version = "1", frames = 3 }, { model = "i", version = "1", factor = 4 }]
input = { width = 64, height = 32 }
frames = 9
fps = 24
batch = { max = 2 }
"#;

    #[test]
    fn a_chain_names_its_stages_and_gives_its_frames() {
        let text = format!("{ONE}{CHAIN}");
        let manifest = Manifest::parse(&text, PathBuf::from("/m")).expect("valid");
        let chain = manifest.find("c", "1").expect("chain");
        assert!(chain.is_chain() && chain.is_servable());
        assert_eq!(chain.runs(), ["m@1", "i@1"]);
        assert_eq!(chain.keyframes_for(9), Some(3));
        assert_eq!(chain.keyframes_for(17), Some(5));
        assert_eq!(chain.keyframes_for(10), None);
        assert_eq!(chain.keyframes_for(1), None);
        assert!(!manifest.find("i", "1").expect("interpolator").is_servable());
        let serving = manifest.serving(&["c@1".into()]).expect("serving");
        let keys: Vec<String> = serving.models.iter().map(ModelSpec::key).collect();
        assert_eq!(keys, ["m@1", "i@1", "c@1"]);
        let only_m = manifest.serving(&["m@1".into()]).expect("serving");
        assert_eq!(only_m.models.len(), 1);
        manifest.serving(&["x@1".into()]).expect_err("unknown");

        let bad = [
            (CHAIN.replace("frames = 9", "frames = 10"), "give 9 frames"),
            (CHAIN.replace("factor = 4", "frames = 4"), "factor"),
            (
                CHAIN.replace("version = \"1\", frames = 3", "version = \"1\""),
                "keyframes",
            ),
            (
                CHAIN.replace("chain = [", "file = \"c.pt\"\nchain = ["),
                "no file or sha256",
            ),
            (
                CHAIN.replace("{ model = \"m\"", "{ model = \"i\""),
                "must be a Generator",
            ),
            (
                CHAIN.replace(
                    "{ model = \"i\", version = \"1\", factor",
                    "{ model = \"m\", version = \"1\", factor",
                ),
                "must be a Interpolator",
            ),
            (
                CHAIN.replace(
                    "model = \"i\", version = \"1\", factor",
                    "model = \"z\", version = \"1\", factor",
                ),
                "not in the manifest",
            ),
            (
                CHAIN
                    .replace(
                        "frames = 9\nfps = 24\nbatch = { max = 2 }",
                        "frames = 9\nfps = 24\nbatch = { max = 2 }\n",
                    )
                    .replace(
                        "input = { width = 64, height = 32 }\nframes = 9",
                        "input = { width = 32, height = 32 }\nframes = 9",
                    ),
                "another input size",
            ),
        ];
        for (chain, why) in bad {
            assert_refused(&format!("{ONE}{chain}"), why);
        }
    }

    const DETECTOR: &str = r#"
[[model]]
name = "d"
version = "2"
role = "detector"
file = "d.pt"
sha256 = "2222222222222222222222222222222222222222222222222222222222222222"
input = { width = 640, height = 640 }
batch = { max = 1 }
"#;

    #[test]
    fn framing_names_a_detector_that_runs_first_and_is_served_with_the_model() {
        let framed = ONE.replace(
            "dtype = \"float32\"",
            "framing = { model = \"d\", version = \"2\" }",
        );
        let manifest =
            Manifest::parse(&format!("{framed}{DETECTOR}"), PathBuf::from("/m")).expect("valid");
        let model = manifest.find("m", "1").expect("m");
        assert_eq!(model.runs(), ["d@2", "m@1"]);
        let detector = manifest.find("d", "2").expect("d");
        assert!(!detector.is_servable());
        let serving = manifest.serving(&["m@1".into()]).expect("serving");
        let keys: Vec<String> = serving.models.iter().map(ModelSpec::key).collect();
        assert_eq!(keys, ["m@1", "d@2"]);

        let bad = [
            (
                framed.replace("model = \"d\"", "model = \"x\""),
                DETECTOR.to_owned(),
                "not in the manifest",
            ),
            (
                ONE.replace(
                    "dtype = \"float32\"",
                    "framing = { model = \"m\", version = \"1\" }",
                ),
                String::new(),
                "not a detector",
            ),
            (
                framed.clone(),
                DETECTOR.replace(
                    "input =",
                    "framing = { model = \"d\", version = \"2\" }\ninput =",
                ),
                "only a generator",
            ),
        ];
        for (model, detector, why) in bad {
            assert_refused(&format!("{model}{detector}"), why);
        }
    }

    #[test]
    fn an_image_model_renders_one_frame() {
        let image = ONE
            .replace("frames = 8", "frames = 1")
            .replace("dtype = \"float32\"", "output = \"image\"");
        let manifest = Manifest::parse(&image, PathBuf::from("/m")).expect("valid");
        assert_eq!(manifest.models[0].output, ModelOutput::Image);
        assert_eq!(
            Manifest::parse(ONE, PathBuf::from("/m"))
                .expect("valid")
                .models[0]
                .output,
            ModelOutput::Video
        );
        assert_refused(
            &ONE.replace("dtype = \"float32\"", "output = \"image\""),
            "one frame",
        );
    }

    #[test]
    fn bad_manifests_are_refused_by_name() {
        let cases = [
            ONE.replace("version = 1\n[[", "version = 2\n[["),
            ONE.replace("m.pt", "../m.pt"),
            ONE.replace("\"0000", "\"ZZ00"),
            ONE.replace("frames = 8", "frames = 0"),
            ONE.replace("dtype = \"float32\"", "dtype = \"int8\""),
            ONE.replace("fps = 8", "fps = 8\nlicense = \"x\""),
            format!("{ONE}{}", &ONE[ONE.find("[[model]]").expect("entry")..]),
        ];
        for text in &cases {
            Manifest::parse(text, PathBuf::from("/m")).expect_err(text);
        }
    }
}
