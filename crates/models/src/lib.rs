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

/// One model of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Name jobs ask for (`motion`).
    pub name: String,
    /// Version jobs ask for (`1`).
    pub version: String,
    /// TorchScript file, relative to the manifest.
    pub file: PathBuf,
    /// SHA-256 of the file (64 lowercase hex): a model that is not the one reviewed never runs.
    pub sha256: String,
    /// What it is, for operators.
    #[serde(default)]
    pub description: String,
    /// Input size.
    pub input: InputSize,
    /// Frames per video.
    pub frames: u32,
    /// Frames per second of the video.
    pub fps: u32,
    /// Batch limits.
    pub batch: BatchLimits,
    /// Compute type.
    pub dtype: ModelDtype,
}

impl ModelSpec {
    /// `name@version`, how logs and heartbeats name a model.
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
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
            if spec.file.is_absolute()
                || spec
                    .file
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(invalid(format!(
                    "{where_}: file must be a path inside the manifest's folder"
                )));
            }
            let sizes_ok = (1..=8192).contains(&spec.input.width)
                && (1..=8192).contains(&spec.input.height)
                && (1..=1024).contains(&spec.frames)
                && (1..=240).contains(&spec.fps)
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
        }
        Ok(Manifest {
            dir,
            models: raw.models,
        })
    }
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
