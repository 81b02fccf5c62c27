//! The report of a run: what `--report` writes as JSON, the table printed at the end, and the
//! exit code a CI job can trust.

use std::fmt::Write as _;

use serde::Serialize;

use crate::invariants::{InvariantResult, Violation};
use crate::kinds::{KindStats, SessionCounts};
use crate::stats::{Bucket, Counts, Latencies, LatencySummary, Throughput};

/// How `clip-loadtest` exits. Stable: CI scripts match on these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// 0: every invariant held and errors stayed within `--max-error-share`.
    Passed,
    /// 1: the test could not run (fleet did not start, ingest unreachable, bad options).
    Setup,
    /// 2: the command line is wrong (clap's own code for usage errors).
    Usage,
    /// 3: an invariant was violated (listed in the report).
    Violations,
    /// 4: more unexpected errors than `--max-error-share` allows (refusals with an unexpected
    /// code, transport errors, failed or stuck jobs, bad inputs accepted).
    Errors,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Passed => 0,
            Exit::Setup => 1,
            Exit::Usage => 2,
            Exit::Violations => 3,
            Exit::Errors => 4,
        }
    }
}

/// Everything a run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The fleet under test (`embedded` or the ingest URL) and the model asked for.
    pub target: String,
    /// How load arrived (`open loop 20/s poisson`, `closed loop 8 in flight`).
    pub load: String,
    /// Seed of arrivals and input mix.
    pub seed: u64,
    /// From the start to the last job's end (or the wait's bound).
    pub elapsed_s: f64,
    /// From the start to the last scheduled submission.
    pub submitting_s: f64,
    /// Submissions by outcome and error code.
    pub counts: Counts,
    /// Rates.
    pub throughput: Throughput,
    /// Latency distributions.
    pub latency: Latencies,
    /// Per kind of work: `video` and `image` jobs, session trainings (`personalize`) and
    /// session ends (`session_end`); only the kinds the run asked for.
    pub kinds: Vec<KindStats>,
    /// The session flows (all zero without `--session-share`).
    pub sessions: SessionCounts,
    /// Width of a timeline bucket, seconds.
    pub bucket_s: f64,
    /// Per time bucket: submissions, successes, e2e p50/p99 (the SVG's data).
    pub timeline: Vec<Bucket>,
    /// Each invariant's outcome.
    pub invariants: Vec<InvariantResult>,
    /// The jobs that broke one (at most 50 listed per invariant; all counted above).
    pub violations: Vec<Violation>,
    /// Unexpected errors over submissions (a session flow's failed steps count as errors, and
    /// each flow as one more attempt, besides its job).
    pub error_share: f64,
    /// The share allowed.
    pub max_error_share: f64,
    /// How the run ends.
    pub exit: Exit,
    /// The process exit code of `exit`.
    pub exit_code: u8,
}

impl Report {
    /// The exit a run with these findings earns: violations first, then errors.
    pub(crate) fn judge(invariants: &[InvariantResult], error_share: f64, max: f64) -> Exit {
        if invariants.iter().any(|i| !i.held()) {
            Exit::Violations
        } else if error_share > max {
            Exit::Errors
        } else {
            Exit::Passed
        }
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.exit == Exit::Passed
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.counts;
        let _ = writeln!(
            out,
            "clip-loadtest: {} submissions in {:.1} s against {}, {}",
            c.sent, self.elapsed_s, self.target, self.load
        );
        let _ = writeln!(out);
        let rows: [(&str, u64, String); 8] = [
            ("sent", c.sent, by_code(&c.sent_by_input)),
            ("accepted", c.accepted, String::new()),
            ("succeeded", c.succeeded, String::new()),
            (
                "refused, expected",
                sum(&c.refused_expected),
                by_code(&c.refused_expected),
            ),
            (
                "refused, unexpected",
                sum(&c.refused_unexpected),
                by_code(&c.refused_unexpected),
            ),
            ("jobs failed", sum(&c.jobs_failed), by_code(&c.jobs_failed)),
            ("jobs stuck", c.stuck, String::new()),
            ("transport errors", c.transport_errors, String::new()),
        ];
        for (name, count, detail) in rows {
            let _ = writeln!(out, "  {name:<22}{count:>8}  {detail}");
        }
        if let Some(error) = &c.first_transport_error {
            let _ = writeln!(out, "  {:<30}{error}", "first transport error");
        }
        if c.bad_accepted > 0 {
            let _ = writeln!(out, "  {:<22}{:>8}", "bad inputs accepted", c.bad_accepted);
        }
        let t = &self.throughput;
        let _ = writeln!(
            out,
            "  throughput            {:.2} jobs/s succeeded (offered {:.2}/s, accepted {:.2}/s)",
            t.succeeded_per_s, t.offered_per_s, t.accepted_per_s
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<14}{:>8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        for (name, l) in [
            ("submit", &self.latency.submit),
            ("end-to-end", &self.latency.end_to_end),
        ] {
            let _ = writeln!(out, "  {name:<14}{}", latency_row(l));
        }
        self.kinds_table(&mut out);
        let _ = writeln!(out);
        let _ = writeln!(out, "  invariants");
        for i in &self.invariants {
            let verdict = match (&i.skipped, i.violations) {
                (Some(why), _) => format!("skipped: {why}"),
                (None, 0) => "ok".to_owned(),
                (None, n) => format!("VIOLATED by {n}"),
            };
            let _ = writeln!(
                out,
                "    {:<52}{:>6} checked  {verdict}",
                i.description, i.checked
            );
        }
        for v in self.violations.iter().take(20) {
            let _ = writeln!(out, "    ! {} {}: {}", v.invariant, v.job_id, v.detail);
        }
        if self.violations.len() > 20 {
            let _ = writeln!(
                out,
                "    ! … {} more in the JSON report",
                self.violations.len() - 20
            );
        }
        let _ = writeln!(out);
        let verdict = match self.exit {
            Exit::Passed => "passed",
            Exit::Violations => "FAILED: invariants violated",
            Exit::Errors => "FAILED: too many unexpected errors",
            Exit::Setup | Exit::Usage => "FAILED",
        };
        let _ = writeln!(
            out,
            "result: {verdict} (unexpected errors {:.2} % of submissions, {:.2} % allowed; exit {})",
            self.error_share * 100.0,
            self.max_error_share * 100.0,
            self.exit.code()
        );
        out
    }
}

impl Report {
    /// The per-kind rows and the session flows' line, when the run has more than one kind or
    /// any session flow.
    fn kinds_table(&self, out: &mut String) {
        let only_jobs_of_one_kind = self.kinds.len() <= 1 && self.sessions.flows == 0;
        if only_jobs_of_one_kind {
            return;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<14}{:>8}{:>8}{:>10}{:>10}{:>10}  failed",
            "by kind", "sent", "ok", "ok/s", "p50 ms", "p99 ms"
        );
        for kind in &self.kinds {
            let label = kind.kind.replace('_', " ");
            let _ = writeln!(
                out,
                "  {label:<14}{:>8}{:>8}{:>10.2}{:>10.1}{:>10.1}  {}",
                kind.submissions,
                kind.succeeded,
                kind.succeeded_per_s,
                kind.latency.p50_ms,
                kind.latency.p99_ms,
                by_code(&kind.failed)
            );
        }
        let s = &self.sessions;
        if s.flows > 0 {
            let _ = writeln!(
                out,
                "  session flows {}: {} created, {} trained, {} jobs succeeded, {} ended ({} \
                 objects deleted), {} completed{}",
                s.flows,
                s.created,
                s.trained,
                s.jobs_succeeded,
                s.ended,
                s.deleted_objects,
                s.completed,
                if s.failed.is_empty() {
                    String::new()
                } else {
                    format!("; failed: {}", by_code(&s.failed))
                }
            );
            let e2e = &s.job_end_to_end;
            let _ = writeln!(
                out,
                "  session jobs  end-to-end p50 {:.1} ms, p99 {:.1} ms ({} succeeded)",
                e2e.p50_ms, e2e.p99_ms, e2e.count
            );
        }
    }
}

fn sum(map: &std::collections::BTreeMap<String, u64>) -> u64 {
    map.values().sum()
}

fn by_code(map: &std::collections::BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn latency_row(l: &LatencySummary) -> String {
    format!(
        "{:>8}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}",
        l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invariant(violations: u64) -> InvariantResult {
        InvariantResult {
            name: "terminal",
            description: "every accepted job reached a terminal state",
            checked: 10,
            violations,
            skipped: None,
        }
    }

    #[test]
    fn violations_outrank_errors() {
        assert_eq!(Report::judge(&[invariant(0)], 0.0, 0.0), Exit::Passed);
        assert_eq!(Report::judge(&[invariant(0)], 0.1, 0.0), Exit::Errors);
        assert_eq!(Report::judge(&[invariant(0)], 0.1, 0.2), Exit::Passed);
        assert_eq!(Report::judge(&[invariant(1)], 0.1, 0.0), Exit::Violations);
        assert_eq!(Exit::Violations.code(), 3);
    }
}
