//! Small models for fleet tests: the repository's `noop` model at 64×64 and 8 frames, in a
//! manifest of its own, so a job costs milliseconds (dispatch, storage, encoding) rather than
//! the seconds of the real input size on CPU.

use std::path::{Path, PathBuf};

/// The repository root (this crate is `crates/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `noop` entry of `models/manifest.toml` (the text after its `[[model]]` line) at 64×64,
/// 8 frames at 8 fps: for manifests that tests write.
pub fn small_noop_entry() -> String {
    let real = std::fs::read_to_string(repo_root().join("models/manifest.toml"))
        .expect("read the manifest");
    real.split("[[model]]")
        .find(|block| block.contains("name = \"noop\""))
        .expect("the manifest has a noop entry")
        .replace(
            "input = { width = 256, height = 256 }",
            "input = { width = 64, height = 64 }",
        )
        .replace("frames = 16", "frames = 8")
        .replace("fps = 16", "fps = 8")
}

/// Writes `models/manifest.toml`'s `noop` entry at 64×64, 8 frames at 8 fps, with its model
/// file, into a fresh temp dir named after `tag`; returns the manifest path. A config's pool
/// serves it with `model = "noop"`, `model_version = "1"`.
pub fn small_noop_manifest(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clipfleet-models-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the manifest dir");
    let models = repo_root().join("models");
    let noop = small_noop_entry();
    std::fs::write(
        dir.join("manifest.toml"),
        format!("version = 1\n[[model]]{noop}"),
    )
    .expect("write the manifest");
    std::fs::copy(models.join("noop.pt"), dir.join("noop.pt")).expect("copy noop.pt");
    dir.join("manifest.toml")
}
