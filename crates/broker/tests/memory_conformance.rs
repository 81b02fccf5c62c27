//! The conformance suite on the in-memory broker, with tokio's paused clock driving leases and
//! delays (no sleeping in real time).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clipfleet_broker::testsuite::Fixture;
use clipfleet_broker::{Broker, InMemoryBroker};

struct Memory {
    broker: Arc<InMemoryBroker>,
}

const LEASE: Duration = Duration::from_secs(30);

#[async_trait]
impl Fixture for Memory {
    fn broker(&self) -> Arc<dyn Broker> {
        self.broker.clone()
    }
    fn lease(&self) -> Duration {
        LEASE
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(5)
    }
    async fn lose_leases(&self) {
        tokio::time::advance(LEASE + Duration::from_secs(1)).await;
    }
    async fn pass(&self, duration: Duration) {
        tokio::time::advance(duration).await;
    }
}

clipfleet_broker::conformance_tests!(
    Memory { broker: Arc::new(InMemoryBroker::new()) };
    start_paused = true
);
