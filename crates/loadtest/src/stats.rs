//! The numbers of a run, made from its records once the load is over: counts by outcome and
//! error code, HDR latency histograms, throughput, and the timeline plotted in the SVG.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::drive::{End, JobRecord, Outcome};

/// What happened to the submissions, by outcome and code.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Submissions made.
    pub sent: u64,
    /// Submissions per input of the mix (`jpeg 640x480`, `truncated jpeg`, …).
    pub sent_by_input: BTreeMap<String, u64>,
    /// Answered `202`.
    pub accepted: u64,
    /// Accepted jobs that ended `succeeded`.
    pub succeeded: u64,
    /// Bad inputs refused with the code they must get, by code.
    pub refused_expected: BTreeMap<String, u64>,
    /// Refusals with any other code (a photo refused, a bad input refused for the wrong
    /// reason), by code.
    pub refused_unexpected: BTreeMap<String, u64>,
    /// Bad inputs that were accepted.
    pub bad_accepted: u64,
    /// Submissions without an API answer.
    pub transport_errors: u64,
    /// The first of those errors, as a hint to what went wrong.
    pub first_transport_error: Option<String>,
    /// Accepted jobs that ended other than `succeeded`, by error code (or status).
    pub jobs_failed: BTreeMap<String, u64>,
    /// Accepted jobs still not ended when the wait ran out.
    pub stuck: u64,
}

impl Counts {
    /// Submissions that ended in an error nobody asked for.
    pub fn unexpected_errors(&self) -> u64 {
        self.refused_unexpected.values().sum::<u64>()
            + self.bad_accepted
            + self.transport_errors
            + self.jobs_failed.values().sum::<u64>()
            + self.stuck
    }
}

/// A latency distribution (milliseconds; from an HDR histogram with 3 significant digits).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Latencies of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latencies {
    /// Scheduled start of a submission to ingest's answer (every answered submission).
    pub submit: LatencySummary,
    /// Scheduled start of a submission to its job's `finished` (succeeded jobs).
    pub end_to_end: LatencySummary,
}

/// Rates over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// Submissions per second over the submitting window.
    pub offered_per_s: f64,
    /// Accepted submissions per second over the submitting window.
    pub accepted_per_s: f64,
    /// Succeeded jobs per second from the start to the last success.
    pub succeeded_per_s: f64,
}

/// One time bucket of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket, seconds from the start of the run.
    pub start_s: f64,
    /// Submissions scheduled in it.
    pub submitted: u64,
    /// Jobs that finished successfully in it.
    pub succeeded: u64,
    /// Median end-to-end latency of those jobs.
    pub e2e_p50_ms: Option<f64>,
    /// 99th percentile end-to-end latency of those jobs.
    pub e2e_p99_ms: Option<f64>,
}

/// Everything [`summarize`] works out.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub counts: Counts,
    pub latency: Latencies,
    pub throughput: Throughput,
    pub timeline: Vec<Bucket>,
    /// From the start to the last scheduled submission.
    pub submitting: Duration,
}

/// Latencies in microseconds from 1 µs to an hour.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

pub(crate) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

pub(crate) fn summary(histogram: &Histogram<u64>) -> LatencySummary {
    if histogram.is_empty() {
        return LatencySummary::default();
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    LatencySummary {
        count: histogram.len(),
        mean_ms: histogram.mean() / 1000.0,
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p90_ms: ms(histogram.value_at_quantile(0.90)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        p999_ms: ms(histogram.value_at_quantile(0.999)),
        max_ms: ms(histogram.max()),
    }
}

/// The numbers of `records`, with a timeline in buckets of `bucket`.
pub(crate) fn summarize(records: &[JobRecord], bucket: Duration) -> Summary {
    let mut counts = Counts::default();
    let mut submit = histogram();
    let mut e2e = histogram();
    let mut completions: Vec<(Duration, Duration)> = Vec::new();
    let mut submitting = Duration::ZERO;
    for record in records {
        counts.sent += 1;
        *counts
            .sent_by_input
            .entry(record.input.clone())
            .or_default() += 1;
        submitting = submitting.max(record.scheduled);
        if !matches!(record.outcome, Outcome::Transport(_)) {
            submit.saturating_record(micros(record.submit_latency).max(1));
        }
        match &record.outcome {
            Outcome::Transport(error) => {
                counts.transport_errors += 1;
                counts
                    .first_transport_error
                    .get_or_insert_with(|| error.clone());
            }
            Outcome::Refused { code } => {
                let by_code = if record.expect == Some(*code) {
                    &mut counts.refused_expected
                } else {
                    &mut counts.refused_unexpected
                };
                *by_code.entry(code.as_str().to_owned()).or_default() += 1;
            }
            Outcome::Accepted { end, .. } => {
                counts.accepted += 1;
                if record.expect.is_some() {
                    counts.bad_accepted += 1;
                }
                match end {
                    End::Terminal {
                        status, e2e: took, ..
                    } if status.status == "succeeded" => {
                        counts.succeeded += 1;
                        e2e.saturating_record(micros(*took).max(1));
                        completions.push((record.scheduled + *took, *took));
                    }
                    End::Terminal { status, .. } => {
                        let code = status
                            .error_code()
                            .map_or_else(|| status.status.clone(), |c| c.as_str().to_owned());
                        *counts.jobs_failed.entry(code).or_default() += 1;
                    }
                    End::Stuck { .. } => counts.stuck += 1,
                }
            }
        }
    }
    let window = submitting.as_secs_f64().max(1e-3);
    let last_success = completions.iter().map(|(at, _)| *at).max();
    let throughput = Throughput {
        offered_per_s: counts.sent as f64 / window,
        accepted_per_s: counts.accepted as f64 / window,
        succeeded_per_s: last_success.map_or(0.0, |at| {
            counts.succeeded as f64 / at.as_secs_f64().max(1e-3)
        }),
    };
    Summary {
        timeline: timeline(records, &completions, bucket),
        latency: Latencies {
            submit: summary(&submit),
            end_to_end: summary(&e2e),
        },
        counts,
        throughput,
        submitting,
    }
}

/// Submissions and successes per bucket, with the e2e quantiles of the jobs finished in each.
fn timeline(
    records: &[JobRecord],
    completions: &[(Duration, Duration)],
    bucket: Duration,
) -> Vec<Bucket> {
    let width = bucket.as_secs_f64().max(1e-3);
    let index = |at: Duration| (at.as_secs_f64() / width) as usize;
    let last = records
        .iter()
        .map(|record| record.scheduled)
        .chain(completions.iter().map(|(at, _)| *at))
        .max();
    let Some(last) = last else {
        return Vec::new();
    };
    let mut submitted = vec![0u64; index(last) + 1];
    let mut finished: Vec<Vec<Duration>> = vec![Vec::new(); submitted.len()];
    for record in records {
        submitted[index(record.scheduled)] += 1;
    }
    for (at, took) in completions {
        finished[index(*at)].push(*took);
    }
    submitted
        .into_iter()
        .zip(finished)
        .enumerate()
        .map(|(i, (submitted, mut took))| {
            took.sort_unstable();
            Bucket {
                start_s: i as f64 * width,
                submitted,
                succeeded: took.len() as u64,
                e2e_p50_ms: nearest_rank(&took, 0.50),
                e2e_p99_ms: nearest_rank(&took, 0.99),
            }
        })
        .collect()
}

/// The nearest-rank quantile of sorted `values`, in milliseconds.
fn nearest_rank(sorted: &[Duration], quantile: f64) -> Option<f64> {
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).map(|d| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use clipfleet_proto::ErrorCode;
    use serde_json::json;

    use super::*;

    fn record(at_ms: u64, expect: Option<ErrorCode>, outcome: Outcome) -> JobRecord {
        JobRecord {
            input: if expect.is_some() {
                "truncated jpeg"
            } else {
                "jpeg 64x48"
            }
            .into(),
            expect,
            model: None,
            scheduled: Duration::from_millis(at_ms),
            submit_latency: Duration::from_millis(20),
            outcome,
        }
    }

    fn ended(status: &str, error: Option<&str>, e2e_ms: u64) -> Outcome {
        let status = json!({
            "job_id": "j", "status": status, "submitted_at_ms": 1,
            "error": error.map(|code| json!({"code": code, "message": "m"})),
        });
        Outcome::Accepted {
            job_id: "j".into(),
            end: End::Terminal {
                status: Box::new(serde_json::from_value(status).expect("a job status")),
                seen: Duration::from_millis(e2e_ms),
                e2e: Duration::from_millis(e2e_ms),
                video: None,
            },
        }
    }

    #[test]
    fn every_outcome_is_counted_once_by_code() {
        let bad = Some(ErrorCode::BadImage);
        let records = vec![
            record(0, None, ended("succeeded", None, 1500)),
            record(100, None, ended("succeeded", None, 2500)),
            record(200, None, ended("failed", Some("model_error"), 900)),
            record(
                300,
                bad,
                Outcome::Refused {
                    code: ErrorCode::BadImage,
                },
            ),
            record(
                400,
                bad,
                Outcome::Refused {
                    code: ErrorCode::TooLarge,
                },
            ),
            record(
                500,
                None,
                Outcome::Refused {
                    code: ErrorCode::Overloaded,
                },
            ),
            record(600, bad, ended("failed", Some("bad_image"), 700)),
            record(700, None, Outcome::Transport("reset".into())),
            record(
                1200,
                None,
                Outcome::Accepted {
                    job_id: "k".into(),
                    end: End::Stuck {
                        last_status: Some("queued".into()),
                        last_kind: None,
                        last_error: None,
                    },
                },
            ),
        ];
        let s = summarize(&records, Duration::from_secs(1));
        let c = &s.counts;
        assert_eq!((c.sent, c.accepted, c.succeeded, c.stuck), (9, 5, 2, 1));
        assert_eq!(
            c.refused_expected,
            BTreeMap::from([("bad_image".into(), 1)])
        );
        assert_eq!(
            c.refused_unexpected,
            BTreeMap::from([("overloaded".into(), 1), ("too_large".into(), 1)])
        );
        assert_eq!(
            c.jobs_failed,
            BTreeMap::from([("bad_image".into(), 1), ("model_error".into(), 1)])
        );
        assert_eq!((c.bad_accepted, c.transport_errors), (1, 1));
        assert_eq!(c.first_transport_error.as_deref(), Some("reset"));
        // 2 unexpected refusals, 1 bad input accepted (which also failed), 1 transport, 1 stuck.
        assert_eq!(c.unexpected_errors(), 2 + 1 + 1 + 2 + 1);
        assert_eq!(s.latency.submit.count, 8);
        assert_eq!(s.latency.end_to_end.count, 2);
        assert_eq!(s.submitting, Duration::from_millis(1200));
        // Successes land in the buckets where they finished: 1.5 s and 2.6 s.
        let done: Vec<u64> = s.timeline.iter().map(|b| b.succeeded).collect();
        assert_eq!(done, vec![0, 1, 1]);
        assert_eq!(s.timeline.iter().map(|b| b.submitted).sum::<u64>(), 9);
        assert_eq!(s.timeline[1].e2e_p50_ms, Some(1500.0));
    }

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(nearest_rank(&values, 0.5), Some(50.0));
        assert_eq!(nearest_rank(&values, 0.99), Some(99.0));
        assert_eq!(nearest_rank(&values[..1], 0.99), Some(1.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }

    #[test]
    fn histogram_summary_in_milliseconds() {
        let mut h = histogram();
        for ms in 1..=1000u64 {
            h.saturating_record(ms * 1000);
        }
        let s = summary(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() < 1.0, "{s:?}");
    }
}
