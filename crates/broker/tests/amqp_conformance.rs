//! The conformance suite against the real RabbitMQ (`CLIPFLEET_TEST_AMQP_URL`, default
//! 127.0.0.1:5672). Every test uses its own pool; the exchanges of the `clipfleet-test`
//! namespace are shared and declared idempotently.
#![cfg(feature = "amqp")]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clipfleet_broker::testsuite::Fixture;
use clipfleet_broker::{AmqpBroker, Broker, BrokerOptions};

struct Rabbit {
    broker: AmqpBroker,
}

impl Rabbit {
    async fn new() -> Self {
        let options = BrokerOptions {
            namespace: "clipfleet-test".into(),
            op_timeout: Duration::from_secs(15),
            ..BrokerOptions::default()
        };
        let broker = AmqpBroker::connect(&clipfleet_testkit::amqp_url(), options)
            .await
            .expect("connect to RabbitMQ (scripts/services.sh start)");
        Rabbit { broker }
    }
}

#[async_trait]
impl Fixture for Rabbit {
    fn broker(&self) -> Arc<dyn Broker> {
        Arc::new(self.broker.clone())
    }
    fn lease(&self) -> Duration {
        // RabbitMQ has no lease clock (a delivery is held until its channel closes), so a
        // short one only makes `extend_lease_keeps_the_delivery` quick.
        Duration::from_secs(4)
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(10)
    }
    async fn lose_leases(&self) {
        self.broker.reset_consumers().await;
    }
    async fn pass(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

clipfleet_broker::conformance_tests!(Rabbit::new().await;);

/// Receives until `count` deliveries arrived (or `patience` ran out), keyed by body.
async fn receive_bodies(
    broker: &AmqpBroker,
    queue: &clipfleet_broker::QueueRef,
    count: usize,
    patience: Duration,
) -> anyhow::Result<std::collections::BTreeMap<String, clipfleet_broker::Lease>> {
    use clipfleet_broker::Receive;
    let deadline = tokio::time::Instant::now() + patience;
    let mut got = std::collections::BTreeMap::new();
    while got.len() < count && tokio::time::Instant::now() < deadline {
        let options = Receive::new(count, Duration::from_secs(60), Duration::from_millis(200));
        for delivery in broker.receive(queue, options).await? {
            let body = String::from_utf8(delivery.body.to_vec())?;
            anyhow::ensure!(
                got.insert(body.clone(), delivery.lease).is_none(),
                "{body} delivered twice"
            );
        }
    }
    Ok(got)
}

/// Acks are coalesced into `multiple` acks on the channel (amqp/settle.rs): only deliveries
/// whose own ack was asked may be covered, a delivery settled twice is refused without harming
/// the channel, and whatever was not acked comes back when the channel goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_acks_settle_exactly_what_was_acked() -> anyhow::Result<()> {
    use clipfleet_broker::{BrokerErrorKind, Nack, Outgoing, PoolSpec, QueueRef, Topic};
    use clipfleet_proto::{JobId, PoolName, Priority};
    let rabbit = Rabbit::new().await;
    let broker = &rabbit.broker;
    let pool = PoolName::new(format!(
        "acks-{}",
        JobId::generate().to_string().to_ascii_lowercase()
    ))?;
    broker.ensure_pool(&pool, PoolSpec::default()).await?;
    let messages = (0..10)
        .map(|n| Outgoing::new(format!("m{n}").into_bytes()))
        .collect();
    broker
        .publish_all(&Topic::Jobs(pool.clone(), Priority::Free), messages)
        .await?;
    let queue = QueueRef::Jobs(pool.clone());
    let mut held = receive_bodies(broker, &queue, 10, Duration::from_secs(10)).await?;
    assert_eq!(held.len(), 10, "all ten delivered");
    let lease = |held: &mut std::collections::BTreeMap<_, _>, n: usize| {
        held.remove(&format!("m{n}")).expect("held")
    };
    // The five oldest and one past two held deliveries, in one call: a multiple ack up to m4
    // and a single ack of m7, never one that covers m5 or m6.
    let acked: Vec<_> = [0, 1, 2, 3, 4, 7]
        .into_iter()
        .map(|n| lease(&mut held, n))
        .collect();
    broker.ack(&acked).await?;
    // Settled already: refused as a lost lease, and the channel stays open.
    let again = broker.ack(&acked[2..3]).await.expect_err("a second ack");
    assert_eq!(again.kind, BrokerErrorKind::LeaseLost);
    broker.nack(&lease(&mut held, 5), Nack::Requeue).await?;
    let m8 = lease(&mut held, 8);
    broker.extend_lease(&m8, Duration::from_secs(60)).await?;
    broker.ack(std::slice::from_ref(&m8)).await?;
    assert!(
        broker
            .extend_lease(&m8, Duration::from_secs(60))
            .await
            .is_err(),
        "an acked delivery's lease is gone"
    );
    // m6 and m9 are still held on the live channel; closing it hands them back with m5.
    assert_eq!(held.keys().collect::<Vec<_>>(), ["m6", "m9"]);
    drop(held);
    broker.reset_consumers().await;
    let back = receive_bodies(broker, &queue, 3, Duration::from_secs(10)).await?;
    assert_eq!(back.keys().collect::<Vec<_>>(), ["m5", "m6", "m9"]);
    let leases: Vec<_> = back.into_values().collect();
    broker.ack(&leases).await?;
    broker.reset_consumers().await;
    let after = receive_bodies(broker, &queue, 1, Duration::from_secs(2)).await?;
    assert!(
        after.is_empty(),
        "nothing acked came back: {:?}",
        after.keys()
    );
    if let Some(admin) = broker.admin() {
        admin.delete_pool(&pool).await?;
    }
    Ok(())
}
