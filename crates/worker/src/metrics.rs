//! The worker's metrics (`/metrics` on `clip-worker serve --listen`): jobs by outcome, stage
//! durations, queue wait, photo lifetime, forward passes by batch size, jobs in flight, and
//! whether it drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use clipfleet_infer::Engine;
use clipfleet_proto::{StageDurations, Timestamp};
use clipfleet_telemetry::{Check, Readiness};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::WorkerDeps;
use crate::job::Outcome;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BatchLabel {
    size: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

/// Photo lifetimes reach the janitor's `input_max_age` (1 h by default, at most 24 h).
fn lifetime_histogram() -> Histogram {
    Histogram::new([
        0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0,
    ])
}

/// What a running worker reports: its metrics and whether it is draining.
#[derive(Debug, Clone)]
pub struct WorkerTelemetry {
    jobs: Family<OutcomeLabel, Counter>,
    stages: Family<StageLabel, Histogram>,
    queue_wait: Histogram,
    /// The privacy promise as a number: submission to the photo's deletion.
    photo_lifetime: Histogram,
    passes: Family<BatchLabel, Counter>,
    in_flight: Gauge,
    draining: Arc<AtomicBool>,
}

impl WorkerTelemetry {
    /// Metrics registered in `registry` under `worker_`.
    pub fn register(registry: &mut Registry) -> Self {
        let telemetry = WorkerTelemetry {
            jobs: Family::default(),
            stages: Family::new_with_constructor(seconds_histogram),
            queue_wait: seconds_histogram(),
            photo_lifetime: lifetime_histogram(),
            passes: Family::default(),
            in_flight: Gauge::default(),
            draining: Arc::new(AtomicBool::new(false)),
        };
        let worker = registry.sub_registry_with_prefix("worker");
        worker.register(
            "jobs",
            "Jobs settled, by outcome and error code",
            telemetry.jobs.clone(),
        );
        worker.register(
            "stage_duration_seconds",
            "Time per job stage (fetch, infer incl. batch wait, encode, store)",
            telemetry.stages.clone(),
        );
        worker.register(
            "queue_wait_seconds",
            "Time from submission to a worker starting the job",
            telemetry.queue_wait.clone(),
        );
        worker.register(
            "photo_lifetime_seconds",
            "Time from a job's submission to the deletion of its photo (success or terminal failure)",
            telemetry.photo_lifetime.clone(),
        );
        worker.register(
            "forward_passes",
            "Forward passes by batch size",
            telemetry.passes.clone(),
        );
        worker.register(
            "jobs_in_flight",
            "Jobs received and not yet settled",
            telemetry.in_flight.clone(),
        );
        telemetry
    }

    /// Unregistered metrics (a worker nobody scrapes).
    pub fn unregistered() -> Self {
        WorkerTelemetry::register(&mut Registry::default())
    }

    /// Whether the worker is draining (it then reports not ready).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn draining_flag(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    pub(crate) fn job_started(&self) {
        self.in_flight.inc();
    }

    pub(crate) fn job_settled(&self, outcome: Option<&Outcome>) {
        self.in_flight.dec();
        let (outcome, code) = match outcome {
            Some(Outcome::Failed(code)) => ("failed", code.as_str().to_owned()),
            Some(outcome) => (outcome.as_str(), String::new()),
            None => ("abandoned", String::new()),
        };
        self.jobs
            .get_or_create(&OutcomeLabel { outcome, code })
            .inc();
    }

    pub(crate) fn stages(&self, stages: &StageDurations) {
        let secs = |ms: u32| f64::from(ms) / 1000.0;
        self.queue_wait.observe(secs(stages.queue_wait_ms));
        for (stage, ms) in [
            ("fetch", stages.fetch_ms),
            ("infer", stages.infer_ms),
            ("encode", stages.encode_ms),
            ("store", stages.store_ms),
        ] {
            self.stages
                .get_or_create(&StageLabel { stage })
                .observe(secs(ms));
        }
    }

    /// The job's photo is deleted: how long it lived since submission.
    pub(crate) fn photo_deleted(&self, submitted_at: Timestamp) {
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        self.photo_lifetime
            .observe(now.saturating_since(submitted_at).as_secs_f64());
    }

    /// Brings the forward-pass counters up to the engine's own (called before each scrape
    /// and every second).
    pub(crate) fn sync_engine(&self, engine: &Engine) {
        for (size, passes) in engine.stats().passes_by_size() {
            let counter = self.passes.get_or_create(&BatchLabel {
                size: size.to_string(),
            });
            let seen = counter.get();
            if passes > seen {
                counter.inc_by(passes - seen);
            }
        }
    }
}

/// Ready while the engine runs, the broker and store answer, and the worker is not draining.
#[derive(Debug)]
pub struct WorkerReadiness {
    deps: WorkerDeps,
    telemetry: WorkerTelemetry,
}

impl WorkerReadiness {
    /// Readiness of a worker on `deps` reporting through `telemetry`.
    pub fn new(deps: WorkerDeps, telemetry: WorkerTelemetry) -> Self {
        WorkerReadiness { deps, telemetry }
    }
}

#[async_trait]
impl Readiness for WorkerReadiness {
    async fn checks(&self) -> Vec<Check> {
        self.telemetry.sync_engine(&self.deps.engine);
        let (broker, store) = tokio::join!(
            Check::run("broker", self.deps.broker.check()),
            Check::run("store", self.deps.store.check_connectivity()),
        );
        let engine = if self.deps.engine.is_running() {
            Check::ok("models")
        } else {
            Check::failed("models", "the inference thread stopped")
        };
        let draining = if self.telemetry.is_draining() {
            Check::failed("draining", "draining: taking no new jobs")
        } else {
            Check::ok("draining")
        };
        vec![broker, store, engine, draining]
    }
}
