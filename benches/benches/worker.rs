//! The worker end to end, side by side in one run (`cargo bench -p clipfleet-benches --bench
//! worker`):
//! - **overlap**: `cost` jobs through `worker::run` on the in-memory broker with every store call
//!   delayed by 20 ms, against bare forward passes of `cost` at the same batch size: how much of
//!   the device's rate the pipeline keeps when I/O is slow (goal ≥ 95 %). Inference runs with
//!   one intra-op thread, as `clip-worker` sets it: on this 2-core node the "device" is one
//!   core and the pipeline (decode, fit, encode, sealing, the runtime) has the other, as a GPU
//!   node's host CPU is apart from its device. BENCH_THREADS=2 lets inference take both cores
//!   the pipeline also needs: then every cycle spent decoding or encoding is the device's;
//! - **dispatch**: `noop` jobs end to end through RabbitMQ quorum queues with one worker, events
//!   included, photos in the in-memory store; broker messages per job counted. By default the
//!   photo is 16×16 and the clip one frame: every stage still runs (get, unseal, sha256, JPEG
//!   decode, fit, batched inference, H.264 encode and MP4 mux, sealed put, events, delete, ack),
//!   but its pixel work is negligible, so the rate is the per-job overhead's;
//! - **photo lifetime** after success: `input_deleted` minus `succeeded`, p50/p99, from the
//!   events of the dispatch run;
//! - **stages**: `noop` at its manifest's shape on the load test's photos (JPEG and PNG,
//!   320×240 to 1024×768), one job at a time: each stage's median wall time (= its CPU, one job
//!   at a time) and the process's CPU per job.
//!
//! Jobs are published before the worker starts, so the rate is the pipeline's, not the
//! publisher's. Environment: BENCH_JOBS (overlap, default 192), BENCH_DISPATCH_JOBS (default
//! 3000), BENCH_SIZE (overlap's model input side, default 128), BENCH_ROUNDS (default 3),
//! BENCH_SLOTS (jobs the overlap worker holds, default 64), BENCH_DISPATCH_SLOTS (the dispatch
//! worker's, default 512: measured best of 128-1024 for coalescing; its prefetch follows, as in
//! `clip-worker serve`),
//! BENCH_DISPATCH_BATCH (engine max batch for `noop`, default 32 as in the manifest; `cost`
//! runs at 8), BENCH_DISPATCH_SIZE and BENCH_DISPATCH_FRAMES (`noop`'s input side and frames,
//! default 16 and 1; 64 and 4 add some pixel work), BENCH_THREADS (libtorch intra-op threads,
//! default 1), BENCH_STAGE_JOBS (stages: jobs per photo, default 12), BENCH_ONLY (`overlap`,
//! `dispatch` or `stages`: that part alone, e.g. under a profiler).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use clipfleet_benches::{bare_forward_rate, env_usize, median, proc_status_kib, process_cpu_ms};
use clipfleet_broker::{
    AmqpBroker, Broker, BrokerOptions, InMemoryBroker, PoolSpec, QueueRef, Receive,
};
use clipfleet_infer::{Device, Engine, EngineConfig, ModelRegistry, ModelSpec};
use clipfleet_proto::JobId;
use clipfleet_proto::{
    AccountId, EventBatch, EventKind, JobEvent, Motion, PoolName, Timestamp, WorkerId, decode,
};
use clipfleet_store::{
    ByteStream, DeleteReport, InMemoryObjectStore, ListPage, LocalKeyring, ObjectKey, ObjectMeta,
    ObjectStore, SealedObjectStore, StoreError,
};
use clipfleet_worker::{WorkerConfig, WorkerDeps, default_encoder, job_for_photo, run, submit};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// A store whose every call takes `delay` longer: slow object storage.
#[derive(Debug)]
struct SlowStore {
    inner: Arc<dyn ObjectStore>,
    delay: Duration,
}

#[async_trait]
impl ObjectStore for SlowStore {
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<(), StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.get(key).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.head(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[ObjectKey]) -> DeleteReport {
        tokio::time::sleep(self.delay).await;
        self.inner.delete_many(keys).await
    }
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.list_page(prefix, continuation, max_keys).await
    }
    async fn check_connectivity(&self) -> Result<(), StoreError> {
        self.inner.check_connectivity().await
    }
}

/// The repository's manifest with `model` at `side`×`side`, in a temp dir of its own.
fn manifest(model: &str, side: u32, frames: Option<u32>) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!(
        "clipfleet-bench-worker-{model}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let real = std::fs::read_to_string(repo.join("models/manifest.toml")).expect("manifest");
    let mut block = real
        .split("[[model]]")
        .find(|b| b.contains(&format!("name = \"{model}\"")))
        .expect("model entry")
        .to_owned();
    for original in ["512", "256"] {
        block = block.replace(
            &format!("input = {{ width = {original}, height = {original} }}"),
            &format!("input = {{ width = {side}, height = {side} }}"),
        );
    }
    if let Some(frames) = frames {
        for original in ["48", "16"] {
            block = block.replace(
                &format!("frames = {original}\n"),
                &format!("frames = {frames}\n"),
            );
        }
    }
    std::fs::write(
        dir.join("manifest.toml"),
        format!("version = 1\n[[model]]{block}"),
    )
    .expect("write");
    std::fs::copy(
        repo.join(format!("models/{model}.pt")),
        dir.join(format!("{model}.pt")),
    )
    .expect("copy");
    dir.join("manifest.toml")
}

fn photo(side: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("jpeg");
    out.into_inner()
}

fn load(manifest: &Path, max_batch: usize) -> (Engine, Vec<ModelSpec>, ModelRegistry) {
    let registry = ModelRegistry::load(manifest, Device::Cpu).expect("registry");
    let models = registry.models().map(|m| m.spec.clone()).collect();
    let engine = Engine::start(
        ModelRegistry::load(manifest, Device::Cpu).expect("registry"),
        EngineConfig {
            max_batch,
            max_wait: Duration::from_millis(20),
            queue_capacity: 64,
        },
    )
    .expect("engine");
    (engine, models, registry)
}

/// The bench's worker on pool `default`, holding `slots` jobs.
fn worker_config(slots: usize) -> WorkerConfig {
    let pool = PoolName::new("default").expect("pool");
    let mut config = WorkerConfig::new(WorkerId::new("bench").expect("id"), pool);
    config.slots = slots;
    config
}

/// What one run through the worker measured.
struct Run {
    jobs_per_s: f64,
    messages_per_job: f64,
    photo_lifetime_ms: Vec<u64>,
    /// The process's RSS with the engine loaded and the jobs queued, before the worker runs.
    rss_before_kib: u64,
    /// Of it, anonymous memory (heap, stacks) and file-backed pages (libtorch's code and
    /// read-only data as it touched them: shared with every process mapping the same library,
    /// and reclaimable).
    anon_before_kib: u64,
    file_before_kib: u64,
    /// Anonymous memory at its peak while the worker runs.
    anon_peak_kib: u64,
    /// Its peak while the worker runs (sampled every 10 ms).
    rss_peak_kib: u64,
}

/// Publishes `jobs` jobs, then runs one worker until every one succeeded.
async fn through_worker(
    broker: Arc<dyn Broker>,
    store: Arc<dyn ObjectStore>,
    engine: Engine,
    models: Vec<ModelSpec>,
    jobs: usize,
    side: u32,
    config: WorkerConfig,
) -> Run {
    let pool = config.pool.clone();
    broker
        .ensure_pool(&pool, PoolSpec::default())
        .await
        .expect("pool");
    let spec = models[0].clone();
    let account = AccountId::new("bench").expect("account");
    let picture = photo(side);
    let deadline = Timestamp::from_system_time(SystemTime::now() + Duration::from_secs(3600));
    // Queued concurrently (confirms pipeline), so setting up a run takes seconds, not minutes.
    futures_util::stream::iter(0..jobs)
        .map(|_| {
            let job = job_for_photo(&account, &pool, &spec, &picture, Motion::ZoomIn, deadline);
            let (broker, store, picture) = (broker.clone(), store.clone(), picture.clone());
            async move {
                submit(broker.as_ref(), store.as_ref(), &job, picture)
                    .await
                    .expect("submit");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    println!("{jobs} jobs queued; the worker starts");
    let watched = engine.clone();
    let deps = WorkerDeps {
        broker: broker.clone(),
        store,
        engine,
        models,
        encoder: default_encoder(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // This process's RSS with the engine loaded and the jobs queued, then its peak while the
    // worker runs: what the worker adds under full load.
    let pid = std::process::id();
    let rss_before_kib = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let anon_before_kib = proc_status_kib(pid, "RssAnon:").unwrap_or(0);
    let file_before_kib = proc_status_kib(pid, "RssFile:").unwrap_or(0);
    let peak_rss = Arc::new(std::sync::atomic::AtomicU64::new(rss_before_kib));
    let peak_anon = Arc::new(std::sync::atomic::AtomicU64::new(anon_before_kib));
    let sampler = {
        let (peak, anon) = (peak_rss.clone(), peak_anon.clone());
        tokio::spawn(async move {
            loop {
                if let Some(rss) = proc_status_kib(pid, "VmRSS:") {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                if let Some(rss) = proc_status_kib(pid, "RssAnon:") {
                    anon.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    let worker = tokio::spawn(run(deps, config, async move {
        let _ = stopped.await;
    }));
    let (mut succeeded, mut deleted) = (HashMap::new(), HashMap::new());
    let mut batches = 0usize;
    while succeeded.len() < jobs || deleted.len() < jobs {
        let (events, received) = next_events(broker.as_ref(), 256, Duration::from_secs(1)).await;
        batches += received;
        for event in events {
            match event.event {
                EventKind::Succeeded { .. } => {
                    succeeded.insert(event.job_id, event.at.unix_ms());
                }
                EventKind::InputDeleted => {
                    deleted.insert(event.job_id, event.at.unix_ms());
                }
                _ => {}
            }
        }
    }
    let took = started.elapsed();
    sampler.abort();
    let stats = watched.stats();
    println!(
        "engine: passes by batch size {:?}, busy {:.0} % of the run",
        stats.passes_by_size(),
        100.0 * stats.busy().as_secs_f64() / took.as_secs_f64()
    );
    let _ = stop.send(());
    worker.await.expect("join").expect("worker");
    let mut lifetime: Vec<u64> = succeeded
        .iter()
        .map(|(id, at)| deleted[id].saturating_sub(*at))
        .collect();
    lifetime.sort_unstable();
    Run {
        jobs_per_s: jobs as f64 / took.as_secs_f64(),
        // Each job: its own publish, plus its share of the event batches.
        messages_per_job: (jobs + batches) as f64 / jobs as f64,
        photo_lifetime_ms: lifetime,
        rss_before_kib,
        rss_peak_kib: peak_rss.load(std::sync::atomic::Ordering::Relaxed),
        anon_before_kib,
        file_before_kib,
        anon_peak_kib: peak_anon.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// Receives up to `max` event messages (waiting at most `wait` for more once one arrived),
/// acks them, and returns their events and how many messages there were. A failed job ends the
/// bench: every job of a run must succeed.
async fn next_events(broker: &dyn Broker, max: usize, wait: Duration) -> (Vec<JobEvent>, usize) {
    let got = broker
        .receive(
            &QueueRef::Events,
            Receive::new(max, Duration::from_secs(60), wait),
        )
        .await
        .expect("events");
    let mut events = Vec::new();
    for delivery in &got {
        for event in decode::<EventBatch>(&delivery.body).expect("batch").events {
            if let EventKind::Failed { code, .. } = &event.event {
                panic!("job failed: {code}");
            }
            events.push(event);
        }
    }
    let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
    broker.ack(&leases).await.expect("ack");
    (events, got.len())
}

/// A persistent message to `queue` through the default exchange; its confirm to await.
async fn publish(channel: &lapin::Channel, queue: &str, body: &[u8]) -> lapin::PublisherConfirm {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish")
}

/// The broker work of a dispatch run done by hand on lapin, with nothing else: `jobs` messages
/// of a job's size queued on a quorum queue first (not timed, as the fleet's jobs), then
/// consumed with the worker's prefetch and acked one by one, one confirmed message published
/// to a second quorum queue per `jobs_per_event` deliveries (the fleet's event batches) and
/// consumed and acked there, as the bench's event reader does. Its rate is what RabbitMQ and
/// lapin allow this pattern on this machine: the fleet's dispatch is measured against it.
async fn raw_dispatch(
    url: &str,
    jobs: usize,
    body_len: usize,
    prefetch: u16,
    jobs_per_event: usize,
) -> f64 {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let publisher = conn.create_channel().await.expect("channel");
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let unique = JobId::generate().to_string().to_ascii_lowercase();
    let (jobs_queue, events_queue) = (
        format!("bench-raw-jobs-{unique}"),
        format!("bench-raw-events-{unique}"),
    );
    for queue in [&jobs_queue, &events_queue] {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        publisher
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
            .await
            .expect("declare");
    }

    let body = vec![0x5a; body_len];
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(256) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for _ in chunk {
            confirms.push(publish(&publisher, &jobs_queue, &body).await);
        }
        for confirm in confirms {
            assert!(confirm.await.expect("confirm").is_ack(), "nacked");
        }
    }
    let consume = async |queue: &str, prefetch: u16| {
        let channel = conn.create_channel().await.expect("channel");
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .expect("qos");
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        (channel, consumer)
    };
    let events = jobs.div_ceil(jobs_per_event.max(1));
    let started = Instant::now();
    let (_events_channel, mut event_reader) = consume(&events_queue, 256).await;
    let read_events = tokio::spawn(async move {
        for _ in 0..events {
            let delivery = event_reader.next().await.expect("open").expect("delivery");
            delivery.ack(BasicAckOptions::default()).await.expect("ack");
        }
    });
    let (_jobs_channel, mut job_reader) = consume(&jobs_queue, prefetch).await;
    let event_body = vec![0x5b; 40 * jobs_per_event.max(1)];
    let mut confirms = tokio::task::JoinSet::new();
    for done in 1..=jobs {
        let delivery = job_reader.next().await.expect("open").expect("delivery");
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        if done % jobs_per_event.max(1) == 0 || done == jobs {
            let confirm = publish(&publisher, &events_queue, &event_body).await;
            confirms.spawn(async move { assert!(confirm.await.expect("confirm").is_ack()) });
        }
    }
    confirms.join_all().await;
    read_events.await.expect("events");
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    for queue in [&jobs_queue, &events_queue] {
        let _ = publisher
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "done".into()).await;
    rate
}

fn sealed(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(SealedObjectStore::new(
        inner,
        Arc::new(LocalKeyring::ephemeral().expect("keyring")),
    ))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // Process-wide, before any inference: the engine's thread and the bare loop's take it up
    // when they first run an op, so both get the same intra-op parallelism.
    tch::set_num_threads(env_usize("BENCH_THREADS", 1) as i32);
    let jobs = env_usize("BENCH_JOBS", 192);
    let dispatch_jobs = env_usize("BENCH_DISPATCH_JOBS", 3000);
    let side = env_usize("BENCH_SIZE", 128) as u32;
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let only = std::env::var("BENCH_ONLY").ok();
    if only.is_none() || only.as_deref() == Some("overlap") {
        overlap(&runtime, jobs, side, rounds);
    }
    if only.is_none() || only.as_deref() == Some("dispatch") {
        dispatch(&runtime, dispatch_jobs, rounds);
    }
    // Last: it installs a tracing subscriber, which the other parts run without.
    if only.is_none() || only.as_deref() == Some("stages") {
        stages(&runtime, env_usize("BENCH_STAGE_JOBS", 12));
    }
}

fn overlap(runtime: &tokio::runtime::Runtime, jobs: usize, side: u32, rounds: usize) {
    let cost = manifest("cost", side, None);
    let (mut through, mut bare) = (Vec::new(), Vec::new());
    let mut frames = 0;
    for round in 0..rounds {
        let (engine, models, registry) = load(&cost, 8);
        frames = i64::from(models[0].frames);
        let model = &registry.models().next().expect("model").model;
        // Bare passes before and after the worker's run, their mean its reference: the host's
        // other load drifts over a round, and this cancels what drifts steadily.
        let bare_loop = || bare_forward_rate(model, 8, jobs, side, frames);
        let before = bare_loop();
        let slow: Arc<dyn ObjectStore> = Arc::new(SlowStore {
            inner: Arc::new(InMemoryObjectStore::new()),
            delay: Duration::from_millis(20),
        });
        let run = runtime.block_on(through_worker(
            Arc::new(InMemoryBroker::new()),
            sealed(slow),
            engine,
            models,
            jobs,
            side,
            worker_config(env_usize("BENCH_SLOTS", 64)),
        ));
        let after = bare_loop();
        println!(
            "round {round}: overlap worker {:.2} jobs/s, bare {before:.2} before and {after:.2} after",
            run.jobs_per_s,
        );
        bare.push((before + after) / 2.0);
        through.push(run.jobs_per_s);
    }
    // Each round's runs were back to back: the median of the per-round ratios is the least
    // disturbed by the machine's other load.
    let ratio = median(through.iter().zip(&bare).map(|(t, b)| t / b).collect());
    let (through, bare) = (median(through), median(bare));
    println!(
        "overlap ({jobs} cost jobs, {side}x{side}, {frames} frames, batch 8, {} intra-op thread(s), store +20 ms per call): worker {through:.2} jobs/s vs bare forward {bare:.2} jobs/s (medians); median per-round ratio {:.1} %",
        tch::get_num_threads(),
        100.0 * ratio
    );
}

fn dispatch(runtime: &tokio::runtime::Runtime, dispatch_jobs: usize, rounds: usize) {
    let side = env_usize("BENCH_DISPATCH_SIZE", 16) as u32;
    let frames = env_usize("BENCH_DISPATCH_FRAMES", 1) as u32;
    let slots = env_usize("BENCH_DISPATCH_SLOTS", 512);
    let config = worker_config(slots);
    let noop = manifest("noop", side, Some(frames));
    let mut rates = Vec::new();
    let mut messages = 0.0;
    let mut lifetimes = Vec::new();
    let mut rss = Vec::new();
    let mut anon = Vec::new();
    let (mut raws, mut ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let namespace = format!("bw{round}-{}", std::process::id());
        let options = BrokerOptions {
            namespace,
            // As `clip-worker serve` sets it.
            prefetch: config.broker_prefetch(),
            ..BrokerOptions::default()
        };
        let amqp = runtime
            .block_on(AmqpBroker::connect(&clipfleet_testkit::amqp_url(), options))
            .expect("rabbitmq");
        let broker: Arc<dyn Broker> = Arc::new(amqp.clone());
        let (engine, models, _) = load(&noop, env_usize("BENCH_DISPATCH_BATCH", 32));
        // What a job message weighs on the wire (the raw loop's messages weigh the same).
        let body_len = {
            let job = job_for_photo(
                &AccountId::new("bench").expect("account"),
                &config.pool,
                &models[0],
                &photo(side),
                Motion::ZoomIn,
                Timestamp::from_system_time(SystemTime::now()),
            );
            clipfleet_proto::encode(&job).expect("encode").len()
        };
        let run = runtime.block_on(through_worker(
            broker.clone(),
            sealed(Arc::new(InMemoryObjectStore::new())),
            engine,
            models,
            dispatch_jobs,
            side,
            config.clone(),
        ));
        let settles = amqp.settle_stats();
        println!(
            "round {round}: dispatch {:.0} jobs/s, {:.3} broker messages per job, {:.1} deliveries settled per ack frame; RSS {:.1} MiB before the worker, peak {:.1} MiB",
            run.jobs_per_s,
            run.messages_per_job,
            settles.settled as f64 / settles.frames.max(1) as f64,
            run.rss_before_kib as f64 / 1024.0,
            run.rss_peak_kib as f64 / 1024.0
        );
        rss.push((run.rss_before_kib, run.rss_peak_kib));
        anon.push((run.anon_before_kib, run.anon_peak_kib, run.file_before_kib));
        if let Some(admin) = broker.admin() {
            let _ = runtime.block_on(admin.delete_pool(&config.pool));
        }
        // The same broker work by hand, right after (the machine's other load drifts).
        let jobs_per_event = (1.0 / (run.messages_per_job - 1.0).max(1e-3)).round() as usize;
        let raw = runtime.block_on(raw_dispatch(
            &clipfleet_testkit::amqp_url(),
            dispatch_jobs,
            body_len,
            config.broker_prefetch(),
            jobs_per_event,
        ));
        println!(
            "round {round}: raw lapin {raw:.0} msgs/s (one event message per {jobs_per_event} jobs): the fleet at {:.1} %",
            100.0 * run.jobs_per_s / raw
        );
        raws.push(raw);
        ratios.push(run.jobs_per_s / raw);
        rates.push(run.jobs_per_s);
        messages = run.messages_per_job;
        lifetimes.extend(run.photo_lifetime_ms);
    }
    lifetimes.sort_unstable();
    println!(
        "dispatch ({dispatch_jobs} noop jobs {side}x{side}x{frames} through RabbitMQ quorum queues, one worker with {slots} slots, events included): {:.0} jobs/s, {messages:.3} broker messages per job",
        median(rates)
    );
    println!(
        "raw lapin, the same broker work by hand: {:.0} msgs/s (median); dispatch / raw lapin, median of the per-round ratios: {:.1} %",
        median(raws),
        100.0 * median(ratios)
    );
    // The first round's: later rounds start in a process that already ran a worker, an engine
    // and a broker connection (it grows by ~30 MiB a round, anonymous memory the allocator keeps).
    let (before, peak) = (rss[0].0 as f64, rss[0].1 as f64);
    println!(
        "worker process RSS (first round, a fresh process): {:.1} MiB with libtorch, the noop engine and the broker client before it runs, {:.1} MiB at peak with {slots} jobs in flight: {:.1} KiB per in-flight job",
        before / 1024.0,
        peak / 1024.0,
        (peak - before).max(0.0) / slots as f64
    );
    let (anon_before, anon_peak, file) = (anon[0].0 as f64, anon[0].1 as f64, anon[0].2 as f64);
    println!(
        "of it anonymous (heap, stacks): {:.1} MiB before, {:.1} MiB at peak; file-backed before it runs: {:.1} MiB (libtorch's code and read-only data as it touched them: shared by every process that maps the library, and reclaimable)",
        anon_before / 1024.0,
        anon_peak / 1024.0,
        file / 1024.0
    );
    println!(
        "photo lifetime after success ({} jobs): p50 {} ms, p99 {} ms, max {} ms",
        lifetimes.len(),
        percentile(&lifetimes, 0.5),
        percentile(&lifetimes, 0.99),
        lifetimes[lifetimes.len() - 1]
    );
}

/// The worker's stage spans, by name, in the order a job passes them.
const STAGE_SPANS: [&str; 6] = ["fetch", "infer", "encode", "store video", "finish", "job"];

/// When a stage span was created.
struct Opened(Instant);

/// Wall time of each of the worker's stage spans, from creation to close, collected by name.
/// With one job at a time in an otherwise idle process, a stage's wall time is the CPU it
/// spent (each stage is CPU-bound: the store and the broker are in memory).
#[derive(Clone, Default)]
struct StageClock {
    spans: Arc<std::sync::Mutex<HashMap<&'static str, Vec<Duration>>>>,
}

impl StageClock {
    /// What was collected since the last call.
    fn take(&self) -> HashMap<&'static str, Vec<Duration>> {
        std::mem::take(&mut *self.spans.lock().expect("clock"))
    }
}

impl<S> tracing_subscriber::Layer<S> for StageClock
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if STAGE_SPANS.contains(&attrs.metadata().name())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Opened(Instant::now()));
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(Opened(at)) = span.extensions().get::<Opened>() {
            self.spans
                .lock()
                .expect("clock")
                .entry(span.metadata().name())
                .or_default()
                .push(at.elapsed());
        }
    }
}

/// **stages**: `noop` at its manifest's shape (input 256², aspect buckets, 16 frames) on the
/// load test's photos, JPEG and PNG of each of its sizes, one job at a time through the worker
/// (in-memory broker, sealed in-memory store): each stage's median wall time (= its CPU, one job
/// at a time) and the process's CPU per job measured around each batch of jobs.
fn stages(runtime: &tokio::runtime::Runtime, jobs: usize) {
    let clock = StageClock::default();
    {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(clock.clone());
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            println!("stages: a tracing subscriber is already set; skipped");
            return;
        }
    }
    let noop = manifest("noop", 256, None);
    let (engine, models, _) = load(&noop, 1);
    let frames = models[0].frames;
    let sizes = [(320, 240), (640, 480), (1024, 768)];
    let formats = [
        ("jpeg", image::ImageFormat::Jpeg),
        ("png", image::ImageFormat::Png),
    ];
    println!(
        "stages (noop at its manifest's shape, {frames} frames; one job at a time; {jobs} jobs per photo, medians in ms; cpu/job: the process's CPU over those jobs):"
    );
    println!(
        "{:<14} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "photo", "bytes", "fetch", "infer", "encode", "store", "finish", "job", "cpu/job"
    );
    for (width, height) in sizes {
        for (name, format) in formats {
            let size = clipfleet_loadtest::PhotoSize { width, height };
            let picture = clipfleet_loadtest::encode_photo(size, format).expect("photo");
            // One untimed job first: the first of a shape allocates what the rest reuse.
            runtime.block_on(one_at_a_time(&engine, &models, &picture, 1));
            clock.take();
            let cpu_before = process_cpu_ms();
            let took = runtime.block_on(one_at_a_time(&engine, &models, &picture, jobs));
            let cpu = process_cpu_ms()
                .zip(cpu_before)
                .map(|(after, before)| (after - before) as f64 / jobs as f64);
            let spans = clock.take();
            let stage = |name: &str| {
                let walls = spans
                    .get(name)
                    .map(|d| d.iter().map(|d| d.as_secs_f64() * 1e3).collect())
                    .unwrap_or_default();
                median(walls)
            };
            println!(
                "{:<14} {:>8} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>8.1}   ({:.1} jobs/s)",
                format!("{name} {width}x{height}"),
                picture.len(),
                stage("fetch"),
                stage("infer"),
                stage("encode"),
                stage("store video"),
                stage("finish"),
                stage("job"),
                cpu.unwrap_or(f64::NAN),
                jobs as f64 / took.as_secs_f64(),
            );
        }
    }
}

/// Submits `jobs` jobs of `picture` and runs a worker with one slot until all succeeded: the
/// wall time it took.
async fn one_at_a_time(
    engine: &Engine,
    models: &[ModelSpec],
    picture: &[u8],
    jobs: usize,
) -> Duration {
    let broker: Arc<dyn Broker> = Arc::new(InMemoryBroker::new());
    let store = sealed(Arc::new(InMemoryObjectStore::new()));
    let config = worker_config(1);
    broker
        .ensure_pool(&config.pool, PoolSpec::default())
        .await
        .expect("pool");
    let account = AccountId::new("bench").expect("account");
    let deadline = Timestamp::from_system_time(SystemTime::now() + Duration::from_secs(3600));
    for _ in 0..jobs {
        let job = job_for_photo(
            &account,
            &config.pool,
            &models[0],
            picture,
            Motion::ZoomIn,
            deadline,
        );
        submit(broker.as_ref(), store.as_ref(), &job, picture.to_vec())
            .await
            .expect("submit");
    }
    let deps = WorkerDeps {
        broker: broker.clone(),
        store,
        engine: engine.clone(),
        models: models.to_vec(),
        encoder: default_encoder(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let worker = tokio::spawn(run(deps, config, async move {
        let _ = stopped.await;
    }));
    let mut succeeded = 0;
    while succeeded < jobs {
        let (events, _) = next_events(broker.as_ref(), 64, Duration::from_millis(50)).await;
        succeeded += events
            .iter()
            .filter(|event| matches!(event.event, EventKind::Succeeded { .. }))
            .count();
    }
    let took = started.elapsed();
    let _ = stop.send(());
    worker.await.expect("join").expect("worker");
    took
}
