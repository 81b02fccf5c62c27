//! `POST /v1/jobs` on embedded defaults: the accepted path end to end, idempotency, admission,
//! and the rollback when the publish is not confirmed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use clipfleet_broker::{
    Broker, BrokerError, BrokerErrorKind, BrokerResult, Delivery, InMemoryBroker, Lease, Nack,
    Outgoing, PoolSpec, QueueDepth, QueueRef, Receive, Topic,
};
use clipfleet_ledger::JobStatus;
use clipfleet_proto::{JobId, JobKind, Motion, PoolName};
use clipfleet_store::{ObjectKey, read_to_end};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::fleet::{Fleet, error_code, jpeg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_model_s_job_is_an_image_job_on_the_wire() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[
        ("CLIPFLEET_POOLS__0__MODEL", "portrait"),
        ("CLIPFLEET_POOLS__0__MODEL_VERSION", "1"),
    ])
    .await?;
    fleet.create_account("acct-1", json!({})).await?;
    let response = fleet
        .submit("acct-1", jpeg(640, 480), json!({"model": "portrait"}), None)
        .await?;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str()?.to_owned();
    let jobs = fleet.take_jobs(1).await?;
    // Schema version 2 (a reader of 1 alone refuses it), one frame.
    assert_eq!(
        (jobs[0].v, jobs[0].kind, jobs[0].params.frames),
        (2, JobKind::Image, 1)
    );
    let shown = fleet.get_json(&location).await?;
    assert_eq!(shown["kind"], "image");
    assert_eq!(shown["runs"], json!(["mtcnn@2.6.0", "portrait@1"]));
    assert_eq!(shown["output"], Value::Null, "nothing stored yet");
    fleet.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_is_asked_for_like_any_model_and_shows_its_stages() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[
        ("CLIPFLEET_POOLS__0__MODEL", "motion-rife"),
        ("CLIPFLEET_POOLS__0__MODEL_VERSION", "1"),
    ])
    .await?;
    fleet.create_account("acct-1", json!({})).await?;
    let response = fleet
        .submit(
            "acct-1",
            jpeg(640, 480),
            json!({"model": "motion-rife"}),
            None,
        )
        .await?;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str()?.to_owned();
    let jobs = fleet.take_jobs(1).await?;
    // The chain's output shape: 12 keyframes, RIFE x4 between them, 24 fps.
    assert_eq!((jobs[0].params.frames, jobs[0].params.fps), (45, 24));
    let shown = fleet.get_json(&location).await?;
    assert_eq!(shown["model"], "motion-rife@1");
    assert_eq!(
        shown["runs"],
        json!(["mtcnn@2.6.0", "motion@1", "rife@3.9"])
    );
    fleet.stop().await?;

    // An interpolator is a chain's stage, never a pool's model.
    let Err(err) = Fleet::embedded(&[
        ("CLIPFLEET_POOLS__0__MODEL", "rife"),
        ("CLIPFLEET_POOLS__0__MODEL_VERSION", "3.9"),
    ])
    .await
    else {
        panic!("a pool of rife must be refused");
    };
    assert!(format!("{err:#}").contains("an interpolator"), "{err:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_photo_is_sealed_recorded_and_queued() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let photo = jpeg(640, 480);
    let response = fleet
        .submit(
            "acct-1",
            photo.clone(),
            json!({"motion": "pan_left", "seed": 7}),
            None,
        )
        .await?;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str()?.to_owned();
    let body: Value = response.json().await?;
    let job_id: JobId = body["job_id"].as_str().expect("job_id").parse()?;
    assert_eq!(body["status_url"], format!("/v1/jobs/{job_id}"));
    assert_eq!(location, format!("/v1/jobs/{job_id}"));

    // The job message carries the model's shape, the photo's digest and the params.
    let jobs = fleet.take_jobs(1).await?;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.job_id, job_id);
    assert_eq!(job.account_id.as_str(), "acct-1");
    assert_eq!(
        (job.model.name.as_str(), job.model.version.as_str()),
        ("motion", "1")
    );
    assert_eq!((job.params.frames, job.params.fps), (48, 24));
    assert_eq!((job.params.width, job.params.height), (512, 512));
    assert_eq!((job.params.motion, job.params.seed), (Motion::PanLeft, 7));
    assert_eq!(job.input.content_type, "image/jpeg");
    assert_eq!(job.input.size, photo.len() as u64);
    assert_eq!(
        job.input.sha256.as_str(),
        hex::encode(Sha256::digest(&photo))
    );
    assert!(job.deadline > job.submitted_at);

    // The photo is in the store under the job, and unseals to the bytes sent.
    let key = ObjectKey::input(&job.account_id, job_id);
    assert_eq!(job.input.key, key.as_str());
    let stored = read_to_end(fleet.store.get(&key).await?, 1 << 30).await?;
    assert_eq!(&stored[..], &photo[..]);

    // The ledger has the row; the status endpoint shows it; usage was recorded.
    let row = fleet.ledger.get_job(job_id).await?;
    assert_eq!(row.status, JobStatus::Queued);
    let shown = fleet.get_json(&location).await?;
    assert_eq!(shown["status"], "queued");
    assert_eq!(shown["model"], "motion@1");
    assert_eq!(shown["runs"], json!(["mtcnn@2.6.0", "motion@1"]));
    let usage = fleet
        .ledger
        .list_usage(&clipfleet_proto::AccountId::new("acct-1".to_owned())?, 100)
        .await?;
    let submit = usage
        .iter()
        .find(|u| u.action == "job.submit")
        .expect("a job.submit usage record");
    assert_eq!(submit.ip.to_string(), "127.0.0.1");
    assert_eq!(submit.device_id.as_deref(), Some("device-test-1"));
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_answers_retries_with_the_same_job() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let photo = jpeg(320, 240);
    let first = fleet
        .submit("acct-1", photo.clone(), json!({}), Some("key-1"))
        .await?;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await?;
    let again = fleet
        .submit("acct-1", photo.clone(), json!({}), Some("key-1"))
        .await?;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await?;
    assert_eq!(again["job_id"], first["job_id"]);
    // Another body under the same key is a conflict, and stores nothing.
    let other = fleet
        .submit("acct-1", jpeg(320, 241), json!({}), Some("key-1"))
        .await?;
    assert_eq!(error_code(other).await?, (409, "conflict".into()));
    let other_params = fleet
        .submit("acct-1", photo, json!({"seed": 9}), Some("key-1"))
        .await?;
    assert_eq!(error_code(other_params).await?, (409, "conflict".into()));
    assert_eq!(fleet.inputs().await?.len(), 1);
    assert_eq!(fleet.queued().await?, 1);
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_answers_429_and_stores_nothing() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[("CLIPFLEET_POOLS__0__MAX_BACKLOG", "2")]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    for _ in 0..2 {
        let response = fleet
            .submit("acct-1", jpeg(64, 64), json!({}), None)
            .await?;
        assert_eq!(response.status(), 202);
    }
    let refused = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str()?.parse()?;
    assert!(retry_after >= 1);
    assert_eq!(error_code(refused).await?.1, "overloaded");
    assert_eq!(fleet.inputs().await?.len(), 2);
    assert_eq!(fleet.queued().await?, 2);
    // Workers take the backlog: admission opens again once the reading is refreshed.
    fleet.take_jobs(2).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    assert_eq!(response.status(), 202);
    fleet.stop().await
}

/// An in-memory broker whose publishes are not confirmed while `down` is set.
#[derive(Debug, Default)]
pub struct Flaky {
    inner: InMemoryBroker,
    pub down: AtomicBool,
}

#[async_trait]
impl Broker for Flaky {
    async fn ensure_pool(&self, pool: &PoolName, spec: PoolSpec) -> BrokerResult<()> {
        self.inner.ensure_pool(pool, spec).await
    }
    async fn publish_all(&self, topic: &Topic, messages: Vec<Outgoing>) -> BrokerResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BrokerError::new(
                BrokerErrorKind::Unavailable,
                "publish not confirmed (test)",
            ));
        }
        self.inner.publish_all(topic, messages).await
    }
    async fn receive(&self, queue: &QueueRef, options: Receive) -> BrokerResult<Vec<Delivery>> {
        self.inner.receive(queue, options).await
    }
    async fn ack(&self, leases: &[Lease]) -> BrokerResult<()> {
        self.inner.ack(leases).await
    }
    async fn nack(&self, lease: &Lease, action: Nack) -> BrokerResult<()> {
        self.inner.nack(lease, action).await
    }
    async fn dead_letter(&self, lease: &Lease, reason: &str) -> BrokerResult<()> {
        self.inner.dead_letter(lease, reason).await
    }
    async fn extend_lease(&self, lease: &Lease, lease_for: Duration) -> BrokerResult<()> {
        self.inner.extend_lease(lease, lease_for).await
    }
    async fn depth(&self, queue: &QueueRef) -> BrokerResult<QueueDepth> {
        self.inner.depth(queue).await
    }
    async fn check(&self) -> BrokerResult<()> {
        self.inner.check().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_publish_rolls_back_the_photo_and_the_row() -> anyhow::Result<()> {
    let broker = Arc::new(Flaky::default());
    let fleet = Fleet::embedded_on(broker.clone(), &[]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    broker.down.store(true, Ordering::SeqCst);
    let response = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(error_code(response).await?, (503, "unavailable".into()));
    assert!(fleet.inputs().await?.is_empty(), "the photo was kept");
    assert_eq!(fleet.queued().await?, 0);
    // Up again: the next submission goes through.
    broker.down.store(false, Ordering::SeqCst);
    let response = fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    assert_eq!(response.status(), 202);
    assert_eq!(fleet.inputs().await?.len(), 1);
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_endpoints_answer() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let livez = fleet.http.get(fleet.url("/livez")).send().await?;
    assert_eq!(livez.status(), 200);
    let readyz: Value = fleet
        .http
        .get(fleet.url("/readyz"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(readyz["ready"], true, "{readyz}");
    assert_eq!(readyz["checks"]["ledger"], "ok");
    fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    fleet
        .submit("acct-1", b"not an image".to_vec(), json!({}), None)
        .await?;
    let metrics = fleet.metrics().await?;
    assert!(
        metrics.contains("ingest_jobs_accepted_total{pool=\"default\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ingest_submissions_refused_total{code=\"unsupported_format\"} 1"),
        "{metrics}"
    );
    fleet.stop().await
}
