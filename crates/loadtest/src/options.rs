//! What one load test does: where the fleet is, how load arrives, what it sends, when it stops,
//! and how the invariants are checked. Plain data: the CLI builds it (`crate::cli`), tests build
//! it directly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// One load test.
#[derive(Debug, Clone)]
pub struct Options {
    /// The fleet under test.
    pub target: Target,
    /// How submissions arrive.
    pub load: Load,
    /// When the test stops submitting.
    pub stop: Stop,
    /// What is submitted.
    pub mix: Mix,
    /// The models submissions ask for, each arrival picking one by weight (seeded, see
    /// `crate::plan`); empty: whatever the fleet's first pool serves. An embedded fleet gets one
    /// pool per model; a remote fleet must serve each already.
    pub models: Vec<WeightedModel>,
    /// The share of arrivals that are a whole personalisation session instead of one
    /// submission, and how such a session goes.
    pub sessions: Sessions,
    /// Accounts the jobs are spread over (round robin): more than one, so per-account paths in
    /// the store and the ledger are exercised as in production.
    pub accounts: usize,
    /// Seed of the arrival times and of the input mix, so a run can be repeated.
    pub seed: u64,
    /// How the invariants are checked at the end.
    pub checks: Checks,
    /// Width of one time bucket of the timeline (SVG plot, JSON report).
    pub bucket: Duration,
}

impl Options {
    /// An embedded fleet serving `noop`, open loop at 5 jobs/s, 200 jobs, 5 % bad inputs,
    /// a 5 s video TTL swept every second.
    pub fn embedded_defaults() -> Options {
        let fleet = EmbeddedFleet::default();
        Options {
            checks: Checks {
                output_ttl: Some(fleet.output_ttl),
                janitor_interval: fleet.janitor_every.unwrap_or(DEFAULT_JANITOR_EVERY),
                ..Checks::default()
            },
            target: Target::Embedded(fleet),
            load: Load::Rate {
                per_second: DEFAULT_RATE,
                arrivals: Arrivals::Poisson,
            },
            stop: Stop {
                jobs: Some(200),
                duration: None,
            },
            mix: Mix::default(),
            models: vec![WeightedModel::new(ModelChoice::noop())],
            sessions: Sessions::default(),
            accounts: 4,
            seed: 1,
            bucket: Duration::from_secs(1),
        }
    }

    /// Checks the models and the session flows fit together: each model listed once, weights
    /// that leave something to submit, a session share of 0..=1 whose model is one of the run's
    /// (so a pool serves it; a run that names no model leaves that to the fleet), at least one
    /// photo per session.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (index, weighted) in self.models.iter().enumerate() {
            anyhow::ensure!(
                !self.models[..index]
                    .iter()
                    .any(|other| other.model == weighted.model),
                "model {} is listed twice",
                weighted.model
            );
        }
        crate::plan::Plan::new(&self.models, self.sessions.share, self.seed)?;
        if self.sessions.share > 0.0 {
            anyhow::ensure!(
                self.sessions.photos > 0,
                "a session flow needs at least one photo"
            );
            let model = &self.sessions.model;
            anyhow::ensure!(
                self.models.is_empty() || self.models.iter().any(|m| m.model == *model),
                "the session model {model} is not among the run's models ({}): add it (weight 0 \
                 to use it only in session flows) so that a pool serves it",
                self.models
                    .iter()
                    .map(|m| m.model.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(())
    }
}

/// Open-loop submissions per second unless told otherwise.
pub const DEFAULT_RATE: f64 = 5.0;

/// The janitor interval of an embedded fleet unless told otherwise: short, so the TTL check at
/// the end waits little.
pub const DEFAULT_JANITOR_EVERY: Duration = Duration::from_secs(1);

/// The fleet under test.
#[derive(Debug, Clone)]
pub enum Target {
    /// A fleet started in this process on a loopback port.
    Embedded(EmbeddedFleet),
    /// A running fleet's ingest.
    Remote {
        /// `http://host:port` of ingest.
        ingest: String,
        /// The service token ingest expects.
        token: String,
    },
}

/// How the in-process fleet is made.
#[derive(Debug, Clone)]
pub struct EmbeddedFleet {
    /// A config file; `None`: the embedded default (in-memory broker and store, SQLite).
    pub config: Option<PathBuf>,
    /// `CLIPFLEET_*` overrides applied under the ones below (from the process environment).
    pub env: BTreeMap<String, String>,
    /// `retention.output_ttl`: short, so the TTL invariant is checked within the test.
    pub output_ttl: Duration,
    /// Janitor sweep interval; `None` runs no janitor (videos then outlive their TTL: a way to
    /// see the checker fail).
    pub janitor_every: Option<Duration>,
    /// Workers per pool.
    pub workers: usize,
    /// Jobs each worker holds at once.
    pub slots: usize,
}

impl Default for EmbeddedFleet {
    fn default() -> EmbeddedFleet {
        EmbeddedFleet {
            config: None,
            env: BTreeMap::new(),
            output_ttl: Duration::from_secs(5),
            janitor_every: Some(DEFAULT_JANITOR_EVERY),
            workers: 1,
            slots: 16,
        }
    }
}

/// A model by name and version, as the submit params name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoice {
    /// Name in the manifest (`noop`, `cost`, `motion`).
    pub name: String,
    /// Version in the manifest.
    pub version: String,
}

impl ModelChoice {
    /// The manifest's dispatch-overhead model: the fleet's own costs, not the model's.
    pub fn noop() -> ModelChoice {
        ModelChoice {
            name: "noop".into(),
            version: "1".into(),
        }
    }
}

impl std::fmt::Display for ModelChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A model of the run and how often an arrival asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedModel {
    /// The model.
    pub model: ModelChoice,
    /// Its weight among the run's models (finite, at least 0; 0: a model only session flows
    /// use, which still gets its pool).
    pub weight: f64,
}

impl WeightedModel {
    /// `model` at weight 1.
    pub fn new(model: ModelChoice) -> WeightedModel {
        WeightedModel { model, weight: 1.0 }
    }
}

/// Photos uploaded to each session of a session flow.
pub const SESSION_PHOTOS: usize = 2;

/// Session flows: a share of arrivals that each open a personalisation session, upload photos,
/// train the session's adapter, render one job through it and end the session.
#[derive(Debug, Clone, PartialEq)]
pub struct Sessions {
    /// Share of arrivals that are a session flow (0..=1).
    pub share: f64,
    /// The model whose adapter is trained and whose job renders through it (one of the run's
    /// models, so that a pool serves it).
    pub model: ModelChoice,
    /// Photos uploaded before the training (valid photos of the mix).
    pub photos: usize,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            share: 0.0,
            model: ModelChoice {
                name: "portrait".into(),
                version: "1".into(),
            },
            photos: SESSION_PHOTOS,
        }
    }
}

/// How submissions arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Open loop: submissions start on a schedule whatever the answers, and latency counts from
    /// the scheduled start, so a slow fleet cannot hide its latency by slowing the client.
    Rate {
        /// Target submissions per second.
        per_second: f64,
        /// Spacing of the arrivals.
        arrivals: Arrivals,
    },
    /// Closed loop: this many submissions in flight, each waiting for its job to end.
    Concurrency(usize),
}

/// Spacing of open-loop arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process): how independent users arrive.
    Poisson,
    /// Equal gaps.
    Uniform,
}

/// When submitting stops: at whichever comes first (at least one is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stop {
    /// After this many submissions.
    pub jobs: Option<u64>,
    /// After this long.
    pub duration: Option<Duration>,
}

/// A photo size of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoSize {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

impl std::str::FromStr for PhotoSize {
    type Err = String;

    /// `WIDTHxHEIGHT`, each 16..=8192.
    fn from_str(text: &str) -> Result<PhotoSize, String> {
        let (width, height) = text
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT"))?;
        let side = |s: &str| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|v| (16..=8192).contains(v))
                .ok_or_else(|| format!("{s:?} in {text:?} is not a side of 16..=8192 pixels"))
        };
        Ok(PhotoSize {
            width: side(width)?,
            height: side(height)?,
        })
    }
}

impl std::fmt::Display for PhotoSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// What is submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Photo sizes, picked with equal weight.
    pub sizes: Vec<PhotoSize>,
    /// Share of good photos sent as PNG (the rest JPEG).
    pub png_share: f64,
    /// Share of bad inputs (truncated JPEG, not an image): refused with a known code, which
    /// counts as an expected rejection.
    pub bad_share: f64,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            sizes: vec![
                PhotoSize {
                    width: 320,
                    height: 240,
                },
                PhotoSize {
                    width: 640,
                    height: 480,
                },
                PhotoSize {
                    width: 1024,
                    height: 768,
                },
            ],
            png_share: 0.25,
            bad_share: 0.05,
        }
    }
}

/// How the invariants are checked at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Checks {
    /// How long an accepted job may take to end before it counts as stuck.
    pub terminal_timeout: Duration,
    /// How long after a job ended its photo may still be in the store (the worker deletes it
    /// right after the video; the ledger hears of it by event).
    pub photo_grace: Duration,
    /// The fleet's `retention.output_ttl`; `None` skips the TTL check (a remote fleet's TTL is
    /// usually a day: configure a short one there to check it).
    pub output_ttl: Option<Duration>,
    /// The fleet's janitor interval: a video may outlive its TTL by up to one sweep.
    pub janitor_interval: Duration,
    /// Longest gap between two polls of one job's status (polls start at 100 ms and double).
    pub poll_max: Duration,
    /// Share of submissions that may end in an unexpected error (refusal with an unexpected
    /// code, transport error, failed job) before the run fails.
    pub max_error_share: f64,
}

impl Default for Checks {
    fn default() -> Checks {
        Checks {
            terminal_timeout: Duration::from_secs(120),
            photo_grace: Duration::from_secs(10),
            output_ttl: None,
            janitor_interval: DEFAULT_JANITOR_EVERY,
            poll_max: Duration::from_secs(1),
            max_error_share: 0.0,
        }
    }
}
