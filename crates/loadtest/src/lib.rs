//! `clip-loadtest`: drives a fleet through its ingest HTTP API and holds it to its promises.
//!
//! It submits a mix of photos (JPEG and PNG of a few sizes, plus a share of bad inputs whose
//! refusal codes are known) to a weighted mix of models on an open-loop schedule or at a fixed
//! concurrency, follows every accepted job to its end, and reports submit and end-to-end
//! latency (HDR histograms), throughput and errors by code, as a table, a JSON report and an
//! SVG plot, in total and per kind (video, image). A share of arrivals can be whole
//! personalisation sessions (photos, training, a job through the adapter, the session's end),
//! with the training and the end timed as kinds of their own. At the end it checks the privacy
//! invariants through the API: every accepted job ended, no photo remains for an ended job, no
//! output remains (or is served) past its TTL, every session ended with its photos and adapter,
//! no adapter served, no ended session usable. A violation fails the run.
//!
//! It knows the fleet only through `clipfleet-client` (HTTP) and `proto`'s error codes; with
//! `--embedded` it starts `clipfleet-fleet` in-process first and talks to it the same way.
//!
//! Modules:
//! - `options`: what a run does (plain data); `cli`: the command line that builds it;
//! - `mix`: the inputs and the seeded generator; `plan`: what each arrival is (a model picked
//!   by weight, or a session flow); `drive`: the load generator; `flow`: a session flow;
//! - `stats`: counts, histograms, timeline; `kinds`: the numbers per kind and of the session
//!   flows; `invariants`: the checks at the end;
//! - `report`: the report, its table and exit code; `svg`: the plot; `embedded`: the
//!   in-process fleet; `saturation`: the search for the rate a fleet sustains and the latency
//!   below it.

#[cfg(feature = "chaos")]
pub mod chaos;
mod cli;
mod drive;
mod embedded;
mod flow;
mod invariants;
mod kinds;
mod mix;
mod options;
mod plan;
mod report;
mod saturation;
mod stats;
mod svg;

use anyhow::Context;
use clipfleet_client::Client;
use tokio::time::Instant;
use tracing::info;

pub use cli::Cli;
pub use cli::ModelArg;
pub use invariants::{InvariantResult, Violation};
pub use kinds::{KindStats, PERSONALIZE, SESSION_END, SessionCounts};
pub use mix::encode as encode_photo;
pub use options::{
    Arrivals, Checks, DEFAULT_JANITOR_EVERY, DEFAULT_RATE, EmbeddedFleet, Load, Mix, ModelChoice,
    Options, PhotoSize, SESSION_PHOTOS, Sessions, Stop, Target, WeightedModel,
};
pub use report::{Exit, Report};
pub use saturation::{SaturationPlan, SaturationReport, Step, find_saturation};
pub use stats::{Bucket, Counts, Latencies, LatencySummary, Throughput};
pub use svg::{Mark, render as render_svg, render_marked};

/// Logs to stderr: `RUST_LOG`, or warnings plus this crate's progress (what `clip-loadtest` and
/// `clip-chaos` print while they run).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,clipfleet_loadtest=info")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Birth date of the accounts a run creates: an adult, so no account is refused.
const ADULT_BIRTH_DATE: &str = "1990-01-01";

/// Runs one load test: starts the embedded fleet if asked, drives the load, checks the
/// invariants, stops the fleet. `Err` only when the test could not run at all.
///
/// For an embedded fleet the TTL and janitor interval checked are the fleet's own (those of
/// `options.checks` are replaced).
pub async fn run(options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(
        options.stop.jobs.is_some() || options.stop.duration.is_some(),
        "a run needs a job count or a duration"
    );
    anyhow::ensure!(options.accounts > 0, "a run needs at least one account");
    options.validate()?;
    let mix = options.mix.clone();
    let inputs = tokio::task::spawn_blocking(move || mix::Inputs::generate(&mix))
        .await
        .context("generate the photos")??;
    let mut options = options;
    let (fleet, base, token) = match &options.target {
        Target::Embedded(embedded) => {
            options.checks.output_ttl = Some(embedded.output_ttl);
            options.checks.janitor_interval =
                embedded.janitor_every.unwrap_or(DEFAULT_JANITOR_EVERY);
            let models: Vec<ModelChoice> = options.models.iter().map(|m| m.model.clone()).collect();
            let fleet = embedded::start(embedded, &models).await?;
            let base = fleet.base_url().to_owned();
            (Some(fleet), base, clipfleet_fleet::DEV_TOKEN.to_owned())
        }
        Target::Remote { ingest, token } => (None, ingest.clone(), token.clone()),
    };
    let result = drive_and_check(&options, inputs, &base, &token).await;
    if let Some(fleet) = fleet {
        fleet.shutdown().await.context("stop the embedded fleet")?;
    }
    result
}

async fn drive_and_check(
    options: &Options,
    inputs: mix::Inputs,
    base: &str,
    token: &str,
) -> anyhow::Result<Report> {
    let driven = drive_load(options, inputs, base, token, None).await?;
    Ok(check_and_report(options, base, &driven).await)
}

/// What a driven load leaves to check: the client it used, every submission's and session
/// flow's record, and when it started and how long it took.
#[derive(Debug)]
pub(crate) struct Driven {
    pub client: Client,
    pub records: Vec<drive::JobRecord>,
    pub sessions: Vec<flow::SessionRecord>,
    pub start: Instant,
    pub elapsed: std::time::Duration,
}

/// Creates the run's accounts and drives the load to its end (every accepted job followed until
/// it ended or its bound ran out).
pub(crate) async fn drive_load(
    options: &Options,
    inputs: mix::Inputs,
    base: &str,
    token: &str,
    started: Option<tokio::sync::oneshot::Sender<Instant>>,
) -> anyhow::Result<Driven> {
    let client = Client::new(base, token)?.with_device_id("clip-loadtest");
    let run_id = ulid::Ulid::new().to_string().to_ascii_lowercase();
    let mut accounts = Vec::with_capacity(options.accounts);
    for index in 0..options.accounts {
        let account = format!("loadtest-{run_id}-{index}");
        client
            .ensure_account(&account, ADULT_BIRTH_DATE)
            .await
            .with_context(|| format!("create account {account} at {base}"))?;
        accounts.push(account);
    }
    info!(target_url = %base, load = %describe_load(options), "load test starting");
    let start = Instant::now();
    if let Some(started) = started {
        // Nobody listening is fine: the load does not depend on it.
        let _ = started.send(start);
    }
    let drive::Records { records, sessions } =
        drive::drive(client.clone(), inputs, accounts, options, start).await?;
    let elapsed = start.elapsed();
    info!(
        submissions = records.len(),
        sessions = sessions.len(),
        "load over, checking invariants"
    );
    Ok(Driven {
        client,
        records,
        sessions,
        start,
        elapsed,
    })
}

/// Checks the API invariants over a driven load and makes the report.
pub(crate) async fn check_and_report(options: &Options, base: &str, driven: &Driven) -> Report {
    let checked = invariants::check(
        &driven.client,
        &driven.records,
        &driven.sessions,
        &options.checks,
        driven.start,
    )
    .await;
    let summary = stats::summarize(&driven.records, options.bucket);
    let sessions = kinds::sessions(&driven.sessions);
    // A session flow's steps outside its job are one more thing that can fail.
    let attempts = summary.counts.sent + sessions.flows;
    let error_share = if attempts == 0 {
        0.0
    } else {
        (summary.counts.unexpected_errors() + sessions.unexpected_errors()) as f64 / attempts as f64
    };
    let exit = Report::judge(
        &checked.results,
        error_share,
        options.checks.max_error_share,
    );
    Report {
        target: describe_target(options, base),
        load: describe_load(options),
        seed: options.seed,
        elapsed_s: driven.elapsed.as_secs_f64(),
        submitting_s: summary.submitting.as_secs_f64(),
        counts: summary.counts,
        throughput: summary.throughput,
        latency: summary.latency,
        kinds: kinds::by_kind(&driven.records, &driven.sessions),
        sessions,
        bucket_s: options.bucket.as_secs_f64(),
        timeline: summary.timeline,
        invariants: checked.results,
        violations: checked.violations,
        error_share,
        max_error_share: options.checks.max_error_share,
        exit,
        exit_code: exit.code(),
    }
}

fn describe_target(options: &Options, base: &str) -> String {
    let models: Vec<String> = options
        .models
        .iter()
        .map(|m| {
            if options.models.len() == 1 || m.weight == 1.0 {
                m.model.to_string()
            } else {
                format!("{}={}", m.model, m.weight)
            }
        })
        .collect();
    let model = if models.is_empty() {
        String::new()
    } else {
        format!(" ({})", models.join(", "))
    };
    match &options.target {
        Target::Embedded(_) => format!("embedded fleet{model}"),
        Target::Remote { .. } => format!("{base}{model}"),
    }
}

fn describe_load(options: &Options) -> String {
    let load = match &options.load {
        Load::Rate {
            per_second,
            arrivals,
        } => {
            let arrivals = match arrivals {
                Arrivals::Poisson => "poisson",
                Arrivals::Uniform => "uniform",
            };
            format!("open loop {per_second}/s {arrivals}")
        }
        Load::Concurrency(n) => format!("closed loop {n} in flight"),
    };
    if options.sessions.share > 0.0 {
        format!(
            "{load}, {:.0} % session flows on {}",
            options.sessions.share * 100.0,
            options.sessions.model
        )
    } else {
        load
    }
}
