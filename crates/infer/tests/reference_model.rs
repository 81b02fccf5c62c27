//! The libtorch chain end to end: the TorchScript module exported by
//! `models/export_reference_zoom.py` runs under tch and matches PyTorch's own output.

use std::path::Path;

use clipfleet_infer::{Device, InferErrorKind, VideoModel};
use tch::{Kind, Tensor};

use crate::support::{expected_tensors, models_dir, take};

fn expected() -> (Tensor, Tensor) {
    let mut tensors = expected_tensors("reference_zoom.expected.safetensors");
    (take(&mut tensors, "input"), take(&mut tensors, "expected"))
}

#[test]
fn reference_model_matches_pytorch_within_1e_5() {
    tch::set_num_threads(1);
    let model = VideoModel::load(&models_dir().join("reference_zoom.pt"), Device::Cpu)
        .expect("load reference model");
    let (input, expected) = expected();
    assert_eq!(input.size(), [1, 3, 40, 56]);
    let video = model.render(&input).expect("render");
    assert_eq!(video.size(), [1, 8, 3, 40, 56]);
    let max_diff = (&video - &expected).abs().max().double_value(&[]);
    assert!(max_diff < 1e-5, "max |rust - python| = {max_diff}");
    // The video moves: the last frame is not the first (a zoom, not a still).
    let first_last = (video.get(0).get(0) - video.get(0).get(7))
        .abs()
        .mean(Kind::Float);
    assert!(first_last.double_value(&[]) > 0.01);
}

#[test]
fn the_model_takes_any_batch_and_size() {
    let model = VideoModel::load(&models_dir().join("reference_zoom.pt"), Device::Cpu)
        .expect("load reference model");
    let images = Tensor::rand([3, 3, 17, 9], (Kind::Float, Device::Cpu));
    assert_eq!(
        model.render(&images).expect("render").size(),
        [3, 8, 3, 17, 9]
    );
}

#[test]
fn inputs_off_contract_are_invalid_input_not_panics() {
    let model = VideoModel::load(&models_dir().join("reference_zoom.pt"), Device::Cpu)
        .expect("load reference model");
    let cases = [
        Tensor::zeros([3, 16, 16], (Kind::Float, Device::Cpu)),
        Tensor::zeros([1, 4, 16, 16], (Kind::Float, Device::Cpu)),
        Tensor::zeros([0, 3, 16, 16], (Kind::Float, Device::Cpu)),
        Tensor::zeros([1, 3, 16, 16], (Kind::Uint8, Device::Cpu)),
    ];
    for input in &cases {
        let err = model.render(input).expect_err("off-contract input");
        assert_eq!(err.kind, InferErrorKind::InvalidInput, "{err}");
    }
}

#[test]
fn a_missing_or_corrupt_model_file_is_a_load_error() {
    let missing = VideoModel::load(Path::new("/nonexistent/model.pt"), Device::Cpu);
    assert_eq!(
        missing.expect_err("missing").kind,
        InferErrorKind::ModelLoad
    );
    let corrupt = models_dir().join("reference_zoom.expected.safetensors");
    let corrupt = VideoModel::load(&corrupt, Device::Cpu);
    assert_eq!(
        corrupt.expect_err("not TorchScript").kind,
        InferErrorKind::ModelLoad
    );
}
