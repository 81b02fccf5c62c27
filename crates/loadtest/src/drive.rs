//! The load generator: submissions on an open-loop schedule (or a fixed number in flight), each
//! followed by polling its job until it ends. Every submission becomes one [`JobRecord`]; the
//! numbers and the invariant checks are made from those afterwards, so the hot path only does
//! HTTP.
//!
//! Latency is measured from when a submission was *scheduled*, not from when the client got
//! round to it: if the client or the fleet falls behind, the wait shows up in the numbers
//! (no coordinated omission). End-to-end latency is that submit latency plus the fleet's own
//! `finished_at − submitted_at`, both read from the job: exact whatever the poll interval, and
//! free of clock skew between this machine and the fleet's.
//!
//! An arrival is one submission of a model picked by weight, or a whole session flow
//! (`crate::flow`), as `crate::plan` decides from the seed and the arrival's index.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clipfleet_client::{Client, ClientError, JobStatus};
use clipfleet_proto::ErrorCode;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::flow::SessionRecord;
use crate::mix::{Input, Inputs, SplitMix64};
use crate::options::{Arrivals, Load, ModelChoice, Options};
use crate::plan::{Arrival, Plan};

/// First poll of a job's status after it was accepted; later polls double up to `poll_max`.
const FIRST_POLL: Duration = Duration::from_millis(100);

/// What happened to one submission.
#[derive(Debug, Clone)]
pub(crate) struct JobRecord {
    /// What was sent (`jpeg 640x480`, `truncated jpeg`).
    pub input: String,
    /// The refusal a bad input must get; `None` for a photo.
    pub expect: Option<ErrorCode>,
    /// The model asked for (`name@version`); `None`: the fleet's default.
    pub model: Option<String>,
    /// When it was scheduled, from the start of the run (a session flow's job: when it was
    /// submitted).
    pub scheduled: Duration,
    /// From the scheduled start to ingest's answer.
    pub submit_latency: Duration,
    /// Ingest's answer.
    pub outcome: Outcome,
}

/// Ingest's answer to a submission and what became of the job.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// `202`: the job and how it ended.
    Accepted {
        /// The job.
        job_id: String,
        /// How it ended, or that it did not within the bound.
        end: End,
    },
    /// An error answer with its stable code.
    Refused {
        /// The code.
        code: ErrorCode,
    },
    /// No answer, or not one the API promises.
    Transport(String),
}

/// How an accepted job ended.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// It reached a terminal state.
    Terminal {
        /// Its status when first seen terminal.
        status: Box<JobStatus>,
        /// When that was seen, from the start of the run.
        seen: Duration,
        /// Scheduled start to `finished` (see the module docs).
        e2e: Duration,
        /// For a sample of succeeded jobs: the video fetched right then (its size, or why not).
        video: Option<Result<usize, String>>,
    },
    /// Still not terminal when the bound ran out.
    Stuck {
        /// The last status seen, if any.
        last_status: Option<String>,
        /// What the job makes, as last seen (`video`, `image`, `personalize`), if seen.
        last_kind: Option<String>,
        /// The last polling error, if any.
        last_error: Option<String>,
    },
}

/// What every arrival shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Ingest's API, the only way to the fleet.
    pub client: Client,
    /// The photos and bad inputs, made once.
    pub inputs: Inputs,
    /// The run's accounts, taken round robin by arrival index.
    pub accounts: Vec<String>,
    /// Each of the run's models: its label (`name@version`) and submit params.
    pub models: Vec<(String, Value)>,
    /// What each arrival is.
    pub plan: Plan,
    /// The model a session flow trains and renders.
    pub session_model: ModelChoice,
    /// Photos a session flow uploads before its training.
    pub session_photos: usize,
    /// Offsets and latencies count from here.
    pub start: Instant,
    /// How long a job may take to end before it counts as stuck.
    pub terminal_timeout: Duration,
    /// Longest gap between two polls of one job.
    pub poll_max: Duration,
    /// Arrivals done, for the progress log.
    done: AtomicU64,
    /// Videos fetched so far (see [`VIDEO_SAMPLES`]).
    sampled: AtomicU64,
}

impl Shared {
    /// The account of arrival `index` (round robin).
    fn account(&self, index: u64) -> String {
        self.accounts[index as usize % self.accounts.len()].clone()
    }
}

/// What the load left: every submission's record, and every session flow's.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// Submissions, in the order they were scheduled (a session flow's job included).
    pub records: Vec<JobRecord>,
    /// Session flows, in the order they were scheduled.
    pub sessions: Vec<SessionRecord>,
}

impl Records {
    fn add(&mut self, arrived: Arrived) {
        self.records.extend(arrived.job);
        self.sessions.extend(arrived.session);
    }
}

/// What one arrival made.
#[derive(Debug, Default)]
pub(crate) struct Arrived {
    /// Its submission (a session flow's job, when it got that far).
    pub job: Option<JobRecord>,
    /// Its session flow.
    pub session: Option<SessionRecord>,
}

/// Succeeded jobs whose video is fetched when first seen: proof that "video refused past its
/// TTL" at the end is not just a fleet that never serves videos.
const VIDEO_SAMPLES: u64 = 3;

/// Runs the load of `options` against `client` on behalf of `accounts`, with offsets counted
/// from `start`; returns every record, in the order they were scheduled.
pub(crate) async fn drive(
    client: Client,
    inputs: Inputs,
    accounts: Vec<String>,
    options: &Options,
    start: Instant,
) -> anyhow::Result<Records> {
    anyhow::ensure!(!accounts.is_empty(), "a run needs at least one account");
    let models = options
        .models
        .iter()
        .map(|weighted| (weighted.model.to_string(), params(&weighted.model)))
        .collect();
    let shared = Arc::new(Shared {
        client,
        inputs,
        accounts,
        models,
        plan: Plan::new(&options.models, options.sessions.share, options.seed)?,
        session_model: options.sessions.model.clone(),
        session_photos: options.sessions.photos,
        start,
        terminal_timeout: options.checks.terminal_timeout,
        poll_max: options.checks.poll_max.max(FIRST_POLL),
        done: AtomicU64::new(0),
        sampled: AtomicU64::new(0),
    });
    let mut rng = SplitMix64::new(options.seed);
    let stop = options.stop;
    let mut driven = Records::default();
    let _progress = AbortOnDrop(tokio::spawn(report_progress(shared.clone())));
    match &options.load {
        Load::Rate {
            per_second,
            arrivals,
        } => {
            let mut tasks = JoinSet::new();
            let mean_gap = 1.0 / per_second.max(1e-3);
            let mut next = Duration::ZERO;
            let mut index: u64 = 0;
            while stop.jobs.is_none_or(|jobs| index < jobs)
                && stop.duration.is_none_or(|duration| next < duration)
            {
                tokio::time::sleep_until(shared.start + next).await;
                let planned = plan(&shared, index, &mut rng);
                tasks.spawn(arrive(shared.clone(), planned, index, next));
                index += 1;
                let gap = match arrivals {
                    Arrivals::Poisson => rng.exponential(mean_gap),
                    Arrivals::Uniform => mean_gap,
                };
                next += Duration::from_secs_f64(gap);
                while let Some(done) = tasks.try_join_next() {
                    driven.add(done?);
                }
            }
            while let Some(done) = tasks.join_next().await {
                driven.add(done?);
            }
        }
        Load::Concurrency(lanes) => {
            let mut tasks = JoinSet::new();
            let next_index = Arc::new(AtomicU64::new(0));
            for lane in 0..(*lanes).max(1) {
                let (shared, next_index) = (shared.clone(), next_index.clone());
                let mut rng = SplitMix64::new(options.seed ^ (lane as u64).wrapping_mul(0x9E37));
                tasks.spawn(async move {
                    let mut lane_arrivals = Vec::new();
                    loop {
                        let index = next_index.fetch_add(1, Ordering::Relaxed);
                        let now = shared.start.elapsed();
                        if stop.jobs.is_some_and(|jobs| index >= jobs)
                            || stop.duration.is_some_and(|duration| now >= duration)
                        {
                            break;
                        }
                        let planned = plan(&shared, index, &mut rng);
                        let arrived = arrive(shared.clone(), planned, index, now).await;
                        lane_arrivals.push(arrived);
                    }
                    lane_arrivals
                });
            }
            while let Some(lane) = tasks.join_next().await {
                for arrived in lane? {
                    driven.add(arrived);
                }
            }
        }
    }
    driven.records.sort_by_key(|record| record.scheduled);
    driven.sessions.sort_by_key(|session| session.scheduled);
    Ok(driven)
}

/// The submit params naming `model`.
pub(crate) fn params(model: &ModelChoice) -> Value {
    serde_json::json!({ "model": model.name, "model_version": model.version })
}

/// What an arrival will do, with what it sends.
#[derive(Debug)]
enum Planned {
    /// Submit `input` to the run's model at `model` (`None`: the fleet's default).
    Job { model: Option<usize>, input: Input },
    /// Run a session flow.
    Session,
}

/// Arrival `index`'s plan; a submission's input comes from `rng`, the loop's (or lane's)
/// generator, as it did before arrivals had kinds.
fn plan(shared: &Shared, index: u64, rng: &mut SplitMix64) -> Planned {
    match shared.plan.arrival(index) {
        Arrival::Job { model } => Planned::Job {
            model,
            input: shared.inputs.pick(rng).clone(),
        },
        Arrival::Session => Planned::Session,
    }
}

/// One arrival: its submission or its session flow.
async fn arrive(shared: Arc<Shared>, planned: Planned, index: u64, scheduled: Duration) -> Arrived {
    let account = shared.account(index);
    let arrived = match planned {
        Planned::Job { model, input } => {
            let (label, params) = model
                .and_then(|model| shared.models.get(model))
                .map_or((None, serde_json::json!({})), |(label, params)| {
                    (Some(label.clone()), params.clone())
                });
            let job = submit_and_follow(
                &shared,
                Submission {
                    input,
                    account,
                    model: label,
                    params,
                    session_id: None,
                },
                scheduled,
            )
            .await;
            Arrived {
                job: Some(job),
                session: None,
            }
        }
        Planned::Session => {
            let rng = shared.plan.rng(index);
            let (session, job) = crate::flow::run(&shared, account, scheduled, rng).await;
            Arrived {
                job,
                session: Some(session),
            }
        }
    };
    shared.done.fetch_add(1, Ordering::Relaxed);
    arrived
}

/// Stops a background task when the run ends, however it ends.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Logs how far the run is every few seconds.
async fn report_progress(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        every.tick().await;
        info!(
            elapsed_s = shared.start.elapsed().as_secs(),
            done = shared.done.load(Ordering::Relaxed),
            "load test progress"
        );
    }
}

/// What one submission sends.
#[derive(Debug)]
pub(crate) struct Submission {
    /// The photo (or bad input).
    pub input: Input,
    /// On whose behalf.
    pub account: String,
    /// The model's label (`name@version`), when the run names it.
    pub model: Option<String>,
    /// The submit params (model, version).
    pub params: Value,
    /// The session to render through.
    pub session_id: Option<String>,
}

/// One submission, scheduled `scheduled` after the start, and the wait for its job.
pub(crate) async fn submit_and_follow(
    shared: &Shared,
    submission: Submission,
    scheduled: Duration,
) -> JobRecord {
    let Submission {
        input,
        account,
        model,
        params,
        session_id,
    } = submission;
    let intended = shared.start + scheduled;
    let answer = match &session_id {
        Some(session) => {
            shared
                .client
                .submit_in_session(&account, session, input.bytes.clone(), params, None)
                .await
        }
        None => {
            shared
                .client
                .submit(&account, input.bytes.clone(), params, None)
                .await
        }
    };
    let submit_latency = intended.elapsed();
    let outcome = match answer {
        Ok(accepted) => {
            let end = wait(shared, &accepted.job_id, submit_latency).await;
            Outcome::Accepted {
                job_id: accepted.job_id,
                end,
            }
        }
        Err(ClientError::Api { code, .. }) => Outcome::Refused { code },
        Err(other) => {
            debug!(error = %other, "submission got no answer");
            Outcome::Transport(other.to_string())
        }
    };
    JobRecord {
        input: input.label,
        expect: input.expect,
        model,
        scheduled,
        submit_latency,
        outcome,
    }
}

/// Polls a job (100 ms, then doubling up to `poll_max`) until it ends or the bound runs out.
/// `submit_latency`: from the scheduled start to ingest's answer, the first part of `e2e`.
pub(crate) async fn wait(shared: &Shared, job_id: &str, submit_latency: Duration) -> End {
    let deadline = Instant::now() + shared.terminal_timeout;
    let mut gap = FIRST_POLL;
    let (mut last_status, mut last_kind, mut last_error) = (None, None, None);
    loop {
        tokio::time::sleep(gap.min(deadline.saturating_duration_since(Instant::now()))).await;
        gap = (gap * 2).min(shared.poll_max);
        match shared.client.job(job_id).await {
            Ok(status) if status.is_terminal() => {
                let ran = status
                    .finished_at_ms
                    .unwrap_or(status.submitted_at_ms)
                    .saturating_sub(status.submitted_at_ms);
                let seen = shared.start.elapsed();
                let video = sample_video(shared, &status).await;
                return End::Terminal {
                    e2e: submit_latency + Duration::from_millis(ran),
                    seen,
                    status: Box::new(status),
                    video,
                };
            }
            Ok(status) => {
                last_status = Some(status.status);
                last_kind = Some(status.kind);
            }
            Err(err) => last_error = Some(err.to_string()),
        }
        if Instant::now() >= deadline {
            return End::Stuck {
                last_status,
                last_kind,
                last_error,
            };
        }
    }
}

/// Time a sampled video must still have to live, by this machine's clock, before and after
/// its fetch for the fetch to count: it covers the fetch itself and clock skew to the fleet.
const SAMPLE_MARGIN_MS: u64 = 1_000;

/// For the first [`VIDEO_SAMPLES`] succeeded jobs with enough of their TTL left, fetches the
/// output and checks it is what the job says it made: an MP4 (`ftyp` box first), or an image
/// job's JPEG (`FF D8`). A refusal counts only if the output should still have lived when the
/// fetch ended: on a loaded fleet a job may be seen late.
async fn sample_video(shared: &Shared, status: &JobStatus) -> Option<Result<usize, String>> {
    let expires_at_ms = status
        .output
        .as_ref()
        .or(status.video.as_ref())
        .and_then(|output| output.get("expires_at_ms"))
        .and_then(Value::as_u64)?;
    let alive = || unix_now_ms() + SAMPLE_MARGIN_MS < expires_at_ms;
    if status.status != "succeeded" || !alive() {
        return None;
    }
    if shared.sampled.fetch_add(1, Ordering::Relaxed) >= VIDEO_SAMPLES {
        return None;
    }
    let image = status.kind == "image";
    let fetched = match shared.client.output(&status.job_id).await {
        Ok(jpeg) if image && jpeg.starts_with(&[0xFF, 0xD8]) => Ok(jpeg.len()),
        Ok(mp4) if !image && mp4.get(4..8) == Some(b"ftyp".as_slice()) => Ok(mp4.len()),
        Ok(other) => Err(format!(
            "{} bytes that are not the {} it made",
            other.len(),
            if image { "JPEG" } else { "MP4" }
        )),
        Err(err) => Err(err.to_string()),
    };
    if fetched.is_err() && !alive() {
        // No verdict: give the sample to another job.
        shared.sampled.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(fetched)
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
