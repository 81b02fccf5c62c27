//! The deletion audit: what was deleted, why, when, by whom, and whether it was verified gone
//! (`head` → not found). It records ids and object keys only, never content: its fields accept
//! only key-like text, so a name or an email address cannot slip in.

use clipfleet_proto::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::error::{LedgerError, sqlx_err};
use crate::ledger::{Ledger, decode_error, from_flag, from_ms, to_ms};
use crate::usage::MAX_LIST_LIMIT;

/// Longest subject id, target or actor, in bytes.
const MAX_FIELD_BYTES: usize = 1024;

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

text_enum!(
    /// What kind of thing a deletion was about.
    SubjectKind {
        /// An account (its row, or everything it owned).
        Account = "account",
        /// A job (its photo, its video, its row).
        Job = "job",
        /// Usage records.
        Usage = "usage",
        /// A temporary personalised-model session.
        Session = "session",
    }
);

text_enum!(
    /// Why something was deleted: the rule of DESIGN.md §8 that demanded it.
    DeletionReason {
        /// The photo, once the video was stored or the job ended.
        InputConsumed = "input_consumed",
        /// A photo older than `input_max_age` (the janitor's backstop).
        InputMaxAge = "input_max_age",
        /// A video past `output_ttl`.
        OutputTtl = "output_ttl",
        /// The holder asked for a job's media to be deleted.
        DeleteRequest = "delete_request",
        /// Six months after the account ended.
        AccountRetention = "account_retention",
        /// The holder asked for erasure.
        ErasureRequest = "erasure_request",
        /// The holder is under 14.
        UnderAge = "under_age",
        /// Objects no ledger row accounts for (a crash between steps).
        Orphan = "orphan",
        /// Usage records past `usage_max_age`.
        UsageMaxAge = "usage_max_age",
        /// Session artifacts at session end or TTL.
        SessionEnded = "session_ended",
        /// An erased account's tombstone, once no job of the account can still run.
        TombstoneExpired = "tombstone_expired",
    }
);

/// A deletion to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeletion {
    /// What kind of thing it was about.
    pub subject_kind: SubjectKind,
    /// The account, job or session id.
    pub subject_id: String,
    /// What went: an object key, or a table name for rows.
    pub target: String,
    /// The rule that demanded it.
    pub reason: DeletionReason,
    /// Who deleted it (`janitor`, `worker`, `ingest`, `operator:<login>`).
    pub actor: String,
    /// Whether a check after the delete found it gone.
    pub verified: bool,
}

/// A recorded deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// A ULID.
    pub id: String,
    /// When it was recorded.
    pub at: Timestamp,
    /// What was recorded.
    pub deletion: NewDeletion,
}

/// Which deletions [`Ledger::list_deletions`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeletionFilter {
    /// Only those about this subject.
    pub subject: Option<(SubjectKind, String)>,
    /// Only those recorded at or after this instant.
    pub since: Option<Timestamp>,
}

impl FromRow<'_, AnyRow> for Deletion {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let kind: String = row.try_get("subject_kind")?;
        let reason: String = row.try_get("reason")?;
        Ok(Deletion {
            id: row.try_get("id")?,
            at: from_ms("at", row.try_get("at")?)?,
            deletion: NewDeletion {
                subject_kind: SubjectKind::parse(&kind)
                    .ok_or_else(|| decode_error("subject_kind", format!("unknown {kind:?}")))?,
                subject_id: row.try_get("subject_id")?,
                target: row.try_get("target")?,
                reason: DeletionReason::parse(&reason)
                    .ok_or_else(|| decode_error("reason", format!("unknown {reason:?}")))?,
                actor: row.try_get("actor")?,
                verified: from_flag("verified", row.try_get("verified")?)?,
            },
        })
    }
}

/// Ids, object keys, table names and actor names: letters, digits and `_ . : / -`. No spaces
/// and no `@`, so free text (a name, an email address) is refused.
fn check_key_like(column: &str, text: &str) -> Result<(), LedgerError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.:/-".contains(c);
    if text.is_empty() || text.len() > MAX_FIELD_BYTES || !text.chars().all(allowed) {
        return Err(LedgerError::invalid(format!(
            "{column} must be 1..={MAX_FIELD_BYTES} of [A-Za-z0-9_.:/-]"
        )));
    }
    Ok(())
}

impl NewDeletion {
    pub(crate) fn validate(&self) -> Result<(), LedgerError> {
        check_key_like("subject_id", &self.subject_id)?;
        check_key_like("target", &self.target)?;
        check_key_like("actor", &self.actor)
    }
}

const DELETION_COLUMNS: &str = "id, subject_kind, subject_id, target, reason, at, actor, verified";

impl Ledger {
    /// Writes a deletion to the audit, at the clock's now.
    pub async fn record_deletion(&self, deletion: &NewDeletion) -> Result<Deletion, LedgerError> {
        deletion.validate()?;
        let record = Deletion {
            id: ulid::Ulid::new().to_string(),
            at: self.now(),
            deletion: deletion.clone(),
        };
        sqlx::query(&format!(
            "INSERT INTO deletions ({DELETION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(record.id.as_str())
        .bind(deletion.subject_kind.as_str())
        .bind(deletion.subject_id.as_str())
        .bind(deletion.target.as_str())
        .bind(deletion.reason.as_str())
        .bind(to_ms(record.at)?)
        .bind(deletion.actor.as_str())
        .bind(i64::from(deletion.verified))
        .execute(&self.pool)
        .await
        .map_err(sqlx_err("record deletion"))?;
        Ok(record)
    }

    /// Recorded deletions matching `filter`, oldest first, at most `limit` (≤ 1000).
    pub async fn list_deletions(
        &self,
        filter: &DeletionFilter,
        limit: u32,
    ) -> Result<Vec<Deletion>, LedgerError> {
        let (kind, id) = match &filter.subject {
            Some((kind, id)) => (Some(kind.as_str()), Some(id.as_str())),
            None => (None, None),
        };
        let since = filter.since.map(to_ms).transpose()?;
        // `COALESCE(param, column)` is "no filter" when the parameter is NULL, in both dialects.
        sqlx::query_as::<_, Deletion>(&format!(
            "SELECT {DELETION_COLUMNS} FROM deletions \
             WHERE subject_kind = COALESCE($1, subject_kind) \
             AND subject_id = COALESCE($2, subject_id) AND at >= COALESCE($3, at) \
             ORDER BY at, id LIMIT $4"
        ))
        .bind(kind)
        .bind(id)
        .bind(since)
        .bind(i64::from(limit.min(MAX_LIST_LIMIT)))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list deletions"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_cannot_enter_the_audit() {
        assert!(check_key_like("target", "outputs/acct_1/01J0000000000000000000000.mp4").is_ok());
        assert!(check_key_like("actor", "operator:ops-1").is_ok());
        for bad in ["ada@example.com", "Ada Lovelace", "", "a\nb", "ä"] {
            assert!(check_key_like("target", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn texts_round_trip() {
        for reason in [DeletionReason::InputConsumed, DeletionReason::UnderAge] {
            assert_eq!(DeletionReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(SubjectKind::parse("job"), Some(SubjectKind::Job));
        assert_eq!(SubjectKind::parse("photo"), None);
    }
}
