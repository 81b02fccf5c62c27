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
