//! The fleet's models through the manifest, the registry and the batching engine.

use std::path::PathBuf;
use std::time::Duration;

use clipfleet_infer::{
    Device, Engine, EngineConfig, GenerateRequest, InferErrorKind, ModelRegistry, RgbFrame,
    VideoModel,
};
use tch::Kind;

use crate::support::{self, expected_tensors, models_dir, take};

/// The real motion and noop files (and rife, which the chain needs) at a small input size.
fn small_manifest(tag: &str, tamper: bool) -> PathBuf {
    support::small_manifest(
        tag,
        &["motion", "noop", "rife", "motion-rife"],
        &[
            (
                "input = { width = 512, height = 512 }",
                "input = { width = 32, height = 24 }",
            ),
            (
                "input = { width = 256, height = 256 }",
                "input = { width = 32, height = 24 }",
            ),
            ("frames = 48", "frames = 4"),
            ("frames = 16", "frames = 4"),
            ("frames = 12 }", "frames = 3 }"),
            ("frames = 45", "frames = 9"),
        ],
        &["motion.pt", "noop.pt", "rife.pt"],
        tamper,
    )
}

#[test]
fn the_real_manifest_loads_verifies_and_warms_every_model() {
    tch::set_num_threads(1);
    let registry =
        ModelRegistry::load(&models_dir().join("manifest.toml"), Device::Cpu).expect("load");
    let mut names: Vec<String> = registry.models().map(|m| m.spec.key()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "beautify@1",
            "cost@1",
            "motion@1",
            "mtcnn@2.6.0",
            "noop@1",
            "portrait@1",
            "rife@3.9"
        ]
    );
    assert!(
        registry
            .chain("motion-rife", "1")
            .is_some_and(|chain| chain.runs() == ["mtcnn@2.6.0", "motion@1", "rife@3.9"])
    );
    assert!(
        registry
            .get("motion", "1")
            .is_some_and(|m| m.spec.frames == 48)
    );
    assert!(registry.get("motion", "2").is_none());
}

#[test]
fn a_model_file_that_is_not_the_reviewed_one_is_refused() {
    let manifest = small_manifest("tampered", true);
    let err = ModelRegistry::load(&manifest, Device::Cpu).expect_err("tampered model");
    assert_eq!(err.kind, InferErrorKind::ModelLoad);
    assert!(err.message.contains("sha256"), "{err}");
    let _ = std::fs::remove_dir_all(manifest.parent().expect("dir"));
}

#[test]
fn motion_matches_pytorch_within_1e_5() {
    tch::set_num_threads(1);
    let model =
        VideoModel::load(&models_dir().join("motion.pt"), Device::Cpu).expect("load motion");
    let mut tensors = expected_tensors("motion.expected.safetensors");
    let (image, params, expected) = (
        take(&mut tensors, "image"),
        take(&mut tensors, "params"),
        take(&mut tensors, "expected"),
    );
    let video = model.generate(&image, &params, 6).expect("generate");
    // Rows: zoom in, pan right, parallax about the middle; a zoom in and a pan up about a focus
    // off the middle (the framing of a face).
    assert_eq!(video.size(), [5, 6, 3, 24, 32]);
    let max_diff = (&video - &expected).abs().max().double_value(&[]);
    assert!(max_diff < 1e-5, "max |rust - python| = {max_diff}");
    // Each preset moves differently: zoom, pan and parallax give three different last frames.
    let last = video.select(1, 5);
    let diff = |a: i64, b: i64| {
        (last.get(a) - last.get(b))
            .abs()
            .mean(Kind::Float)
            .double_value(&[])
    };
    assert!(diff(0, 1) > 1e-3 && diff(1, 2) > 1e-3 && diff(0, 2) > 1e-3);
}

#[test]
fn image_models_match_pytorch_within_1e_5_and_change_the_photo() {
    tch::set_num_threads(1);
    for name in ["portrait", "beautify"] {
        let model =
            VideoModel::load(&models_dir().join(format!("{name}.pt")), Device::Cpu).expect("load");
        let mut tensors = expected_tensors(&format!("{name}.expected.safetensors"));
        let (image, params, expected) = (
            take(&mut tensors, "image"),
            take(&mut tensors, "params"),
            take(&mut tensors, "expected"),
        );
        // One frame: an image model's contract is a generator's with frames = 1.
        let still = model.generate(&image, &params, 1).expect("generate");
        assert_eq!(still.size(), [2, 1, 3, 24, 32], "{name}");
        let max_diff = (&still - &expected).abs().max().double_value(&[]);
        assert!(max_diff < 1e-5, "{name}: max |rust - python| = {max_diff}");
        let changed = (still.select(1, 0) - &image)
            .abs()
            .mean(Kind::Float)
            .double_value(&[]);
        assert!(changed > 1e-3, "{name} leaves the photo as it was");
    }
}

fn image(seed: u8) -> RgbFrame {
    let data = (0..32 * 24 * 3)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    RgbFrame::new(32, 24, data).expect("frame")
}

fn request(model: &str, seed: u8, motion: f32) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        version: "1".into(),
        image: image(seed),
        params: [motion, 0.2 + f32::from(seed) / 100.0, 0.0, 0.0, 0.0, 0.0],
        frames: 4,
        adapter: None,
    }
}

fn engine(tag: &str, config: EngineConfig) -> Engine {
    let registry = ModelRegistry::load(&small_manifest(tag, false), Device::Cpu).expect("registry");
    Engine::start(registry, config).expect("engine")
}

#[tokio::test(flavor = "current_thread")]
async fn jobs_share_a_forward_pass_and_keep_their_own_results() {
    tch::set_num_threads(1);
    let batched = engine(
        "batched",
        EngineConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(500),
            queue_capacity: 16,
        },
    );
    let solo = engine(
        "solo",
        EngineConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            queue_capacity: 16,
        },
    );
    let jobs: Vec<_> = (0..8u8)
        .map(|i| batched.generate(request("motion", i, f32::from(i % 7))))
        .collect();
    let together = futures_util::future::join_all(jobs).await;
    let passes = batched.stats().passes_by_size();
    assert_eq!(passes, [(8, 1)], "eight compatible jobs, one forward pass");
    for (i, result) in together.into_iter().enumerate() {
        let frames = result.expect("batched job");
        let alone = solo
            .generate(request("motion", i as u8, f32::from(i as u8 % 7)))
            .await
            .expect("solo job");
        assert_eq!(frames.len(), 4);
        for (a, b) in frames.iter().zip(&alone) {
            let worst = a
                .data
                .iter()
                .zip(&b.data)
                .map(|(x, y)| x.abs_diff(*y))
                .max()
                .unwrap_or(0);
            assert!(worst <= 1, "job {i}: batched and solo differ by {worst}");
        }
    }
    assert_eq!(solo.stats().passes_by_size(), [(1, 8)]);
}

#[tokio::test(flavor = "current_thread")]
async fn different_models_and_sizes_never_share_a_pass() {
    let engine = engine(
        "mixed",
        EngineConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(300),
            queue_capacity: 16,
        },
    );
    let mut small = request("noop", 1, 0.0);
    small.image = RgbFrame::new(8, 8, vec![7; 8 * 8 * 3]).expect("frame");
    let results = futures_util::future::join_all([
        engine.generate(request("motion", 1, 0.0)),
        engine.generate(request("noop", 2, 0.0)),
        engine.generate(small),
        engine.generate(request("noop", 3, 0.0)),
    ])
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let noop = results[1].as_ref().expect("noop");
    assert!(
        noop.iter().all(|f| *f == image(2)),
        "noop repeats its frame"
    );
    let mut passes = engine.stats().passes_by_size();
    passes.sort();
    assert_eq!(
        passes,
        [(1, 2), (2, 1)],
        "motion alone, small noop alone, two noops together"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_unknown_model_is_a_typed_error() {
    let engine = engine("unknown", EngineConfig::default());
    let err = engine
        .generate(request("dream", 1, 0.0))
        .await
        .expect_err("unknown model");
    assert_eq!(err.kind, InferErrorKind::InvalidInput);
}
