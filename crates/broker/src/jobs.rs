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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InMemoryBroker, Outgoing, PoolSpec, Topic};
    use clipfleet_proto::{PoolName, Priority};

    async fn one_delivery(broker: &InMemoryBroker, lease: Duration) -> (QueueRef, Delivery) {
        let pool = PoolName::new("heartbeat").expect("pool");
        broker
            .ensure_pool(&pool, PoolSpec::default())
            .await
            .expect("pool");
        let topic = Topic::Jobs(pool.clone(), Priority::Free);
        broker
            .publish(&topic, Outgoing::new(&b"long job"[..]))
            .await
            .expect("publish");
        let queue = QueueRef::Jobs(pool);
        let mut got = broker
            .receive(&queue, Receive::new(1, lease, Duration::ZERO))
            .await
            .expect("receive");
        (queue, got.pop().expect("a delivery"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_keeps_the_lease_until_dropped() {
        let broker = InMemoryBroker::new();
        let lease_for = Duration::from_secs(3);
        let (queue, delivery) = one_delivery(&broker, lease_for).await;
        let heartbeat =
            LeaseHeartbeat::start(Arc::new(broker.clone()), delivery.lease.clone(), lease_for);
        tokio::time::sleep(Duration::from_secs(20)).await;
        let stolen = broker
            .receive(&queue, Receive::new(1, lease_for, Duration::ZERO))
            .await
            .expect("receive");
        assert!(stolen.is_empty(), "redelivered while the heartbeat ran");
        assert!(!heartbeat.is_lost());
        drop(heartbeat);
        tokio::time::sleep(lease_for + Duration::from_secs(1)).await;
        let again = broker
            .receive(&queue, Receive::new(1, lease_for, Duration::ZERO))
            .await
            .expect("receive");
        assert_eq!(
            again.first().map(|d| d.delivery_count),
            Some(2),
            "not redelivered after the heartbeat stopped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_reports_a_lost_lease() {
        let broker = InMemoryBroker::new();
        let lease_for = Duration::from_secs(3);
        let (_, delivery) = one_delivery(&broker, lease_for).await;
        broker
            .ack(std::slice::from_ref(&delivery.lease))
            .await
            .expect("ack");
        let heartbeat = LeaseHeartbeat::start(Arc::new(broker), delivery.lease, lease_for);
        tokio::time::sleep(lease_for).await;
        assert!(heartbeat.is_lost());
    }
}
