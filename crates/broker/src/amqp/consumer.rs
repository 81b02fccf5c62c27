//! Consumers of one logical queue: a lapin consumer per physical queue ("lane": paid and free
//! for a jobs queue), each on its own channel with its own prefetch, feeding a buffer that
//! `receive` takes from. A lane whose channel dies (connection loss, `basic.cancel`, consumer
//! timeout) drops what it buffered — RabbitMQ redelivers it — and consumes again after a backoff.
//! Each channel's deliveries are settled through its [`ChannelSettler`] (`settle.rs`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use clipfleet_proto::Priority;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::names::Names;
use super::session::{Sessions, amqp_error, bounded, close_channel};
use super::settle::{ChannelSettler, SettleTotals};
use super::topology::declare_control;
use crate::{BrokerResult, PrioritySelector, QueueRef};

#[derive(Debug)]
pub(crate) struct Lane {
    pub name: String,
    pub priority: Priority,
    buffer: Mutex<VecDeque<Buffered>>,
    /// The channel consuming now and its settler, kept to close them on `reset`.
    channel: Mutex<Option<(Channel, Arc<ChannelSettler>)>>,
}

/// A delivery waiting to be taken, with the settler of the channel it came on.
pub(crate) type Buffered = (Arc<ChannelSettler>, lapin::message::Delivery);

#[derive(Debug)]
pub(crate) struct QueueConsumer {
    pub queue: Arc<QueueRef>,
    pub lanes: Vec<Lane>,
    /// Woken when a lane buffers a delivery.
    pub arrived: Notify,
    selector: Mutex<PrioritySelector>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// How long a channel close may wait for RabbitMQ's answer.
    op_timeout: std::time::Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl QueueConsumer {
    /// Starts consuming `queue` (one task per lane).
    pub(crate) fn start(
        queue: QueueRef,
        names: &Names,
        sessions: Arc<Sessions>,
        settles: Arc<SettleTotals>,
    ) -> Arc<Self> {
        let lanes = names
            .queues_of(&queue)
            .into_iter()
            .map(|(name, priority)| Lane {
                name,
                priority,
                buffer: Mutex::new(VecDeque::new()),
                channel: Mutex::new(None),
            })
            .collect();
        let consumer = Arc::new(QueueConsumer {
            queue: Arc::new(queue),
            lanes,
            arrived: Notify::new(),
            selector: Mutex::new(PrioritySelector::default()),
            tasks: Mutex::new(Vec::new()),
            op_timeout: sessions.options().op_timeout,
        });
        let tasks = (0..consumer.lanes.len())
            .map(|lane| {
                let weak = Arc::downgrade(&consumer);
                let names = names.clone();
                tokio::spawn(run_lane(
                    weak,
                    lane,
                    names,
                    sessions.clone(),
                    settles.clone(),
                ))
            })
            .collect();
        *lock(&consumer.tasks) = tasks;
        consumer
    }

    /// Takes up to `max` buffered deliveries, paid before free without starving free.
    pub(crate) fn take(&self, max: usize) -> Vec<(Priority, Buffered)> {
        let mut out = Vec::new();
        let mut selector = lock(&self.selector);
        while out.len() < max {
            let ready = |priority: Priority| {
                self.lanes
                    .iter()
                    .any(|lane| lane.priority == priority && !lock(&lane.buffer).is_empty())
            };
            let Some(class) = selector.pick(ready(Priority::Paid), ready(Priority::Free)) else {
                break;
            };
            let lane = self
                .lanes
                .iter()
                .find(|lane| lane.priority == class)
                .expect("picked a ready lane");
            if let Some(delivery) = lock(&lane.buffer).pop_front() {
                out.push((class, delivery));
            }
        }
        out
    }

    /// Closes every lane's channel: unsettled deliveries go back to the queue, as a crashed
    /// consumer's would; the lanes then consume again.
    pub(crate) async fn reset(&self) {
        for lane in &self.lanes {
            let channel = lock(&lane.channel).take();
            lock(&lane.buffer).clear();
            if let Some((channel, settler)) = channel {
                settler.close();
                close_channel(&channel, self.op_timeout, "clipfleet: consumer reset").await;
            }
        }
    }

    /// Ends consuming for good, in the order lapin needs: each lane's channel is closed and
    /// its close-ok awaited (RabbitMQ cancels the channel's consumer with it), then the tasks
    /// stop. Stopping first drops lapin's `Consumer` on an open channel, and lapin then sends
    /// `basic.cancel` and closes the channel at once: a `cancel-ok` arriving on the closing
    /// channel is a connection-level error (UNEXPECTED-FRAME) that fails every other operation
    /// on the connection (seen as `delete_pool` failing under a loaded test run).
    pub(crate) async fn close(&self) {
        self.reset().await;
        self.stop();
    }

    /// Stops the lanes' tasks (their channels close with them).
    pub(crate) fn stop(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Drop for QueueConsumer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn open_lane(
    sessions: &Sessions,
    names: &Names,
    queue: &QueueRef,
    lane: &Lane,
) -> BrokerResult<(Channel, Consumer)> {
    let (session, _) = sessions.get().await?;
    let channel = session
        .connection
        .create_channel()
        .await
        .map_err(|err| amqp_error("open consumer channel", &err))?;
    if let QueueRef::Control(worker) = queue {
        // Auto-delete queues do not survive their consumer: declare before every consume.
        declare_control(&channel, names, worker).await?;
    }
    channel
        .basic_qos(
            sessions.options().prefetch,
            BasicQosOptions { global: false },
        )
        .await
        .map_err(|err| amqp_error("set prefetch", &err))?;
    let consumer = channel
        .basic_consume(
            lane.name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|err| amqp_error(&format!("consume {}", lane.name), &err))?;
    Ok((channel, consumer))
}

async fn run_lane(
    owner: Weak<QueueConsumer>,
    index: usize,
    names: Names,
    sessions: Arc<Sessions>,
    settles: Arc<SettleTotals>,
) {
    let mut backoff = sessions.options().reconnect_min;
    loop {
        let Some(consumer) = owner.upgrade() else {
            return;
        };
        let lane = &consumer.lanes[index];
        // Bounded: a lane stuck opening on a connection that died silently would never consume
        // again, and its worker would wait for jobs that never come.
        let opened = bounded(
            sessions.options().op_timeout,
            &format!("consume {}", lane.name),
            open_lane(&sessions, &names, &consumer.queue, lane),
        )
        .await;
        match opened {
            Ok((channel, mut stream)) => {
                let settler = ChannelSettler::new(
                    channel.clone(),
                    sessions.options().op_timeout,
                    settles.clone(),
                );
                *lock(&lane.channel) = Some((channel, settler.clone()));
                backoff = sessions.options().reconnect_min;
                drop(consumer);
                while let Some(item) = stream.next().await {
                    let Some(consumer) = owner.upgrade() else {
                        return;
                    };
                    match item {
                        Ok(delivery) => {
                            settler.delivered(delivery.delivery_tag);
                            lock(&consumer.lanes[index].buffer)
                                .push_back((settler.clone(), delivery));
                            consumer.arrived.notify_waiters();
                        }
                        Err(err) => {
                            debug!(error = %err, "consumer stream ended");
                            break;
                        }
                    }
                }
                // What this channel delivered can no longer be acked: RabbitMQ requeues it.
                settler.close();
                let Some(consumer) = owner.upgrade() else {
                    return;
                };
                let lane = &consumer.lanes[index];
                lock(&lane.buffer).clear();
                lock(&lane.channel).take();
                warn!(queue = %lane.name, "consumer lost its channel; consuming again");
            }
            Err(err) => {
                warn!(queue = %lane.name, error = %err, backoff_ms = backoff.as_millis() as u64, "cannot consume");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(sessions.options().reconnect_max);
    }
}
