//! Load tests against the embedded fleet: the CI run (200 jobs, every invariant must hold and
//! the numbers must add up), a short run mixing video and image models with session flows, and
//! proof that the checker catches a fleet breaking its promise.

use std::time::Duration;

use clipfleet_loadtest::{
    Arrivals, EmbeddedFleet, Exit, Load, ModelChoice, Options, PERSONALIZE, PhotoSize, Report,
    SESSION_END, Target, WeightedModel, render_svg, run,
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
async fn a_mix_of_kinds_and_session_flows_keeps_every_invariant() -> anyhow::Result<()> {
    let mut options = Options::embedded_defaults();
    // The outputs' TTL stays short (5 s): a session's adapter outlives it (it goes with the
    // session), so the session's job behind the other portraits still finds it.
    options.load = Load::Concurrency(4);
    options.stop.jobs = Some(12);
    options.mix.sizes = small_photos();
    options.mix.bad_share = 0.0;
    let portrait = ModelChoice {
        name: "portrait".into(),
        version: "1".into(),
    };
    options.models = vec![
        WeightedModel::new(ModelChoice::noop()),
        WeightedModel::new(portrait.clone()),
    ];
    options.sessions.share = 0.25;
    options.sessions.model = portrait;
    let report = run(options).await?;
    let table = report.table();
    assert!(report.passed(), "{table}");
    assert_counts_add_up(&report);
    let c = &report.counts;
    let s = &report.sessions;
    // Seed 1: 2 of the 12 arrivals are session flows, each ending in one job of its own.
    assert_eq!(s.flows, 2, "{table}");
    assert_eq!(
        (s.created, s.trained, s.jobs_succeeded, s.ended, s.completed),
        (2, 2, 2, 2, 2),
        "{table}"
    );
    assert!(s.failed.is_empty(), "{table}");
    assert_eq!(s.job_end_to_end.count, 2, "{table}");
    // At least the adapter of each (the training deletes the photos it took).
    assert!(s.deleted_objects >= s.flows, "{table}");
    // 10 submissions, and the 2 session jobs.
    assert_eq!(c.sent, 12, "{table}");
    assert_eq!(c.succeeded, c.sent, "{table}");

    let kind = |name: &str| report.kinds.iter().find(|k| k.kind == name);
    let kinds: Vec<&str> = report.kinds.iter().map(|k| k.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["video", "image", PERSONALIZE, SESSION_END],
        "{table}"
    );
    let (video, image) = (kind("video"), kind("image"));
    let (Some(video), Some(image)) = (video, image) else {
        panic!("no video or image row: {table}");
    };
    assert!(
        video.submissions > 0 && image.submissions > s.flows,
        "{table}"
    );
    assert_eq!(video.submissions + image.submissions, c.sent, "{table}");
    for row in &report.kinds {
        let name = &row.kind;
        assert_eq!(row.succeeded, row.submissions, "{name}: {table}");
        assert!(row.failed.is_empty(), "{name}: {table}");
        assert_eq!(row.latency.count, row.succeeded, "{name}: {table}");
        assert!(row.latency.p50_ms > 0.0, "{name}: {table}");
        assert!(row.latency.p99_ms >= row.latency.p50_ms, "{name}: {table}");
        assert!(row.succeeded_per_s > 0.0, "{name}: {table}");
    }
    for name in [PERSONALIZE, SESSION_END] {
        assert_eq!(kind(name).map(|k| k.submissions), Some(s.flows), "{table}");
    }
    // Every invariant checked, the sessions' included.
    let names: Vec<&str> = report.invariants.iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        [
            "terminal",
            "photo_deleted",
            "video_served",
            "video_expired",
            "training_ended",
            "session_ended",
            "adapter_private",
            "session_closed"
        ]
    );
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
    assert_eq!(checked("session_ended"), Some(s.flows));
    assert_eq!(checked("adapter_private"), Some(s.flows));
    assert_eq!(checked("session_closed"), Some(s.flows.min(3)));
    assert!(table.contains("session end"), "{table}");

    let json = serde_json::to_value(&report)?;
    assert_eq!(json["sessions"]["flows"], 2);
    assert_eq!(json["kinds"][2]["kind"], "personalize");
    assert_eq!(json["counts"]["sent"], c.sent);
    assert!(render_svg(&report).contains("session end"));
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
