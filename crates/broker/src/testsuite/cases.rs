//! The conformance cases: one public async function per property of the `Broker` contract.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clipfleet_proto::{
    AccountId, GenerateJob, InputRef, JobId, ModelRef, Motion, Params, PoolName, Priority,
    SCHEMA_VERSION, Sha256Hex, Timestamp, WorkerId, encode,
};

use super::{Fixture, body_of, expect_nothing, free, job, paid, receive_n, unique_pool, with_pool};
use crate::{BrokerErrorKind, Nack, Outgoing, PoolSpec, QueueRef, Receive, Topic, receive_decoded};

/// Every confirmed message is delivered, with its body and headers, and acked ones are gone.
pub async fn at_least_once_with_confirms(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        let sent: BTreeSet<String> = (0..20).map(|i| format!("job-{i:02}")).collect();
        broker
            .publish(&free(pool), job("job-00"))
            .await
            .context("publish one")?;
        let rest = sent.iter().skip(1).map(|b| job(b)).collect();
        broker
            .publish_all(&free(pool), rest)
            .await
            .context("publish_all")?;
        let queue = QueueRef::Jobs(pool.clone());
        let got = receive_n(fx, broker, &queue, sent.len())
            .await
            .context("receive all")?;
        let bodies: BTreeSet<String> = got.iter().map(body_of).collect();
        ensure!(
            bodies == sent,
            "received {} distinct of {}",
            bodies.len(),
            sent.len()
        );
        for delivery in &got {
            let trace = delivery
                .headers
                .get("traceparent")
                .context("traceparent header lost")?;
            ensure!(
                *trace == format!("00-{}", body_of(delivery)),
                "header mixed up: {trace}"
            );
            ensure!(
                delivery.delivery_count == 1,
                "first delivery counted {}",
                delivery.delivery_count
            );
        }
        let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
        broker.ack(&leases).await.context("ack all")?;
        expect_nothing(fx, broker, &queue)
            .await
            .context("acked messages stay gone")
    })
    .await
}

/// `ack(&[])` does nothing; acking a settled lease says the lease is lost.
pub async fn empty_ack_is_a_no_op(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        broker.ack(&[]).await.context("empty ack")?;
        broker
            .publish(&free(pool), job("once"))
            .await
            .context("publish")?;
        let got = receive_n(fx, broker, &QueueRef::Jobs(pool.clone()), 1).await?;
        let lease = got.first().context("nothing delivered")?.lease.clone();
        broker
            .ack(std::slice::from_ref(&lease))
            .await
            .context("first ack")?;
        broker.ack(&[]).await.context("empty ack after")?;
        match broker.ack(std::slice::from_ref(&lease)).await {
            Err(err) if err.kind == BrokerErrorKind::LeaseLost => Ok(()),
            // RabbitMQ closes the channel on a double ack; that too loses the lease.
            other => bail!("second ack of one lease: {other:?}"),
        }
    })
    .await
}

/// A delivery whose lease lapses is delivered again, counted.
pub async fn redelivery_after_lease_loss(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        let queue = QueueRef::Jobs(pool.clone());
        broker
            .publish(&free(pool), job("crashy"))
            .await
            .context("publish")?;
        let first = receive_n(fx, broker, &queue, 1)
            .await
            .context("first receive")?;
        ensure!(first.len() == 1, "first delivery missing");
        fx.lose_leases().await;
        let second = receive_n(fx, broker, &queue, 1)
            .await
            .context("second receive")?;
        let again = second.first().context("not redelivered after lease loss")?;
        ensure!(body_of(again) == "crashy", "wrong message redelivered");
        ensure!(
            again.delivery_count == 2,
            "redelivery counted {}",
            again.delivery_count
        );
        broker
            .ack(std::slice::from_ref(&again.lease))
            .await
            .context("ack redelivery")
    })
    .await
}

/// A copy delivered `max_deliveries` times without being settled lands in the dead letters
/// with reason `delivery_limit`.
pub async fn delivery_limit_dead_letters(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec { max_deliveries: 2 }, async |broker, pool| {
        let queue = QueueRef::Jobs(pool.clone());
        broker
            .publish(&free(pool), job("poison"))
            .await
            .context("publish")?;
        for attempt in 1..=2 {
            let got = receive_n(fx, broker, &queue, 1).await?;
            let delivery = got
                .first()
                .with_context(|| format!("delivery {attempt} missing"))?;
            ensure!(
                delivery.delivery_count == attempt,
                "delivery {attempt} counted {}",
                delivery.delivery_count
            );
            broker
                .nack(&delivery.lease, Nack::Requeue)
                .await
                .context("nack requeue")?;
        }
        let dead = receive_n(fx, broker, &QueueRef::Dead(pool.clone()), 1)
            .await
            .context("dead letters")?;
        let dead = dead
            .first()
            .context("not dead-lettered after the delivery limit")?;
        ensure!(body_of(dead) == "poison", "wrong dead letter");
        ensure!(
            dead.dead_reason() == Some("delivery_limit"),
            "reason {:?}",
            dead.dead_reason()
        );
        broker
            .ack(std::slice::from_ref(&dead.lease))
            .await
            .context("ack dead letter")?;
        expect_nothing(fx, broker, &queue).await
    })
    .await
}

/// `dead_letter` moves a delivery to the dead letters with the given reason and its headers.
pub async fn dead_letter_keeps_reason_and_headers(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        broker
            .publish(&free(pool), job("garbage"))
            .await
            .context("publish")?;
        let got = receive_n(fx, broker, &QueueRef::Jobs(pool.clone()), 1).await?;
        let delivery = got.first().context("nothing delivered")?;
        broker
            .dead_letter(&delivery.lease, "undecodable")
            .await
            .context("dead_letter")?;
        let dead = receive_n(fx, broker, &QueueRef::Dead(pool.clone()), 1).await?;
        let dead = dead.first().context("dead letter missing")?;
        ensure!(
            dead.dead_reason() == Some("undecodable"),
            "reason {:?}",
            dead.dead_reason()
        );
        ensure!(
            dead.headers.get("traceparent").map(String::as_str) == Some("00-garbage"),
            "headers lost"
        );
        broker
            .ack(std::slice::from_ref(&dead.lease))
            .await
            .context("ack dead letter")?;
        expect_nothing(fx, broker, &QueueRef::Jobs(pool.clone())).await
    })
    .await
}

/// `nack(RetryAfter)` hands the message back to the broker: nobody holds it during the delay,
/// it comes back after it, with its retry counted.
pub async fn delayed_retry_is_held_by_the_broker(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        let queue = QueueRef::Jobs(pool.clone());
        broker
            .publish(&free(pool), job("flaky"))
            .await
            .context("publish")?;
        let got = receive_n(fx, broker, &queue, 1).await?;
        let delivery = got.first().context("nothing delivered")?;
        let delay = Duration::from_secs(3);
        broker
            .nack(&delivery.lease, Nack::RetryAfter(delay))
            .await
            .context("nack retry")?;
        let depth = broker.depth(&queue).await.context("depth during delay")?;
        ensure!(
            depth.in_flight.unwrap_or(0) == 0,
            "the consumer still holds the retry: {depth:?}"
        );
        expect_nothing(fx, broker, &queue)
            .await
            .context("delivered before its delay")?;
        fx.pass(delay).await;
        let back = receive_n(fx, broker, &queue, 1)
            .await
            .context("after the delay")?;
        let back = back.first().context("retry never came back")?;
        ensure!(body_of(back) == "flaky", "wrong message");
        ensure!(back.retries == 1, "retries counted {}", back.retries);
        ensure!(
            back.headers.contains_key("traceparent"),
            "headers lost on retry"
        );
        broker
            .ack(std::slice::from_ref(&back.lease))
            .await
            .context("ack retry")
    })
    .await
}

/// With both classes waiting, paid work comes first, and free work still gets its turn.
pub async fn paid_before_free_without_starvation(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        let frees = (0..10).map(|i| job(&format!("free-{i}"))).collect();
        broker
            .publish_all(&free(pool), frees)
            .await
            .context("publish free")?;
        let paids = (0..10).map(|i| job(&format!("paid-{i}"))).collect();
        broker
            .publish_all(&paid(pool), paids)
            .await
            .context("publish paid")?;
        let queue = QueueRef::Jobs(pool.clone());
        // Let both classes be ready before the first pick (consumers start on first receive).
        let warm = receive_n(fx, broker, &queue, 1).await?;
        broker
            .nack(
                &warm.first().context("nothing delivered")?.lease,
                Nack::Requeue,
            )
            .await?;
        fx.pass(Duration::from_millis(300)).await;
        let mut order = Vec::new();
        while order.len() < 20 {
            let got = receive_n(fx, broker, &queue, 1).await?;
            let delivery = got
                .first()
                .with_context(|| format!("only {} of 20 delivered: {order:?}", order.len()))?;
            order.push((delivery.priority, body_of(delivery)));
            broker
                .ack(std::slice::from_ref(&delivery.lease))
                .await
                .context("ack")?;
        }
        let first_ten = &order[..10];
        let paid_first = first_ten
            .iter()
            .filter(|(p, _)| *p == Priority::Paid)
            .count();
        ensure!(
            paid_first >= 7,
            "only {paid_first} paid among the first 10: {order:?}"
        );
        ensure!(
            paid_first < 10,
            "free work starved among the first 10: {order:?}"
        );
        for (priority, body) in &order {
            ensure!(
                body.starts_with(priority.as_str()),
                "{body} delivered as {priority}"
            );
        }
        Ok(())
    })
    .await
}

/// Depth counts ready messages, and in-flight ones where the backend can tell.
pub async fn depth_counts_ready_and_in_flight(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        let queue = QueueRef::Jobs(pool.clone());
        let messages = (0..3).map(|i| job(&format!("d{i}"))).collect();
        broker
            .publish_all(&free(pool), messages)
            .await
            .context("publish")?;
        broker
            .publish(&paid(pool), job("d-paid"))
            .await
            .context("publish paid")?;
        let before = broker.depth(&queue).await.context("depth before")?;
        ensure!(
            before.ready == 4,
            "ready {} before receiving, expected 4",
            before.ready
        );
        let got = receive_n(fx, broker, &queue, 4).await?;
        ensure!(got.len() == 4, "received {}", got.len());
        let during = broker.depth(&queue).await.context("depth while leased")?;
        ensure!(during.ready == 0, "ready {} while all leased", during.ready);
        if let Some(in_flight) = during.in_flight {
            ensure!(in_flight == 4, "in flight {in_flight}, expected 4");
        }
        let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
        broker.ack(&leases).await.context("ack")?;
        fx.pass(Duration::from_millis(200)).await;
        let after = broker.depth(&queue).await.context("depth after")?;
        ensure!(
            after.ready == 0 && after.in_flight.unwrap_or(0) == 0,
            "after ack: {after:?}"
        );
        Ok(())
    })
    .await
}

/// An extended lease outlives its first term: the delivery is not redelivered meanwhile.
pub async fn extend_lease_keeps_the_delivery(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        let queue = QueueRef::Jobs(pool.clone());
        broker
            .publish(&free(pool), job("long"))
            .await
            .context("publish")?;
        let got = receive_n(fx, broker, &queue, 1).await?;
        let delivery = got.first().context("nothing delivered")?;
        for _ in 0..3 {
            fx.pass(fx.lease() / 2).await;
            broker
                .extend_lease(&delivery.lease, fx.lease())
                .await
                .context("extend lease")?;
        }
        expect_nothing(fx, broker, &queue)
            .await
            .context("redelivered while extended")?;
        broker
            .ack(std::slice::from_ref(&delivery.lease))
            .await
            .context("ack after extensions")
    })
    .await
}

/// Publishing to a pool nobody declared is an error, not a silent loss.
pub async fn undeclared_pool_is_refused(fx: &dyn Fixture) -> anyhow::Result<()> {
    let broker = fx.broker();
    let pool = unique_pool();
    match broker.publish(&free(&pool), job("lost?")).await {
        Err(err)
            if matches!(
                err.kind,
                BrokerErrorKind::NotFound | BrokerErrorKind::Rejected
            ) =>
        {
            Ok(())
        }
        other => bail!("publish to an undeclared pool: {other:?}"),
    }
}

/// Headers no backend can carry are refused before anything is sent.
pub async fn bad_headers_are_refused(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        let too_many = (0..9).fold(job("h"), |m, i| m.with_header(format!("h{i}"), "x"));
        let bad_key = job("h").with_header("bad key", "x");
        for message in [too_many, bad_key] {
            match broker.publish(&free(pool), message).await {
                Err(err) if err.kind == BrokerErrorKind::InvalidInput => {}
                other => bail!("bad headers accepted: {other:?}"),
            }
        }
        expect_nothing(fx, broker, &QueueRef::Jobs(pool.clone())).await
    })
    .await
}

/// Every subscribed worker gets every control message (backends with a control bus).
pub async fn control_reaches_every_worker(fx: &dyn Fixture) -> anyhow::Result<()> {
    let broker = fx.broker();
    let Some(bus) = broker.control_bus() else {
        return Ok(()); // SQS has no fan-out; the ability is optional by design
    };
    let workers: Vec<WorkerId> = (0..2)
        .map(|i| WorkerId::new(format!("w{i}-{}", JobId::generate())).expect("worker id"))
        .collect();
    for worker in &workers {
        bus.subscribe_control(worker).await.context("subscribe")?;
    }
    broker
        .publish(&Topic::Control, Outgoing::new(&b"drain"[..]))
        .await
        .context("publish control")?;
    for worker in &workers {
        let got = receive_n(fx, broker.as_ref(), &QueueRef::Control(worker.clone()), 1).await?;
        let delivery = got
            .first()
            .with_context(|| format!("{worker} got no control message"))?;
        ensure!(&delivery.body[..] == b"drain", "wrong control message");
        broker
            .ack(std::slice::from_ref(&delivery.lease))
            .await
            .context("ack control")?;
    }
    Ok(())
}

fn sample_job(pool: &PoolName) -> GenerateJob {
    let job_id = JobId::generate();
    let account_id = AccountId::new("acct-suite").expect("account id");
    GenerateJob {
        v: SCHEMA_VERSION,
        input: InputRef {
            key: format!("inputs/{account_id}/{job_id}"),
            size: 3,
            sha256: Sha256Hex::from_digest(&[7; 32]),
            content_type: "image/png".into(),
        },
        job_id,
        account_id,
        pool: pool.clone(),
        model: ModelRef {
            name: "motion".into(),
            version: "1".into(),
        },
        params: Params {
            frames: 8,
            fps: 8,
            width: 64,
            height: 64,
            seed: 1,
            motion: Motion::ZoomIn,
            aspect: clipfleet_proto::Aspect::Auto,
        },
        kind: clipfleet_proto::JobKind::Video,
        session: None,
        priority: Priority::Free,
        submitted_at: Timestamp::from_unix_ms(1),
        deadline: Timestamp::from_unix_ms(2),
        trace: None,
    }
}

/// A body that does not decode is dead-lettered with reason `undecodable`, and the consumer
/// still gets the good messages around it.
pub async fn undecodable_bodies_are_dead_lettered(fx: &dyn Fixture) -> anyhow::Result<()> {
    with_pool(fx, PoolSpec::default(), async |broker, pool| {
        let good = sample_job(pool);
        let messages = vec![
            Outgoing::new(&b"\xc1 not msgpack"[..]),
            Outgoing::new(encode(&good).context("encode")?),
            Outgoing::new(&b"\x81\xa1v\x09"[..]),
        ];
        broker
            .publish_all(&free(pool), messages)
            .await
            .context("publish")?;
        let queue = QueueRef::Jobs(pool.clone());
        let mut decoded = Vec::new();
        let deadline = tokio::time::Instant::now() + fx.patience();
        // Keep receiving until the queue is drained: the bad bodies are dealt with inside
        // `receive_decoded`, whichever batch they arrive in.
        while tokio::time::Instant::now() < deadline {
            let options = Receive::new(10, fx.lease(), Duration::from_secs(1));
            let got = receive_decoded::<GenerateJob>(broker, &queue, options)
                .await
                .context("receive_decoded")?;
            let drained = got.is_empty() && !decoded.is_empty();
            decoded.extend(got);
            if drained && broker.depth(&queue).await.context("depth")?.ready == 0 {
                break;
            }
        }
        ensure!(decoded.len() == 1, "decoded {} jobs", decoded.len());
        ensure!(decoded[0].1 == good, "the good job changed on the way");
        broker
            .ack(std::slice::from_ref(&decoded[0].0.lease))
            .await
            .context("ack")?;
        let dead = receive_n(fx, broker, &QueueRef::Dead(pool.clone()), 2)
            .await
            .context("dead letters")?;
        ensure!(
            dead.len() == 2,
            "{} of 2 bad bodies dead-lettered",
            dead.len()
        );
        for letter in &dead {
            ensure!(
                letter.dead_reason() == Some("undecodable"),
                "reason {:?}",
                letter.dead_reason()
            );
        }
        let leases: Vec<_> = dead.iter().map(|d| d.lease.clone()).collect();
        broker.ack(&leases).await.context("ack dead letters")
    })
    .await
}
