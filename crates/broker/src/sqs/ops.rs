//! What the SQS broker does on the wire: queues by name, batched sends, single-message
//! settlement, and receives into a per-queue buffer that hands out paid before free.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use clipfleet_proto::Priority;
use tokio::time::Instant;

use super::client::{Names, sqs_error};
use super::{SqsBroker, SqsLease, lock, sqs_parts};
use crate::model::{LeaseToken, retries_of};
use crate::{
    BrokerError, BrokerErrorKind, BrokerResult, DEAD_REASON_HEADER, Delivery, Headers, Lease,
    Outgoing, PrioritySelector, QueueRef,
};

/// SQS's most messages per receive, send batch or delete batch.
pub(super) const BATCH_LIMIT: usize = 10;
/// SQS's longest message delay.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
pub(super) const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// Bytes of bodies per send batch, under SQS's 256 KiB request limit.
pub(super) const BATCH_BYTES: usize = 200 * 1024;

#[derive(Debug, Default)]
pub(super) struct Buffer {
    pending: HashMap<Priority, VecDeque<(Instant, Delivery)>>,
    selector: PrioritySelector,
}

pub(super) fn secs(duration: Duration, max: Duration) -> i32 {
    let clamped = duration.min(max);
    let whole = clamped.as_secs() + u64::from(clamped.subsec_nanos() > 0);
    i32::try_from(whole).unwrap_or(i32::MAX)
}

fn attributes(headers: &Headers) -> BrokerResult<HashMap<String, MessageAttributeValue>> {
    headers
        .iter()
        .map(|(key, value)| {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|err| {
                    BrokerError::new(
                        BrokerErrorKind::InvalidInput,
                        format!("header {key}: {err}"),
                    )
                })?;
            Ok((key.clone(), attribute))
        })
        .collect()
}

impl SqsBroker {
    pub(super) async fn create_queue(
        &self,
        name: &str,
        attributes: Option<HashMap<QueueAttributeName, String>>,
    ) -> BrokerResult<Arc<str>> {
        Names::check_len(name)?;
        let url = self
            .inner
            .client
            .create_queue()
            .queue_name(name)
            .set_attributes(attributes)
            .send()
            .await
            .map_err(|err| sqs_error(&format!("create queue {name}"), err))?
            .queue_url
            .ok_or_else(|| {
                BrokerError::new(
                    BrokerErrorKind::Internal,
                    format!("no URL for queue {name}"),
                )
            })?;
        let url: Arc<str> = Arc::from(url);
        lock(&self.inner.urls).insert(name.to_owned(), url.clone());
        Ok(url)
    }

    pub(super) async fn url(&self, name: &str) -> BrokerResult<Arc<str>> {
        if let Some(url) = lock(&self.inner.urls).get(name) {
            return Ok(url.clone());
        }
        let url = self
            .inner
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|err| sqs_error(&format!("find queue {name}"), err))?
            .queue_url
            .ok_or_else(|| {
                BrokerError::new(BrokerErrorKind::NotFound, format!("no queue {name}"))
            })?;
        let url: Arc<str> = Arc::from(url);
        lock(&self.inner.urls).insert(name.to_owned(), url.clone());
        Ok(url)
    }

    pub(super) async fn attribute(
        &self,
        url: &str,
        name: QueueAttributeName,
    ) -> BrokerResult<Option<String>> {
        let out = self
            .inner
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(|err| sqs_error("queue attributes", err))?;
        Ok(out.attributes.and_then(|mut map| map.remove(&name)))
    }

    /// The `maxReceiveCount` of a jobs queue (cached; read from its redrive policy).
    pub(super) async fn max_receives(&self, url: &Arc<str>) -> BrokerResult<Option<u32>> {
        if let Some(max) = lock(&self.inner.max_receives).get(url) {
            return Ok(Some(*max));
        }
        let policy = self
            .attribute(url, QueueAttributeName::RedrivePolicy)
            .await?;
        let max = policy.as_deref().and_then(|text| {
            let start = text.find("maxReceiveCount")?;
            let digits: String = text[start..]
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        });
        if let Some(max) = max {
            lock(&self.inner.max_receives).insert(url.clone(), max);
        }
        Ok(max)
    }

    pub(super) async fn send_batch(
        &self,
        url: &str,
        messages: &[Outgoing],
        delay: Option<i32>,
    ) -> BrokerResult<()> {
        let mut start = 0;
        while start < messages.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < messages.len()
                && end - start < BATCH_LIMIT
                && (end == start || bytes + messages[end].body.len() * 4 / 3 < BATCH_BYTES)
            {
                bytes += messages[end].body.len() * 4 / 3;
                end += 1;
            }
            let entries = messages[start..end]
                .iter()
                .enumerate()
                .map(|(i, message)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(BASE64.encode(&message.body))
                        .set_message_attributes(
                            Some(attributes(&message.headers)?).filter(|a| !a.is_empty()),
                        )
                        .set_delay_seconds(delay)
                        .build()
                        .map_err(|err| {
                            BrokerError::new(BrokerErrorKind::InvalidInput, err.to_string())
                        })
                })
                .collect::<BrokerResult<Vec<_>>>()?;
            let out = self
                .inner
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|err| sqs_error("send messages", err))?;
            if let Some(failed) = out.failed.first() {
                let kind = if failed.sender_fault {
                    BrokerErrorKind::InvalidInput
                } else {
                    BrokerErrorKind::Rejected
                };
                return Err(BrokerError::new(
                    kind,
                    format!(
                        "SQS refused {} of {} messages: {} {}",
                        out.failed.len(),
                        end - start,
                        failed.code,
                        failed.message.as_deref().unwrap_or("")
                    ),
                ));
            }
            start = end;
        }
        Ok(())
    }

    pub(super) async fn delete_one(&self, lease: &SqsLease<'_>) -> BrokerResult<()> {
        self.inner
            .client
            .delete_message()
            .queue_url(lease.queue_url.as_ref())
            .receipt_handle(lease.receipt.as_ref())
            .send()
            .await
            .map_err(|err| sqs_error("delete message", err))?;
        lease.settled.store(true, Ordering::SeqCst);
        Ok(())
    }

    pub(super) async fn change_visibility(
        &self,
        lease: &SqsLease<'_>,
        timeout: i32,
    ) -> BrokerResult<()> {
        self.inner
            .client
            .change_message_visibility()
            .queue_url(lease.queue_url.as_ref())
            .receipt_handle(lease.receipt.as_ref())
            .visibility_timeout(timeout)
            .send()
            .await
            .map_err(|err| sqs_error("change visibility", err))
            .map(|_| ())
    }

    /// Receives up to 10 messages from one physical queue into deliveries.
    pub(super) async fn fetch(
        &self,
        queue: &Arc<QueueRef>,
        url: &Arc<str>,
        priority: Priority,
        lease: Duration,
        wait: Duration,
    ) -> BrokerResult<Vec<Delivery>> {
        let out = self
            .inner
            .client
            .receive_message()
            .queue_url(url.as_ref())
            .max_number_of_messages(BATCH_LIMIT as i32)
            .visibility_timeout(secs(lease, MAX_VISIBILITY))
            .wait_time_seconds(secs(wait, Duration::from_secs(20)).min(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|err| sqs_error("receive", err))?;
        let dead_queue = matches!(queue.as_ref(), QueueRef::Dead(_));

        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|message| {
                let receipt: Arc<str> = Arc::from(message.receipt_handle?);
                let text = message.body.unwrap_or_default();
                // Ours are base64; a foreign producer's raw text is kept as is (and then fails
                // to decode as a message, and is dead-lettered as undecodable).
                let body = Bytes::from(BASE64.decode(&text).unwrap_or_else(|_| text.into_bytes()));
                let mut headers: Headers = message
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.string_value?)))
                    .collect();
                if dead_queue {
                    // Moved by the redrive policy: SQS records no reason, the limit is the reason.
                    headers
                        .entry(DEAD_REASON_HEADER.into())
                        .or_insert_with(|| "delivery_limit".into());
                }
                let delivery_count = message
                    .attributes
                    .and_then(|a| {
                        a.get(&MessageSystemAttributeName::ApproximateReceiveCount)
                            .and_then(|c| c.parse().ok())
                    })
                    .unwrap_or(1);
                Some(Delivery {
                    lease: Lease {
                        queue: queue.clone(),
                        token: LeaseToken::Sqs {
                            queue_url: url.clone(),
                            receipt,
                            settled: Arc::new(AtomicBool::new(false)),
                            body: body.clone(),
                            headers: headers.clone(),
                            delivery_count,
                        },
                    },
                    body,
                    retries: retries_of(&headers),
                    headers,
                    delivery_count,
                    priority,
                })
            })
            .collect())
    }

    /// Keeps fetched deliveries until `take_buffered` hands them out (their visibility runs).
    pub(super) fn stash(&self, queue: &QueueRef, priority: Priority, deliveries: Vec<Delivery>) {
        let now = Instant::now();
        let mut buffers = lock(&self.inner.buffers);
        let lane = buffers
            .entry(queue.clone())
            .or_default()
            .pending
            .entry(priority)
            .or_default();
        lane.extend(deliveries.into_iter().map(|d| (now, d)));
    }

    /// Hands out buffered deliveries, paid before free, extending the lease of any that waited.
    pub(super) async fn take_buffered(
        &self,
        queue: &QueueRef,
        max: usize,
        lease: Duration,
    ) -> Vec<Delivery> {
        let now = Instant::now();
        let mut taken = Vec::new();
        {
            let mut buffers = lock(&self.inner.buffers);
            let Some(buffer) = buffers.get_mut(queue) else {
                return Vec::new();
            };
            // A delivery whose visibility is nearly out is SQS's again: forget it.
            let margin = (lease / 4).min(Duration::from_secs(1));
            for lane in buffer.pending.values_mut() {
                lane.retain(|(at, _)| now.duration_since(*at) + margin < lease);
            }
            while taken.len() < max {
                let ready = |p: Priority| buffer.pending.get(&p).is_some_and(|l| !l.is_empty());
                let (paid, free) = (ready(Priority::Paid), ready(Priority::Free));
                let Some(class) = buffer.selector.pick(paid, free) else {
                    break;
                };
                if let Some(entry) = buffer.pending.get_mut(&class).and_then(VecDeque::pop_front) {
                    taken.push(entry);
                }
            }
        }
        let mut out = Vec::with_capacity(taken.len());
        for (received_at, delivery) in taken {
            if now.duration_since(received_at) > Duration::from_millis(500) {
                let Ok(parts) = sqs_parts(&delivery.lease) else {
                    continue;
                };
                if self
                    .change_visibility(&parts, secs(lease, MAX_VISIBILITY))
                    .await
                    .is_err()
                {
                    continue; // lost meanwhile: SQS redelivers it
                }
            }
            out.push(delivery);
        }
        out
    }
}
