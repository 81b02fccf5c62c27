//! The command line of `clip-loadtest`, and the [`Options`] it makes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::options::{
    Arrivals, Checks, DEFAULT_JANITOR_EVERY, DEFAULT_RATE, EmbeddedFleet, Load, Mix, ModelChoice,
    Options, PhotoSize, Stop, Target,
};

/// The janitor's own default interval (`clip-janitor run`): what a running fleet sweeps at
/// unless told otherwise.
const REMOTE_JANITOR_EVERY: Duration = Duration::from_secs(60);

/// Load-tests a clipfleet through its ingest API, then checks the privacy invariants.
///
/// Exit codes: 0 passed; 1 could not run; 2 usage; 3 an invariant was violated; 4 more
/// unexpected errors than --max-error-share allows.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(name = "clip-loadtest", version)]
pub struct Cli {
    /// Start a fleet in this process (in-memory backends) and test it.
    #[arg(long, conflicts_with = "ingest", required_unless_present = "ingest")]
    pub embedded: bool,
    /// Ingest of a running fleet (`http://host:port`).
    #[arg(long, value_name = "URL", env = "CLIPFLEET_LOADTEST_INGEST")]
    pub ingest: Option<String>,
    /// Service token for --ingest (default: the development fleet's token).
    #[arg(long, env = "CLIPFLEET_LOADTEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Open loop: submissions per second, started on schedule whatever the answers
    /// (default 5 unless --concurrency: about what the embedded fleet sustains on two cores).
    #[arg(long, value_name = "PER_S", conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Spacing of open-loop arrivals.
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrivals: Arrivals,
    /// Closed loop: this many submissions in flight, each waiting for its job to end.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Find the rate the fleet sustains instead of one run: open-loop steps from --rate (default
    /// 2/s) up ×1.5 until the fleet falls behind, two bisection steps, then a run at 80 % of the
    /// rate found, whose latency is reported beside it.
    #[arg(long, conflicts_with_all = ["concurrency", "jobs", "duration"])]
    pub saturation: bool,
    /// How long each step of --saturation submits.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    pub step: Duration,
    /// Stop after this many submissions (default 200 unless --duration).
    #[arg(long, value_name = "N")]
    pub jobs: Option<u64>,
    /// Stop submitting after this long (`90s`, `10m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Photo sizes of the mix, picked with equal weight.
    #[arg(
        long,
        value_name = "WxH,…",
        value_delimiter = ',',
        default_value = "320x240,640x480,1024x768"
    )]
    pub sizes: Vec<PhotoSize>,
    /// Share of photos sent as PNG (the rest JPEG).
    #[arg(long, default_value_t = 0.25)]
    pub png_share: f64,
    /// Share of bad inputs (truncated JPEG, not an image); their refusals are expected.
    #[arg(long, default_value_t = 0.05)]
    pub bad_share: f64,
    /// Model to ask for (default: `noop` embedded; the fleet's first pool otherwise).
    #[arg(long)]
    pub model: Option<String>,
    /// Version of --model.
    #[arg(long, default_value = "1")]
    pub model_version: String,
    /// Accounts the jobs are spread over.
    #[arg(long, default_value_t = 4)]
    pub accounts: usize,
    /// Seed of arrivals and mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// The fleet's video TTL: embedded, what it is configured with (default 5s); otherwise the
    /// running fleet's `retention.output_ttl`, which turns the TTL check on.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// The janitor's sweep interval (default 1s embedded, 60s otherwise).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub janitor_every: Option<Duration>,
    /// Embedded: run no janitor (videos outlive their TTL: the check must fail).
    #[arg(long, conflicts_with = "ingest")]
    pub no_janitor: bool,
    /// Embedded: workers per pool (default 1).
    #[arg(long, conflicts_with = "ingest")]
    pub workers: Option<usize>,
    /// Embedded: jobs each worker holds at once (default 16).
    #[arg(long, conflicts_with = "ingest")]
    pub slots: Option<usize>,
    /// Embedded: config file instead of the embedded default (CLIPFLEET_* overrides apply).
    #[arg(long, conflicts_with = "ingest")]
    pub config: Option<PathBuf>,

    /// How long an accepted job may take to end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    pub terminal_timeout: Duration,
    /// How long after a job ended its photo may still show as stored.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub photo_grace: Duration,
    /// Longest gap between two status polls of one job.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub poll_max: Duration,
    /// Share of submissions that may end in an unexpected error before the run fails.
    #[arg(long, default_value_t = 0.0)]
    pub max_error_share: f64,

    /// Write the JSON report here.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Write the SVG plot (throughput and latency over time) here.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
    /// Width of a time bucket of the timeline.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub bucket: Duration,
}

impl Cli {
    /// The run these flags ask for; `env` holds the `CLIPFLEET_*` overrides an embedded fleet's
    /// config starts from (the process environment, in `main`).
    pub fn options(&self, env: BTreeMap<String, String>) -> anyhow::Result<Options> {
        let share = |name: &str, value: f64| {
            anyhow::ensure!(
                (0.0..=1.0).contains(&value),
                "--{name} {value} is not within 0..=1"
            );
            Ok(())
        };
        share("png-share", self.png_share)?;
        share("bad-share", self.bad_share)?;
        share("max-error-share", self.max_error_share)?;
        let load = match (self.rate, self.concurrency) {
            (_, Some(0)) => anyhow::bail!("--concurrency must be at least 1"),
            (_, Some(n)) => Load::Concurrency(n),
            (Some(rate), None) if !(rate.is_finite() && rate > 0.0) => {
                anyhow::bail!("--rate {rate} is not a positive rate")
            }
            (rate, None) => Load::Rate {
                per_second: rate.unwrap_or(DEFAULT_RATE),
                arrivals: self.arrivals,
            },
        };
        let stop = match (self.jobs, self.duration) {
            (None, None) => Stop {
                jobs: Some(200),
                duration: None,
            },
            (jobs, duration) => Stop { jobs, duration },
        };
        let model = |name: &str| ModelChoice {
            name: name.to_owned(),
            version: self.model_version.clone(),
        };
        let (target, model, janitor_every) = if self.embedded {
            let fleet = EmbeddedFleet {
                config: self.config.clone(),
                env,
                output_ttl: self.ttl.unwrap_or(EmbeddedFleet::default().output_ttl),
                janitor_every: (!self.no_janitor)
                    .then(|| self.janitor_every.unwrap_or(DEFAULT_JANITOR_EVERY)),
                workers: self.workers.unwrap_or(1),
                slots: self.slots.unwrap_or(16),
            };
            let janitor_every = fleet.janitor_every.unwrap_or(DEFAULT_JANITOR_EVERY);
            let model = model(self.model.as_deref().unwrap_or("noop"));
            (Target::Embedded(fleet), Some(model), janitor_every)
        } else {
            let ingest = self
                .ingest
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--embedded or --ingest URL is needed"))?;
            let target = Target::Remote {
                ingest,
                token: self
                    .token
                    .clone()
                    .unwrap_or_else(|| clipfleet_fleet::DEV_TOKEN.to_owned()),
            };
            let janitor_every = self.janitor_every.unwrap_or(REMOTE_JANITOR_EVERY);
            (target, self.model.as_deref().map(model), janitor_every)
        };
        Ok(Options {
            target,
            load,
            stop,
            mix: Mix {
                sizes: self.sizes.clone(),
                png_share: self.png_share,
                bad_share: self.bad_share,
            },
            model,
            accounts: self.accounts.max(1),
            seed: self.seed,
            checks: Checks {
                terminal_timeout: self.terminal_timeout,
                photo_grace: self.photo_grace,
                output_ttl: self.ttl,
                janitor_interval: janitor_every,
                poll_max: self.poll_max,
                max_error_share: self.max_error_share,
            },
            bucket: self.bucket,
        })
    }
}
