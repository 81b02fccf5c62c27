//! What the operator console reads: the newest jobs, a job's attempts and stage timings, jobs
//! ended per minute with their latency, and the janitor's sweep records. Reads are bounded (a limit or a time
//! window on an indexed column); nothing here returns a personal field.

use std::collections::BTreeMap;
use std::time::Duration;

use clipfleet_proto::{JobId, Timestamp};
use sqlx::Row as _;

use crate::error::{LedgerError, sqlx_err};
use crate::job::{JOB_COLUMNS, Job};
use crate::ledger::{Ledger, from_ms, to_ms};

/// The most rows one console read returns.
const MAX_ROWS: u32 = 500;

/// How long sweep records are kept.
const SWEEP_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// One delivery of a job to a worker (a `started` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When the worker started it.
    pub started_at: Timestamp,
    /// Which worker.
    pub worker: String,
}

/// Jobs that ended in one minute with one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteRate {
    /// The minute's first instant.
    pub minute: Timestamp,
    /// `succeeded`, `failed`, `expired` or `cancelled`.
    pub status: String,
    /// How many.
    pub count: u64,
    /// Mean submitted → ended, in ms.
    pub mean_ms: u64,
    /// Slowest submitted → ended, in ms.
    pub max_ms: u64,
}

/// What one janitor sweep did, as it records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSweep {
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took.
    pub took: Duration,
    /// Objects and rows deleted, by rule name.
    pub deleted: BTreeMap<String, u64>,
    /// Accounts whose rows went.
    pub accounts_purged: u64,
    /// Steps that failed (the next sweep retries them).
    pub failures: u64,
    /// Deletions of an interrupted sweep confirmed by this one.
    pub recovered: u64,
}

/// A recorded sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRecord {
    /// Its id.
    pub id: String,
    /// What it did.
    pub sweep: NewSweep,
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// `rule=count;…`: rule names are lower-case words (checked), so the text parses back.
fn encode_counts(deleted: &BTreeMap<String, u64>) -> Result<String, LedgerError> {
    let mut text = String::new();
    for (rule, n) in deleted {
        if rule.is_empty()
            || !rule
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(LedgerError::invalid(format!(
                "{rule:?} is not a rule name (lower-case letters, digits, _)"
            )));
        }
        if !text.is_empty() {
            text.push(';');
        }
        text.push_str(&format!("{rule}={n}"));
    }
    Ok(text)
}

fn decode_counts(text: &str) -> BTreeMap<String, u64> {
    text.split(';')
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(rule, n)| Some((rule.to_owned(), n.parse().ok()?)))
        .collect()
}

impl Ledger {
    /// The newest jobs by submission, at most `limit` (≤ 500).
    pub async fn recent_jobs(&self, limit: u32) -> Result<Vec<Job>, LedgerError> {
        sqlx::query_as::<_, Job>(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY submitted_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit.min(MAX_ROWS)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("recent jobs"))
    }

    /// Every job, a page at a time in id order: up to `limit` (≤ 500) jobs whose id sorts after
    /// `after`. For audits that must see all of a ledger (the chaos campaign's), not the console.
    pub async fn jobs_page(
        &self,
        after: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<Job>, LedgerError> {
        sqlx::query_as::<_, Job>(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.map(|id| id.to_string()).unwrap_or_default())
        .bind(i64::from(limit.min(MAX_ROWS)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("a page of jobs"))
    }

    /// A job's deliveries to workers, oldest first.
    pub async fn job_attempts(&self, id: JobId) -> Result<Vec<Attempt>, LedgerError> {
        let rows = sqlx::query(
            "SELECT started_at, worker FROM job_attempts WHERE job_id = $1 \
             ORDER BY started_at, worker LIMIT $2",
        )
        .bind(id.to_string())
        .bind(i64::from(MAX_ROWS))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("job attempts"))?;
        rows.iter()
            .map(|row| {
                Ok(Attempt {
                    started_at: from_ms("started_at", row.try_get("started_at")?)?,
                    worker: row.try_get("worker")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(sqlx_err("job attempts"))
    }

    /// The stage timings (ms) the worker reported with the job's success, in pipeline order
    /// (`queue_wait`, `fetch`, `batch_wait`, `infer`, `encode`, `store`); empty before then.
    pub async fn job_stages(&self, id: JobId) -> Result<Vec<(String, u64)>, LedgerError> {
        let stages: Option<Option<String>> =
            sqlx::query_scalar("SELECT stages FROM jobs WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(sqlx_err("job stages"))?;
        Ok(stages
            .flatten()
            .map(|text| {
                text.split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .filter_map(|(stage, ms)| Some((stage.to_owned(), ms.parse().ok()?)))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Jobs that ended at or after `since`, per minute and outcome, oldest first.
    pub async fn ended_per_minute(&self, since: Timestamp) -> Result<Vec<MinuteRate>, LedgerError> {
        // Integer division on BIGINT in both dialects; AVG cast back so both return BIGINT.
        let rows = sqlx::query(
            "SELECT finished_at / 60000 AS minute, status, COUNT(*) AS n, \
             CAST(AVG(finished_at - submitted_at) AS BIGINT) AS mean_ms, \
             MAX(finished_at - submitted_at) AS max_ms \
             FROM jobs WHERE finished_at >= $1 \
             GROUP BY finished_at / 60000, status ORDER BY minute, status",
        )
        .bind(to_ms(since)?)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("jobs ended per minute"))?;
        rows.iter()
            .map(|row| {
                let minute: i64 = row.try_get("minute")?;
                Ok(MinuteRate {
                    minute: Timestamp::from_unix_ms(count(minute) * 60_000),
                    status: row.try_get("status")?,
                    count: count(row.try_get("n")?),
                    mean_ms: count(row.try_get::<Option<i64>, _>("mean_ms")?.unwrap_or(0)),
                    max_ms: count(row.try_get::<Option<i64>, _>("max_ms")?.unwrap_or(0)),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(sqlx_err("jobs ended per minute"))
    }

    /// Records one sweep, and drops the records older than a week.
    pub async fn record_sweep(&self, sweep: &NewSweep) -> Result<SweepRecord, LedgerError> {
        let deleted = encode_counts(&sweep.deleted)?;
        let id = ulid::Ulid::new().to_string();
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO janitor_sweeps \
             (id, started_at, took_ms, deleted, accounts_purged, failures, recovered) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.as_str())
        .bind(to_ms(sweep.started_at)?)
        .bind(i64::try_from(sweep.took.as_millis()).unwrap_or(i64::MAX))
        .bind(deleted)
        .bind(as_i64(sweep.accounts_purged))
        .bind(as_i64(sweep.failures))
        .bind(as_i64(sweep.recovered))
        .execute(&self.pool)
        .await
        .map_err(sqlx_err("record sweep"))?;
        let cutoff = sweep
            .started_at
            .unix_ms()
            .saturating_sub(u64::try_from(SWEEP_RETENTION.as_millis()).unwrap_or(u64::MAX));
        sqlx::query("DELETE FROM janitor_sweeps WHERE started_at < $1")
            .bind(to_ms(Timestamp::from_unix_ms(cutoff))?)
            .execute(&self.pool)
            .await
            .map_err(sqlx_err("drop old sweep records"))?;
        Ok(SweepRecord {
            id,
            sweep: sweep.clone(),
        })
    }

    /// The newest sweep records, newest first, at most `limit` (≤ 500).
    pub async fn recent_sweeps(&self, limit: u32) -> Result<Vec<SweepRecord>, LedgerError> {
        let rows = sqlx::query(
            "SELECT id, started_at, took_ms, deleted, accounts_purged, failures, recovered \
             FROM janitor_sweeps ORDER BY started_at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit.min(MAX_ROWS)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("recent sweeps"))?;
        rows.iter()
            .map(|row| {
                Ok(SweepRecord {
                    id: row.try_get("id")?,
                    sweep: NewSweep {
                        started_at: from_ms("started_at", row.try_get("started_at")?)?,
                        took: Duration::from_millis(count(row.try_get("took_ms")?)),
                        deleted: decode_counts(&row.try_get::<String, _>("deleted")?),
                        accounts_purged: count(row.try_get("accounts_purged")?),
                        failures: count(row.try_get("failures")?),
                        recovered: count(row.try_get("recovered")?),
                    },
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(sqlx_err("recent sweeps"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_and_refuse_free_text() {
        let mut deleted = BTreeMap::new();
        deleted.insert("ended_job_input".to_owned(), 3);
        deleted.insert("expired_output".to_owned(), 12);
        let text = encode_counts(&deleted).unwrap_or_default();
        assert_eq!(text, "ended_job_input=3;expired_output=12");
        assert_eq!(decode_counts(&text), deleted);
        for bad in ["", "Ada", "a=b", "a;b", "inputs/acct/1"] {
            let mut one = BTreeMap::new();
            one.insert(bad.to_owned(), 1);
            assert!(encode_counts(&one).is_err(), "{bad:?}");
        }
    }
}
