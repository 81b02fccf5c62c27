//! Job events applied to the ledger: idempotent and order-independent, so redelivered, duplicated
//! and reordered batches (several consumers, retries, clock skew between workers) all end in the
//! same row.
//!
//! Each event becomes a few *effects*, each one conditional `UPDATE` that only moves a column
//! "forward" by a total order fixed in advance:
//! - `status`: every candidate state carries a `status_key`. Terminal states beat non-terminal
//!   ones; among terminal states the earliest wins (a job ends once); among non-terminal ones
//!   (`running`, `queued` again after a retryable failure) the latest wins. A late `started`
//!   therefore never overwrites `succeeded`. Ties at the same millisecond break by a fixed
//!   order of states.
//! - `started_at`, `input_deleted_at`: the earliest instant wins.
//! - output (key, size, expiry): the earliest expiry wins: the strictest deletion deadline.
//! - error: the failure with the highest `status_key` wins (terminal over retryable).
//! - `attempts`: the count of distinct `started` events, deduplicated by a primary key.
//!
//! Because every effect is a max/min over a fixed order, the final row does not depend on the
//! order of application, and because each is one atomic `UPDATE … WHERE key < new`, concurrent
//! consumers stay correct. A batch first locks each job's row (`lock_job`), in job-id order, so
//! two transactions take their locks in the same order and cannot deadlock.

use std::time::Duration;

use clipfleet_proto::{ErrorCode, EventBatch, EventKind, JobEvent, Message, StageDurations};
use sqlx::Any;

use crate::error::{LedgerError, sqlx_err};
use crate::job::JobStatus;
use crate::ledger::{Backend, Ledger, duration_ms, to_ms};

/// Bits below the instant in a status key, for the tie-breaking order of states.
const ORDER_BITS: u32 = 3;

/// Instants must be below this many Unix milliseconds (year 144 683): keeps keys in an i64.
const MAX_AT_MS: i64 = 1 << 52;

/// Every terminal key is above every non-terminal one.
pub(crate) const TERMINAL_BASE: i64 = 1 << 62;

/// What [`Ledger::apply_events`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Events that changed the ledger.
    pub applied: usize,
    /// Events the ledger already reflected (duplicates, or outranked: a late `started`).
    pub unchanged: usize,
    /// Events about jobs the ledger does not have (purged, or never accepted): dropped.
    pub unknown_job: usize,
    /// Events of a kind this version does not know: skipped.
    pub unknown_kind: usize,
}

/// One conditional write an event makes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    /// A candidate state with its key; `at` becomes `finished_at` for a terminal one.
    Status {
        status: JobStatus,
        key: i64,
        at: i64,
    },
    /// A worker began the job at `at`.
    Started { at: i64, worker: String },
    /// Progress report.
    Progress { pct: i64, at: i64 },
    /// The video is stored; `stages` is what the worker measured (`stage=ms;…`).
    Output {
        key: String,
        size: i64,
        expires_at: i64,
        stages: String,
    },
    /// A failure, ranked by `key`.
    Error {
        code: ErrorCode,
        message: String,
        key: i64,
    },
    /// The photo is gone.
    InputDeleted { at: i64 },
}

/// The precedence of `status` reached at `at`: a higher key wins. See the module docs.
pub(crate) fn status_key(status: JobStatus, at: i64) -> Result<i64, LedgerError> {
    if !(0..MAX_AT_MS).contains(&at) {
        return Err(LedgerError::invalid(format!(
            "event instant {at} ms is out of range"
        )));
    }
    let order = match status {
        JobStatus::Queued => 0,
        JobStatus::Running => 1,
        JobStatus::Failed => 1,
        JobStatus::Expired => 2,
        JobStatus::Cancelled => 3,
        // At the same millisecond a stored video is the truth.
        JobStatus::Succeeded => 4,
    };
    Ok(if status.is_terminal() {
        TERMINAL_BASE + ((MAX_AT_MS - 1 - at) << ORDER_BITS) + order
    } else {
        (at << ORDER_BITS) + order
    })
}

/// A worker's stage timings as the ledger keeps them: `stage=ms;…` in a fixed order.
pub(crate) fn encode_stages(stages: &StageDurations) -> String {
    format!(
        "queue_wait={};fetch={};batch_wait={};infer={};encode={};store={}",
        stages.queue_wait_ms,
        stages.fetch_ms,
        stages.batch_wait_ms,
        stages.infer_ms,
        stages.encode_ms,
        stages.store_ms
    )
}

/// The effects of one event; empty for a kind this version does not know.
fn effects(event: &JobEvent, output_ttl_ms: i64) -> Result<Vec<Effect>, LedgerError> {
    let at = to_ms(event.at)?;
    let status = |status: JobStatus| -> Result<Effect, LedgerError> {
        Ok(Effect::Status {
            status,
            key: status_key(status, at)?,
            at,
        })
    };
    Ok(match &event.event {
        EventKind::Started => vec![
            Effect::Started {
                at,
                worker: event.worker.as_str().to_owned(),
            },
            status(JobStatus::Running)?,
        ],
        EventKind::Progress { pct } => vec![
            Effect::Progress {
                pct: i64::from(*pct),
                at,
            },
            status(JobStatus::Running)?,
        ],
        EventKind::Succeeded {
            output_key,
            size,
            stages,
        } => vec![
            // A finished job reads 100 %, unless a later attempt (a redelivery) reports less.
            Effect::Progress { pct: 100, at },
            Effect::Output {
                key: output_key.clone(),
                size: i64::try_from(*size)
                    .map_err(|_| LedgerError::invalid("output size is out of range"))?,
                expires_at: at.saturating_add(output_ttl_ms),
                stages: encode_stages(stages),
            },
            status(JobStatus::Succeeded)?,
        ],
        EventKind::Failed {
            code,
            message,
            retryable,
        } => {
            let state = match (retryable, code) {
                (true, _) => JobStatus::Queued,
                (false, ErrorCode::Expired) => JobStatus::Expired,
                (false, ErrorCode::Cancelled) => JobStatus::Cancelled,
                (false, _) => JobStatus::Failed,
            };
            vec![
                Effect::Error {
                    code: *code,
                    message: message.clone(),
                    key: status_key(state, at)?,
                },
                status(state)?,
            ]
        }
        EventKind::InputDeleted => vec![Effect::InputDeleted { at }],
        EventKind::Cancelled => vec![status(JobStatus::Cancelled)?],
        EventKind::Unknown => Vec::new(),
    })
}

/// Applies one effect to `job`; true if it changed the row.
async fn apply_effect(
    conn: &mut sqlx::AnyConnection,
    job: &str,
    effect: &Effect,
) -> Result<bool, LedgerError> {
    let changed = match effect {
        Effect::Status { status, key, at } => sqlx::query::<Any>(
            "UPDATE jobs SET status = $2, status_key = $3, finished_at = $4 \
             WHERE id = $1 AND status_key < $3",
        )
        .bind(job)
        .bind(status.as_str())
        .bind(*key)
        .bind(status.is_terminal().then_some(*at))
        .execute(&mut *conn)
        .await
        .map_err(sqlx_err("apply status"))?
        .rows_affected(),
        Effect::Started { at, worker } => {
            let first = sqlx::query::<Any>(
                "UPDATE jobs SET started_at = $2 \
                 WHERE id = $1 AND (started_at IS NULL OR started_at > $2)",
            )
            .bind(job)
            .bind(*at)
            .execute(&mut *conn)
            .await
            .map_err(sqlx_err("apply started_at"))?
            .rows_affected();
            let new_attempt = sqlx::query::<Any>(
                "INSERT INTO job_attempts (job_id, started_at, worker) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(job)
            .bind(*at)
            .bind(worker.as_str())
            .execute(&mut *conn)
            .await
            .map_err(sqlx_err("record attempt"))?
            .rows_affected();
            if new_attempt > 0 {
                sqlx::query::<Any>(
                    "UPDATE jobs SET attempts = \
                     (SELECT COUNT(*) FROM job_attempts WHERE job_id = $1) WHERE id = $1",
                )
                .bind(job)
                .execute(&mut *conn)
                .await
                .map_err(sqlx_err("count attempts"))?;
            }
            first + new_attempt
        }
        Effect::Progress { pct, at } => sqlx::query::<Any>(
            "UPDATE jobs SET progress_pct = $2, progress_at = $3 WHERE id = $1 AND \
             (progress_at IS NULL OR progress_at < $3 OR (progress_at = $3 AND progress_pct < $2))",
        )
        .bind(job)
        .bind(*pct)
        .bind(*at)
        .execute(&mut *conn)
        .await
        .map_err(sqlx_err("apply progress"))?
        .rows_affected(),
        // The earliest success wins, ties broken by size, key, then stages: the same row in
        // whatever order the events arrive.
        Effect::Output {
            key,
            size,
            expires_at,
            stages,
        } => sqlx::query::<Any>(
            "UPDATE jobs SET output_key = $2, output_size = $3, output_expires_at = $4, \
             stages = $5 \
             WHERE id = $1 AND (output_expires_at IS NULL OR output_expires_at > $4 \
             OR (output_expires_at = $4 AND (output_size < $3 \
             OR (output_size = $3 AND (output_key < $2 \
             OR (output_key = $2 AND (stages IS NULL OR stages < $5)))))))",
        )
        .bind(job)
        .bind(key.as_str())
        .bind(*size)
        .bind(*expires_at)
        .bind(stages.as_str())
        .execute(&mut *conn)
        .await
        .map_err(sqlx_err("apply output"))?
        .rows_affected(),
        Effect::Error { code, message, key } => sqlx::query::<Any>(
            "UPDATE jobs SET error_code = $2, error_message = $3, error_key = $4 \
             WHERE id = $1 AND (error_key IS NULL OR error_key < $4 OR (error_key = $4 \
             AND (error_code < $2 OR (error_code = $2 AND error_message < $3))))",
        )
        .bind(job)
        .bind(code.as_str())
        .bind(message.as_str())
        .bind(*key)
        .execute(&mut *conn)
        .await
        .map_err(sqlx_err("apply error"))?
        .rows_affected(),
        Effect::InputDeleted { at } => sqlx::query::<Any>(
            "UPDATE jobs SET input_deleted_at = $2 \
             WHERE id = $1 AND (input_deleted_at IS NULL OR input_deleted_at > $2)",
        )
        .bind(job)
        .bind(*at)
        .execute(&mut *conn)
        .await
        .map_err(sqlx_err("apply input deleted"))?
        .rows_affected(),
    };
    Ok(changed > 0)
}

impl Ledger {
    /// Applies a batch of job events in one transaction. Idempotent and order-independent (see
    /// the module docs): applying a batch twice, or its events in another order or split into
    /// other batches, ends in the same rows. `output_ttl` sets `output_expires_at` of a
    /// succeeded job. Events about jobs the ledger lacks are counted and dropped, not errors: a
    /// purged account's late events must not block the consumer.
    pub async fn apply_events(
        &self,
        batch: &EventBatch,
        output_ttl: Duration,
    ) -> Result<ApplyOutcome, LedgerError> {
        batch
            .validate()
            .map_err(|invalid| LedgerError::invalid(format!("event batch: {}", invalid.0)))?;
        let ttl_ms = duration_ms(output_ttl)?;
        let mut outcome = ApplyOutcome::default();
        // Effects first, so a bad event refuses the batch before anything is written.
        let mut planned: Vec<(String, Vec<Effect>)> = Vec::with_capacity(batch.events.len());
        for event in &batch.events {
            let effects = effects(event, ttl_ms)?;
            if effects.is_empty() {
                outcome.unknown_kind += 1;
            } else {
                planned.push((event.job_id.to_string(), effects));
            }
        }
        planned.sort_by(|a, b| a.0.cmp(&b.0));

        let mut tx = self.pool.begin().await.map_err(sqlx_err("begin"))?;
        let mut locked: Option<(&str, bool)> = None;
        for (job, effects) in &planned {
            let exists = match locked {
                Some((id, exists)) if id == job => exists,
                _ => self.lock_job(&mut tx, job).await?,
            };
            locked = Some((job, exists));
            if !exists {
                tracing::debug!(job_id = %job, "event for a job the ledger lacks, dropped");
                outcome.unknown_job += 1;
                continue;
            }
            let mut changed = false;
            for effect in effects {
                changed |= apply_effect(&mut tx, job, effect).await?;
            }
            if changed {
                outcome.applied += 1;
            } else {
                outcome.unchanged += 1;
            }
        }
        tx.commit().await.map_err(sqlx_err("commit"))?;
        Ok(outcome)
    }

    /// Locks the job's row for the rest of the transaction, before any other statement about
    /// it; false if there is no such job. Every writer of a job's rows takes this lock first,
    /// and a batch takes its jobs in id order: without it, two consumers inserting the same
    /// attempt and updating the same row take their locks in opposite orders and deadlock.
    async fn lock_job(
        &self,
        conn: &mut sqlx::AnyConnection,
        job: &str,
    ) -> Result<bool, LedgerError> {
        let found = match self.backend() {
            Backend::Postgres => sqlx::query::<Any>("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
                .bind(job)
                .fetch_optional(&mut *conn)
                .await
                .map(|row| row.is_some()),
            // No row locks in SQLite: a write takes the database's write lock up front (a read
            // first would have to upgrade later, and could fail instead of waiting).
            Backend::Sqlite => {
                sqlx::query::<Any>("UPDATE jobs SET status_key = status_key WHERE id = $1")
                    .bind(job)
                    .execute(&mut *conn)
                    .await
                    .map(|done| done.rows_affected() > 0)
            }
        };
        found.map_err(sqlx_err("lock job"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_beats_non_terminal_whatever_the_instants() {
        let late_start = status_key(JobStatus::Running, MAX_AT_MS - 1).unwrap();
        for terminal in [
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Expired,
            JobStatus::Cancelled,
        ] {
            for at in [0, 1_700_000_000_000, MAX_AT_MS - 1] {
                assert!(status_key(terminal, at).unwrap() > late_start);
            }
        }
    }

    #[test]
    fn earliest_terminal_and_latest_non_terminal_win() {
        let k = |status, at| status_key(status, at).unwrap();
        assert!(k(JobStatus::Failed, 10) > k(JobStatus::Succeeded, 11));
        assert!(k(JobStatus::Succeeded, 10) > k(JobStatus::Failed, 10));
        assert!(k(JobStatus::Running, 11) > k(JobStatus::Queued, 10));
        assert!(k(JobStatus::Queued, 12) > k(JobStatus::Running, 11));
        assert!(k(JobStatus::Running, 12) > k(JobStatus::Queued, 12));
        // The row a job is inserted with (key 0) loses to anything but a retry at the epoch.
        assert!(k(JobStatus::Running, 0) > 0);
    }

    #[test]
    fn instants_outside_the_key_range_are_refused() {
        assert!(status_key(JobStatus::Running, -1).is_err());
        assert!(status_key(JobStatus::Succeeded, MAX_AT_MS).is_err());
        assert!(status_key(JobStatus::Succeeded, MAX_AT_MS - 1).unwrap() > TERMINAL_BASE);
    }
}
