//! Usage records: the policy's usage details (IP address, device id, what was done), one row per
//! request, kept for `retention.usage_max_age` and then expired by the janitor.

use std::net::IpAddr;

use clipfleet_proto::{AccountId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::error::{LedgerError, sqlx_err};
use crate::ledger::{Ledger, decode_error, from_ms, to_ms};

/// Longest device id kept, in bytes (it comes from a request header).
const MAX_DEVICE_ID_BYTES: usize = 128;

/// Longest action name, in bytes.
const MAX_ACTION_BYTES: usize = 64;

/// Most records one listing returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Most records [`Ledger::record_usage_many`] writes in one statement.
pub const MAX_USAGE_BATCH: usize = 256;

/// One request's usage details, as ingest sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUsage {
    /// The caller's account, when the request named one.
    pub account_id: Option<AccountId>,
    /// The client's address.
    pub ip: IpAddr,
    /// The device id header, when sent.
    pub device_id: Option<String>,
    /// What the request did (`job.submit`, `job.get`, `job.delete`): a short token.
    pub action: String,
}

/// A stored usage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// A ULID.
    pub id: String,
    /// The caller's account, when known.
    pub account_id: Option<AccountId>,
    /// When the request came.
    pub at: Timestamp,
    /// The client's address.
    pub ip: IpAddr,
    /// The device id header, when sent.
    pub device_id: Option<String>,
    /// What the request did.
    pub action: String,
}

impl FromRow<'_, AnyRow> for UsageRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let account: Option<String> = row.try_get("account_id")?;
        let ip: String = row.try_get("ip")?;
        Ok(UsageRecord {
            id: row.try_get("id")?,
            account_id: account
                .map(AccountId::new)
                .transpose()
                .map_err(|_| decode_error("account_id", "not an account id"))?,
            at: from_ms("at", row.try_get("at")?)?,
            ip: ip
                .parse()
                .map_err(|_| decode_error("ip", "not an IP address"))?,
            device_id: row.try_get("device_id")?,
            action: row.try_get("action")?,
        })
    }
}

impl NewUsage {
    /// Whether the ledger would take it: the device id and the action within their bounds.
    pub fn validate(&self) -> Result<(), LedgerError> {
        if let Some(device) = &self.device_id
            && (device.is_empty()
                || device.len() > MAX_DEVICE_ID_BYTES
                || device.chars().any(char::is_control))
        {
            return Err(LedgerError::invalid(format!(
                "device_id must be 1..={MAX_DEVICE_ID_BYTES} bytes without control characters"
            )));
        }
        let token = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._:-".contains(c);
        if self.action.is_empty()
            || self.action.len() > MAX_ACTION_BYTES
            || !self.action.chars().all(token)
        {
            return Err(LedgerError::invalid(format!(
                "action must be 1..={MAX_ACTION_BYTES} of [a-z0-9._:-]"
            )));
        }
        Ok(())
    }
}

impl Ledger {
    /// Records one request's usage details, at the clock's now.
    pub async fn record_usage(&self, usage: &NewUsage) -> Result<UsageRecord, LedgerError> {
        let mut records = self.record_usage_many(std::slice::from_ref(usage)).await?;
        records
            .pop()
            .ok_or_else(|| LedgerError::invalid("no usage record was written"))
    }

    /// Records several requests' usage details in one statement (one commit), each at the
    /// clock's now: ingest's group commit of its callers' records. All or none: every record
    /// must validate, and at most [`MAX_USAGE_BATCH`] are taken at once.
    pub async fn record_usage_many(
        &self,
        usages: &[NewUsage],
    ) -> Result<Vec<UsageRecord>, LedgerError> {
        if usages.len() > MAX_USAGE_BATCH {
            return Err(LedgerError::invalid(format!(
                "{} usage records at once, over {MAX_USAGE_BATCH}",
                usages.len()
            )));
        }
        let records = usages
            .iter()
            .map(|usage| {
                usage.validate()?;
                Ok(UsageRecord {
                    id: ulid::Ulid::new().to_string(),
                    account_id: usage.account_id.clone(),
                    at: self.now(),
                    ip: usage.ip,
                    device_id: usage.device_id.clone(),
                    action: usage.action.clone(),
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        if records.is_empty() {
            return Ok(records);
        }
        let rows: Vec<String> = (0..records.len())
            .map(|row| {
                let first = row * 6 + 1;
                let params: Vec<String> = (first..first + 6).map(|n| format!("${n}")).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO usage_records (id, account_id, at, ip, device_id, action) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for record in &records {
            query = query
                .bind(record.id.as_str())
                .bind(record.account_id.as_ref().map(AccountId::as_str))
                .bind(to_ms(record.at)?)
                .bind(record.ip.to_string())
                .bind(record.device_id.as_deref())
                .bind(record.action.as_str());
        }
        query
            .execute(&self.pool)
            .await
            .map_err(sqlx_err("record usage"))?;
        Ok(records)
    }

    /// An account's usage records, newest first, at most `limit` (≤ [`MAX_LIST_LIMIT`]): for
    /// the holder's data access requests and for audits.
    pub async fn list_usage(
        &self,
        account: &AccountId,
        limit: u32,
    ) -> Result<Vec<UsageRecord>, LedgerError> {
        sqlx::query_as::<_, UsageRecord>(
            "SELECT id, account_id, at, ip, device_id, action FROM usage_records \
             WHERE account_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(account.as_str())
        .bind(i64::from(limit.min(MAX_LIST_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list usage"))
    }

    /// Deletes the usage records made before `before`; returns how many went.
    pub async fn expire_usage(&self, before: Timestamp) -> Result<u64, LedgerError> {
        sqlx::query("DELETE FROM usage_records WHERE at < $1")
            .bind(to_ms(before)?)
            .execute(&self.pool)
            .await
            .map(|done| done.rows_affected())
            .map_err(sqlx_err("expire usage"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(action: &str, device: Option<&str>) -> NewUsage {
        NewUsage {
            account_id: None,
            ip: "192.0.2.7".parse().unwrap(),
            device_id: device.map(str::to_owned),
            action: action.to_owned(),
        }
    }

    #[test]
    fn actions_and_device_ids_are_checked() {
        assert!(usage("job.submit", Some("ios-1F2E")).validate().is_ok());
        assert!(usage("Job Submit", None).validate().is_err());
        assert!(usage("", None).validate().is_err());
        assert!(usage("job.get", Some("a\u{7}b")).validate().is_err());
        assert!(usage("job.get", Some(&"d".repeat(129))).validate().is_err());
    }
}
