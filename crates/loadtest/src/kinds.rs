//! The numbers of a run by kind of work: jobs that make a `video` or an `image`, session
//! trainings (`personalize`) and session ends (`session_end`), plus the session flows' own
//! counts. Made from the records once the load is over, like `crate::stats`.
//!
//! A job's kind is what the fleet says it made (the job view's `kind`); a submission refused
//! before it became a job takes the kind its model's other jobs showed in the run (`unknown`
//! when none did).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::drive::{End, JobRecord, Outcome};
use crate::flow::{SessionRecord, Step, end_code};
use crate::stats::{LatencySummary, histogram, micros, summary};

/// `kind` of the session trainings' row.
pub const PERSONALIZE: &str = "personalize";
/// `kind` of the session ends' row.
pub const SESSION_END: &str = "session_end";

/// One kind of work: how much was asked, how much went through, how fast.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindStats {
    /// `video`, `image`, `personalize` (session trainings), `session_end` (`DELETE
    /// /v1/sessions/{id}`), or `unknown` (submissions whose kind the run never saw).
    pub kind: String,
    /// Submissions (a session flow's job included), personalize requests or DELETE calls.
    pub submissions: u64,
    /// Jobs or trainings that succeeded; DELETEs answered `200`.
    pub succeeded: u64,
    /// Bad inputs refused with the code they must get (jobs only).
    pub refused_expected: u64,
    /// Everything else, by code (a refusal's, a failed job's, `stuck`, `transport`).
    pub failed: BTreeMap<String, u64>,
    /// Successes per second from the start of the run to the last success.
    pub succeeded_per_s: f64,
    /// Jobs: scheduled start to `finished`; trainings: personalize request to `finished`;
    /// session ends: the DELETE's round trip (it answers once the photos and the adapter are
    /// deleted and verified gone). Of the successes.
    pub latency: LatencySummary,
}

/// The session flows of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SessionCounts {
    /// Arrivals that were a session flow.
    pub flows: u64,
    /// Sessions created.
    pub created: u64,
    /// Trainings that succeeded.
    pub trained: u64,
    /// Session jobs (rendered through the adapter) that succeeded.
    pub jobs_succeeded: u64,
    /// Sessions ended with a `200`.
    pub ended: u64,
    /// Flows whose every step went through.
    pub completed: u64,
    /// Steps that failed, as `step code` (`personalize conflict`, `training model_error`,
    /// `end unavailable`). A failure of the session's job counts with the jobs, in `counts`.
    pub failed: BTreeMap<String, u64>,
    /// Objects the DELETEs deleted (photos, adapters).
    pub deleted_objects: u64,
    /// The session jobs' end-to-end latency (their submission to `finished`).
    pub job_end_to_end: LatencySummary,
}

impl SessionCounts {
    /// Failed steps (the session jobs' failures are the jobs' own).
    pub fn unexpected_errors(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// What a job made, as seen: `None` for one refused, or never seen.
fn seen_kind(record: &JobRecord) -> Option<&str> {
    match &record.outcome {
        Outcome::Accepted {
            end: End::Terminal { status, .. },
            ..
        } => Some(status.kind.as_str()),
        Outcome::Accepted {
            end: End::Stuck { last_kind, .. },
            ..
        } => last_kind.as_deref(),
        _ => None,
    }
}

/// A row being filled: the histogram and the last success beside the numbers.
struct Row {
    stats: KindStats,
    histogram: hdrhistogram::Histogram<u64>,
    last_success: Duration,
}

impl Row {
    fn new(kind: &str) -> Row {
        Row {
            stats: KindStats {
                kind: kind.to_owned(),
                ..KindStats::default()
            },
            histogram: histogram(),
            last_success: Duration::ZERO,
        }
    }

    fn succeeded(&mut self, at: Duration, took: Duration) {
        self.stats.succeeded += 1;
        self.histogram.saturating_record(micros(took).max(1));
        self.last_success = self.last_success.max(at);
    }

    fn failed(&mut self, code: String) {
        *self.stats.failed.entry(code).or_default() += 1;
    }

    fn done(mut self) -> KindStats {
        self.stats.latency = summary(&self.histogram);
        if self.stats.succeeded > 0 {
            self.stats.succeeded_per_s =
                self.stats.succeeded as f64 / self.last_success.as_secs_f64().max(1e-3);
        }
        self.stats
    }
}

/// The rows of a run: `video`, `image` (and `unknown`) from the submissions, then
/// `personalize` and `session_end` from the session flows; a kind nothing was asked of has no
/// row.
pub(crate) fn by_kind(records: &[JobRecord], sessions: &[SessionRecord]) -> Vec<KindStats> {
    let mut kind_of_model: BTreeMap<&str, &str> = BTreeMap::new();
    for record in records {
        if let (Some(model), Some(kind)) = (record.model.as_deref(), seen_kind(record)) {
            kind_of_model.entry(model).or_insert(kind);
        }
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for record in records {
        let kind = seen_kind(record)
            .or_else(|| {
                record
                    .model
                    .as_deref()
                    .and_then(|model| kind_of_model.get(model).copied())
            })
            .unwrap_or("unknown");
        let row = rows
            .entry(kind.to_owned())
            .or_insert_with(|| Row::new(kind));
        row.stats.submissions += 1;
        match &record.outcome {
            Outcome::Refused { code } if record.expect == Some(*code) => {
                row.stats.refused_expected += 1;
            }
            Outcome::Refused { code } => row.failed(code.as_str().to_owned()),
            Outcome::Transport(_) => row.failed("transport".into()),
            Outcome::Accepted { end, .. } => match end {
                End::Terminal { status, e2e, .. } if status.status == "succeeded" => {
                    row.succeeded(record.scheduled + *e2e, *e2e);
                }
                end => row.failed(end_code(end)),
            },
        }
    }
    let mut training = Row::new(PERSONALIZE);
    let mut ending = Row::new(SESSION_END);
    for session in sessions {
        if let Some(requested) = session.training.as_ref() {
            training.stats.submissions += 1;
            match requested.latency() {
                Some(took) => training.succeeded(requested.requested + took, took),
                None => {
                    let code = session
                        .failures
                        .iter()
                        .find(|f| matches!(f.step, Step::Personalize | Step::Training))
                        .map_or_else(|| "unknown".to_owned(), |f| f.code.clone());
                    training.failed(code);
                }
            }
        }
        if let Some(end) = &session.end {
            ending.stats.submissions += 1;
            if end.deleted_objects.is_some() {
                ending.succeeded(end.requested + end.round_trip, end.round_trip);
            } else {
                let code = session
                    .failures
                    .iter()
                    .find(|f| f.step == Step::End)
                    .map_or_else(|| "unknown".to_owned(), |f| f.code.clone());
                ending.failed(code);
            }
        }
    }
    // Jobs first in a fixed order, then the sessions' rows.
    let order = |kind: &str| match kind {
        "video" => 0,
        "image" => 1,
        _ => 2,
    };
    let mut jobs: Vec<Row> = rows.into_values().collect();
    jobs.sort_by_key(|row| order(&row.stats.kind));
    jobs.into_iter()
        .chain([training, ending])
        .filter(|row| row.stats.submissions > 0)
        .map(Row::done)
        .collect()
}

/// The session flows' counts.
pub(crate) fn sessions(sessions: &[SessionRecord]) -> SessionCounts {
    let mut counts = SessionCounts::default();
    let mut e2e = histogram();
    for session in sessions {
        counts.flows += 1;
        counts.created += u64::from(session.session_id.is_some());
        counts.trained += u64::from(
            session
                .training
                .as_ref()
                .is_some_and(|t| t.latency().is_some()),
        );
        if let Some(took) = session.job_e2e {
            counts.jobs_succeeded += 1;
            e2e.saturating_record(micros(took).max(1));
        }
        if let Some(deleted) = session.end.as_ref().and_then(|end| end.deleted_objects) {
            counts.ended += 1;
            counts.deleted_objects += deleted;
        }
        counts.completed += u64::from(session.completed());
        for failure in &session.failures {
            *counts
                .failed
                .entry(format!("{} {}", failure.step.as_str(), failure.code))
                .or_default() += 1;
        }
    }
    counts.job_end_to_end = summary(&e2e);
    counts
}

#[cfg(test)]
mod tests {
    use clipfleet_proto::ErrorCode;
    use serde_json::json;

    use super::*;
    use crate::flow::{Failure, SessionEnd, Training};
    use crate::options::ModelChoice;

    fn ended(kind: &str, status: &str, e2e_ms: u64) -> End {
        let status = json!({
            "job_id": "j", "status": status, "submitted_at_ms": 1, "kind": kind,
            "error": (status == "failed").then(|| json!({"code": "model_error", "message": "m"})),
        });
        End::Terminal {
            status: Box::new(serde_json::from_value(status).expect("a job status")),
            seen: Duration::from_millis(e2e_ms),
            e2e: Duration::from_millis(e2e_ms),
            video: None,
        }
    }

    fn record(model: &str, at_ms: u64, outcome: Outcome) -> JobRecord {
        JobRecord {
            input: "jpeg 64x48".into(),
            expect: None,
            model: Some(model.into()),
            scheduled: Duration::from_millis(at_ms),
            submit_latency: Duration::from_millis(5),
            outcome,
        }
    }

    fn accepted(end: End) -> Outcome {
        Outcome::Accepted {
            job_id: "j".into(),
            end,
        }
    }

    fn flow(training_ms: Option<u64>, end: Option<u64>, failures: Vec<Failure>) -> SessionRecord {
        SessionRecord {
            account: "a".into(),
            scheduled: Duration::ZERO,
            model: ModelChoice::noop(),
            session_id: Some("s".into()),
            training: Some(Training {
                requested: Duration::from_millis(100),
                job_id: Some("t".into()),
                end: Some(match training_ms {
                    Some(ms) => ended(PERSONALIZE, "succeeded", ms),
                    None => ended(PERSONALIZE, "failed", 50),
                }),
            }),
            job_id: training_ms.map(|_| "k".into()),
            job_e2e: training_ms.map(|_| Duration::from_millis(900)),
            end: Some(SessionEnd {
                requested: Duration::from_millis(5000),
                round_trip: Duration::from_millis(40),
                deleted_objects: end,
            }),
            failures,
        }
    }

    #[test]
    fn rows_by_kind_with_refusals_attributed_to_their_model() {
        let bad = ErrorCode::BadImage;
        let mut refused = record("portrait@1", 50, Outcome::Refused { code: bad });
        refused.expect = Some(bad);
        let records = vec![
            record("noop@1", 0, accepted(ended("video", "succeeded", 1000))),
            record("noop@1", 100, accepted(ended("video", "succeeded", 3000))),
            record(
                "portrait@1",
                200,
                accepted(ended("image", "succeeded", 1800)),
            ),
            refused,
            record("portrait@1", 300, accepted(ended("image", "failed", 500))),
            record("beautify@1", 400, Outcome::Transport("reset".into())),
        ];
        let sessions = vec![
            flow(Some(2000), Some(3), Vec::new()),
            flow(
                None,
                None,
                vec![
                    Failure {
                        step: Step::Training,
                        code: "model_error".into(),
                    },
                    Failure {
                        step: Step::End,
                        code: "unavailable".into(),
                    },
                ],
            ),
        ];
        let rows = by_kind(&records, &sessions);
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["video", "image", "unknown", PERSONALIZE, SESSION_END]
        );
        let video = &rows[0];
        assert_eq!((video.submissions, video.succeeded), (2, 2));
        // Two successes, the last at 3.1 s.
        assert!(
            (video.succeeded_per_s - 2.0 / 3.1).abs() < 1e-9,
            "{video:?}"
        );
        assert_eq!(video.latency.count, 2);
        let image = &rows[1];
        assert_eq!(
            (image.submissions, image.succeeded, image.refused_expected),
            (3, 1, 1)
        );
        assert_eq!(image.failed, BTreeMap::from([("model_error".into(), 1)]));
        assert_eq!(rows[2].failed, BTreeMap::from([("transport".into(), 1)]));
        let training = &rows[3];
        assert_eq!((training.submissions, training.succeeded), (2, 1));
        assert_eq!(training.failed, BTreeMap::from([("model_error".into(), 1)]));
        assert!(
            (training.latency.p50_ms - 2000.0).abs() < 2.0,
            "{training:?}"
        );
        let end = &rows[4];
        assert_eq!((end.submissions, end.succeeded), (2, 1));
        assert_eq!(end.failed, BTreeMap::from([("unavailable".into(), 1)]));
        assert!((end.latency.p99_ms - 40.0).abs() < 0.1, "{end:?}");

        let counts = super::sessions(&sessions);
        assert_eq!(
            (counts.flows, counts.created, counts.trained, counts.ended),
            (2, 2, 1, 1)
        );
        assert_eq!((counts.completed, counts.jobs_succeeded), (1, 1));
        assert_eq!(counts.deleted_objects, 3);
        assert_eq!(counts.unexpected_errors(), 2);
        assert_eq!(
            counts.failed,
            BTreeMap::from([
                ("end unavailable".into(), 1),
                ("training model_error".into(), 1)
            ])
        );
        assert_eq!(counts.job_end_to_end.count, 1);
    }

    #[test]
    fn no_sessions_no_session_rows() {
        let records = vec![record(
            "noop@1",
            0,
            accepted(ended("video", "succeeded", 10)),
        )];
        let rows = by_kind(&records, &[]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].kind, "video");
    }
}
