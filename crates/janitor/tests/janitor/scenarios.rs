//! The retention promises, each a scenario run on every ledger × store pair (see `main.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use async_trait::async_trait;
use clipfleet_janitor::{ExecuteOptions, Policy, Rule};
use clipfleet_ledger::{JobStatus, LedgerErrorKind};
use clipfleet_proto::{AccountId, ErrorCode, JobId, Timestamp};
use clipfleet_store::{
    ByteStream, DeleteFailure, DeleteReport, ListPage, ObjectKey, ObjectMeta, ObjectStore,
    StoreError, StoreErrorKind,
};

use crate::fixture::{Fixture, default_policy, sweep};

const DAY: Duration = Duration::from_secs(24 * 3600);
const MINUTE: Duration = Duration::from_secs(60);

/// 2026-01-15T00:00:00Z: six calendar months later is 2026-07-15, 181 days on.
const JAN_15_2026: Timestamp = Timestamp::from_unix_ms(1_768_435_200_000);

/// A policy under which only the account rules can fire within a year.
fn accounts_only() -> Policy {
    let year = 400 * DAY;
    Policy {
        input_max_age: year,
        output_ttl: year,
        usage_max_age: year,
        orphan_grace: year,
        session_ttl: year,
        ..default_policy()
    }
}

async fn account_gone(f: &Fixture, id: &AccountId) -> anyhow::Result<bool> {
    match f.ledger.get_account(id).await {
        Ok(_) => Ok(false),
        Err(err) if err.kind() == LedgerErrorKind::NotFound => Ok(true),
        Err(err) => Err(err.into()),
    }
}

/// Day 179 after termination: kept. Day 182: purged (rows, objects, usage), audited without
/// personal data. A legal hold keeps its account whatever the day.
pub async fn account_retention_counts_calendar_months(f: &Fixture) -> anyhow::Result<()> {
    f.clock.set(JAN_15_2026);
    let janitor = f.janitor(accounts_only());
    let ended = f.account("ended", false).await?;
    let held = f.account("held", false).await?;
    let active = f.account("active", false).await?;
    let mut keys = Vec::new();
    for account in [&ended, &held, &active] {
        let job = f.job(account).await?;
        keys.push((account.clone(), ObjectKey::input(account, job)));
        let session = ObjectKey::new(format!("sessions/{account}/s1/lora.bin"))?;
        f.put(&session).await?;
        keys.push((account.clone(), session));
        f.ledger
            .record_usage(&clipfleet_ledger::NewUsage {
                account_id: Some(account.clone()),
                ip: "192.0.2.7".parse()?,
                device_id: Some("ios-1".into()),
                action: "job.submit".into(),
            })
            .await?;
    }
    f.ledger.terminate_account(&ended).await?;
    f.ledger.terminate_account(&held).await?;
    f.ledger.set_legal_hold(&held, true).await?;

    f.clock.set(JAN_15_2026.saturating_add(179 * DAY));
    let plan = janitor.plan().await?;
    ensure!(plan.actions.is_empty(), "day 179 plans {:?}", plan.actions);
    sweep(&janitor).await?;
    ensure!(!account_gone(f, &ended).await?, "purged on day 179");
    for (_, key) in &keys {
        ensure!(f.exists(key).await?, "{key} deleted on day 179");
    }

    f.clock.set(JAN_15_2026.saturating_add(182 * DAY));
    let plan = janitor.plan().await?;
    ensure!(
        plan.count(Rule::AccountRetention) == 1,
        "day 182 plans {:?}",
        plan.actions
    );
    ensure!(
        plan.kept
            .iter()
            .any(|kept| kept.subject == held.as_str() && kept.why == "legal_hold"),
        "the hold is not reported: {:?}",
        plan.kept
    );
    let report = sweep(&janitor).await?;
    ensure!(
        report.failures == 0 && report.accounts_purged == 1,
        "{report:?}"
    );
    ensure!(account_gone(f, &ended).await?, "not purged on day 182");
    ensure!(!account_gone(f, &held).await? && !account_gone(f, &active).await?);
    ensure!(
        f.ledger.list_usage(&held, 10).await?.len() == 1,
        "held usage touched"
    );
    for (account, key) in &keys {
        let expect_gone = account == &ended;
        ensure!(
            f.exists(key).await? != expect_gone,
            "{key}: gone = {}",
            !expect_gone
        );
        if expect_gone {
            let audit = f.audit(key.as_str()).await?;
            ensure!(
                audit == [("account_retention".to_owned(), 1, None)],
                "{key}: {audit:?}"
            );
        }
    }
    let rows = f.audit("ledger/jobs").await?;
    ensure!(
        rows == [("account_retention".to_owned(), 1, Some(1))],
        "jobs rows {rows:?}"
    );
    let rows = f.audit("ledger/usage_records").await?;
    ensure!(
        rows == [("account_retention".to_owned(), 1, Some(1))],
        "usage rows {rows:?}"
    );
    let text = f.audit_text().await?;
    for personal in ["ada@example.com", "Ada", "7946", "1990-04-01"] {
        ensure!(!text.contains(personal), "the audit holds {personal:?}");
    }
    // Idempotent: a second sweep on day 183 finds nothing more and writes nothing.
    f.advance(DAY);
    let again = sweep(&janitor).await?;
    ensure!(
        again.total_deleted() == 0 && again.failures == 0,
        "{again:?}"
    );
    ensure!(
        f.ledger.get_account(&held).await?.personal.email.is_some(),
        "held fields cleared"
    );
    Ok(())
}

/// Under 14 (flagged later, or at sign-up): purged in the same minute, a tombstone written so
/// workers drop queued jobs, late objects removed, the tombstone itself removed once no job of
/// the account can still run.
pub async fn under_14_is_purged_at_once(f: &Fixture) -> anyhow::Result<()> {
    let janitor = f.janitor(default_policy());
    let child = f.account("child", false).await?;
    let at_signup = f.account("signup", true).await?;
    let adult = f.account("adult", false).await?;
    let queued = f.job(&child).await?;
    let done = f.job(&child).await?;
    let video = f.succeed(&child, done).await?;
    let adult_job = f.job(&adult).await?;
    let signup_job = f.job(&at_signup).await?;
    f.ledger.flag_under_14(&child).await?;
    f.advance(Duration::from_secs(30));
    let report = sweep(&janitor).await?;
    ensure!(report.failures == 0, "{report:?}");
    ensure!(report.accounts_purged == 2, "{report:?}");
    for account in [&child, &at_signup] {
        ensure!(
            account_gone(f, account).await?,
            "{account} not purged within the minute"
        );
        ensure!(
            f.exists(&ObjectKey::tombstone(account)).await?,
            "no tombstone for {account}"
        );
    }
    for key in [
        ObjectKey::input(&child, queued),
        ObjectKey::input(&child, done),
        video.clone(),
        ObjectKey::input(&at_signup, signup_job),
    ] {
        ensure!(!f.exists(&key).await?, "{key} survived");
        let audit = f.audit(key.as_str()).await?;
        ensure!(
            audit == [("under_age".to_owned(), 1, None)],
            "{key}: {audit:?}"
        );
    }
    ensure!(
        f.exists(&ObjectKey::input(&adult, adult_job)).await?,
        "the adult's photo went"
    );
    ensure!(f.ledger.get_job(adult_job).await?.status == JobStatus::Queued);

    // A worker that was mid-job stores its video after the purge: removed next sweep; the
    // tombstone stays while a job could still run.
    let late = ObjectKey::output(&child, queued);
    f.put(&late).await?;
    f.advance(MINUTE);
    let report = sweep(&janitor).await?;
    ensure!(
        report.deleted.get(&Rule::ErasedAccountLeftovers) == Some(&1),
        "{report:?}"
    );
    ensure!(!f.exists(&late).await?, "late video survived");
    ensure!(
        f.exists(&ObjectKey::tombstone(&child)).await?,
        "tombstone removed too early"
    );

    f.advance(Duration::from_secs(2 * 3600));
    let report = sweep(&janitor).await?;
    ensure!(
        report.deleted.get(&Rule::TombstoneExpired) == Some(&2),
        "{report:?}"
    );
    ensure!(
        !f.exists(&ObjectKey::tombstone(&child)).await?,
        "tombstone kept forever"
    );
    Ok(())
}

/// A photo without a job row is deleted once older than the grace period, not before; a
/// young photo with a job stays.
pub async fn orphan_photo_waits_for_its_grace(f: &Fixture) -> anyhow::Result<()> {
    let janitor = f.janitor(default_policy());
    let account = f.account("orphans", false).await?;
    let orphan = ObjectKey::input(&account, JobId::generate());
    f.put(&orphan).await?;
    let job = f.job(&account).await?;
    sweep(&janitor).await?;
    f.advance(14 * MINUTE);
    sweep(&janitor).await?;
    ensure!(f.exists(&orphan).await?, "orphan deleted before its grace");
    f.advance(2 * MINUTE);
    let plan = janitor.plan().await?;
    ensure!(
        plan.count(Rule::OrphanPhoto) == 1 && plan.actions.len() == 1,
        "{:?}",
        plan.actions
    );
    let report = sweep(&janitor).await?;
    ensure!(
        report.deleted.get(&Rule::OrphanPhoto) == Some(&1),
        "{report:?}"
    );
    ensure!(!f.exists(&orphan).await?, "orphan kept after its grace");
    ensure!(f.audit(orphan.as_str()).await? == [("orphan".to_owned(), 1, None)]);
    ensure!(
        f.exists(&ObjectKey::input(&account, job)).await?,
        "a live job's photo went"
    );

    // The photo rules: an ended job's photo at once, a queued one at input_max_age (the job
    // then fails `expired`), a video after its TTL.
    let ended = f.job(&account).await?;
    let video = f.succeed(&account, ended).await?;
    let report = sweep(&janitor).await?;
    ensure!(
        report.deleted.get(&Rule::PhotoOfEndedJob) == Some(&1),
        "{report:?}"
    );
    ensure!(f.ledger.get_job(ended).await?.input_deleted_at.is_some());
    f.advance(Duration::from_secs(3600));
    let report = sweep(&janitor).await?;
    ensure!(
        report.deleted.get(&Rule::PhotoPastMaxAge) == Some(&1),
        "{report:?}"
    );
    let expired = f.ledger.get_job(job).await?;
    ensure!(
        expired.error_code == Some(ErrorCode::Expired) && expired.status.is_terminal(),
        "{expired:?}"
    );
    ensure!(f.exists(&video).await?, "video deleted before its TTL");
    f.advance(DAY);
    let report = sweep(&janitor).await?;
    ensure!(
        report.deleted.get(&Rule::VideoPastTtl) == Some(&1),
        "{report:?}"
    );
    ensure!(!f.exists(&video).await? && f.ledger.get_job(ended).await?.output_deleted_at.is_some());
    Ok(())
}

/// A fault injected into `delete_many`.
#[derive(Debug)]
enum Fault {
    /// Deletes this many keys, then never answers again: a process killed mid-sweep.
    DiesAfter(AtomicUsize),
    /// Refuses to delete this key.
    Refuses(ObjectKey),
}

/// The store, with a fault in `delete_many`; everything else passes through.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    fault: Fault,
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<(), StoreError> {
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StoreError> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        self.inner.list_page(prefix, continuation, max_keys).await
    }
    async fn check_connectivity(&self) -> Result<(), StoreError> {
        self.inner.check_connectivity().await
    }
    async fn still_stored(&self, keys: &[ObjectKey]) -> Result<Vec<ObjectKey>, StoreError> {
        self.inner.still_stored(keys).await
    }
    async fn purge_versions(&self, keys: &[ObjectKey]) -> DeleteReport {
        self.inner.purge_versions(keys).await
    }
    async fn delete_many(&self, keys: &[ObjectKey]) -> DeleteReport {
        match &self.fault {
            Fault::DiesAfter(budget) => {
                let left = budget.load(Ordering::SeqCst);
                let now = keys.len().min(left);
                budget.fetch_sub(now, Ordering::SeqCst);
                let report = self.inner.delete_many(&keys[..now]).await;
                if now < keys.len() {
                    std::future::pending::<()>().await;
                }
                report
            }
            Fault::Refuses(bad) => {
                let rest: Vec<ObjectKey> = keys.iter().filter(|k| *k != bad).cloned().collect();
                let mut report = self.inner.delete_many(&rest).await;
                if rest.len() < keys.len() {
                    report.failed.push(DeleteFailure {
                        key: bad.clone(),
                        kind: StoreErrorKind::Unauthorized,
                        message: "access denied (injected)".into(),
                    });
                }
                report
            }
        }
    }
}

async fn orphans(f: &Fixture, n: usize) -> anyhow::Result<Vec<ObjectKey>> {
    let account = f.account("crash", false).await?;
    let mut keys = Vec::new();
    for _ in 0..n {
        let key = ObjectKey::input(&account, JobId::generate());
        f.put(&key).await?;
        keys.push(key);
    }
    f.advance(DAY);
    Ok(keys)
}

/// A sweep killed after 12 of 30 deletions; the rerun finishes them all, and the audit holds
/// exactly one verified row per object.
pub async fn a_crash_mid_sweep_is_finished_by_the_next(f: &Fixture) -> anyhow::Result<()> {
    let keys = orphans(f, 30).await?;
    let small_batches = ExecuteOptions {
        batch_size: 5,
        in_flight: 2,
        ..ExecuteOptions::default()
    };
    let dying = Arc::new(Faulty {
        inner: f.store.clone(),
        fault: Fault::DiesAfter(AtomicUsize::new(12)),
    });
    let crashed = f.janitor_over(default_policy(), dying, small_batches.clone());
    let outcome = tokio::time::timeout(Duration::from_secs(5), crashed.sweep()).await;
    ensure!(outcome.is_err(), "the injected crash did not happen");
    drop(crashed);
    let left = f.keys().await?.len();
    ensure!(
        (18..30).contains(&left),
        "{left} objects left after the crash"
    );
    let pending = f.ledger.unverified_deletions(1000).await?.len();
    ensure!(pending > 0, "nothing was recorded before deleting");

    let janitor = f.janitor_over(default_policy(), f.store.clone(), small_batches);
    let report = sweep(&janitor).await?;
    ensure!(report.failures == 0, "{report:?}");
    ensure!(f.keys().await?.is_empty(), "objects survived the rerun");
    for key in &keys {
        let audit = f.audit(key.as_str()).await?;
        ensure!(
            audit == [("orphan".to_owned(), 1, None)],
            "{key}: {audit:?}"
        );
    }
    ensure!(f.ledger.unverified_deletions(1000).await?.is_empty());
    Ok(())
}

/// One object the store refuses to delete: the sweep goes on, counts it, leaves its record
/// unverified; the next sweep deletes it.
pub async fn one_bad_object_never_stops_the_sweep(f: &Fixture) -> anyhow::Result<()> {
    let keys = orphans(f, 10).await?;
    let bad = keys[3].clone();
    let refusing = Arc::new(Faulty {
        inner: f.store.clone(),
        fault: Fault::Refuses(bad.clone()),
    });
    let janitor = f.janitor_over(
        default_policy(),
        refusing,
        ExecuteOptions {
            batch_size: 4,
            ..ExecuteOptions::default()
        },
    );
    let report = sweep(&janitor).await?;
    ensure!(report.failures == 1, "{report:?}");
    ensure!(
        report.deleted.get(&Rule::OrphanPhoto) == Some(&9),
        "{report:?}"
    );
    ensure!(
        f.keys().await? == [bad.to_string()],
        "left: {:?}",
        f.keys().await?
    );
    ensure!(f.audit(bad.as_str()).await? == [("orphan".to_owned(), 0, None)]);
    let metrics = janitor.metrics().render();
    ensure!(
        metrics.contains("clipfleet_janitor_failures_total 1"),
        "{metrics}"
    );

    drop(janitor); // the lock goes with it
    let healed = f.janitor(default_policy());
    let report = sweep(&healed).await.context("the healed sweep")?;
    ensure!(
        report.failures == 0 && report.total_deleted() == 1,
        "{report:?}"
    );
    ensure!(f.keys().await?.is_empty());
    ensure!(f.audit(bad.as_str()).await? == [("orphan".to_owned(), 1, None)]);
    Ok(())
}

/// Two janitors on one ledger: one leads, the other does nothing until the first is gone.
pub async fn one_janitor_leads(f: &Fixture) -> anyhow::Result<()> {
    let first = f.janitor(default_policy());
    let second = f.janitor(default_policy());
    ensure!(matches!(
        first.sweep().await?,
        clipfleet_janitor::SweepOutcome::Swept(_)
    ));
    ensure!(matches!(
        second.sweep().await?,
        clipfleet_janitor::SweepOutcome::NotLeader
    ));
    drop(first);
    // PostgreSQL frees the lock when it notices the connection closed.
    sweep(&second).await?;
    Ok(())
}
