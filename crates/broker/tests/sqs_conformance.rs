//! The conformance suite against SQS on the local emulator (`AWS_ENDPOINT_URL`, default
//! 127.0.0.1:4566), through the real aws-sdk-sqs client. Leases are visibility timeouts here, so
//! "losing" one means waiting it out.
#![cfg(feature = "sqs")]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clipfleet_broker::testsuite::Fixture;
use clipfleet_broker::{Broker, BrokerOptions, SqsBroker};

const LEASE: Duration = Duration::from_secs(2);

struct Sqs {
    broker: SqsBroker,
}

impl Sqs {
    async fn new() -> Self {
        let options = BrokerOptions {
            namespace: "clipfleet-test".into(),
            op_timeout: Duration::from_secs(15),
            ..BrokerOptions::default()
        };
        let broker = SqsBroker::connect(&format!("sqs://{}", region()), options)
            .await
            .expect("connect to the SQS emulator (scripts/emulator.sh start)");
        Sqs { broker }
    }
}

fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
}

#[async_trait]
impl Fixture for Sqs {
    fn broker(&self) -> Arc<dyn Broker> {
        Arc::new(self.broker.clone())
    }
    fn lease(&self) -> Duration {
        LEASE
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(10)
    }
    async fn lose_leases(&self) {
        tokio::time::sleep(LEASE + Duration::from_millis(1500)).await;
    }
    async fn pass(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

clipfleet_broker::conformance_tests!(Sqs::new().await;);
