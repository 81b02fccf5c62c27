//! `clip-janitor`: the retention engine's command line. `plan` prints what a sweep would delete
//! (nothing is deleted), `run` sweeps once or at an interval, `lifecycle` prints the S3
//! lifecycle rules that back the janitor up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use clipfleet_config::{Config, Scheme, env_from_process};
use clipfleet_janitor::{Janitor, Policy, RunOptions, SweepOutcome, lifecycle_configuration, run};
use clipfleet_telemetry::{LogFormat, TelemetryOptions, init};
use tokio::net::TcpListener;

/// clipfleet's retention engine.
#[derive(Debug, Parser, PartialEq, Eq)]
#[command(name = "clip-janitor", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand, PartialEq, Eq)]
enum Command {
    /// Prints what a sweep would delete now, by rule; deletes nothing.
    Plan {
        /// The fleet's config file (default: the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Sweeps: once, or at an interval until SIGTERM or Ctrl-C (checked between sweeps).
    Run {
        /// The fleet's config file (default: the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// One sweep, then exit (non-zero if it could not run).
        #[arg(long)]
        once: bool,
        /// Pause between sweeps.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Where to serve /livez, /readyz and /metrics.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Prints the S3 lifecycle configuration (JSON) backing the janitor up.
    Lifecycle {
        /// The fleet's config file (default: the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Config::load(path.map(PathBuf::as_path), &env_from_process()).context("load config")
}

#[allow(clippy::print_stdout)] // a CLI: its results go to stdout
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs, traces when OTEL_EXPORTER_OTLP_ENDPOINT is set, the fleet's pseudonym key; held
    // to the end so queued spans are flushed.
    let _telemetry = init(TelemetryOptions::from_env(
        "clip-janitor",
        LogFormat::Pretty,
        &std::env::vars().collect(),
    )?)?;
    match cli.command {
        Command::Plan { config, output } => {
            let config = load(config.as_ref())?;
            let janitor = Janitor::open(&config).await.context("open janitor")?;
            let summary = janitor.plan().await.context("plan")?.summary();
            match output {
                Output::Text => print!("{}", summary.to_text()),
                Output::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
            }
        }
        Command::Run {
            config,
            once,
            interval,
            listen,
        } => {
            let config = load(config.as_ref())?;
            let janitor = Arc::new(Janitor::open(&config).await.context("open janitor")?);
            let listener = match listen {
                Some(addr) => Some(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("listen on {addr}"))?,
                ),
                None => None,
            };
            let outcome = run(
                janitor,
                RunOptions { interval, once },
                listener,
                shutdown_signal(),
            )
            .await
            .context("run")?;
            if once {
                match outcome {
                    Some(SweepOutcome::Swept(report)) => println!(
                        "swept: {} deleted, {} accounts purged, {} failures",
                        report.total_deleted(),
                        report.accounts_purged,
                        report.failures
                    ),
                    Some(SweepOutcome::NotLeader) => {
                        println!("another janitor leads: nothing done")
                    }
                    None => {}
                }
            }
        }
        Command::Lifecycle { config } => {
            let config = load(config.as_ref())?;
            let prefix = store_prefix(&config)?;
            let lifecycle =
                lifecycle_configuration(&Policy::from_config(&config.retention), &prefix);
            println!("{}", serde_json::to_string_pretty(&lifecycle)?);
        }
    }
    Ok(())
}

/// The key prefix of an `s3://bucket/prefix` store (empty for other stores: the rules then
/// apply to a bucket the operator names).
fn store_prefix(config: &Config) -> anyhow::Result<String> {
    if config.store.scheme() != Scheme::S3 {
        tracing::warn!("the store is not s3: rules are printed without a store prefix");
        return Ok(String::new());
    }
    let rest = config.store.expose().trim_start_matches("s3://");
    let prefix = rest
        .split_once('/')
        .map_or("", |(_, prefix)| prefix)
        .trim_end_matches('/');
    Ok(if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    })
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let cli = Cli::try_parse_from(["clip-janitor", "plan", "--output", "json"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Plan {
                config: None,
                output: Output::Json
            }
        );
        let cli = Cli::try_parse_from([
            "clip-janitor",
            "run",
            "--interval",
            "5m",
            "--listen",
            "127.0.0.1:9090",
            "--config",
            "f.toml",
        ])
        .unwrap();
        assert_eq!(
            cli.command,
            Command::Run {
                config: Some(PathBuf::from("f.toml")),
                once: false,
                interval: Duration::from_secs(300),
                listen: Some("127.0.0.1:9090".parse().unwrap()),
            }
        );
        let cli = Cli::try_parse_from(["clip-janitor", "run", "--once"]).unwrap();
        assert!(
            matches!(cli.command, Command::Run { once: true, interval, .. } if interval == Duration::from_secs(60))
        );
        assert!(Cli::try_parse_from(["clip-janitor", "run", "--interval", "soon"]).is_err());
        assert!(Cli::try_parse_from(["clip-janitor", "lifecycle"]).is_ok());
    }

    #[test]
    fn store_prefixes_come_from_the_url() {
        let mut env = std::collections::BTreeMap::new();
        env.insert(
            "CLIPFLEET_STORE__URL".to_owned(),
            "s3://media/prod/eu/".to_owned(),
        );
        let config = Config::embedded(&env).unwrap();
        assert_eq!(store_prefix(&config).unwrap(), "prod/eu/");
        let config = Config::embedded(&Default::default()).unwrap();
        assert_eq!(store_prefix(&config).unwrap(), "");
    }
}
