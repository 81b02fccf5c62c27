//! The ledger against real databases: SQLite in memory and the development PostgreSQL (a schema
//! per test). The same suite runs on both.

mod events;
mod fixture;
mod props;
mod suite;

use clipfleet_ledger::{Ledger, LedgerErrorKind};

on_both!(
    migrations_apply_twice,
    account_lifecycle,
    idempotency_keys,
    events_reach_the_expected_row,
    concurrent_consumers_agree,
    usage_records,
    usage_records_in_groups,
    deletion_audit_holds_no_personal_data,
    account_rows_purge,
    janitor_sweeps,
    operator_reads,
    session_lifecycle,
    session_photos_are_bounded_and_claimed_once,
);

#[tokio::test]
async fn an_unreachable_database_is_unavailable() {
    let err = Ledger::connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(err.kind(), LedgerErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_sqlite_file_keeps_the_ledger_across_connections() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/ledger.db", dir.path().display());
    let account = events::account_id("file");
    let ledger = Ledger::connect(&url).await?;
    ledger.migrate().await?;
    ledger.create_account(&events::account(&account)).await?;
    ledger.close().await;
    let reopened = Ledger::connect(&url).await?;
    reopened.migrate().await?;
    let found = reopened.get_account(&account).await?;
    anyhow::ensure!(found.id == account, "wrong account {found:?}");
    Ok(())
}
