//! Job events, batched across jobs: every broker message costs the broker about as much as a
//! job, so events of concurrent jobs share one `EventBatch` message. A job waits for the
//! confirm of the batch its events went out in before it moves on (acks only after its
//! `succeeded` is durable).

use std::sync::Arc;
use std::time::Duration;

use clipfleet_broker::{Broker, BrokerError, BrokerErrorKind, Outgoing, Topic};
use clipfleet_proto::{EventBatch, JobEvent, MAX_EVENTS_PER_BATCH, SCHEMA_VERSION, encode};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// How long the sink waits for more events before publishing a batch.
const LINGER: Duration = Duration::from_millis(5);

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

async fn publish_loop(
    broker: Arc<dyn Broker>,
    mut pending: mpsc::Receiver<(Vec<JobEvent>, Waiter)>,
) {
    while let Some(first) = pending.recv().await {
        let mut events = first.0;
        let mut waiters = vec![first.1];
        let deadline = tokio::time::Instant::now() + LINGER;
        while events.len() < MAX_EVENTS_PER_BATCH {
            match tokio::time::timeout_at(deadline, pending.recv()).await {
                Ok(Some((more, waiter))) if events.len() + more.len() <= MAX_EVENTS_PER_BATCH => {
                    events.extend(more);
                    waiters.push(waiter);
                }
                Ok(Some((more, waiter))) => {
                    // Would overflow the batch: publish what we have, this one next round.
                    flush(
                        broker.as_ref(),
                        std::mem::take(&mut events),
                        std::mem::take(&mut waiters),
                    )
                    .await;
                    events = more;
                    waiters = vec![waiter];
                }
                Ok(None) | Err(_) => break,
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
