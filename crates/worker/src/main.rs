//! `clip-worker`: the GPU worker process, and the whole job on embedded defaults.
//!
//! ```text
//! clip-worker serve [--config FILE] [--manifest FILE] [--worker-id ID] [--pool NAME] [--slots N]
//!                   [--listen ADDR]   (serves /livez /readyz /metrics)
//!                    [--broker-namespace NS] [--log-format pretty|json]
//! clip-worker embedded PHOTO OUT.mp4 [--motion PRESET] [--manifest FILE]
//! ```
//!
//! `serve` runs a worker against the backends of the config file (embedded default when none;
//! `CLIPFLEET_*` overrides) until SIGTERM or Ctrl-C, then drains. `embedded` runs the fleet in
//! one process — in-memory broker, sealed in-memory store, this worker — submits PHOTO as a
//! job the way ingest does, writes the MP4, and shows that the photo is gone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use clipfleet_broker::{
    Broker, BrokerOptions, InMemoryBroker, PoolSpec, QueueRef, Receive, connect,
};
use clipfleet_config::Config;
use clipfleet_media::{Limits, probe};
use clipfleet_proto::{
    AccountId, EventBatch, EventKind, Motion, PoolName, Timestamp, WorkerId, decode,
};
use clipfleet_store::{
    InMemoryObjectStore, LocalKeyring, ObjectKey, ObjectStore, SealedObjectStore, StoreErrorKind,
    open_sealed, read_to_end,
};
use clipfleet_telemetry::{LogFormat, TelemetryOptions, init};
use clipfleet_worker::{
    DEFAULT_MANIFEST, WorkerConfig, WorkerDeps, WorkerReadiness, WorkerTelemetry, default_encoder,
    device_label, job_for_photo, load_engine, run, run_observed, submit,
};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn positional(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
        } else if arg.starts_with("--") {
            skip = true;
        } else {
            out.push(arg.clone());
        }
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let log_format = match flag(&args, "--log-format") {
        Some(text) => LogFormat::parse(&text).context("--log-format is pretty or json")?,
        None => LogFormat::Pretty,
    };
    // Logs, traces when OTEL_EXPORTER_OTLP_ENDPOINT is set, the fleet's pseudonym key; held
    // to the end so queued spans are flushed.
    let _telemetry = init(TelemetryOptions::from_env(
        "clip-worker",
        log_format,
        &std::env::vars().collect(),
    )?)?;
    tch::set_num_threads(1);
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]).await,
        Some("embedded") => embedded(&args[1..]).await,
        _ => bail!(
            "usage: clip-worker serve [--config FILE] [--manifest FILE] [--worker-id ID] [--pool NAME] [--slots N] [--log-format pretty|json]\n       clip-worker embedded PHOTO OUT.mp4 [--motion PRESET] [--manifest FILE]"
        ),
    }
}

async fn serve(args: &[String]) -> anyhow::Result<()> {
    let config = Config::load(
        flag(args, "--config").map(PathBuf::from).as_deref(),
        &clipfleet_config::env_from_process(),
    )?;
    let pool = config
        .pool(&flag(args, "--pool").unwrap_or_else(|| config.pools[0].name.to_string()))
        .context("no such pool in the config")?
        .clone();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    let worker_id = WorkerId::new(
        flag(args, "--worker-id").unwrap_or_else(|| format!("{host}.{}", std::process::id())),
    )?;
    let mut worker = WorkerConfig::new(worker_id, pool.name.clone());
    worker.device_label = device_label();
    if let Some(slots) = flag(args, "--slots") {
        worker.slots = slots.parse().context("--slots")?;
    }
    let mut options = BrokerOptions {
        prefetch: worker.broker_prefetch(),
        ..BrokerOptions::default()
    };
    if let Some(namespace) = flag(args, "--broker-namespace") {
        options.namespace = namespace;
    }
    let broker = connect(config.broker.expose(), options)
        .await
        .context("broker")?;
    broker
        .ensure_pool(
            &pool.name,
            PoolSpec {
                max_deliveries: pool.max_deliveries,
            },
        )
        .await?;
    let store = open_sealed(config.store.expose(), &config.keyring)
        .await
        .context("store")?;
    let (engine, models) = load_engine(
        &PathBuf::from(flag(args, "--manifest").unwrap_or_else(|| DEFAULT_MANIFEST.into())),
        &[format!("{}@{}", pool.model, pool.model_version)],
    )?;
    let deps = WorkerDeps {
        broker,
        store,
        engine,
        models,
        encoder: default_encoder(),
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let telemetry = WorkerTelemetry::register(&mut registry);
    if let Some(listen) = flag(args, "--listen") {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listen on {listen}"))?;
        let ops = clipfleet_telemetry::ops_router::<()>(clipfleet_telemetry::OpsState {
            registry: Arc::new(registry),
            readiness: Arc::new(WorkerReadiness::new(deps.clone(), telemetry.clone())),
        });
        tracing::info!(addr = %listener.local_addr()?, "serving /livez /readyz /metrics");
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, ops).await {
                tracing::error!(error = %err, "operations endpoint stopped");
            }
        });
    }
    let report = run_observed(deps, worker, telemetry, shutdown_signal()).await?;
    tracing::info!(?report, "drained");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[allow(clippy::print_stdout)] // the command's report
async fn embedded(args: &[String]) -> anyhow::Result<()> {
    let [photo_path, out_path] = <[String; 2]>::try_from(positional(args))
        .map_err(|_| anyhow::anyhow!("usage: clip-worker embedded PHOTO OUT.mp4"))?;
    let motion = Motion::parse(&flag(args, "--motion").unwrap_or_else(|| "zoom_in".into()));
    if motion == Motion::Unknown {
        bail!(
            "--motion is one of {}",
            Motion::KNOWN
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let started = Instant::now();
    let photo = std::fs::read(&photo_path).with_context(|| format!("read {photo_path}"))?;
    // What ingest does before storing: sniff and bound the image from its header.
    probe(&photo, &Limits::default()).map_err(|err| anyhow::anyhow!("{}: {err}", err.code()))?;
    let broker = Arc::new(InMemoryBroker::new());
    let pool = PoolName::new("default")?;
    broker.ensure_pool(&pool, PoolSpec::default()).await?;
    let store: Arc<dyn ObjectStore> = Arc::new(SealedObjectStore::new(
        Arc::new(InMemoryObjectStore::new()),
        Arc::new(LocalKeyring::ephemeral()?),
    ));
    let (engine, models) = load_engine(
        &PathBuf::from(flag(args, "--manifest").unwrap_or_else(|| DEFAULT_MANIFEST.into())),
        &["motion@1".to_owned()],
    )?;
    let spec = models
        .iter()
        .find(|m| m.name == "motion")
        .context("the manifest has no motion model")?
        .clone();
    let account = AccountId::new("embedded")?;
    let deadline = SystemTime::now() + Duration::from_secs(600);
    let job = job_for_photo(
        &account,
        &pool,
        &spec,
        &photo,
        motion,
        Timestamp::from_system_time(deadline),
    );
    let (job_id, input) = (job.job_id, ObjectKey::input(&account, job.job_id));
    submit(broker.as_ref(), store.as_ref(), &job, photo).await?;
    let mut config = WorkerConfig::new(WorkerId::new("embedded")?, pool);
    config.device_label = device_label();
    let deps = WorkerDeps {
        broker: broker.clone(),
        store: store.clone(),
        engine,
        models,
        encoder: default_encoder(),
    };
    let encoder_name = deps.encoder.name();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run(deps, config, async move {
        let _ = stopped.await;
    }));
    let (mut result, mut deleted) = (None, false);
    while result.is_none() || !deleted {
        let got = broker
            .receive(
                &QueueRef::Events,
                Receive::new(64, Duration::from_secs(60), Duration::from_secs(1)),
            )
            .await?;
        for delivery in &got {
            for event in decode::<EventBatch>(&delivery.body)?.events {
                match event.event {
                    EventKind::Succeeded { size, stages, .. } => result = Some(Ok((size, stages))),
                    EventKind::Failed {
                        code,
                        message,
                        retryable: false,
                    } => result = Some(Err(format!("{code}: {message}"))),
                    EventKind::InputDeleted => deleted = true,
                    _ => {}
                }
            }
        }
        let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
        broker.ack(&leases).await?;
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the job did not finish within 10 minutes");
        }
    }
    let _ = stop.send(());
    worker.await??;
    let photo_gone =
        matches!(store.head(&input).await, Err(err) if err.kind() == StoreErrorKind::NotFound);
    match result {
        Some(Ok((size, stages))) => {
            let video = read_to_end(
                store.get(&ObjectKey::output(&account, job_id)).await?,
                1 << 30,
            )
            .await?;
            std::fs::write(&out_path, &*video).with_context(|| format!("write {out_path}"))?;
            println!(
                "{out_path}: {size} bytes, {} frames of {}x{} at {} fps ({}, encoder {encoder_name})",
                spec.frames, spec.input.width, spec.input.height, spec.fps, motion
            );
            println!(
                "stages: fetch {} ms, inference {} ms, encode {} ms, store {} ms; total {} ms",
                stages.fetch_ms,
                stages.infer_ms,
                stages.encode_ms,
                stages.store_ms,
                started.elapsed().as_millis()
            );
            println!(
                "photo deleted from the store after generation: {}",
                if photo_gone { "yes" } else { "NO" }
            );
            if !photo_gone {
                bail!("the photo outlived its video");
            }
            Ok(())
        }
        Some(Err(reason)) => bail!(
            "job failed: {reason} (photo deleted: {})",
            if photo_gone { "yes" } else { "no" }
        ),
        None => bail!("no outcome"),
    }
}
