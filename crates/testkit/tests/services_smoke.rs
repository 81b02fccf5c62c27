//! The development services really answer: RabbitMQ through lapin, PostgreSQL through sqlx, S3
//! and SQS on the local emulator through the real AWS SDK clients. These tests fail, never skip,
//! when a service is missing: `scripts/test` starts them first.

use std::time::Duration;

use anyhow::{Context, ensure};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use clipfleet_testkit::{amqp_url, aws_sdk_config, postgres_url, unique_name};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// Bounds every service call so a hung service fails the test instead of stalling CI.
async fn bounded<T>(what: &str, fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .with_context(|| format!("{what}: no answer within 30 s"))?
}

#[tokio::test]
async fn rabbitmq_confirms_and_delivers_on_a_quorum_queue() -> anyhow::Result<()> {
    bounded("rabbitmq", async {
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .context("connect to RabbitMQ (is it running? scripts/services.sh start)")?;
        let channel = conn.create_channel().await.context("open channel")?;
        let queue = unique_name("smoke");
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
            .await
            .context("declare quorum queue")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enable confirms")?;
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"smoke",
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .context("publish")?
            .await
            .context("wait for confirm")?;
        ensure!(confirm.is_ack(), "broker nacked the publish");
        let mut delivery = None;
        for _ in 0..50 {
            delivery = channel
                .basic_get(queue.as_str().into(), BasicGetOptions::default())
                .await
                .context("get")?;
            if delivery.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delivery = delivery.context("the confirmed message never arrived")?;
        ensure!(delivery.delivery.data == b"smoke", "wrong payload");
        delivery
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .context("ack")?;
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .context("delete queue")?;
        conn.close(200, "done".into()).await.context("close")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn postgres_answers_in_a_schema_of_its_own() -> anyhow::Result<()> {
    use sqlx::Connection as _;
    bounded("postgres", async {
        let mut conn = sqlx::PgConnection::connect(&postgres_url())
            .await
            .context("connect to PostgreSQL (is it running? scripts/services.sh start)")?;
        let schema = unique_name("smoke").replace('-', "_");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await?;
        sqlx::query(&format!(
            "CREATE TABLE {schema}.t (id BIGINT PRIMARY KEY, note TEXT)"
        ))
        .execute(&mut conn)
        .await?;
        sqlx::query(&format!("INSERT INTO {schema}.t VALUES ($1, $2)"))
            .bind(7_i64)
            .bind("seven")
            .execute(&mut conn)
            .await?;
        let (note,): (String,) =
            sqlx::query_as(&format!("SELECT note FROM {schema}.t WHERE id = $1"))
                .bind(7_i64)
                .fetch_one(&mut conn)
                .await?;
        ensure!(note == "seven", "read back {note:?}");
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn s3_emulator_stores_and_deletes_an_object() -> anyhow::Result<()> {
    bounded("s3", async {
        let shared = aws_sdk_config().await;
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(conf);
        let bucket = unique_name("smoke");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .context("create bucket (is the emulator running? scripts/emulator.sh start)")?;
        s3.put_object()
            .bucket(&bucket)
            .key("inputs/a/b")
            .body(ByteStream::from_static(b"photo bytes"))
            .send()
            .await
            .context("put")?;
        let body = s3
            .get_object()
            .bucket(&bucket)
            .key("inputs/a/b")
            .send()
            .await?
            .body;
        let bytes = body.collect().await.context("read body")?.into_bytes();
        ensure!(&bytes[..] == b"photo bytes", "read back {bytes:?}");
        s3.delete_object()
            .bucket(&bucket)
            .key("inputs/a/b")
            .send()
            .await?;
        let gone = s3
            .head_object()
            .bucket(&bucket)
            .key("inputs/a/b")
            .send()
            .await;
        ensure!(
            gone.as_ref()
                .err()
                .and_then(|e| e.as_service_error())
                .is_some_and(|e| e.is_not_found()),
            "object still there after delete: {gone:?}"
        );
        s3.delete_bucket()
            .bucket(&bucket)
            .send()
            .await
            .context("delete bucket")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn sqs_emulator_sends_receives_and_deletes() -> anyhow::Result<()> {
    bounded("sqs", async {
        let sqs = aws_sdk_sqs::Client::new(&aws_sdk_config().await);
        let name = unique_name("smoke");
        let url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .context("create queue (is the emulator running? scripts/emulator.sh start)")?
            .queue_url
            .context("no queue url")?;
        sqs.send_message()
            .queue_url(&url)
            .message_body("job")
            .send()
            .await
            .context("send")?;
        let received = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .send()
            .await
            .context("receive")?;
        let messages = received.messages.unwrap_or_default();
        ensure!(messages.len() == 1, "received {} messages", messages.len());
        ensure!(messages[0].body.as_deref() == Some("job"), "wrong body");
        let receipt = messages[0]
            .receipt_handle
            .as_deref()
            .context("no receipt handle")?;
        sqs.delete_message()
            .queue_url(&url)
            .receipt_handle(receipt)
            .send()
            .await?;
        sqs.delete_queue()
            .queue_url(&url)
            .send()
            .await
            .context("delete queue")?;
        Ok(())
    })
    .await
}
