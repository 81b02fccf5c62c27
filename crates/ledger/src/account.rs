//! Accounts: status, the age and hold flags the retention rules read, and the personal fields the
//! privacy policy lists. Those fields are cleared when an account is purged; the row stays as a
//! tombstone so in-flight work can see the account is gone.

use std::fmt;

use clipfleet_proto::{AccountId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::error::{LedgerError, sqlx_err};
use crate::ledger::{Ledger, decode_error, from_flag, from_ms, to_ms};

/// Longest personal field kept, in bytes (an email address may be 320).
const MAX_PERSONAL_FIELD_BYTES: usize = 512;

/// Where an account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    /// May submit jobs.
    Active,
    /// Blocked for now (abuse, payment); may come back.
    Suspended,
    /// Ended; its data lives until `terminated_at` plus the retention period.
    Terminated,
}

impl AccountStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Terminated => "terminated",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "active" => AccountStatus::Active,
            "suspended" => AccountStatus::Suspended,
            "terminated" => AccountStatus::Terminated,
            _ => return None,
        })
    }
}

/// The personal fields of the privacy policy. `Debug` shows which are set, never their values,
/// so a logged account leaks nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PersonalFields {
    /// Contact and login.
    pub email: Option<String>,
    /// Shown in the app.
    pub username: Option<String>,
    /// A password hash made by the app backend (never a password).
    pub password_hash: Option<String>,
    /// The person's name.
    pub name: Option<String>,
    /// As the person gave it.
    pub gender: Option<String>,
    /// Contact and login.
    pub phone: Option<String>,
    /// The third-party login the account uses (provider and subject).
    pub third_party_login: Option<String>,
}

impl PersonalFields {
    fn fields(&self) -> [(&'static str, &Option<String>); 7] {
        [
            ("email", &self.email),
            ("username", &self.username),
            ("password_hash", &self.password_hash),
            ("name", &self.name),
            ("gender", &self.gender),
            ("phone", &self.phone),
            ("third_party_login", &self.third_party_login),
        ]
    }

    fn validate(&self) -> Result<(), LedgerError> {
        for (column, value) in self.fields() {
            if let Some(value) = value
                && (value.len() > MAX_PERSONAL_FIELD_BYTES || value.contains('\0'))
            {
                return Err(LedgerError::invalid(format!(
                    "{column} is over {MAX_PERSONAL_FIELD_BYTES} bytes or holds a NUL"
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for PersonalFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("PersonalFields");
        for (column, value) in self.fields() {
            out.field(column, &value.as_ref().map(|_| "<redacted>"));
        }
        out.finish()
    }
}

/// What the app backend knows of a new account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The app backend's id for it.
    pub id: AccountId,
    /// `YYYY-MM-DD`, when known.
    pub birth_date: Option<String>,
    /// The holder is under 14: ingest refuses such accounts and the janitor erases them.
    pub under_14: bool,
    /// The personal fields.
    pub personal: PersonalFields,
}

/// An account as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The app backend's id.
    pub id: AccountId,
    /// Where it stands.
    pub status: AccountStatus,
    /// When the ledger first saw it.
    pub created_at: Timestamp,
    /// Last change of any field.
    pub updated_at: Timestamp,
    /// When it ended: the retention period counts from here.
    pub terminated_at: Option<Timestamp>,
    /// `YYYY-MM-DD`, when known.
    pub birth_date: Option<String>,
    /// The holder is under 14.
    pub under_14: bool,
    /// Retention is suspended while a legal hold is on.
    pub legal_hold: bool,
    /// When erasure was asked for (by the holder, or because the holder is under 14).
    pub erasure_requested_at: Option<Timestamp>,
    /// When the personal fields were purged; the row is a tombstone from then on.
    pub tombstoned_at: Option<Timestamp>,
    /// The personal fields (all `None` on a tombstone).
    pub personal: PersonalFields,
}

pub(crate) const ACCOUNT_COLUMNS: &str = "id, status, created_at, updated_at, terminated_at, birth_date, \
    under_14, legal_hold, erasure_requested_at, tombstoned_at, email, username, password_hash, \
    name, gender, phone, third_party_login";

impl FromRow<'_, AnyRow> for Account {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let id: String = row.try_get("id")?;
        let status: String = row.try_get("status")?;
        let opt_ms = |column: &str| -> Result<Option<Timestamp>, sqlx::Error> {
            row.try_get::<Option<i64>, _>(column)?
                .map(|ms| from_ms(column, ms))
                .transpose()
        };
        Ok(Account {
            id: AccountId::new(id).map_err(|err| decode_error("id", err.to_string()))?,
            status: AccountStatus::parse(&status)
                .ok_or_else(|| decode_error("status", format!("unknown status {status:?}")))?,
            created_at: from_ms("created_at", row.try_get("created_at")?)?,
            updated_at: from_ms("updated_at", row.try_get("updated_at")?)?,
            terminated_at: opt_ms("terminated_at")?,
            birth_date: row.try_get("birth_date")?,
            under_14: from_flag("under_14", row.try_get("under_14")?)?,
            legal_hold: from_flag("legal_hold", row.try_get("legal_hold")?)?,
            erasure_requested_at: opt_ms("erasure_requested_at")?,
            tombstoned_at: opt_ms("tombstoned_at")?,
            personal: PersonalFields {
                email: row.try_get("email")?,
                username: row.try_get("username")?,
                password_hash: row.try_get("password_hash")?,
                name: row.try_get("name")?,
                gender: row.try_get("gender")?,
                phone: row.try_get("phone")?,
                third_party_login: row.try_get("third_party_login")?,
            },
        })
    }
}

/// Checks the `YYYY-MM-DD` shape and that month and day are in range.
fn validate_birth_date(date: &str) -> Result<(), LedgerError> {
    let bad = || LedgerError::invalid("birth_date is not a YYYY-MM-DD date");
    let parts: Vec<&str> = date.split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        return Err(bad());
    };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return Err(bad());
    }
    let number = |text: &str| -> Result<u32, LedgerError> {
        if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (_, month, day) = (number(year)?, number(month)?, number(day)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    Ok(())
}

impl Ledger {
    /// Adds an account, active. `Conflict` if the id is taken.
    pub async fn create_account(&self, account: &NewAccount) -> Result<Account, LedgerError> {
        if let Some(date) = &account.birth_date {
            validate_birth_date(date)?;
        }
        account.personal.validate()?;
        let now = to_ms(self.now())?;
        let p = &account.personal;
        sqlx::query_as::<_, Account>(&format!(
            "INSERT INTO accounts (id, status, created_at, updated_at, birth_date, under_14, \
             email, username, password_hash, name, gender, phone, third_party_login) \
             VALUES ($1, 'active', $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             RETURNING {ACCOUNT_COLUMNS}"
        ))
        .bind(account.id.as_str())
        .bind(now)
        .bind(account.birth_date.as_deref())
        .bind(i64::from(account.under_14))
        .bind(p.email.as_deref())
        .bind(p.username.as_deref())
        .bind(p.password_hash.as_deref())
        .bind(p.name.as_deref())
        .bind(p.gender.as_deref())
        .bind(p.phone.as_deref())
        .bind(p.third_party_login.as_deref())
        .fetch_one(&self.pool)
        .await
        .map_err(sqlx_err("create account"))
    }

    /// The account, tombstones included. `NotFound` if the ledger never had it (or purged it).
    pub async fn get_account(&self, id: &AccountId) -> Result<Account, LedgerError> {
        sqlx::query_as::<_, Account>(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_err("get account"))?
        .ok_or_else(|| LedgerError::not_found("no such account"))
    }

    /// Replaces the personal fields. `Conflict` on a tombstone: a purged account's data does
    /// not come back.
    pub async fn update_personal(
        &self,
        id: &AccountId,
        personal: &PersonalFields,
    ) -> Result<Account, LedgerError> {
        personal.validate()?;
        let updated = self
            .update_account(
                id,
                "update account",
                "email = $3, username = $4, password_hash = $5, name = $6, gender = $7, \
                 phone = $8, third_party_login = $9",
                "tombstoned_at IS NULL",
                |query| {
                    query
                        .bind(personal.email.clone())
                        .bind(personal.username.clone())
                        .bind(personal.password_hash.clone())
                        .bind(personal.name.clone())
                        .bind(personal.gender.clone())
                        .bind(personal.phone.clone())
                        .bind(personal.third_party_login.clone())
                },
            )
            .await?;
        updated.ok_or_else(|| LedgerError::conflict("the account is purged"))
    }

    /// Suspends an account or makes it active again. `Conflict` once it is terminated (that is
    /// final); `InvalidInput` for `Terminated` (use [`Ledger::terminate_account`]).
    pub async fn set_account_status(
        &self,
        id: &AccountId,
        status: AccountStatus,
    ) -> Result<Account, LedgerError> {
        if status == AccountStatus::Terminated {
            return Err(LedgerError::invalid(
                "terminate an account with terminate_account",
            ));
        }
        let updated = self
            .update_account(
                id,
                "set account status",
                "status = $3",
                "status <> 'terminated'",
                |query| query.bind(status.as_str()),
            )
            .await?;
        updated.ok_or_else(|| LedgerError::conflict("the account is terminated"))
    }

    /// Ends an account now; the retention period counts from the first termination (calling
    /// again changes nothing).
    pub async fn terminate_account(&self, id: &AccountId) -> Result<Account, LedgerError> {
        self.update_account(
            id,
            "terminate account",
            "status = 'terminated', terminated_at = COALESCE(terminated_at, $2)",
            "1 = 1",
            |query| query,
        )
        .await?
        .ok_or_else(LedgerError::internal_missing)
    }

    /// Puts a legal hold on or takes it off: while on, retention deletes nothing of the account.
    pub async fn set_legal_hold(&self, id: &AccountId, hold: bool) -> Result<Account, LedgerError> {
        self.update_account(id, "set legal hold", "legal_hold = $3", "1 = 1", |query| {
            query.bind(i64::from(hold))
        })
        .await?
        .ok_or_else(LedgerError::internal_missing)
    }

    /// Records an erasure request (the first one counts) and terminates the account.
    pub async fn request_erasure(&self, id: &AccountId) -> Result<Account, LedgerError> {
        self.update_account(
            id,
            "request erasure",
            "status = 'terminated', terminated_at = COALESCE(terminated_at, $2), \
             erasure_requested_at = COALESCE(erasure_requested_at, $2)",
            "1 = 1",
            |query| query,
        )
        .await?
        .ok_or_else(LedgerError::internal_missing)
    }

    /// The holder turned out to be under 14: the policy says delete at once, so this flags the
    /// account, terminates it and requests its erasure in one step.
    pub async fn flag_under_14(&self, id: &AccountId) -> Result<Account, LedgerError> {
        self.update_account(
            id,
            "flag under 14",
            "under_14 = 1, status = 'terminated', terminated_at = COALESCE(terminated_at, $2), \
             erasure_requested_at = COALESCE(erasure_requested_at, $2)",
            "1 = 1",
            |query| query,
        )
        .await?
        .ok_or_else(LedgerError::internal_missing)
    }

    /// Purges the account's personal fields and birth date, keeping a terminated tombstone.
    /// Idempotent: the first purge's instant stays.
    pub async fn tombstone_account(&self, id: &AccountId) -> Result<Account, LedgerError> {
        self.update_account(
            id,
            "tombstone account",
            "status = 'terminated', terminated_at = COALESCE(terminated_at, $2), \
             tombstoned_at = COALESCE(tombstoned_at, $2), birth_date = NULL, email = NULL, \
             username = NULL, password_hash = NULL, name = NULL, gender = NULL, phone = NULL, \
             third_party_login = NULL",
            "1 = 1",
            |query| query,
        )
        .await?
        .ok_or_else(LedgerError::internal_missing)
    }

    /// Sets (or clears) the holder's birth date. Refused on a tombstone: its personal data is
    /// gone for good.
    pub async fn set_birth_date(
        &self,
        id: &AccountId,
        birth_date: Option<&str>,
    ) -> Result<Account, LedgerError> {
        if let Some(date) = birth_date {
            validate_birth_date(date)?;
        }
        let owned = birth_date.map(str::to_owned);
        self.update_account(
            id,
            "set birth date",
            "birth_date = $3",
            "tombstoned_at IS NULL",
            |query| query.bind(owned),
        )
        .await?
        .ok_or_else(|| LedgerError::conflict("the account is erased"))
    }

    /// One `UPDATE … RETURNING` on an account: `$1` is the id, `$2` now, `$3…` what `bind`
    /// adds. `NotFound` if there is no such account; `Ok(None)` if it exists but `guard` is
    /// false for it.
    async fn update_account(
        &self,
        id: &AccountId,
        what: &'static str,
        set: &str,
        guard: &str,
        bind: impl for<'a> FnOnce(AccountQuery<'a>) -> AccountQuery<'a>,
    ) -> Result<Option<Account>, LedgerError> {
        let now = to_ms(self.now())?;
        let sql = format!(
            "UPDATE accounts SET {set}, updated_at = $2 WHERE id = $1 AND ({guard}) \
             RETURNING {ACCOUNT_COLUMNS}"
        );
        let query = sqlx::query_as::<_, Account>(&sql)
            .bind(id.as_str())
            .bind(now);
        let updated = bind(query)
            .fetch_optional(&self.pool)
            .await
            .map_err(sqlx_err(what))?;
        if updated.is_none() {
            // Missing, or there and guarded: tell the two apart.
            self.get_account(id).await?;
        }
        Ok(updated)
    }
}

/// A query returning accounts, for [`Ledger::update_account`]'s binders.
type AccountQuery<'a> = sqlx::query::QueryAs<'a, sqlx::Any, Account, sqlx::any::AnyArguments<'a>>;

impl LedgerError {
    fn internal_missing() -> LedgerError {
        LedgerError::new(
            crate::LedgerErrorKind::Internal,
            "an account vanished during an unguarded update",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_personal_values() {
        let fields = PersonalFields {
            email: Some("ada@example.com".into()),
            name: Some("Ada Lovelace".into()),
            ..PersonalFields::default()
        };
        let text = format!("{fields:?}");
        assert!(
            !text.contains("ada@example.com") && !text.contains("Lovelace"),
            "{text}"
        );
        assert!(text.contains("email: Some(\"<redacted>\")"), "{text}");
        assert!(text.contains("phone: None"), "{text}");
    }

    #[test]
    fn birth_dates_are_checked() {
        for good in ["2011-02-28", "1970-12-31"] {
            assert!(validate_birth_date(good).is_ok(), "{good}");
        }
        for bad in [
            "2011-2-28",
            "2011-13-01",
            "2011-00-10",
            "20110228",
            "2011-02-3x",
            "",
        ] {
            assert!(validate_birth_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            AccountStatus::Active,
            AccountStatus::Suspended,
            AccountStatus::Terminated,
        ] {
            assert_eq!(AccountStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(AccountStatus::parse("deleted"), None);
    }
}
