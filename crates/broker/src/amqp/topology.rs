//! Idempotent declarations of the topology in `names.rs`. Every component declares what it uses
//! at start; declaring again with the same arguments is a no-op for RabbitMQ.

use std::time::Duration;

use clipfleet_proto::{PoolName, Priority, WorkerId};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use super::names::Names;
use super::session::amqp_error;
use crate::{BrokerErrorKind, BrokerResult, PoolSpec};

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args
}

async fn exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> BrokerResult<()> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
        .map_err(|err| amqp_error(&format!("declare exchange {name}"), &err))
}

async fn queue(channel: &Channel, name: &str, durable: bool, args: FieldTable) -> BrokerResult<()> {
    let options = QueueDeclareOptions {
        durable,
        auto_delete: !durable,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, args)
        .await
        .map(|_| ())
        .map_err(|err| {
            let mut broker_err = amqp_error(&format!("declare queue {name}"), &err);
            if broker_err.kind == BrokerErrorKind::InvalidInput {
                broker_err
                    .message
                    .push_str(" (it exists with other arguments: delete or migrate it)");
            }
            broker_err
        })
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> BrokerResult<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|err| amqp_error(&format!("bind {queue} to {exchange} by {key}"), &err))
}

/// The exchanges every component uses, and the events ledger queue.
pub(crate) async fn declare_base(channel: &Channel, names: &Names) -> BrokerResult<()> {
    exchange(channel, &names.jobs_exchange(), ExchangeKind::Direct).await?;
    exchange(channel, &names.dead_exchange(), ExchangeKind::Direct).await?;
    exchange(channel, &names.events_exchange(), ExchangeKind::Topic).await?;
    exchange(channel, &names.control_exchange(), ExchangeKind::Topic).await?;
    queue(channel, &names.events_queue(), true, quorum_args()).await?;
    bind(
        channel,
        &names.events_queue(),
        &names.events_exchange(),
        "job.#",
    )
    .await
}

/// A pool's paid and free jobs queues and its dead-letter queue.
pub(crate) async fn declare_pool(
    channel: &Channel,
    names: &Names,
    pool: &PoolName,
    spec: PoolSpec,
) -> BrokerResult<()> {
    let spec = spec.validate()?;
    let dead = names.dead_queue(pool);
    queue(channel, &dead, true, quorum_args()).await?;
    for priority in [Priority::Free, Priority::Paid] {
        let key = Names::jobs_key(pool, priority);
        let name = names.jobs_queue(pool, priority);
        let mut args = quorum_args();
        // RabbitMQ dead-letters once a message was *returned* more than the limit: a limit of
        // L allows L + 1 deliveries.
        let limit = i32::try_from(spec.max_deliveries - 1).unwrap_or(i32::MAX);
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(limit));
        args.insert(
            "x-dead-letter-exchange".into(),
            text(&names.dead_exchange()),
        );
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
        queue(channel, &name, true, args).await?;
        bind(channel, &name, &names.jobs_exchange(), &key).await?;
        bind(channel, &dead, &names.dead_exchange(), &key).await?;
    }
    Ok(())
}

/// The TTL queue of one retry step, dead-lettering back to the jobs exchange with the
/// message's own routing key.
pub(crate) async fn declare_retry(
    channel: &Channel,
    names: &Names,
    step: Duration,
) -> BrokerResult<()> {
    let exchange_name = names.retry_exchange(step);
    exchange(channel, &exchange_name, ExchangeKind::Fanout).await?;
    let mut args = quorum_args();
    let ttl = i32::try_from(step.as_millis()).unwrap_or(i32::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(ttl));
    args.insert(
        "x-dead-letter-exchange".into(),
        text(&names.jobs_exchange()),
    );
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
    let name = names.retry_queue(step);
    queue(channel, &name, true, args).await?;
    bind(channel, &name, &exchange_name, "").await
}

/// One worker's control queue (deleted by RabbitMQ once its consumer goes away).
pub(crate) async fn declare_control(
    channel: &Channel,
    names: &Names,
    worker: &WorkerId,
) -> BrokerResult<()> {
    let name = names.control_queue(worker);
    queue(channel, &name, false, FieldTable::default()).await?;
    bind(channel, &name, &names.control_exchange(), "#").await
}
