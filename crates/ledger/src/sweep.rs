//! What the janitor sweeps: videos past their expiry, photos still recorded as present, accounts
//! due for purge; and the marks it leaves once an object is gone. Each listing is bounded and
//! ordered, so a sweep works through a backlog in pages.

use clipfleet_proto::{JobId, Timestamp};

use crate::account::{ACCOUNT_COLUMNS, Account};
use crate::error::{LedgerError, sqlx_err};
use crate::job::{JOB_COLUMNS, Job, NOT_AN_ADAPTER};
use crate::ledger::{Ledger, to_ms};
use crate::usage::MAX_LIST_LIMIT;

impl Ledger {
    /// Records that the job's photo is gone, now (the janitor's backstop; ingest after a publish
    /// that was not confirmed). An earlier record stays. `NotFound` for an unknown job.
    pub async fn mark_input_deleted(&self, id: JobId) -> Result<Job, LedgerError> {
        self.mark_deleted(id, "input_deleted_at", "1 = 1").await
    }

    /// Records that the job's video is gone, now (expiry, or the holder's request). An earlier
    /// record stays; a job without a video is left as it is. `NotFound` for an unknown job.
    pub async fn mark_output_deleted(&self, id: JobId) -> Result<Job, LedgerError> {
        self.mark_deleted(id, "output_deleted_at", "output_key IS NOT NULL")
            .await
    }

    async fn mark_deleted(
        &self,
        id: JobId,
        column: &'static str,
        guard: &'static str,
    ) -> Result<Job, LedgerError> {
        let now = to_ms(self.now())?;
        sqlx::query(&format!(
            "UPDATE jobs SET {column} = $2 \
             WHERE id = $1 AND ({guard}) AND ({column} IS NULL OR {column} > $2)"
        ))
        .bind(id.to_string())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(sqlx_err("mark deleted"))?;
        self.get_job(id).await
    }

    /// Jobs whose video expired at or before `now` and is not recorded as deleted, the longest
    /// expired first, at most `limit` (≤ 1000); never a `personalize` job (its output is its
    /// session's adapter, which goes with the session).
    pub async fn expired_outputs(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Job>, LedgerError> {
        sqlx::query_as::<_, Job>(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE output_key IS NOT NULL \
             AND output_deleted_at IS NULL AND output_expires_at <= $1 AND {NOT_AN_ADAPTER} \
             ORDER BY output_expires_at, id LIMIT $2"
        ))
        .bind(to_ms(now)?)
        .bind(i64::from(limit.min(MAX_LIST_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list expired outputs"))
    }

    /// Jobs submitted before `submitted_before` whose photo is not recorded as deleted, oldest
    /// first, at most `limit` (≤ 1000): the backstop for `retention.input_max_age`.
    pub async fn stale_inputs(
        &self,
        submitted_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Job>, LedgerError> {
        sqlx::query_as::<_, Job>(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE input_deleted_at IS NULL \
             AND submitted_at < $1 ORDER BY submitted_at, id LIMIT $2"
        ))
        .bind(to_ms(submitted_before)?)
        .bind(i64::from(limit.min(MAX_LIST_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list stale inputs"))
    }

    /// Accounts whose data must go: terminated before `terminated_before` (now minus the
    /// retention period), or with an erasure requested (at once: the holder asked, or is under
    /// 14). Never one under legal hold. Oldest termination first, at most `limit` (≤ 1000).
    pub async fn accounts_due_for_purge(
        &self,
        terminated_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Account>, LedgerError> {
        sqlx::query_as::<_, Account>(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE legal_hold = 0 \
             AND (erasure_requested_at IS NOT NULL \
             OR (status = 'terminated' AND terminated_at < $1)) \
             ORDER BY COALESCE(terminated_at, 0), id LIMIT $2"
        ))
        .bind(to_ms(terminated_before)?)
        .bind(i64::from(limit.min(MAX_LIST_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list accounts due for purge"))
    }
}
