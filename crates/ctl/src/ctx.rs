//! What a command works on: the fleet's config and its backends, opened on first use (a
//! command that only needs the broker never touches the database), or handed in by a test.

use std::sync::Arc;

use anyhow::Context as _;
use clipfleet_broker::{Broker, BrokerOptions, connect};
use clipfleet_config::{Config, PoolConfig};
use clipfleet_fleet::Fleet;
use clipfleet_ledger::Ledger;
use clipfleet_proto::PoolName;
use clipfleet_store::{ObjectStore, SealedObjectStore, open, open_keyring};
use tokio::sync::OnceCell;

use crate::cli::Output;
use crate::exit::{CtlResult, Exit, Failure};

/// The fleet a command operates on.
#[derive(Debug)]
pub struct Ctx {
    /// What the fleet is.
    pub config: Arc<Config>,
    /// How read commands print.
    pub output: Output,
    namespace: Option<String>,
    broker: OnceCell<Arc<dyn Broker>>,
    raw_store: OnceCell<Arc<dyn ObjectStore>>,
    store: OnceCell<Arc<dyn ObjectStore>>,
    ledger: OnceCell<Ledger>,
}

/// Backends already open (tests, the embedded fleet).
#[derive(Debug, Clone)]
pub struct Backends {
    /// The broker.
    pub broker: Arc<dyn Broker>,
    /// The store without sealing.
    pub raw_store: Arc<dyn ObjectStore>,
    /// The sealed store over it.
    pub store: Arc<dyn ObjectStore>,
    /// The ledger.
    pub ledger: Ledger,
}

impl Ctx {
    /// Backends opened from `config` when first needed.
    pub fn new(config: Config, output: Output, namespace: Option<String>) -> Ctx {
        Ctx {
            config: Arc::new(config),
            output,
            namespace,
            broker: OnceCell::new(),
            raw_store: OnceCell::new(),
            store: OnceCell::new(),
            ledger: OnceCell::new(),
        }
    }

    /// On backends that are already open.
    pub fn with_backends(config: Arc<Config>, output: Output, backends: Backends) -> Ctx {
        Ctx {
            config,
            output,
            namespace: None,
            broker: OnceCell::new_with(Some(backends.broker)),
            raw_store: OnceCell::new_with(Some(backends.raw_store)),
            store: OnceCell::new_with(Some(backends.store)),
            ledger: OnceCell::new_with(Some(backends.ledger)),
        }
    }

    /// On the backends of a fleet running in this process.
    pub fn for_fleet(fleet: &Fleet, output: Output) -> Ctx {
        Ctx::with_backends(
            fleet.config.clone(),
            output,
            Backends {
                broker: fleet.broker.clone(),
                raw_store: fleet.raw_store.clone(),
                store: fleet.store.clone(),
                ledger: fleet.ledger.clone(),
            },
        )
    }

    /// The same fleet, backends opened afresh, with progress bars hidden (a service's `Ctx`).
    pub fn quiet(&self) -> Ctx {
        Ctx::new((*self.config).clone(), Output::Json, self.namespace.clone())
    }

    /// Whether read commands print JSON.
    pub fn json(&self) -> bool {
        self.output == Output::Json
    }

    /// The broker.
    pub async fn broker(&self) -> CtlResult<&Arc<dyn Broker>> {
        self.broker
            .get_or_try_init(|| async {
                let mut options = BrokerOptions::default();
                if let Some(namespace) = &self.namespace {
                    options.namespace = namespace.clone();
                }
                connect(self.config.broker.expose(), options)
                    .await
                    .with_context(|| format!("connect to the broker {}", self.config.broker))
                    .map_err(|err| Failure::new(Exit::Unavailable, err))
            })
            .await
    }

    /// The store as the janitor sees it (keys and sizes; no content read).
    pub async fn raw_store(&self) -> CtlResult<&Arc<dyn ObjectStore>> {
        self.raw_store
            .get_or_try_init(|| async {
                open(self.config.store.expose())
                    .await
                    .with_context(|| format!("open the store {}", self.config.store))
                    .map_err(|err| Failure::new(Exit::Unavailable, err))
            })
            .await
    }

    /// The sealed store (what ingest and the workers use).
    pub async fn store(&self) -> CtlResult<&Arc<dyn ObjectStore>> {
        let raw = self.raw_store().await?.clone();
        self.store
            .get_or_try_init(|| async {
                let keyring = open_keyring(&self.config.keyring).context("open the keyring")?;
                Ok::<_, Failure>(Arc::new(SealedObjectStore::new(raw, Arc::new(keyring)))
                    as Arc<dyn ObjectStore>)
            })
            .await
    }

    /// The ledger (migrated: a fresh SQLite file works).
    pub async fn ledger(&self) -> CtlResult<&Ledger> {
        self.ledger
            .get_or_try_init(|| async {
                let ledger = Ledger::connect(self.config.ledger.expose())
                    .await
                    .with_context(|| format!("open the ledger {}", self.config.ledger))
                    .map_err(|err| Failure::new(Exit::Unavailable, err))?;
                ledger.migrate().await.context("migrate the ledger")?;
                Ok::<_, Failure>(ledger)
            })
            .await
    }

    /// The pool named `name`, or the config's first when `None`.
    pub fn pool(&self, name: Option<&str>) -> CtlResult<&PoolConfig> {
        match name {
            None => self
                .config
                .pools
                .first()
                .ok_or_else(|| Failure::msg(Exit::Failed, "the config has no pools")),
            Some(name) => self.config.pool(name).ok_or_else(|| {
                Failure::msg(
                    Exit::NotFound,
                    format!(
                        "no pool {name:?} in the config (pools: {})",
                        self.pool_names().join(", ")
                    ),
                )
            }),
        }
    }

    /// A pool name the config knows.
    pub fn pool_name(&self, name: &str) -> CtlResult<PoolName> {
        Ok(self.pool(Some(name))?.name.clone())
    }

    fn pool_names(&self) -> Vec<String> {
        self.config
            .pools
            .iter()
            .map(|p| p.name.to_string())
            .collect()
    }
}
