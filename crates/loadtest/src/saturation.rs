//! `--saturation`: the rate a fleet sustains, found by stepping the open-loop rate up until the
//! fleet falls behind and bisecting the last interval, and then the latency at a share (80 %) of
//! that rate: the number an operator sizes a fleet by, which a single load test at a guessed
//! rate cannot give.
//!
//! A step *keeps up* when every accepted job succeeded and no backlog built during it: the
//! end-to-end median of the jobs that finished in the last third of the submitting window is at
//! most twice that of the first third plus half a second. A fleet past its rate queues work, so
//! the later jobs wait longer and longer; one within it serves the last jobs as fast as the
//! first. Each step is a whole load test (a fresh embedded fleet when embedded), so steps do
//! not inherit each other's backlog.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use tracing::info;

use crate::options::{Arrivals, Load, Options, Stop};
use crate::report::{Exit, Report};
use crate::stats::Bucket;

/// How the search runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SaturationPlan {
    /// The first step's rate (jobs/s).
    pub start_rate: f64,
    /// Each step's rate over the previous one's while the fleet keeps up.
    pub growth: f64,
    /// How long each step submits.
    pub step: Duration,
    /// Steps up at most (the search ends at the first step that falls behind).
    pub max_steps: usize,
    /// Bisection steps between the last rate kept up with and the first one not.
    pub refine: usize,
    /// The share of the saturation rate the latency is measured at.
    pub measure_at: f64,
}

impl Default for SaturationPlan {
    fn default() -> SaturationPlan {
        SaturationPlan {
            start_rate: 2.0,
            growth: 1.5,
            step: Duration::from_secs(20),
            max_steps: 12,
            refine: 2,
            measure_at: 0.8,
        }
    }
}

/// One step of the search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The rate offered (jobs/s).
    pub offered_per_s: f64,
    /// Jobs succeeded per second from the start to the last success.
    pub succeeded_per_s: f64,
    /// Accepted jobs that did not succeed.
    pub not_succeeded: u64,
    /// End-to-end median of the jobs finished in the first and the last third of the window (ms).
    pub head_p50_ms: Option<f64>,
    /// (see `head_p50_ms`)
    pub tail_p50_ms: Option<f64>,
    /// End-to-end p99 over the step (ms).
    pub e2e_p99_ms: f64,
    /// Whether the fleet kept up (see the module docs).
    pub kept_up: bool,
}

/// What the search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SaturationReport {
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    /// The highest rate kept up with (jobs/s); `None` when not even the first step was.
    pub saturation_per_s: Option<f64>,
    /// Whether the search hit `max_steps` without the fleet falling behind (the saturation rate
    /// is then a lower bound).
    pub lower_bound: bool,
    /// The rate of the measured run (`measure_at` × saturation).
    pub measured_at_per_s: Option<f64>,
    /// The measured run's report.
    pub measured: Option<Report>,
}

impl SaturationReport {
    /// The exit code: the measured run's, or `Errors` when no rate was kept up with.
    pub fn exit(&self) -> Exit {
        match &self.measured {
            Some(report) => report.exit,
            None => Exit::Errors,
        }
    }

    /// The steps, the saturation rate and the latency at the measured share of it.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>12}{:>14}{:>10}{:>14}{:>14}{:>12}  kept up",
            "offered/s", "succeeded/s", "failed", "head p50 ms", "tail p50 ms", "e2e p99 ms"
        );
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        for step in &self.steps {
            let _ = writeln!(
                out,
                "{:>12.2}{:>14.2}{:>10}{:>14}{:>14}{:>12.0}  {}",
                step.offered_per_s,
                step.succeeded_per_s,
                step.not_succeeded,
                ms(step.head_p50_ms),
                ms(step.tail_p50_ms),
                step.e2e_p99_ms,
                if step.kept_up { "yes" } else { "no" }
            );
        }
        match (
            self.saturation_per_s,
            &self.measured,
            self.measured_at_per_s,
        ) {
            (Some(rate), Some(report), Some(at)) => {
                let l = &report.latency;
                let _ = writeln!(
                    out,
                    "\nsaturation: {rate:.2} jobs/s{}; at {at:.2} jobs/s ({:.0} %): end-to-end p50 {:.0} ms, p99 {:.0} ms; submit p50 {:.1} ms, p99 {:.1} ms; {} of {} accepted jobs succeeded",
                    if self.lower_bound {
                        " (at least: the last step still kept up)"
                    } else {
                        ""
                    },
                    100.0 * at / rate,
                    l.end_to_end.p50_ms,
                    l.end_to_end.p99_ms,
                    l.submit.p50_ms,
                    l.submit.p99_ms,
                    report.counts.succeeded,
                    report.counts.accepted
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "\nsaturation: not even the first rate was kept up with"
                );
            }
        }
        out
    }
}

/// Whether a run kept up, and its step row.
fn judge_step(report: &Report) -> Step {
    let window = report.submitting_s.max(report.bucket_s);
    let third = |from: f64, to: f64| -> Option<f64> {
        let picked: Vec<&Bucket> = report
            .timeline
            .iter()
            .filter(|b| b.start_s >= from && b.start_s < to && b.succeeded > 0)
            .collect();
        let jobs: u64 = picked.iter().map(|b| b.succeeded).sum();
        (jobs > 0).then(|| {
            picked
                .iter()
                .filter_map(|b| b.e2e_p50_ms.map(|p| p * b.succeeded as f64))
                .sum::<f64>()
                / jobs as f64
        })
    };
    let head = third(0.0, window / 3.0);
    let tail = third(2.0 * window / 3.0, window);
    let not_succeeded = report.counts.accepted - report.counts.succeeded;
    let no_backlog = match (head, tail) {
        (Some(head), Some(tail)) => tail <= 2.0 * head + 500.0,
        // Nothing finished late in the window: the fleet is behind.
        (Some(_), None) | (None, None) => false,
        (None, Some(_)) => false,
    };
    Step {
        offered_per_s: report.throughput.offered_per_s,
        succeeded_per_s: report.throughput.succeeded_per_s,
        not_succeeded,
        head_p50_ms: head,
        tail_p50_ms: tail,
        e2e_p99_ms: report.latency.end_to_end.p99_ms,
        kept_up: not_succeeded == 0 && no_backlog,
    }
}

fn at_rate(options: &Options, rate: f64, length: Duration) -> Options {
    let mut step = options.clone();
    step.load = Load::Rate {
        per_second: rate,
        arrivals: match options.load {
            Load::Rate { arrivals, .. } => arrivals,
            Load::Concurrency(_) => Arrivals::Poisson,
        },
    };
    step.stop = Stop {
        jobs: None,
        duration: Some(length),
    };
    step
}

/// Runs the search with `options` as the template of every step (its target, mix, model and
/// checks; its load and stop are the search's), then the measured run.
pub async fn find_saturation(
    options: &Options,
    plan: &SaturationPlan,
) -> anyhow::Result<SaturationReport> {
    anyhow::ensure!(
        plan.start_rate > 0.0 && plan.growth > 1.0,
        "the search needs a positive start rate and a growth above 1"
    );
    let mut steps = Vec::new();
    let run_step = |rate: f64| {
        let options = at_rate(options, rate, plan.step);
        async move {
            info!(rate, "saturation step");
            let report = crate::run(options).await?;
            let mut step = judge_step(&report);
            step.offered_per_s = rate;
            info!(rate, kept_up = step.kept_up, "saturation step done");
            anyhow::Ok(step)
        }
    };
    let (mut kept, mut behind) = (None::<f64>, None::<f64>);
    let mut rate = plan.start_rate;
    for _ in 0..plan.max_steps {
        let step = run_step(rate).await?;
        let kept_up = step.kept_up;
        steps.push(step);
        if kept_up {
            kept = Some(rate);
            rate *= plan.growth;
        } else {
            behind = Some(rate);
            break;
        }
    }
    if let (Some(_), Some(_)) = (kept, behind) {
        for _ in 0..plan.refine {
            let (Some(lo), Some(hi)) = (kept, behind) else {
                break;
            };
            let mid = (lo * hi).sqrt();
            let step = run_step(mid).await?;
            let kept_up = step.kept_up;
            steps.push(step);
            if kept_up {
                kept = Some(mid);
            } else {
                behind = Some(mid);
            }
        }
    }
    let Some(saturation) = kept else {
        return Ok(SaturationReport {
            steps,
            saturation_per_s: None,
            lower_bound: false,
            measured_at_per_s: None,
            measured: None,
        });
    };
    let at = saturation * plan.measure_at;
    info!(saturation, at, "measuring latency below saturation");
    let measured = crate::run(at_rate(options, at, plan.step.mul_f64(1.5))).await?;
    Ok(SaturationReport {
        steps,
        saturation_per_s: Some(saturation),
        lower_bound: behind.is_none(),
        measured_at_per_s: Some(at),
        measured: Some(measured),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Counts, Latencies, Throughput};

    fn report(buckets: &[(f64, u64, f64)], accepted: u64, succeeded: u64) -> Report {
        Report {
            target: "t".into(),
            load: "l".into(),
            seed: 1,
            elapsed_s: 31.0,
            submitting_s: 30.0,
            counts: Counts {
                accepted,
                succeeded,
                ..Counts::default()
            },
            throughput: Throughput::default(),
            latency: Latencies::default(),
            kinds: Vec::new(),
            sessions: crate::kinds::SessionCounts::default(),
            bucket_s: 1.0,
            timeline: buckets
                .iter()
                .map(|&(start_s, succeeded, p50)| Bucket {
                    start_s,
                    submitted: succeeded,
                    succeeded,
                    e2e_p50_ms: Some(p50),
                    e2e_p99_ms: Some(p50),
                })
                .collect(),
            invariants: Vec::new(),
            violations: Vec::new(),
            error_share: 0.0,
            max_error_share: 0.0,
            exit: Exit::Passed,
            exit_code: 0,
        }
    }

    #[test]
    fn a_growing_backlog_is_falling_behind() {
        let steady: Vec<_> = (0..30).map(|s| (f64::from(s), 5, 300.0)).collect();
        assert!(judge_step(&report(&steady, 150, 150)).kept_up);
        let growing: Vec<_> = (0..30)
            .map(|s| (f64::from(s), 5, 300.0 + 200.0 * f64::from(s)))
            .collect();
        let step = judge_step(&report(&growing, 150, 150));
        assert!(!step.kept_up, "{step:?}");
        assert!(step.tail_p50_ms > step.head_p50_ms);
        assert!(
            !judge_step(&report(&steady, 150, 149)).kept_up,
            "a job failed"
        );
        // Nothing finished in the last third: behind.
        let stalled: Vec<_> = (0..15).map(|s| (f64::from(s), 5, 300.0)).collect();
        assert!(!judge_step(&report(&stalled, 150, 150)).kept_up);
    }
}
