//! Broker throughput and latency, side by side in one run (`cargo bench -p clipfleet-benches
//! --bench broker`): publish + consume + ack of 200-byte messages on RabbitMQ quorum queues,
//! through `AmqpBroker` and through a raw lapin loop with the same pattern (confirmed publishes
//! in windows, consumer with the same prefetch acking each delivery); and the in-memory broker
//! on one core. Each round alternates the contenders; medians over rounds are reported.
//!
//! Environment: CLIPFLEET_TEST_AMQP_URL (default 127.0.0.1:5672), BENCH_MESSAGES (default
//! 20000), BENCH_ROUNDS (default 3).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::{Duration, Instant};

use clipfleet_benches::{env_usize, median};
use clipfleet_broker::{
    AmqpBroker, Broker, BrokerOptions, InMemoryBroker, Outgoing, PoolSpec, QueueRef, Receive, Topic,
};
use clipfleet_proto::{JobId, PoolName, Priority};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

const BODY_BYTES: usize = 200;
/// Publishes in flight before waiting for their confirms (both contenders).
const WINDOW: usize = 64;
/// Consumer prefetch (both contenders).
const PREFETCH: u16 = 256;

/// A 200-byte body whose first 8 bytes are the send time (ns since `epoch`).
fn body(epoch: Instant) -> Vec<u8> {
    let mut body = vec![0x5a; BODY_BYTES];
    let sent = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    body[..8].copy_from_slice(&sent.to_le_bytes());
    body
}

fn latency_us(epoch: Instant, body: &[u8]) -> u32 {
    let sent = u64::from_le_bytes(body[..8].try_into().unwrap_or([0; 8]));
    let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, Copy)]
struct Run {
    msgs_per_s: f64,
    p50_us: u32,
    p99_us: u32,
}

fn summarize(count: usize, elapsed: Duration, mut latencies: Vec<u32>) -> Run {
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    Run {
        msgs_per_s: count as f64 / elapsed.as_secs_f64(),
        p50_us: pick(0.5),
        p99_us: pick(0.99),
    }
}

async fn raw_lapin(url: &str, count: usize) -> Run {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let publisher = conn.create_channel().await.expect("channel");
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let queue = format!(
        "bench-raw-{}",
        JobId::generate().to_string().to_ascii_lowercase()
    );
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    publisher
        .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
        .await
        .expect("declare");
    let consumer_channel = conn.create_channel().await.expect("channel");
    consumer_channel
        .basic_qos(PREFETCH, BasicQosOptions { global: false })
        .await
        .expect("qos");
    let mut consumer = consumer_channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let epoch = Instant::now();
    let consume = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(count);
        while latencies.len() < count {
            let delivery = consumer
                .next()
                .await
                .expect("stream open")
                .expect("delivery");
            latencies.push(latency_us(epoch, &delivery.data));
            delivery.ack(BasicAckOptions::default()).await.expect("ack");
        }
        latencies
    });
    let mut sent = 0;
    while sent < count {
        let mut confirms = Vec::with_capacity(WINDOW);
        for _ in 0..WINDOW.min(count - sent) {
            let props = BasicProperties::default().with_delivery_mode(2);
            let confirm = publisher
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    &body(epoch),
                    props,
                )
                .await
                .expect("publish");
            confirms.push(confirm);
            sent += 1;
        }
        for confirm in confirms {
            assert!(confirm.await.expect("confirm").is_ack(), "nacked");
        }
    }
    let latencies = consume.await.expect("consumer");
    let run = summarize(count, epoch.elapsed(), latencies);
    publisher
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let _ = conn.close(200, "done".into()).await;
    run
}

/// The same pattern through the `Broker` trait (any backend).
async fn through_trait(broker: Arc<dyn Broker>, count: usize, batch: usize) -> Run {
    let pool = PoolName::new(format!(
        "bench-{}",
        JobId::generate().to_string().to_ascii_lowercase()
    ))
    .expect("pool");
    broker
        .ensure_pool(&pool, PoolSpec::default())
        .await
        .expect("pool");
    let epoch = Instant::now();
    let consumer = {
        let (broker, pool) = (broker.clone(), pool.clone());
        tokio::spawn(async move {
            let queue = QueueRef::Jobs(pool);
            let mut latencies = Vec::with_capacity(count);
            while latencies.len() < count {
                let options =
                    Receive::new(batch, Duration::from_secs(60), Duration::from_millis(50));
                let got = broker.receive(&queue, options).await.expect("receive");
                let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
                latencies.extend(got.iter().map(|d| latency_us(epoch, &d.body)));
                broker.ack(&leases).await.expect("ack");
            }
            latencies
        })
    };
    let topic = Topic::Jobs(pool.clone(), Priority::Free);
    let mut sent = 0;
    while sent < count {
        let n = batch.min(count - sent);
        let messages = (0..n).map(|_| Outgoing::new(body(epoch))).collect();
        broker.publish_all(&topic, messages).await.expect("publish");
        sent += n;
        // Let the consumer run between batches (on one core the publisher would run ahead).
        tokio::task::yield_now().await;
    }
    let latencies = consumer.await.expect("consumer");
    let run = summarize(count, epoch.elapsed(), latencies);
    if let Some(admin) = broker.admin() {
        admin.delete_pool(&pool).await.expect("delete pool");
    }
    run
}

fn report(name: &str, runs: &[Run]) -> f64 {
    let rate = median(runs.iter().map(|r| r.msgs_per_s).collect());
    let p50 = median(runs.iter().map(|r| f64::from(r.p50_us)).collect());
    let p99 = median(runs.iter().map(|r| f64::from(r.p99_us)).collect());
    println!(
        "{name:<28} {rate:>12.0} msgs/s   p50 {p50:>8.0} µs   p99 {p99:>8.0} µs   (median of {})",
        runs.len()
    );
    rate
}

fn main() {
    let count = env_usize("BENCH_MESSAGES", 20_000);
    let rounds = env_usize("BENCH_ROUNDS", 3).max(1);
    let url = std::env::var("CLIPFLEET_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());

    // The in-memory broker on one core (a current-thread runtime).
    let one_core = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let memory: Vec<Run> = (0..rounds)
        .map(|_| {
            one_core.block_on(through_trait(
                Arc::new(InMemoryBroker::new()),
                count * 25,
                256,
            ))
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(runtime.block_on(raw_lapin(&url, count)));
        let options = BrokerOptions {
            namespace: "clipfleet-bench".into(),
            prefetch: PREFETCH,
            ..BrokerOptions::default()
        };
        let broker = runtime
            .block_on(AmqpBroker::connect(&url, options))
            .expect("connect");
        ours.push(runtime.block_on(through_trait(Arc::new(broker.clone()), count, WINDOW)));
        runtime.block_on(broker.close());
    }
    println!(
        "{count} messages of {BODY_BYTES} bytes per round, RabbitMQ quorum queues, window {WINDOW}, prefetch {PREFETCH}"
    );
    let memory_rate = report("memory (1 core)", &memory);
    let raw_rate = report("raw lapin", &raw);
    let ours_rate = report("AmqpBroker", &ours);
    println!(
        "AmqpBroker / raw lapin: {:.1} %   memory: {:.2} M msgs/s",
        100.0 * ours_rate / raw_rate,
        memory_rate / 1e6
    );
}
