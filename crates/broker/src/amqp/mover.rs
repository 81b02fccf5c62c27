//! `queue move` on RabbitMQ: messages go from one queue to another in AMQP transactions, so a
//! mover that dies mid-batch moves nothing of that batch. Within `tx.select`, RabbitMQ applies
//! a channel's publishes and acks only at `tx.commit`; if the channel closes first (the process
//! was killed, the connection dropped) the publishes are discarded and the fetched messages go
//! back to their queue. Publisher confirms and transactions exclude each other on a channel, so
//! this uses a channel of its own, not the confirmed publishing channel.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

use super::names::Names;
use super::session::amqp_error;
use crate::{BrokerError, BrokerErrorKind, BrokerResult, DEAD_REASON_HEADER, QueueRef};

/// Headers RabbitMQ adds on delivery and dead-lettering; a message that leaves a dead-letter
/// queue leaves them behind (it starts afresh, as its delivery count should).
const BROKER_HEADERS: &[&str] = &[
    "x-delivery-count",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

/// Moves up to `max` messages from `from` to `to` in one transaction on `channel` (which this
/// function puts in transaction mode and the caller closes).
pub(crate) async fn move_batch(
    channel: &Channel,
    names: &Names,
    from: &QueueRef,
    to: &QueueRef,
    max: usize,
) -> BrokerResult<usize> {
    if !matches!(to, QueueRef::Jobs(_) | QueueRef::Dead(_)) {
        return Err(BrokerError::new(
            BrokerErrorKind::InvalidInput,
            format!("messages move between jobs and dead-letter queues, not to {to}"),
        ));
    }
    let targets = names.queues_of(to);
    // Passive declares: a missing queue is an error now, not a message published to nowhere.
    for (name, _) in names.queues_of(from).iter().chain(&targets) {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(name.as_str().into(), passive, FieldTable::default())
            .await
            .map_err(|err| {
                let mut error = amqp_error(&format!("queue {name}"), &err);
                error.kind = BrokerErrorKind::NotFound;
                error
            })?;
    }
    channel
        .tx_select()
        .await
        .map_err(|err| amqp_error("start a transaction", &err))?;
    let from_dead = matches!(from, QueueRef::Dead(_));
    let mut moved = 0;
    for (source, priority) in names.queues_of(from) {
        let target = targets
            .iter()
            .find(|(_, p)| *p == priority)
            .or(targets.first())
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        while moved < max {
            let got = channel
                .basic_get(source.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(|err| amqp_error(&format!("get from {source}"), &err))?;
            let Some(message) = got else { break };
            let delivery = message.delivery;
            let properties = if from_dead {
                without_dead_letter_headers(delivery.properties.clone())
            } else {
                delivery.properties.clone()
            };
            // The default exchange routes by queue name: straight to the target queue.
            channel
                .basic_publish(
                    "".into(),
                    target.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &delivery.data,
                    properties,
                )
                .await
                .map_err(|err| amqp_error(&format!("publish to {target}"), &err))?;
            channel
                .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                .await
                .map_err(|err| amqp_error(&format!("ack on {source}"), &err))?;
            moved += 1;
        }
    }
    channel
        .tx_commit()
        .await
        .map_err(|err| amqp_error("commit the move", &err))?;
    Ok(moved)
}

fn without_dead_letter_headers(properties: BasicProperties) -> BasicProperties {
    let Some(headers) = properties.headers().clone() else {
        return properties;
    };
    let mut kept = FieldTable::default();
    for (key, value) in headers.inner() {
        let key_text = key.as_str();
        if key_text != DEAD_REASON_HEADER && !BROKER_HEADERS.contains(&key_text) {
            kept.insert(key.clone(), value.clone());
        }
    }
    properties.with_headers(kept)
}
