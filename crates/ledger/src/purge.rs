//! Hard deletion of an account's rows: the janitor's purge at the end of retention, and of an
//! erased account once its objects are gone. The deletion audit is not touched: it outlives
//! what it records.

use clipfleet_proto::AccountId;
use sqlx::Any;

use crate::error::{LedgerError, sqlx_err};
use crate::ledger::Ledger;

/// What [`Ledger::delete_account`] removed, for the deletion audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgedRows {
    /// Job rows (their attempts went with them).
    pub jobs: u64,
    /// Usage records.
    pub usage_records: u64,
    /// Personalisation sessions.
    pub sessions: u64,
    /// Photo rows of those sessions (none once a session ended; an open one's remain).
    pub session_photos: u64,
}

impl Ledger {
    /// Deletes the account's row, its jobs, its usage records and its sessions (with their
    /// photo rows) in one transaction. The caller deletes the objects first (a job row is how
    /// the janitor finds them). `Conflict` while a legal hold is on; `NotFound` if there is no
    /// such account. Rows are deleted explicitly, not left to `ON DELETE CASCADE`: SQLite may
    /// run without foreign keys enforced.
    pub async fn delete_account(&self, id: &AccountId) -> Result<PurgedRows, LedgerError> {
        let mut tx = self.pool.begin().await.map_err(sqlx_err("begin"))?;
        // Locks the row (a legal hold set meanwhile waits for us, or wins before us).
        let allowed = sqlx::query::<Any>(
            "UPDATE accounts SET updated_at = updated_at WHERE id = $1 AND legal_hold = 0",
        )
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err("lock account"))?
        .rows_affected();
        if allowed == 0 {
            drop(tx);
            // NotFound when there is no such account; otherwise the hold is why. Messages
            // never name the account: they end up in logs.
            self.get_account(id).await?;
            return Err(LedgerError::conflict("the account is under legal hold"));
        }
        let mut delete = async |sql: &'static str, what: &'static str| {
            sqlx::query::<Any>(sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map(|done| done.rows_affected())
                .map_err(sqlx_err(what))
        };
        let purged = PurgedRows {
            jobs: delete("DELETE FROM jobs WHERE account_id = $1", "delete jobs").await?,
            usage_records: delete(
                "DELETE FROM usage_records WHERE account_id = $1",
                "delete usage records",
            )
            .await?,
            session_photos: delete(
                "DELETE FROM session_photos WHERE session_id IN \
                 (SELECT id FROM sessions WHERE account_id = $1)",
                "delete session photos",
            )
            .await?,
            sessions: delete(
                "DELETE FROM sessions WHERE account_id = $1",
                "delete sessions",
            )
            .await?,
        };
        delete("DELETE FROM accounts WHERE id = $1", "delete account").await?;
        tx.commit().await.map_err(sqlx_err("commit"))?;
        Ok(purged)
    }
}
