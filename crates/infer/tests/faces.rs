//! The MTCNN face detector (`models/mtcnn.pt`, from the facenet-pytorch wheel): the TorchScript
//! export against facenet-pytorch's own `MTCNN.detect`, its contract, and the engine's detect.

use clipfleet_infer::{
    DetectRequest, Device, Engine, EngineConfig, InferErrorKind, ModelRegistry, RgbFrame,
    VideoModel, frames_to_batch,
};
use tch::{Kind, Tensor};

use crate::support::{self, expected_tensors, models_dir, take};

fn mtcnn() -> VideoModel {
    VideoModel::load(&models_dir().join("mtcnn.pt"), Device::Cpu).expect("load mtcnn")
}

/// A sample photo as the worker decodes it.
fn photo(name: &str) -> RgbFrame {
    let image = image::open(models_dir().join("samples").join(name))
        .expect("sample")
        .to_rgb8();
    RgbFrame::new(image.width(), image.height(), image.into_raw()).expect("frame")
}

#[test]
fn mtcnn_finds_the_face_facenet_pytorch_finds() {
    tch::set_num_threads(2);
    let mut tensors = expected_tensors("mtcnn.expected.safetensors");
    let (image, expected) = (take(&mut tensors, "image"), take(&mut tensors, "expected"));
    let faces = mtcnn().detect(&image).expect("detect");
    assert_eq!(
        faces.len(),
        expected.size()[0] as usize,
        "one face: {faces:?}"
    );
    let got: Vec<f32> = faces
        .iter()
        .flat_map(|f| [f.x1, f.y1, f.x2, f.y2, f.score])
        .collect();
    let got = Tensor::from_slice(&got).view([-1, 5]);
    // Pixel coordinates of a 1024x512 photo: within a hundredth of a pixel, and the probability
    // within 1e-4, of what facenet-pytorch's own code found (export: identical in PyTorch).
    let boxes = (got.narrow(1, 0, 4) - expected.narrow(1, 0, 4))
        .abs()
        .max()
        .double_value(&[]);
    let score = (got.narrow(1, 4, 1) - expected.narrow(1, 4, 1))
        .abs()
        .max()
        .double_value(&[]);
    assert!(boxes < 0.01 && score < 1e-4, "boxes {boxes}, score {score}");
}

#[test]
fn a_landscape_has_no_face_and_the_contract_is_checked() {
    tch::set_num_threads(2);
    let model = mtcnn();
    let hillside = frames_to_batch(&[photo("hillside.jpg")], Device::Cpu).expect("tensor");
    assert!(model.detect(&hillside).expect("detect").is_empty());
    // Noise: every pyramid level full of candidates; the guards keep NMS bounded and the few
    // boxes that survive ONet (noise can look like a face) are still boxes.
    tch::manual_seed(7);
    let noise = Tensor::rand([1, 3, 320, 320], (Kind::Float, Device::Cpu));
    let found = model.detect(&noise).expect("detect");
    assert!(found.len() < 10, "{} faces in noise", found.len());
    let two = Tensor::zeros([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    assert_eq!(
        model.detect(&two).expect_err("a batch").kind,
        InferErrorKind::InvalidInput
    );
    // A generator is no detector: its forward takes other inputs.
    let motion = VideoModel::load(&models_dir().join("motion.pt"), Device::Cpu).expect("motion");
    assert_eq!(
        motion.detect(&hillside).expect_err("not a detector").kind,
        InferErrorKind::ModelError
    );
}

#[tokio::test]
async fn the_engine_detects_between_batches_and_refuses_a_generator_as_detector() {
    tch::set_num_threads(2);
    let manifest = support::small_manifest(
        "faces",
        &["mtcnn", "noop"],
        &[],
        &["mtcnn.pt", "noop.pt"],
        false,
    );
    let registry = ModelRegistry::load(&manifest, Device::Cpu).expect("registry");
    let engine = Engine::start(registry, EngineConfig::default()).expect("engine");
    let request = |model: &str, version: &str| DetectRequest {
        model: model.into(),
        version: version.into(),
        image: photo("portrait.jpg"),
    };
    let faces = engine
        .detect(request("mtcnn", "2.6.0"))
        .await
        .expect("detect");
    assert_eq!(faces.len(), 1);
    let (x, y) = faces[0].centre();
    assert!((650.0..820.0).contains(&x) && (60.0..180.0).contains(&y));
    let err = engine
        .detect(request("noop", "1"))
        .await
        .expect_err("noop is no detector");
    assert_eq!(err.kind, InferErrorKind::InvalidInput);
    assert!(
        engine
            .stats()
            .stage_busy()
            .iter()
            .any(|(stage, _)| stage == "mtcnn@2.6.0")
    );
    let _ = std::fs::remove_dir_all(manifest.parent().expect("dir"));
}
