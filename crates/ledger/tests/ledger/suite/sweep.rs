//! What the janitor sweeps, and the marks it leaves.

use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_ledger::LedgerErrorKind;
use clipfleet_proto::{JobId, Timestamp};

use super::{TTL, at, expect_kind};
use crate::events::{Outcome, account, account_id, batch, event, new_job, scenario};
use crate::fixture::Fixture;

pub async fn janitor_sweeps(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("sweep");
    ledger.create_account(&account(&owner)).await?;
    let done = ledger.insert_job(&new_job(&owner, None)).await?.job.id;
    let events = scenario(done, 0, Outcome::Succeeded);
    ledger
        .apply_events(&batch(events), TTL)
        .await
        .context("events")?;
    f.clock.advance(Duration::from_secs(10));
    let running = ledger.insert_job(&new_job(&owner, None)).await?.job.id;
    let started = event(running, 20_000, "w", clipfleet_proto::EventKind::Started);
    ledger.apply_events(&batch(vec![started]), TTL).await?;

    // Videos: due only once expired, gone from the list once marked deleted.
    let expiry = at(4_000).saturating_add(TTL);
    let before = Timestamp::from_unix_ms(expiry.unix_ms() - 1);
    ensure!(
        ledger.expired_outputs(before, 10).await?.is_empty(),
        "due too early"
    );
    let due = ledger
        .expired_outputs(expiry, 10)
        .await
        .context("expired")?;
    ensure!(due.len() == 1 && due[0].id == done, "due {due:?}");
    f.clock.advance(Duration::from_secs(5));
    let marked = ledger
        .mark_output_deleted(done)
        .await
        .context("mark output")?;
    ensure!(marked.output_deleted_at == Some(at(15_000)), "{marked:?}");
    f.clock.advance(Duration::from_secs(5));
    let again = ledger.mark_output_deleted(done).await?;
    ensure!(
        again.output_deleted_at == Some(at(15_000)),
        "the first mark must stay"
    );
    ensure!(
        ledger.expired_outputs(expiry, 10).await?.is_empty(),
        "deleted still due"
    );
    let no_video = ledger.mark_output_deleted(running).await?;
    ensure!(
        no_video.output_deleted_at.is_none(),
        "marked a video that never existed"
    );

    // Photos: the succeeded job's is deleted (event); the running one's is stale once old.
    ensure!(
        ledger.stale_inputs(at(10_000), 10).await?.is_empty(),
        "stale too early"
    );
    let stale = ledger.stale_inputs(at(10_001), 10).await.context("stale")?;
    ensure!(
        stale.len() == 1 && stale[0].id == running,
        "stale {stale:?}"
    );
    let marked = ledger
        .mark_input_deleted(running)
        .await
        .context("mark input")?;
    ensure!(marked.input_deleted_at == Some(at(20_000)), "{marked:?}");
    ensure!(
        ledger.stale_inputs(at(10_001), 10).await?.is_empty(),
        "deleted still stale"
    );
    expect_kind(
        ledger.mark_input_deleted(JobId::generate()).await,
        LedgerErrorKind::NotFound,
        "mark an unknown job",
    )?;

    // Accounts: terminated before the cutoff or erasure requested; never under legal hold.
    let ended = account_id("ended");
    let erased = account_id("erased");
    let held = account_id("held");
    for id in [&ended, &erased, &held] {
        ledger.create_account(&account(id)).await?;
    }
    ledger.terminate_account(&ended).await?;
    ledger.terminate_account(&held).await?;
    ledger.set_legal_hold(&held, true).await?;
    f.clock.advance(Duration::from_secs(60));
    ledger.request_erasure(&erased).await?;
    let ids = |accounts: Vec<clipfleet_ledger::Account>| -> Vec<_> {
        accounts.into_iter().map(|a| a.id).collect()
    };
    let early = ids(ledger.accounts_due_for_purge(at(20_000), 10).await?);
    ensure!(early == [erased.clone()], "before the cutoff: {early:?}");
    let late = ids(ledger.accounts_due_for_purge(at(20_001), 10).await?);
    ensure!(late == [ended, erased], "after the cutoff: {late:?}");
    Ok(())
}
