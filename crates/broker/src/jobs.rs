//! What consumers build on the trait: typed receive that keeps garbage off the workers, and a
//! heartbeat that keeps a long job's lease alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clipfleet_proto::{Message, decode};
use tracing::{error, warn};

use crate::{Broker, BrokerErrorKind, BrokerResult, Delivery, Lease, QueueRef, Receive};

/// Receives deliveries and decodes each body as `M`. A body that does not decode is
/// dead-lettered with reason `undecodable` and never handed out: one bad message cannot stall or
/// crash a consumer. (On queues without dead letters it is logged and acked.)
pub async fn receive_decoded<M: Message>(
    broker: &dyn Broker,
    queue: &QueueRef,
    options: Receive,
) -> BrokerResult<Vec<(Delivery, M)>> {
    let deliveries = broker.receive(queue, options).await?;
    let mut decoded = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        match decode::<M>(&delivery.body) {
            Ok(message) => decoded.push((delivery, message)),
            Err(err) => {
                let reason = err.code().as_str();
                warn!(%queue, error = %err, "dead-lettering an undecodable message");
                match broker.dead_letter(&delivery.lease, reason).await {
                    Ok(()) => {}
                    Err(dl) if dl.kind == BrokerErrorKind::Unsupported => {
                        error!(%queue, error = %err, "dropping an undecodable message: the queue has no dead letters");
                        broker.ack(std::slice::from_ref(&delivery.lease)).await?;
                    }
                    Err(dl) => return Err(dl),
                }
            }
        }
    }
    Ok(decoded)
}

/// Keeps a delivery's lease alive while a job runs: extends it to `lease_for` every third of
/// `lease_for` until dropped. If the broker says the lease is lost, it stops and
/// [`LeaseHeartbeat::is_lost`] turns true: the job is someone else's now.
#[derive(Debug)]
pub struct LeaseHeartbeat {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl LeaseHeartbeat {
    /// Starts the heartbeat on the current tokio runtime.
    pub fn start(broker: Arc<dyn Broker>, lease: Lease, lease_for: Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let every = (lease_for / 3).max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                match broker.extend_lease(&lease, lease_for).await {
                    Ok(()) => {}
                    Err(err) if err.kind == BrokerErrorKind::LeaseLost => {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    // Transient trouble: the next tick tries again within the lease.
                    Err(err) => warn!(error = %err, "lease extension failed"),
                }
            }
        });
        LeaseHeartbeat { task, lost }
    }

    /// Whether the broker reported the lease lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for LeaseHeartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}
