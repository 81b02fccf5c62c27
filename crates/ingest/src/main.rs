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
    /// MiB of photos held in memory at once over every upload; an upload waits for room before
    /// reading its photo. Raise it where many clients upload slowly.
    #[arg(long, env = "CLIPFLEET_UPLOAD_BUFFER_MIB", default_value_t = 4)]
    upload_buffer_mib: usize,
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    LogFormat::parse(text).ok_or_else(|| format!("{text:?} is not pretty or json"))
}

fn main() -> anyhow::Result<()> {
    tune_malloc();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(clipfleet_ingest::MAX_BLOCKING_THREADS)
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

/// glibc's allocator, set for a process whose memory is mostly upload buffers of a few hundred
/// KB, before any thread starts: one arena (per-thread arenas each kept the freed buffers of
/// their own threads: two held ~40 MB at 100 concurrent uploads), and buffers of 128 KiB and up
/// always mapped and unmapped (glibc's sliding threshold otherwise moves them onto the heap
/// after the first is freed). Measured with the ingest bench at 100 concurrent 232 KB uploads
/// on PostgreSQL and RabbitMQ, with an 8 MiB upload budget: peak RSS 75-79 MiB before, 63-64
/// after (with a 4 MiB budget 58). An operator's `MALLOC_ARENA_MAX` / `MALLOC_MMAP_THRESHOLD_` win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_malloc() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets allocator parameters; called first thing in main, before
        // any other thread exists.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: as above.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

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
    ingest_options.upload_buffer_bytes = args.upload_buffer_mib.saturating_mul(1 << 20);
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
