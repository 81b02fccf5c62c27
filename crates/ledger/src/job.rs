//! Jobs: inserted by ingest (idempotently, per account and idempotency key), moved through their
//! states by job events (`events.rs`), read by ingest, the janitor and `clipctl`.

use clipfleet_proto::{AccountId, ErrorCode, JobId, PoolName, SessionId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::error::{LedgerError, sqlx_err};
use crate::events::{TERMINAL_BASE, status_key};
use crate::ledger::{Ledger, decode_error, from_ms, to_ms};

/// Longest model name, idempotency key or request hash, in bytes.
const MAX_TOKEN_BYTES: usize = 255;

/// Longest object key, in bytes (S3's limit).
const MAX_KEY_BYTES: usize = 1024;

/// Longest failure message kept, in bytes (as the wire protocol bounds it).
const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// The kinds a job row may name (the migration's check says the same).
const KINDS: [&str; 3] = ["video", "image", "personalize"];

/// The `kind` of a session's training job.
pub const PERSONALIZE_KIND: &str = "personalize";

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for a worker (again, after a retryable failure).
    Queued,
    /// A worker is on it.
    Running,
    /// The video is stored. Terminal.
    Succeeded,
    /// Ended without a video. Terminal.
    Failed,
    /// Passed its deadline before it could run. Terminal.
    Expired,
    /// Dropped on request. Terminal.
    Cancelled,
}

impl JobStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Expired => "expired",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether no event moves the job out of this state.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "expired" => JobStatus::Expired,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A client's idempotency key with a digest of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's key, unique per account.
    pub key: String,
    /// A digest of the request body: the same key with another body is a conflict, not a retry.
    pub request_hash: String,
}

/// What ingest knows of a job when it accepts it.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Made by ingest (a ULID); also the name of the job's objects.
    pub id: JobId,
    /// Whose job.
    pub account_id: AccountId,
    /// The pool that serves it.
    pub pool: PoolName,
    /// The model it runs (`name@version`).
    pub model: String,
    /// Object key of the sealed photo.
    pub input_key: String,
    /// Set when the client sent an idempotency key.
    pub idempotency: Option<Idempotency>,
    /// What it makes when that is not what its model makes: `personalize` for a session's
    /// training job. `None`: the model's own kind (video or image).
    pub kind: Option<String>,
    /// The personalisation session it belongs to: a training job, or a job rendered with the
    /// session's adapter.
    pub session_id: Option<SessionId>,
}

/// A job as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// Whose job.
    pub account_id: AccountId,
    /// The pool that serves it.
    pub pool: PoolName,
    /// The model it runs.
    pub model: String,
    /// Where it stands.
    pub status: JobStatus,
    /// When ingest accepted it.
    pub submitted_at: Timestamp,
    /// When a worker first began it.
    pub started_at: Option<Timestamp>,
    /// When it reached its terminal state.
    pub finished_at: Option<Timestamp>,
    /// The latest progress report, 0..=100.
    pub progress_pct: Option<u8>,
    /// Object key of the photo.
    pub input_key: String,
    /// When the photo was deleted: the privacy promise, made observable.
    pub input_deleted_at: Option<Timestamp>,
    /// Object key of the video, once one is stored.
    pub output_key: Option<String>,
    /// Plaintext size of the video in bytes.
    pub output_size: Option<u64>,
    /// When the janitor deletes the video (`stored + output_ttl`).
    pub output_expires_at: Option<Timestamp>,
    /// When the video was deleted (expiry, or the holder's request).
    pub output_deleted_at: Option<Timestamp>,
    /// The most significant failure seen: a terminal one, else the latest retryable one.
    pub error_code: Option<ErrorCode>,
    /// Operator-facing text of that failure.
    pub error_message: Option<String>,
    /// How many times a worker started it.
    pub attempts: u32,
    /// The client's idempotency key, if it sent one.
    pub idempotency_key: Option<String>,
    /// Digest of the request that carried the key.
    pub request_hash: Option<String>,
    /// `personalize` for a session's training job; `None`: what its model makes.
    pub kind: Option<String>,
    /// The personalisation session it belongs to, if any.
    pub session_id: Option<SessionId>,
}

/// The answer to [`Ledger::insert_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertedJob {
    /// The job: the new one, or the one an earlier request with the same key made.
    pub job: Job,
    /// False when the idempotency key found an earlier job (nothing was written).
    pub created: bool,
}

/// SQL condition: the job is not a `personalize` job, whose output is its session's adapter and
/// follows the session's rules, not the output TTL.
pub(crate) const NOT_AN_ADAPTER: &str = "(kind IS NULL OR kind <> 'personalize')";

pub(crate) const JOB_COLUMNS: &str = "id, account_id, pool, model, status, submitted_at, \
    started_at, finished_at, progress_pct, input_key, input_deleted_at, output_key, output_size, \
    output_expires_at, output_deleted_at, error_code, error_message, attempts, idempotency_key, request_hash, kind, session_id";

impl FromRow<'_, AnyRow> for Job {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let opt_ms = |column: &str| -> Result<Option<Timestamp>, sqlx::Error> {
            row.try_get::<Option<i64>, _>(column)?
                .map(|ms| from_ms(column, ms))
                .transpose()
        };
        let id: String = row.try_get("id")?;
        let account_id: String = row.try_get("account_id")?;
        let pool: String = row.try_get("pool")?;
        let status: String = row.try_get("status")?;
        let progress: Option<i64> = row.try_get("progress_pct")?;
        let size: Option<i64> = row.try_get("output_size")?;
        let attempts: i64 = row.try_get("attempts")?;
        let code: Option<String> = row.try_get("error_code")?;
        let session: Option<String> = row.try_get("session_id")?;
        Ok(Job {
            id: id.parse().map_err(|_| decode_error("id", "not a job id"))?,
            account_id: AccountId::new(account_id)
                .map_err(|_| decode_error("account_id", "not an account id"))?,
            pool: PoolName::new(pool).map_err(|_| decode_error("pool", "not a pool name"))?,
            model: row.try_get("model")?,
            status: JobStatus::parse(&status)
                .ok_or_else(|| decode_error("status", format!("unknown status {status:?}")))?,
            submitted_at: from_ms("submitted_at", row.try_get("submitted_at")?)?,
            started_at: opt_ms("started_at")?,
            finished_at: opt_ms("finished_at")?,
            progress_pct: progress
                .map(|pct| u8::try_from(pct).map_err(|_| decode_error("progress_pct", "over 255")))
                .transpose()?,
            input_key: row.try_get("input_key")?,
            input_deleted_at: opt_ms("input_deleted_at")?,
            output_key: row.try_get("output_key")?,
            output_size: size
                .map(|size| {
                    u64::try_from(size).map_err(|_| decode_error("output_size", "negative"))
                })
                .transpose()?,
            output_expires_at: opt_ms("output_expires_at")?,
            output_deleted_at: opt_ms("output_deleted_at")?,
            error_code: code.as_deref().map(ErrorCode::parse),
            error_message: row.try_get("error_message")?,
            attempts: u32::try_from(attempts)
                .map_err(|_| decode_error("attempts", "out of range"))?,
            idempotency_key: row.try_get("idempotency_key")?,
            request_hash: row.try_get("request_hash")?,
            kind: row.try_get("kind")?,
            session_id: session
                .map(|id| {
                    id.parse()
                        .map_err(|_| decode_error("session_id", "not a session id"))
                })
                .transpose()?,
        })
    }
}

/// Checks a text field's length and that it holds no control characters.
fn check_text(column: &str, text: &str, max_bytes: usize) -> Result<(), LedgerError> {
    if text.is_empty() || text.len() > max_bytes || text.chars().any(char::is_control) {
        return Err(LedgerError::invalid(format!(
            "{column} must be 1..={max_bytes} bytes without control characters"
        )));
    }
    Ok(())
}

impl NewJob {
    fn validate(&self) -> Result<(), LedgerError> {
        check_text("model", &self.model, MAX_TOKEN_BYTES)?;
        check_text("input_key", &self.input_key, MAX_KEY_BYTES)?;
        if let Some(idempotency) = &self.idempotency {
            check_text("idempotency_key", &idempotency.key, MAX_TOKEN_BYTES)?;
            check_text("request_hash", &idempotency.request_hash, MAX_TOKEN_BYTES)?;
        }
        if let Some(kind) = &self.kind
            && !KINDS.contains(&kind.as_str())
        {
            return Err(LedgerError::invalid(format!(
                "kind must be one of {KINDS:?} when set"
            )));
        }
        Ok(())
    }
}

impl Ledger {
    /// Records a job ingest accepted, queued and submitted now. With an idempotency key: the
    /// same key and request hash again return the earlier job (`created: false`); the same key
    /// with another hash is a `Conflict`. A job id used twice is a `Conflict`; an account the
    /// ledger does not have is `NotFound`.
    pub async fn insert_job(&self, job: &NewJob) -> Result<InsertedJob, LedgerError> {
        job.validate()?;
        let now = to_ms(self.now())?;
        let (key, hash) = match &job.idempotency {
            Some(idempotency) => (
                Some(idempotency.key.as_str()),
                Some(idempotency.request_hash.as_str()),
            ),
            None => (None, None),
        };
        let inserted = sqlx::query_as::<_, Job>(&format!(
            "INSERT INTO jobs (id, account_id, pool, model, status, status_key, submitted_at, \
             input_key, attempts, idempotency_key, request_hash, kind, session_id) \
             VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, 0, $7, $8, $9, $10) \
             ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING {JOB_COLUMNS}"
        ))
        .bind(job.id.to_string())
        .bind(job.account_id.as_str())
        .bind(job.pool.as_str())
        .bind(job.model.as_str())
        .bind(now)
        .bind(job.input_key.as_str())
        .bind(key)
        .bind(hash)
        .bind(job.kind.as_deref())
        .bind(job.session_id.map(|id| id.to_string()))
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_err("insert job"))?;
        if let Some(created) = inserted {
            return Ok(InsertedJob {
                job: created,
                created: true,
            });
        }
        // Only the idempotency key can have conflicted (an id conflict is an error above).
        let (Some(key), Some(hash)) = (key, hash) else {
            return Err(LedgerError::new(
                crate::LedgerErrorKind::Internal,
                "insert without an idempotency key wrote nothing",
            ));
        };
        let earlier = sqlx::query_as::<_, Job>(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE account_id = $1 AND idempotency_key = $2"
        ))
        .bind(job.account_id.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_err("find job by idempotency key"))?
        .ok_or_else(|| {
            LedgerError::new(
                crate::LedgerErrorKind::Unavailable,
                "the job holding the idempotency key was deleted meanwhile; retry",
            )
        })?;
        if earlier.request_hash.as_deref() != Some(hash) {
            return Err(LedgerError::conflict(format!(
                "idempotency key already used by job {} with another request",
                earlier.id
            )));
        }
        Ok(InsertedJob {
            job: earlier,
            created: false,
        })
    }

    /// The job. `NotFound` if the ledger does not have it (never had, or purged).
    pub async fn get_job(&self, id: JobId) -> Result<Job, LedgerError> {
        sqlx::query_as::<_, Job>(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(sqlx_err("get job"))?
            .ok_or_else(|| LedgerError::not_found(format!("no job {id}")))
    }

    /// Ends a job as failed now, from outside the workers (ingest, when the publish was not
    /// confirmed; the janitor). A job already terminal keeps its state (and its error): a
    /// late `fail_job` never undoes a success. Returns the job as it stands after.
    pub async fn fail_job(
        &self,
        id: JobId,
        code: ErrorCode,
        message: &str,
    ) -> Result<Job, LedgerError> {
        if message.len() > MAX_ERROR_MESSAGE_BYTES {
            return Err(LedgerError::invalid(format!(
                "error message is over {MAX_ERROR_MESSAGE_BYTES} bytes"
            )));
        }
        let at = to_ms(self.now())?;
        let key = status_key(JobStatus::Failed, at)?;
        // Unlike an event, this only ends a job that has not ended: the ledger's clock and the
        // workers' clocks differ, so "earliest terminal wins" would let it undo a success.
        sqlx::query(
            "UPDATE jobs SET status = 'failed', status_key = $2, finished_at = $3, \
             error_code = $4, error_message = $5, error_key = $2 \
             WHERE id = $1 AND status_key < $6",
        )
        .bind(id.to_string())
        .bind(key)
        .bind(at)
        .bind(code.as_str())
        .bind(message)
        .bind(TERMINAL_BASE)
        .execute(&self.pool)
        .await
        .map_err(sqlx_err("fail job"))?;
        self.get_job(id).await
    }
}

impl Ledger {
    /// The job an earlier request with idempotency key `key` made for `account`, if any: lets
    /// ingest answer a retry before storing its photo again.
    pub async fn find_job_by_idempotency_key(
        &self,
        account: &AccountId,
        key: &str,
    ) -> Result<Option<Job>, LedgerError> {
        sqlx::query_as::<_, Job>(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE account_id = $1 AND idempotency_key = $2"
        ))
        .bind(account.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_err("find job by idempotency key"))
    }

    /// Cancels a job that is still queued (the holder's delete request): it ends `cancelled`
    /// now. A job a worker already began, or one that ended, is left as it is; the answer is
    /// the job as it stands after, so the caller sees which happened. A worker's later events
    /// cannot undo the cancellation (the earliest terminal state wins).
    pub async fn cancel_job(&self, id: JobId) -> Result<Job, LedgerError> {
        let at = to_ms(self.now())?;
        let key = status_key(JobStatus::Cancelled, at)?;
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', status_key = $2, finished_at = $3, \
             error_code = $4, error_message = $5, error_key = $2 \
             WHERE id = $1 AND status = 'queued'",
        )
        .bind(id.to_string())
        .bind(key)
        .bind(at)
        .bind(ErrorCode::Cancelled.as_str())
        .bind("cancelled on request")
        .execute(&self.pool)
        .await
        .map_err(sqlx_err("cancel job"))?;
        self.get_job(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_know_terminality() {
        let all = [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Expired,
            JobStatus::Cancelled,
        ];
        for status in all {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        }
        let terminal: Vec<_> = all.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal.len(), 4);
        assert!(!terminal.contains(&JobStatus::Running));
    }

    #[test]
    fn text_fields_are_bounded() {
        assert!(check_text("model", "motion@1", 255).is_ok());
        assert!(check_text("model", "", 255).is_err());
        assert!(check_text("model", "a\nb", 255).is_err());
        assert!(check_text("model", &"m".repeat(256), 255).is_err());
    }
}
