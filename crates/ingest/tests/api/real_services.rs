//! Ingest on the real services: PostgreSQL (a schema of the test's own), RabbitMQ and the S3
//! emulator (a bucket of the test's own), sealed with an ephemeral key. One test also stops its
//! own RabbitMQ node mid-run: a submission the broker cannot confirm leaves nothing behind,
//! and ingest serves again once the broker is back.

use std::time::Duration;

use clipfleet_broker::connect;
use clipfleet_ledger::{JobStatus, Ledger};
use clipfleet_proto::JobId;
use clipfleet_store::open_sealed;
use clipfleet_testkit::{PgSchema, PrivateRabbit, amqp_url, aws_sdk_config, unique_name};
use serde_json::{Value, json};

use crate::fleet::{Backends, Fleet, broker_options, config, error_code, jpeg};

struct Real {
    fleet: Fleet,
    schema: PgSchema,
    bucket: String,
    s3: aws_sdk_s3::Client,
}

async fn real(amqp: &str, namespace: &str) -> anyhow::Result<Real> {
    real_with(amqp, namespace, &[]).await
}

/// [`real`] with more config overrides.
async fn real_with(
    amqp: &str,
    namespace: &str,
    overrides: &[(&str, &str)],
) -> anyhow::Result<Real> {
    let shared = aws_sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique_name("ingest");
    s3.create_bucket().bucket(&bucket).send().await?;
    let schema = PgSchema::create("ingest").await?;
    let store_url = format!("s3://{bucket}");
    let mut all = vec![
        ("CLIPFLEET_BROKER__URL", amqp),
        ("CLIPFLEET_STORE__URL", store_url.as_str()),
        ("CLIPFLEET_LEDGER__URL", schema.url.as_str()),
    ];
    all.extend_from_slice(overrides);
    let config = config(&all)?;
    let broker = connect(amqp, broker_options(namespace)).await?;
    let store = open_sealed(&store_url, "ephemeral").await?;
    let ledger = Ledger::connect(&schema.url).await?;
    ledger.migrate().await?;
    let fleet = Fleet::start(
        config,
        Backends {
            broker,
            store,
            ledger,
        },
    )
    .await?;
    Ok(Real {
        fleet,
        schema,
        bucket,
        s3,
    })
}

impl Real {
    async fn cleanup(self) -> anyhow::Result<()> {
        let Real {
            fleet,
            schema,
            bucket,
            s3,
        } = self;
        let broker = fleet.broker.clone();
        let store = fleet.store.clone();
        let pool = fleet.config.pools[0].name.clone();
        fleet.stop().await?;
        for object in clipfleet_store::list_all(&*store, "").await? {
            store.delete(&object.key).await?;
        }
        s3.delete_bucket().bucket(&bucket).send().await?;
        if let Some(admin) = broker.admin() {
            admin.delete_pool(&pool).await?;
        }
        schema.drop_schema().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_rabbitmq_and_s3_a_photo_is_queued_and_tracked() -> anyhow::Result<()> {
    // A fixed namespace: one test uses it, and reruns reuse its queues instead of leaving new ones.
    let real = real(&amqp_url(), "clip-ingest-test").await?;
    let fleet = &real.fleet;
    let result = async {
        fleet.create_account("acct-1", json!({})).await?;
        let response = fleet
            .submit("acct-1", jpeg(800, 600), json!({}), Some("k1"))
            .await?;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await?;
        let id: JobId = body["job_id"].as_str().expect("id").parse()?;
        let inputs = fleet.inputs().await?;
        assert_eq!(inputs, vec![format!("inputs/acct-1/{id}")]);
        assert_eq!(fleet.ledger.get_job(id).await?.status, JobStatus::Queued);
        let jobs = fleet.take_jobs(1).await?;
        assert_eq!(jobs[0].job_id, id);

        // Refusals leave nothing in the bucket or on the queue.
        let refused = fleet
            .submit("nobody", jpeg(64, 64), json!({}), None)
            .await?;
        assert_eq!(error_code(refused).await?, (403, "account_inactive".into()));
        let refused = fleet
            .submit("acct-1", b"GIF89a".to_vec(), json!({}), None)
            .await?;
        assert_eq!(
            error_code(refused).await?,
            (415, "unsupported_format".into())
        );
        assert_eq!(fleet.inputs().await?.len(), 1);
        assert_eq!(fleet.queued().await?, 0);
        let readyz: Value = fleet
            .http
            .get(fleet.url("/readyz"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(readyz["ready"], true, "{readyz}");
        anyhow::Ok(())
    }
    .await;
    real.cleanup().await?;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_means_503_and_nothing_kept_then_recovery() -> anyhow::Result<()> {
    let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start).await??;
    let real = real(&rabbit.url(), "clip").await?;
    let fleet = &real.fleet;
    let result = async {
        fleet.create_account("acct-1", json!({})).await?;
        assert_eq!(
            fleet
                .submit("acct-1", jpeg(64, 64), json!({}), None)
                .await?
                .status(),
            202
        );
        let rabbit_ref = &rabbit;
        tokio::task::block_in_place(|| rabbit_ref.stop_app())?;
        let response = fleet
            .submit("acct-1", jpeg(64, 64), json!({}), None)
            .await?;
        let (status, code) = error_code(response).await?;
        assert_eq!((status, code.as_str()), (503, "unavailable"));
        let readyz = fleet.http.get(fleet.url("/readyz")).send().await?;
        assert_eq!(readyz.status(), 503);
        // Only the first job's photo is stored; the failed one left no row queued either.
        assert_eq!(fleet.inputs().await?.len(), 1);
        let ledger_jobs: i64 = sqlx_count(&fleet.ledger).await?;
        assert_eq!(ledger_jobs, 1, "one queued job row");

        tokio::task::block_in_place(|| rabbit_ref.start_app())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let response = fleet
                .submit("acct-1", jpeg(64, 64), json!({}), None)
                .await?;
            if response.status() == 202 {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "ingest did not recover: {}",
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(fleet.inputs().await?.len(), 2);
        assert_eq!(fleet.queued().await?, 2);
        anyhow::Ok(())
    }
    .await;
    real.cleanup().await?;
    drop(rabbit);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_rabbitmq_and_s3_an_ended_session_leaves_only_its_marker() -> anyhow::Result<()>
{
    let real = real_with(
        &amqp_url(),
        "clip-ingest-session-test",
        &[
            ("CLIPFLEET_POOLS__0__MODEL", "portrait"),
            ("CLIPFLEET_POOLS__0__MODEL_VERSION", "1"),
        ],
    )
    .await?;
    let fleet = &real.fleet;
    let result = async {
        fleet.create_account("acct-1", json!({})).await?;
        let created = fleet
            .request(reqwest::Method::POST, "/v1/sessions")
            .json(&json!({"account_id": "acct-1"}))
            .send()
            .await?;
        assert_eq!(created.status(), 201);
        let created: Value = created.json().await?;
        let session = created["session_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for _ in 0..2 {
            let form = reqwest::multipart::Form::new().part(
                "photo",
                reqwest::multipart::Part::bytes(jpeg(96, 96)).file_name("p.jpg"),
            );
            let uploaded = fleet
                .request(
                    reqwest::Method::POST,
                    &format!("/v1/sessions/{session}/photos"),
                )
                .multipart(form)
                .send()
                .await?;
            assert_eq!(uploaded.status(), 201);
        }
        let trained = fleet
            .request(
                reqwest::Method::POST,
                &format!("/v1/sessions/{session}/personalize"),
            )
            .send()
            .await?;
        assert_eq!(trained.status(), 202);
        let jobs = fleet.take_jobs(1).await?;
        assert_eq!(
            (jobs[0].v, jobs[0].session.as_ref().map(|s| s.photos.len())),
            (3, Some(2))
        );

        let ended = fleet
            .request(reqwest::Method::DELETE, &format!("/v1/sessions/{session}"))
            .send()
            .await?;
        assert_eq!(ended.status(), 200);
        let ended: Value = ended.json().await?;
        assert_eq!(ended["deleted_objects"], 2);
        // The bucket itself: only the marker is left of the session (sealed, so not empty).
        let listed = real
            .s3
            .list_objects_v2()
            .bucket(&real.bucket)
            .prefix(format!("sessions/acct-1/{session}/"))
            .send()
            .await?;
        let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, vec![format!("sessions/acct-1/{session}/ended")]);
        let audit = fleet
            .ledger
            .list_deletions(&clipfleet_ledger::DeletionFilter::default(), 100)
            .await?;
        assert_eq!(audit.iter().filter(|d| d.deletion.verified).count(), 2);
        anyhow::Ok(())
    }
    .await;
    real.cleanup().await?;
    result
}

/// Jobs still queued in the ledger.
async fn sqlx_count(ledger: &Ledger) -> anyhow::Result<i64> {
    use sqlx::Row;
    let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'")
        .fetch_one(ledger.pool())
        .await?;
    Ok(row.try_get::<i64, _>("n")?)
}
