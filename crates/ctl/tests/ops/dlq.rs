//! `dlq list | replay | purge`, `job show`, `account purge` on the in-memory backends.

use std::time::Duration;

use clipfleet_broker::{QueueRef, Receive};
use clipfleet_ctl::cli::{
    AccountCommand, Command, DlqArgs, DlqCommand, JanitorCommand, JobCommand, Output, PurgeReason,
};
use clipfleet_ctl::{Exit, run};
use clipfleet_ledger::{NewAccount, PersonalFields};
use clipfleet_proto::{AccountId, GenerateJob};
use clipfleet_store::{ObjectKey, StoreErrorKind};

use super::common::{memory_ctx, pool, submit};

fn args() -> DlqArgs {
    DlqArgs {
        pool: None,
        limit: 100,
    }
}

async fn account(backends: &clipfleet_ctl::Backends, id: &str) -> AccountId {
    let id = AccountId::new(id).expect("id");
    backends
        .ledger
        .create_account(&NewAccount {
            id: id.clone(),
            birth_date: Some("1990-01-01".into()),
            under_14: false,
            personal: PersonalFields::default(),
        })
        .await
        .expect("account");
    id
}

/// Takes every job off the pool's queue and dead-letters it with `reason`.
async fn dead_letter_all(backends: &clipfleet_ctl::Backends, reason: &str) {
    let broker = backends.broker.as_ref();
    let got = broker
        .receive(
            &QueueRef::Jobs(pool()),
            Receive::new(100, Duration::from_secs(30), Duration::from_millis(200)),
        )
        .await
        .expect("receive");
    for delivery in got {
        broker
            .dead_letter(&delivery.lease, reason)
            .await
            .expect("dead letter");
    }
}

async fn photo_stored(backends: &clipfleet_ctl::Backends, job: &GenerateJob) -> bool {
    match backends
        .raw_store
        .head(&ObjectKey::input(&job.account_id, job.job_id))
        .await
    {
        Ok(_) => true,
        Err(err) if err.kind() == StoreErrorKind::NotFound => false,
        Err(err) => panic!("head: {err}"),
    }
}

#[tokio::test]
async fn replay_rechecks_the_account_and_purge_deletes_the_photos() {
    let (ctx, backends) = memory_ctx(Output::Json).await;
    let alive = account(&backends, "acct-alive").await;
    let erased = account(&backends, "acct-erased").await;
    let alive_job = submit(&backends, &alive).await;
    let erased_job = submit(&backends, &erased).await;
    dead_letter_all(&backends, "delivery_limit").await;
    // Erased after its job died: a replay must not bring its photo back to life.
    let report = run(
        &ctx,
        &Command::Account(AccountCommand::Purge {
            id: erased.to_string(),
            reason: PurgeReason::ErasureRequest,
        }),
    )
    .await
    .expect("account purge");
    assert_eq!(
        report.json["media_left"],
        serde_json::json!([]),
        "{report:?}"
    );

    let listed = run(&ctx, &Command::Dlq(DlqCommand::List(args())))
        .await
        .expect("list");
    let letters = listed.json["dead_letters"]
        .as_array()
        .expect("letters")
        .clone();
    assert_eq!(letters.len(), 2, "{listed:?}");
    assert!(letters.iter().all(|l| l["reason"] == "delivery_limit"));
    let dead = QueueRef::Dead(pool());
    assert_eq!(
        backends.broker.depth(&dead).await.expect("depth").ready,
        2,
        "listing keeps them"
    );

    let replayed = run(&ctx, &Command::Dlq(DlqCommand::Replay(args())))
        .await
        .expect("replay");
    assert_eq!(replayed.json["replayed"], 1, "{replayed:?}");
    assert_eq!(
        replayed.json["discarded"][0]["job_id"],
        erased_job.job_id.to_string()
    );
    assert_eq!(backends.broker.depth(&dead).await.expect("depth").ready, 0);
    assert_eq!(
        backends
            .broker
            .depth(&QueueRef::Jobs(pool()))
            .await
            .expect("depth")
            .ready,
        1,
        "the live account's job runs again"
    );
    assert!(
        photo_stored(&backends, &alive_job).await,
        "its photo is still there to run"
    );
    assert!(!photo_stored(&backends, &erased_job).await);

    // It dies again; this time it is purged, photo and all.
    dead_letter_all(&backends, "model_error").await;
    let refused = run(
        &ctx,
        &Command::Dlq(DlqCommand::Purge {
            args: args(),
            yes: false,
        }),
    )
    .await
    .expect_err("purge needs --yes");
    assert_eq!(refused.exit, Exit::Refused);
    assert_eq!(
        backends.broker.depth(&dead).await.expect("depth").ready,
        1,
        "nothing purged"
    );
    let purged = run(
        &ctx,
        &Command::Dlq(DlqCommand::Purge {
            args: args(),
            yes: true,
        }),
    )
    .await
    .expect("purge");
    assert_eq!(purged.json["purged"], 1);
    assert_eq!(purged.json["photos_deleted"], 1);
    assert!(!photo_stored(&backends, &alive_job).await);
    assert_eq!(backends.broker.depth(&dead).await.expect("depth").ready, 0);

    let plan = run(&ctx, &Command::Janitor(JanitorCommand::Plan))
        .await
        .expect("plan");
    assert!(plan.json.get("rules").is_some(), "{plan:?}");
    let missing = run(
        &ctx,
        &Command::Job(JobCommand::Show {
            id: alive_job.job_id.to_string(),
        }),
    )
    .await
    .expect_err("the ledger never saw this job (it was published directly)");
    assert_eq!(missing.exit, Exit::NotFound);
}
