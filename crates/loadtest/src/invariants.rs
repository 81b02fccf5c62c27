//! The privacy invariants, checked at the end of a run through the API only (what any client of
//! a fleet can see), so the same checks hold a fleet of processes to account:
//!
//! - `terminal`: every accepted job reached a terminal state within the bound;
//! - `photo_deleted`: every ended job shows its photo deleted (`input_deleted_at_ms`), within a
//!   grace after it ended (the worker deletes it right after the video; the ledger hears of it
//!   by event);
//! - `video_served`: a sample of succeeded jobs served their output when first seen (an MP4, or
//!   an image job's JPEG; while, by this machine's clock, at least a second of their TTL was
//!   left), so the refusal below cannot pass on a fleet that never serves outputs;
//! - `video_expired`: past its TTL plus a janitor interval, every succeeded job shows its output
//!   deleted (`output_deleted_at_ms`, no `output` or `video`), and `GET /v1/jobs/{id}/output`
//!   refuses it.
//!
//! With session flows, theirs too (`sessions`): trainings ended, sessions ended with their
//! photos and adapters, adapters never served, ended sessions unusable.

mod sessions;

use std::time::Duration;

use clipfleet_client::{Client, ClientError, JobStatus};
use futures_util::{StreamExt, stream};
use serde::Serialize;
use tokio::time::Instant;

use crate::drive::{End, JobRecord, Outcome};
use crate::flow::SessionRecord;
use crate::options::Checks;

/// Status polls (and video checks) in flight at once during the checks.
const CHECKS_IN_FLIGHT: usize = 16;
/// Poll gap while waiting for a photo deletion to show.
const PHOTO_POLL: Duration = Duration::from_millis(250);
/// Slack on top of TTL + janitor interval: a sweep takes time, and so do its ledger marks.
const TTL_SLACK: Duration = Duration::from_secs(2);
/// Detail lines kept per invariant in the report (all are counted).
const MAX_LISTED: usize = 50;

/// The outcome of one invariant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvariantResult {
    /// Stable name (`terminal`, `photo_deleted`, `video_served`, `video_expired`; with session
    /// flows `training_ended`, `session_ended`, `adapter_private`, `session_closed`).
    pub name: &'static str,
    /// What it promises.
    pub description: &'static str,
    /// Jobs (or sessions) it was checked on.
    pub checked: u64,
    /// Jobs (or sessions) that broke it.
    pub violations: u64,
    /// Why it was not checked, when it was not.
    pub skipped: Option<String>,
}

impl InvariantResult {
    pub(crate) fn new(name: &'static str, description: &'static str) -> InvariantResult {
        InvariantResult {
            name,
            description,
            checked: 0,
            violations: 0,
            skipped: None,
        }
    }

    /// Checked, and nothing broke it.
    pub fn held(&self) -> bool {
        self.violations == 0
    }
}

/// One job that broke an invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: &'static str,
    /// The job (the session, for `session_ended` and `session_closed`).
    pub job_id: String,
    /// What was seen.
    pub detail: String,
}

/// Every invariant's outcome and the violations (at most [`MAX_LISTED`] listed per invariant).
#[derive(Debug, Clone, Default)]
pub(crate) struct Checked {
    pub results: Vec<InvariantResult>,
    pub violations: Vec<Violation>,
}

impl Checked {
    fn add(&mut self, result: &mut InvariantResult, violation: Violation) {
        result.violations += 1;
        if result.violations as usize <= MAX_LISTED {
            self.violations.push(violation);
        }
    }
}

/// A job seen terminal: its id, status and when it was seen.
struct Ended<'a> {
    job_id: &'a str,
    status: &'a JobStatus,
    seen: Instant,
}

/// Checks every invariant over `records` and `sessions` (offsets counted from `start`); the
/// session flows' invariants only when there were session flows.
pub(crate) async fn check(
    client: &Client,
    records: &[JobRecord],
    sessions: &[SessionRecord],
    checks: &Checks,
    start: Instant,
) -> Checked {
    let mut out = Checked::default();
    let mut ended = Vec::new();

    let mut terminal =
        InvariantResult::new("terminal", "every accepted job reached a terminal state");
    let mut served = InvariantResult::new(
        "video_served",
        "a sample of succeeded jobs served their output",
    );
    for record in records {
        let Outcome::Accepted { job_id, end } = &record.outcome else {
            continue;
        };
        terminal.checked += 1;
        match end {
            End::Terminal {
                status,
                seen,
                video,
                ..
            } => {
                ended.push(Ended {
                    job_id,
                    status,
                    seen: start + *seen,
                });
                if let Some(video) = video {
                    served.checked += 1;
                    if let Err(why) = video {
                        out.add(&mut served, violation("video_served", job_id, why.clone()));
                    }
                }
            }
            End::Stuck {
                last_status,
                last_error,
                ..
            } => {
                let detail = format!(
                    "still {} after {}{}",
                    last_status.as_deref().unwrap_or("unseen"),
                    humantime::format_duration(checks.terminal_timeout),
                    last_error
                        .as_deref()
                        .map(|e| format!(" (last poll: {e})"))
                        .unwrap_or_default()
                );
                out.add(&mut terminal, violation("terminal", job_id, detail));
            }
        }
    }
    if served.checked == 0 {
        served.skipped = Some("no job was seen succeeded with its ttl still ahead".into());
    }

    let photo = check_photos(client, &ended, checks, &mut out).await;
    let expired = match checks.output_ttl {
        Some(ttl) => check_videos(client, &ended, ttl, checks, &mut out).await,
        None => {
            let mut skipped = video_expired();
            skipped.skipped = Some("the fleet's output TTL was not given (--ttl)".into());
            skipped
        }
    };
    let mut results = vec![terminal, photo, served, expired];
    if !sessions.is_empty() {
        results.extend(sessions::check(client, sessions, checks, &mut out).await);
    }
    out.results = results;
    out
}

fn violation(invariant: &'static str, job_id: &str, detail: String) -> Violation {
    Violation {
        invariant,
        job_id: job_id.to_owned(),
        detail,
    }
}

fn video_expired() -> InvariantResult {
    InvariantResult::new(
        "video_expired",
        "no video remains past its ttl, and none is served",
    )
}

/// Every ended job shows its photo deleted, at the latest `photo_grace` after it was seen ended.
async fn check_photos(
    client: &Client,
    ended: &[Ended<'_>],
    checks: &Checks,
    out: &mut Checked,
) -> InvariantResult {
    let mut result = InvariantResult::new("photo_deleted", "no photo remains for a terminal job");
    result.checked = ended.len() as u64;
    let pending = ended
        .iter()
        .filter(|job| job.status.input_deleted_at_ms.is_none());
    let found: Vec<Option<Violation>> = stream::iter(pending)
        .map(|job| async move {
            let deadline = job.seen + checks.photo_grace;
            let mut last = format!("{}, input_deleted_at_ms unset", job.status.status);
            loop {
                match client.job(job.job_id).await {
                    Ok(status) if status.input_deleted_at_ms.is_some() => return None,
                    Ok(status) => {
                        last = format!("{}, input_deleted_at_ms unset", status.status);
                    }
                    Err(err) => last = format!("status unreadable: {err}"),
                }
                if Instant::now() >= deadline {
                    let grace = humantime::format_duration(checks.photo_grace);
                    return Some(violation(
                        "photo_deleted",
                        job.job_id,
                        format!("{last} {grace} after the job ended"),
                    ));
                }
                tokio::time::sleep(PHOTO_POLL).await;
            }
        })
        .buffer_unordered(CHECKS_IN_FLIGHT)
        .collect()
        .await;
    for found in found.into_iter().flatten() {
        out.add(&mut result, found);
    }
    result
}

/// Past TTL + janitor interval (+ slack) after each succeeded job was seen, the job shows no
/// video and the video is refused.
async fn check_videos(
    client: &Client,
    ended: &[Ended<'_>],
    ttl: Duration,
    checks: &Checks,
    out: &mut Checked,
) -> InvariantResult {
    let mut result = video_expired();
    let mut due: Vec<(Instant, &str)> = ended
        .iter()
        .filter(|job| job.status.status == "succeeded")
        .map(|job| {
            (
                job.seen + ttl + checks.janitor_interval + TTL_SLACK,
                job.job_id,
            )
        })
        .collect();
    due.sort();
    result.checked = due.len() as u64;
    if let Some((last, _)) = due.last() {
        tracing::info!(
            wait_s = last.saturating_duration_since(Instant::now()).as_secs(),
            "waiting for videos to pass their ttl"
        );
    }
    let found: Vec<Option<Violation>> = stream::iter(due)
        .map(|(due, job_id)| async move {
            tokio::time::sleep_until(due).await;
            expired_video(client, job_id)
                .await
                .err()
                .map(|detail| violation("video_expired", job_id, detail))
        })
        .buffer_unordered(CHECKS_IN_FLIGHT)
        .collect()
        .await;
    for found in found.into_iter().flatten() {
        out.add(&mut result, found);
    }
    result
}

/// `Ok` when the job shows its video deleted and the video is refused.
async fn expired_video(client: &Client, job_id: &str) -> Result<(), String> {
    let status = client
        .job(job_id)
        .await
        .map_err(|err| format!("status unreadable: {err}"))?;
    if status.output_deleted_at_ms.is_none() || status.video.is_some() || status.output.is_some() {
        return Err(format!(
            "past its ttl the job still shows an output (output_deleted_at_ms {:?}, output {})",
            status.output_deleted_at_ms,
            status
                .output
                .or(status.video)
                .map_or_else(|| "absent".into(), |v| v.to_string()),
        ));
    }
    match client.output(job_id).await {
        Ok(output) => Err(format!(
            "past its ttl the output is served ({} bytes)",
            output.len()
        )),
        Err(ClientError::Api {
            status: 404 | 410, ..
        }) => Ok(()),
        Err(err) => Err(format!(
            "output request failed otherwise than refused: {err}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stuck_job_breaks_the_terminal_invariant() -> anyhow::Result<()> {
        // Nothing ended, no TTL: the checks need no answer from ingest.
        let client = Client::new("http://127.0.0.1:9", "token")?;
        let records = vec![JobRecord {
            input: "jpeg 64x48".into(),
            expect: None,
            model: None,
            scheduled: Duration::ZERO,
            submit_latency: Duration::from_millis(5),
            outcome: Outcome::Accepted {
                job_id: "01STUCK".into(),
                end: End::Stuck {
                    last_status: Some("queued".into()),
                    last_kind: None,
                    last_error: None,
                },
            },
        }];
        let checked = check(&client, &records, &[], &Checks::default(), Instant::now()).await;
        let by_name = |name: &str| checked.results.iter().find(|r| r.name == name).cloned();
        let terminal = by_name("terminal").expect("terminal checked");
        assert_eq!((terminal.checked, terminal.violations), (1, 1));
        assert!(by_name("video_expired").and_then(|r| r.skipped).is_some());
        assert_eq!(checked.violations.len(), 1);
        assert_eq!(checked.violations[0].job_id, "01STUCK");
        assert!(
            checked.violations[0]
                .detail
                .starts_with("still queued after 2m")
        );
        Ok(())
    }
}
