//! `clip-chaos`: the chaos campaign of `clip-loadtest` (module `chaos`). Starts a fleet of
//! processes on services of its own, drives the load test's mix at it while it kills, restarts
//! and cuts off its parts on a printed schedule, then audits the ledger, the store and the dead
//! letters job by job. Exit codes are the load test's: 0 passed, 1 could not run, 2 usage,
//! 3 an invariant was violated, 4 too many unexpected errors.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clipfleet_loadtest::chaos::{self, ChaosOptions, ChaosReport, FaultSet, FleetSpec};
use clipfleet_loadtest::{
    Arrivals, Checks, Exit, Load, Mix, ModelChoice, Options, PhotoSize, Sessions, Stop, Target,
    WeightedModel,
};

/// Runs the fleet of processes under compound faults and checks that nothing was lost.
///
/// Needs the fleet's binaries beside it (`cargo build --workspace --all-features --bins`),
/// RabbitMQ installed (a node of the run's own is started), PostgreSQL and the S3 emulator
/// running (`scripts/services.sh start`, `eval "$(scripts/emulator.sh env)"`).
#[derive(Debug, Parser)]
#[command(name = "clip-chaos", version)]
struct Cli {
    /// Submissions in all.
    #[arg(long, default_value_t = 200)]
    jobs: u64,
    /// Open-loop submissions per second (Poisson arrivals).
    #[arg(long, default_value_t = 4.0)]
    rate: f64,
    /// Workers kept running (killed ones are replaced).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Jobs each worker holds at once.
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// SIGKILL a random worker this often (`0s`: never).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "8s")]
    kill_every: Duration,
    /// How long the store and PostgreSQL outages last.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    outage: Duration,
    /// No faults at all (the baseline).
    #[arg(long, conflicts_with = "baseline")]
    no_faults: bool,
    /// Run the same load without faults first, on a fresh fleet, and report both side by side.
    #[arg(long)]
    baseline: bool,
    /// Photo sizes of the mix.
    #[arg(long, value_delimiter = ',', default_value = "160x120,320x240,640x480")]
    sizes: Vec<PhotoSize>,
    /// Share of photos sent as PNG.
    #[arg(long, default_value_t = 0.25)]
    png_share: f64,
    /// Share of bad inputs (refused with a known code).
    #[arg(long, default_value_t = 0.05)]
    bad_share: f64,
    /// Model the pool serves.
    #[arg(long, default_value = "noop")]
    model: String,
    /// Its version.
    #[arg(long, default_value = "1")]
    model_version: String,
    /// Share of arrivals that are whole personalisation sessions (create, upload, train, a job
    /// through the adapter, end) on a second pool serving --session-model; the audit then checks
    /// that nothing of any session is left but its end marker.
    #[arg(long, default_value_t = 0.0)]
    session_share: f64,
    /// The model sessions train and render (name, or name@version).
    #[arg(long, default_value = "portrait")]
    session_model: String,
    /// Workers kept running for the session pool (killed and drained like the others).
    #[arg(long, default_value_t = 1)]
    session_workers: usize,
    /// Seed of arrivals, mix and faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of submissions that may end in an unexpected error (a refusal or a transport
    /// error while a part is down is what faults do; the invariants are what must hold).
    #[arg(long, default_value_t = 0.25)]
    max_error_share: f64,
    /// How long an accepted job may take to end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    terminal_timeout: Duration,
    /// The janitor's sweep interval.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    janitor_every: Duration,
    /// `retention.orphan_grace` of the fleet: a photo of no job older than this is the janitor's.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    orphan_grace: Duration,
    /// Where the fleet's binaries are (default: beside this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the processes' logs and the run's config go (default: a new temporary directory).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Model manifest for the workers (default: theirs).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the SVG timeline (faults marked) here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

impl Cli {
    fn options(&self, faults: FaultSet, run_dir: PathBuf) -> anyhow::Result<ChaosOptions> {
        anyhow::ensure!(
            self.rate.is_finite() && self.rate > 0.0,
            "--rate must be positive"
        );
        anyhow::ensure!(self.workers > 0, "--workers must be at least 1");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.session_share),
            "--session-share must be within 0..=1"
        );
        let sessions = self.session_share > 0.0;
        anyhow::ensure!(
            !sessions || self.session_workers > 0,
            "--session-workers must be at least 1 with a --session-share"
        );
        let session_model = match self.session_model.split_once('@') {
            Some((name, version)) => ModelChoice {
                name: name.into(),
                version: version.into(),
            },
            None => ModelChoice {
                name: self.session_model.clone(),
                version: "1".into(),
            },
        };
        let mut models = vec![WeightedModel::new(ModelChoice {
            name: self.model.clone(),
            version: self.model_version.clone(),
        })];
        if sessions {
            // Only session flows submit to it: weight 0.
            models.push(WeightedModel {
                model: session_model.clone(),
                weight: 0.0,
            });
        }
        let bin_dir = match &self.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("this binary's directory")?
                .to_path_buf(),
        };
        let load = Options {
            target: Target::Remote {
                ingest: String::new(),
                token: String::new(),
            },
            load: Load::Rate {
                per_second: self.rate,
                arrivals: Arrivals::Poisson,
            },
            stop: Stop {
                jobs: Some(self.jobs),
                duration: None,
            },
            mix: Mix {
                sizes: self.sizes.clone(),
                png_share: self.png_share,
                bad_share: self.bad_share,
            },
            models,
            sessions: Sessions {
                share: self.session_share,
                model: session_model.clone(),
                ..Sessions::default()
            },
            accounts: 4,
            seed: self.seed,
            checks: Checks {
                terminal_timeout: self.terminal_timeout,
                output_ttl: None,
                janitor_interval: self.janitor_every,
                max_error_share: self.max_error_share,
                ..Checks::default()
            },
            bucket: Duration::from_secs(1),
        };
        Ok(ChaosOptions {
            load,
            fleet: FleetSpec {
                bin_dir,
                run_dir,
                workers: self.workers,
                slots: self.slots,
                model: self.model.clone(),
                model_version: self.model_version.clone(),
                janitor_every: self.janitor_every,
                orphan_grace: self.orphan_grace,
                output_ttl: Duration::from_secs(3600),
                manifest: self.manifest.clone(),
                session_model: sessions.then_some((session_model.name, session_model.version)),
                session_workers: self.session_workers,
            },
            faults,
        })
    }

    fn faults(&self) -> FaultSet {
        if self.no_faults {
            return FaultSet::none();
        }
        let mut set = FaultSet::all(self.kill_every);
        set.kill_worker_every = (!self.kill_every.is_zero()).then_some(self.kill_every);
        set.outage = self.outage;
        set.kill_session_worker = self.session_share > 0.0;
        set
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    clipfleet_loadtest::init_logging();
    match campaign(&cli).await {
        Ok(code) => code,
        Err(err) => {
            #[allow(clippy::print_stderr)] // the command's error
            {
                eprintln!("clip-chaos: {err:#}");
            }
            ExitCode::from(Exit::Setup.code())
        }
    }
}

async fn campaign(cli: &Cli) -> anyhow::Result<ExitCode> {
    let run_dir = cli.run_dir.clone().unwrap_or_else(chaos::default_run_dir);
    let baseline = if cli.baseline {
        let options = cli.options(FaultSet::none(), run_dir.join("baseline"))?;
        Some(chaos::run(options).await?)
    } else {
        None
    };
    let options = cli.options(cli.faults(), run_dir.join("campaign"))?;
    let report = chaos::run(options).await?;
    if let Some(path) = &cli.report {
        let json = serde_json::json!({ "campaign": report, "baseline": baseline });
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &cli.svg {
        std::fs::write(path, chaos::render_svg(&report))
            .with_context(|| format!("write {}", path.display()))?;
    }
    print_out(&report, baseline.as_ref(), &run_dir);
    let failed = [Some(&report), baseline.as_ref()]
        .into_iter()
        .flatten()
        .map(|r| r.exit)
        .find(|exit| *exit != Exit::Passed);
    Ok(ExitCode::from(failed.unwrap_or(Exit::Passed).code()))
}

#[allow(clippy::print_stdout)] // the command's result
fn print_out(report: &ChaosReport, baseline: Option<&ChaosReport>, run_dir: &std::path::Path) {
    if let Some(baseline) = baseline {
        println!("=== baseline (no faults)\n{}", baseline.table());
        println!("=== campaign\n");
    }
    print!("{}", report.table());
    if let Some(baseline) = baseline {
        let row = |name: &str, r: &ChaosReport| {
            let (s, e) = (&r.load.latency.submit, &r.load.latency.end_to_end);
            format!(
                "  {name:<10}{:>10}{:>10}{:>12.1}{:>12.1}{:>12.1}{:>12.1}",
                r.load.counts.accepted,
                r.load.counts.succeeded,
                s.p50_ms,
                s.p99_ms,
                e.p50_ms,
                e.p99_ms
            )
        };
        println!(
            "\n  {:<10}{:>10}{:>10}{:>12}{:>12}{:>12}{:>12}",
            "", "accepted", "succeeded", "submit p50", "submit p99", "e2e p50", "e2e p99"
        );
        println!("{}", row("baseline", baseline));
        println!("{}", row("faults", report));
    }
    println!("logs and config: {}", run_dir.display());
}
