//! A session's personalised adapter of the real `portrait` model: trained through the engine on
//! crops of the sample portrait, it brings the photos' tones back under the style (on a crop it
//! never saw, too), and it runs on its own job's output only, inside a shared batch.

use clipfleet_infer::{
    Adapter, AdapterScope, Device, Engine, EngineConfig, GenerateRequest, ModelRegistry,
    PersonalizeRequest, RgbFrame, frames_to_batch,
};
use tch::{Kind, Tensor};

use crate::support::{self, models_dir};

const SIDE: u32 = 128;

/// A `SIDE`² crop of the sample portrait at (`x`, `y`), scaled by `zoom`.
fn crop(x: u32, y: u32, zoom: f32) -> RgbFrame {
    let photo = image::open(models_dir().join("samples/portrait.jpg"))
        .expect("sample portrait")
        .to_rgb8();
    let side = (SIDE as f32 * zoom) as u32;
    let cropped = image::imageops::crop_imm(&photo, x, y, side, side).to_image();
    let scaled =
        image::imageops::resize(&cropped, SIDE, SIDE, image::imageops::FilterType::Triangle);
    RgbFrame::new(SIDE, SIDE, scaled.into_raw()).expect("frame")
}

fn scope(session: &str) -> AdapterScope {
    AdapterScope {
        account: "acct-a".into(),
        session: session.into(),
        model: "portrait".into(),
        version: "1".into(),
    }
}

fn tensor(frame: &RgbFrame) -> Tensor {
    frames_to_batch(&[frame], Device::Cpu).expect("tensor")
}

/// Mean squared error between 8×8-patch means of two images: the tone the adapter restores.
fn tone_error(a: &Tensor, b: &Tensor) -> f64 {
    let k = i64::from(SIDE / 8);
    let pool = |t: &Tensor| t.avg_pool2d([k, k], [k, k], [0, 0], false, true, None);
    pool(a)
        .mse_loss(&pool(b), tch::Reduction::Mean)
        .double_value(&[])
}

fn still(frames: Vec<RgbFrame>) -> Tensor {
    tensor(&frames.into_iter().next().expect("one frame"))
}

#[tokio::test(flavor = "current_thread")]
async fn a_session_adapter_learns_the_session_s_tones_and_serves_its_own_jobs_only() {
    tch::set_num_threads(1);
    let manifest = support::small_manifest(
        "adapters",
        &["portrait"],
        &[(
            "input = { width = 512, height = 512 }",
            "input = { width = 128, height = 128 }",
        )],
        &["portrait.pt"],
        false,
    );
    let registry = ModelRegistry::load(&manifest, Device::Cpu).expect("registry");
    let spec = registry
        .get("portrait", "1")
        .and_then(|m| m.spec.adapter)
        .expect("portrait has an adapter");
    assert_eq!(spec.train_size, SIDE);
    let engine = Engine::start(registry, EngineConfig::default()).expect("engine");
    // The face and shoulders at three framings; a fourth one held out.
    let photos = vec![crop(560, 40, 2.0), crop(600, 80, 1.5), crop(520, 0, 2.6)];
    let held_out = crop(580, 60, 1.8);
    let params = vec![[0.0, 0.7, 0.0, 0.0, 0.0, 0.0]; photos.len()];
    let (adapter, report) = engine
        .personalize(PersonalizeRequest {
            model: "portrait".into(),
            version: "1".into(),
            photos: photos.clone(),
            params,
            scope: scope("s1"),
            seed: 11,
        })
        .await
        .expect("trains");
    assert_eq!((report.steps, report.photos), (spec.steps, 3));
    assert!(report.loss_last < report.loss_first * 0.8, "{report:?}");

    // The same adapter back from its bytes, as a worker reads it.
    let adapter = std::sync::Arc::new(
        Adapter::from_bytes(&adapter.to_bytes(), &scope("s1")).expect("its own scope"),
    );
    let render = |image: RgbFrame, adapter: Option<std::sync::Arc<Adapter>>| GenerateRequest {
        model: "portrait".into(),
        version: "1".into(),
        image,
        params: [0.0, 0.7, 0.0, 0.0, 0.0, 0.0],
        frames: 1,
        adapter,
    };
    // Two jobs of one batch, one of the session and one not: the adapter runs on its own job's
    // output only, and brings the held-out photo's tones closer than the base model alone.
    let (personal, plain) = tokio::join!(
        engine.generate(render(held_out.clone(), Some(adapter.clone()))),
        engine.generate(render(held_out.clone(), None)),
    );
    let (personal, plain) = (
        still(personal.expect("personal")),
        still(plain.expect("plain")),
    );
    let alone = still(
        engine
            .generate(render(held_out.clone(), None))
            .await
            .expect("alone"),
    );
    assert_eq!(
        (&plain - &alone).abs().max().double_value(&[]),
        0.0,
        "the session's adapter touched another job of its batch"
    );
    let photo = tensor(&held_out);
    let (before, after) = (tone_error(&plain, &photo), tone_error(&personal, &photo));
    assert!(after < before * 0.9, "base {before}, adapted {after}");
    assert!(
        (&personal - &plain)
            .abs()
            .mean(Kind::Float)
            .double_value(&[])
            > 1e-3
    );
}
