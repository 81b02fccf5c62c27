//! What the janitor's retention engine reads and writes beyond `sweep.rs`: the candidates of
//! each rule, paged by keyset so a plan can walk a large table without marking anything; the
//! deletion audit used as a write-ahead log (a row recorded unverified before the deletion,
//! confirmed once the thing is found gone, deduplicated so a rerun after a crash writes no
//! second row); and batched marks.

use clipfleet_proto::{AccountId, JobId, Timestamp};
use sqlx::Row;

use crate::account::{ACCOUNT_COLUMNS, Account};
use crate::audit::{Deletion, NewDeletion};
use crate::error::{LedgerError, sqlx_err};
use crate::job::{JOB_COLUMNS, Job, NOT_AN_ADAPTER};
use crate::ledger::{Ledger, from_ms, to_ms};
use crate::usage::MAX_LIST_LIMIT;

/// Rows written by one multi-row `INSERT` (8 parameters each: well under both databases'
/// parameter limits).
const INSERT_CHUNK: usize = 200;

/// Ids in one `IN (…)` list.
const IN_CHUNK: usize = 1000;

/// Statuses no event moves a job out of, as SQL.
const TERMINAL: &str = "('succeeded', 'failed', 'expired', 'cancelled')";

/// `$first, $first+1, …` for `count` parameters.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a keyset-paged job listing resumes: after this (instant, id).
pub type JobCursor = Option<(Timestamp, JobId)>;

fn cursor_parts(after: &JobCursor) -> Result<(i64, String), LedgerError> {
    Ok(match after {
        Some((at, id)) => (to_ms(*at)?, id.to_string()),
        None => (-1, String::new()),
    })
}

impl NewDeletion {
    /// The audit row's identity: rule, subject and target. The same deletion recorded twice
    /// (a sweep rerun after a crash) finds the first row.
    pub fn dedup_key(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.reason.as_str(),
            self.subject_kind.as_str(),
            self.subject_id,
            self.target
        )
    }
}

impl Ledger {
    /// Records deletions about to happen, unverified, each under its [`NewDeletion::dedup_key`];
    /// one already recorded is left as it is. Returns how many rows were new.
    pub async fn record_deletion_intents(
        &self,
        intents: &[NewDeletion],
    ) -> Result<u64, LedgerError> {
        let now = to_ms(self.now())?;
        let mut written = 0;
        for chunk in intents.chunks(INSERT_CHUNK) {
            let mut values = Vec::with_capacity(chunk.len());
            for (row, intent) in chunk.iter().enumerate() {
                intent.validate()?;
                values.push(format!("({}, 0)", placeholders(row * 8 + 1, 8)));
            }
            let sql = format!(
                "INSERT INTO deletions (id, subject_kind, subject_id, target, reason, at, actor, \
                 dedup_key, verified) VALUES {} ON CONFLICT (dedup_key) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for intent in chunk {
                query = query
                    .bind(ulid::Ulid::new().to_string())
                    .bind(intent.subject_kind.as_str())
                    .bind(intent.subject_id.clone())
                    .bind(intent.target.clone())
                    .bind(intent.reason.as_str())
                    .bind(now)
                    .bind(intent.actor.clone())
                    .bind(intent.dedup_key());
            }
            written += query
                .execute(&self.pool)
                .await
                .map_err(sqlx_err("record deletion intents"))?
                .rows_affected();
        }
        Ok(written)
    }

    /// Marks recorded deletions verified, now, with `row_count` when rows were deleted. A row
    /// already verified keeps its instant. Returns how many rows changed.
    pub async fn confirm_deletions(
        &self,
        dedup_keys: &[String],
        row_count: Option<u64>,
    ) -> Result<u64, LedgerError> {
        let now = to_ms(self.now())?;
        let count = row_count
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
            .unwrap_or(-1);
        let mut changed = 0;
        for chunk in dedup_keys.chunks(IN_CHUNK) {
            let sql = format!(
                "UPDATE deletions SET verified = 1, at = $1, \
                 row_count = CASE WHEN $2 < 0 THEN row_count ELSE $2 END \
                 WHERE verified = 0 AND dedup_key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(now).bind(count);
            for key in chunk {
                query = query.bind(key.as_str());
            }
            changed += query
                .execute(&self.pool)
                .await
                .map_err(sqlx_err("confirm deletions"))?
                .rows_affected();
        }
        Ok(changed)
    }

    /// Deletions recorded but not yet verified (a sweep that crashed between recording and
    /// checking), oldest first, at most `limit` (≤ 1000).
    pub async fn unverified_deletions(&self, limit: u32) -> Result<Vec<Deletion>, LedgerError> {
        sqlx::query_as::<_, Deletion>(
            "SELECT id, subject_kind, subject_id, target, reason, at, actor, verified \
             FROM deletions WHERE verified = 0 AND dedup_key IS NOT NULL \
             ORDER BY at, id LIMIT $1",
        )
        .bind(i64::from(limit.min(MAX_LIST_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list unverified deletions"))
    }

    /// Records, now, that these jobs' photos are gone (earlier records stay).
    pub async fn mark_inputs_deleted(&self, ids: &[JobId]) -> Result<u64, LedgerError> {
        self.mark_many(ids, "input_deleted_at", "1 = 1").await
    }

    /// Records, now, that these jobs' videos are gone (earlier records stay).
    pub async fn mark_outputs_deleted(&self, ids: &[JobId]) -> Result<u64, LedgerError> {
        self.mark_many(ids, "output_deleted_at", "output_key IS NOT NULL")
            .await
    }

    async fn mark_many(
        &self,
        ids: &[JobId],
        column: &'static str,
        guard: &'static str,
    ) -> Result<u64, LedgerError> {
        let now = to_ms(self.now())?;
        let mut changed = 0;
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "UPDATE jobs SET {column} = $1 WHERE ({guard}) AND {column} IS NULL \
                 AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(now);
            for id in chunk {
                query = query.bind(id.to_string());
            }
            changed += query
                .execute(&self.pool)
                .await
                .map_err(sqlx_err("mark deleted"))?
                .rows_affected();
        }
        Ok(changed)
    }

    /// Jobs whose photo is recorded as present and that are terminal or were submitted before
    /// `submitted_before`, by (submitted_at, id) after `after`, at most `limit` (≤ 1000).
    pub async fn jobs_with_input_due(
        &self,
        submitted_before: Timestamp,
        after: &JobCursor,
        limit: u32,
    ) -> Result<Vec<Job>, LedgerError> {
        let (at, id) = cursor_parts(after)?;
        sqlx::query_as::<_, Job>(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE input_deleted_at IS NULL \
             AND (status IN {TERMINAL} OR submitted_at < $1) \
             AND (submitted_at > $2 OR (submitted_at = $2 AND id > $3)) \
             ORDER BY submitted_at, id LIMIT $4"
        ))
        .bind(to_ms(submitted_before)?)
        .bind(at)
        .bind(id)
        .bind(i64::from(limit.min(MAX_LIST_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list jobs with a photo due"))
    }

    /// Jobs whose video is recorded as present and either expired at or before `expired_by`
    /// or finished before `finished_before`, by (output_expires_at, id) after `after`, at most
    /// `limit` (≤ 1000). A `personalize` job's output is its session's adapter: it goes with
    /// the session (its end, its TTL, the account's erasure), never by the output TTL, so such
    /// jobs are not listed.
    pub async fn jobs_with_output_due(
        &self,
        expired_by: Timestamp,
        finished_before: Timestamp,
        after: &JobCursor,
        limit: u32,
    ) -> Result<Vec<Job>, LedgerError> {
        let (at, id) = cursor_parts(after)?;
        sqlx::query_as::<_, Job>(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE output_key IS NOT NULL \
             AND output_deleted_at IS NULL AND {NOT_AN_ADAPTER} \
             AND (output_expires_at <= $1 OR finished_at < $2) \
             AND (COALESCE(output_expires_at, 0) > $3 \
             OR (COALESCE(output_expires_at, 0) = $3 AND id > $4)) \
             ORDER BY COALESCE(output_expires_at, 0), id LIMIT $5"
        ))
        .bind(to_ms(expired_by)?)
        .bind(to_ms(finished_before)?)
        .bind(at)
        .bind(id)
        .bind(i64::from(limit.min(MAX_LIST_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list jobs with a video due"))
    }

    /// Accounts a retention rule may apply to: erasure requested, flagged under 14, or
    /// terminated before `terminated_before`, legal holds included (the rules say why they are
    /// kept). By id after `after`, at most `limit` (≤ 1000).
    pub async fn accounts_for_review(
        &self,
        terminated_before: Timestamp,
        after: Option<&AccountId>,
        limit: u32,
    ) -> Result<Vec<Account>, LedgerError> {
        sqlx::query_as::<_, Account>(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE (erasure_requested_at IS NOT NULL \
             OR under_14 = 1 OR (status = 'terminated' AND terminated_at < $1)) \
             AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(to_ms(terminated_before)?)
        .bind(after.map_or("", AccountId::as_str))
        .bind(i64::from(limit.min(MAX_LIST_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list accounts for review"))
    }

    /// Accounts under legal hold (few: a court's or a regulator's order), at most `limit`.
    pub async fn accounts_on_legal_hold(&self, limit: u32) -> Result<Vec<AccountId>, LedgerError> {
        let rows = sqlx::query("SELECT id FROM accounts WHERE legal_hold = 1 ORDER BY id LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_err("list accounts on legal hold"))?;
        let mut held = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id").map_err(sqlx_err("read account id"))?;
            if let Ok(id) = AccountId::new(id) {
                held.push(id);
            }
        }
        Ok(held)
    }

    /// The jobs among `ids` the ledger has.
    pub async fn jobs_by_ids(&self, ids: &[JobId]) -> Result<Vec<Job>, LedgerError> {
        let mut found = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query_as::<_, Job>(&sql);
            for id in chunk {
                query = query.bind(id.to_string());
            }
            found.extend(
                query
                    .fetch_all(&self.pool)
                    .await
                    .map_err(sqlx_err("get jobs by id"))?,
            );
        }
        Ok(found)
    }

    /// Of `ids`, the accounts the ledger has, and of those, the ones with a job still queued
    /// or running.
    pub async fn accounts_and_live_jobs(
        &self,
        ids: &[AccountId],
    ) -> Result<(Vec<AccountId>, Vec<AccountId>), LedgerError> {
        let mut known = Vec::new();
        let mut live = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let list = placeholders(1, chunk.len());
            for (sql, into) in [
                (
                    format!("SELECT id FROM accounts WHERE id IN ({list})"),
                    &mut known,
                ),
                (
                    format!(
                        "SELECT DISTINCT account_id AS id FROM jobs WHERE account_id IN ({list}) \
                         AND status NOT IN {TERMINAL}"
                    ),
                    &mut live,
                ),
            ] {
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(id.as_str());
                }
                for row in query
                    .fetch_all(&self.pool)
                    .await
                    .map_err(sqlx_err("find accounts"))?
                {
                    let id: String = row.try_get("id").map_err(sqlx_err("read account id"))?;
                    if let Ok(id) = AccountId::new(id) {
                        into.push(id);
                    }
                }
            }
        }
        Ok((known, live))
    }

    /// How many usage records were made before `before`, and the oldest one's instant.
    pub async fn usage_before(
        &self,
        before: Timestamp,
    ) -> Result<(u64, Option<Timestamp>), LedgerError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n, MIN(at) AS oldest FROM usage_records WHERE at < $1")
                .bind(to_ms(before)?)
                .fetch_one(&self.pool)
                .await
                .map_err(sqlx_err("count usage records"))?;
        let count: i64 = row.try_get("n").map_err(sqlx_err("read usage count"))?;
        let oldest: Option<i64> = row
            .try_get("oldest")
            .map_err(sqlx_err("read oldest usage record"))?;
        let oldest = oldest
            .map(|ms| from_ms("at", ms))
            .transpose()
            .map_err(sqlx_err("read oldest usage record"))?;
        Ok((u64::try_from(count).unwrap_or(0), oldest))
    }
}
