//! Job events, batched across jobs: every broker message costs the broker about as much as a
//! job, so events of concurrent jobs share one `EventBatch` message (group commit: what arrives
//! while one batch is being confirmed goes out in the next). A job waits for the
//! confirm of the batch its events went out in before it moves on (acks only after its
//! `succeeded` is durable).

use std::sync::Arc;

use clipfleet_broker::{Broker, BrokerError, BrokerErrorKind, Outgoing, Topic};
use clipfleet_proto::{EventBatch, JobEvent, MAX_EVENTS_PER_BATCH, SCHEMA_VERSION, encode};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

type Waiter = oneshot::Sender<Result<(), BrokerError>>;

/// Where jobs send their events.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    queue: mpsc::Sender<(Vec<JobEvent>, Waiter)>,
}

impl EventSink {
    /// Starts the publishing task.
    pub(crate) fn start(broker: Arc<dyn Broker>) -> Self {
        let (queue, pending) = mpsc::channel(1024);
        tokio::spawn(publish_loop(broker, pending));
        EventSink { queue }
    }

    /// Queues `events` without waiting for the confirm: for progress, which may be lost
    /// harmlessly (a later event supersedes it). Events keep their order with `send`'s.
    pub(crate) fn post(&self, events: Vec<JobEvent>) {
        let (done, _ignored) = oneshot::channel();
        // A full queue means the broker is slow: progress is the first thing to drop.
        let _ = self.queue.try_send((events, done));
    }

    /// Publishes `events` (in a batch with other jobs' events) and returns once confirmed.
    pub(crate) async fn send(&self, events: Vec<JobEvent>) -> Result<(), BrokerError> {
        let (done, confirmed) = oneshot::channel();
        let stopped = || BrokerError::new(BrokerErrorKind::Unavailable, "event publisher stopped");
        self.queue
            .send((events, done))
            .await
            .map_err(|_| stopped())?;
        confirmed.await.map_err(|_| stopped())?
    }
}

/// Group commit: one batch in flight at a time; whatever arrived while it was being confirmed
/// goes out together in the next. An idle worker's event leaves at once (no lingering for
/// company); under load batches grow with the confirm's round trip, so messages per job fall
/// as throughput rises. One batch in flight also keeps every job's events in order.
async fn publish_loop(
    broker: Arc<dyn Broker>,
    mut pending: mpsc::Receiver<(Vec<JobEvent>, Waiter)>,
) {
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match pending.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let (mut events, first_waiter): (Vec<JobEvent>, Waiter) = first;
        let mut waiters = vec![first_waiter];
        while events.len() < MAX_EVENTS_PER_BATCH {
            match pending.try_recv() {
                Ok((more, waiter)) if events.len() + more.len() <= MAX_EVENTS_PER_BATCH => {
                    events.extend(more);
                    waiters.push(waiter);
                }
                // Would overflow the batch: it leads the next one.
                Ok(next) => {
                    carried = Some(next);
                    break;
                }
                Err(_) => break,
            }
        }
        flush(broker.as_ref(), events, waiters).await;
    }
}

async fn flush(broker: &dyn Broker, events: Vec<JobEvent>, waiters: Vec<Waiter>) {
    if events.is_empty() {
        return;
    }
    let batch = EventBatch {
        v: SCHEMA_VERSION,
        events,
    };
    let result = match encode(&batch) {
        Ok(body) => broker.publish(&Topic::Events, Outgoing::new(body)).await,
        Err(err) => Err(BrokerError::new(BrokerErrorKind::Internal, err.to_string())),
    };
    if let Err(err) = &result {
        warn!(error = %err, events = batch.events.len(), "publishing job events failed");
    }
    for waiter in waiters {
        let copy = result
            .as_ref()
            .copied()
            .map_err(|err| BrokerError::new(err.kind, err.message.clone()));
        let _ = waiter.send(copy);
    }
}
