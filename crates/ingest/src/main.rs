//! `clip-ingest serve`: the ingest API and the event consumer, configured by the fleet's config
//! file (or the embedded default) and `CLIPFLEET_*` overrides.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clipfleet_broker::{BrokerOptions, connect};
use clipfleet_config::Config;
use clipfleet_ingest::{Ingest, IngestDeps, IngestOptions};
use clipfleet_ledger::Ledger;
use clipfleet_models::Manifest;
use clipfleet_store::open_sealed;
use clipfleet_telemetry::{LogFormat, TelemetryOptions, init};

#[derive(Debug, Parser)]
#[command(name = "clip-ingest", version, about = "clipfleet's ingest API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The fleet's config file; the embedded default when absent.
    #[arg(long, env = "CLIPFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// Where to listen (API, /livez, /readyz, /metrics).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The model manifest; the one built in when absent.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Broker namespace (exchange and queue prefix).
    #[arg(long, default_value = "clip")]
    broker_namespace: String,
    /// Take client addresses from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long)]
    trust_forwarded_for: bool,
    /// Log format: pretty or json.
    #[arg(long, default_value = "pretty", value_parser = parse_log_format)]
    log_format: LogFormat,
    /// Print the bound address on stdout once listening (for scripts using port 0).
    #[arg(long)]
    print_addr: bool,
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    LogFormat::parse(text).ok_or_else(|| format!("{text:?} is not pretty or json"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(clipfleet_ingest::MAX_BLOCKING_THREADS)
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

#[allow(clippy::print_stdout)] // --print-addr
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Logs, traces when OTEL_EXPORTER_OTLP_ENDPOINT is set, the fleet's pseudonym key; held
    // to the end so queued spans are flushed.
    let _telemetry = init(TelemetryOptions::from_env(
        "clip-ingest",
        args.log_format,
        &std::env::vars().collect(),
    )?)?;
    let config = Arc::new(Config::load(
        args.config.as_deref(),
        &clipfleet_config::env_from_process(),
    )?);
    let manifest = match &args.manifest {
        Some(path) => Manifest::load(path)?,
        None => Manifest::embedded(PathBuf::from("models"))?,
    };
    let options = BrokerOptions {
        namespace: args.broker_namespace.clone(),
        ..BrokerOptions::default()
    };
    let broker = connect(config.broker.expose(), options)
        .await
        .context("broker")?;
    let store = open_sealed(config.store.expose(), &config.keyring)
        .await
        .context("store")?;
    let ledger = Ledger::connect(config.ledger.expose())
        .await
        .context("ledger")?;
    ledger.migrate().await.context("ledger migrations")?;
    let mut ingest_options = IngestOptions::default();
    ingest_options.trust_forwarded_for = args.trust_forwarded_for;
    let ingest = Ingest::new(
        config,
        IngestDeps {
            broker,
            store,
            ledger,
            manifest,
        },
        ingest_options,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "ingest listening");
    if args.print_addr {
        println!("{bound}");
    }
    ingest.serve(listener, shutdown_signal()).await
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
