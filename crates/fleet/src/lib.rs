//! The fleet in one process: `clip-ingest` serving its real HTTP API on a loopback port, `N`
//! workers and the janitor, all over one set of backends (by default the embedded ones of the
//! example config: in-memory broker, sealed in-memory store, SQLite ledger in memory). It is
//! what `clipctl generate` and `clipctl up` run and what `clip-loadtest --embedded` drives: every
//! request goes through the same code paths as in a fleet of processes, only the transport of
//! the broker and the store is in memory.
//!
//! The services stay independent (none depends on another); this crate sits above them. Its
//! tests (`tests/telemetry/`) hold what only the services together show: one trace per job from
//! the upload through the queue to the worker's last event, and no personal data in anything
//! the fleet logs or traces.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clipfleet_broker::{Broker, BrokerOptions, PoolSpec, connect};
use clipfleet_config::Config;
use clipfleet_ingest::{Ingest, IngestDeps, IngestOptions};
use clipfleet_janitor::{Janitor, LockSpec, Policy, RunOptions};
use clipfleet_ledger::{Clock, Ledger, SystemClock};
use clipfleet_models::Manifest;
use clipfleet_proto::WorkerId;
use clipfleet_store::{ObjectStore, SealedObjectStore, open, open_keyring};
use clipfleet_worker::{
    DEFAULT_MANIFEST, WorkerConfig, WorkerDeps, WorkerReport, default_encoder, device_label,
    load_engine,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

pub use clipfleet_ingest::DEV_TOKEN;

/// How the in-process fleet is made up.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// What the fleet is (backends, pools, retention): the embedded default unless given.
    pub config: Config,
    /// Workers per pool. They share one inference engine, as jobs on one device would.
    pub workers_per_pool: usize,
    /// Jobs each worker holds at once.
    pub worker_slots: usize,
    /// Janitor sweeps at this interval; `None`: no janitor.
    pub janitor_every: Option<Duration>,
    /// Where ingest listens (port 0: any free port).
    pub listen: SocketAddr,
    /// The model manifest the workers load and ingest reads shapes from.
    pub manifest: PathBuf,
    /// Broker namespace (queue-name prefix), so fleets on one broker stay apart.
    pub broker_namespace: Option<String>,
    /// How ingest runs (e.g. trusting `X-Forwarded-For`, as behind the app's proxy).
    pub ingest: IngestOptions,
}

impl FleetOptions {
    /// The embedded defaults: example config, one worker, janitor every 5 s, loopback port 0.
    pub fn embedded() -> anyhow::Result<FleetOptions> {
        Ok(FleetOptions {
            config: Config::load(None, &Default::default()).context("embedded config")?,
            workers_per_pool: 1,
            worker_slots: 16,
            janitor_every: Some(Duration::from_secs(5)),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            manifest: PathBuf::from(DEFAULT_MANIFEST),
            broker_namespace: None,
            ingest: IngestOptions::default(),
        })
    }
}

/// A running fleet. Stop it with [`Fleet::shutdown`]; dropping it aborts the tasks.
pub struct Fleet {
    base_url: String,
    /// The configuration it runs on.
    pub config: Arc<Config>,
    /// Its broker (jobs, events, control).
    pub broker: Arc<dyn Broker>,
    /// The sealed store the services use.
    pub store: Arc<dyn ObjectStore>,
    /// The same objects without sealing (keys and sizes, as the janitor sees them).
    pub raw_store: Arc<dyn ObjectStore>,
    /// The ledger.
    pub ledger: Ledger,
    /// The janitor, when one runs.
    pub janitor: Option<Arc<Janitor>>,
    stop: watch::Sender<bool>,
    ingest: JoinHandle<anyhow::Result<()>>,
    workers: Vec<(WorkerId, JoinHandle<anyhow::Result<WorkerReport>>)>,
    janitor_task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("base_url", &self.base_url)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// What the fleet did, once stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetReport {
    /// Each worker's report, by id.
    pub workers: Vec<(String, WorkerReport)>,
}

impl Fleet {
    /// Opens the backends of `options.config`, loads the models, and starts ingest on
    /// `options.listen`, the workers and the janitor.
    pub async fn start(options: FleetOptions) -> anyhow::Result<Fleet> {
        let config = Arc::new(options.config);
        let mut broker_options = BrokerOptions::default();
        if let Some(namespace) = &options.broker_namespace {
            broker_options.namespace = namespace.clone();
        }
        let broker = connect(config.broker.expose(), broker_options)
            .await
            .context("broker")?;
        for pool in &config.pools {
            broker
                .ensure_pool(
                    &pool.name,
                    PoolSpec {
                        max_deliveries: pool.max_deliveries,
                    },
                )
                .await
                .with_context(|| format!("queues of pool {}", pool.name))?;
        }
        let raw_store = open(config.store.expose()).await.context("store")?;
        let keyring = Arc::new(open_keyring(&config.keyring).context("keyring")?);
        let store: Arc<dyn ObjectStore> =
            Arc::new(SealedObjectStore::new(raw_store.clone(), keyring));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ledger = Ledger::connect_with_clock(config.ledger.expose(), clock.clone())
            .await
            .context("ledger")?;
        ledger.migrate().await.context("migrate the ledger")?;

        let manifest = Manifest::load(&options.manifest)
            .with_context(|| format!("manifest {}", options.manifest.display()))?;
        let served: Vec<String> = config
            .pools
            .iter()
            .map(|pool| format!("{}@{}", pool.model, pool.model_version))
            .collect();
        let (engine, models) = load_engine(&options.manifest, &served)?;

        let (stop, stopped) = watch::channel(false);
        let ingest = Ingest::new(
            config.clone(),
            IngestDeps {
                broker: broker.clone(),
                store: store.clone(),
                ledger: ledger.clone(),
                manifest,
            },
            options.ingest.clone(),
        )
        .await?;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("listen on {}", options.listen))?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let ingest = tokio::spawn(ingest.serve(listener, stopped_future(stopped.clone())));

        let encoder = default_encoder();
        let mut workers = Vec::new();
        for pool in &config.pools {
            for index in 0..options.workers_per_pool.max(1) {
                let id = WorkerId::new(format!(
                    "embedded-{}-{index}.{}",
                    pool.name,
                    std::process::id()
                ))?;
                let mut worker = WorkerConfig::new(id.clone(), pool.name.clone());
                worker.slots = options.worker_slots.max(1);
                worker.device_label = device_label();
                worker.drain_grace = Duration::from_secs(30);
                let deps = WorkerDeps {
                    broker: broker.clone(),
                    store: store.clone(),
                    engine: engine.clone(),
                    models: models.clone(),
                    encoder: encoder.clone(),
                };
                let task = tokio::spawn(clipfleet_worker::run(
                    deps,
                    worker,
                    stopped_future(stopped.clone()),
                ));
                workers.push((id, task));
            }
        }

        let janitor = match options.janitor_every {
            Some(every) => {
                let janitor = Arc::new(Janitor::new(
                    ledger.clone(),
                    raw_store.clone(),
                    Policy::from_config(&config.retention),
                    clock,
                    LockSpec::for_ledger_url(config.ledger.expose())?,
                ));
                let task = tokio::spawn({
                    let (janitor, stopped) = (janitor.clone(), stopped.clone());
                    async move {
                        let options = RunOptions {
                            interval: every,
                            once: false,
                        };
                        if let Err(err) =
                            clipfleet_janitor::run(janitor, options, None, stopped_future(stopped))
                                .await
                        {
                            tracing::warn!(error = %err, "janitor stopped");
                        }
                    }
                });
                Some((janitor, task))
            }
            None => None,
        };
        info!(url = %base_url, workers = workers.len(), "embedded fleet up");
        let (janitor, janitor_task) = janitor.unzip();
        Ok(Fleet {
            base_url,
            config,
            broker,
            store,
            raw_store,
            ledger,
            janitor,
            stop,
            ingest,
            workers,
            janitor_task,
        })
    }

    /// Where ingest answers (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The ids of the workers.
    pub fn worker_ids(&self) -> Vec<WorkerId> {
        self.workers.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Workers still running (a drained worker returns).
    pub fn workers_running(&self) -> usize {
        self.workers
            .iter()
            .filter(|(_, task)| !task.is_finished())
            .count()
    }

    /// Stops taking requests, drains the workers (in-flight jobs finish), stops the janitor.
    pub async fn shutdown(self) -> anyhow::Result<FleetReport> {
        let _ = self.stop.send(true);
        let mut report = FleetReport::default();
        for (id, task) in self.workers {
            let worker = task.await.context("worker task")??;
            report.workers.push((id.to_string(), worker));
        }
        self.ingest.await.context("ingest task")??;
        if let Some(task) = self.janitor_task {
            task.await.context("janitor task")?;
        }
        Ok(report)
    }
}

async fn stopped_future(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
