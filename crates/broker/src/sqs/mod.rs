//! `sqs://<region>`: Amazon SQS (or an emulator at `AWS_ENDPOINT_URL`) through aws-sdk-sqs.
//!
//! A pool is two queues (paid, free) with a redrive policy to its dead-letter queue
//! (`maxReceiveCount` = `PoolSpec::max_deliveries`). A lease is the visibility timeout: received
//! messages stay invisible for the lease, `extend_lease` (a heartbeat, see `LeaseHeartbeat`)
//! pushes it out, and `nack(Requeue)` releases it to 0. A delayed retry is a new copy sent with
//! a message delay (at most 15 minutes, SQS's limit) and the original deleted. Receives and
//! deletes are batched within SQS's limit of 10 per call. Bodies travel base64-encoded (SQS
//! bodies are text), headers as string message attributes. SQS has no fan-out: no control bus.

mod client;
mod ops;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use bytes::Bytes;
use clipfleet_proto::{PoolName, Priority};
use tokio::time::Instant;

use self::client::{Names, no_control, sqs_error};
use self::ops::{BATCH_LIMIT, Buffer, MAX_DELAY, MAX_VISIBILITY, secs};
use crate::model::{LeaseToken, check_headers, headers_for_retry};
use crate::{
    Broker, BrokerAdmin, BrokerError, BrokerErrorKind, BrokerOptions, BrokerResult,
    DEAD_REASON_HEADER, Delivery, Headers, Lease, Nack, Outgoing, PoolSpec, QueueDepth, QueueRef,
    Receive, Topic,
};

/// An SQS broker. Clones share the client and caches.
#[derive(Debug, Clone)]
pub struct SqsBroker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: aws_sdk_sqs::Client,
    names: Names,
    /// Queue name → URL (never hard-coded: asked of SQS once).
    urls: Mutex<HashMap<String, Arc<str>>>,
    /// Jobs queue URL → its `maxReceiveCount`.
    max_receives: Mutex<HashMap<Arc<str>, u32>>,
    /// Messages received for a logical queue but not yet handed out (their visibility runs).
    buffers: Mutex<HashMap<QueueRef, Buffer>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

struct SqsLease<'a> {
    queue_url: &'a Arc<str>,
    receipt: &'a Arc<str>,
    settled: &'a Arc<AtomicBool>,
    body: &'a Bytes,
    headers: &'a Headers,
    delivery_count: u32,
}

fn sqs_parts(lease: &Lease) -> BrokerResult<SqsLease<'_>> {
    match &lease.token {
        LeaseToken::Sqs {
            queue_url,
            receipt,
            settled,
            body,
            headers,
            delivery_count,
        } => Ok(SqsLease {
            queue_url,
            receipt,
            settled,
            body,
            headers,
            delivery_count: *delivery_count,
        }),
        #[allow(unreachable_patterns)] // reachable when other backends are compiled in
        _ => Err(BrokerError::new(
            BrokerErrorKind::InvalidInput,
            "not an sqs:// lease",
        )),
    }
}

fn lease_lost() -> BrokerError {
    BrokerError::new(
        BrokerErrorKind::LeaseLost,
        "delivery already settled or its visibility ran out",
    )
}

impl SqsBroker {
    /// Builds the client and declares the events queue.
    pub async fn connect(url: &str, options: BrokerOptions) -> BrokerResult<Self> {
        options.validate()?;
        let broker = SqsBroker {
            inner: Arc::new(Inner {
                client: client::client(url).await?,
                names: Names::new(&options.namespace),
                urls: Mutex::new(HashMap::new()),
                max_receives: Mutex::new(HashMap::new()),
                buffers: Mutex::new(HashMap::new()),
            }),
        };
        broker
            .create_queue(&broker.inner.names.events(), None)
            .await?;
        Ok(broker)
    }
}

#[async_trait]
impl Broker for SqsBroker {
    async fn ensure_pool(&self, pool: &PoolName, spec: PoolSpec) -> BrokerResult<()> {
        let spec = spec.validate()?;
        let names = &self.inner.names;
        let dead_url = self.create_queue(&names.dead(pool), None).await?;
        let arn = self
            .attribute(&dead_url, QueueAttributeName::QueueArn)
            .await?
            .ok_or_else(|| {
                BrokerError::new(BrokerErrorKind::Internal, "dead-letter queue has no ARN")
            })?;
        let policy = format!(
            r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{}"}}"#,
            spec.max_deliveries
        );
        for priority in [Priority::Free, Priority::Paid] {
            let attributes = HashMap::from([(QueueAttributeName::RedrivePolicy, policy.clone())]);
            let url = self
                .create_queue(&names.jobs(pool, priority), Some(attributes))
                .await?;
            lock(&self.inner.max_receives).insert(url, spec.max_deliveries);
        }
        Ok(())
    }

    async fn publish_all(&self, topic: &Topic, messages: Vec<Outgoing>) -> BrokerResult<()> {
        for message in &messages {
            check_headers(&message.headers)?;
        }
        let name = match topic {
            Topic::Jobs(pool, priority) => self.inner.names.jobs(pool, *priority),
            Topic::Events => self.inner.names.events(),
            Topic::Control => return Err(no_control()),
        };
        let url = self.url(&name).await?;
        self.send_batch(&url, &messages, None).await
    }

    async fn receive(&self, queue: &QueueRef, options: Receive) -> BrokerResult<Vec<Delivery>> {
        let lanes = self.inner.names.queues_of(queue)?;
        let mut urls = Vec::with_capacity(lanes.len());
        for (name, priority) in lanes {
            urls.push((self.url(&name).await?, priority));
        }
        let shared = Arc::new(queue.clone());
        let max = options.max.max(1);
        let deadline = Instant::now() + options.wait;
        loop {
            let taken = self.take_buffered(queue, max, options.lease).await;
            if !taken.is_empty() {
                return Ok(taken);
            }
            let mut fetched = 0;
            for (index, (url, priority)) in urls.iter().enumerate() {
                // Long-poll only the last lane, only when the others had nothing (a wait would age
                // what they returned), and briefly, so a paid arrival waits a second at most.
                let remaining = deadline.saturating_duration_since(Instant::now());
                let wait = if fetched == 0 && index + 1 == urls.len() {
                    remaining.min(Duration::from_secs(1))
                } else {
                    Duration::ZERO
                };
                let deliveries = self
                    .fetch(&shared, url, *priority, options.lease, wait)
                    .await?;
                fetched += deliveries.len();
                self.stash(queue, *priority, deliveries);
            }
            if fetched == 0 && Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&self, leases: &[Lease]) -> BrokerResult<()> {
        let mut lost = 0;
        let mut by_queue: HashMap<&str, Vec<SqsLease<'_>>> = HashMap::new();
        for lease in leases {
            let parts = sqs_parts(lease)?;
            if parts.settled.swap(true, Ordering::SeqCst) {
                lost += 1;
            } else {
                by_queue
                    .entry(parts.queue_url.as_ref())
                    .or_default()
                    .push(parts);
            }
        }
        for (url, parts) in by_queue {
            for chunk in parts.chunks(BATCH_LIMIT) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(p.receipt.as_ref())
                            .build()
                            .map_err(|err| {
                                BrokerError::new(BrokerErrorKind::InvalidInput, err.to_string())
                            })
                    })
                    .collect::<BrokerResult<Vec<_>>>()?;
                let out = self
                    .inner
                    .client
                    .delete_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|err| sqs_error("delete messages", err))?;
                lost += out.failed.len();
            }
        }
        if lost > 0 {
            return Err(BrokerError::new(
                BrokerErrorKind::LeaseLost,
                format!(
                    "{lost} of {} deliveries were already settled or their visibility ran out",
                    leases.len()
                ),
            ));
        }
        Ok(())
    }

    async fn nack(&self, lease: &Lease, action: Nack) -> BrokerResult<()> {
        let parts = sqs_parts(lease)?;
        if parts.settled.load(Ordering::SeqCst) {
            return Err(lease_lost());
        }
        match action {
            Nack::Requeue => {
                let limit = match lease.queue() {
                    QueueRef::Jobs(_) => self.max_receives(parts.queue_url).await?,
                    _ => None,
                };
                if limit.is_some_and(|max| parts.delivery_count >= max) {
                    // SQS would move it only at some later receive; the contract says now.
                    return self.dead_letter(lease, "delivery_limit").await;
                }
                self.change_visibility(&parts, 0).await?;
                parts.settled.store(true, Ordering::SeqCst);
                Ok(())
            }
            Nack::RetryAfter(delay) => {
                let copy = Outgoing {
                    body: parts.body.clone(),
                    headers: headers_for_retry(parts.headers),
                };
                // Confirmed copy first, then the delete: a crash between them duplicates, never loses.
                self.send_batch(parts.queue_url, &[copy], Some(secs(delay, MAX_DELAY)))
                    .await?;
                self.delete_one(&parts).await
            }
        }
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> BrokerResult<()> {
        let QueueRef::Jobs(pool) = lease.queue() else {
            return Err(BrokerError::new(
                BrokerErrorKind::Unsupported,
                format!("{} has no dead-letter queue", lease.queue()),
            ));
        };
        let parts = sqs_parts(lease)?;
        if parts.settled.load(Ordering::SeqCst) {
            return Err(lease_lost());
        }
        let mut headers = parts.headers.clone();
        headers.insert(DEAD_REASON_HEADER.into(), reason.to_owned());
        let dead_url = self.url(&self.inner.names.dead(pool)).await?;
        self.send_batch(
            &dead_url,
            &[Outgoing {
                body: parts.body.clone(),
                headers,
            }],
            None,
        )
        .await?;
        self.delete_one(&parts).await
    }

    async fn extend_lease(&self, lease: &Lease, lease_for: Duration) -> BrokerResult<()> {
        let parts = sqs_parts(lease)?;
        if parts.settled.load(Ordering::SeqCst) {
            return Err(lease_lost());
        }
        self.change_visibility(&parts, secs(lease_for, MAX_VISIBILITY))
            .await
    }

    async fn depth(&self, queue: &QueueRef) -> BrokerResult<QueueDepth> {
        let mut depth = QueueDepth {
            ready: 0,
            in_flight: Some(0),
            delayed: Some(0),
            consumers: None,
        };
        for (name, _) in self.inner.names.queues_of(queue)? {
            let url = self.url(&name).await?;
            let out = self
                .inner
                .client
                .get_queue_attributes()
                .queue_url(url.as_ref())
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .map_err(|err| sqs_error(&format!("depth of {name}"), err))?;
            let attrs = out.attributes.unwrap_or_default();
            let get = |key: QueueAttributeName| {
                attrs
                    .get(&key)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            depth.ready += get(QueueAttributeName::ApproximateNumberOfMessages);
            depth.in_flight = depth
                .in_flight
                .map(|n| n + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible));
            depth.delayed = depth
                .delayed
                .map(|n| n + get(QueueAttributeName::ApproximateNumberOfMessagesDelayed));
        }
        Ok(depth)
    }

    async fn check(&self) -> BrokerResult<()> {
        self.url(&self.inner.names.events()).await.map(|_| ())
    }

    fn admin(&self) -> Option<&dyn BrokerAdmin> {
        Some(self)
    }
}

#[async_trait]
impl BrokerAdmin for SqsBroker {
    async fn delete_pool(&self, pool: &PoolName) -> BrokerResult<()> {
        let names = &self.inner.names;
        for queue in [QueueRef::Jobs(pool.clone()), QueueRef::Dead(pool.clone())] {
            lock(&self.inner.buffers).remove(&queue);
        }
        for name in [
            names.jobs(pool, Priority::Free),
            names.jobs(pool, Priority::Paid),
            names.dead(pool),
        ] {
            let url = match self.url(&name).await {
                Ok(url) => url,
                Err(err) if err.kind == BrokerErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            self.inner
                .client
                .delete_queue()
                .queue_url(url.as_ref())
                .send()
                .await
                .map_err(|err| sqs_error(&format!("delete {name}"), err))?;
            lock(&self.inner.urls).remove(&name);
            lock(&self.inner.max_receives).remove(&url);
        }
        Ok(())
    }

    async fn purge(&self, queue: &QueueRef) -> BrokerResult<u64> {
        let before = self.depth(queue).await?.ready;
        lock(&self.inner.buffers).remove(queue);
        for (name, _) in self.inner.names.queues_of(queue)? {
            let url = self.url(&name).await?;
            self.inner
                .client
                .purge_queue()
                .queue_url(url.as_ref())
                .send()
                .await
                .map_err(|err| sqs_error(&format!("purge {name}"), err))?;
        }
        Ok(before)
    }

    async fn move_messages(
        &self,
        _from: &QueueRef,
        _to: &QueueRef,
        _max: usize,
    ) -> BrokerResult<usize> {
        // A send and a delete are two calls with no unit around them: a mover killed between
        // them would leave a copy in both queues. SQS's own redrive (StartMessageMoveTask) is
        // the tool there.
        Err(BrokerError::new(
            BrokerErrorKind::Unsupported,
            "queue move on SQS: use the SQS console's dead-letter redrive (StartMessageMoveTask)",
        ))
    }
}
