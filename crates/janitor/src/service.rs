//! The janitor as a service: a [`Janitor`] (ledger, store, policy, clock, leader lock) that
//! plans and sweeps, and [`run`], the loop that sweeps at an interval until shutdown, serving
//! `/livez`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clipfleet_config::Config;
use clipfleet_ledger::{Clock, Ledger, NewSweep, SystemClock};
use clipfleet_store::ObjectStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::{JanitorError, JanitorErrorKind};
use crate::execute::{ExecuteOptions, Executor, SweepReport};
use crate::gather::{Limits, gather};
use crate::lock::{LeaderLock, LockSpec};
use crate::metrics::Metrics;
use crate::plan::Plan;
use crate::policy::Policy;
use crate::rules;

/// What a sweep came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepOutcome {
    /// This janitor leads and swept.
    Swept(SweepReport),
    /// Another janitor holds the lock: nothing done.
    NotLeader,
}

/// The retention engine over one ledger and one store.
#[derive(Debug)]
pub struct Janitor {
    ledger: Ledger,
    store: Arc<dyn ObjectStore>,
    policy: Policy,
    /// Where `now` comes from: injected so retention is tested without waiting for it.
    clock: Arc<dyn Clock>,
    lock: LockSpec,
    /// The leader lock once taken; kept across sweeps.
    held: tokio::sync::Mutex<Option<LeaderLock>>,
    limits: Limits,
    options: ExecuteOptions,
    metrics: Arc<Metrics>,
}

impl Janitor {
    /// A janitor over `ledger` and `store` (the raw store: the janitor reads no content, and
    /// sealing keeps keys as they are).
    pub fn new(
        ledger: Ledger,
        store: Arc<dyn ObjectStore>,
        policy: Policy,
        clock: Arc<dyn Clock>,
        lock: LockSpec,
    ) -> Janitor {
        Janitor {
            ledger,
            store,
            policy,
            clock,
            lock,
            held: tokio::sync::Mutex::new(None),
            limits: Limits::default(),
            options: ExecuteOptions::default(),
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// Opens the ledger (migrated) and the store a configuration names, with the system clock.
    pub async fn open(config: &Config) -> Result<Janitor, JanitorError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let url = config.ledger.expose();
        let ledger = Ledger::connect_with_clock(url, clock.clone())
            .await
            .map_err(|err| JanitorError::ledger("open ledger", err))?;
        ledger
            .migrate()
            .await
            .map_err(|err| JanitorError::ledger("migrate ledger", err))?;
        let store = clipfleet_store::open(config.store.expose())
            .await
            .map_err(|err| JanitorError::store("open store", err))?;
        let lock = LockSpec::for_ledger_url(url)?;
        Ok(Janitor::new(
            ledger,
            store,
            Policy::from_config(&config.retention),
            clock,
            lock,
        ))
    }

    /// Reads at most `limits` per sweep.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Executes with `options`.
    pub fn with_execute_options(mut self, options: ExecuteOptions) -> Self {
        self.options = options;
        self
    }

    /// The counters `/metrics` shows.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// What a sweep would do now: nothing is deleted, no lock taken.
    pub async fn plan(&self) -> Result<Plan, JanitorError> {
        let now = self.clock.now();
        let snapshot = gather(
            &self.ledger,
            self.store.as_ref(),
            &self.policy,
            now,
            self.limits,
        )
        .await?;
        Ok(rules::plan(&snapshot, &self.policy))
    }

    /// One sweep, if this janitor leads: plan, then execute.
    pub async fn sweep(&self) -> Result<SweepOutcome, JanitorError> {
        let mut held = self.held.lock().await;
        if let Some(lock) = held.as_mut()
            && !lock.still_held().await
        {
            warn!("leader lock lost");
            *held = None;
        }
        if held.is_none() {
            *held = self.lock.try_acquire().await?;
            if held.is_none() {
                self.metrics.record_not_leader();
                return Ok(SweepOutcome::NotLeader);
            }
            info!("leader lock taken");
        }
        let started = Instant::now();
        let started_at = self.clock.now();
        let plan = self.plan().await?;
        let executor = Executor::new(&self.ledger, self.store.as_ref(), self.options.clone());
        let report = executor.execute(&plan).await;
        drop(held);
        let took = started.elapsed();
        self.metrics
            .record_sweep(&report, took, self.clock.now().unix_ms());
        // The console's "last sweeps". A record that cannot be written costs the operator a
        // row, never a deletion: the sweep itself is done and audited.
        let record = NewSweep {
            started_at,
            took,
            deleted: report
                .deleted
                .iter()
                .map(|(rule, n)| (rule.as_str().to_owned(), *n))
                .collect(),
            accounts_purged: report.accounts_purged,
            failures: report.failures,
            recovered: report.recovered,
        };
        if let Err(err) = self.ledger.record_sweep(&record).await {
            warn!(error = %err, "could not record the sweep");
        }
        info!(
            deleted = report.total_deleted(),
            accounts = report.accounts_purged,
            failures = report.failures,
            recovered = report.recovered,
            took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "sweep done"
        );
        Ok(SweepOutcome::Swept(report))
    }

    /// The `/readyz` check: the ledger and the store answer.
    pub async fn ready(&self) -> Result<(), JanitorError> {
        self.ledger
            .ping()
            .await
            .map_err(|err| JanitorError::ledger("ping ledger", err))?;
        self.store
            .check_connectivity()
            .await
            .map_err(|err| JanitorError::store("check store", err))
    }
}

/// How [`run`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Pause between sweeps.
    pub interval: Duration,
    /// One sweep, then return.
    pub once: bool,
}

/// Sweeps every `interval` until `shutdown` resolves (checked between sweeps: a sweep in
/// progress finishes), serving `/livez`, `/readyz` and `/metrics` on `listener` if given. A
/// sweep that fails (a backend down) is logged and counted; the loop goes on. Returns the last
/// sweep's outcome.
pub async fn run(
    janitor: Arc<Janitor>,
    options: RunOptions,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Option<SweepOutcome>, JanitorError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let server = listener.map(|listener| {
        let app = Router::new()
            .route("/livez", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(janitor.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        })
    });
    let mut stop = stop_rx;
    let mut last = None;
    let mut result = Ok(());
    loop {
        match janitor.sweep().await {
            Ok(outcome) => last = Some(outcome),
            Err(err) => {
                janitor.metrics.record_error();
                warn!(error = %err, "sweep failed");
                if options.once {
                    result = Err(err);
                }
            }
        }
        if options.once || *stop.borrow() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(options.interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
    watcher.abort();
    if let Some(server) = server {
        server.abort();
        let _ = server.await;
    }
    result.map(|()| last)
}

async fn readyz(State(janitor): State<Arc<Janitor>>) -> (StatusCode, String) {
    match janitor.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(err) => (err.kind().into(), format!("{}\n", err.kind())),
    }
}

async fn metrics(State(janitor): State<Arc<Janitor>>) -> String {
    janitor.metrics.render()
}

impl From<JanitorErrorKind> for StatusCode {
    fn from(kind: JanitorErrorKind) -> Self {
        match kind {
            JanitorErrorKind::Unavailable | JanitorErrorKind::NotLeader => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            JanitorErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            JanitorErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
