//! `queue move`: in-process on the memory broker, and on RabbitMQ with the mover killed
//! mid-way and run again: every message arrives exactly once.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clipfleet_broker::{
    Broker, BrokerOptions, Outgoing, PoolSpec, QueueRef, Receive, Topic, connect,
};
use clipfleet_ctl::cli::{Command as Cli, Output, QueueCommand, QueueName};
use clipfleet_ctl::{Exit, run};
use clipfleet_proto::Priority;
use clipfleet_testkit::{amqp_url, unique_name};

use super::common::{memory_ctx, pool};

fn numbered(range: std::ops::Range<usize>) -> Vec<Outgoing> {
    range
        .map(|i| {
            let mut message = Outgoing::new(Bytes::from(format!("message-{i:05}")));
            message.headers.insert("x-test-seq".into(), i.to_string());
            message
        })
        .collect()
}

/// Every body on `queue`, taken off it.
async fn drain_queue(
    broker: &dyn Broker,
    queue: &QueueRef,
) -> Vec<(String, Option<String>, Priority)> {
    let mut bodies = Vec::new();
    loop {
        let got = broker
            .receive(
                queue,
                Receive::new(256, Duration::from_secs(60), Duration::from_millis(500)),
            )
            .await
            .expect("receive");
        if got.is_empty() {
            return bodies;
        }
        for delivery in &got {
            bodies.push((
                String::from_utf8_lossy(&delivery.body).into_owned(),
                delivery.headers.get("x-test-seq").cloned(),
                delivery.priority,
            ));
        }
        let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
        broker.ack(&leases).await.expect("ack");
    }
}

fn move_cmd(from: QueueName, to: QueueName, limit: Option<u64>, batch: u64) -> Cli {
    Cli::Queue(QueueCommand::Move {
        from,
        to,
        limit,
        batch,
    })
}

#[tokio::test]
async fn moves_between_a_pools_queues_keeping_headers_and_class() {
    let (ctx, backends) = memory_ctx(Output::Json).await;
    let broker = backends.broker.as_ref();
    broker
        .publish_all(&Topic::Jobs(pool(), Priority::Free), numbered(0..30))
        .await
        .expect("publish free");
    broker
        .publish_all(&Topic::Jobs(pool(), Priority::Paid), numbered(30..35))
        .await
        .expect("publish paid");
    let jobs = || QueueName::Jobs("default".into());
    let dead = || QueueName::Dead("default".into());

    let report = run(&ctx, &move_cmd(jobs(), dead(), Some(20), 7))
        .await
        .expect("move");
    assert_eq!(report.json["moved"], 20);
    assert_eq!(
        broker
            .depth(&QueueRef::Jobs(pool()))
            .await
            .expect("depth")
            .ready,
        15
    );
    assert_eq!(
        broker
            .depth(&QueueRef::Dead(pool()))
            .await
            .expect("depth")
            .ready,
        20
    );

    let report = run(&ctx, &move_cmd(dead(), jobs(), None, 100))
        .await
        .expect("move back");
    assert_eq!(report.json["moved"], 20);
    let all = drain_queue(broker, &QueueRef::Jobs(pool())).await;
    assert_eq!(all.len(), 35);
    let distinct: HashSet<_> = all.iter().map(|(body, _, _)| body.clone()).collect();
    assert_eq!(distinct.len(), 35, "each once");
    for (body, seq, _) in &all {
        let seq: usize = seq.as_deref().expect("header kept").parse().expect("seq");
        assert_eq!(
            body,
            &format!("message-{seq:05}"),
            "headers travel with their body"
        );
    }
    // The five paid ones went first into the dead letters; coming out of a queue without
    // classes they join the free class, behind the free jobs that never left.
    let paid_now = all.iter().filter(|(_, _, p)| *p == Priority::Paid).count();
    assert_eq!(paid_now, 0);
    assert_eq!(all[0].0, "message-00015");

    let same = run(&ctx, &move_cmd(jobs(), jobs(), None, 10))
        .await
        .expect_err("same queue");
    assert_eq!(same.exit, Exit::Usage);
    let unknown = run(
        &ctx,
        &move_cmd(jobs(), QueueName::Dead("nope".into()), None, 10),
    )
    .await
    .expect_err("unknown pool");
    assert_eq!(unknown.exit, Exit::NotFound);
}

#[tokio::test]
async fn a_mover_killed_mid_way_and_run_again_moves_every_message_exactly_once() {
    const N: usize = 3_000;
    let namespace = unique_name("mv");
    let options = BrokerOptions {
        namespace: namespace.clone(),
        ..BrokerOptions::default()
    };
    let broker = connect(&amqp_url(), options).await.expect("rabbitmq");
    broker
        .ensure_pool(&pool(), PoolSpec::default())
        .await
        .expect("pool");
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        broker
            .publish_all(
                &Topic::Jobs(pool(), Priority::Free),
                numbered(chunk[0]..chunk[0] + chunk.len()),
            )
            .await
            .expect("publish");
    }
    let mover = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_clipctl"));
        command
            .args([
                "queue",
                "move",
                "--from",
                "jobs:default",
                "--to",
                "dead:default",
                "--batch",
                "25",
            ])
            .args(["--broker-namespace", &namespace])
            .env("CLIPFLEET_BROKER__URL", amqp_url())
            .env_remove("CLIPFLEET_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let dead = QueueRef::Dead(pool());
    let mut first = mover().spawn().expect("start the mover");
    let started = Instant::now();
    let moved_at_kill = loop {
        let moved = broker.depth(&dead).await.expect("depth").ready;
        if moved >= 300 {
            break moved;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the mover did not get going"
        );
        assert!(
            first.try_wait().expect("poll").is_none(),
            "the mover ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    first.kill().expect("kill -9 the mover");
    let status = first.wait().expect("reap");
    assert!(!status.success(), "killed, not finished");
    assert!(
        (moved_at_kill as usize) < N,
        "killed mid-way ({moved_at_kill} of {N} moved)"
    );

    let second = mover().output().expect("run the mover again");
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let bodies = drain_queue(broker.as_ref(), &dead).await;
    let distinct: HashSet<_> = bodies.iter().map(|(body, _, _)| body.clone()).collect();
    assert_eq!(distinct.len(), N, "every message arrived");
    assert_eq!(bodies.len(), N, "and none twice");
    assert_eq!(
        broker
            .depth(&QueueRef::Jobs(pool()))
            .await
            .expect("depth")
            .ready,
        0
    );
    if let Some(admin) = broker.admin() {
        admin.delete_pool(&pool()).await.expect("clean up");
    }
}
