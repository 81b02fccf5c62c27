//! What the operator console reads: newest jobs, attempts, per-minute rates, sweep records.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_ledger::NewSweep;

use super::{TTL, at};
use crate::events::{Outcome, account, account_id, batch, new_job, scenario};
use crate::fixture::{Fixture, START};

pub async fn operator_reads(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("ops");
    ledger.create_account(&account(&owner)).await?;
    let retried = ledger.insert_job(&new_job(&owner, None)).await?.job;
    f.clock.advance(Duration::from_millis(1));
    let failed = ledger.insert_job(&new_job(&owner, None)).await?.job;
    f.clock.advance(Duration::from_millis(1));
    let queued = ledger.insert_job(&new_job(&owner, None)).await?.job;

    let recent = ledger.recent_jobs(2).await.context("recent jobs")?;
    let ids: Vec<_> = recent.iter().map(|job| job.id).collect();
    ensure!(
        ids == [queued.id, failed.id],
        "newest first, limited: {ids:?}"
    );

    // Every job, in id order, a page at a time (ids are ULIDs: submission order here).
    let first = ledger.jobs_page(None, 2).await.context("first page")?;
    let rest = ledger
        .jobs_page(first.last().map(|job| job.id), 2)
        .await
        .context("second page")?;
    let paged: Vec<_> = first.iter().chain(&rest).map(|job| job.id).collect();
    let mut all = vec![retried.id, failed.id, queued.id];
    all.sort();
    ensure!(paged == all, "every job once, in id order: {paged:?}");
    ensure!(ledger.jobs_page(Some(all[2]), 2).await?.is_empty());

    // One retry then success (ends at +14 s), one failure (ends at +4 s): both in minute 0.
    ledger
        .apply_events(&batch(scenario(retried.id, 1, Outcome::Succeeded)), TTL)
        .await?;
    ledger
        .apply_events(&batch(scenario(failed.id, 0, Outcome::Failed)), TTL)
        .await?;
    let attempts = ledger.job_attempts(retried.id).await.context("attempts")?;
    let workers: Vec<_> = attempts.iter().map(|a| a.worker.as_str()).collect();
    ensure!(
        workers == ["worker-0", "worker-1"],
        "two attempts: {attempts:?}"
    );
    ensure!(attempts[0].started_at == at(1_000) && attempts[1].started_at == at(11_000));
    ensure!(ledger.job_attempts(queued.id).await?.is_empty());
    let stages = ledger.job_stages(retried.id).await.context("stages")?;
    let names: Vec<_> = stages.iter().map(|(stage, _)| stage.as_str()).collect();
    ensure!(
        names
            == [
                "queue_wait",
                "fetch",
                "batch_wait",
                "infer",
                "encode",
                "store"
            ],
        "the worker's stages in pipeline order: {stages:?}"
    );
    ensure!(
        ledger.job_stages(failed.id).await?.is_empty(),
        "no stages without a success"
    );

    let rates = ledger.ended_per_minute(START).await.context("rates")?;
    let by_status: BTreeMap<_, _> = rates.iter().map(|r| (r.status.as_str(), r)).collect();
    ensure!(rates.len() == 2, "one row per outcome: {rates:?}");
    let ok = by_status.get("succeeded").context("a succeeded row")?;
    ensure!(
        ok.count == 1 && ok.max_ms == 14_000 && ok.mean_ms == 14_000,
        "{ok:?}"
    );
    ensure!(ok.minute.unix_ms() == START.unix_ms() / 60_000 * 60_000);
    let bad = by_status.get("failed").context("a failed row")?;
    ensure!(bad.count == 1 && bad.max_ms == 4_000 - 1, "{bad:?}");
    ensure!(
        ledger.ended_per_minute(at(60_000)).await?.is_empty(),
        "nothing ended after the window starts"
    );

    let mut deleted = BTreeMap::new();
    deleted.insert("ended_job_input".to_owned(), 2);
    let old = NewSweep {
        started_at: START,
        took: Duration::from_millis(40),
        deleted: deleted.clone(),
        accounts_purged: 0,
        failures: 1,
        recovered: 0,
    };
    ledger.record_sweep(&old).await.context("record a sweep")?;
    let newer = NewSweep {
        started_at: at(60_000),
        ..old.clone()
    };
    ledger.record_sweep(&newer).await?;
    let sweeps = ledger.recent_sweeps(10).await.context("sweeps")?;
    ensure!(
        sweeps.len() == 2 && sweeps[0].sweep == newer && sweeps[1].sweep == old,
        "{sweeps:?}"
    );
    // A week later the first records are dropped as a new one is written.
    let later = NewSweep {
        started_at: at(8 * 24 * 3600 * 1000),
        deleted: BTreeMap::new(),
        ..old
    };
    ledger.record_sweep(&later).await?;
    let sweeps = ledger.recent_sweeps(10).await?;
    ensure!(
        sweeps.len() == 1 && sweeps[0].sweep == later,
        "old records dropped: {sweeps:?}"
    );
    Ok(())
}
