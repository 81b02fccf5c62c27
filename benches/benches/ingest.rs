//! Ingest throughput and memory: submissions per second of 200 KB JPEGs at 100 concurrent
//! uploads, and the `clip-ingest` process's peak RSS, on embedded defaults (SQLite in memory, the
//! in-process broker, a sealed store) and, with `CLIPFLEET_BENCH_REAL=1`, on the real services
//! (PostgreSQL, RabbitMQ, the S3 emulator; `eval "$(bash scripts/emulator.sh env)"` first).
//!
//! Where the embedded run keeps the photos, `CLIPFLEET_BENCH_STORE`:
//! - `tmpfs` (default): a sealed file store in `/dev/shm`. Memory, like the embedded default's
//!   in-memory store, but outside the ingest process, so the RSS is ingest's own and does not
//!   grow with the photos no worker deletes in this bench.
//! - `memory`: the embedded default's in-memory store itself; every stored photo then counts
//!   in the RSS.
//! - `disk`: a sealed file store under the system temp dir: adds the filesystem's cost of two
//!   fsyncs and a rename per photo (on this machine's ext4 that, not ingest, is the limit).
//!
//! On the real services the store is the S3 emulator (`CLIPFLEET_BENCH_STORE=s3`, the default
//! there) or, so that the store is not what limits ingest, one of the above with PostgreSQL and
//! RabbitMQ. It first measures the store's own ceiling: sealed puts of the same photo straight to
//! the S3 emulator through the store's S3 backend, `CONCURRENCY` at once
//! (`CLIPFLEET_BENCH_STORE_PUTS`, default 2000), and to the run's own store when that is another —
//! ingest can go no faster than that — and prints ingest's rate as a share of it.
//!
//! It runs the real binary (build it first: `cargo build --release -p clipfleet-ingest`) as a
//! process of its own, so the RSS is ingest's alone, and cleans up what the run stored.
//!
//! `cargo bench -p clipfleet-benches --bench ingest` (`CLIPFLEET_BENCH_JOBS`, default 5000).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::io::{BufRead, BufReader, Cursor};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clipfleet_benches::{env_usize, proc_status_kib};
use clipfleet_ingest::DEV_TOKEN;
use clipfleet_ledger::Ledger;
const CONCURRENCY: usize = 100;

fn main() -> anyhow::Result<()> {
    let jobs = env_usize("CLIPFLEET_BENCH_JOBS", 5000);
    let real = std::env::var("CLIPFLEET_BENCH_REAL").as_deref() == Ok("1");
    let store = std::env::var("CLIPFLEET_BENCH_STORE")
        .unwrap_or_else(|_| if real { "s3" } else { "tmpfs" }.into());
    let photo = photo_of_about(200_000);
    println!(
        "ingest bench: {jobs} submissions of a {} byte JPEG, {CONCURRENCY} concurrent, {}",
        photo.len(),
        if real {
            format!("real services (PostgreSQL, RabbitMQ; sealed store: {store})")
        } else {
            format!("embedded defaults (SQLite, in-process broker, sealed store: {store})")
        }
    );
    let dir = match store.as_str() {
        "tmpfs" if std::path::Path::new("/dev/shm").is_dir() => tempfile::tempdir_in("/dev/shm")?,
        "tmpfs" | "disk" | "memory" => tempfile::tempdir()?,
        "s3" if real => tempfile::tempdir()?,
        other => anyhow::bail!(
            "CLIPFLEET_BENCH_STORE={other:?}: tmpfs, memory or disk (or s3 with CLIPFLEET_BENCH_REAL=1)"
        ),
    };
    let store_url = match store.as_str() {
        "s3" => Some(format!("s3://{BENCH_BUCKET}")),
        "memory" => None,
        _ => Some(format!("file://{}", dir.path().display())),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut ceiling = None;
    if real {
        runtime.block_on(prepare_real())?;
        let puts = env_usize("CLIPFLEET_BENCH_STORE_PUTS", 2000);
        // The emulator's own ceiling, whichever store ingest runs on.
        let emulator =
            runtime.block_on(store_ceiling(&format!("s3://{BENCH_BUCKET}"), &photo, puts))?;
        ceiling = Some(match &store_url {
            Some(url) if store != "s3" => runtime.block_on(store_ceiling(url, &photo, puts))?,
            _ => emulator,
        });
    }
    let (mut child, addr) = spawn_ingest(real, store_url.as_deref())?;
    let result = runtime.block_on(load(&addr, photo, jobs, child.id(), ceiling));
    let _ = child.kill();
    let _ = child.wait();
    if real {
        runtime.block_on(cleanup_real())?;
    }
    result
}

/// A JPEG of noise near `bytes` long (noise does not compress, like a phone photo's detail).
fn photo_of_about(bytes: usize) -> Vec<u8> {
    let side = ((bytes as f64 / 1.1).sqrt()) as u32;
    let mut state = 0x2545_f491_u32;
    let image = image::RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let v = state.to_le_bytes();
        image::Rgb([v[0], v[1], v[2]])
    });
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode");
    out.into_inner()
}

const BENCH_BUCKET: &str = "clipfleet-bench-ingest";
const BENCH_NAMESPACE: &str = "clip-bench";

/// Starts `clip-ingest`; on embedded defaults it keeps photos in files under `dir` if given.
fn spawn_ingest(real: bool, store_url: Option<&str>) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("clip-ingest"))
        .filter(|path| path.exists())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no clip-ingest beside the bench: cargo build --release -p clipfleet-ingest"
            )
        })?;
    let mut command = Command::new(binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--print-addr"])
        .args(["--broker-namespace", BENCH_NAMESPACE])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    if real {
        command
            .env("CLIPFLEET_BROKER__URL", clipfleet_testkit::amqp_url())
            .env("CLIPFLEET_LEDGER__URL", clipfleet_testkit::postgres_url());
    }
    if let Some(url) = store_url {
        command.env("CLIPFLEET_STORE__URL", url);
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    anyhow::ensure!(!line.trim().is_empty(), "ingest did not start");
    Ok((child, line.trim().to_owned()))
}

async fn s3() -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&clipfleet_testkit::aws_sdk_config().await)
            .force_path_style(true)
            .build(),
    )
}

/// A bucket for the run and a ledger without an earlier run's bench account.
async fn prepare_real() -> anyhow::Result<()> {
    let _ = s3().await.create_bucket().bucket(BENCH_BUCKET).send().await;
    let ledger = Ledger::connect(&clipfleet_testkit::postgres_url()).await?;
    ledger.migrate().await?;
    use sqlx::Executor;
    for table in ["usage_records", "jobs"] {
        ledger
            .pool()
            .execute(format!("DELETE FROM {table} WHERE account_id = 'bench'").as_str())
            .await?;
    }
    ledger
        .pool()
        .execute("DELETE FROM accounts WHERE id = 'bench'")
        .await?;
    Ok(())
}

/// Sealed puts of `photo` straight to the store at `url` (the bench bucket, or the run's
/// directory), `CONCURRENCY` at once, `puts` in all: the store's ceiling, puts/s (the objects
/// are deleted).
async fn store_ceiling(url: &str, photo: &[u8], puts: usize) -> anyhow::Result<f64> {
    let store = clipfleet_store::open_sealed(url, "ephemeral").await?;
    let photo = bytes::Bytes::copy_from_slice(photo);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (store, photo, next) = (store.clone(), photo.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= puts {
                    return anyhow::Ok(());
                }
                let key = clipfleet_store::ObjectKey::new(format!("ceiling/{n}"))?;
                store
                    .put(&key, clipfleet_store::body_from_bytes(photo.clone()))
                    .await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let rate = puts as f64 / started.elapsed().as_secs_f64();
    for n in 0..puts {
        let _ = store
            .delete(&clipfleet_store::ObjectKey::new(format!("ceiling/{n}"))?)
            .await;
    }
    println!(
        "store ceiling: {puts} sealed puts of {} bytes to {url}, {CONCURRENCY} at once: {rate:.0} puts/s",
        photo.len()
    );
    Ok(rate)
}

/// Deletes the run's photos and its queued jobs.
async fn cleanup_real() -> anyhow::Result<()> {
    let store = clipfleet_store::open(&format!("s3://{BENCH_BUCKET}")).await?;
    let keys: Vec<_> = clipfleet_store::list_all(&*store, "")
        .await?
        .into_iter()
        .map(|meta| meta.key)
        .collect();
    for chunk in keys.chunks(1000) {
        let _ = store.delete_many(chunk).await;
    }
    let broker = clipfleet_broker::connect(
        &clipfleet_testkit::amqp_url(),
        clipfleet_broker::BrokerOptions {
            namespace: BENCH_NAMESPACE.into(),
            ..clipfleet_broker::BrokerOptions::default()
        },
    )
    .await?;
    if let Some(admin) = broker.admin() {
        admin
            .purge(&clipfleet_broker::QueueRef::Jobs(
                clipfleet_proto::PoolName::new("default")?,
            ))
            .await?;
    }
    Ok(())
}

async fn load(
    addr: &str,
    photo: Vec<u8>,
    jobs: usize,
    pid: u32,
    ceiling: Option<f64>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let base = format!("http://{addr}");
    let created = http
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(DEV_TOKEN)
        .json(&serde_json::json!({"account_id": "bench", "birth_date": "1990-01-01"}))
        .send()
        .await?;
    anyhow::ensure!(
        created.status() == 201,
        "create account: {}",
        created.status()
    );
    let photo = bytes::Bytes::from(photo);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak_rss = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_kib(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, base, photo, next) = (http.clone(), base.clone(), photo.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0usize;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < jobs {
                let form = reqwest::multipart::Form::new()
                    .text("params", r#"{"account_id":"bench"}"#)
                    .part(
                        "photo",
                        reqwest::multipart::Part::stream(reqwest::Body::from(photo.clone()))
                            .file_name("p.jpg"),
                    );
                let sent = Instant::now();
                let response = http
                    .post(format!("{base}/v1/jobs"))
                    .bearer_auth(DEV_TOKEN)
                    .multipart(form)
                    .send()
                    .await?;
                let status = response.status();
                let _ = response.bytes().await?;
                if status == 202 {
                    latencies.push(sent.elapsed());
                } else {
                    refused += 1;
                }
            }
            anyhow::Ok((latencies, refused))
        }));
    }
    let mut latencies = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (mut l, r) = task.await??;
        latencies.append(&mut l);
        refused += r;
    }
    let elapsed = started.elapsed();
    sampler.abort();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "accepted {} refused {refused} in {:.2} s: {:.0} submissions/s; latency p50 {:.1} ms p99 {:.1} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    if let Some(ceiling) = ceiling {
        println!(
            "ingest at {:.0} % of the store's ceiling ({ceiling:.0} puts/s)",
            100.0 * latencies.len() as f64 / elapsed.as_secs_f64() / ceiling
        );
    }
    println!(
        "ingest peak RSS {:.1} MiB (sampled every 20 ms; VmHWM {:.1} MiB)",
        peak_rss.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
        hwm_kib(pid).unwrap_or(0) as f64 / 1024.0
    );
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}
