//! A fleet's backends for one test, and jobs to put in them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clipfleet_broker::{Broker, InMemoryBroker, PoolSpec};
use clipfleet_config::Config;
use clipfleet_ctl::cli::Output;
use clipfleet_ctl::{Backends, Ctx};
use clipfleet_ledger::Ledger;
use clipfleet_models::Manifest;
use clipfleet_proto::{AccountId, GenerateJob, Motion, PoolName, Timestamp};
use clipfleet_store::{InMemoryObjectStore, LocalKeyring, ObjectStore, SealedObjectStore};
use clipfleet_testkit::repo_root;

pub fn config(overrides: &[(&str, &str)]) -> Config {
    let env: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::load(None, &env).expect("embedded config")
}

/// Memory broker, sealed memory store, SQLite ledger: what the embedded fleet runs on.
pub async fn memory_ctx(output: Output) -> (Ctx, Backends) {
    let config = Arc::new(config(&[]));
    let broker: Arc<dyn Broker> = Arc::new(InMemoryBroker::new());
    for pool in &config.pools {
        broker
            .ensure_pool(&pool.name, PoolSpec::default())
            .await
            .expect("pool");
    }
    let raw_store: Arc<dyn ObjectStore> = Arc::new(InMemoryObjectStore::new());
    let store: Arc<dyn ObjectStore> = Arc::new(SealedObjectStore::new(
        raw_store.clone(),
        Arc::new(LocalKeyring::ephemeral().expect("keyring")),
    ));
    let ledger = Ledger::connect("sqlite::memory:").await.expect("ledger");
    ledger.migrate().await.expect("migrate");
    let backends = Backends {
        broker,
        raw_store,
        store,
        ledger,
    };
    (
        Ctx::with_backends(config, output, backends.clone()),
        backends,
    )
}

pub fn pool() -> PoolName {
    PoolName::new("default").expect("pool")
}

pub fn sample_photo() -> Vec<u8> {
    std::fs::read(repo_root().join("models/samples/hillside.jpg")).expect("sample photo")
}

/// A job for `account` with its photo stored and the job published, as ingest does.
pub async fn submit(backends: &Backends, account: &AccountId) -> GenerateJob {
    let manifest = Manifest::embedded(repo_root().join("models")).expect("manifest");
    let spec = manifest.find("motion", "1").expect("motion").clone();
    let photo = sample_photo();
    let deadline = Timestamp::from_system_time(SystemTime::now() + Duration::from_secs(600));
    let job =
        clipfleet_worker::job_for_photo(account, &pool(), &spec, &photo, Motion::ZoomIn, deadline);
    clipfleet_worker::submit(
        backends.broker.as_ref(),
        backends.store.as_ref(),
        &job,
        photo,
    )
    .await
    .expect("submit");
    job
}
