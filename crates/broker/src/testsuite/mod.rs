//! The conformance suite: plain async functions, each step labelled, that every backend runs
//! (`memory` on a paused clock, RabbitMQ for real, SQS on the emulator). A backend's test file
//! implements [`Fixture`] and expands [`conformance_tests!`](crate::conformance_tests).
//! The cases themselves are in `cases.rs`.

mod cases;

pub use cases::*;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use async_trait::async_trait;
use clipfleet_proto::{JobId, PoolName, Priority};

use crate::{Broker, Delivery, Outgoing, PoolSpec, QueueRef, Receive, Topic};

/// What a backend's test provides to the suite.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The broker under test (one per test).
    fn broker(&self) -> Arc<dyn Broker>;
    /// Lease used for receives in the suite.
    fn lease(&self) -> Duration;
    /// How long to wait for something that should arrive.
    fn patience(&self) -> Duration;
    /// Makes every outstanding lease lapse as if its holder died (memory and SQS let the lease
    /// run out; RabbitMQ closes the consumers' channels).
    async fn lose_leases(&self);
    /// Lets `duration` pass (a paused clock advances; real services sleep).
    async fn pass(&self, duration: Duration);
}

/// Expands to one `#[tokio::test]` per conformance case, each building its fixture with
/// `$fixture`; what follows `;` goes inside `#[tokio::test(...)]`.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr; $($attr:tt)*) => {
        $crate::conformance_tests!(@cases $fixture, ($($attr)*),
            at_least_once_with_confirms, empty_ack_is_a_no_op, redelivery_after_lease_loss,
            delivery_limit_dead_letters, dead_letter_keeps_reason_and_headers,
            delayed_retry_is_held_by_the_broker, paid_before_free_without_starvation,
            depth_counts_ready_and_in_flight, extend_lease_keeps_the_delivery,
            undeclared_pool_is_refused, bad_headers_are_refused, control_reaches_every_worker,
            undecodable_bodies_are_dead_lettered);
    };
    (@cases $fixture:expr, $attrs:tt, $($case:ident),+) => {
        $(
            #[tokio::test $attrs]
            async fn $case() -> anyhow::Result<()> {
                let fixture = $fixture;
                $crate::testsuite::$case(&fixture).await
            }
        )+
    };
}

pub(super) fn unique_pool() -> PoolName {
    let id = JobId::generate().to_string().to_ascii_lowercase();
    PoolName::new(format!("t-{id}")).expect("valid pool name")
}

/// Runs `body` on a fresh pool and deletes the pool afterwards, whatever `body` returned.
pub(super) async fn with_pool(
    fx: &dyn Fixture,
    spec: PoolSpec,
    body: impl AsyncFnOnce(&dyn Broker, &PoolName) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let broker = fx.broker();
    let pool = unique_pool();
    broker
        .ensure_pool(&pool, spec)
        .await
        .context("ensure_pool")?;
    broker
        .ensure_pool(&pool, spec)
        .await
        .context("ensure_pool is idempotent")?;
    let result = body(broker.as_ref(), &pool).await;
    if let Some(admin) = broker.admin() {
        admin.delete_pool(&pool).await.context("delete_pool")?;
    }
    result
}

pub(super) fn job(body: &str) -> Outgoing {
    Outgoing::new(body.as_bytes().to_vec()).with_header("traceparent", format!("00-{body}"))
}

pub(super) fn free(pool: &PoolName) -> Topic {
    Topic::Jobs(pool.clone(), Priority::Free)
}

pub(super) fn paid(pool: &PoolName) -> Topic {
    Topic::Jobs(pool.clone(), Priority::Paid)
}

pub(super) fn body_of(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.body).into_owned()
}

/// Receives until `count` deliveries arrived or patience ran out.
pub(super) async fn receive_n(
    fx: &dyn Fixture,
    broker: &dyn Broker,
    queue: &QueueRef,
    count: usize,
) -> anyhow::Result<Vec<Delivery>> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + fx.patience();
    while got.len() < count && tokio::time::Instant::now() < deadline {
        let options = Receive::new(count - got.len(), fx.lease(), Duration::from_secs(1));
        got.extend(broker.receive(queue, options).await.context("receive")?);
    }
    Ok(got)
}

/// How long a queue must stay quiet for "nothing is delivered" to hold.
const QUIET: Duration = Duration::from_millis(500);

/// Asserts nothing is delivered from `queue` for [`QUIET`].
pub(super) async fn expect_nothing(
    fx: &dyn Fixture,
    broker: &dyn Broker,
    queue: &QueueRef,
) -> anyhow::Result<()> {
    let got = broker
        .receive(queue, Receive::new(10, fx.lease(), QUIET))
        .await
        .context("receive")?;
    ensure!(
        got.is_empty(),
        "expected nothing on {queue}, got {:?}",
        got.iter().map(body_of).collect::<Vec<_>>()
    );
    Ok(())
}
