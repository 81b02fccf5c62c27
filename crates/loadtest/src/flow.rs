//! A session flow: one arrival that opens a personalisation session for its account, uploads
//! photos of the mix (valid ones only), trains the session's adapter of the session model,
//! waits for the training, renders one job through the adapter, waits for it, and ends the
//! session with `DELETE /v1/sessions/{id}` — always, once the session was opened, so a flow
//! that failed halfway leaves nothing behind either. The flow stops at its first failure, which
//! is recorded with its step and code; a failure of the session's job is the job's record's.
//!
//! Timed like a submission: the training from the personalize request to the job's `finished`
//! (the request's round trip plus the fleet's own `finished_at − submitted_at`), the session's
//! job end to end from its submission, the session's end as the DELETE's round trip (it answers
//! once the photos and adapter are deleted and verified gone).

use std::time::Duration;

use clipfleet_client::ClientError;
use tokio::time::Instant;
use tracing::debug;

use crate::drive::{End, JobRecord, Outcome, Shared, Submission, params, submit_and_follow, wait};
use crate::mix::SplitMix64;
use crate::options::ModelChoice;

/// A step of a session flow that can fail on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    /// `POST /v1/sessions`.
    Create,
    /// `POST /v1/sessions/{id}/photos`.
    Upload,
    /// `POST /v1/sessions/{id}/personalize` refused or unanswered.
    Personalize,
    /// The training job ended other than `succeeded` (or did not end in time).
    Training,
    /// `DELETE /v1/sessions/{id}`.
    End,
}

impl Step {
    /// Its name in the report (`create`, `upload`, `personalize`, `training`, `end`).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Upload => "upload",
            Step::Personalize => "personalize",
            Step::Training => "training",
            Step::End => "end",
        }
    }
}

/// A step that failed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The step.
    pub step: Step,
    /// The API's error code, the failed job's, `stuck`, `transport` or `protocol`.
    pub code: String,
}

/// A session's training.
#[derive(Debug, Clone)]
pub(crate) struct Training {
    /// When the personalize request was sent, from the start of the run.
    pub requested: Duration,
    /// The training job, when the request was accepted.
    pub job_id: Option<String>,
    /// How the job ended, when accepted.
    pub end: Option<End>,
}

impl Training {
    /// Request to `finished`, when the training succeeded.
    pub fn latency(&self) -> Option<Duration> {
        match &self.end {
            Some(End::Terminal { status, e2e, .. }) if status.status == "succeeded" => Some(*e2e),
            _ => None,
        }
    }
}

/// The session's end.
#[derive(Debug, Clone)]
pub(crate) struct SessionEnd {
    /// When the DELETE was sent, from the start of the run.
    pub requested: Duration,
    /// Its round trip.
    pub round_trip: Duration,
    /// Objects it deleted, when it answered `200`.
    pub deleted_objects: Option<u64>,
}

/// What happened to one session flow.
#[derive(Debug, Clone)]
pub(crate) struct SessionRecord {
    /// Whose session.
    pub account: String,
    /// When the arrival was scheduled, from the start of the run.
    pub scheduled: Duration,
    /// The model trained and rendered.
    pub model: ModelChoice,
    /// The session, once created.
    pub session_id: Option<String>,
    /// Its training, once requested.
    pub training: Option<Training>,
    /// The job rendered through the adapter, once accepted.
    pub job_id: Option<String>,
    /// That job's end-to-end latency, when it succeeded.
    pub job_e2e: Option<Duration>,
    /// The session's end, once requested.
    pub end: Option<SessionEnd>,
    /// The steps that failed (at most one before the end, and the end).
    pub failures: Vec<Failure>,
}

impl SessionRecord {
    fn fail(&mut self, step: Step, code: String) {
        self.failures.push(Failure { step, code });
    }

    /// Whether every step went through and the session's job succeeded.
    pub fn completed(&self) -> bool {
        self.failures.is_empty() && self.job_e2e.is_some()
    }
}

/// The code of a failed call.
fn code_of(err: &ClientError) -> String {
    match err {
        ClientError::Api { code, .. } => code.as_str().to_owned(),
        ClientError::Transport(_) => "transport".into(),
        ClientError::Protocol(_) => "protocol".into(),
    }
}

/// The code of a job that did not succeed: its error's, its status, or `stuck`.
pub(crate) fn end_code(end: &End) -> String {
    match end {
        End::Terminal { status, .. } => status
            .error_code()
            .map_or_else(|| status.status.clone(), |code| code.as_str().to_owned()),
        End::Stuck { .. } => "stuck".into(),
    }
}

/// Runs one session flow for `account`, scheduled `scheduled` after the start; `rng` picks its
/// photos. Returns its record and its job's, when it got that far.
pub(crate) async fn run(
    shared: &Shared,
    account: String,
    scheduled: Duration,
    mut rng: SplitMix64,
) -> (SessionRecord, Option<JobRecord>) {
    let mut record = SessionRecord {
        account,
        scheduled,
        model: shared.session_model.clone(),
        session_id: None,
        training: None,
        job_id: None,
        job_e2e: None,
        end: None,
        failures: Vec::new(),
    };
    let session_id = match shared.client.create_session(&record.account).await {
        Ok(session) => session.session_id,
        Err(err) => {
            record.fail(Step::Create, code_of(&err));
            return (record, None);
        }
    };
    record.session_id = Some(session_id.clone());
    let job = use_session(shared, &mut record, &session_id, &mut rng).await;
    let requested = shared.start.elapsed();
    let sent = Instant::now();
    let answer = end_session(shared, &session_id).await;
    let round_trip = sent.elapsed();
    let deleted_objects = match answer {
        Ok(ended) => {
            debug!(
                deleted_objects = ended.deleted_objects,
                round_trip_ms = round_trip.as_millis(),
                "session ended"
            );
            Some(ended.deleted_objects)
        }
        Err(err) => {
            record.fail(Step::End, code_of(&err));
            None
        }
    };
    record.end = Some(SessionEnd {
        requested,
        round_trip,
        deleted_objects,
    });
    (record, job)
}

/// How long a flow keeps asking to end its session while the fleet cannot answer (a part down:
/// as the app's backend would, it retries; the DELETE is idempotent).
const END_RETRY_FOR: Duration = Duration::from_secs(90);

/// `DELETE /v1/sessions/{id}`, retried with backoff while the answer is a transport error or a
/// retryable code (ingest restarting, the store or the ledger cut off) for up to
/// [`END_RETRY_FOR`]; the last answer.
async fn end_session(
    shared: &Shared,
    session_id: &str,
) -> Result<clipfleet_client::EndedSession, ClientError> {
    let deadline = Instant::now() + END_RETRY_FOR;
    let mut pause = Duration::from_millis(250);
    loop {
        let answer = shared.client.end_session(session_id).await;
        let retryable = match &answer {
            Ok(_) => false,
            Err(ClientError::Transport(_)) => true,
            Err(err @ ClientError::Api { .. }) => err.code().is_retryable(),
            Err(ClientError::Protocol(_)) => false,
        };
        if !retryable || Instant::now() + pause > deadline {
            return answer;
        }
        debug!(
            pause_ms = pause.as_millis(),
            "session end not answered: retrying"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(4));
    }
}

/// Photos, training and the job of an open session; `None` when a step before the job failed.
async fn use_session(
    shared: &Shared,
    record: &mut SessionRecord,
    session_id: &str,
    rng: &mut SplitMix64,
) -> Option<JobRecord> {
    for _ in 0..shared.session_photos {
        let photo = shared.inputs.pick_photo(rng).bytes.clone();
        if let Err(err) = shared.client.upload_session_photo(session_id, photo).await {
            record.fail(Step::Upload, code_of(&err));
            return None;
        }
    }
    let requested = shared.start.elapsed();
    let sent = Instant::now();
    let answer = shared
        .client
        .personalize(session_id, Some(&record.model.name))
        .await;
    let answered = sent.elapsed();
    let status = match answer {
        Ok(status) => status,
        Err(err) => {
            record.training = Some(Training {
                requested,
                job_id: None,
                end: None,
            });
            record.fail(Step::Personalize, code_of(&err));
            return None;
        }
    };
    let end = wait(shared, &status.job_id, answered).await;
    let training = Training {
        requested,
        job_id: Some(status.job_id),
        end: Some(end),
    };
    let trained = training.latency().is_some();
    if let (false, Some(end)) = (trained, &training.end) {
        record.fail(Step::Training, end_code(end));
    }
    record.training = Some(training);
    if !trained {
        return None;
    }
    let submission = Submission {
        input: shared.inputs.pick_photo(rng).clone(),
        account: record.account.clone(),
        model: Some(record.model.to_string()),
        params: params(&record.model),
        session_id: Some(session_id.to_owned()),
    };
    let job = submit_and_follow(shared, submission, shared.start.elapsed()).await;
    if let Outcome::Accepted { job_id, end } = &job.outcome {
        record.job_id = Some(job_id.clone());
        if let End::Terminal { status, e2e, .. } = end
            && status.status == "succeeded"
        {
            record.job_e2e = Some(*e2e);
        }
    }
    Some(job)
}
