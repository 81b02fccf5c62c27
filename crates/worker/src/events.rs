//! Job events, batched across jobs: every broker message costs the broker about as much as a
//! job, so events of concurrent jobs share one `EventBatch` message (group commit: what arrives
//! while one batch is being confirmed goes out in the next). A job waits for the
//! confirm of the batch its events went out in before it moves on (acks only after its
//! `succeeded` is durable). Informative events (`started`, progress) linger up to [`LINGER`] for
//! company, so a job that ends within it sends all its events in one or two messages: each
//! event message costs RabbitMQ a publish, a confirm, a delivery and an ack, and the ledger a
//! transaction.

use std::sync::Arc;
use std::time::Duration;

use clipfleet_broker::{Broker, BrokerError, BrokerErrorKind, Outgoing, Topic};
use clipfleet_proto::{EventBatch, JobEvent, MAX_EVENTS_PER_BATCH, SCHEMA_VERSION, encode};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

type Waiter = oneshot::Sender<Result<(), BrokerError>>;

/// How long a posted (informative) event may wait for others before it leaves alone. A user
/// sees progress this much later at most; an event somebody waits for leaves at once and takes
/// the lingering ones with it.
pub(crate) const LINGER: Duration = Duration::from_millis(50);

/// One job's events on their way to the publisher.
#[derive(Debug)]
struct Queued {
    events: Vec<JobEvent>,
    waiter: Waiter,
    /// Whether somebody waits for the confirm (`send`), so the batch leaves at once.
    urgent: bool,
}

/// Where jobs send their events.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    queue: mpsc::Sender<Queued>,
}

impl EventSink {
    /// Starts the publishing task.
    pub(crate) fn start(broker: Arc<dyn Broker>) -> Self {
        let (queue, pending) = mpsc::channel(1024);
        tokio::spawn(publish_loop(broker, pending));
        EventSink { queue }
    }

    /// Queues `events` without waiting for the confirm: for progress, which may be lost
    /// harmlessly (a later event supersedes it). They may linger up to [`LINGER`] for company.
    /// Events keep their order with `send`'s.
    pub(crate) fn post(&self, events: Vec<JobEvent>) {
        let (waiter, _ignored) = oneshot::channel();
        // A full queue means the broker is slow: progress is the first thing to drop.
        let _ = self.queue.try_send(Queued {
            events,
            waiter,
            urgent: false,
        });
    }

    /// Publishes `events` (in a batch with other jobs' events) and returns once confirmed.
    pub(crate) async fn send(&self, events: Vec<JobEvent>) -> Result<(), BrokerError> {
        let (waiter, confirmed) = oneshot::channel();
        let stopped = || BrokerError::new(BrokerErrorKind::Unavailable, "event publisher stopped");
        self.queue
            .send(Queued {
                events,
                waiter,
                urgent: true,
            })
            .await
            .map_err(|_| stopped())?;
        confirmed.await.map_err(|_| stopped())?
    }
}

/// The batch being gathered.
#[derive(Default)]
struct Gathering {
    events: Vec<JobEvent>,
    waiters: Vec<Waiter>,
    urgent: bool,
}

impl Gathering {
    /// Adds `queued` unless it would overflow a batch: then it is handed back.
    fn add(&mut self, queued: Queued) -> Option<Queued> {
        if !self.events.is_empty() && self.events.len() + queued.events.len() > MAX_EVENTS_PER_BATCH
        {
            return Some(queued);
        }
        self.events.extend(queued.events);
        self.waiters.push(queued.waiter);
        self.urgent |= queued.urgent;
        None
    }
}

/// Group commit: one batch in flight at a time; whatever arrived while it was being confirmed
/// goes out together in the next. An event somebody waits for leaves at once (no lingering for
/// company); under load batches grow with the confirm's round trip, so messages per job fall
/// as throughput rises. Posted events alone wait up to [`LINGER`] for company. One batch in
/// flight also keeps every job's events in order.
async fn publish_loop(broker: Arc<dyn Broker>, mut pending: mpsc::Receiver<Queued>) {
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match pending.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let deadline = Instant::now() + LINGER;
        let mut batch = Gathering::default();
        carried = batch.add(first);
        while carried.is_none() && batch.events.len() < MAX_EVENTS_PER_BATCH {
            // Nothing more for now: an urgent batch leaves, a posted one lingers. A closed queue
            // flushes what was gathered; the next `recv` then ends the loop.
            let next = match pending.try_recv() {
                Ok(next) => Some(next),
                Err(mpsc::error::TryRecvError::Empty) if !batch.urgent => {
                    tokio::time::timeout_at(deadline, pending.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            match next {
                Some(next) => carried = batch.add(next),
                None => break,
            }
        }
        flush(broker.as_ref(), batch.events, batch.waiters).await;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clipfleet_broker::{InMemoryBroker, QueueRef, Receive, receive_decoded};
    use clipfleet_proto::{EventKind, JobId, Timestamp, WorkerId};

    use super::*;

    fn event(job: JobId, kind: EventKind) -> JobEvent {
        JobEvent {
            job_id: job,
            at: Timestamp::from_unix_ms(1_700_000_000_000),
            worker: WorkerId::new("w-1").unwrap(),
            event: kind,
        }
    }

    async fn batches(broker: &InMemoryBroker) -> Vec<EventBatch> {
        let options = Receive::new(16, Duration::from_secs(30), Duration::from_secs(2));
        receive_decoded::<EventBatch>(broker, &QueueRef::Events, options)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, batch)| batch)
            .collect()
    }

    // On a paused clock: the publisher has taken the first post and lingers while the test
    // sleeps (without the linger, `started` would have left alone).
    #[tokio::test(start_paused = true)]
    async fn posted_events_wait_for_the_outcome_and_leave_with_it() {
        let broker = Arc::new(InMemoryBroker::new());
        let sink = EventSink::start(broker.clone());
        let job = JobId::generate();
        // Well within the linger (50 ms), and long enough for the publisher to take each post.
        let step = Duration::from_millis(10);
        sink.post(vec![event(job, EventKind::Started)]);
        tokio::time::sleep(step).await;
        sink.post(vec![event(job, EventKind::Progress { pct: 10 })]);
        tokio::time::sleep(step).await;
        // The send returns once confirmed: the posts went out with it, in one message, in order.
        sink.send(vec![event(job, EventKind::InputDeleted)])
            .await
            .unwrap();
        let got = batches(&broker).await;
        assert_eq!(got.len(), 1, "{got:?}");
        let kinds: Vec<&EventKind> = got[0].events.iter().map(|e| &e.event).collect();
        assert_eq!(
            kinds,
            [
                &EventKind::Started,
                &EventKind::Progress { pct: 10 },
                &EventKind::InputDeleted
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_posted_event_alone_leaves_after_the_linger() {
        let broker = Arc::new(InMemoryBroker::new());
        let sink = EventSink::start(broker.clone());
        let job = JobId::generate();
        let posted = Instant::now();
        sink.post(vec![event(job, EventKind::Progress { pct: 80 })]);
        let got = batches(&broker).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].events[0].event, EventKind::Progress { pct: 80 });
        // It waited for company first, and no longer than it had to (a paused clock: exact).
        let waited = posted.elapsed();
        assert!(waited >= LINGER && waited < 2 * LINGER, "{waited:?}");
    }
}
