//! `clip-infer-check`: what a node's device does with a model — loads the manifest (checksums,
//! warm-up), then sweeps batch sizes with bare forward passes and reports jobs/s, and GPU memory
//! in use where `nvidia-smi` is present. A batch that runs out of memory is reported as `oom`
//! and the sweep goes on, so the output also says which `batch.max` fits.
//!
//! usage: clip-infer-check [--manifest FILE] [--model NAME] [--version V] [--batches 1,2,4,8]
//!                         [--jobs N] [--size PIXELS] [--frames N] [--threads N]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clipfleet_infer::{Device, InferErrorKind, ModelRegistry, ModelRole, PARAMS_LEN};
use tch::{Kind, Tensor};

const DEFAULT_MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/manifest.toml");

struct Args {
    manifest: PathBuf,
    model: String,
    version: String,
    batches: Vec<usize>,
    jobs: usize,
    size: Option<i64>,
    frames: Option<i64>,
    threads: i32,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut parsed = Args {
        manifest: PathBuf::from(DEFAULT_MANIFEST),
        model: "cost".into(),
        version: "1".into(),
        batches: vec![1, 2, 4, 8, 16],
        jobs: 64,
        size: None,
        frames: None,
        threads: 1,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--manifest" => parsed.manifest = value()?.into(),
            "--model" => parsed.model = value()?,
            "--version" => parsed.version = value()?,
            "--batches" => {
                parsed.batches = value()?
                    .split(',')
                    .map(|b| b.trim().parse::<usize>().context("--batches takes numbers"))
                    .collect::<anyhow::Result<_>>()?;
            }
            "--jobs" => parsed.jobs = value()?.parse().context("--jobs")?,
            "--size" => parsed.size = Some(value()?.parse().context("--size")?),
            "--frames" => parsed.frames = Some(value()?.parse().context("--frames")?),
            "--threads" => parsed.threads = value()?.parse().context("--threads")?,
            other => bail!("unknown flag {other}"),
        }
    }
    if parsed.batches.iter().any(|b| !(1..=1024).contains(b)) {
        bail!("batch sizes must be 1..=1024");
    }
    Ok(parsed)
}

/// GPU memory in use, from nvidia-smi (MiB), when there is one.
fn gpu_memory_mib() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=memory.used,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace(", ", "/")
    })
}

#[allow(clippy::print_stdout)] // a command-line report
fn main() -> anyhow::Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    tch::set_num_threads(args.threads);
    let device = Device::cuda_if_available();
    println!(
        "device {device:?} (cuda available: {}, devices: {})",
        tch::Cuda::is_available(),
        tch::Cuda::device_count()
    );
    let loaded_at = Instant::now();
    let registry = ModelRegistry::load(&args.manifest, device)?;
    println!(
        "manifest loaded, checksums verified, models warmed up in {} ms",
        loaded_at.elapsed().as_millis()
    );
    let loaded = registry
        .get(&args.model, &args.version)
        .with_context(|| format!("{}@{} is not in the manifest", args.model, args.version))?;
    let spec = &loaded.spec;
    let side_w = args.size.unwrap_or(i64::from(spec.input.width));
    let side_h = args.size.unwrap_or(i64::from(spec.input.height));
    let frames = args.frames.unwrap_or(i64::from(spec.frames));
    println!(
        "model {} ({}), input {side_w}x{side_h}, {frames} frames, {} jobs per batch size",
        spec.key(),
        spec.description,
        args.jobs
    );
    println!(
        "{:>6} {:>12} {:>12} {:>16}",
        "batch",
        match spec.role {
            ModelRole::Generator => "jobs/s",
            ModelRole::Interpolator => "frames/s",
            ModelRole::Detector => "images/s",
        },
        "ms/pass",
        "GPU MiB used/total"
    );
    for &batch in &args.batches {
        let images = Tensor::rand([batch as i64, 3, side_h, side_w], (Kind::Float, device));
        let params = Tensor::zeros([batch as i64, PARAMS_LEN as i64], (Kind::Float, device));
        // An interpolator's pass: one in-between frame per row, from two frames.
        let next = images.roll([4, 4], [2, 3]);
        let instants = Tensor::full([batch as i64], 0.5, (Kind::Float, device));
        // A detector takes one image at a time: its "batch" is that many images in a row.
        let pass = || match spec.role {
            ModelRole::Generator => loaded.model.generate(&images, &params, frames).map(drop),
            ModelRole::Interpolator => loaded
                .model
                .interpolate(&images, &next, &instants)
                .map(drop),
            ModelRole::Detector => (0..batch as i64)
                .try_for_each(|row| loaded.model.detect(&images.narrow(0, row, 1)).map(drop)),
        };
        // One untimed pass at this shape (allocator growth, kernel choice).
        match pass() {
            Err(err) if err.kind == InferErrorKind::OutOfMemory => {
                println!(
                    "{batch:>6} {:>12} {:>12} {:>16}",
                    "oom",
                    "-",
                    gpu_memory_mib().unwrap_or_else(|| "n/a".into())
                );
                continue;
            }
            other => other?,
        }
        let passes = args.jobs.div_ceil(batch).max(1);
        let started = Instant::now();
        for _ in 0..passes {
            pass()?;
        }
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{batch:>6} {:>12.2} {:>12.1} {:>16}",
            (passes * batch) as f64 / elapsed,
            1000.0 * elapsed / passes as f64,
            gpu_memory_mib().unwrap_or_else(|| "n/a".into())
        );
    }
    Ok(())
}
