//! Status from events, video download with ranges, and delete requests.

use clipfleet_broker::{Outgoing, QueueRef, Topic};
use clipfleet_proto::{
    EventBatch, EventKind, JobEvent, JobId, SCHEMA_VERSION, StageDurations, Timestamp, WorkerId,
    encode,
};
use clipfleet_store::{ObjectKey, StoreErrorKind, body_from_bytes};
use serde_json::{Value, json};

use crate::fleet::{Fleet, error_code, jpeg};

fn event(job: JobId, at_ms: u64, kind: EventKind) -> JobEvent {
    JobEvent {
        job_id: job,
        at: Timestamp::from_unix_ms(at_ms),
        worker: WorkerId::new("worker-1").expect("worker id"),
        event: kind,
    }
}

async fn publish(fleet: &Fleet, events: Vec<JobEvent>) -> anyhow::Result<()> {
    let batch = EventBatch {
        v: SCHEMA_VERSION,
        events,
    };
    fleet
        .broker
        .publish(&Topic::Events, Outgoing::new(encode(&batch)?))
        .await?;
    Ok(())
}

/// Submits a photo and plays a worker: takes the job, stores `video` sealed under its output
/// key, and reports started/succeeded/input_deleted (the late `started` last).
async fn finished_job(fleet: &Fleet, video: &[u8]) -> anyhow::Result<(JobId, ObjectKey)> {
    let response = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    assert_eq!(response.status(), 202);
    let job = fleet.take_jobs(1).await?.remove(0);
    let output = ObjectKey::output(&job.account_id, job.job_id);
    fleet
        .store
        .put(&output, body_from_bytes(video.to_vec()))
        .await?;
    fleet
        .store
        .delete(&ObjectKey::input(&job.account_id, job.job_id))
        .await?;
    let t = job.submitted_at.unix_ms();
    publish(
        fleet,
        vec![
            event(job.job_id, t + 10, EventKind::Progress { pct: 80 }),
            event(
                job.job_id,
                t + 20,
                EventKind::Succeeded {
                    output_key: output.as_str().to_owned(),
                    size: video.len() as u64,
                    stages: StageDurations::default(),
                },
            ),
            event(job.job_id, t + 21, EventKind::InputDeleted),
        ],
    )
    .await?;
    // A redelivered, out-of-order `started` must not undo the success.
    publish(fleet, vec![event(job.job_id, t + 5, EventKind::Started)]).await?;
    Ok((job.job_id, output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_events_in_any_order() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let (id, _) = finished_job(&fleet, b"video").await?;
    let job = fleet
        .wait_job(&id.to_string(), |job| {
            job["status"] == "succeeded" && job["started_at_ms"].is_number()
        })
        .await?;
    assert!(job["input_deleted_at_ms"].is_number(), "{job}");
    assert_eq!(job["video"]["size"], 5);
    assert!(job["video"]["expires_at_ms"].is_number());
    assert_eq!(job["error"], Value::Null);
    // Failures show their code.
    let response = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    let failed: Value = response.json().await?;
    let failed_id: JobId = failed["job_id"].as_str().expect("id").parse()?;
    publish(
        &fleet,
        vec![event(
            failed_id,
            Timestamp::from_system_time(std::time::SystemTime::now()).unix_ms(),
            EventKind::Failed {
                code: clipfleet_proto::ErrorCode::BadImage,
                message: "does not decode".into(),
                retryable: false,
            },
        )],
    )
    .await?;
    let job = fleet
        .wait_job(&failed_id.to_string(), |job| job["status"] == "failed")
        .await?;
    assert_eq!(job["error"]["code"], "bad_image");
    // Unknown ids are 404s.
    let missing = fleet
        .request(
            reqwest::Method::GET,
            &format!("/v1/jobs/{}", JobId::generate()),
        )
        .send()
        .await?;
    assert_eq!(error_code(missing).await?, (404, "not_found".into()));
    let garbage = fleet
        .request(reqwest::Method::GET, "/v1/jobs/not-an-id")
        .send()
        .await?;
    assert_eq!(error_code(garbage).await?.0, 404);
    fleet.stop().await
}

/// Batches received together go to the ledger in one transaction; one the ledger refuses must
/// not take the others down with it: they are applied one by one and only the bad one is dropped
/// (this broker has no dead letters for events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_among_others_received_together_spoils_only_itself() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = fleet
            .submit("acct-1", jpeg(64, 64), json!({}), None)
            .await?;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await?;
        ids.push(body["job_id"].as_str().expect("id").parse::<JobId>()?);
    }
    let now = Timestamp::from_system_time(std::time::SystemTime::now()).unix_ms();
    let batch = |events| {
        encode(&EventBatch {
            v: SCHEMA_VERSION,
            events,
        })
        .map(Outgoing::new)
    };
    // Decodes and validates, but its instant is past what the ledger can order: refused.
    let refused = batch(vec![event(ids[0], 1 << 53, EventKind::Started)])?;
    let progress = batch(vec![event(ids[0], now, EventKind::Progress { pct: 80 })])?;
    let failed = batch(vec![event(
        ids[1],
        now,
        EventKind::Failed {
            code: clipfleet_proto::ErrorCode::BadImage,
            message: "does not decode".into(),
            retryable: false,
        },
    )])?;
    // One publish: the consumer's next receive holds all three.
    fleet
        .broker
        .publish_all(&Topic::Events, vec![progress, refused, failed])
        .await?;
    let job = fleet
        .wait_job(&ids[0].to_string(), |job| job["progress_pct"] == 80)
        .await?;
    // Running by the progress; the refused `started` left no trace.
    assert_eq!(job["status"], "running", "{job}");
    assert_eq!(job["started_at_ms"], Value::Null, "{job}");
    assert_eq!(job["attempts"], 0, "{job}");
    fleet
        .wait_job(&ids[1].to_string(), |job| job["status"] == "failed")
        .await?;
    // Nothing comes back: the refused batch was dropped, the others acked.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let depth = fleet.broker.depth(&QueueRef::Events).await?;
        if depth.ready == 0 && depth.in_flight == Some(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{depth:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_streams_unsealed_with_ranges() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let video: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (id, _) = finished_job(&fleet, &video).await?;
    fleet
        .wait_job(&id.to_string(), |job| job["status"] == "succeeded")
        .await?;
    let path = format!("/v1/jobs/{id}/video");
    let full = fleet.request(reqwest::Method::GET, &path).send().await?;
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-type"], "video/mp4");
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.headers()["cache-control"], "private, no-store");
    assert_eq!(full.headers()["content-length"], "200000");
    assert_eq!(full.bytes().await?.as_ref(), &video[..]);

    let part = fleet
        .request(reqwest::Method::GET, &path)
        .header("range", "bytes=1000-1999")
        .send()
        .await?;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 1000-1999/200000");
    assert_eq!(part.bytes().await?.as_ref(), &video[1000..2000]);

    let tail = fleet
        .request(reqwest::Method::GET, &path)
        .header("range", "bytes=-100")
        .send()
        .await?;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await?.as_ref(), &video[199_900..]);

    let outside = fleet
        .request(reqwest::Method::GET, &path)
        .header("range", "bytes=300000-")
        .send()
        .await?;
    assert_eq!(outside.status(), 416);
    assert_eq!(outside.headers()["content-range"], "bytes */200000");

    // A queued job has no video yet.
    let response = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    let queued: Value = response.json().await?;
    let early = fleet
        .request(
            reqwest::Method::GET,
            &format!("/v1/jobs/{}/video", queued["job_id"].as_str().expect("id")),
        )
        .send()
        .await?;
    assert_eq!(error_code(early).await?, (409, "conflict".into()));
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cancels_a_queued_job_and_removes_a_finished_video() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    // Succeeded: the video goes, verified, and the API says so.
    let (id, output) = finished_job(&fleet, b"video").await?;
    fleet
        .wait_job(&id.to_string(), |job| job["status"] == "succeeded")
        .await?;
    let deleted = fleet
        .request(reqwest::Method::DELETE, &format!("/v1/jobs/{id}"))
        .send()
        .await?;
    assert_eq!(deleted.status(), 200);
    let body: Value = deleted.json().await?;
    assert!(body["output_deleted_at_ms"].is_number(), "{body}");
    assert_eq!(body["video"], Value::Null);
    let gone = fleet.store.head(&output).await.expect_err("video deleted");
    assert_eq!(gone.kind(), StoreErrorKind::NotFound);
    let video = fleet
        .request(reqwest::Method::GET, &format!("/v1/jobs/{id}/video"))
        .send()
        .await?;
    assert_eq!(error_code(video).await?, (404, "not_found".into()));
    // Queued: cancelled, its photo deleted and audited.
    let response = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    let queued: Value = response.json().await?;
    let queued_id = queued["job_id"].as_str().expect("id").to_owned();
    let deleted = fleet
        .request(reqwest::Method::DELETE, &format!("/v1/jobs/{queued_id}"))
        .send()
        .await?;
    assert_eq!(deleted.status(), 200);
    let body: Value = deleted.json().await?;
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["error"]["code"], "cancelled");
    assert!(body["input_deleted_at_ms"].is_number());
    assert!(fleet.inputs().await?.is_empty());
    let audit = fleet
        .ledger
        .list_deletions(&clipfleet_ledger::DeletionFilter::default(), 100)
        .await?;
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(
        audit
            .iter()
            .all(|d| d.deletion.verified && d.deletion.actor == "ingest")
    );

    // Deleting again is harmless.
    let again = fleet
        .request(reqwest::Method::DELETE, &format!("/v1/jobs/{id}"))
        .send()
        .await?;
    assert_eq!(again.status(), 200);
    fleet.stop().await
}
