//! Backends by URL scheme, through one resolver.

use std::sync::Arc;
use std::time::Duration;

use crate::{Broker, BrokerError, BrokerErrorKind, BrokerResult, InMemoryBroker};

/// How this process uses the broker (what the fleet *is* comes from the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerOptions {
    /// First segment of every exchange and queue name: `clip` in production (`clip.jobs.<pool>`),
    /// a unique one per test so tests share a broker without sharing queues.
    pub namespace: String,
    /// Deliveries one consumer holds unacknowledged (RabbitMQ `basic.qos`, per consumer).
    pub prefetch: u16,
    /// First wait before reconnecting after a lost connection; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest wait between reconnect attempts.
    pub reconnect_max: Duration,
    /// How long one broker operation (connect, declare, confirm) may take.
    pub op_timeout: Duration,
    /// AMQP heartbeat proposed to RabbitMQ (the lower of the two proposals holds; a URL's own
    /// `heartbeat=` wins). A connection that hears nothing for twice this is dead, on both
    /// ends: it bounds how long a silently cut connection keeps its consumers waiting and its
    /// deliveries from other consumers. RabbitMQ's own default, 60 s, makes that 2 minutes.
    pub heartbeat: Duration,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            namespace: "clip".into(),
            prefetch: 32,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            op_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(15),
        }
    }
}

impl BrokerOptions {
    /// Checks the namespace: 1..=32 of `[a-z0-9-]`, so it fits every backend's names.
    pub(crate) fn validate(&self) -> BrokerResult<()> {
        let ns = &self.namespace;
        let ok = !ns.is_empty()
            && ns.len() <= 32
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(BrokerError::new(
                BrokerErrorKind::InvalidInput,
                format!("namespace {ns:?} must be 1..=32 of [a-z0-9-]"),
            ));
        }
        if self.heartbeat < Duration::from_secs(1) || self.heartbeat.as_secs() > u64::from(u16::MAX)
        {
            return Err(BrokerError::new(
                BrokerErrorKind::InvalidInput,
                format!(
                    "heartbeat {:?} must be 1 s to {} s",
                    self.heartbeat,
                    u16::MAX
                ),
            ));
        }
        if self.prefetch == 0 {
            return Err(BrokerError::new(
                BrokerErrorKind::InvalidInput,
                "prefetch must be positive",
            ));
        }
        Ok(())
    }
}

/// Connects to the broker at `url`: `memory://` (a new in-process broker), `amqp://…` or
/// `amqps://…` (RabbitMQ), `sqs://<region>` (SQS; endpoint from `AWS_ENDPOINT_URL`).
pub async fn connect(url: &str, options: BrokerOptions) -> BrokerResult<Arc<dyn Broker>> {
    options.validate()?;
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    match scheme {
        "memory" => Ok(Arc::new(InMemoryBroker::new())),
        "amqp" | "amqps" => connect_amqp(url, options).await,
        "sqs" => connect_sqs(url, options).await,
        other => Err(BrokerError::new(
            BrokerErrorKind::InvalidInput,
            format!("unknown broker scheme {other:?} (memory://, amqp://, amqps://, sqs://)"),
        )),
    }
}

#[cfg(feature = "amqp")]
async fn connect_amqp(url: &str, options: BrokerOptions) -> BrokerResult<Arc<dyn Broker>> {
    Ok(Arc::new(crate::AmqpBroker::connect(url, options).await?))
}

#[cfg(not(feature = "amqp"))]
async fn connect_amqp(_: &str, _: BrokerOptions) -> BrokerResult<Arc<dyn Broker>> {
    Err(BrokerError::new(
        BrokerErrorKind::Unsupported,
        "built without the `amqp` feature: amqp:// is not available",
    ))
}

#[cfg(feature = "sqs")]
async fn connect_sqs(url: &str, options: BrokerOptions) -> BrokerResult<Arc<dyn Broker>> {
    Ok(Arc::new(crate::SqsBroker::connect(url, options).await?))
}

#[cfg(not(feature = "sqs"))]
async fn connect_sqs(_: &str, _: BrokerOptions) -> BrokerResult<Arc<dyn Broker>> {
    Err(BrokerError::new(
        BrokerErrorKind::Unsupported,
        "built without the `sqs` feature: sqs:// is not available",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_schemes_and_bad_namespaces_are_refused() {
        let err = connect("kafka://x", BrokerOptions::default())
            .await
            .expect_err("scheme");
        assert_eq!(err.kind, BrokerErrorKind::InvalidInput);
        let options = BrokerOptions {
            namespace: "Clip.Jobs".into(),
            ..BrokerOptions::default()
        };
        let err = connect("memory://", options).await.expect_err("namespace");
        assert_eq!(err.kind, BrokerErrorKind::InvalidInput);
        assert!(connect("memory://", BrokerOptions::default()).await.is_ok());
    }

    #[tokio::test]
    async fn a_heartbeat_under_a_second_or_over_the_protocol_s_is_refused() {
        for heartbeat in [
            Duration::ZERO,
            Duration::from_millis(500),
            Duration::from_secs(70_000),
        ] {
            let options = BrokerOptions {
                heartbeat,
                ..BrokerOptions::default()
            };
            let err = connect("memory://", options).await.expect_err("heartbeat");
            assert_eq!(err.kind, BrokerErrorKind::InvalidInput, "{heartbeat:?}");
        }
    }
}
