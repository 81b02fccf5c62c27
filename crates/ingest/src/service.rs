//! The ingest service: its shared state, its router and its lifetime.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use clipfleet_broker::Broker;
use clipfleet_config::Config;
use clipfleet_ledger::Ledger;
use clipfleet_models::{Manifest, ModelSpec};
use clipfleet_store::ObjectStore;
use clipfleet_telemetry::{Check, OpsState, Readiness, ops_router};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admission::Admission;
use crate::auth::Tokens;
use crate::metrics::Metrics;

/// The token the embedded configuration's one caller (`dev`) holds. Anything but a fleet on
/// embedded defaults configures its own.
pub const DEV_TOKEN: &str = "clipfleet-dev-token";

/// Threads for blocking work (file I/O of a local store) in an ingest process. Tokio's default
/// (512) lets a burst of uploads start hundreds of threads, each with its own allocator arena:
/// memory that stays with the process long after the burst.
pub const MAX_BLOCKING_THREADS: usize = 16;

/// What ingest talks to.
#[derive(Debug, Clone)]
pub struct IngestDeps {
    /// Jobs go out here; events come back.
    pub broker: Arc<dyn Broker>,
    /// Sealed: photos in, videos out.
    pub store: Arc<dyn ObjectStore>,
    /// Accounts, jobs, usage, the deletion audit.
    pub ledger: Ledger,
    /// The models the pools serve (their frames, fps and input size fill in each job).
    pub manifest: Manifest,
}

/// How one ingest process runs (not what the fleet is: that is the config).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IngestOptions {
    /// How long a reading of a pool's backlog is trusted before the broker is asked again.
    pub admission_refresh: Duration,
    /// How long a publish may wait for its confirm before the submission is rolled back.
    pub publish_timeout: Duration,
    /// Take the client address from `X-Forwarded-For` (behind a trusted proxy only).
    pub trust_forwarded_for: bool,
    /// Event batches received at once by the event consumer.
    pub event_batch: usize,
    /// Photo bytes held in memory at once, over every upload (read and not yet stored): an
    /// upload waits for room before it reads its photo (its client waits on TCP meanwhile), so
    /// a burst of uploads costs this much memory, not one buffer per connection. A photo larger
    /// than the whole budget takes all of it. Slow clients hold their room while they upload:
    /// size it for the clients, not only for memory.
    pub upload_buffer_bytes: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            admission_refresh: Duration::from_millis(250),
            publish_timeout: Duration::from_secs(10),
            trust_forwarded_for: false,
            event_batch: 64,
            upload_buffer_bytes: 4 << 20,
        }
    }
}

pub(crate) struct State {
    pub config: Arc<Config>,
    pub deps: IngestDeps,
    pub options: IngestOptions,
    pub tokens: Tokens,
    pub admission: Admission,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    /// Usage records, written in groups.
    pub usage: crate::usage::UsageLog,
    /// Room for photos in memory, in bytes (`IngestOptions::upload_buffer_bytes`).
    pub uploads: crate::submit::UploadBudget,
}

impl State {
    /// The model a pool serves, as the manifest describes it.
    pub(crate) fn model_of(&self, pool: &clipfleet_config::PoolConfig) -> Option<&ModelSpec> {
        self.deps.manifest.find(&pool.model, &pool.model_version)
    }
}

/// A running ingest: cheap to clone, every clone the same service.
#[derive(Clone)]
pub struct Ingest {
    pub(crate) state: Arc<State>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

impl Ingest {
    /// Checks that the fleet described by `config` can be served (callers configured, every
    /// pool's model in the manifest) and sets up the pools' queues.
    pub async fn new(
        config: Arc<Config>,
        deps: IngestDeps,
        options: IngestOptions,
    ) -> anyhow::Result<Self> {
        let tokens = Tokens::new(config.ingest.tokens.clone());
        if tokens.is_empty() {
            bail!("no service tokens configured ([ingest] tokens): nobody could call ingest");
        }
        for pool in &config.pools {
            match deps.manifest.find(&pool.model, &pool.model_version) {
                None => bail!(
                    "pool {} serves {}@{}, which the model manifest does not list",
                    pool.name,
                    pool.model,
                    pool.model_version
                ),
                Some(spec) if !spec.is_servable() => bail!(
                    "pool {} serves {}, an interpolator: it runs only as a stage of a chain",
                    pool.name,
                    spec.key()
                ),
                Some(_) => {}
            }
            deps.broker
                .ensure_pool(
                    &pool.name,
                    clipfleet_broker::PoolSpec {
                        max_deliveries: pool.max_deliveries,
                    },
                )
                .await
                .with_context(|| format!("set up the queues of pool {}", pool.name))?;
        }
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let admission = Admission::new(options.admission_refresh);
        let usage = crate::usage::UsageLog::start(deps.ledger.clone());
        let uploads = crate::submit::UploadBudget::new(options.upload_buffer_bytes);
        Ok(Ingest {
            state: Arc::new(State {
                config,
                deps,
                options,
                tokens,
                admission,
                metrics,
                registry: Arc::new(registry),
                usage,
                uploads,
            }),
        })
    }

    /// The API (`/v1/…`) and the operations endpoints (`/livez`, `/readyz`, `/metrics`).
    /// Serve it with connect info (see [`Ingest::serve`]) so usage records get the caller's
    /// address.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        // Bodies are bounded by hand (field by field, streamed): the extractor's own limit is
        // only a backstop above the upload limit plus room for the form's other parts.
        let body_limit =
            usize::try_from(state.config.limits.max_upload_bytes).unwrap_or(usize::MAX) + (1 << 20);
        let api = Router::new()
            .route("/v1/jobs", post(crate::submit::submit))
            .route(
                "/v1/jobs/{id}",
                get(crate::jobs::show).delete(crate::jobs::delete),
            )
            .route("/v1/jobs/{id}/output", get(crate::jobs::output))
            .route("/v1/jobs/{id}/video", get(crate::jobs::output))
            .route("/v1/sessions", post(crate::sessions::create))
            .route(
                "/v1/sessions/{id}",
                get(crate::sessions::show).delete(crate::sessions::end),
            )
            .route("/v1/sessions/{id}/photos", post(crate::sessions::upload))
            .route(
                "/v1/sessions/{id}/personalize",
                post(crate::sessions::personalize),
            )
            .route("/v1/accounts", post(crate::accounts::create))
            .route(
                "/v1/accounts/{id}",
                get(crate::accounts::show).patch(crate::accounts::update),
            )
            .route(
                "/v1/accounts/{id}/terminate",
                post(crate::accounts::terminate),
            )
            .route("/v1/accounts/{id}/erasure", post(crate::accounts::erase))
            .layer(DefaultBodyLimit::max(body_limit))
            // A span per API request (not for the operations endpoints: scrapes are no trace).
            .route_layer(axum::middleware::from_fn(clipfleet_telemetry::trace_http))
            .with_state(state.clone());
        let ops = ops_router(OpsState {
            registry: state.registry.clone(),
            readiness: Arc::new(IngestReadiness(state)),
        });
        api.merge(ops)
    }

    /// Applies job events from the broker to the ledger until `shutdown` turns true.
    pub async fn consume_events(&self, shutdown: watch::Receiver<bool>) {
        crate::events::consume(self.state.clone(), shutdown).await;
    }

    /// Serves the API on `listener` and runs the event consumer until `shutdown` resolves;
    /// then stops taking connections, lets requests in progress finish and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let consumer = {
            let ingest = self.clone();
            let stop_rx = stop_rx.clone();
            tokio::spawn(async move { ingest.consume_events(stop_rx).await })
        };
        let server = tokio::spawn(crate::http::serve(listener, self.router(), stop_rx));
        let signal = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let served = server.await;
        signal.abort();
        consumer.await.context("event consumer")?;
        served.context("http server")
    }
}

struct IngestReadiness(Arc<State>);

#[async_trait]
impl Readiness for IngestReadiness {
    async fn checks(&self) -> Vec<Check> {
        let deps = &self.0.deps;
        let (broker, store, ledger) = tokio::join!(
            Check::run("broker", deps.broker.check()),
            Check::run("store", deps.store.check_connectivity()),
            Check::run("ledger", deps.ledger.ping()),
        );
        vec![broker, store, ledger]
    }
}
