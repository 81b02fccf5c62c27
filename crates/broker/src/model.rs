//! What flows through the [`crate::Broker`] trait: where messages go, what a consumer receives,
//! and the handle (lease) that acknowledges it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clipfleet_proto::{PoolName, Priority, WorkerId};

/// Message headers: W3C trace context (`traceparent`, `tracestate`) and job metadata. Carried as
/// AMQP headers on RabbitMQ and message attributes on SQS (at most [`MAX_HEADERS`] there).
pub type Headers = BTreeMap<String, String>;

/// Most headers a message may carry (SQS allows ten message attributes; we keep two spare).
pub const MAX_HEADERS: usize = 8;

/// Header carrying the reason a message was dead-lettered.
pub const DEAD_REASON_HEADER: &str = "x-clip-dead-reason";

/// Header counting delayed retries of a message (each retry is a new copy on every backend).
pub const RETRIES_HEADER: &str = "x-clip-retries";

/// Where a message is published.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// The job queue of a pool, in a priority class.
    Jobs(PoolName, Priority),
    /// Job events (for the ledger).
    Events,
    /// Control messages, seen by every subscribed worker ([`crate::ControlBus`] backends only).
    Control,
}

/// A queue consumers receive from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueueRef {
    /// A pool's jobs, paid before free without starving free.
    Jobs(PoolName),
    /// A pool's dead letters.
    Dead(PoolName),
    /// Job events, consumed by the ledger.
    Events,
    /// One worker's control queue ([`crate::ControlBus`] backends only).
    Control(WorkerId),
}

impl fmt::Display for QueueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueRef::Jobs(pool) => write!(f, "jobs/{pool}"),
            QueueRef::Dead(pool) => write!(f, "dead/{pool}"),
            QueueRef::Events => f.write_str("events"),
            QueueRef::Control(worker) => write!(f, "control/{worker}"),
        }
    }
}

/// How a pool's queues behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// Deliveries of one copy of a message before it is dead-lettered with reason
    /// `delivery_limit` (consumer crashes, lease losses and `Nack::Requeue` count).
    pub max_deliveries: u32,
}

impl PoolSpec {
    /// Refuses a spec no backend can honour.
    pub(crate) fn validate(self) -> crate::BrokerResult<Self> {
        if self.max_deliveries == 0 {
            return Err(crate::BrokerError::new(
                crate::BrokerErrorKind::InvalidInput,
                "max_deliveries must be positive",
            ));
        }
        Ok(self)
    }
}

impl Default for PoolSpec {
    fn default() -> Self {
        PoolSpec { max_deliveries: 5 }
    }
}

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// The encoded body (MessagePack for every clipfleet message).
    pub body: Bytes,
    /// Trace context and metadata.
    pub headers: Headers,
}

impl Outgoing {
    /// A message with `body` and no headers.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Outgoing {
            body: body.into(),
            headers: Headers::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }
}

/// What to do with a delivery that was not processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nack {
    /// Back to the queue at once (counts as a delivery).
    Requeue,
    /// Back to the queue after this delay, held by the broker, not by the consumer. Each backend
    /// rounds up to what it can do (RabbitMQ: a ladder of TTL queues; SQS: at most 15 minutes).
    RetryAfter(Duration),
}

/// Backend-specific identity of a delivery.
#[derive(Debug, Clone)]
pub(crate) enum LeaseToken {
    #[cfg_attr(not(test), allow(dead_code))]
    Memory { id: u64 },
    #[cfg(feature = "amqp")]
    Amqp {
        /// The settler of the channel the delivery came on (acks coalesced, `amqp/settle.rs`);
        /// settling fails once that channel died (the broker then redelivers).
        settler: Arc<crate::amqp::ChannelSettler>,
        /// The delivery's tag on that channel.
        tag: u64,
        /// Routing key it was published with (`<pool>` or `<pool>.paid`): retries and dead
        /// letters are routed with it.
        routing_key: Arc<str>,
        /// Body and headers, to republish on a delayed retry or a dead letter.
        body: bytes::Bytes,
        headers: Headers,
    },
    #[cfg(feature = "sqs")]
    Sqs {
        /// Queue URL the message was received from.
        queue_url: Arc<str>,
        /// Receipt handle of this receive.
        receipt: Arc<str>,
        /// Set once settled: SQS accepts a second delete of a receipt, the contract does not.
        settled: Arc<std::sync::atomic::AtomicBool>,
        /// Body and headers, to republish on a delayed retry or a dead letter.
        body: bytes::Bytes,
        headers: Headers,
        /// Receives of this copy so far (SQS's `ApproximateReceiveCount`).
        delivery_count: u32,
    },
}

/// The right to acknowledge one delivery. Hand it back to the broker that issued it to ack,
/// nack, dead-letter or extend it; once the lease is lost the broker redelivers the message.
#[derive(Debug, Clone)]
pub struct Lease {
    pub(crate) queue: Arc<QueueRef>,
    pub(crate) token: LeaseToken,
}

impl Lease {
    /// The queue the delivery came from.
    pub fn queue(&self) -> &QueueRef {
        &self.queue
    }
}

/// A received message, leased to the receiver.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The handle to settle it with.
    pub lease: Lease,
    /// The body as published.
    pub body: Bytes,
    /// Headers as published (plus [`DEAD_REASON_HEADER`] on dead letters).
    pub headers: Headers,
    /// Deliveries of this copy so far, this one included (1 on first delivery).
    pub delivery_count: u32,
    /// Delayed retries before this copy ([`Nack::RetryAfter`]), from [`RETRIES_HEADER`].
    pub retries: u32,
    /// The class it was published in (jobs queues; `Free` elsewhere).
    pub priority: Priority,
}

impl Delivery {
    /// Why it was dead-lettered, on a dead-letter queue.
    pub fn dead_reason(&self) -> Option<&str> {
        self.headers.get(DEAD_REASON_HEADER).map(String::as_str)
    }
}

/// How many messages a queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Ready to be delivered now.
    pub ready: u64,
    /// Delivered and not yet settled. `None` where the backend cannot tell (RabbitMQ's AMQP
    /// interface does not expose it; its management API does, and KEDA reads that).
    pub in_flight: Option<u64>,
    /// Waiting out a retry delay, where the backend can tell.
    pub delayed: Option<u64>,
    /// Consumers attached, where the backend can tell (RabbitMQ; SQS has no such notion).
    pub consumers: Option<u64>,
}

/// Options for [`crate::Broker::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receive {
    /// Most deliveries to return (clamped to the backend's limit: 10 on SQS).
    pub max: usize,
    /// How long the receiver may hold each delivery before the broker redelivers it (the SQS
    /// visibility timeout; RabbitMQ holds a delivery until its channel closes, bounded by the
    /// server's `consumer_timeout`).
    pub lease: Duration,
    /// How long to wait for the first delivery when none is ready.
    pub wait: Duration,
}

impl Receive {
    /// Up to `max` deliveries, leased for `lease`, waiting at most `wait`.
    pub fn new(max: usize, lease: Duration, wait: Duration) -> Self {
        Receive { max, lease, wait }
    }
}

/// Checks message headers against what every backend can carry.
pub(crate) fn check_headers(headers: &Headers) -> crate::BrokerResult<()> {
    use crate::{BrokerError, BrokerErrorKind};
    if headers.len() > MAX_HEADERS {
        return Err(BrokerError::new(
            BrokerErrorKind::InvalidInput,
            format!(
                "{} headers, more than the {MAX_HEADERS} allowed",
                headers.len()
            ),
        ));
    }
    for (key, value) in headers {
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !key_ok || value.len() > 1024 {
            return Err(BrokerError::new(
                BrokerErrorKind::InvalidInput,
                format!(
                    "header {key:?}: keys are 1..=64 of [A-Za-z0-9._-], values at most 1024 bytes"
                ),
            ));
        }
    }
    Ok(())
}

/// Reads [`RETRIES_HEADER`] (absent or garbage counts as 0).
pub(crate) fn retries_of(headers: &Headers) -> u32 {
    headers
        .get(RETRIES_HEADER)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Headers for the next delayed-retry copy of a message.
pub(crate) fn headers_for_retry(headers: &Headers) -> Headers {
    let mut next = headers.clone();
    next.insert(RETRIES_HEADER.into(), (retries_of(headers) + 1).to_string());
    next
}
