//! What the inference tests share: where the models are, the expected tensors PyTorch wrote,
//! and copies of the real manifest at small sizes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::Tensor;

/// The repository's `models/`.
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// The tensors of `models/<file>` (an `*.expected.safetensors`), by name.
pub fn expected_tensors(file: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(models_dir().join(file))
        .unwrap_or_else(|err| panic!("read {file}: {err}"))
        .into_iter()
        .collect()
}

/// Takes the tensor `name` out of `tensors`.
pub fn take(tensors: &mut HashMap<String, Tensor>, name: &str) -> Tensor {
    tensors
        .remove(name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

/// The real manifest's entries named in `models` with each `(from, to)` replacement applied
/// (input sizes, frame counts), and `files` copied beside it, in a temp dir of the test's own;
/// `tamper` flips a bit of the first file.
pub fn small_manifest(
    tag: &str,
    models: &[&str],
    replacements: &[(&str, &str)],
    files: &[&str],
    tamper: bool,
) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clipfleet-infer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let real = std::fs::read_to_string(models_dir().join("manifest.toml")).expect("manifest");
    let mut text = String::from("version = 1\n");
    for block in real.split("[[model]]").skip(1) {
        if !models
            .iter()
            .any(|name| block.contains(&format!("name = \"{name}\"\n")))
        {
            continue;
        }
        let mut block = replacements
            .iter()
            .fold(block.to_owned(), |block, (from, to)| {
                block.replace(from, to)
            });
        // A model framed by a detector the copy leaves out frames on the middle instead.
        if !models.contains(&"mtcnn") {
            block = block
                .lines()
                .filter(|line| !line.starts_with("framing = "))
                .map(|line| format!("{line}\n"))
                .collect();
        }
        text.push_str("[[model]]");
        text.push_str(&block);
    }
    for (index, file) in files.iter().enumerate() {
        let mut bytes = std::fs::read(models_dir().join(file)).expect("model file");
        if tamper && index == 0 {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
        }
        std::fs::write(dir.join(file), bytes).expect("copy model");
    }
    std::fs::write(dir.join("manifest.toml"), text).expect("write manifest");
    dir.join("manifest.toml")
}
