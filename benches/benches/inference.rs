//! Dynamic batching on the CPU, side by side in one run (`cargo bench -p clipfleet-benches
//! --bench inference`): jobs/s through the `Engine` with the `cost` model at max batch 8 against
//! max batch 1, and bare forward passes of the same batches fed as the engine feeds them
//! (`bare_forward_rate`: what the engine adds around them);
//! plus `noop` jobs/s (the engine's own dispatch cost). One intra-op thread, as on the workers'
//! CPU fallback. Rounds alternate the contenders; medians are reported.
//!
//! Then the `motion-rife` chain at the manifest's shape (512×512, 12 keyframes → 45 frames,
//! batch 4) with BENCH_CHAIN_THREADS intra-op threads: seconds per job and each stage's share
//! of the engine's time.
//!
//! Then face framing (`framing`): the MTCNN detector on the sample photos as the worker runs it
//! (decoded, scaled into the detector's 640×640 box, through the engine), beside one `motion`
//! job at 512×512, with BENCH_CHAIN_THREADS intra-op threads: what framing adds to a job.
//!
//! Then a session's training (`personalize`): the `portrait` adapter the manifest describes
//! (kind, steps, training size) trained through the engine on 1, 4 and 16 photos, with
//! BENCH_CHAIN_THREADS intra-op threads: seconds per session and the loss it reached, beside
//! one `portrait` job at its 512×512 shape, with and without the adapter applied.
//!
//! Environment: BENCH_JOBS (default 32), BENCH_SIZE (pixels per side, default 128),
//! BENCH_ROUNDS (default 3), BENCH_CHAIN_JOBS (default 4; 0 skips the chain),
//! BENCH_CHAIN_THREADS (default 2), BENCH_FRAMING_ROUNDS (default 5; 0 skips framing),
//! BENCH_TRAIN_ROUNDS (default 3; 0 skips the training).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::path::Path;
use std::time::{Duration, Instant};

use clipfleet_benches::{bare_forward_rate, env_usize, median};
use clipfleet_infer::{
    AdapterScope, DetectRequest, Device, Engine, EngineConfig, GenerateRequest, ModelRegistry,
    PersonalizeRequest, RgbFrame, VideoModel,
};

fn manifest() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/manifest.toml")
}

fn request(model: &str, size: u32, frames: u32, seed: usize) -> GenerateRequest {
    let data = (0..size * size * 3)
        .map(|i| (i as usize * 7 + seed) as u8)
        .collect();
    GenerateRequest {
        model: model.into(),
        version: "1".into(),
        image: RgbFrame::new(size, size, data).expect("frame"),
        params: [0.0, 0.5, 0.0, 0.0, 0.0, 0.0],
        frames,
        adapter: None,
    }
}

/// Jobs per second for `jobs` concurrent submissions to an engine with `max_batch`.
fn engine_rate(
    runtime: &tokio::runtime::Runtime,
    model: &str,
    max_batch: usize,
    jobs: usize,
    size: u32,
    frames: u32,
) -> f64 {
    let registry = ModelRegistry::load_serving(&manifest(), Device::Cpu, &[format!("{model}@1")])
        .expect("registry");
    let config = EngineConfig {
        max_batch,
        max_wait: Duration::from_millis(5),
        queue_capacity: jobs.max(1),
    };
    let engine = Engine::start(registry, config).expect("engine");
    runtime.block_on(async {
        let started = Instant::now();
        let all = (0..jobs).map(|i| engine.generate(request(model, size, frames, i)));
        for result in futures_util::future::join_all(all).await {
            result.expect("job");
        }
        jobs as f64 / started.elapsed().as_secs_f64()
    })
}

fn main() {
    tch::set_num_threads(1);
    let jobs = env_usize("BENCH_JOBS", 32);
    let size = env_usize("BENCH_SIZE", 128) as u32;
    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let frames = 16;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cost = VideoModel::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/cost.pt"),
        Device::Cpu,
    )
    .expect("cost");
    let (mut batched, mut single, mut bare8, mut bare1, mut noop) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        batched.push(engine_rate(&runtime, "cost", 8, jobs, size, frames));
        single.push(engine_rate(&runtime, "cost", 1, jobs, size, frames));
        bare8.push(bare_forward_rate(&cost, 8, jobs, size, i64::from(frames)));
        bare1.push(bare_forward_rate(&cost, 1, jobs, size, i64::from(frames)));
        noop.push(engine_rate(&runtime, "noop", 32, jobs * 32, 64, 4));
    }
    let (b8, b1, f8, f1, n) = (
        median(batched),
        median(single),
        median(bare8),
        median(bare1),
        median(noop),
    );
    println!(
        "cost model, {jobs} jobs of {size}x{size}, {frames} frames, 1 intra-op thread, median of {rounds}"
    );
    println!(
        "engine max batch 8   {b8:>9.2} jobs/s   ({:.1} % of bare forward passes at batch 8: {f8:.2} jobs/s)",
        100.0 * b8 / f8
    );
    println!(
        "engine max batch 1   {b1:>9.2} jobs/s   ({:.1} % of bare forward passes at batch 1: {f1:.2} jobs/s)",
        100.0 * b1 / f1
    );
    println!("batching ratio (8 vs 1): {:.2}x", b8 / b1);
    println!("noop through the engine (64x64, 4 frames, max batch 32): {n:.0} jobs/s");
    let chain_jobs = env_usize("BENCH_CHAIN_JOBS", 4);
    if chain_jobs > 0 {
        chain(&runtime, chain_jobs);
    }
    let framing_rounds = env_usize("BENCH_FRAMING_ROUNDS", 5);
    if framing_rounds > 0 {
        framing(&runtime, framing_rounds);
    }
    let train_rounds = env_usize("BENCH_TRAIN_ROUNDS", 3);
    if train_rounds > 0 {
        personalize(&runtime, train_rounds);
    }
}

/// The `portrait` adapter trained through the engine on sessions of 1, 4 and 16 photos (crops
/// of the sample portrait at the adapter's training size), beside one portrait job at its shape
/// with and without the trained adapter: median seconds of `rounds`.
fn personalize(runtime: &tokio::runtime::Runtime, rounds: usize) {
    tch::set_num_threads(env_usize("BENCH_CHAIN_THREADS", 2) as i32);
    let registry = ModelRegistry::load_serving(&manifest(), Device::Cpu, &["portrait@1".into()])
        .expect("registry");
    let portrait = registry
        .get("portrait", "1")
        .expect("portrait")
        .spec
        .clone();
    let spec = portrait.adapter.expect("portrait has an adapter");
    let engine = Engine::start(registry, EngineConfig::default()).expect("engine");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/samples");
    let photo = std::fs::read(samples.join("portrait.jpg")).expect("sample photo");
    let image =
        clipfleet_media::decode(&photo, &clipfleet_media::Limits::default()).expect("decode");
    let side = spec.train_size;
    // Crops around the face at a few framings, as a session's photos of one person.
    let crop = |i: usize| {
        // The square crop is the photo's full height, so only the centre's x tells two apart.
        let x = 560.0 + i as f64 * 16.0;
        let (fitted, _) = clipfleet_media::fit_around(&image, side, side, (x, 256.0)).expect("fit");
        RgbFrame::new(fitted.width, fitted.height, fitted.data).expect("frame")
    };
    println!(
        "personalize: {}'s {:?} adapter, {} hidden, {} steps at {side}x{side}, {} intra-op thread(s), median of {rounds}",
        portrait.key(),
        spec.kind,
        spec.hidden,
        spec.steps,
        tch::get_num_threads()
    );
    let mut trained = None;
    for photos in [1, 4, 16] {
        let (mut took, mut loss) = (Vec::new(), (0.0, 0.0));
        for round in 0..rounds {
            let request = PersonalizeRequest {
                model: portrait.name.clone(),
                version: portrait.version.clone(),
                photos: (0..photos).map(crop).collect(),
                params: vec![[0.0, 0.7, 0.0, 0.0, 0.0, 0.0]; photos],
                scope: AdapterScope {
                    account: "acct-bench".into(),
                    session: format!("session-{round}"),
                    model: portrait.name.clone(),
                    version: portrait.version.clone(),
                },
                seed: round as u64,
            };
            let started = Instant::now();
            let (adapter, report) = runtime
                .block_on(engine.personalize(request))
                .expect("training");
            took.push(started.elapsed().as_secs_f64());
            loss = (report.loss_first, report.loss_last);
            trained = Some(std::sync::Arc::new(adapter));
        }
        println!(
            "  {photos:>2} photo(s): {:>6.2} s per session, loss {:.5} -> {:.5}",
            median(took),
            loss.0,
            loss.1
        );
    }
    let job = |adapter: Option<std::sync::Arc<clipfleet_infer::Adapter>>| {
        let mut took = Vec::new();
        for round in 0..rounds {
            let mut request = request("portrait", portrait.input.width, 1, round);
            request.adapter = adapter.clone();
            let started = Instant::now();
            runtime
                .block_on(engine.generate(request))
                .expect("portrait job");
            took.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        median(took)
    };
    let (plain, personal) = (job(None), job(trained));
    println!(
        "  a portrait job at {}x{}: {plain:.0} ms alone, {personal:.0} ms through the session's adapter",
        portrait.input.width, portrait.input.height
    );
}

/// The detector on the sample photos through the engine, as the worker frames a job, beside a
/// `motion` job at the manifest's shape: median milliseconds of `rounds`.
fn framing(runtime: &tokio::runtime::Runtime, rounds: usize) {
    tch::set_num_threads(env_usize("BENCH_CHAIN_THREADS", 2) as i32);
    let registry = ModelRegistry::load_serving(&manifest(), Device::Cpu, &["motion@1".into()])
        .expect("registry");
    let motion = registry.get("motion", "1").expect("motion").spec.clone();
    let framing = motion.framing.clone().expect("motion is framed");
    let detector = registry
        .get(&framing.model, &framing.version)
        .expect("detector")
        .spec
        .clone();
    let engine = Engine::start(registry, EngineConfig::default()).expect("engine");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut motion_ms = Vec::new();
    for round in 0..rounds {
        let request = request("motion", motion.input.width, motion.frames, round);
        let started = Instant::now();
        runtime
            .block_on(engine.generate(request))
            .expect("motion job");
        motion_ms.push(ms(started.elapsed()));
    }
    let motion_ms = median(motion_ms);
    println!(
        "framing: {} before {} ({}x{}, {} frames: {motion_ms:.0} ms per job alone), {} intra-op thread(s), median of {rounds}",
        framing.key(),
        motion.key(),
        motion.input.width,
        motion.input.height,
        motion.frames,
        tch::get_num_threads()
    );
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/samples");
    for name in ["portrait.jpg", "hillside.jpg"] {
        let photo = std::fs::read(samples.join(name)).expect("sample photo");
        let image =
            clipfleet_media::decode(&photo, &clipfleet_media::Limits::default()).expect("decode");
        let (small, _) =
            clipfleet_media::fit_within(&image, detector.input.width, detector.input.height)
                .expect("fit");
        let (mut took, mut faces) = (Vec::new(), 0);
        for _ in 0..rounds {
            let request = DetectRequest {
                model: detector.name.clone(),
                version: detector.version.clone(),
                image: RgbFrame::new(small.width, small.height, small.data.clone()).expect("frame"),
            };
            let started = Instant::now();
            faces = runtime
                .block_on(engine.detect(request))
                .expect("detect")
                .len();
            took.push(ms(started.elapsed()));
        }
        let took = median(took);
        println!(
            "  {name:<13} {}x{} -> {}x{}: {took:>6.0} ms, {faces} face(s); {:.1} % of a framed job's engine time",
            image.width,
            image.height,
            small.width,
            small.height,
            100.0 * took / (took + motion_ms)
        );
    }
}

/// `motion-rife` jobs through the engine at the manifest's shape: seconds per job, and where
/// the engine's time went by stage.
fn chain(runtime: &tokio::runtime::Runtime, jobs: usize) {
    tch::set_num_threads(env_usize("BENCH_CHAIN_THREADS", 2) as i32);
    let registry = ModelRegistry::load_serving(&manifest(), Device::Cpu, &["motion-rife@1".into()])
        .expect("registry");
    let spec = registry.chain("motion-rife", "1").expect("chain").clone();
    let side = spec.input.width;
    let config = EngineConfig {
        max_batch: spec.batch.max,
        max_wait: Duration::from_millis(50),
        queue_capacity: jobs.max(1),
    };
    let engine = Engine::start(registry, config).expect("engine");
    let took = runtime.block_on(async {
        let started = Instant::now();
        let all = (0..jobs).map(|i| engine.generate(request("motion-rife", side, spec.frames, i)));
        for result in futures_util::future::join_all(all).await {
            assert_eq!(result.expect("chain job").len(), spec.frames as usize);
        }
        started.elapsed()
    });
    let stages = engine.stats().stage_busy();
    let total: f64 = stages.iter().map(|(_, d)| d.as_secs_f64()).sum();
    println!(
        "{} ({}), {jobs} jobs of {side}x{side}, {} frames, max batch {}, {} intra-op thread(s): {:.1} s per job ({:.1} s in all)",
        spec.key(),
        spec.runs().join(" -> "),
        spec.frames,
        spec.batch.max,
        tch::get_num_threads(),
        took.as_secs_f64() / jobs as f64,
        took.as_secs_f64()
    );
    for (stage, busy) in stages {
        println!(
            "  {stage:<12} {:>8.1} s  {:>5.1} % of the chain's engine time",
            busy.as_secs_f64(),
            100.0 * busy.as_secs_f64() / total
        );
    }
}
