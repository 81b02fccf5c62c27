//! The worker on embedded defaults: the in-memory broker, a sealed in-memory store, the real
//! engine with the `motion` model (framed by the real MTCNN detector), the in-process openh264
//! encoder. A photo in, a playable MP4 out, the photo gone; bad photos, expired jobs, erased
//! accounts, redeliveries, drains; a portrait's face kept in the frame.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clipfleet_broker::{Broker, InMemoryBroker, PoolSpec, QueueRef, Receive};
use clipfleet_infer::{
    Adapter, AdapterScope, Device, Engine, EngineConfig, InferErrorKind, ModelRegistry, ModelSpec,
    RgbFrame, frames_to_batch,
};
use clipfleet_media::Openh264Encoder;
use clipfleet_proto::{
    AccountId, Aspect, ErrorCode, EventBatch, EventKind, GenerateJob, JobId, JobKind, Motion,
    PhotoId, PoolName, SessionId, SessionPhoto, SessionRef, Timestamp, WorkerId, decode,
};
use clipfleet_store::{
    InMemoryObjectStore, LocalKeyring, ObjectKey, ObjectStore, SealedObjectStore, StoreErrorKind,
    body_from_bytes, read_to_end,
};
use clipfleet_testkit::{manifest_entry as entry, write_manifest};
use clipfleet_worker::{WorkerConfig, WorkerDeps, WorkerReport, job_for_photo, run, submit};
use tokio::sync::oneshot;

const W: u32 = 128;
const H: u32 = 96;
const FRAMES: u16 = 12;
/// `motion-rife` at 3 keyframes: (3 - 1) x 4 + 1.
const CHAIN_FRAMES: u16 = 9;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The motion model at a small input size (framed by MTCNN as in the real manifest), through a
/// manifest of its own in a temp dir.
fn manifest(tag: &str) -> PathBuf {
    let real = std::fs::read_to_string(repo().join("models/manifest.toml")).expect("manifest");
    let block = entry("motion")
        .replace(
            "input = { width = 512, height = 512 }",
            &format!("input = {{ width = {W}, height = {H} }}"),
        )
        .replace("frames = 48", &format!("frames = {FRAMES}"));
    // A second model of another shape, so jobs of different shapes share the workers.
    let noop = clipfleet_testkit::small_noop_entry();
    // And the learned chain at the same size: 3 keyframes of motion, RIFE between them.
    let chain: String = real
        .split("[[model]]")
        .filter(|b| b.contains("name = \"rife\"") || b.contains("name = \"motion-rife\""))
        .map(|b| {
            let b = b
                .replace(
                    "input = { width = 512, height = 512 }",
                    &format!("input = {{ width = {W}, height = {H} }}"),
                )
                .replace("frames = 12 }", "frames = 3 }")
                .replace("frames = 45", &format!("frames = {CHAIN_FRAMES}"));
            format!("[[model]]{b}")
        })
        .collect();
    let mtcnn = entry("mtcnn");
    write_manifest(
        tag,
        &format!("version = 1\n[[model]]{block}[[model]]{noop}{chain}[[model]]{mtcnn}"),
        &["motion.pt", "noop.pt", "rife.pt", "mtcnn.pt"],
    )
}

struct Fleet {
    broker: Arc<InMemoryBroker>,
    store: Arc<dyn ObjectStore>,
    deps: WorkerDeps,
    pool: PoolName,
    account: AccountId,
    /// The manifest entry jobs name.
    model: ModelSpec,
}

impl Fleet {
    async fn new(tag: &str) -> Fleet {
        Fleet::serving(tag, "motion").await
    }

    /// A fleet whose jobs name `model`.
    async fn serving(tag: &str, model: &str) -> Fleet {
        Fleet::with_manifest(&manifest(tag), |m| m.name == model).await
    }

    /// A fleet on the models of `manifest`, whose jobs name the entry `pick` chooses.
    async fn with_manifest(manifest: &Path, pick: impl Fn(&ModelSpec) -> bool) -> Fleet {
        tch::set_num_threads(1);
        let broker = Arc::new(InMemoryBroker::new());
        let pool = PoolName::new("default").expect("pool");
        broker
            .ensure_pool(&pool, PoolSpec::default())
            .await
            .expect("pool");
        let keyring = Arc::new(LocalKeyring::ephemeral().expect("keyring"));
        let store: Arc<dyn ObjectStore> = Arc::new(SealedObjectStore::new(
            Arc::new(InMemoryObjectStore::new()),
            keyring,
        ));
        let registry = ModelRegistry::load(manifest, Device::Cpu).expect("models");
        let models: Vec<ModelSpec> = registry.specs().cloned().collect();
        let model = models
            .iter()
            .find(|m| pick(m))
            .expect("the model jobs name")
            .clone();
        let engine = Engine::start(registry, EngineConfig::default()).expect("engine");
        let deps = WorkerDeps {
            broker: broker.clone(),
            store: store.clone(),
            engine,
            models,
            encoder: Arc::new(Openh264Encoder),
        };
        Fleet {
            broker,
            store,
            deps,
            pool,
            account: AccountId::new("acct-embedded").expect("account"),
            model,
        }
    }

    /// Stores `photo` sealed and publishes its job, due `deadline_in_ms` from now (negative:
    /// already past); returns the job.
    async fn submit(&self, photo: &[u8], deadline_in_ms: i64, motion: Motion) -> GenerateJob {
        self.submit_with(photo, deadline_in_ms, motion, |_| {})
            .await
    }

    /// [`Fleet::submit`] asking for the video's `aspect`.
    async fn submit_in(
        &self,
        photo: &[u8],
        deadline_in_ms: i64,
        motion: Motion,
        aspect: Aspect,
    ) -> GenerateJob {
        self.submit_with(photo, deadline_in_ms, motion, |job| {
            job.params.aspect = aspect;
        })
        .await
    }

    /// [`Fleet::submit`] with the job message changed by `edit` first.
    async fn submit_with(
        &self,
        photo: &[u8],
        deadline_in_ms: i64,
        motion: Motion,
        edit: impl FnOnce(&mut GenerateJob),
    ) -> GenerateJob {
        let now = Timestamp::from_system_time(SystemTime::now()).unix_ms();
        let deadline = Timestamp::from_unix_ms(now.saturating_add_signed(deadline_in_ms));
        let mut job = job_for_photo(
            &self.account,
            &self.pool,
            &self.model,
            photo,
            motion,
            deadline,
        );
        edit(&mut job);
        submit(
            self.broker.as_ref(),
            self.store.as_ref(),
            &job,
            photo.to_vec(),
        )
        .await
        .expect("submit");
        job
    }

    fn config(&self) -> WorkerConfig {
        let mut config = WorkerConfig::new(
            WorkerId::new("w-embedded").expect("worker"),
            self.pool.clone(),
        );
        config.retry_base_delay = Duration::from_millis(50);
        config.heartbeat_every = Duration::from_millis(200);
        config
    }

    fn start(
        &self,
        config: WorkerConfig,
    ) -> (oneshot::Sender<()>, tokio::task::JoinHandle<WorkerReport>) {
        let (stop, stopped) = oneshot::channel::<()>();
        let deps = self.deps.clone();
        let handle = tokio::spawn(async move {
            run(deps, config, async move {
                let _ = stopped.await;
            })
            .await
            .expect("worker run")
        });
        (stop, handle)
    }

    /// Every event the workers published so far, in order.
    async fn events(&self) -> Vec<clipfleet_proto::JobEvent> {
        let mut events = Vec::new();
        loop {
            let got = self
                .broker
                .receive(
                    &QueueRef::Events,
                    Receive::new(100, Duration::from_secs(60), Duration::ZERO),
                )
                .await
                .expect("events");
            if got.is_empty() {
                return events;
            }
            for delivery in &got {
                events.extend(
                    decode::<EventBatch>(&delivery.body)
                        .expect("event batch")
                        .events,
                );
            }
            let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
            self.broker.ack(&leases).await.expect("ack events");
        }
    }

    async fn wait_for_terminal(&self, jobs: usize) -> Vec<clipfleet_proto::JobEvent> {
        let mut all = Vec::new();
        for _ in 0..600 {
            all.extend(self.events().await);
            let terminal = all
                .iter()
                .filter(|e| {
                    matches!(
                        e.event,
                        EventKind::Succeeded { .. }
                            | EventKind::Failed {
                                retryable: false,
                                ..
                            }
                    )
                })
                .count();
            let deleted = all
                .iter()
                .filter(|e| e.event == EventKind::InputDeleted)
                .count();
            if terminal >= jobs && deleted >= jobs {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("jobs did not finish: {all:?}");
    }

    /// A finished job's stored video, once its photo is checked gone.
    async fn video_instead_of_photo(&self, job: &GenerateJob) -> Vec<u8> {
        assert!(
            self.gone(&ObjectKey::input(&job.account_id, job.job_id))
                .await,
            "the photo is still stored"
        );
        let output = ObjectKey::output(&job.account_id, job.job_id);
        read_to_end(self.store.get(&output).await.expect("video"), 64 << 20)
            .await
            .expect("read video")
            .to_vec()
    }

    /// Whether nothing of `job` is stored: no photo, no video, no image.
    async fn kept_nothing(&self, job: &GenerateJob) -> bool {
        let (account, id) = (&job.account_id, job.job_id);
        self.gone(&ObjectKey::input(account, id)).await
            && self.gone(&ObjectKey::output(account, id)).await
            && self.gone(&ObjectKey::output_image(account, id)).await
    }

    async fn gone(&self, key: &ObjectKey) -> bool {
        matches!(self.store.head(key).await, Err(err) if err.kind() == StoreErrorKind::NotFound)
    }
}

fn photo() -> Vec<u8> {
    std::fs::read(repo().join("models/samples/hillside.jpg")).expect("sample photo")
}

/// ffprobe's view of an MP4: codec, frames, size, pixel format.
fn probe(mp4: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("clipfleet-worker-{}.mp4", JobId::generate()));
    std::fs::write(&path, mp4).expect("write mp4");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,pix_fmt,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe (scripts/install-system-deps.sh installs it)");
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_becomes_a_playable_mp4_and_the_photo_is_gone() {
    let fleet = Fleet::new("happy").await;
    let job = fleet.submit(&photo(), 600_000, Motion::ZoomIn).await;
    let (stop, worker) = fleet.start(fleet.config());
    let events = fleet.wait_for_terminal(1).await;
    let kinds: Vec<_> = events
        .iter()
        .filter(|e| e.job_id == job.job_id)
        .map(|e| &e.event)
        .collect();
    assert!(
        matches!(
            kinds[..],
            [
                EventKind::Started,
                EventKind::Progress { pct: 10 },
                EventKind::Progress { pct: 80 },
                EventKind::Succeeded { .. },
                EventKind::InputDeleted
            ]
        ),
        "{kinds:?}"
    );
    let succeeded_at = events
        .iter()
        .find(|e| matches!(e.event, EventKind::Succeeded { .. }))
        .expect("succeeded")
        .at;
    let deleted_at = events
        .iter()
        .find(|e| e.event == EventKind::InputDeleted)
        .expect("deleted")
        .at;
    assert!(
        deleted_at.saturating_since(succeeded_at) < Duration::from_secs(1),
        "photo outlived the video by more than 1 s"
    );
    let mp4 = fleet.video_instead_of_photo(&job).await;
    let moov = mp4.windows(4).position(|w| w == b"moov").expect("moov");
    let mdat = mp4.windows(4).position(|w| w == b"mdat").expect("mdat");
    assert!(moov < mdat, "moov must come first (faststart)");
    assert_eq!(probe(&mp4), format!("h264,{W},{H},yuv420p,{FRAMES}"));
    let depth = fleet
        .broker
        .depth(&QueueRef::Jobs(fleet.pool.clone()))
        .await
        .expect("depth");
    assert_eq!(
        (depth.ready, depth.in_flight),
        (0, Some(0)),
        "the job was acked"
    );
    stop.send(()).expect("stop");
    let report = worker.await.expect("worker");
    assert_eq!(report.succeeded, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_job_gets_the_interpolated_video_and_the_worker_knows_no_chain() {
    let fleet = Fleet::serving("chain", "motion-rife").await;
    let job = fleet.submit(&photo(), 600_000, Motion::PanRight).await;
    assert_eq!(job.params.frames, CHAIN_FRAMES);
    let (stop, worker) = fleet.start(fleet.config());
    fleet.wait_for_terminal(1).await;
    let mp4 = fleet.video_instead_of_photo(&job).await;
    assert_eq!(probe(&mp4), format!("h264,{W},{H},yuv420p,{CHAIN_FRAMES}"));
    stop.send(()).expect("stop");
    let report = worker.await.expect("worker");
    assert_eq!(report.succeeded, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_photos_expired_jobs_and_erased_accounts_fail_and_leave_nothing() {
    let fleet = Fleet::new("bad").await;
    let good = photo();
    let cut = good[..good.len() * 2 / 3].to_vec();
    let not_an_image = b"hello, I am a text file".to_vec();
    let jobs = [
        (
            fleet.submit(&cut, 600_000, Motion::ZoomIn).await,
            ErrorCode::BadImage,
        ),
        (
            fleet.submit(&not_an_image, 600_000, Motion::PanLeft).await,
            ErrorCode::UnsupportedFormat,
        ),
        (
            fleet.submit(&good, -1_000, Motion::ZoomOut).await,
            ErrorCode::Expired,
        ),
    ];
    let (stop, worker) = fleet.start(fleet.config());
    let events = fleet.wait_for_terminal(jobs.len()).await;
    for (job, code) in &jobs {
        let failed = events.iter().find_map(|e| match &e.event {
            EventKind::Failed {
                code,
                retryable: false,
                ..
            } if e.job_id == job.job_id => Some(*code),
            _ => None,
        });
        let of_job: Vec<_> = events
            .iter()
            .filter(|e| e.job_id == job.job_id)
            .map(|e| &e.event)
            .collect();
        assert_eq!(
            failed,
            Some(*code),
            "job {} expected {code}: {of_job:?}",
            job.job_id
        );
        assert!(
            fleet
                .gone(&ObjectKey::input(&job.account_id, job.job_id))
                .await,
            "photo left for {code}"
        );
        assert!(
            fleet
                .gone(&ObjectKey::output(&job.account_id, job.job_id))
                .await,
            "video made for {code}"
        );
    }
    stop.send(()).expect("stop");
    assert_eq!(worker.await.expect("worker").failed, 3);

    // An account erased while its job waited: the job is dropped, the photo deleted.
    let erased = Fleet::new("erased").await;
    erased
        .store
        .put(
            &ObjectKey::tombstone(&erased.account),
            body_from_bytes(Vec::new()),
        )
        .await
        .expect("tombstone");
    let job = erased.submit(&photo(), 600_000, Motion::ZoomIn).await;
    let (stop, worker) = erased.start(erased.config());
    let events = erased.wait_for_terminal(1).await;
    assert!(
        events.iter().any(|e| matches!(
            e.event,
            EventKind::Failed {
                code: ErrorCode::AccountErased,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        erased
            .gone(&ObjectKey::input(&job.account_id, job.job_id))
            .await
    );
    assert!(
        erased
            .gone(&ObjectKey::output(&job.account_id, job.job_id))
            .await
    );
    stop.send(()).expect("stop");
    worker.await.expect("worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_job_whose_video_exists_only_finishes() {
    let fleet = Fleet::new("redelivered").await;
    let job = fleet.submit(&photo(), 600_000, Motion::ZoomIn).await;
    let output = ObjectKey::output(&job.account_id, job.job_id);
    fleet
        .store
        .put(
            &output,
            body_from_bytes(b"an earlier attempt's video".to_vec()),
        )
        .await
        .expect("video");
    let (stop, worker) = fleet.start(fleet.config());
    let events = fleet.wait_for_terminal(1).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e.event, EventKind::Succeeded { .. }))
    );
    assert!(
        fleet
            .gone(&ObjectKey::input(&job.account_id, job.job_id))
            .await
    );
    assert_eq!(
        fleet.deps.engine.stats().jobs(),
        0,
        "nothing was rendered again"
    );
    stop.send(()).expect("stop");
    worker.await.expect("worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_finishes_the_jobs_in_flight_and_loses_none() {
    let fleet = Fleet::new("drain").await;
    let mut jobs = Vec::new();
    for motion in [
        Motion::ZoomIn,
        Motion::PanRight,
        Motion::Parallax,
        Motion::PanUp,
    ] {
        jobs.push(fleet.submit(&photo(), 600_000, motion).await);
    }
    let (stop, worker) = fleet.start(fleet.config());
    // Drain as soon as the jobs have started.
    for _ in 0..200 {
        let depth = fleet
            .broker
            .depth(&QueueRef::Jobs(fleet.pool.clone()))
            .await
            .expect("depth");
        if depth.ready == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).expect("stop");
    let report = worker.await.expect("worker");
    assert_eq!(report.succeeded, 4, "{report:?}");
    for job in &jobs {
        assert!(
            fleet
                .store
                .head(&ObjectKey::output(&job.account_id, job.job_id))
                .await
                .is_ok(),
            "video missing"
        );
        assert!(
            fleet
                .gone(&ObjectKey::input(&job.account_id, job.job_id))
                .await,
            "photo left"
        );
    }
    let depth = fleet
        .broker
        .depth(&QueueRef::Jobs(fleet.pool.clone()))
        .await
        .expect("depth");
    assert_eq!((depth.ready, depth.in_flight), (0, Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_readiness_follow_the_jobs() {
    use clipfleet_telemetry::{Readiness, metrics_text};
    use clipfleet_worker::{WorkerReadiness, WorkerTelemetry, run_observed};

    let fleet = Fleet::new("metrics").await;
    let mut registry = prometheus_client::registry::Registry::default();
    let telemetry = WorkerTelemetry::register(&mut registry);
    let readiness = WorkerReadiness::new(fleet.deps.clone(), telemetry.clone());
    let ready = |checks: Vec<clipfleet_telemetry::Check>| checks.iter().all(|c| c.result.is_ok());
    assert!(
        ready(readiness.checks().await),
        "ready before the first job"
    );

    fleet.submit(&photo(), 600_000, Motion::ZoomIn).await;
    fleet.submit(b"plain text", 600_000, Motion::ZoomIn).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let (deps, config, observed) = (fleet.deps.clone(), fleet.config(), telemetry.clone());
    let worker = tokio::spawn(async move {
        run_observed(deps, config, observed, async move {
            let _ = stopped.await;
        })
        .await
        .expect("worker run")
    });
    fleet.wait_for_terminal(2).await;
    stop.send(()).expect("stop");
    worker.await.expect("worker");

    let text = metrics_text(&registry);
    for line in [
        "worker_jobs_total{outcome=\"succeeded\",code=\"\"} 1",
        "worker_jobs_total{outcome=\"failed\",code=\"unsupported_format\"} 1",
        "worker_stage_duration_seconds_count{stage=\"infer\"} 1",
        "worker_queue_wait_seconds_count 1",
        "worker_forward_passes_total{size=\"1\"} 1",
        "worker_jobs_in_flight 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // A drained worker takes no jobs: not ready.
    assert!(telemetry.is_draining());
    assert!(!ready(readiness.checks().await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mixed_shape_jobs_through_two_workers_all_finish_and_leave_only_videos() {
    let fleet = Fleet::new("mixed").await;
    let noop = fleet
        .deps
        .models
        .iter()
        .find(|m| m.name == "noop")
        .expect("noop")
        .clone();
    let photo = photo();
    let now = Timestamp::from_system_time(SystemTime::now());
    let deadline = now.saturating_add(Duration::from_secs(600));
    let mut jobs = Vec::new();
    for i in 0..50 {
        let model = if i % 2 == 0 { &fleet.model } else { &noop };
        let motion = Motion::KNOWN[i % Motion::KNOWN.len()];
        let job = job_for_photo(&fleet.account, &fleet.pool, model, &photo, motion, deadline);
        submit(
            fleet.broker.as_ref(),
            fleet.store.as_ref(),
            &job,
            photo.clone(),
        )
        .await
        .expect("submit");
        jobs.push(job);
    }
    // Two workers, each with an engine of its own, share the queue.
    let second_deps = {
        let registry = ModelRegistry::load(&manifest("mixed-2"), Device::Cpu).expect("models");
        WorkerDeps {
            engine: Engine::start(registry, EngineConfig::default()).expect("engine"),
            ..fleet.deps.clone()
        }
    };
    let (stop_a, worker_a) = fleet.start(fleet.config());
    let mut config_b = fleet.config();
    config_b.worker_id = WorkerId::new("w-embedded-2").expect("worker");
    let (stop_b, stopped_b) = oneshot::channel::<()>();
    let worker_b = tokio::spawn(async move {
        run(second_deps, config_b, async move {
            let _ = stopped_b.await;
        })
        .await
        .expect("worker run")
    });
    let events = fleet.wait_for_terminal(50).await;
    stop_a.send(()).expect("stop");
    stop_b.send(()).expect("stop");
    let (a, b) = (worker_a.await.expect("a"), worker_b.await.expect("b"));
    assert_eq!(a.succeeded + b.succeeded, 50, "{a:?} {b:?}");
    assert!(
        a.succeeded > 0 && b.succeeded > 0,
        "both workers took jobs: {a:?} {b:?}"
    );
    let succeeded: std::collections::HashSet<JobId> = events
        .iter()
        .filter(|e| matches!(e.event, EventKind::Succeeded { .. }))
        .map(|e| e.job_id)
        .collect();
    assert_eq!(succeeded.len(), 50, "every job succeeded exactly once");
    // Nothing but the 50 videos is stored, each of its model's shape.
    let stored = clipfleet_store::list_all(fleet.store.as_ref(), "")
        .await
        .expect("list");
    assert_eq!(stored.len(), 50, "only videos remain: {stored:?}");
    assert!(
        stored
            .iter()
            .all(|o| o.key.as_str().starts_with("outputs/"))
    );
    // The sample photo is 4:3: each model renders its 4:3 bucket.
    for (job, model) in jobs[..2].iter().zip([&fleet.model, &noop]) {
        let output = ObjectKey::output(&job.account_id, job.job_id);
        let mp4 = read_to_end(fleet.store.get(&output).await.expect("video"), 64 << 20)
            .await
            .expect("read");
        let (width, height) = model.aspect_size("4:3").expect("a 4:3 bucket");
        assert_eq!(
            probe(&mp4),
            format!("h264,{width},{height},yuv420p,{}", job.params.frames)
        );
    }
}

/// A JPEG of `width`×`height` (a gradient, so the encoder has something to encode).
fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videos_take_the_photo_s_aspect_or_the_one_asked_for() {
    let fleet = Fleet::new("aspect").await;
    let bucket = |name: &str| fleet.model.aspect_size(name).expect("a bucket");
    // A phone's portrait photo stored sideways (EXIF orientation 6), a panorama, and a
    // portrait photo asked to be wide; plus an aspect this worker does not know.
    let sideways = clipfleet_testkit::with_exif_orientation(&jpeg(400, 300), 6);
    let cases = [
        (sideways, Aspect::Auto, Some(bucket("3:4"))),
        (jpeg(600, 200), Aspect::Auto, Some(bucket("16:9"))),
        (jpeg(300, 400), Aspect::Landscape16x9, Some(bucket("16:9"))),
        (jpeg(300, 400), Aspect::Unknown, None),
    ];
    let mut jobs = Vec::new();
    for (photo, aspect, _) in &cases {
        let job = fleet
            .submit_in(photo, 600_000, Motion::PanLeft, *aspect)
            .await;
        jobs.push(job);
    }
    let (stop, worker) = fleet.start(fleet.config());
    let events = fleet.wait_for_terminal(cases.len()).await;
    let _ = stop.send(());
    worker.await.expect("worker");
    for (job, (_, aspect, size)) in jobs.iter().zip(&cases) {
        let output = ObjectKey::output(&job.account_id, job.job_id);
        match size {
            Some((width, height)) => {
                let mp4 = read_to_end(fleet.store.get(&output).await.expect("video"), 64 << 20)
                    .await
                    .expect("read");
                assert_eq!(
                    probe(&mp4),
                    format!("h264,{width},{height},yuv420p,{FRAMES}"),
                    "{aspect:?}"
                );
            }
            None => {
                let failed = events.iter().any(|e| {
                    e.job_id == job.job_id
                        && matches!(
                            &e.event,
                            EventKind::Failed {
                                code: ErrorCode::InvalidParams,
                                retryable: false,
                                ..
                            }
                        )
                });
                assert!(failed, "an unknown aspect fails invalid_params: {events:?}");
                assert!(fleet.gone(&output).await, "no video for it");
            }
        }
    }
    // Portrait stays portrait, wide stays wide.
    assert!(bucket("3:4").0 < bucket("3:4").1 && bucket("16:9").0 > bucket("16:9").1);
}

/// An MP4's frames, decoded by ffmpeg to `width`×`height` RGB.
fn decode_frames(mp4: &[u8], width: u32, height: u32) -> Vec<RgbFrame> {
    let dir = std::env::temp_dir().join(format!("clipfleet-worker-frames-{}", JobId::generate()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("video.mp4");
    std::fs::write(&file, mp4).expect("write mp4");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg (scripts/install-system-deps.sh installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact((width * height * 3) as usize)
        .map(|pixels| RgbFrame::new(width, height, pixels.to_vec()).expect("frame"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portrait_s_face_stays_in_the_frame_where_the_middle_would_lose_it() {
    // The portrait: a face right of the middle of a wide photo (models/samples/portrait.jpg). As
    // a square video zooming in, a centre crop puts the face at the right edge and the zoom
    // pushes it out; framed by MTCNN, the crop and the zoom's focus are on the face. The same
    // motion file twice: `motion@1` framed as in the real manifest, `motion@centre` not.
    let framed = entry("motion")
        .replace(
            "input = { width = 512, height = 512 }",
            "input = { width = 256, height = 256 }",
        )
        .replace("frames = 48", "frames = 6");
    let framing_line = framed
        .lines()
        .find(|line| line.starts_with("framing = "))
        .expect("motion is framed in the real manifest")
        .to_owned();
    let centre = framed
        .replace("version = \"1\"", "version = \"centre\"")
        .replace(&framing_line, "");
    let mtcnn = entry("mtcnn");
    let manifest = write_manifest(
        "faces",
        &format!("version = 1\n[[model]]{framed}[[model]]{centre}[[model]]{mtcnn}"),
        &["motion.pt", "mtcnn.pt"],
    );
    let detector = ModelRegistry::load_serving(&manifest, Device::Cpu, &["mtcnn@2.6.0".into()])
        .expect("detector");
    let mtcnn = &detector.get("mtcnn", "2.6.0").expect("mtcnn").model;
    // Face centres in a frame, in [-1, 1] across and down.
    let faces = |frame: &RgbFrame| -> Vec<(f32, f32)> {
        let image = frames_to_batch(&[frame], Device::Cpu).expect("tensor");
        let (w, h) = (frame.width as f32, frame.height as f32);
        mtcnn
            .detect(&image)
            .expect("detect")
            .iter()
            .map(|f| (f.centre().0 / w * 2.0 - 1.0, f.centre().1 / h * 2.0 - 1.0))
            .collect()
    };
    let photo = std::fs::read(repo().join("models/samples/portrait.jpg")).expect("portrait");
    for version in ["1", "centre"] {
        let fleet =
            Fleet::with_manifest(&manifest, |m| m.name == "motion" && m.version == version).await;
        let job = fleet
            .submit_in(&photo, 600_000, Motion::ZoomIn, Aspect::Square)
            .await;
        let (stop, worker) = fleet.start(fleet.config());
        fleet.wait_for_terminal(1).await;
        let _ = stop.send(());
        assert_eq!(worker.await.expect("worker").succeeded, 1);
        let mp4 = fleet.video_instead_of_photo(&job).await;
        let frames = decode_frames(&mp4, 256, 256);
        assert_eq!(frames.len(), 6, "motion@{version}");
        let (first, last) = (faces(&frames[0]), faces(&frames[5]));
        if version == "1" {
            // One face, across the middle (the crop is centred on it; its height is the photo's,
            // so it stays where it is down), and the zoom keeps it where it was.
            assert!(first.len() == 1 && last.len() == 1, "{first:?} {last:?}");
            let ((x0, y0), (x1, y1)) = (first[0], last[0]);
            assert!(x0.abs() < 0.2 && x1.abs() < 0.2, "off-centre: {x0} {x1}");
            assert!(
                (x1 - x0).abs() < 0.1 && (y1 - y0).abs() < 0.1,
                "{first:?} → {last:?}"
            );
        } else {
            // The middle's crop: the face starts at the right edge and the zoom loses it.
            assert!(
                first.iter().all(|(x, _)| *x > 0.5),
                "the test photo's face must sit right of the middle: {first:?}"
            );
            assert!(
                last.iter().all(|(x, _)| *x > 0.6),
                "the face is cut off at the end of the zoom: {last:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_jobs_store_a_metadata_free_jpeg_and_a_mismatched_kind_fails() {
    // The image-to-image models at a 256x256 budget, framed by MTCNN as in the real manifest.
    let small = |name: &str| {
        entry(name).replace(
            "input = { width = 512, height = 512 }",
            "input = { width = 256, height = 256 }",
        )
    };
    let manifest = write_manifest(
        "images",
        &format!(
            "version = 1\n[[model]]{}[[model]]{}[[model]]{}",
            small("portrait"),
            small("beautify"),
            entry("mtcnn")
        ),
        &["portrait.pt", "beautify.pt", "mtcnn.pt"],
    );
    // A phone's photo stored sideways (EXIF orientation 6): the still is portrait, and keeps none
    // of the photo's metadata.
    let photo = clipfleet_testkit::with_exif_orientation(&jpeg(400, 300), 6);
    for model in ["portrait", "beautify"] {
        let fleet = Fleet::with_manifest(&manifest, |m| m.name == model).await;
        let job = fleet.submit(&photo, 600_000, Motion::ZoomIn).await;
        assert_eq!((job.v, job.kind), (2, JobKind::Image), "{model}");
        let (stop, worker) = fleet.start(fleet.config());
        let events = fleet.wait_for_terminal(1).await;
        let _ = stop.send(());
        assert_eq!(worker.await.expect("worker").succeeded, 1, "{model}");
        let output = ObjectKey::output_image(&job.account_id, job.job_id);
        assert!(
            events.iter().any(|e| matches!(
                &e.event,
                EventKind::Succeeded { output_key, .. } if output_key == output.as_str()
            )),
            "{model}: {events:?}"
        );
        assert!(
            fleet
                .gone(&ObjectKey::input(&job.account_id, job.job_id))
                .await
        );
        let jpeg = read_to_end(fleet.store.get(&output).await.expect("image"), 16 << 20)
            .await
            .expect("read");
        let still = image::load_from_memory(&jpeg).expect("a JPEG").to_rgb8();
        let bucket = fleet.model.aspect_size("3:4").expect("3:4");
        assert_eq!(still.dimensions(), bucket, "{model}");
        for marker in [[0xFF, 0xE1], [0xFF, 0xE2], [0xFF, 0xFE]] {
            assert!(
                !jpeg.windows(2).any(|w| w == marker),
                "{model}: metadata {marker:02x?}"
            );
        }
    }
    // A video job for an image model: the kinds disagree, the job fails and leaves nothing.
    let fleet = Fleet::with_manifest(&manifest, |m| m.name == "portrait").await;
    let job = fleet
        .submit_with(&photo, 600_000, Motion::ZoomIn, |job| {
            (job.v, job.kind) = (1, JobKind::Video);
        })
        .await;
    let (stop, worker) = fleet.start(fleet.config());
    let events = fleet.wait_for_terminal(1).await;
    let _ = stop.send(());
    worker.await.expect("worker");
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            EventKind::Failed {
                code: ErrorCode::InvalidParams,
                retryable: false,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(fleet.kept_nothing(&job).await);
}

/// The image models with the portrait's adapter trained quickly (60 steps at 64²), at a 256x256
/// budget, framed by MTCNN as in the real manifest.
fn session_manifest(tag: &str) -> PathBuf {
    let small = |name: &str| {
        entry(name)
            .replace(
                "input = { width = 512, height = 512 }",
                "input = { width = 256, height = 256 }",
            )
            .replace("steps = 200", "steps = 60")
            .replace("train_size = 128", "train_size = 64")
    };
    assert!(
        small("portrait").contains("adapter = "),
        "portrait has an adapter"
    );
    write_manifest(
        tag,
        &format!(
            "version = 1\n[[model]]{}[[model]]{}",
            small("portrait"),
            entry("mtcnn")
        ),
        &["portrait.pt", "mtcnn.pt"],
    )
}

/// A session of the fleet's account: its id and when it expires.
fn session(expires_in_ms: u64) -> SessionRef {
    let now = Timestamp::from_system_time(SystemTime::now()).unix_ms();
    SessionRef {
        id: SessionId::generate(),
        expires_at: Timestamp::from_unix_ms(now + expires_in_ms),
        photos: Vec::new(),
    }
}

impl Fleet {
    /// Uploads `photos` to `session` as ingest would (sealed, under the session's prefix) and
    /// publishes its `personalize` job.
    async fn personalize(&self, session: &SessionRef, photos: &[Vec<u8>]) -> GenerateJob {
        let mut session = session.clone();
        for photo in photos {
            let id = PhotoId::generate();
            let key = ObjectKey::session_photo(&self.account, session.id, id);
            self.store
                .put(&key, body_from_bytes(photo.clone()))
                .await
                .expect("put session photo");
            let job = job_for_photo(
                &self.account,
                &self.pool,
                &self.model,
                photo,
                Motion::ZoomIn,
                Timestamp::from_unix_ms(0),
            );
            session.photos.push(SessionPhoto {
                id,
                size: job.input.size,
                sha256: job.input.sha256.clone(),
                content_type: job.input.content_type.clone(),
            });
        }
        let now = Timestamp::from_system_time(SystemTime::now()).unix_ms();
        let mut job = job_for_photo(
            &self.account,
            &self.pool,
            &self.model,
            &photos[0],
            Motion::ZoomIn,
            Timestamp::from_unix_ms(now + 600_000),
        );
        job.input.key =
            ObjectKey::session_photo(&self.account, session.id, session.photos[0].id).to_string();
        job.kind = JobKind::Personalize;
        job.session = Some(session);
        job.v = job.schema_version();
        self.publish(&job).await;
        job
    }

    /// Publishes `job` as it is (its photos already stored).
    async fn publish(&self, job: &GenerateJob) {
        let topic = clipfleet_broker::Topic::Jobs(job.pool.clone(), job.priority);
        self.broker
            .publish(
                &topic,
                clipfleet_broker::Outgoing::new(clipfleet_proto::encode(job).expect("encode")),
            )
            .await
            .expect("publish");
    }

    /// Runs one worker until `jobs` jobs ended; their events.
    async fn run_jobs(&self, jobs: usize) -> Vec<clipfleet_proto::JobEvent> {
        let (stop, worker) = self.start(self.config());
        let events = self.wait_for_terminal(jobs).await;
        let _ = stop.send(());
        worker.await.expect("worker");
        events
    }

    /// The decoded still an image job stored.
    async fn still(&self, job: &GenerateJob) -> image::RgbImage {
        let key = ObjectKey::output_image(&job.account_id, job.job_id);
        let jpeg = read_to_end(self.store.get(&key).await.expect("image"), 16 << 20)
            .await
            .expect("read");
        image::load_from_memory(&jpeg).expect("a JPEG").to_rgb8()
    }
}

fn failed_with(events: &[clipfleet_proto::JobEvent], job: &GenerateJob, code: ErrorCode) -> bool {
    events.iter().any(|e| {
        e.job_id == job.job_id
            && matches!(&e.event, EventKind::Failed { code: c, retryable: false, .. } if *c == code)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_trains_its_adapter_its_jobs_use_it_and_no_other_session_can() {
    let manifest = session_manifest("sessions");
    let fleet = Fleet::with_manifest(&manifest, |m| m.name == "portrait").await;
    let portrait = std::fs::read(repo().join("models/samples/portrait.jpg")).expect("portrait");
    let photos = vec![portrait.clone(), jpeg(400, 300), jpeg(300, 400)];
    let session_a = session(3_600_000);
    let training = fleet.personalize(&session_a, &photos).await;
    assert_eq!((training.v, training.kind), (3, JobKind::Personalize));
    let events = fleet.run_jobs(1).await;
    let adapter_key =
        ObjectKey::session_adapter(&fleet.account, session_a.id, "portrait").expect("adapter key");
    assert!(
        events.iter().any(|e| matches!(
            &e.event,
            EventKind::Succeeded { output_key, .. } if output_key == adapter_key.as_str()
        )),
        "{events:?}"
    );
    // The photos it trained on are gone; the adapter is stored, sealed, scoped to the session.
    for photo in &training.session.as_ref().expect("session").photos {
        assert!(
            fleet
                .gone(&ObjectKey::session_photo(
                    &fleet.account,
                    session_a.id,
                    photo.id
                ))
                .await
        );
    }
    let bytes = read_to_end(
        fleet.store.get(&adapter_key).await.expect("adapter"),
        1 << 20,
    )
    .await
    .expect("read adapter");
    let scope = |session: SessionId| AdapterScope {
        account: fleet.account.to_string(),
        session: session.to_string(),
        model: "portrait".into(),
        version: "1".into(),
    };
    Adapter::from_bytes(&bytes, &scope(session_a.id)).expect("the session's own adapter");
    let other = Adapter::from_bytes(&bytes, &scope(SessionId::generate())).unwrap_err();
    assert_eq!(other.kind, InferErrorKind::AdapterMismatch);

    // The same photo rendered in the session and outside it: the adapter changes the still.
    let in_session = fleet
        .submit_with(&portrait, 600_000, Motion::ZoomIn, |job| {
            job.session = Some(session(3_600_000));
            if let Some(session) = &mut job.session {
                session.id = session_a.id;
            }
            job.v = job.schema_version();
        })
        .await;
    let plain = fleet.submit(&portrait, 600_000, Motion::ZoomIn).await;
    let events = fleet.run_jobs(2).await;
    assert!(
        events
            .iter()
            .filter(|e| matches!(e.event, EventKind::Succeeded { .. }))
            .count()
            == 2,
        "{events:?}"
    );
    let (with, without) = (fleet.still(&in_session).await, fleet.still(&plain).await);
    assert_eq!(with.dimensions(), without.dimensions());
    let mean_diff = with
        .as_raw()
        .iter()
        .zip(without.as_raw())
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / with.as_raw().len() as f64;
    assert!(mean_diff > 1.0, "the adapter changed nothing: {mean_diff}");
    assert!(
        fleet
            .gone(&ObjectKey::input(&fleet.account, in_session.job_id))
            .await
    );

    // Session B holds a copy of A's adapter bytes under its own key: refused at load. Session C
    // has none: not ready. Session D ended: its training fails and leaves neither photo nor
    // adapter.
    let session_b = session(3_600_000);
    let b_key = ObjectKey::session_adapter(&fleet.account, session_b.id, "portrait").expect("key");
    fleet
        .store
        .put(&b_key, body_from_bytes(bytes.to_vec()))
        .await
        .expect("copy");
    let with_session = |s: &SessionRef| {
        let id = s.id;
        let expires_at = s.expires_at;
        move |job: &mut GenerateJob| {
            job.session = Some(SessionRef {
                id,
                expires_at,
                photos: Vec::new(),
            });
            job.v = job.schema_version();
        }
    };
    let copied = fleet
        .submit_with(&portrait, 600_000, Motion::ZoomIn, with_session(&session_b))
        .await;
    let session_c = session(3_600_000);
    let not_ready = fleet
        .submit_with(&portrait, 600_000, Motion::ZoomIn, with_session(&session_c))
        .await;
    let session_d = session(3_600_000);
    fleet
        .store
        .put(
            &ObjectKey::session_ended(&fleet.account, session_d.id),
            body_from_bytes(Vec::new()),
        )
        .await
        .expect("marker");
    let ended = fleet.personalize(&session_d, &photos[..1]).await;
    let events = fleet.run_jobs(3).await;
    assert!(
        failed_with(&events, &copied, ErrorCode::AdapterMismatch),
        "{events:?}"
    );
    assert!(
        failed_with(&events, &not_ready, ErrorCode::SessionNotReady),
        "{events:?}"
    );
    assert!(
        failed_with(&events, &ended, ErrorCode::SessionEnded),
        "{events:?}"
    );
    for job in [&copied, &not_ready] {
        assert!(fleet.kept_nothing(job).await);
    }
    let d_photo = &ended.session.as_ref().expect("session").photos[0];
    assert!(
        fleet
            .gone(&ObjectKey::session_photo(
                &fleet.account,
                session_d.id,
                d_photo.id
            ))
            .await
    );
    assert!(
        fleet
            .gone(
                &ObjectKey::session_adapter(&fleet.account, session_d.id, "portrait").expect("key")
            )
            .await
    );
}
