//! The janitor's counters, rendered in the Prometheus text format for `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::execute::SweepReport;
use crate::plan::Rule;

/// Counters since the process started. A `std` mutex: never held across an `.await`.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    deleted: BTreeMap<Rule, u64>,
    failures: u64,
    sweeps: u64,
    sweep_errors: u64,
    not_leader: u64,
    recovered: u64,
    last_sweep_seconds: f64,
    sweep_seconds_sum: f64,
    last_success_unix_ms: u64,
}

impl Metrics {
    /// Counts a finished sweep.
    pub fn record_sweep(&self, report: &SweepReport, took: Duration, at_unix_ms: u64) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (rule, n) in &report.deleted {
            *inner.deleted.entry(*rule).or_default() += n;
        }
        inner.failures += report.failures;
        inner.recovered += report.recovered;
        inner.sweeps += 1;
        inner.last_sweep_seconds = took.as_secs_f64();
        inner.sweep_seconds_sum += took.as_secs_f64();
        inner.last_success_unix_ms = at_unix_ms;
    }

    /// Counts a sweep that could not start or gather (a backend down).
    pub fn record_error(&self) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.sweep_errors += 1;
    }

    /// Counts a sweep skipped because another janitor leads.
    pub fn record_not_leader(&self) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.not_leader += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP clipfleet_janitor_deleted_total Objects and rows deleted and verified, by rule."
        );
        let _ = writeln!(out, "# TYPE clipfleet_janitor_deleted_total counter");
        for rule in Rule::ALL {
            let n = inner.deleted.get(&rule).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "clipfleet_janitor_deleted_total{{rule=\"{}\"}} {n}",
                rule.as_str()
            );
        }
        let counters = [
            (
                "failures_total",
                "Deletions or steps that failed (retried next sweep).",
                inner.failures,
            ),
            ("sweeps_total", "Sweeps finished.", inner.sweeps),
            (
                "sweep_errors_total",
                "Sweeps that could not run (a backend down).",
                inner.sweep_errors,
            ),
            (
                "not_leader_total",
                "Sweeps skipped: another janitor holds the lock.",
                inner.not_leader,
            ),
            (
                "recovered_total",
                "Unverified deletions of an interrupted sweep confirmed.",
                inner.recovered,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP clipfleet_janitor_{name} {help}");
            let _ = writeln!(out, "# TYPE clipfleet_janitor_{name} counter");
            let _ = writeln!(out, "clipfleet_janitor_{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP clipfleet_janitor_sweep_duration_seconds Wall time of sweeps."
        );
        let _ = writeln!(
            out,
            "# TYPE clipfleet_janitor_sweep_duration_seconds summary"
        );
        let _ = writeln!(
            out,
            "clipfleet_janitor_sweep_duration_seconds_sum {}",
            inner.sweep_seconds_sum
        );
        let _ = writeln!(
            out,
            "clipfleet_janitor_sweep_duration_seconds_count {}",
            inner.sweeps
        );
        let _ = writeln!(
            out,
            "# HELP clipfleet_janitor_last_sweep_duration_seconds Wall time of the latest sweep."
        );
        let _ = writeln!(
            out,
            "# TYPE clipfleet_janitor_last_sweep_duration_seconds gauge"
        );
        let _ = writeln!(
            out,
            "clipfleet_janitor_last_sweep_duration_seconds {}",
            inner.last_sweep_seconds
        );
        let _ = writeln!(
            out,
            "# HELP clipfleet_janitor_last_success_timestamp_seconds When the latest sweep finished."
        );
        let _ = writeln!(
            out,
            "# TYPE clipfleet_janitor_last_success_timestamp_seconds gauge"
        );
        let _ = writeln!(
            out,
            "clipfleet_janitor_last_success_timestamp_seconds {}",
            inner.last_success_unix_ms / 1000
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_show_up_by_rule() {
        let metrics = Metrics::default();
        let mut report = SweepReport::default();
        report.deleted.insert(Rule::OrphanPhoto, 3);
        report.failures = 1;
        metrics.record_sweep(&report, Duration::from_millis(1500), 1_000_000);
        let text = metrics.render();
        assert!(
            text.contains("clipfleet_janitor_deleted_total{rule=\"orphan_photo\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("clipfleet_janitor_deleted_total{rule=\"under_age\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("clipfleet_janitor_failures_total 1"),
            "{text}"
        );
        assert!(
            text.contains("clipfleet_janitor_sweep_duration_seconds_count 1"),
            "{text}"
        );
    }
}
