//! The `Broker` trait and its optional abilities.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use clipfleet_proto::{PoolName, WorkerId};

use crate::{
    BrokerResult, Delivery, Lease, Nack, Outgoing, PoolSpec, QueueDepth, QueueRef, Receive, Topic,
};

/// A message broker with durable queues, leases and dead letters.
///
/// The contract every backend keeps (and the conformance suite checks):
/// - **at least once**: a message whose publish returned `Ok` is delivered until a consumer
///   acks it or it is dead-lettered; it may be delivered more than once;
/// - **confirmed publish**: `publish` returns only once the broker holds the message durably;
///   an `Err` means it may not have been stored;
/// - **leases**: a delivery belongs to its receiver until acked, nacked, dead-lettered, or the
///   lease is lost (expiry, channel loss), after which the broker redelivers it;
/// - **delivery limit**: a copy delivered `PoolSpec::max_deliveries` times without being settled
///   is dead-lettered with reason `delivery_limit`;
/// - **delayed retry** is held by the broker, not by the consumer;
/// - **empty ack** (`ack(&[])`) is a no-op;
/// - **priority**: on a pool's jobs queue, paid work goes first without starving free work.
#[async_trait]
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Declares, idempotently, what a pool needs: its paid and free jobs queues, its dead-letter
    /// queue and the retry path back. Every component may call it at start.
    async fn ensure_pool(&self, pool: &PoolName, spec: PoolSpec) -> BrokerResult<()>;

    /// Publishes one message; returns once the broker confirmed it durably.
    async fn publish(&self, topic: &Topic, message: Outgoing) -> BrokerResult<()> {
        self.publish_all(topic, vec![message]).await
    }

    /// Publishes several messages; returns once every one is confirmed. Backends pipeline the
    /// confirms, so this is much faster than calling `publish` in a loop.
    async fn publish_all(&self, topic: &Topic, messages: Vec<Outgoing>) -> BrokerResult<()>;

    /// Receives up to `options.max` deliveries, waiting up to `options.wait` for the first.
    /// An empty result means nothing was ready in time.
    async fn receive(&self, queue: &QueueRef, options: Receive) -> BrokerResult<Vec<Delivery>>;

    /// Settles deliveries as done: they are gone for good. An empty slice is a no-op. Acking a
    /// lost lease fails with `LeaseLost` (the message is, or will be, redelivered).
    async fn ack(&self, leases: &[Lease]) -> BrokerResult<()>;

    /// Returns a delivery to its queue, now or after a delay.
    async fn nack(&self, lease: &Lease, action: Nack) -> BrokerResult<()>;

    /// Moves a delivery to its pool's dead-letter queue with `reason` (an error code).
    async fn dead_letter(&self, lease: &Lease, reason: &str) -> BrokerResult<()>;

    /// Keeps a delivery leased for `lease_for` from now (long jobs heartbeat with it).
    async fn extend_lease(&self, lease: &Lease, lease_for: Duration) -> BrokerResult<()>;

    /// How many messages a queue holds.
    async fn depth(&self, queue: &QueueRef) -> BrokerResult<QueueDepth>;

    /// Whether the broker answers (`/readyz`).
    async fn check(&self) -> BrokerResult<()>;

    /// Control-message fan-out, where the backend has it.
    fn control_bus(&self) -> Option<&dyn ControlBus> {
        None
    }

    /// Operator actions (delete, purge), where the backend has them.
    fn admin(&self) -> Option<&dyn BrokerAdmin> {
        None
    }
}

/// Fan-out of control messages: every subscribed worker sees every message published to
/// [`Topic::Control`] after it subscribed, on its own [`QueueRef::Control`] queue.
#[async_trait]
pub trait ControlBus: Send + Sync {
    /// Declares `worker`'s control queue (it goes away when the worker does).
    async fn subscribe_control(&self, worker: &WorkerId) -> BrokerResult<()>;
}

/// Operator actions on queues.
#[async_trait]
pub trait BrokerAdmin: Send + Sync {
    /// Deletes a pool's queues, messages included.
    async fn delete_pool(&self, pool: &PoolName) -> BrokerResult<()>;

    /// Drops every ready message of a queue; returns how many.
    async fn purge(&self, queue: &QueueRef) -> BrokerResult<u64>;

    /// Moves up to `max` ready messages from `from` to `to` (a pool's jobs or dead-letter
    /// queue), keeping body and headers; returns how many moved (0: `from` is empty). Between
    /// jobs queues a message keeps its priority class; a dead-letter queue has no classes, so
    /// what leaves one joins the free class (`dlq replay` reads the class from the job
    /// instead). A message moved out of a dead-letter queue starts afresh: its dead-letter
    /// reason and delivery count are dropped.
    ///
    /// One call is one batch, settled as a unit where the backend can: a mover that dies
    /// mid-batch leaves every message of the batch where it was (RabbitMQ: an AMQP transaction
    /// over the publishes and the acks; memory: one lock). SQS has no such unit and refuses.
    async fn move_messages(
        &self,
        from: &QueueRef,
        to: &QueueRef,
        max: usize,
    ) -> BrokerResult<usize>;
}
