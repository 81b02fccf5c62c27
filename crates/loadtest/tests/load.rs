//! Load tests against the embedded fleet: the CI run (200 jobs, every invariant must hold and
//! the numbers must add up) and proof that the checker catches a fleet breaking its promise.

use std::time::Duration;

use clipfleet_loadtest::{
    Arrivals, EmbeddedFleet, Exit, Load, Options, PhotoSize, Report, Target, render_svg, run,
};

fn small_photos() -> Vec<PhotoSize> {
    vec![
        PhotoSize {
            width: 320,
            height: 240,
        },
        PhotoSize {
            width: 640,
            height: 480,
        },
    ]
}

fn sum(map: &std::collections::BTreeMap<String, u64>) -> u64 {
    map.values().sum()
}

/// Every submission is counted exactly once, and the views of the run agree.
fn assert_counts_add_up(report: &Report) {
    let c = &report.counts;
    assert_eq!(
        c.accepted + sum(&c.refused_expected) + sum(&c.refused_unexpected) + c.transport_errors,
        c.sent,
        "{c:?}"
    );
    assert_eq!(
        c.succeeded + sum(&c.jobs_failed) + c.stuck,
        c.accepted,
        "{c:?}"
    );
    assert_eq!(sum(&c.sent_by_input), c.sent, "{c:?}");
    assert_eq!(report.latency.submit.count, c.sent - c.transport_errors);
    assert_eq!(report.latency.end_to_end.count, c.succeeded);
    let timeline_sent: u64 = report.timeline.iter().map(|b| b.submitted).sum();
    let timeline_done: u64 = report.timeline.iter().map(|b| b.succeeded).sum();
    assert_eq!((timeline_sent, timeline_done), (c.sent, c.succeeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_jobs_keep_every_invariant() -> anyhow::Result<()> {
    let mut options = Options::embedded_defaults();
    // A little over what the debug-built embedded fleet sustains on two cores (~3-4 jobs/s):
    // the fleet is the bottleneck, and a backlog builds without hiding any latency.
    options.target = Target::Embedded(EmbeddedFleet {
        output_ttl: Duration::from_secs(3),
        ..EmbeddedFleet::default()
    });
    options.load = Load::Rate {
        per_second: 5.0,
        arrivals: Arrivals::Poisson,
    };
    options.stop.jobs = Some(200);
    options.mix.sizes = small_photos();
    let report = run(options).await?;
    let table = report.table();
    assert!(report.passed(), "{table}");
    assert_eq!(report.exit, Exit::Passed);
    assert_counts_add_up(&report);
    let c = &report.counts;
    assert_eq!(c.sent, 200, "{table}");
    assert_eq!(c.succeeded, c.accepted, "{table}");
    // With 5 % bad inputs at this seed some are sent, and every one is refused as it must be.
    assert!(sum(&c.refused_expected) > 0, "{table}");
    assert_eq!(c.unexpected_errors(), 0, "{table}");
    for invariant in &report.invariants {
        assert_eq!(invariant.skipped, None, "{table}");
        assert!(invariant.checked > 0, "{table}");
    }
    let checked = |name: &str| {
        report
            .invariants
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.checked)
    };
    assert_eq!(checked("terminal"), Some(c.accepted));
    assert_eq!(checked("photo_deleted"), Some(c.accepted));
    assert_eq!(checked("video_expired"), Some(c.succeeded));
    assert!(report.latency.end_to_end.p50_ms > 0.0);
    assert!(report.latency.end_to_end.p99_ms >= report.latency.end_to_end.p50_ms);
    assert!(report.throughput.succeeded_per_s > 0.0);

    let json = serde_json::to_value(&report)?;
    assert_eq!(json["exit"], "passed");
    assert_eq!(json["counts"]["sent"], 200);
    let svg = render_svg(&report);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<path"), "no latency or rate line plotted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_without_a_janitor_is_caught_keeping_videos() -> anyhow::Result<()> {
    let mut options = Options::embedded_defaults();
    options.target = Target::Embedded(EmbeddedFleet {
        output_ttl: Duration::from_secs(3),
        janitor_every: None,
        ..EmbeddedFleet::default()
    });
    options.load = Load::Rate {
        per_second: 10.0,
        arrivals: Arrivals::Uniform,
    };
    options.stop.jobs = Some(10);
    options.mix.sizes = small_photos();
    options.mix.bad_share = 0.0;
    let report = run(options).await?;
    let table = report.table();
    assert_eq!(report.exit, Exit::Violations, "{table}");
    assert_counts_add_up(&report);
    assert_eq!(report.counts.succeeded, 10, "{table}");
    for invariant in &report.invariants {
        let expected = if invariant.name == "video_expired" {
            10
        } else {
            0
        };
        assert_eq!(
            invariant.violations, expected,
            "{}: {table}",
            invariant.name
        );
    }
    assert_eq!(report.violations.len(), 10);
    assert!(
        report
            .violations
            .iter()
            .all(|v| v.invariant == "video_expired" && v.detail.contains("still shows an output")),
        "{table}"
    );
    assert!(table.contains("VIOLATED by 10"), "{table}");
    Ok(())
}
