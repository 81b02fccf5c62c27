//! Small models for fleet tests: the repository's `noop` model at 64×64 and 8 frames, in a
//! manifest of its own, so a job costs milliseconds (dispatch, storage, encoding) rather than
//! the seconds of the real input size on CPU; and `motion` at 256×256, framed by the real MTCNN
//! face detector, for the tests of face framing.

use std::path::{Path, PathBuf};

/// The repository root (this crate is `crates/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `noop` entry of `models/manifest.toml` (the text after its `[[model]]` line) at 64×64,
/// 8 frames at 8 fps: for manifests that tests write.
pub fn small_noop_entry() -> String {
    manifest_entry("noop")
        .replace(
            "input = { width = 256, height = 256 }",
            "input = { width = 64, height = 64 }",
        )
        .replace("frames = 16", "frames = 8")
        .replace("fps = 16", "fps = 8")
}

/// The entry named `name` of `models/manifest.toml` (the text after its `[[model]]` line).
pub fn manifest_entry(name: &str) -> String {
    let real = std::fs::read_to_string(repo_root().join("models/manifest.toml"))
        .expect("read the manifest");
    real.split("[[model]]")
        .find(|block| block.contains(&format!("name = \"{name}\"\n")))
        .unwrap_or_else(|| panic!("the manifest has a {name} entry"))
        .to_owned()
}

/// A fresh temp dir named after `tag` holding `text` as its manifest and `files` of `models/`;
/// returns the manifest path.
pub fn write_manifest(tag: &str, text: &str, files: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clipfleet-models-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the manifest dir");
    std::fs::write(dir.join("manifest.toml"), text).expect("write the manifest");
    for file in files {
        std::fs::copy(repo_root().join("models").join(file), dir.join(file))
            .unwrap_or_else(|err| panic!("copy {file}: {err}"));
    }
    dir.join("manifest.toml")
}

/// `models/manifest.toml`'s `motion` entry at 256×256 (its aspect buckets at that area), 4
/// frames, framed as in the real manifest by the `mtcnn` detector, both files beside it, in a
/// fresh temp dir named after `tag`; returns the manifest path. A pool serves it with `model =
/// "motion"`, `model_version = "1"`.
pub fn small_framed_motion_manifest(tag: &str) -> PathBuf {
    let motion = manifest_entry("motion")
        .replace(
            "input = { width = 512, height = 512 }",
            "input = { width = 256, height = 256 }",
        )
        .replace("frames = 48", "frames = 4");
    assert!(
        motion.contains("framing = { model = \"mtcnn\""),
        "motion is framed by mtcnn in the real manifest"
    );
    let mtcnn = manifest_entry("mtcnn");
    write_manifest(
        tag,
        &format!("version = 1\n[[model]]{motion}[[model]]{mtcnn}"),
        &["motion.pt", "mtcnn.pt"],
    )
}

/// Writes `models/manifest.toml`'s `noop` entry at 64×64, 8 frames at 8 fps, with its model
/// file, into a fresh temp dir named after `tag`; returns the manifest path. A config's pool
/// serves it with `model = "noop"`, `model_version = "1"`.
pub fn small_noop_manifest(tag: &str) -> PathBuf {
    let noop = small_noop_entry();
    write_manifest(tag, &format!("version = 1\n[[model]]{noop}"), &["noop.pt"])
}
