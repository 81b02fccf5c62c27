//! Jobs: idempotent insertion and the event state machine, alone and with concurrent consumers.

use anyhow::{Context, ensure};
use clipfleet_ledger::{JobStatus, LedgerErrorKind};
use clipfleet_proto::{ErrorCode, EventKind, JobId};

use super::{TTL, at, expect_kind};
use crate::events::{Outcome, account, account_id, batch, event, new_job, scenario};
use crate::fixture::{Fixture, START};

pub async fn idempotency_keys(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("idem");
    ledger
        .create_account(&account(&owner))
        .await
        .context("create account")?;

    let first = ledger
        .insert_job(&new_job(&owner, Some(("k1", "h1"))))
        .await
        .context("insert with key")?;
    ensure!(first.created && first.job.status == JobStatus::Queued);
    ensure!(first.job.submitted_at == START && first.job.attempts == 0);
    let retry = ledger
        .insert_job(&new_job(&owner, Some(("k1", "h1"))))
        .await
        .context("same key, same body")?;
    ensure!(
        !retry.created && retry.job == first.job,
        "retry made {retry:?}"
    );
    expect_kind(
        ledger
            .insert_job(&new_job(&owner, Some(("k1", "h2"))))
            .await,
        LedgerErrorKind::Conflict,
        "same key, other body",
    )?;

    let other = account_id("idem");
    ledger
        .create_account(&account(&other))
        .await
        .context("create other")?;
    let theirs = ledger
        .insert_job(&new_job(&other, Some(("k1", "h2"))))
        .await
        .context("same key, other account")?;
    ensure!(theirs.created, "keys are per account");

    let a = ledger
        .insert_job(&new_job(&owner, None))
        .await
        .context("no key")?;
    let b = ledger
        .insert_job(&new_job(&owner, None))
        .await
        .context("no key again")?;
    ensure!(a.created && b.created && a.job.id != b.job.id);

    let mut twice = new_job(&owner, None);
    twice.id = a.job.id;
    expect_kind(
        ledger.insert_job(&twice).await,
        LedgerErrorKind::Conflict,
        "id twice",
    )?;
    expect_kind(
        ledger
            .insert_job(&new_job(&account_id("ghost"), None))
            .await,
        LedgerErrorKind::NotFound,
        "job of an unknown account",
    )?;
    let mut empty_model = new_job(&owner, None);
    empty_model.model = String::new();
    expect_kind(
        ledger.insert_job(&empty_model).await,
        LedgerErrorKind::InvalidInput,
        "model",
    )?;
    expect_kind(
        ledger.get_job(JobId::generate()).await,
        LedgerErrorKind::NotFound,
        "get",
    )?;
    Ok(())
}

pub async fn events_reach_the_expected_row(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("ev");
    ledger
        .create_account(&account(&owner))
        .await
        .context("create account")?;
    let job = ledger
        .insert_job(&new_job(&owner, None))
        .await
        .context("insert")?
        .job
        .id;
    let events = scenario(job, 1, Outcome::Succeeded);
    let n = events.len();

    // Everything but the first `started`, in order; then that `started`, late.
    let outcome = ledger
        .apply_events(&batch(events[1..].to_vec()), TTL)
        .await
        .context("apply")?;
    ensure!(
        outcome.applied == n - 1 && outcome.unchanged == 0,
        "{outcome:?}"
    );
    let before = ledger.get_job(job).await.context("get")?;
    let late = ledger
        .apply_events(&batch(vec![events[0].clone()]), TTL)
        .await
        .context("late started")?;
    ensure!(
        late.applied == 1,
        "the late started is a new attempt: {late:?}"
    );
    let after = ledger.get_job(job).await.context("get after")?;
    ensure!(
        after.status == JobStatus::Succeeded,
        "late started overwrote: {after:?}"
    );
    ensure!(after.finished_at == before.finished_at && after.output_key == before.output_key);

    // The row, field by field.
    ensure!(
        after.started_at == Some(at(1_000)),
        "started_at {:?}",
        after.started_at
    );
    ensure!(
        after.finished_at == Some(at(14_000)),
        "finished_at {:?}",
        after.finished_at
    );
    ensure!(after.attempts == 2, "attempts {}", after.attempts);
    ensure!(
        after.progress_pct == Some(100),
        "progress {:?}",
        after.progress_pct
    );
    ensure!(after.input_deleted_at == Some(at(14_500)));
    ensure!(after.output_size == Some(361_000));
    ensure!(after.output_expires_at == Some(at(14_000).saturating_add(TTL)));
    ensure!(
        after.error_code == Some(ErrorCode::Transient),
        "{:?}",
        after.error_code
    );

    // Everything again: nothing changes.
    let again = ledger
        .apply_events(&batch(events), TTL)
        .await
        .context("again")?;
    ensure!(again.applied == 0 && again.unchanged == n, "{again:?}");
    ensure!(
        ledger.get_job(job).await? == after,
        "duplicates changed the row"
    );

    // A started long after the end, from a redelivery: still succeeded.
    let redelivered = event(job, 90_000, "worker-9", EventKind::Started);
    ledger
        .apply_events(&batch(vec![redelivered]), TTL)
        .await
        .context("redelivery")?;
    let last = ledger.get_job(job).await?;
    ensure!(last.status == JobStatus::Succeeded && last.finished_at == after.finished_at);

    // Unknown jobs and kinds are counted, not errors.
    let stray = ledger
        .apply_events(
            &batch(vec![
                event(JobId::generate(), 1, "w", EventKind::Started),
                event(job, 1, "w", EventKind::Unknown),
            ]),
            TTL,
        )
        .await
        .context("stray events")?;
    ensure!(
        stray.unknown_job == 1 && stray.unknown_kind == 1,
        "{stray:?}"
    );
    expect_kind(
        ledger.apply_events(&batch(Vec::new()), TTL).await,
        LedgerErrorKind::InvalidInput,
        "empty batch",
    )?;

    // fail_job: ends a queued job, leaves a terminal one alone.
    let queued = ledger.insert_job(&new_job(&owner, None)).await?.job.id;
    let failed = ledger
        .fail_job(queued, ErrorCode::Unavailable, "publish not confirmed")
        .await
        .context("fail queued")?;
    ensure!(failed.status == JobStatus::Failed && failed.finished_at == Some(START));
    ensure!(failed.error_code == Some(ErrorCode::Unavailable));
    let kept = ledger.fail_job(job, ErrorCode::Internal, "late").await?;
    ensure!(
        kept.status == JobStatus::Succeeded,
        "fail_job overwrote success"
    );
    Ok(())
}

pub async fn concurrent_consumers_agree(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("conc");
    ledger.create_account(&account(&owner)).await?;
    let reference = ledger.insert_job(&new_job(&owner, None)).await?.job.id;
    let mut jobs = Vec::new();
    for _ in 0..8 {
        jobs.push(ledger.insert_job(&new_job(&owner, None)).await?.job.id);
    }
    ledger
        .apply_events(&batch(scenario(reference, 2, Outcome::Succeeded)), TTL)
        .await
        .context("reference")?;
    // Four consumers, each with every job's events, in different orders and batchings.
    let mut tasks = Vec::new();
    for consumer in 0..4usize {
        let ledger = ledger.clone();
        let jobs = jobs.clone();
        tasks.push(tokio::spawn(async move {
            let mut events: Vec<_> = jobs
                .iter()
                .flat_map(|job| scenario(*job, 2, Outcome::Succeeded))
                .collect();
            let len = events.len();
            events.rotate_left(consumer * 5 % len);
            if consumer % 2 == 1 {
                events.reverse();
            }
            for chunk in events.chunks(3 + consumer) {
                ledger.apply_events(&batch(chunk.to_vec()), TTL).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await
            .context("consumer panicked")?
            .context("consumer")?;
    }
    let expected = ledger.get_job(reference).await?;
    for job in jobs {
        let mut row = ledger.get_job(job).await?;
        row.id = expected.id;
        row.input_key.clone_from(&expected.input_key);
        ensure!(
            row.output_key == Some(format!("outputs/acct/{job}.mp4")),
            "{row:?}"
        );
        row.output_key.clone_from(&expected.output_key);
        ensure!(row == expected, "job {job} differs:\n{row:?}\n{expected:?}");
    }
    Ok(())
}
