//! The command line of `clip-loadtest`, and the [`Options`] it makes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::options::{
    Arrivals, Checks, DEFAULT_JANITOR_EVERY, DEFAULT_RATE, EmbeddedFleet, Load, Mix, ModelChoice,
    Options, PhotoSize, SESSION_PHOTOS, Sessions, Stop, Target, WeightedModel,
};

/// The janitor's own default interval (`clip-janitor run`): what a running fleet sweeps at
/// unless told otherwise.
const REMOTE_JANITOR_EVERY: Duration = Duration::from_secs(60);

/// Load-tests a clipfleet through its ingest API, then checks the privacy invariants.
///
/// Mixing kinds: repeat --model for a weighted mix of models (video and image models alike),
/// e.g. `--model noop --model portrait=2 --model beautify`; --session-share 0.2 makes a fifth of
/// the arrivals whole personalisation sessions of --session-model (photos, training, one job
/// through the adapter, the session's end). The report adds rows per kind: video, image,
/// personalize (the training), session end.
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
    /// Model to ask for, `NAME[@VERSION][=WEIGHT]` (weight default 1, 0 for a model only the
    /// session flows use). Repeat the flag for a mix: each arrival picks one by weight, seeded
    /// by --seed. Embedded: the fleet gets one pool per model, named after it (default `noop`);
    /// otherwise the fleet must serve each already (default: its first pool's model).
    #[arg(long, value_name = "NAME[@VERSION][=WEIGHT]")]
    pub model: Vec<ModelArg>,
    /// Version of a --model (and --session-model) that names none.
    #[arg(long, default_value = "1")]
    pub model_version: String,
    /// Share of arrivals (0..=1) that are a whole session flow instead of one submission:
    /// open a session, upload 2 photos of the mix, personalize, wait for the training, submit
    /// one job through the adapter, wait, end the session.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub session_share: f64,
    /// The model whose adapter the session flows train and render through, `NAME[@VERSION]`;
    /// one of the --model list (give it weight 0 to use it only in session flows).
    #[arg(long, value_name = "NAME[@VERSION]", default_value = "portrait")]
    pub session_model: String,
    /// Accounts the jobs are spread over.
    #[arg(long, default_value_t = 4)]
    pub accounts: usize,
    /// Seed of arrivals and mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// The fleet's video TTL: embedded, what it is configured with (default 5s; a session's
    /// adapter goes with its session, never by this TTL); otherwise the running fleet's
    /// `retention.output_ttl`, which turns the TTL check on.
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
        share("session-share", self.session_share)?;
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
        let mut models: Vec<WeightedModel> = self
            .model
            .iter()
            .map(|arg| WeightedModel {
                model: ModelChoice {
                    name: arg.name.clone(),
                    version: arg
                        .version
                        .clone()
                        .unwrap_or_else(|| self.model_version.clone()),
                },
                weight: arg.weight,
            })
            .collect();
        let (target, janitor_every) = if self.embedded {
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
            if models.is_empty() {
                models.push(WeightedModel::new(ModelChoice::noop()));
            }
            (Target::Embedded(fleet), janitor_every)
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
            (target, janitor_every)
        };
        let sessions = Sessions {
            share: self.session_share,
            model: self.session_model(&models)?,
            photos: SESSION_PHOTOS,
        };
        let options = Options {
            target,
            load,
            stop,
            mix: Mix {
                sizes: self.sizes.clone(),
                png_share: self.png_share,
                bad_share: self.bad_share,
            },
            models,
            sessions,
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
        };
        options.validate()?;
        Ok(options)
    }

    /// --session-model: its version as given, else that of the listed model of its name, else
    /// --model-version.
    fn session_model(&self, models: &[WeightedModel]) -> anyhow::Result<ModelChoice> {
        anyhow::ensure!(
            !self.session_model.contains('='),
            "--session-model {} takes no weight",
            self.session_model
        );
        let arg: ModelArg = self
            .session_model
            .parse()
            .map_err(|err| anyhow::anyhow!("--session-model: {err}"))?;
        let version = arg
            .version
            .or_else(|| {
                models
                    .iter()
                    .find(|m| m.model.name == arg.name)
                    .map(|m| m.model.version.clone())
            })
            .unwrap_or_else(|| self.model_version.clone());
        Ok(ModelChoice {
            name: arg.name,
            version,
        })
    }
}

/// One --model: `NAME[@VERSION][=WEIGHT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelArg {
    /// The manifest's name.
    pub name: String,
    /// The version, when given (else --model-version).
    pub version: Option<String>,
    /// Its weight in the mix: finite, at least 0; 1 unless given.
    pub weight: f64,
}

impl std::str::FromStr for ModelArg {
    type Err = String;

    fn from_str(text: &str) -> Result<ModelArg, String> {
        let (model, weight) = match text.rsplit_once('=') {
            Some((model, weight)) => {
                let weight: f64 = weight
                    .trim()
                    .parse()
                    .ok()
                    .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                    .ok_or_else(|| {
                        format!("weight {weight:?} in {text:?} is not a number of at least 0")
                    })?;
                (model, weight)
            }
            None => (text, 1.0),
        };
        let (name, version) = match model.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (model, None),
        };
        let part = |what: &str, value: &str| {
            if value.is_empty()
                || value
                    .chars()
                    .any(|c| c.is_whitespace() || "=@,".contains(c))
            {
                Err(format!(
                    "{what} {value:?} in {text:?} is not a model {what} (NAME[@VERSION][=WEIGHT])"
                ))
            } else {
                Ok(value.to_owned())
            }
        };
        Ok(ModelArg {
            name: part("name", name)?,
            version: version.map(|v| part("version", v)).transpose()?,
            weight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(text: &str) -> Result<ModelArg, String> {
        text.parse()
    }

    #[test]
    fn model_args_parse_name_version_and_weight() {
        let plain = arg("noop").expect("parses");
        assert_eq!(
            (plain.name.as_str(), plain.version, plain.weight),
            ("noop", None, 1.0)
        );
        let full = arg("rife@3.9=2.5").expect("parses");
        assert_eq!(
            (full.name.as_str(), full.version.as_deref(), full.weight),
            ("rife", Some("3.9"), 2.5)
        );
        assert_eq!(arg("portrait=0").map(|a| a.weight), Ok(0.0));
        for bad in [
            "", "=2", "a=", "a=-1", "a=x", "a=inf", "a=NaN", "@1", "a@", "a b", "a,b", "a@1@2",
        ] {
            assert!(arg(bad).is_err(), "{bad:?} parsed");
        }
    }
}
