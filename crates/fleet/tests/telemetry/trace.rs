//! One job, one trace: ingest's request span → `submit job` → `publish job` (W3C context in
//! the message headers) → the worker's `process job` (a consumer span whose remote parent is
//! the publish) → a span per stage → the finish's events, photo delete and ack.

use opentelemetry::trace::{SpanId, SpanKind};
use opentelemetry_sdk::trace::SpanData;

use crate::api::{App, photo_with_marker, start_fleet};
use crate::capture::{Capture, attribute};

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found = named(spans, name);
    assert_eq!(
        found.len(),
        1,
        "expected one {name:?} span in the job's trace, found {}: {:?}",
        found.len(),
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

fn child_of(span: &SpanData, parent: &SpanData) {
    assert_eq!(
        span.parent_span_id,
        parent.span_context.span_id(),
        "{:?} is not a child of {:?}",
        span.name,
        parent.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_ingest_the_queue_and_every_worker_stage() -> anyhow::Result<()> {
    let capture = Capture::global();
    let fleet = start_fleet("trace").await?;
    let app = App {
        fleet: &fleet,
        http: reqwest::Client::new(),
        device_id: "device-trace",
        client_ip: "198.51.100.10",
    };
    app.create_account("acct-trace-1", serde_json::json!({}))
        .await?;
    let job_id = app
        .submit("acct-trace-1", photo_with_marker("trace test")?)
        .await?;
    app.wait_done(&job_id).await?;
    let process = capture.wait_for_span("process job", &job_id).await?;
    fleet.shutdown().await?;

    let submit = capture.wait_for_span("submit job", &job_id).await?;
    let trace_id = submit.span_context.trace_id();
    let all = capture.spans();
    // Every span naming the job is in the one trace.
    for span in all
        .iter()
        .filter(|span| attribute(span, "job_id").as_deref() == Some(job_id.as_str()))
    {
        assert_eq!(
            span.span_context.trace_id(),
            trace_id,
            "{:?} is in another trace",
            span.name
        );
    }
    let trace: Vec<SpanData> = all
        .into_iter()
        .filter(|span| span.span_context.trace_id() == trace_id)
        .collect();

    // Ingest: the request is the root, the submission its child, the publish the producer.
    let http = one(&trace, "POST /v1/jobs");
    assert_eq!(
        http.parent_span_id,
        SpanId::INVALID,
        "the request is the root"
    );
    assert_eq!(http.span_kind, SpanKind::Server);
    assert_eq!(attribute(http, "http.route").as_deref(), Some("/v1/jobs"));
    assert_eq!(
        attribute(http, "http.response.status_code").as_deref(),
        Some("202")
    );
    child_of(&submit, http);
    for name in ["store photo", "insert job", "publish job"] {
        child_of(one(&trace, name), &submit);
    }
    let publish = one(&trace, "publish job");
    assert_eq!(publish.span_kind, SpanKind::Producer);

    // The queue: the worker's job span continues the trace from the message headers.
    assert_eq!(process.span_context.trace_id(), trace_id);
    child_of(&process, publish);
    assert!(
        process.parent_span_is_remote,
        "the parent came over the queue"
    );
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(attribute(&process, "outcome").as_deref(), Some("succeeded"));
    assert!(
        attribute(&process, "queue_wait_ms").is_some(),
        "queue wait recorded"
    );
    assert_eq!(
        attribute(&process, "account"),
        Some(clipfleet_telemetry::pseudonym("acct-trace-1"))
    );

    // The worker's stages, and the finish: events, photo delete, ack.
    for name in ["fetch", "infer", "encode", "store video", "finish"] {
        child_of(one(&trace, name), &process);
    }
    let finish = one(&trace, "finish");
    for name in ["delete photo", "ack"] {
        child_of(one(&trace, name), finish);
    }
    let events: Vec<String> = named(&trace, "report event")
        .into_iter()
        .inspect(|span| child_of(span, finish))
        .filter_map(|span| attribute(span, "event"))
        .collect();
    assert_eq!(events, ["succeeded", "input_deleted"]);
    Ok(())
}
