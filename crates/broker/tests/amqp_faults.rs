//! Fault behaviour on real RabbitMQ: a broker stopped and started under a running publisher and
//! consumer (on a private node, so the shared broker stays up for every other test), a
//! connection that goes silent under a publisher, and a consumer cancelled by the broker.
#![cfg(feature = "amqp")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_broker::{
    AmqpBroker, Broker, BrokerOptions, Outgoing, PoolSpec, QueueRef, Receive, Topic,
};
use clipfleet_proto::{JobId, PoolName, Priority};
use clipfleet_testkit::{PrivateRabbit, StallingProxy};

fn options() -> BrokerOptions {
    BrokerOptions {
        namespace: "clipfleet-test".into(),
        // Shorter than the outage below: publishes during it must fail visibly, not just wait.
        op_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ..BrokerOptions::default()
    }
}

fn unique_pool() -> PoolName {
    PoolName::new(format!(
        "f-{}",
        JobId::generate().to_string().to_ascii_lowercase()
    ))
    .expect("pool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_no_confirmed_message() -> anyhow::Result<()> {
    let rabbit = Arc::new(
        tokio::task::spawn_blocking(PrivateRabbit::start)
            .await?
            .context("start a private RabbitMQ")?,
    );
    let broker = AmqpBroker::connect(&rabbit.url(), options())
        .await
        .context("connect")?;
    let pool = unique_pool();
    broker
        .ensure_pool(&pool, PoolSpec::default())
        .await
        .context("ensure_pool")?;

    // At least this many, and on until RabbitMQ is back: on a loaded machine stopping it can
    // take longer than publishing a fixed count, and the outage must land mid-stream.
    const TOTAL: usize = 300;
    let confirmed = Arc::new(Mutex::new(BTreeSet::new()));
    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let publish_errors = Arc::new(Mutex::new(0usize));
    let last_error = Arc::new(Mutex::new(String::new()));
    let restarted = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let publisher = {
        let (broker, pool) = (broker.clone(), pool.clone());
        let (confirmed, errors) = (confirmed.clone(), publish_errors.clone());
        let (last_error, restarted) = (last_error.clone(), restarted.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while i < TOTAL || !restarted.load(std::sync::atomic::Ordering::SeqCst) {
                // Retry each message until the broker confirms it: errors are visible, never silent.
                loop {
                    let message = Outgoing::new(format!("m{i:04}").into_bytes());
                    match broker
                        .publish(&Topic::Jobs(pool.clone(), Priority::Free), message)
                        .await
                    {
                        Ok(()) => {
                            confirmed.lock().expect("lock").insert(i);
                            break;
                        }
                        Err(err) => {
                            *errors.lock().expect("lock") += 1;
                            *last_error.lock().expect("lock") = err.to_string();
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                i += 1;
            }
            i
        })
    };
    let consumer = {
        let (broker, pool, received) = (broker.clone(), pool.clone(), received.clone());
        tokio::spawn(async move {
            let queue = QueueRef::Jobs(pool);
            loop {
                let Ok(batch) = broker
                    .receive(
                        &queue,
                        Receive::new(50, Duration::from_secs(30), Duration::from_millis(200)),
                    )
                    .await
                else {
                    continue;
                };
                let leases: Vec<_> = batch.iter().map(|d| d.lease.clone()).collect();
                // An ack lost to the outage only means a redelivery, which the set absorbs.
                if broker.ack(&leases).await.is_ok() {
                    let mut seen = received.lock().expect("lock");
                    for delivery in &batch {
                        seen.insert(String::from_utf8_lossy(&delivery.body).into_owned());
                    }
                }
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_outage = received.lock().expect("lock").len();
    let outage = rabbit.clone();
    tokio::task::spawn_blocking(move || outage.stop_app())
        .await?
        .context("stop RabbitMQ")?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restart = rabbit.clone();
    tokio::task::spawn_blocking(move || restart.start_app())
        .await?
        .context("start RabbitMQ")?;
    restarted.store(true, std::sync::atomic::Ordering::SeqCst);

    let total = tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .with_context(|| {
            format!(
                "publisher never finished: {} of its messages confirmed, {} publish errors, the last: {}",
                confirmed.lock().expect("lock").len(),
                *publish_errors.lock().expect("lock"),
                last_error.lock().expect("lock")
            )
        })??;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = received.lock().expect("lock").len();
        if got >= total || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.abort();

    let confirmed = confirmed.lock().expect("lock").clone();
    let received = received.lock().expect("lock").clone();
    let errors = *publish_errors.lock().expect("lock");
    ensure!(
        confirmed.len() == total,
        "only {} of {total} confirmed",
        confirmed.len()
    );
    ensure!(errors > 0, "the publisher never noticed the outage");
    ensure!(before_outage > 0, "nothing was consumed before the outage");
    let missing: Vec<_> = confirmed
        .iter()
        .map(|i| format!("m{i:04}"))
        .filter(|m| !received.contains(m))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} confirmed messages never delivered: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    broker.close().await;
    Ok(())
}

/// The test RabbitMQ's URL in three: scheme and user, host and port, vhost.
fn url_parts(url: &str) -> anyhow::Result<(&str, &str, &str)> {
    let (scheme_user, rest) = url.split_once('@').context("amqp url has no '@'")?;
    let (host_port, vhost) = rest.split_once('/').context("amqp url has no vhost")?;
    Ok((scheme_user, host_port, vhost))
}

/// Where the test RabbitMQ listens.
async fn rabbit_addr() -> anyhow::Result<std::net::SocketAddr> {
    let url = clipfleet_testkit::amqp_url();
    let (_, host_port, _) = url_parts(&url)?;
    tokio::net::lookup_host(host_port)
        .await?
        .next()
        .context("amqp host resolves to nothing")
}

/// The test RabbitMQ's URL, pointed at `addr` instead.
fn url_via(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let url = clipfleet_testkit::amqp_url();
    let (scheme_user, _, vhost) = url_parts(&url)?;
    Ok(format!("{scheme_user}@{addr}/{vhost}"))
}

/// A broker connected through a fresh [`StallingProxy`] with `proxied_options`, one connected
/// directly, and a pool of the test's own.
struct Proxied {
    proxy: StallingProxy,
    broker: AmqpBroker,
    direct: AmqpBroker,
    pool: PoolName,
}

async fn proxied(proxied_options: BrokerOptions) -> anyhow::Result<Proxied> {
    let proxy = StallingProxy::start(rabbit_addr().await?).await?;
    let broker = AmqpBroker::connect(&url_via(proxy.addr())?, proxied_options)
        .await
        .context("connect through the proxy")?;
    let direct = AmqpBroker::connect(&clipfleet_testkit::amqp_url(), options())
        .await
        .context("connect directly")?;
    let pool = unique_pool();
    direct.ensure_pool(&pool, PoolSpec::default()).await?;
    Ok(Proxied {
        proxy,
        broker,
        direct,
        pool,
    })
}

/// A connection that goes silent (a partition or a frozen peer: no FIN, no RST) must not hold
/// publishers until a heartbeat notices: the publish that gets no confirm times out, the
/// session is dropped without waiting for RabbitMQ's answer to the close, and publishing goes
/// on over a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_resumes_after_the_connection_goes_silent() -> anyhow::Result<()> {
    let Proxied {
        proxy,
        broker,
        direct,
        pool,
    } = proxied(options()).await?;
    let topic = Topic::Jobs(pool.clone(), Priority::Free);
    broker
        .publish(&topic, Outgoing::new(&b"before"[..]))
        .await
        .context("publish before the stall")?;

    proxy.stall_open_connections();
    let stalled_at = tokio::time::Instant::now();
    let mut errors = Vec::new();
    let resumed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match broker.publish(&topic, Outgoing::new(&b"after"[..])).await {
                Ok(()) => break,
                Err(err) => {
                    errors.push(err.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
    .await;
    let took = stalled_at.elapsed();
    ensure!(
        resumed.is_ok(),
        "publishing had not resumed 30 s after the connection went silent; errors: {errors:?}"
    );
    ensure!(
        !errors.is_empty(),
        "a publish over the silent connection succeeded"
    );
    // One operation timeout for the lost publish, one at most for the unanswered close, and
    // the reconnect: well under RabbitMQ's 60 s heartbeat.
    ensure!(
        took < Duration::from_secs(12),
        "publishing resumed only after {took:?}; errors: {errors:?}"
    );

    let queue = QueueRef::Jobs(pool.clone());
    let mut bodies = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while bodies.len() < 2 && tokio::time::Instant::now() < deadline {
        let got = direct
            .receive(
                &queue,
                Receive::new(10, Duration::from_secs(30), Duration::from_millis(500)),
            )
            .await?;
        let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
        direct.ack(&leases).await?;
        bodies.extend(got.into_iter().map(|d| d.body));
    }
    ensure!(
        bodies
            .iter()
            .map(|b| &b[..])
            .eq([&b"before"[..], &b"after"[..]]),
        "expected the message before the stall and the one after it, got {bodies:?}"
    );
    direct.admin().context("admin")?.delete_pool(&pool).await?;
    direct.close().await;
    drop(proxy);
    Ok(())
}

/// A consumer whose connection goes silent hears nothing more: no error, no end of stream. The
/// heartbeat is what finds it dead, on both ends (RabbitMQ then hands its deliveries to live
/// consumers), so consuming resumes within about twice the heartbeat, here 1 s; on RabbitMQ's
/// default of 60 s it would take two minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_resumes_after_the_connection_goes_silent() -> anyhow::Result<()> {
    let Proxied {
        proxy,
        broker,
        direct,
        pool,
    } = proxied(BrokerOptions {
        heartbeat: Duration::from_secs(1),
        ..options()
    })
    .await?;
    let (queue, topic) = (
        QueueRef::Jobs(pool.clone()),
        Topic::Jobs(pool.clone(), Priority::Free),
    );
    let take_one = async |broker: &AmqpBroker, within: Duration| -> anyhow::Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let got = broker
                .receive(
                    &queue,
                    Receive::new(1, Duration::from_secs(30), Duration::from_millis(500)),
                )
                .await?;
            if let Some(delivery) = got.into_iter().next() {
                broker.ack(std::slice::from_ref(&delivery.lease)).await?;
                return Ok(delivery.body.to_vec());
            }
        }
        anyhow::bail!("nothing consumed within {within:?}")
    };
    direct
        .publish(&topic, Outgoing::new(&b"before"[..]))
        .await?;
    ensure!(take_one(&broker, Duration::from_secs(10)).await? == b"before");

    proxy.stall_open_connections();
    let stalled_at = tokio::time::Instant::now();
    direct.publish(&topic, Outgoing::new(&b"after"[..])).await?;
    // The ack of "before" may still sit in the stalled connection's write buffer: then RabbitMQ
    // redelivers "before" once the connection is found dead, as at-least-once allows (seen in
    // a loaded run). Anything else, or nothing, is a failure.
    let mut after = take_one(&broker, Duration::from_secs(20))
        .await
        .context("consuming through the silent connection's replacement")?;
    if after == b"before" {
        after = take_one(&broker, Duration::from_secs(20))
            .await
            .context("consuming after the redelivered message")?;
    }
    ensure!(after == b"after", "consumed {after:?}");
    let took = stalled_at.elapsed();
    ensure!(
        took < Duration::from_secs(15),
        "consuming resumed only after {took:?}"
    );
    direct.admin().context("admin")?.delete_pool(&pool).await?;
    direct.close().await;
    drop(proxy);
    Ok(())
}

#[tokio::test]
async fn consumer_resumes_after_basic_cancel() -> anyhow::Result<()> {
    let broker = AmqpBroker::connect(&clipfleet_testkit::amqp_url(), options())
        .await
        .context("connect")?;
    let pool = unique_pool();
    broker.ensure_pool(&pool, PoolSpec::default()).await?;
    let queue = QueueRef::Jobs(pool.clone());
    let topic = Topic::Jobs(pool.clone(), Priority::Free);
    broker
        .publish(&topic, Outgoing::new(&b"before"[..]))
        .await?;
    let got = broker
        .receive(
            &queue,
            Receive::new(1, Duration::from_secs(30), Duration::from_secs(5)),
        )
        .await?;
    ensure!(got.len() == 1, "nothing before the cancel");
    broker.ack(&[got[0].lease.clone()]).await?;
    // Deleting the queue under the consumer makes RabbitMQ send basic.cancel.
    let admin = broker.admin().context("admin")?;
    admin.delete_pool(&pool).await.context("delete pool")?;
    broker
        .ensure_pool(&pool, PoolSpec::default())
        .await
        .context("recreate pool")?;
    broker.publish(&topic, Outgoing::new(&b"after"[..])).await?;
    let mut after = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while after.is_empty() && tokio::time::Instant::now() < deadline {
        after = broker
            .receive(
                &queue,
                Receive::new(1, Duration::from_secs(30), Duration::from_secs(1)),
            )
            .await?;
    }
    ensure!(
        after.first().is_some_and(|d| &d.body[..] == b"after"),
        "consumer did not resume after basic.cancel"
    );
    broker.ack(&[after[0].lease.clone()]).await?;
    admin.delete_pool(&pool).await?;
    Ok(())
}
