//! Coalesced settles on real RabbitMQ (`amqp/settle.rs`): acks asked together go out as one
//! `multiple` ack, and an ack never settles a delivery whose holder has not asked — the lease
//! semantics the worker's "ack only after the events are confirmed" rests on.
#![cfg(feature = "amqp")]

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_broker::{
    AmqpBroker, Broker, BrokerOptions, Delivery, Nack, Outgoing, PoolSpec, QueueRef, Receive, Topic,
};
use clipfleet_proto::{JobId, PoolName, Priority};

const MESSAGES: usize = 32;

async fn broker_with_pool() -> anyhow::Result<(AmqpBroker, PoolName)> {
    let options = BrokerOptions {
        namespace: "clipfleet-test".into(),
        prefetch: 64,
        op_timeout: Duration::from_secs(15),
        ..BrokerOptions::default()
    };
    let broker = AmqpBroker::connect(&clipfleet_testkit::amqp_url(), options)
        .await
        .context("connect to RabbitMQ (scripts/services.sh start)")?;
    let pool = PoolName::new(format!(
        "s-{}",
        JobId::generate().to_string().to_ascii_lowercase()
    ))?;
    broker.ensure_pool(&pool, PoolSpec::default()).await?;
    let messages = (0..MESSAGES)
        .map(|n| Outgoing::new(n.to_string().into_bytes()))
        .collect();
    broker
        .publish_all(&Topic::Jobs(pool.clone(), Priority::Free), messages)
        .await?;
    Ok((broker, pool))
}

/// What arrives within `wait`, stopping early once `enough` did.
async fn gather(
    broker: &AmqpBroker,
    pool: &PoolName,
    enough: usize,
    wait: Duration,
) -> anyhow::Result<Vec<Delivery>> {
    let queue = QueueRef::Jobs(pool.clone());
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while got.len() < enough && tokio::time::Instant::now() < deadline {
        let max = (enough - got.len()).min(MESSAGES);
        let options = Receive::new(max, Duration::from_secs(60), Duration::from_millis(200));
        got.extend(broker.receive(&queue, options).await?);
    }
    Ok(got)
}

/// Receives until `count` deliveries arrived (within 10 s).
async fn receive(
    broker: &AmqpBroker,
    pool: &PoolName,
    count: usize,
) -> anyhow::Result<Vec<Delivery>> {
    let got = gather(broker, pool, count, Duration::from_secs(10)).await?;
    ensure!(got.len() == count, "received {} of {count}", got.len());
    Ok(got)
}

/// Everything that arrives within `wait`.
async fn arriving(
    broker: &AmqpBroker,
    pool: &PoolName,
    wait: Duration,
) -> anyhow::Result<Vec<Delivery>> {
    gather(broker, pool, usize::MAX, wait).await
}

fn bodies(deliveries: &[Delivery]) -> BTreeSet<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8_lossy(&d.body).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_asked_together_are_one_frame() -> anyhow::Result<()> {
    let (broker, pool) = broker_with_pool().await?;
    let deliveries = receive(&broker, &pool, MESSAGES).await?;
    let before = broker.settle_stats();
    // As the worker's jobs do: each acks its own lease, concurrently.
    let acks = deliveries
        .iter()
        .map(|d| broker.ack(std::slice::from_ref(&d.lease)));
    for acked in futures_util::future::join_all(acks).await {
        acked?;
    }
    let after = broker.settle_stats();
    let (settled, frames) = (after.settled - before.settled, after.frames - before.frames);
    ensure!(settled == MESSAGES as u64, "settled {settled}");
    ensure!(
        frames < settled / 4,
        "{settled} acks asked at once took {frames} frames"
    );
    // Every one is gone: nothing comes back when the channel closes.
    broker.reset_consumers().await;
    let again = arriving(&broker, &pool, Duration::from_secs(2)).await?;
    ensure!(
        again.is_empty(),
        "{} acked deliveries came back",
        again.len()
    );
    if let Some(admin) = broker.admin() {
        admin.delete_pool(&pool).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_never_settles_a_delivery_still_held() -> anyhow::Result<()> {
    let (broker, pool) = broker_with_pool().await?;
    let deliveries = receive(&broker, &pool, MESSAGES).await?;
    // The first and a middle one stay with their "jobs"; the rest ack together (and the ones
    // above a held tag cannot be one `multiple` ack).
    let held = [0usize, MESSAGES / 2];
    let acked: Vec<_> = deliveries
        .iter()
        .enumerate()
        .filter(|(n, _)| !held.contains(n))
        .map(|(_, d)| d.lease.clone())
        .collect();
    broker.ack(&acked).await?;
    // The held ones are still leased; one is handed back, and the channel stays healthy (a tag
    // settled twice would close it).
    for n in held {
        broker
            .extend_lease(&deliveries[n].lease, Duration::from_secs(60))
            .await?;
    }
    broker
        .nack(&deliveries[held[1]].lease, Nack::Requeue)
        .await?;
    let back = arriving(&broker, &pool, Duration::from_secs(2)).await?;
    ensure!(
        bodies(&back) == bodies(&deliveries[held[1]..=held[1]]),
        "the requeued delivery comes back, and only it"
    );
    broker.ack(&[back[0].lease.clone()]).await?;
    // A crash now (the channel closes) returns exactly the one never acked.
    broker.reset_consumers().await;
    let again = arriving(&broker, &pool, Duration::from_secs(2)).await?;
    ensure!(
        bodies(&again) == bodies(&deliveries[..1]),
        "only the unacked delivery is redelivered: {:?}",
        bodies(&again)
    );
    broker.ack(&[again[0].lease.clone()]).await?;
    // A lease acked once cannot be settled again.
    ensure!(broker.ack(&[again[0].lease.clone()]).await.is_err());
    if let Some(admin) = broker.admin() {
        admin.delete_pool(&pool).await?;
    }
    Ok(())
}
