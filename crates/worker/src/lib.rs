//! The worker (`clip-worker`): pulls jobs from its pool's queue and turns each photo into a
//! video. Per job: deadline and tombstone checks → fetch (get, unseal, verify sha256, bounded
//! decode, fit to the model's input) → inference on the engine's dedicated thread (batched with
//! other jobs) → MP4 encode (on the blocking pool, tiny clips inline) → store sealed under the
//! job's id → finish: `succeeded`, delete the photo, `input_deleted`, ack. The worker talks only
//! to the broker and the object store (no database), so it scales freely.
//!
//! Jobs overlap: up to `slots` run at once, so the I/O of the next jobs overlaps inference of
//! the current batch. Drain (shutdown future or a `drain` control message): stop receiving,
//! finish in-flight jobs within the grace period, report.
//!
//! Modules:
//! - `job`: one job from delivery to ack, in a span per job and per stage.
//! - `failure`: the classification of failures and how a failed job ends (terminal, retry,
//!   dead letter).
//! - `events`: job events batched across jobs, each job waiting for its confirm.
//! - `submit`: [`job_for_photo`] and [`submit`], a photo handed to the fleet as ingest does.
//! - `setup`: [`load_engine`], [`default_encoder`], [`device_label`]: what a process sets up.
//! - `run` (this file): [`WorkerConfig`], [`run`], heartbeats, drain.

mod events;
mod failure;
mod framing;
mod job;
mod metrics;
mod objects;
mod setup;
mod submit;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use clipfleet_broker::{Broker, Outgoing, QueueRef, Receive, Topic, receive_decoded};
use clipfleet_infer::{Engine, ModelSpec};
use clipfleet_media::{Limits, VideoEncoder};
use clipfleet_proto::{
    Control, ControlCommand, GenerateJob, PoolName, SCHEMA_VERSION, Timestamp, WorkerId, decode,
    encode,
};
use clipfleet_store::ObjectStore;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use job::Outcome;
pub use metrics::{WorkerReadiness, WorkerTelemetry};
pub use setup::{DEFAULT_MANIFEST, default_encoder, device_label, load_engine};
pub use submit::{job_for_photo, submit};

use crate::events::EventSink;
use crate::objects::StoreAccess;

/// How one worker process runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's id (heartbeats, events).
    pub worker_id: WorkerId,
    /// The pool whose queue it serves.
    pub pool: PoolName,
    /// Jobs held at once (received and not yet settled): enough to keep the device busy while
    /// the next jobs' photos are fetched.
    pub slots: usize,
    /// Lease on each delivery, kept alive by a heartbeat while the job runs.
    pub lease: Duration,
    /// Largest photo fetched, in bytes.
    pub max_photo_bytes: u64,
    /// Bounds on decoding untrusted photos.
    pub intake_limits: Limits,
    /// First retry delay after a transient failure; doubles per attempt.
    pub retry_base_delay: Duration,
    /// Attempts before a transiently failing job is dead-lettered.
    pub max_attempts: u32,
    /// How long in-flight jobs may take to finish once draining.
    pub drain_grace: Duration,
    /// How often the worker announces itself on the control bus.
    pub heartbeat_every: Duration,
    /// Where inference runs, for heartbeats (`cpu`, `cuda:0`).
    pub device_label: String,
}

impl WorkerConfig {
    /// The prefetch the worker's broker connection should use (`BrokerOptions::prefetch`): its
    /// slots, so the worker is offered as many jobs as it can hold. Fewer starve it (a worker
    /// with 64 slots on the broker's default of 32 ran the dispatch bench 15-25 % slower), more
    /// hoard jobs that other workers could run.
    pub fn broker_prefetch(&self) -> u16 {
        u16::try_from(self.slots.max(1)).unwrap_or(u16::MAX)
    }

    /// Defaults for `pool`, with a worker id.
    pub fn new(worker_id: WorkerId, pool: PoolName) -> Self {
        WorkerConfig {
            worker_id,
            pool,
            slots: 16,
            lease: Duration::from_secs(120),
            max_photo_bytes: 40 << 20,
            intake_limits: Limits::default(),
            retry_base_delay: Duration::from_secs(5),
            max_attempts: 4,
            drain_grace: Duration::from_secs(60),
            heartbeat_every: Duration::from_secs(5),
            device_label: "cpu".into(),
        }
    }
}

/// What a worker needs from outside.
#[derive(Debug, Clone)]
pub struct WorkerDeps {
    /// Job queue, events and control.
    pub broker: Arc<dyn Broker>,
    /// The (sealed) object store: photos in, videos out.
    pub store: Arc<dyn ObjectStore>,
    /// The inference engine, its models loaded and warm.
    pub engine: Engine,
    /// The manifest entries of the models the engine serves.
    pub models: Vec<ModelSpec>,
    /// The MP4 encoder.
    pub encoder: Arc<dyn VideoEncoder>,
}

/// What a worker did, returned when it has drained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs whose video was stored.
    pub succeeded: u64,
    /// Jobs that failed terminally.
    pub failed: u64,
    /// Jobs handed back for a delayed retry.
    pub retried: u64,
    /// Jobs dead-lettered.
    pub dead_lettered: u64,
    /// Jobs left to the broker to redeliver (lease lost, or cut off by the drain deadline).
    pub abandoned: u64,
}

pub(crate) struct Shared {
    pub broker: Arc<dyn Broker>,
    /// The store, reachable only as one job's objects at a time (`objects.rs`).
    pub objects: StoreAccess,
    pub engine: Engine,
    pub encoder: Arc<dyn VideoEncoder>,
    pub models: HashMap<(String, String), ModelSpec>,
    pub config: WorkerConfig,
    pub events: EventSink,
    pub telemetry: WorkerTelemetry,
}

/// Runs the worker until `shutdown` resolves or a `drain` control message names it, then
/// drains: stops receiving and gives in-flight jobs `drain_grace` to finish.
pub async fn run(
    deps: WorkerDeps,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<WorkerReport> {
    run_observed(deps, config, WorkerTelemetry::unregistered(), shutdown).await
}

/// [`run`], reporting metrics and the drain through `telemetry` (`/metrics`, `/readyz`).
pub async fn run_observed(
    deps: WorkerDeps,
    config: WorkerConfig,
    telemetry: WorkerTelemetry,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<WorkerReport> {
    let shared = Arc::new(Shared {
        telemetry: telemetry.clone(),
        events: EventSink::start(deps.broker.clone()),
        broker: deps.broker,
        objects: StoreAccess::new(deps.store),
        engine: deps.engine,
        encoder: deps.encoder,
        models: deps
            .models
            .into_iter()
            .map(|m| ((m.name.clone(), m.version.clone()), m))
            .collect(),
        config: config.clone(),
    });
    let steer = Arc::new(Steering {
        draining: telemetry.draining_flag(),
        paused: AtomicBool::new(false),
        shutting_down: AtomicBool::new(false),
        changed: Notify::new(),
        busy: AtomicU32::new(0),
    });
    let mut side_tasks = JoinSet::new();
    if let Some(bus) = shared.broker.control_bus() {
        bus.subscribe_control(&config.worker_id).await?;
        side_tasks.spawn(control_loop(shared.clone(), steer.clone()));
    }
    let slots = Arc::new(Semaphore::new(config.slots.max(1)));
    let queue = QueueRef::Jobs(config.pool.clone());
    let mut jobs: JoinSet<Outcome> = JoinSet::new();
    let mut report = WorkerReport::default();
    tokio::pin!(shutdown);
    side_tasks.spawn({
        let (telemetry, engine) = (telemetry.clone(), shared.engine.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                telemetry.sync_engine(&engine);
            }
        }
    });
    info!(worker = %config.worker_id, pool = %config.pool, slots = config.slots, "worker started");
    'serving: loop {
        while !steer.draining.load(Ordering::SeqCst) {
            while let Some(done) = jobs.try_join_next() {
                tally(&mut report, done);
            }
            let free = slots.available_permits();
            if free == 0 || steer.paused.load(Ordering::SeqCst) {
                // Full, or paused by an operator: wait for a job to end or a command.
                let changed = steer.changed.notified();
                tokio::select! {
                    () = &mut shutdown => { steer.shut_down(); break }
                    Some(done) = jobs.join_next() => tally(&mut report, done),
                    () = changed => {}
                    // A command that landed before `changed` was armed is seen on the next turn.
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            let received = tokio::select! {
                () = &mut shutdown => { steer.shut_down(); break }
                () = steer.changed.notified() => continue,
                received = receive_decoded::<GenerateJob>(shared.broker.as_ref(), &queue, Receive::new(free, config.lease, Duration::from_millis(500))) => received,
            };
            match received {
                Ok(batch) => {
                    for (delivery, job) in batch {
                        let permit = slots
                            .clone()
                            .try_acquire_owned()
                            .expect("asked for no more than the free slots");
                        let (shared, steer) = (shared.clone(), steer.clone());
                        steer.busy.fetch_add(1, Ordering::SeqCst);
                        shared.telemetry.job_started();
                        jobs.spawn(async move {
                            let outcome = job::process(shared.clone(), delivery, job).await;
                            shared.telemetry.job_settled(Some(&outcome));
                            steer.busy.fetch_sub(1, Ordering::SeqCst);
                            drop(permit);
                            outcome
                        });
                    }
                }
                Err(err) => {
                    warn!(error = %err, "receive failed; backing off");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        steer.draining.store(true, Ordering::SeqCst);
        info!(worker = %config.worker_id, in_flight = jobs.len(), "draining");
        let deadline = tokio::time::Instant::now() + config.drain_grace;
        while !jobs.is_empty() {
            let changed = steer.changed.notified();
            if !steer.draining.load(Ordering::SeqCst) {
                info!(worker = %config.worker_id, "drain cancelled");
                continue 'serving;
            }
            tokio::select! {
                done = tokio::time::timeout_at(deadline, jobs.join_next()) => match done {
                    Ok(Some(done)) => tally(&mut report, done),
                    Ok(None) => break,
                    Err(_) => {
                        // Past the grace period: their leases lapse and the broker redelivers them.
                        report.abandoned += jobs.len() as u64;
                        for _ in 0..jobs.len() {
                            telemetry.job_settled(None);
                        }
                        jobs.abort_all();
                        break;
                    }
                },
                () = &mut shutdown, if !steer.shutting_down.load(Ordering::SeqCst) => steer.shut_down(),
                () = changed => {}
            }
        }
        break;
    }
    side_tasks.abort_all();
    steer.busy.store(0, Ordering::SeqCst);
    if shared.broker.control_bus().is_some() {
        // The last word: nothing held, not taking jobs (`clipctl drain --wait` ends on it).
        publish_heartbeat(&shared, &steer).await;
    }
    telemetry.sync_engine(&shared.engine);
    info!(worker = %config.worker_id, ?report, "worker stopped");
    Ok(report)
}

/// How operators steer a running worker.
struct Steering {
    /// Stop taking jobs, finish what runs, return (shared with `/readyz`).
    draining: Arc<AtomicBool>,
    /// Stop taking jobs but stay up.
    paused: AtomicBool,
    /// The process is stopping (SIGTERM): a `resume` no longer undoes the drain.
    shutting_down: AtomicBool,
    /// Woken on every change above.
    changed: Notify,
    /// Jobs held right now (heartbeats).
    busy: AtomicU32,
}

impl Steering {
    fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.draining.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Applies a steering command addressed to this worker.
    fn apply(&self, command: &ControlCommand) {
        match command {
            ControlCommand::Drain { .. } => self.draining.store(true, Ordering::SeqCst),
            ControlCommand::Pause { .. } => self.paused.store(true, Ordering::SeqCst),
            ControlCommand::Resume { .. } => {
                self.paused.store(false, Ordering::SeqCst);
                if !self.shutting_down.load(Ordering::SeqCst) {
                    self.draining.store(false, Ordering::SeqCst);
                }
            }
            _ => return,
        }
        self.changed.notify_waiters();
    }

    fn not_taking_jobs(&self) -> bool {
        self.draining.load(Ordering::SeqCst) || self.paused.load(Ordering::SeqCst)
    }
}

fn tally(report: &mut WorkerReport, done: Result<Outcome, tokio::task::JoinError>) {
    match done {
        Ok(Outcome::Succeeded) => report.succeeded += 1,
        Ok(Outcome::Failed(_)) => report.failed += 1,
        Ok(Outcome::Retried) => report.retried += 1,
        Ok(Outcome::DeadLettered) => report.dead_lettered += 1,
        Ok(Outcome::Abandoned) | Err(_) => report.abandoned += 1,
    }
}

/// Heartbeats out, steering in: announces the worker every `heartbeat_every` and applies
/// `drain`, `pause` and `resume` when they name it (or its pool, or everyone).
async fn control_loop(shared: Arc<Shared>, steer: Arc<Steering>) {
    let config = &shared.config;
    let queue = QueueRef::Control(config.worker_id.clone());
    let mut beat = tokio::time::interval(config.heartbeat_every);
    loop {
        tokio::select! {
            _ = beat.tick() => publish_heartbeat(&shared, &steer).await,
            received = shared.broker.receive(&queue, Receive::new(16, Duration::from_secs(30), Duration::from_secs(1))) => {
                let Ok(deliveries) = received else { continue };
                for delivery in &deliveries {
                    let Ok(Control { command, .. }) = decode::<Control>(&delivery.body) else { continue };
                    let (pool, worker) = match &command {
                        ControlCommand::Drain { pool, worker }
                        | ControlCommand::Pause { pool, worker }
                        | ControlCommand::Resume { pool, worker } => (pool, worker),
                        _ => continue,
                    };
                    if pool.as_ref().is_none_or(|p| *p == config.pool)
                        && worker.as_ref().is_none_or(|w| *w == config.worker_id)
                    {
                        info!(worker = %config.worker_id, ?command, "steering command");
                        steer.apply(&command);
                        // Answer at once, so whoever steers sees the change.
                        publish_heartbeat(&shared, &steer).await;
                    }
                }
                let leases: Vec<_> = deliveries.iter().map(|d| d.lease.clone()).collect();
                let _ = shared.broker.ack(&leases).await;
            }
        }
    }
}

async fn publish_heartbeat(shared: &Shared, steer: &Steering) {
    let config = &shared.config;
    let heartbeat = Control {
        v: SCHEMA_VERSION,
        at: Timestamp::from_system_time(SystemTime::now()),
        command: ControlCommand::Heartbeat {
            worker: config.worker_id.clone(),
            pool: config.pool.clone(),
            busy: steer.busy.load(Ordering::SeqCst),
            slots: u32::try_from(config.slots).unwrap_or(u32::MAX),
            device: config.device_label.clone(),
            model: shared
                .models
                .values()
                .map(|m| m.key())
                .collect::<Vec<_>>()
                .join(","),
            draining: steer.not_taking_jobs(),
        },
    };
    if let Ok(body) = encode(&heartbeat)
        && let Err(err) = shared
            .broker
            .publish(&Topic::Control, Outgoing::new(body))
            .await
    {
        warn!(error = %err, "heartbeat not sent");
    }
}
