//! The fleet of processes a chaos campaign runs and breaks: `clip-ingest`, N `clip-worker`s and
//! `clip-janitor` (the binaries beside `clip-chaos`), on services of the run's own so that
//! breaking them touches nothing else on the machine:
//!
//! - a RabbitMQ node of its own (`PrivateRabbit`: the installed server on free loopback ports),
//!   which the campaign stops and starts;
//! - a PostgreSQL schema of its own on the development server, reached through a
//!   `StallingProxy` that the campaign pauses (the ledger unreachable, then back);
//! - a bucket of its own on the S3 emulator, reached through another proxy, paused likewise.
//!
//! A supervisor restarts any process that exits, as Kubernetes restarts a pod: a killed ingest
//! comes back on the same port, a killed worker is replaced by a new one (a new worker id, as an
//! autoscaler would), a worker told to drain is replaced at once and retires when it is done.
//! Every exit is recorded with how it was caused (planned kill, planned drain, or not planned).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use clipfleet_testkit::{PgSchema, PrivateRabbit, StallingProxy};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tracing::{info, warn};

/// How often the supervisor looks for exited processes.
const SUPERVISE_EVERY: Duration = Duration::from_millis(200);
/// How long a process that exits by itself waits before it is started again (a crash loop
/// against a service that is down must not spin).
const RESTART_BACKOFF: Duration = Duration::from_millis(500);

/// What a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `clip-ingest serve`.
    Ingest,
    /// `clip-worker serve`.
    Worker,
    /// `clip-janitor run`.
    Janitor,
}

impl Role {
    /// `ingest`, `worker`, `janitor`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Worker => "worker",
            Role::Janitor => "janitor",
        }
    }
}

/// Why a process is expected to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Not expected to: an exit is a crash.
    Serve,
    /// SIGKILLed by the campaign: restart (a worker: replace).
    Killed,
    /// SIGTERMed to drain, its replacement already started: retire when it exits.
    Draining,
}

struct Process {
    role: Role,
    name: String,
    /// Where it serves `/readyz` (ingest: its API address).
    ops: SocketAddr,
    child: Child,
    fate: Fate,
    started: Instant,
}

/// One process that ended during the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExitRecord {
    /// Which process (`ingest`, `worker-3`, `janitor`).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Seconds from the campaign's start.
    pub at_s: f64,
    /// How long it had run, seconds.
    pub ran_s: f64,
    /// `killed` (planned SIGKILL), `drained` (planned SIGTERM), or `crashed` (by itself).
    pub cause: &'static str,
    /// Its exit status, as the OS told it.
    pub status: String,
}

/// How the fleet is made.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Where `clip-ingest`, `clip-worker`, `clip-janitor` and `clipctl` are.
    pub bin_dir: PathBuf,
    /// Logs, the config and the keyring of the run.
    pub run_dir: PathBuf,
    /// Workers kept running.
    pub workers: usize,
    /// Jobs each worker holds at once.
    pub slots: usize,
    /// The model the pool serves (`noop@1` unless told).
    pub model: String,
    /// Its version.
    pub model_version: String,
    /// The janitor's sweep interval.
    pub janitor_every: Duration,
    /// `retention.orphan_grace`: how old a photo of no job must be before the janitor takes it.
    pub orphan_grace: Duration,
    /// `retention.output_ttl`.
    pub output_ttl: Duration,
    /// `--manifest` for the workers; `None`: their default.
    pub manifest: Option<PathBuf>,
    /// The model (name, version) of a second pool, [`SESSION_POOL`], that serves session flows
    /// (trainings and the jobs through their adapters); `None`: no such pool.
    pub session_model: Option<(String, String)>,
    /// Workers kept running for the session pool (when there is one).
    pub session_workers: usize,
}

/// The pool of the session model, when the campaign runs session flows.
pub const SESSION_POOL: &str = "sessions";

/// The name prefix of the session pool's workers (the supervisor replaces a worker by one of
/// the same pool).
const SESSION_WORKER: &str = "session-worker-";

/// The running fleet and its services.
pub struct ProcessFleet {
    spec: FleetSpec,
    config: PathBuf,
    ingest_addr: SocketAddr,
    token: String,
    /// Shared by every process, so they name an account by the same pseudonym.
    pseudonym_key: String,
    rabbit: PrivateRabbit,
    rabbit_url: String,
    schema: Option<PgSchema>,
    direct_ledger_url: String,
    ledger_proxy: StallingProxy,
    store_proxy: StallingProxy,
    bucket: String,
    endpoint: String,
    state: Mutex<State>,
    start: Instant,
}

#[derive(Default)]
struct State {
    processes: Vec<Process>,
    next_worker: usize,
    exits: Vec<ExitRecord>,
    /// The highest resident set size seen per role, KiB (sampled at each supervisor tick).
    peak_rss_kib: BTreeMap<Role, u64>,
    /// Restarts held back until this instant, per role and process name (the crash backoff).
    hold: BTreeMap<(Role, String), Instant>,
    stopping: bool,
}

impl std::fmt::Debug for ProcessFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessFleet")
            .field("ingest", &self.ingest_addr)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl ProcessFleet {
    /// Starts the services of the run, writes its config, starts every process and waits for
    /// ingest to answer `/readyz`.
    pub async fn start(spec: FleetSpec) -> anyhow::Result<Arc<ProcessFleet>> {
        for bin in ["clip-ingest", "clip-worker", "clip-janitor", "clipctl"] {
            anyhow::ensure!(
                spec.bin_dir.join(bin).is_file(),
                "{} is not built (cargo build --workspace --all-features --bins)",
                spec.bin_dir.join(bin).display()
            );
        }
        std::fs::create_dir_all(&spec.run_dir)
            .with_context(|| format!("create {}", spec.run_dir.display()))?;
        let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start)
            .await?
            .context("start a RabbitMQ node of the run's own")?;
        let rabbit_url = rabbit.url();
        let schema = PgSchema::create("chaos")
            .await
            .context("create the run's PostgreSQL schema (is PostgreSQL up?)")?;
        let direct_ledger_url = schema.url.clone();
        let pg_authority = authority(&direct_ledger_url)?;
        let ledger_proxy = StallingProxy::start(resolve(pg_authority).await?).await?;
        let proxied_ledger_url =
            direct_ledger_url.replacen(pg_authority, &ledger_proxy.addr().to_string(), 1);

        let endpoint = clipfleet_testkit::aws_endpoint_url();
        let store_proxy = StallingProxy::start(resolve(authority(&endpoint)?).await?).await?;
        let bucket = clipfleet_testkit::unique_name("chaos");
        create_bucket(&endpoint, &bucket).await?;

        let token = format!(
            "chaos-{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let ingest_addr = free_addr()?;
        let config = spec.run_dir.join("clipfleet.toml");
        write_keyring(&spec.run_dir.join("keyring.toml"))?;
        std::fs::write(
            &config,
            config_text(&spec, &rabbit_url, &bucket, &proxied_ledger_url, &token),
        )
        .with_context(|| format!("write {}", config.display()))?;
        let fleet = Arc::new(ProcessFleet {
            config,
            ingest_addr,
            token,
            pseudonym_key: random_key()?,
            rabbit,
            rabbit_url,
            schema: Some(schema),
            direct_ledger_url,
            ledger_proxy,
            store_proxy,
            bucket,
            endpoint,
            state: Mutex::new(State::default()),
            start: Instant::now(),
            spec,
        });
        {
            let mut state = fleet.lock();
            fleet.spawn(&mut state, Role::Janitor, "janitor".into())?;
            fleet.spawn(&mut state, Role::Ingest, "ingest".into())?;
            for _ in 0..fleet.spec.workers {
                fleet.spawn_worker(&mut state)?;
            }
            if fleet.spec.session_model.is_some() {
                for _ in 0..fleet.spec.session_workers {
                    fleet.spawn_worker_like(&mut state, SESSION_WORKER)?;
                }
            }
        }
        fleet.wait_ready(Duration::from_secs(120)).await?;
        info!(ingest = %fleet.ingest_url(), workers = fleet.spec.workers, "process fleet up");
        Ok(fleet)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ingest's base URL.
    pub fn ingest_url(&self) -> String {
        format!("http://{}", self.ingest_addr)
    }

    /// The service token ingest takes (made for the run).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The run's config file (what `clipctl --config` reads).
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The ledger's URL without the proxy (for the audit).
    pub fn direct_ledger_url(&self) -> &str {
        &self.direct_ledger_url
    }

    /// The bucket's store URL; the emulator's endpoint without the proxy is the process's own
    /// `AWS_ENDPOINT_URL`.
    pub fn store_url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    /// Seconds since the fleet started.
    pub fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// When the fleet started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Waits until every process answers `/readyz` (workers: engine loaded, broker and store
    /// answer), so the load starts on a fleet that is up.
    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let http = reqwest::Client::new();
        loop {
            let pending: Vec<(String, SocketAddr)> = self
                .lock()
                .processes
                .iter()
                .map(|p| (p.name.clone(), p.ops))
                .collect();
            let mut waiting = None;
            for (name, ops) in pending {
                let ready = http
                    .get(format!("http://{ops}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|answer| answer.status().is_success());
                if !ready {
                    waiting = Some(name);
                    break;
                }
            }
            let Some(name) = waiting else { return Ok(()) };
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name} not ready within {timeout:?}: see {}",
                self.spec.run_dir.join(format!("{name}.log")).display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn spawn_worker(&self, state: &mut State) -> anyhow::Result<()> {
        self.spawn_worker_like(state, "worker-")
    }

    /// Starts a worker of the pool whose workers' names start with `prefix`.
    fn spawn_worker_like(&self, state: &mut State, prefix: &str) -> anyhow::Result<()> {
        let name = next_worker_name(state, prefix);
        self.spawn(state, Role::Worker, name)
    }

    fn spawn(&self, state: &mut State, role: Role, name: String) -> anyhow::Result<()> {
        let bin = |name: &str| self.spec.bin_dir.join(name);
        let ops = match role {
            Role::Ingest => self.ingest_addr,
            _ => free_addr()?,
        };
        let mut command = match role {
            Role::Ingest => {
                let mut c = Command::new(bin("clip-ingest"));
                c.arg("serve")
                    .arg("--listen")
                    .arg(self.ingest_addr.to_string())
                    .args(["--log-format", "json"]);
                c
            }
            Role::Worker => {
                let mut c = Command::new(bin("clip-worker"));
                c.arg("serve")
                    .args(["--worker-id", &format!("chaos-{name}")])
                    .args(["--listen", &ops.to_string()])
                    .args(["--slots", &self.spec.slots.to_string()])
                    .args(["--log-format", "json"]);
                if name.starts_with(SESSION_WORKER) {
                    c.args(["--pool", SESSION_POOL]);
                }
                if let Some(manifest) = &self.spec.manifest {
                    c.arg("--manifest").arg(manifest);
                }
                c
            }
            Role::Janitor => {
                let mut c = Command::new(bin("clip-janitor"));
                c.arg("run")
                    .args([
                        "--interval",
                        &humantime::format_duration(self.spec.janitor_every).to_string(),
                    ])
                    .args(["--listen", &ops.to_string()]);
                c
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spec.run_dir.join(format!("{name}.log")))
            .context("open a process log")?;
        command
            .arg("--config")
            .arg(&self.config)
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://{}", self.store_proxy.addr()),
            )
            .env("CLIPFLEET_PSEUDONYM_KEY", &self.pseudonym_key)
            .env(
                "RUST_LOG",
                std::env::var("CLIPFLEET_CHAOS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("start {name} ({role:?})"))?;
        state.processes.push(Process {
            role,
            name,
            ops,
            child,
            fate: Fate::Serve,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Restarts what exited until the fleet stops. Runs as a task of its own.
    pub async fn supervise(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SUPERVISE_EVERY).await;
            let mut state = self.lock();
            if state.stopping {
                return;
            }
            let now_s = self.now_s();
            let sampled: Vec<(Role, u64)> = state
                .processes
                .iter()
                .filter_map(|p| Some((p.role, rss_kib(p.child.id()?)?)))
                .collect();
            for (role, rss) in sampled {
                let peak = state.peak_rss_kib.entry(role).or_default();
                *peak = (*peak).max(rss);
            }
            let mut index = 0;
            while index < state.processes.len() {
                let exited = match state.processes[index].child.try_wait() {
                    Ok(Some(status)) => status.to_string(),
                    Ok(None) => {
                        index += 1;
                        continue;
                    }
                    Err(err) => format!("unknown ({err})"),
                };
                let process = state.processes.remove(index);
                let cause = match process.fate {
                    Fate::Serve => "crashed",
                    Fate::Killed => "killed",
                    Fate::Draining => "drained",
                };
                if process.fate == Fate::Serve {
                    warn!(process = %process.name, status = %exited, "process exited unplanned; restarting");
                }
                state.exits.push(ExitRecord {
                    name: process.name.clone(),
                    role: process.role,
                    at_s: now_s,
                    ran_s: process.started.elapsed().as_secs_f64(),
                    cause,
                    status: exited,
                });
                if process.fate == Fate::Draining {
                    continue; // its replacement is already running
                }
                let due = if process.fate == Fate::Serve {
                    Instant::now() + RESTART_BACKOFF
                } else {
                    Instant::now()
                };
                let name = match process.role {
                    Role::Worker => next_worker_name(&mut state, worker_prefix(&process.name)),
                    _ => process.name,
                };
                state.hold.insert((process.role, name), due);
            }
            let due: Vec<(Role, String)> = state
                .hold
                .iter()
                .filter(|(_, at)| **at <= Instant::now())
                .map(|(key, _)| key.clone())
                .collect();
            for key in due {
                state.hold.remove(&key);
                let (role, name) = key;
                if let Err(err) = self.spawn(&mut state, role, name) {
                    warn!(error = %format!("{err:#}"), "could not restart a process");
                }
            }
        }
    }

    /// SIGKILLs the process `pick` chooses among the running ones of `role`; its name, if any.
    pub fn kill(&self, role: Role, pick: u64) -> Option<String> {
        let mut state = self.lock();
        let process = choose(&mut state.processes, role, pick)?;
        process.fate = Fate::Killed;
        // SIGKILL: `start_kill` on Unix.
        if let Err(err) = process.child.start_kill() {
            warn!(error = %err, "kill failed");
        }
        Some(process.name.clone())
    }

    /// SIGKILLs a worker of the session pool once its `/metrics` show a job in flight (a
    /// training, or a job through an adapter), or after `wait` regardless; the supervisor
    /// replaces it. Whichever session worker serves is watched (another fault may kill one
    /// meanwhile). Its name, whether it held a job and how long it was watched; `None` when
    /// none served all along.
    pub async fn kill_session_worker(&self, wait: Duration) -> Option<(String, bool, Duration)> {
        let http = reqwest::Client::new();
        let watched = Instant::now();
        let deadline = watched + wait;
        loop {
            let serving = self
                .lock()
                .processes
                .iter()
                .find(|p| p.name.starts_with(SESSION_WORKER) && p.fate == Fate::Serve)
                .map(|p| (p.name.clone(), p.ops));
            let late = Instant::now() >= deadline;
            if let Some((name, ops)) = serving {
                let metrics = match http.get(format!("http://{ops}/metrics")).send().await {
                    Ok(answer) => answer.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                let busy = metrics.lines().any(|line| {
                    line.contains("jobs_in_flight")
                        && !line.starts_with('#')
                        && line
                            .rsplit(' ')
                            .next()
                            .and_then(|v| v.parse::<f64>().ok())
                            .is_some_and(|v| v > 0.0)
                });
                if busy || late {
                    let mut state = self.lock();
                    if let Some(process) = state
                        .processes
                        .iter_mut()
                        .find(|p| p.name == name && p.fate == Fate::Serve)
                    {
                        process.fate = Fate::Killed;
                        if let Err(err) = process.child.start_kill() {
                            warn!(error = %err, "kill failed");
                        }
                        return Some((name, busy, watched.elapsed()));
                    }
                }
            } else if Instant::now() >= deadline + Duration::from_secs(20) {
                // None served even after a restart's time past the wait.
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERMs (drain) a worker `pick` chooses and starts its replacement at once; the names.
    pub fn drain_worker(&self, pick: u64) -> Option<(String, String)> {
        let mut state = self.lock();
        let process = choose(&mut state.processes, Role::Worker, pick)?;
        process.fate = Fate::Draining;
        let name = process.name.clone();
        if let Some(pid) = process.child.id() {
            signal(pid, "TERM");
        }
        self.spawn_worker_like(&mut state, worker_prefix(&name))
            .ok()?;
        let replacement = state.processes.last().map(|p| p.name.clone())?;
        Some((name, replacement))
    }

    /// Stops the RabbitMQ node (connections drop, its port closes; queues stay on disk).
    pub async fn stop_broker(self: &Arc<Self>) -> anyhow::Result<()> {
        let fleet = self.clone();
        tokio::task::spawn_blocking(move || fleet.rabbit.stop_app()).await??;
        Ok(())
    }

    /// Starts it again.
    pub async fn start_broker(self: &Arc<Self>) -> anyhow::Result<()> {
        let fleet = self.clone();
        tokio::task::spawn_blocking(move || fleet.rabbit.start_app()).await??;
        Ok(())
    }

    /// Holds (or lets through again) every byte between the fleet and the object store.
    pub fn store_reachable(&self, reachable: bool) {
        if reachable {
            self.store_proxy.resume();
        } else {
            self.store_proxy.pause();
        }
    }

    /// Holds (or lets through again) every byte between the fleet and PostgreSQL.
    pub fn ledger_reachable(&self, reachable: bool) {
        if reachable {
            self.ledger_proxy.resume();
        } else {
            self.ledger_proxy.pause();
        }
    }

    /// The RabbitMQ node's URL.
    pub fn broker_url(&self) -> &str {
        &self.rabbit_url
    }

    /// The highest resident set size seen of any one process, per role, in KiB.
    pub fn peak_rss_kib(&self) -> BTreeMap<Role, u64> {
        self.lock().peak_rss_kib.clone()
    }

    /// Every process exit so far.
    pub fn exits(&self) -> Vec<ExitRecord> {
        self.lock().exits.clone()
    }

    /// Workers running and not draining.
    pub fn workers_serving(&self) -> usize {
        self.lock()
            .processes
            .iter()
            .filter(|p| p.role == Role::Worker && p.fate == Fate::Serve)
            .count()
    }

    /// Stops every process (SIGTERM, then SIGKILL after `grace`), empties and removes the bucket,
    /// drops the schema; the RabbitMQ node goes with the fleet.
    /// `supervisor` is the task of [`ProcessFleet::supervise`]: it ends first.
    pub async fn stop(
        self: Arc<Self>,
        supervisor: tokio::task::JoinHandle<()>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        self.lock().stopping = true;
        let _ = supervisor.await;
        self.store_reachable(true);
        self.ledger_reachable(true);
        let mut processes = std::mem::take(&mut self.lock().processes);
        for process in &processes {
            if let Some(pid) = process.child.id() {
                signal(pid, "TERM");
            }
        }
        for process in &mut processes {
            if tokio::time::timeout(grace, process.child.wait())
                .await
                .is_err()
            {
                let _ = process.child.kill().await;
            }
        }
        drop(processes);
        let store = clipfleet_store::open(&self.store_url()).await?;
        let keys: Vec<_> = clipfleet_store::list_all(store.as_ref(), "")
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        for chunk in keys.chunks(1000) {
            let report = store.delete_many(chunk).await;
            if !report.is_complete() {
                warn!(
                    left = report.failed.len(),
                    "could not empty the run's bucket"
                );
            }
        }
        let url = format!("{}/{}", self.endpoint.trim_end_matches('/'), self.bucket);
        if let Err(err) = reqwest::Client::new().delete(&url).send().await {
            warn!(error = %err, "could not remove the run's bucket");
        }
        let mut fleet = Arc::into_inner(self)
            .ok_or_else(|| anyhow::anyhow!("the fleet is still shared when it stops"))?;
        if let Some(schema) = fleet.schema.take() {
            schema
                .drop_schema()
                .await
                .context("drop the run's schema")?;
        }
        // Stopping the RabbitMQ node blocks (rabbitmqctl).
        tokio::task::spawn_blocking(move || drop(fleet)).await?;
        Ok(())
    }
}

/// The `pick`-th (modulo) process of `role` that serves.
/// A fresh worker name of the pool `prefix` names (`worker-7`, `session-worker-8`).
fn next_worker_name(state: &mut State, prefix: &str) -> String {
    state.next_worker += 1;
    format!("{prefix}{}", state.next_worker)
}

/// The name prefix of a worker's pool.
fn worker_prefix(name: &str) -> &'static str {
    if name.starts_with(SESSION_WORKER) {
        SESSION_WORKER
    } else {
        "worker-"
    }
}

fn choose(processes: &mut [Process], role: Role, pick: u64) -> Option<&mut Process> {
    let serving: Vec<usize> = processes
        .iter()
        .enumerate()
        .filter(|(_, p)| p.role == role && p.fate == Fate::Serve)
        .map(|(i, _)| i)
        .collect();
    let index = *serving.get(usize::try_from(pick % serving.len().max(1) as u64).ok()?)?;
    processes.get_mut(index)
}

/// Sends a signal by name to a process this run started (`kill -TERM pid`).
fn signal(pid: u32, name: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
    if !sent.is_ok_and(|status| status.success()) {
        warn!(pid, signal = name, "could not signal a process");
    }
}

/// A process's resident set size (`VmRSS` of `/proc/<pid>/status`), KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `host:port` of a URL (`scheme://[user@]host:port/…`).
fn authority(url: &str) -> anyhow::Result<&str> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("{url:?} is not a URL"))?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    anyhow::ensure!(authority.contains(':'), "{url:?} names no port");
    Ok(authority)
}

async fn resolve(authority: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(authority)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{authority} resolves to nothing"))
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

async fn create_bucket(endpoint: &str, bucket: &str) -> anyhow::Result<()> {
    let url = format!("{}/{bucket}", endpoint.trim_end_matches('/'));
    let answer = reqwest::Client::new()
        .put(&url)
        .send()
        .await
        .with_context(|| format!("create bucket {bucket} at {endpoint} (is the emulator up?)"))?;
    anyhow::ensure!(
        answer.status().is_success(),
        "create bucket {bucket}: {}",
        answer.status()
    );
    Ok(())
}

/// 32 random bytes in hex (a key).
fn random_key() -> anyhow::Result<String> {
    let mut key = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
    Ok(key.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_keyring(path: &Path) -> anyhow::Result<()> {
    let hex = random_key()?;
    std::fs::write(
        path,
        format!("current = \"chaos-1\"\n[keys]\nchaos-1 = \"{hex}\"\n"),
    )
    .with_context(|| format!("write {}", path.display()))
}

fn config_text(spec: &FleetSpec, broker: &str, bucket: &str, ledger: &str, token: &str) -> String {
    let digest: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pool = |name: &str, model: &str, version: &str| {
        format!(
            "[[pools]]\nname = \"{name}\"\nmodel = \"{model}\"\nmodel_version = \"{version}\"\n\
             max_backlog = 100000\njob_deadline = \"10m\"\nmax_deliveries = 5\n"
        )
    };
    let mut pools = pool("default", &spec.model, &spec.model_version);
    if let Some((model, version)) = &spec.session_model {
        pools.push_str(&pool(SESSION_POOL, model, version));
    }
    let keyring = spec.run_dir.join("keyring.toml");
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    format!(
        r#"# Written by clip-chaos for one campaign.
version = 1
[broker]
url = "{broker}"
[store]
url = "s3://{bucket}"
[store.sealing]
keyring = "file://{keyring}"
[ledger]
url = "{ledger}"
[limits]
max_upload_bytes = 20_971_520
max_pixels = 40_000_000
[retention]
input_max_age = "1h"
output_ttl = "{ttl}"
account_months_after_termination = 6
usage_max_age = "90days"
orphan_grace = "{orphan}"
session_ttl = "24h"
[ingest]
[[ingest.tokens]]
name = "chaos"
sha256 = "{digest}"
{pools}"#,
        keyring = keyring.display(),
        ttl = duration(spec.output_ttl),
        orphan = duration(spec.orphan_grace),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_of_service_urls() -> anyhow::Result<()> {
        assert_eq!(
            authority("postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dx")?,
            "127.0.0.1:5432"
        );
        assert_eq!(authority("http://127.0.0.1:4566")?, "127.0.0.1:4566");
        assert!(authority("http://localhost/x").is_err());
        Ok(())
    }
}
