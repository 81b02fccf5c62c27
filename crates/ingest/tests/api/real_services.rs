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
    let config = config(&[
        ("CLIPFLEET_BROKER__URL", amqp),
        ("CLIPFLEET_STORE__URL", &store_url),
        ("CLIPFLEET_LEDGER__URL", &schema.url),
    ])?;
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

/// Jobs still queued in the ledger.
async fn sqlx_count(ledger: &Ledger) -> anyhow::Result<i64> {
    use sqlx::Row;
    let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status = 'queued'")
        .fetch_one(ledger.pool())
        .await?;
    Ok(row.try_get::<i64, _>("n")?)
}
