//! The executor: applies a plan. Every deletion is first recorded in the audit, unverified
//! (a write-ahead record deduplicated by rule, subject and target), then deleted in batches
//! (`delete_many`: 1,000 keys per S3 request, several batches in flight), versions purged on a
//! versioned bucket, verified gone (`still_stored`, once for all batches: one listing per key
//! prefix on S3), and only then confirmed in the audit and marked in the ledger. A crash at any point leaves either nothing, or an unverified record
//! that the next sweep confirms once it finds the thing gone (or re-plans, finds the record
//! already there, and finishes): no deletion goes unrecorded, none is recorded twice.
//!
//! One bad object (a refused delete, a failed check) fails only its own batch's keys: logged,
//! counted, and retried by the next sweep, which plans it again.

use std::collections::{BTreeMap, BTreeSet};

use clipfleet_ledger::{DeletionReason, Ledger, LedgerErrorKind, NewDeletion, SubjectKind};
use clipfleet_proto::{ErrorCode, JobId, Timestamp};
use clipfleet_store::{DeleteFailure, ObjectKey, ObjectStore, StoreErrorKind, body_from_bytes};
use clipfleet_telemetry::pseudonym;
use futures_util::{StreamExt, stream};
use tracing::{info, warn};

use crate::error::JanitorError;
use crate::plan::{AccountPurge, Action, AfterDelete, ObjectDeletion, Plan, Rule, UsageExpiry};

/// Audit targets for table rows (object keys never start with `ledger/`).
const ROWS_TARGET_PREFIX: &str = "ledger/";

/// How the executor works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecuteOptions {
    /// Keys per batch: one audit insert, one `delete_many` (one S3 `DeleteObjects` at 1,000).
    pub batch_size: usize,
    /// Batches in flight at once.
    pub in_flight: usize,
    /// Who the audit says deleted (`janitor`).
    pub actor: String,
}

impl Default for ExecuteOptions {
    fn default() -> Self {
        ExecuteOptions {
            batch_size: 1000,
            in_flight: 4,
            actor: "janitor".to_owned(),
        }
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects verified gone and rows deleted, by rule.
    pub deleted: BTreeMap<Rule, u64>,
    /// Accounts whose rows are gone.
    pub accounts_purged: u64,
    /// Usage records deleted.
    pub usage_rows: u64,
    /// Objects or steps that failed (retried by the next sweep).
    pub failures: u64,
    /// Unverified audit records of an earlier, interrupted sweep now confirmed.
    pub recovered: u64,
}

impl SweepReport {
    fn add(&mut self, rule: Rule, n: u64) {
        if n > 0 {
            *self.deleted.entry(rule).or_default() += n;
        }
    }

    /// Objects and rows deleted in all.
    pub fn total_deleted(&self) -> u64 {
        self.deleted.values().sum()
    }
}

/// Applies plans to a ledger and a store.
#[derive(Debug)]
pub struct Executor<'a> {
    ledger: &'a Ledger,
    store: &'a dyn ObjectStore,
    options: ExecuteOptions,
}

fn rows_deletion(account: &str, table: &str, reason: DeletionReason, actor: &str) -> NewDeletion {
    NewDeletion {
        subject_kind: SubjectKind::Account,
        subject_id: account.to_owned(),
        target: format!("{ROWS_TARGET_PREFIX}{table}"),
        reason,
        actor: actor.to_owned(),
        verified: false,
    }
}

fn note_failure(failed: &mut BTreeSet<ObjectKey>, failure: DeleteFailure, what: &str) {
    warn!(key = %failure.key.redacted(), kind = ?failure.kind, message = %failure.message, "{what} failed");
    failed.insert(failure.key);
}

impl<'a> Executor<'a> {
    /// An executor over `ledger` and `store`.
    pub fn new(ledger: &'a Ledger, store: &'a dyn ObjectStore, options: ExecuteOptions) -> Self {
        Executor {
            ledger,
            store,
            options,
        }
    }

    /// Applies `plan`: first confirms what an interrupted sweep left unverified, then account
    /// purges, object deletions, usage expiry. Never fails as a whole: failures are counted.
    pub async fn execute(&self, plan: &Plan) -> SweepReport {
        let mut report = SweepReport::default();
        self.recover(&mut report).await;
        let mut objects: Vec<&ObjectDeletion> = Vec::new();
        for action in &plan.actions {
            match action {
                Action::PurgeAccount(purge) => self.purge_account(purge, &mut report).await,
                Action::DeleteObject(deletion) => objects.push(deletion),
                Action::ExpireUsage(expiry) => self.expire_usage(expiry, &mut report).await,
            }
        }
        let (deleted, failures) = self.delete_objects(&objects).await;
        for (rule, n) in deleted {
            report.add(rule, n);
        }
        report.failures += failures;
        report
    }

    fn intent(&self, deletion: &ObjectDeletion) -> NewDeletion {
        NewDeletion {
            subject_kind: deletion.subject_kind,
            subject_id: deletion.subject_id.clone(),
            target: deletion.key.to_string(),
            reason: deletion.rule.reason(),
            actor: self.options.actor.clone(),
            verified: false,
        }
    }

    /// Deletes objects in batches, several in flight; returns (verified gone by rule, failed).
    /// Three phases: record and delete each batch; verify all of them at once (on S3 one
    /// listing per key prefix for the whole sweep, not per batch); confirm and mark.
    pub async fn delete_objects(&self, objects: &[&ObjectDeletion]) -> (BTreeMap<Rule, u64>, u64) {
        let batch_size = self.options.batch_size.max(1);
        // The batch futures are made up front: a stream holding the chunking closure would
        // make the sweep's future `Send` only for one lifetime, so it could not be spawned.
        let batches: Vec<_> = objects
            .chunks(batch_size)
            .map(|batch| self.record_and_delete(batch))
            .collect();
        let mut batches = stream::iter(batches).buffer_unordered(self.options.in_flight.max(1));
        let mut failed: BTreeSet<ObjectKey> = BTreeSet::new();
        while let Some(batch_failed) = batches.next().await {
            failed.extend(batch_failed);
        }
        let attempted: Vec<ObjectKey> = objects
            .iter()
            .map(|d| d.key.clone())
            .filter(|key| !failed.contains(key))
            .collect();
        match self.store.still_stored(&attempted).await {
            Ok(still) => {
                for key in still {
                    warn!(key = %key.redacted(), "object still stored after its delete");
                    failed.insert(key);
                }
            }
            Err(err) => {
                warn!(error = %err, keys = attempted.len(), "verifying deletions failed");
                failed.extend(attempted);
            }
        }
        let gone: Vec<&ObjectDeletion> = objects
            .iter()
            .copied()
            .filter(|d| !failed.contains(&d.key))
            .collect();
        let mut failures = (objects.len() - gone.len()) as u64;
        let mut deleted: BTreeMap<Rule, u64> = BTreeMap::new();
        for chunk in gone.chunks(batch_size) {
            let dedup: Vec<String> = chunk.iter().map(|d| self.intent(d).dedup_key()).collect();
            if let Err(err) = self.ledger.confirm_deletions(&dedup, None).await {
                // The objects are gone; their records stay unverified until the next sweep's
                // recovery confirms them.
                warn!(error = %err, keys = chunk.len(), "confirming deletions failed");
                failures += chunk.len() as u64;
                continue;
            }
            failures += self.mark(chunk).await;
            for deletion in chunk {
                *deleted.entry(deletion.rule).or_default() += 1;
            }
        }
        (deleted, failures)
    }

    /// One batch: record, delete, purge versions. Returns the keys that failed (all of them
    /// when the records could not be written: nothing is deleted unrecorded).
    async fn record_and_delete(&self, batch: &[&ObjectDeletion]) -> BTreeSet<ObjectKey> {
        let keys: Vec<ObjectKey> = batch.iter().map(|d| d.key.clone()).collect();
        let intents: Vec<NewDeletion> = batch.iter().map(|d| self.intent(d)).collect();
        if let Err(err) = self.ledger.record_deletion_intents(&intents).await {
            warn!(error = %err, keys = keys.len(), "recording deletions failed: batch left for the next sweep");
            return keys.into_iter().collect();
        }
        let mut failed: BTreeSet<ObjectKey> = BTreeSet::new();
        for failure in self.store.delete_many(&keys).await.failed {
            note_failure(&mut failed, failure, "delete");
        }
        let attempted: Vec<ObjectKey> = keys
            .iter()
            .filter(|k| !failed.contains(*k))
            .cloned()
            .collect();
        for failure in self.store.purge_versions(&attempted).await.failed {
            note_failure(&mut failed, failure, "delete versions");
        }
        failed
    }

    /// Records in the ledger what is gone; returns how many steps failed.
    async fn mark(&self, gone: &[&ObjectDeletion]) -> u64 {
        let mut inputs: Vec<JobId> = Vec::new();
        let mut outputs: Vec<JobId> = Vec::new();
        let mut expire: Vec<JobId> = Vec::new();
        for deletion in gone {
            match deletion.then {
                AfterDelete::Nothing => {}
                AfterDelete::InputDeleted(id) => inputs.push(id),
                AfterDelete::InputDeletedJobExpired(id) => {
                    inputs.push(id);
                    expire.push(id);
                }
                AfterDelete::OutputDeleted(id) => outputs.push(id),
            }
        }
        let mut failures = 0;
        if let Err(err) = self.ledger.mark_inputs_deleted(&inputs).await {
            warn!(error = %err, jobs = inputs.len(), "marking photos deleted failed");
            failures += 1;
        }
        if let Err(err) = self.ledger.mark_outputs_deleted(&outputs).await {
            warn!(error = %err, jobs = outputs.len(), "marking videos deleted failed");
            failures += 1;
        }
        for id in expire {
            let message = "photo deleted at input_max_age before the job ran";
            if let Err(err) = self.ledger.fail_job(id, ErrorCode::Expired, message).await {
                warn!(job_id = %id, error = %err, "expiring a queued job failed");
                failures += 1;
            }
        }
        failures
    }

    /// Purges one account: tombstone (immediate purges), personal fields, objects, rows. Each
    /// step is idempotent; a failure leaves the rest to the next sweep.
    async fn purge_account(&self, purge: &AccountPurge, report: &mut SweepReport) {
        match self.try_purge_account(purge, report).await {
            Ok(()) => {
                report.accounts_purged += 1;
                info!(account = %pseudonym(purge.account.as_str()), rule = purge.rule.as_str(), "account purged");
            }
            Err(err) => {
                report.failures += 1;
                warn!(account = %pseudonym(purge.account.as_str()), rule = purge.rule.as_str(), error = %err, "account purge incomplete");
            }
        }
    }

    async fn try_purge_account(
        &self,
        purge: &AccountPurge,
        report: &mut SweepReport,
    ) -> Result<(), JanitorError> {
        let id = &purge.account;
        match self.ledger.get_account(id).await {
            Ok(account) if account.legal_hold => {
                return Err(JanitorError::new(
                    crate::JanitorErrorKind::Internal,
                    "legal hold set since the plan: purge skipped",
                ));
            }
            Ok(_) => {}
            Err(err) if err.kind() == LedgerErrorKind::NotFound => {}
            Err(err) => return Err(JanitorError::ledger("get account", err)),
        }
        if purge.tombstone {
            let tombstone = ObjectKey::tombstone(id);
            match self.store.head(&tombstone).await {
                Ok(_) => {}
                Err(err) if err.kind() == StoreErrorKind::NotFound => self
                    .store
                    .put(&tombstone, body_from_bytes(Vec::new()))
                    .await
                    .map_err(|err| JanitorError::store("write tombstone", err))?,
                Err(err) => return Err(JanitorError::store("check tombstone", err)),
            }
        }
        match self.ledger.tombstone_account(id).await {
            Ok(_) => {}
            Err(err) if err.kind() == LedgerErrorKind::NotFound => {}
            Err(err) => return Err(JanitorError::ledger("clear personal fields", err)),
        }
        let objects: Vec<ObjectDeletion> = purge
            .keys
            .iter()
            .map(|key| ObjectDeletion {
                rule: purge.rule,
                key: key.clone(),
                subject_kind: SubjectKind::Account,
                subject_id: id.to_string(),
                age: purge.age,
                then: AfterDelete::Nothing,
            })
            .collect();
        let refs: Vec<&ObjectDeletion> = objects.iter().collect();
        let (deleted, failures) = self.delete_objects(&refs).await;
        for (rule, n) in deleted {
            report.add(rule, n);
        }
        if failures > 0 {
            report.failures += failures;
            return Err(JanitorError::new(
                crate::JanitorErrorKind::Unavailable,
                format!("{failures} objects not deleted: rows kept for the next sweep"),
            ));
        }
        let reason = purge.rule.reason();
        let actor = &self.options.actor;
        let tables = ["jobs", "usage_records", "accounts"];
        let intents: Vec<NewDeletion> = tables
            .iter()
            .map(|table| rows_deletion(id.as_str(), table, reason, actor))
            .collect();
        self.ledger
            .record_deletion_intents(&intents)
            .await
            .map_err(|err| JanitorError::ledger("record row deletions", err))?;
        let counts = match self.ledger.delete_account(id).await {
            Ok(rows) => [Some(rows.jobs), Some(rows.usage_records), Some(1)],
            Err(err) if err.kind() == LedgerErrorKind::NotFound => [None, None, None],
            Err(err) => return Err(JanitorError::ledger("delete account rows", err)),
        };
        for (intent, count) in intents.iter().zip(counts) {
            self.ledger
                .confirm_deletions(&[intent.dedup_key()], count)
                .await
                .map_err(|err| JanitorError::ledger("confirm row deletions", err))?;
            report.add(purge.rule, count.unwrap_or(0));
        }
        Ok(())
    }

    async fn expire_usage(&self, expiry: &UsageExpiry, report: &mut SweepReport) {
        let intent = NewDeletion {
            subject_kind: SubjectKind::Usage,
            subject_id: format!("before-{}", expiry.before.unix_ms()),
            target: format!("{ROWS_TARGET_PREFIX}usage_records"),
            reason: DeletionReason::UsageMaxAge,
            actor: self.options.actor.clone(),
            verified: false,
        };
        let done = async {
            self.ledger
                .record_deletion_intents(std::slice::from_ref(&intent))
                .await?;
            let rows = self.ledger.expire_usage(expiry.before).await?;
            self.ledger
                .confirm_deletions(&[intent.dedup_key()], Some(rows))
                .await?;
            Ok::<u64, clipfleet_ledger::LedgerError>(rows)
        };
        match done.await {
            Ok(rows) => {
                report.usage_rows += rows;
                report.add(Rule::UsagePastMaxAge, rows);
            }
            Err(err) => {
                report.failures += 1;
                warn!(error = %err, "expiring usage records failed");
            }
        }
    }

    /// Confirms the unverified records of an interrupted sweep whose subject is now gone.
    async fn recover(&self, report: &mut SweepReport) {
        for _ in 0..10 {
            let pending = match self.ledger.unverified_deletions(1000).await {
                Ok(pending) if !pending.is_empty() => pending,
                Ok(_) => return,
                Err(err) => {
                    warn!(error = %err, "listing unverified deletions failed");
                    report.failures += 1;
                    return;
                }
            };
            let mut objects: Vec<(ObjectKey, String)> = Vec::new();
            let mut gone: Vec<String> = Vec::new();
            for record in &pending {
                let deletion = &record.deletion;
                let dedup = deletion.dedup_key();
                if let Some(table) = deletion.target.strip_prefix(ROWS_TARGET_PREFIX) {
                    if self.rows_gone(deletion, table).await {
                        gone.push(dedup);
                    }
                } else if let Ok(key) = ObjectKey::new(deletion.target.as_str()) {
                    objects.push((key, dedup));
                }
            }
            let keys: Vec<ObjectKey> = objects.iter().map(|(key, _)| key.clone()).collect();
            match self.store.still_stored(&keys).await {
                Ok(still) => {
                    let still: BTreeSet<ObjectKey> = still.into_iter().collect();
                    gone.extend(
                        objects
                            .into_iter()
                            .filter(|(key, _)| !still.contains(key))
                            .map(|(_, dedup)| dedup),
                    );
                }
                Err(err) => warn!(error = %err, "verifying earlier deletions failed"),
            }
            match self.ledger.confirm_deletions(&gone, None).await {
                Ok(0) => return,
                Ok(n) => report.recovered += n,
                Err(err) => {
                    warn!(error = %err, "confirming earlier deletions failed");
                    report.failures += 1;
                    return;
                }
            }
        }
    }

    async fn rows_gone(&self, deletion: &NewDeletion, table: &str) -> bool {
        match (deletion.subject_kind, table) {
            (SubjectKind::Account, _) => {
                let Ok(id) = clipfleet_proto::AccountId::new(deletion.subject_id.as_str()) else {
                    return false;
                };
                matches!(self.ledger.get_account(&id).await, Err(err) if err.kind() == LedgerErrorKind::NotFound)
            }
            (SubjectKind::Usage, "usage_records") => {
                let Some(ms) = deletion
                    .subject_id
                    .strip_prefix("before-")
                    .and_then(|ms| ms.parse::<u64>().ok())
                else {
                    return false;
                };
                matches!(
                    self.ledger.usage_before(Timestamp::from_unix_ms(ms)).await,
                    Ok((0, _))
                )
            }
            _ => false,
        }
    }
}
