//! The session flows' invariants, through the API only, after every flow ended its session:
//!
//! - `training_ended`: every training job reached a terminal state within the bound;
//! - `session_ended`: every session a flow opened reads `state = ended` and
//!   `adapter_ready = false`, and its training job shows its photos deleted (and, once trained,
//!   its adapter): the DELETE answers only after both are gone and verified;
//! - `adapter_private`: no training job shows an output, and `GET /v1/jobs/{id}/output`
//!   refuses it (the adapter is the session's, never handed out);
//! - `session_closed`: for a sample of ended sessions, a job naming the session is refused
//!   `410 session_ended`: nothing of an ended session can be used.

use clipfleet_client::{Client, ClientError, JobStatus};
use clipfleet_proto::ErrorCode;
use futures_util::{StreamExt, stream};

use super::{CHECKS_IN_FLIGHT, Checked, InvariantResult, Violation, violation};
use crate::drive::{End, params};
use crate::flow::SessionRecord;
use crate::mix::encode;
use crate::options::{Checks, PhotoSize};

/// Ended sessions a job is submitted to, to see it refused.
const CLOSED_SAMPLES: usize = 3;

/// The session flows' invariants over `sessions` (all ended by now, or failed trying).
pub(super) async fn check(
    client: &Client,
    sessions: &[SessionRecord],
    checks: &Checks,
    out: &mut Checked,
) -> Vec<InvariantResult> {
    let mut terminal = InvariantResult::new(
        "training_ended",
        "every session's training reached a terminal state",
    );
    for session in sessions {
        let Some(training) = &session.training else {
            continue;
        };
        let (Some(job_id), Some(end)) = (&training.job_id, &training.end) else {
            continue;
        };
        terminal.checked += 1;
        if let End::Stuck { last_status, .. } = end {
            let detail = format!(
                "training still {} after {}",
                last_status.as_deref().unwrap_or("unseen"),
                humantime::format_duration(checks.terminal_timeout)
            );
            out.add(&mut terminal, violation("training_ended", job_id, detail));
        }
    }

    let mut ended = InvariantResult::new(
        "session_ended",
        "every session ended, its adapter and photos gone",
    );
    let mut private = InvariantResult::new(
        "adapter_private",
        "no training's adapter is shown or served",
    );
    let opened: Vec<&SessionRecord> = sessions.iter().filter(|s| s.session_id.is_some()).collect();
    ended.checked = opened.len() as u64;
    let found: Vec<(Option<Violation>, Option<Violation>)> = stream::iter(opened)
        .map(|session| async move {
            let ended = session_gone(client, session).await.err();
            let private = match session.training.as_ref().and_then(|t| t.job_id.as_ref()) {
                Some(job_id) => adapter_private(client, job_id)
                    .await
                    .err()
                    .map(|detail| violation("adapter_private", job_id, detail)),
                None => None,
            };
            (ended, private)
        })
        .buffer_unordered(CHECKS_IN_FLIGHT)
        .collect()
        .await;
    private.checked = sessions
        .iter()
        .filter(|s| s.training.as_ref().is_some_and(|t| t.job_id.is_some()))
        .count() as u64;
    for (gone, served) in found {
        if let Some(found) = gone {
            out.add(&mut ended, found);
        }
        if let Some(found) = served {
            out.add(&mut private, found);
        }
    }

    let closed = check_closed(client, sessions, out).await;
    vec![terminal, ended, private, closed]
}

/// `Ok` when the session reads ended without an adapter, and its training job shows its photos
/// (and adapter, when it made one) deleted.
async fn session_gone(client: &Client, session: &SessionRecord) -> Result<(), Violation> {
    let Some(id) = session.session_id.as_deref() else {
        return Ok(());
    };
    let fail = |detail: String| violation("session_ended", id, detail);
    let view = client
        .session(id)
        .await
        .map_err(|err| fail(format!("session unreadable: {err}")))?;
    if view.state != "ended" || view.adapter_ready {
        return Err(fail(format!(
            "after its DELETE the session reads state {}, adapter_ready {}",
            view.state, view.adapter_ready
        )));
    }
    let Some(job_id) = session.training.as_ref().and_then(|t| t.job_id.as_deref()) else {
        return Ok(());
    };
    let training = client
        .job(job_id)
        .await
        .map_err(|err| fail(format!("training {job_id} unreadable: {err}")))?;
    let adapter_made = training.status == "succeeded";
    if training.input_deleted_at_ms.is_none()
        || (adapter_made && training.output_deleted_at_ms.is_none())
    {
        return Err(fail(format!(
            "the ended session's training {job_id} ({}) shows input_deleted_at_ms {:?}, \
             output_deleted_at_ms {:?}",
            training.status, training.input_deleted_at_ms, training.output_deleted_at_ms
        )));
    }
    Ok(())
}

/// `Ok` when the training job shows no output and its output is refused.
async fn adapter_private(client: &Client, job_id: &str) -> Result<(), String> {
    let status: JobStatus = client
        .job(job_id)
        .await
        .map_err(|err| format!("status unreadable: {err}"))?;
    if status.output.is_some() || status.video.is_some() {
        return Err(format!(
            "the training job ({}) shows an output: {:?}",
            status.kind,
            status.output.or(status.video)
        ));
    }
    match client.output(job_id).await {
        Ok(bytes) => Err(format!("the adapter was served ({} bytes)", bytes.len())),
        Err(ClientError::Api { status, .. }) if (400..500).contains(&status) => Ok(()),
        Err(err) => Err(format!(
            "output request failed otherwise than refused: {err}"
        )),
    }
}

/// A job naming each of a few ended sessions is refused `410 session_ended`.
async fn check_closed(
    client: &Client,
    sessions: &[SessionRecord],
    out: &mut Checked,
) -> InvariantResult {
    let mut result = InvariantResult::new(
        "session_closed",
        "an ended session's job is refused session_ended",
    );
    let sample: Vec<(&SessionRecord, &str)> = sessions
        .iter()
        .filter(|s| s.end.as_ref().is_some_and(|e| e.deleted_objects.is_some()))
        .filter_map(|s| Some((s, s.session_id.as_deref()?)))
        .take(CLOSED_SAMPLES)
        .collect();
    if sample.is_empty() {
        result.skipped = Some("no session was ended".into());
        return result;
    }
    let photo = match encode(
        PhotoSize {
            width: 64,
            height: 48,
        },
        image::ImageFormat::Jpeg,
    ) {
        Ok(photo) => photo,
        Err(err) => {
            result.skipped = Some(format!("no photo to submit: {err:#}"));
            return result;
        }
    };
    for (session, id) in sample {
        result.checked += 1;
        let answer = client
            .submit_in_session(
                &session.account,
                id,
                photo.clone(),
                params(&session.model),
                None,
            )
            .await;
        let detail = match answer {
            Err(ClientError::Api {
                status: 410,
                code: ErrorCode::SessionEnded,
                ..
            }) => continue,
            Ok(accepted) => format!(
                "a job of the ended session was accepted: {}",
                accepted.job_id
            ),
            Err(err) => format!("refused otherwise than 410 session_ended: {err}"),
        };
        out.add(&mut result, violation("session_closed", id, detail));
    }
    result
}
