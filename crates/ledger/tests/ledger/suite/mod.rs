//! The ledger's behaviour, as plain async functions run on every database (`on_both!`). Each
//! step says what it checks, so a failure names it. Modules: `jobs` (insertion, events),
//! `records` (usage, deletion audit), `sessions` (personalisation sessions and their photos);
//! accounts and migrations here.

use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_ledger::{AccountStatus, LedgerErrorKind, PersonalFields};
use clipfleet_proto::Timestamp;
use sqlx::Row;

use crate::events::{account, account_id};
use crate::fixture::{Fixture, START};

mod jobs;
mod operations;
mod records;
mod sessions;
mod sweep;

pub use jobs::{concurrent_consumers_agree, events_reach_the_expected_row, idempotency_keys};
pub use operations::operator_reads;
pub use records::{
    account_rows_purge, deletion_audit_holds_no_personal_data, usage_records,
    usage_records_in_groups,
};
pub use sessions::{session_lifecycle, session_photos_are_bounded_and_claimed_once};
pub use sweep::janitor_sweeps;

/// The output TTL the suite applies events with.
pub const TTL: Duration = Duration::from_secs(24 * 3600);

pub fn at(offset_ms: u64) -> Timestamp {
    Timestamp::from_unix_ms(START.unix_ms() + offset_ms)
}

/// Asserts that `result` failed with `kind`.
pub fn expect_kind<T: std::fmt::Debug>(
    result: Result<T, clipfleet_ledger::LedgerError>,
    kind: LedgerErrorKind,
    step: &str,
) -> anyhow::Result<()> {
    match result {
        Err(err) if err.kind() == kind => Ok(()),
        other => anyhow::bail!("{step}: expected {kind:?}, got {other:?}"),
    }
}

pub async fn migrations_apply_twice(f: &Fixture) -> anyhow::Result<()> {
    f.ledger.migrate().await.context("second migrate")?;
    f.ledger.migrate().await.context("third migrate")?;
    let applied: i64 = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
        .fetch_one(f.ledger.pool())
        .await
        .context("count applied migrations")?
        .try_get("n")?;
    ensure!(applied == 4, "{applied} migrations recorded, expected 4");
    for table in [
        "accounts",
        "jobs",
        "job_attempts",
        "usage_records",
        "deletions",
        "janitor_sweeps",
        "sessions",
        "session_photos",
    ] {
        sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(f.ledger.pool())
            .await
            .with_context(|| format!("table {table} exists"))?;
    }
    f.ledger.ping().await.context("ping")?;
    let backend = match f.db {
        crate::fixture::Db::Sqlite => clipfleet_ledger::Backend::Sqlite,
        crate::fixture::Db::Postgres => clipfleet_ledger::Backend::Postgres,
    };
    ensure!(
        f.ledger.backend() == backend,
        "opened {:?}",
        f.ledger.backend()
    );
    Ok(())
}

pub async fn account_lifecycle(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let id = account_id("acct");
    let new = account(&id);
    let created = ledger.create_account(&new).await.context("create")?;
    ensure!(
        created.status == AccountStatus::Active,
        "created {created:?}"
    );
    ensure!(created.created_at == START && created.personal == new.personal);
    ensure!(
        ledger.get_account(&id).await.context("get")? == created,
        "get differs"
    );
    expect_kind(
        ledger.create_account(&new).await,
        LedgerErrorKind::Conflict,
        "create twice",
    )?;

    f.clock.advance(Duration::from_secs(60));
    let personal = PersonalFields {
        email: Some("ada@example.org".into()),
        ..new.personal.clone()
    };
    let updated = ledger
        .update_personal(&id, &personal)
        .await
        .context("update")?;
    ensure!(updated.personal == personal && updated.updated_at == at(60_000));

    let suspended = ledger
        .set_account_status(&id, AccountStatus::Suspended)
        .await
        .context("suspend")?;
    ensure!(suspended.status == AccountStatus::Suspended);
    ledger
        .set_account_status(&id, AccountStatus::Active)
        .await
        .context("reactivate")?;
    expect_kind(
        ledger
            .set_account_status(&id, AccountStatus::Terminated)
            .await,
        LedgerErrorKind::InvalidInput,
        "terminate through set_account_status",
    )?;
    let held = ledger.set_legal_hold(&id, true).await.context("hold")?;
    ensure!(held.legal_hold, "hold not set");

    let terminated = ledger.terminate_account(&id).await.context("terminate")?;
    ensure!(terminated.status == AccountStatus::Terminated);
    ensure!(terminated.terminated_at == Some(at(60_000)));
    f.clock.advance(Duration::from_secs(60));
    let again = ledger
        .terminate_account(&id)
        .await
        .context("terminate again")?;
    ensure!(
        again.terminated_at == Some(at(60_000)),
        "retention must count from the first termination: {:?}",
        again.terminated_at
    );
    expect_kind(
        ledger.set_account_status(&id, AccountStatus::Active).await,
        LedgerErrorKind::Conflict,
        "reactivate a terminated account",
    )?;
    let erased = ledger
        .request_erasure(&id)
        .await
        .context("request erasure")?;
    ensure!(erased.erasure_requested_at == Some(at(120_000)));

    let tomb = ledger.tombstone_account(&id).await.context("tombstone")?;
    ensure!(
        tomb.personal == PersonalFields::default(),
        "personal fields kept"
    );
    ensure!(tomb.birth_date.is_none() && tomb.tombstoned_at == Some(at(120_000)));
    expect_kind(
        ledger.update_personal(&id, &personal).await,
        LedgerErrorKind::Conflict,
        "personal data back on a tombstone",
    )?;

    let child = account_id("child");
    ledger
        .create_account(&account(&child))
        .await
        .context("create child")?;
    let flagged = ledger
        .flag_under_14(&child)
        .await
        .context("flag under 14")?;
    ensure!(flagged.under_14 && flagged.status == AccountStatus::Terminated);
    ensure!(
        flagged.erasure_requested_at.is_some(),
        "under 14 must request erasure"
    );

    let missing = account_id("missing");
    expect_kind(
        ledger.get_account(&missing).await,
        LedgerErrorKind::NotFound,
        "get missing",
    )?;
    expect_kind(
        ledger.terminate_account(&missing).await,
        LedgerErrorKind::NotFound,
        "terminate missing",
    )?;
    let mut bad = account(&account_id("bad"));
    bad.birth_date = Some("1990-13-01".into());
    expect_kind(
        ledger.create_account(&bad).await,
        LedgerErrorKind::InvalidInput,
        "bad date",
    )?;
    Ok(())
}
