//! `amqp://` and `amqps://`: RabbitMQ through lapin, with the topology of DESIGN.md §4
//! (`names.rs`), publisher confirms on every publish, per-consumer prefetch, paid-before-free
//! across two quorum queues per pool, delayed retries through TTL queues (never held by a
//! consumer), and reconnection with backoff when the connection or a channel is lost. Every
//! await on RabbitMQ is bounded (the operation timeout) or watched (the heartbeat,
//! `BrokerOptions::heartbeat`): a connection cut without a word holds nobody for long.
//!
//! Leases: RabbitMQ keeps a delivery for its consumer until the channel closes (bounded by the
//! server's `consumer_timeout`, 30 min by default: size it above the longest job), so
//! `extend_lease` only checks the delivery is still held; a lost channel is a lost lease.

mod consumer;
mod headers;
mod mover;
mod names;
mod session;
mod settle;
mod topology;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use clipfleet_proto::{PoolName, WorkerId};
use lapin::options::{
    BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation};

use self::consumer::QueueConsumer;
use self::names::{CONTROL_ROUTING_KEY, EVENTS_ROUTING_KEY, Names, retry_step};
use self::session::{Sessions, amqp_error, bounded, close_channel};
pub(crate) use self::settle::ChannelSettler;
pub use self::settle::SettleStats;
use self::settle::{Settle, SettleTotals};
use crate::model::{LeaseToken, check_headers, headers_for_retry, retries_of};
use crate::{
    Broker, BrokerAdmin, BrokerError, BrokerErrorKind, BrokerOptions, BrokerResult, ControlBus,
    DEAD_REASON_HEADER, Delivery, Lease, Nack, Outgoing, PoolSpec, QueueDepth, QueueRef, Receive,
    Topic,
};

/// A RabbitMQ broker. Clones share the connection and consumers.
#[derive(Debug, Clone)]
pub struct AmqpBroker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sessions: Arc<Sessions>,
    names: Names,
    consumers: Mutex<HashMap<QueueRef, Arc<QueueConsumer>>>,
    /// Retry steps whose TTL queue this process declared.
    retry_steps: Mutex<HashSet<Duration>>,
    /// Settles and the frames they took, over every consumer channel.
    settles: Arc<SettleTotals>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for consumer in lock(&self.consumers).values() {
            consumer.stop();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn lease_lost(why: &str) -> BrokerError {
    BrokerError::new(BrokerErrorKind::LeaseLost, why.to_owned())
}

/// A delivery's place on its channel: what settles it.
struct Held<'a> {
    settler: &'a Arc<ChannelSettler>,
    tag: u64,
}

impl Held<'_> {
    fn usable(&self) -> bool {
        self.settler.holds(self.tag)
    }
}

/// The parts of an AMQP lease.
fn amqp_parts(lease: &Lease) -> BrokerResult<(Held<'_>, &Arc<str>, &Bytes, &crate::Headers)> {
    match &lease.token {
        LeaseToken::Amqp {
            settler,
            tag,
            routing_key,
            body,
            headers,
        } => Ok((Held { settler, tag: *tag }, routing_key, body, headers)),
        #[allow(unreachable_patterns)] // reachable when other backends are compiled in
        _ => Err(BrokerError::new(
            BrokerErrorKind::InvalidInput,
            "not an amqp:// lease",
        )),
    }
}

impl AmqpBroker {
    /// Connects and declares the base topology (exchanges, events queue).
    pub async fn connect(url: &str, options: BrokerOptions) -> BrokerResult<Self> {
        options.validate()?;
        if url.starts_with("amqps://") {
            return Err(BrokerError::new(
                BrokerErrorKind::Unsupported,
                "built without TLS for amqp: amqps:// is not available (use a TLS-terminating sidecar or amqp:// inside the cluster)",
            ));
        }
        let names = Names::new(&options.namespace);
        let broker = AmqpBroker {
            inner: Arc::new(Inner {
                sessions: Arc::new(Sessions::new(url, options)),
                names,
                consumers: Mutex::new(HashMap::new()),
                retry_steps: Mutex::new(HashSet::new()),
                settles: Arc::default(),
            }),
        };
        broker
            .on_channel("declare the base topology", async |channel| {
                topology::declare_base(&channel, &broker.inner.names).await
            })
            .await?;
        Ok(broker)
    }

    fn timeout(&self) -> Duration {
        self.inner.sessions.options().op_timeout
    }

    /// A fresh channel on the live connection, for declarations and queries (a failed one then
    /// closes only itself).
    async fn channel(&self) -> BrokerResult<Channel> {
        let (session, _) = self.inner.sessions.get().await?;
        session
            .connection
            .create_channel()
            .await
            .map_err(|err| amqp_error("open channel", &err))
    }

    /// Runs `op` on a fresh channel of the live connection and closes the channel after it,
    /// each step within the operation timeout: a connection that died without a word holds a
    /// caller no longer than that (declarations, queries and admin calls go through here).
    async fn on_channel<T>(
        &self,
        what: &str,
        op: impl AsyncFnOnce(Channel) -> BrokerResult<T>,
    ) -> BrokerResult<T> {
        let timeout = self.timeout();
        let channel = bounded(timeout, what, self.channel()).await?;
        let result = bounded(timeout, what, op(channel.clone())).await;
        close_channel(&channel, timeout, what).await;
        result
    }

    /// Closes every consumer channel: deliveries not yet settled go back to their queues, as a
    /// crashed consumer's would. (Drains use this for what was prefetched but not started.)
    pub async fn reset_consumers(&self) {
        let consumers: Vec<_> = lock(&self.inner.consumers).values().cloned().collect();
        for consumer in consumers {
            consumer.reset().await;
        }
    }

    /// Closes the connection; in-flight deliveries go back to their queues.
    pub async fn close(&self) {
        let consumers: Vec<_> = lock(&self.inner.consumers)
            .drain()
            .map(|(_, c)| c)
            .collect();
        for consumer in consumers {
            consumer.stop();
        }
        self.inner.sessions.close().await;
    }

    /// Deliveries settled so far and the `basic.ack`/`basic.nack` frames written for them:
    /// how well acks coalesce (`settle.rs`).
    pub fn settle_stats(&self) -> SettleStats {
        self.inner.settles.snapshot()
    }

    fn consumer(&self, queue: &QueueRef) -> Arc<QueueConsumer> {
        lock(&self.inner.consumers)
            .entry(queue.clone())
            .or_insert_with(|| {
                QueueConsumer::start(
                    queue.clone(),
                    &self.inner.names,
                    self.inner.sessions.clone(),
                    self.inner.settles.clone(),
                )
            })
            .clone()
    }

    /// Publishes and waits for every confirm; `mandatory` turns "no queue bound" into an error.
    async fn publish_raw(
        &self,
        exchange: &str,
        key: &str,
        mandatory: bool,
        messages: Vec<Outgoing>,
    ) -> BrokerResult<()> {
        let (session, _) = self.inner.sessions.get().await?;
        let generation = session.generation;
        let result = bounded(self.timeout(), "publish", async {
            let options = BasicPublishOptions { mandatory, ..BasicPublishOptions::default() };
            let mut confirms = Vec::with_capacity(messages.len());
            for message in &messages {
                let confirm = session
                    .publisher
                    .basic_publish(exchange.into(), key.into(), options, &message.body, headers::properties(&message.headers))
                    .await
                    .map_err(|err| amqp_error("publish", &err))?;
                confirms.push(confirm);
            }
            for confirm in confirms {
                match confirm.await.map_err(|err| amqp_error("publisher confirm", &err))? {
                    Confirmation::Ack(None) => {}
                    Confirmation::Ack(Some(returned)) => {
                        return Err(BrokerError::new(
                            BrokerErrorKind::NotFound,
                            format!("no queue bound to {exchange} for {key}: {}", returned.reply_text),
                        ));
                    }
                    Confirmation::Nack(_) => {
                        return Err(BrokerError::new(
                            BrokerErrorKind::Rejected,
                            format!("RabbitMQ refused a message for {exchange}/{key} (queue full or unavailable)"),
                        ));
                    }
                    Confirmation::NotRequested => {
                        return Err(BrokerError::new(BrokerErrorKind::Internal, "publishing channel lost confirm mode"));
                    }
                }
            }
            Ok(())
        })
        .await;
        if let Err(err) = &result
            && matches!(
                err.kind,
                BrokerErrorKind::Unavailable | BrokerErrorKind::Timeout
            )
        {
            self.inner.sessions.invalidate(generation).await;
        }
        result
    }

    async fn ensure_retry_step(&self, step: Duration) -> BrokerResult<()> {
        if lock(&self.inner.retry_steps).contains(&step) {
            return Ok(());
        }
        self.on_channel("declare a retry step", async |channel| {
            topology::declare_retry(&channel, &self.inner.names, step).await
        })
        .await?;
        lock(&self.inner.retry_steps).insert(step);
        Ok(())
    }

    /// Acks or nacks one delivery through its channel's settler (coalesced with the channel's
    /// other settles, `settle.rs`). Bounded: a settle that cannot be written within the
    /// operation timeout is a lost lease (RabbitMQ redelivers when the channel goes), never a
    /// job slot held forever.
    async fn settle(&self, held: &Held<'_>, how: Settle) -> BrokerResult<()> {
        held.settler
            .settle(held.tag, how)
            .await
            .map_err(|why| lease_lost(&why))
    }

    fn to_delivery(
        queue: &Arc<QueueRef>,
        priority: clipfleet_proto::Priority,
        (settler, delivery): consumer::Buffered,
    ) -> Delivery {
        let (headers, delivery_count) = headers::read(&delivery.properties);
        let body = Bytes::from(delivery.data);
        Delivery {
            lease: Lease {
                queue: queue.clone(),
                token: LeaseToken::Amqp {
                    settler,
                    tag: delivery.delivery_tag,
                    routing_key: Arc::from(delivery.routing_key.as_str()),
                    body: body.clone(),
                    headers: headers.clone(),
                },
            },
            body,
            retries: retries_of(&headers),
            headers,
            delivery_count,
            priority,
        }
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn ensure_pool(&self, pool: &PoolName, spec: PoolSpec) -> BrokerResult<()> {
        self.on_channel("declare a pool", async |channel| {
            topology::declare_pool(&channel, &self.inner.names, pool, spec).await
        })
        .await
    }

    async fn publish_all(&self, topic: &Topic, messages: Vec<Outgoing>) -> BrokerResult<()> {
        for message in &messages {
            check_headers(&message.headers)?;
        }
        let names = &self.inner.names;
        match topic {
            Topic::Jobs(pool, priority) => {
                self.publish_raw(
                    &names.jobs_exchange(),
                    &Names::jobs_key(pool, *priority),
                    true,
                    messages,
                )
                .await
            }
            Topic::Events => {
                self.publish_raw(&names.events_exchange(), EVENTS_ROUTING_KEY, true, messages)
                    .await
            }
            Topic::Control => {
                self.publish_raw(
                    &names.control_exchange(),
                    CONTROL_ROUTING_KEY,
                    false,
                    messages,
                )
                .await
            }
        }
    }

    async fn receive(&self, queue: &QueueRef, options: Receive) -> BrokerResult<Vec<Delivery>> {
        let consumer = self.consumer(queue);
        let deadline = tokio::time::Instant::now() + options.wait;
        loop {
            let arrived = consumer.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let taken = consumer.take(options.max.max(1));
            if !taken.is_empty() {
                return Ok(taken
                    .into_iter()
                    .map(|(priority, d)| AmqpBroker::to_delivery(&consumer.queue, priority, d))
                    .collect());
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                () = &mut arrived => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn ack(&self, leases: &[Lease]) -> BrokerResult<()> {
        // Asked all at once, so a batch goes out as one `multiple` ack where its tags allow.
        let mut settles = Vec::with_capacity(leases.len());
        for lease in leases {
            let (held, ..) = amqp_parts(lease)?;
            settles.push(held.settler.settle(held.tag, Settle::Ack));
        }
        let lost = futures_util::future::join_all(settles)
            .await
            .into_iter()
            .filter(Result::is_err)
            .count();
        if lost > 0 {
            return Err(lease_lost(&format!(
                "{lost} of {} deliveries could not be acked",
                leases.len()
            )));
        }
        Ok(())
    }

    async fn nack(&self, lease: &Lease, action: Nack) -> BrokerResult<()> {
        let (held, routing_key, body, headers) = amqp_parts(lease)?;
        match action {
            Nack::Requeue => self.settle(&held, Settle::Nack { requeue: true }).await,
            Nack::RetryAfter(delay) => {
                if !held.usable() {
                    return Err(lease_lost(
                        "delivery already settled, or its channel closed",
                    ));
                }
                let step = retry_step(delay);
                self.ensure_retry_step(step).await?;
                let copy = Outgoing {
                    body: body.clone(),
                    headers: headers_for_retry(headers),
                };
                // Confirmed copy first, then the ack: a crash between them duplicates, never loses.
                self.publish_raw(
                    &self.inner.names.retry_exchange(step),
                    routing_key,
                    true,
                    vec![copy],
                )
                .await?;
                self.settle(&held, Settle::Ack).await
            }
        }
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> BrokerResult<()> {
        if !matches!(lease.queue(), QueueRef::Jobs(_)) {
            return Err(BrokerError::new(
                BrokerErrorKind::Unsupported,
                format!("{} has no dead-letter queue", lease.queue()),
            ));
        }
        let (held, routing_key, body, headers) = amqp_parts(lease)?;
        if !held.usable() {
            return Err(lease_lost(
                "delivery already settled, or its channel closed",
            ));
        }
        let mut headers = headers.clone();
        headers.insert(DEAD_REASON_HEADER.into(), reason.to_owned());
        let letter = Outgoing {
            body: body.clone(),
            headers,
        };
        self.publish_raw(
            &self.inner.names.dead_exchange(),
            routing_key,
            true,
            vec![letter],
        )
        .await?;
        self.settle(&held, Settle::Ack).await
    }

    async fn extend_lease(&self, lease: &Lease, _lease_for: Duration) -> BrokerResult<()> {
        let (held, ..) = amqp_parts(lease)?;
        if held.usable() {
            Ok(())
        } else {
            Err(lease_lost("the delivery's channel closed"))
        }
    }

    async fn depth(&self, queue: &QueueRef) -> BrokerResult<QueueDepth> {
        self.on_channel("query a queue's depth", async |channel| {
            let (mut ready, mut consumers) = (0u64, 0u64);
            for (name, _) in self.inner.names.queues_of(queue) {
                let options = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                let declared = channel
                    .queue_declare(name.as_str().into(), options, FieldTable::default())
                    .await
                    .map_err(|err| amqp_error(&format!("depth of {name}"), &err))?;
                ready += u64::from(declared.message_count());
                // A consumer of a pool reads its paid and its free queue: count it once.
                consumers = consumers.max(u64::from(declared.consumer_count()));
            }
            Ok(QueueDepth {
                ready,
                in_flight: None,
                delayed: None,
                consumers: Some(consumers),
            })
        })
        .await
    }

    async fn check(&self) -> BrokerResult<()> {
        self.inner.sessions.get().await.map(|_| ())
    }

    fn control_bus(&self) -> Option<&dyn ControlBus> {
        Some(self)
    }

    fn admin(&self) -> Option<&dyn BrokerAdmin> {
        Some(self)
    }
}

#[async_trait]
impl ControlBus for AmqpBroker {
    async fn subscribe_control(&self, worker: &WorkerId) -> BrokerResult<()> {
        let queue = QueueRef::Control(worker.clone());
        self.on_channel("declare a control queue", async |channel| {
            topology::declare_control(&channel, &self.inner.names, worker).await
        })
        .await?;
        // Consume at once: an auto-delete queue lives as long as its consumer.
        self.consumer(&queue);
        Ok(())
    }
}

#[async_trait]
impl BrokerAdmin for AmqpBroker {
    async fn delete_pool(&self, pool: &PoolName) -> BrokerResult<()> {
        for queue in [QueueRef::Jobs(pool.clone()), QueueRef::Dead(pool.clone())] {
            let consumer = lock(&self.inner.consumers).remove(&queue);
            if let Some(consumer) = consumer {
                consumer.close().await;
            }
        }
        self.on_channel("delete a pool", async |channel| {
            let queues = [QueueRef::Jobs(pool.clone()), QueueRef::Dead(pool.clone())];
            for (name, _) in queues.iter().flat_map(|q| self.inner.names.queues_of(q)) {
                channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|err| amqp_error(&format!("delete {name}"), &err))?;
            }
            Ok(())
        })
        .await
    }

    async fn purge(&self, queue: &QueueRef) -> BrokerResult<u64> {
        self.on_channel("purge a queue", async |channel| {
            let mut purged = 0u64;
            for (name, _) in self.inner.names.queues_of(queue) {
                let count = channel
                    .queue_purge(name.as_str().into(), QueuePurgeOptions::default())
                    .await
                    .map_err(|err| amqp_error(&format!("purge {name}"), &err))?;
                purged += u64::from(count);
            }
            Ok(purged)
        })
        .await
    }

    async fn move_messages(
        &self,
        from: &QueueRef,
        to: &QueueRef,
        max: usize,
    ) -> BrokerResult<usize> {
        // Not bounded as a whole: a large batch may take longer than one operation.
        let timeout = self.timeout();
        let channel = bounded(timeout, "open a channel to move messages", self.channel()).await?;
        let moved = mover::move_batch(&channel, &self.inner.names, from, to, max).await;
        // Closing rolls back whatever was not committed: fetched messages return to `from`.
        close_channel(&channel, timeout, "moved").await;
        moved
    }
}
