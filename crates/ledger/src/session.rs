//! Personalisation sessions: an account's temporary session (created with a TTL, ended once),
//! the photos uploaded to it, and which of them a `personalize` job took. The session's objects
//! live under `sessions/<account>/<session>/`; the rows say which exist and who may use them.
//!
//! A session ends once: on request, past its TTL, or with its account's erasure. Ending it
//! deletes its photo rows (they hold digests and are of no use after); the row of the session
//! itself stays (it is how ingest answers `410` for it) until the account is purged.

use std::time::Duration;

use clipfleet_proto::{AccountId, JobId, MAX_SESSION_PHOTOS, PhotoId, SessionId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::{Any, FromRow, Row};

use crate::error::{LedgerError, sqlx_err};
use crate::job::{JOB_COLUMNS, Job, PERSONALIZE_KIND};
use crate::ledger::{Ledger, decode_error, duration_ms, from_ms, to_ms};

/// Longest media type kept, in bytes.
const MAX_CONTENT_TYPE_BYTES: usize = 128;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEndReason {
    /// The holder deleted it (`DELETE /v1/sessions/{id}`).
    Deleted,
    /// Its TTL passed.
    Expired,
    /// Its account was erased (on request, or because the holder is under 14).
    AccountErased,
}

impl SessionEndReason {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEndReason::Deleted => "deleted",
            SessionEndReason::Expired => "expired",
            SessionEndReason::AccountErased => "account_erased",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "deleted" => SessionEndReason::Deleted,
            "expired" => SessionEndReason::Expired,
            "account_erased" => SessionEndReason::AccountErased,
            _ => return None,
        })
    }
}

/// A session as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Names its prefix `sessions/<account>/<session>/`.
    pub id: SessionId,
    /// Whose session: its photos and its adapter serve this account only.
    pub account_id: AccountId,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its TTL ends it (`created_at + session_ttl`).
    pub expires_at: Timestamp,
    /// When it was ended (the first end; `None` while open, and for a session that only ran
    /// past its TTL and was not ended since).
    pub ended_at: Option<Timestamp>,
    /// Why it was ended.
    pub end_reason: Option<SessionEndReason>,
    /// When everything under its prefix but the `ended` marker was verified gone.
    pub objects_deleted_at: Option<Timestamp>,
}

impl Session {
    /// Whether it may still take photos and serve jobs at `now`: not ended, TTL not passed.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

const SESSION_COLUMNS: &str =
    "id, account_id, created_at, expires_at, ended_at, end_reason, objects_deleted_at";

impl FromRow<'_, AnyRow> for Session {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let opt_ms = |column: &str| -> Result<Option<Timestamp>, sqlx::Error> {
            row.try_get::<Option<i64>, _>(column)?
                .map(|ms| from_ms(column, ms))
                .transpose()
        };
        let id: String = row.try_get("id")?;
        let account_id: String = row.try_get("account_id")?;
        let reason: Option<String> = row.try_get("end_reason")?;
        Ok(Session {
            id: id
                .parse()
                .map_err(|_| decode_error("id", "not a session id"))?,
            account_id: AccountId::new(account_id)
                .map_err(|_| decode_error("account_id", "not an account id"))?,
            created_at: from_ms("created_at", row.try_get("created_at")?)?,
            expires_at: from_ms("expires_at", row.try_get("expires_at")?)?,
            ended_at: opt_ms("ended_at")?,
            end_reason: reason
                .map(|text| {
                    SessionEndReason::parse(&text)
                        .ok_or_else(|| decode_error("end_reason", format!("unknown {text:?}")))
                })
                .transpose()?,
            objects_deleted_at: opt_ms("objects_deleted_at")?,
        })
    }
}

/// A photo ingest stored under a session's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSessionPhoto {
    /// Names its object `sessions/<account>/<session>/photos/<id>`.
    pub id: PhotoId,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext, 64 lowercase hex digits: the worker checks it after unsealing.
    pub sha256: String,
    /// The media type ingest sniffed (`image/jpeg`).
    pub content_type: String,
}

/// A session's photo as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPhotoRow {
    /// The session.
    pub session_id: SessionId,
    /// The photo.
    pub id: PhotoId,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext (hex).
    pub sha256: String,
    /// The media type.
    pub content_type: String,
    /// When it was uploaded.
    pub uploaded_at: Timestamp,
    /// The `personalize` job that took it; `None` while it waits for one.
    pub personalize_job: Option<JobId>,
}

const PHOTO_COLUMNS: &str =
    "session_id, id, size, sha256, content_type, uploaded_at, personalize_job";

impl FromRow<'_, AnyRow> for SessionPhotoRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let session: String = row.try_get("session_id")?;
        let id: String = row.try_get("id")?;
        let size: i64 = row.try_get("size")?;
        let job: Option<String> = row.try_get("personalize_job")?;
        Ok(SessionPhotoRow {
            session_id: session
                .parse()
                .map_err(|_| decode_error("session_id", "not a session id"))?,
            id: id
                .parse()
                .map_err(|_| decode_error("id", "not a photo id"))?,
            size: u64::try_from(size).map_err(|_| decode_error("size", "negative"))?,
            sha256: row.try_get("sha256")?,
            content_type: row.try_get("content_type")?,
            uploaded_at: from_ms("uploaded_at", row.try_get("uploaded_at")?)?,
            personalize_job: job
                .map(|job| {
                    job.parse()
                        .map_err(|_| decode_error("personalize_job", "not a job id"))
                })
                .transpose()?,
        })
    }
}

impl NewSessionPhoto {
    fn validate(&self) -> Result<(), LedgerError> {
        let hex = self.sha256.len() == 64
            && self
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex {
            return Err(LedgerError::invalid(
                "sha256 must be 64 lowercase hex digits",
            ));
        }
        let media = &self.content_type;
        if media.is_empty()
            || media.len() > MAX_CONTENT_TYPE_BYTES
            || !media.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(LedgerError::invalid(format!(
                "content_type must be 1..={MAX_CONTENT_TYPE_BYTES} visible ASCII characters"
            )));
        }
        i64::try_from(self.size).map_err(|_| LedgerError::invalid("size is out of range"))?;
        Ok(())
    }
}

impl Ledger {
    /// Opens a session for `account`, now, ending by its TTL at `now + ttl`. `NotFound` if
    /// the ledger has no such account (the caller checks that it is active).
    pub async fn create_session(
        &self,
        account: &AccountId,
        ttl: Duration,
    ) -> Result<Session, LedgerError> {
        let now = self.now();
        let created = to_ms(now)?;
        let expires = created
            .checked_add(duration_ms(ttl)?)
            .ok_or_else(|| LedgerError::invalid("session ttl is out of range"))?;
        sqlx::query_as::<_, Session>(&format!(
            "INSERT INTO sessions (id, account_id, created_at, expires_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2) \
             RETURNING {SESSION_COLUMNS}"
        ))
        .bind(SessionId::generate().to_string())
        .bind(account.as_str())
        .bind(created)
        .bind(expires)
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_err("create session"))?
        .ok_or_else(|| LedgerError::not_found("no such account"))
    }

    /// The session, ended or not. `NotFound` if the ledger does not have it (never had, or
    /// purged with its account).
    pub async fn get_session(&self, id: SessionId) -> Result<Session, LedgerError> {
        sqlx::query_as::<_, Session>(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_err("get session"))?
        .ok_or_else(|| LedgerError::not_found(format!("no session {id}")))
    }

    /// Records a photo stored under the session's prefix, now. `Conflict` when the session is
    /// not open (ended, or its TTL passed) or already holds [`MAX_SESSION_PHOTOS`] photos no
    /// job took yet; `Conflict` too for a photo id recorded before. `NotFound` for an unknown
    /// session.
    pub async fn add_session_photo(
        &self,
        session: SessionId,
        photo: &NewSessionPhoto,
    ) -> Result<SessionPhotoRow, LedgerError> {
        photo.validate()?;
        let now = to_ms(self.now())?;
        let mut tx = self.pool.begin().await.map_err(sqlx_err("begin"))?;
        // Locks the session's row: an end (or another upload) waits for us or wins before us.
        let open = sqlx::query::<Any>(
            "UPDATE sessions SET expires_at = expires_at \
             WHERE id = $1 AND ended_at IS NULL AND expires_at > $2",
        )
        .bind(session.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err("lock session"))?
        .rows_affected();
        if open == 0 {
            drop(tx);
            self.get_session(session).await?;
            return Err(LedgerError::conflict("the session has ended"));
        }
        let waiting: i64 = sqlx::query::<Any>(
            "SELECT COUNT(*) AS n FROM session_photos \
             WHERE session_id = $1 AND personalize_job IS NULL",
        )
        .bind(session.to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(sqlx_err("count session photos"))?
        .try_get("n")
        .map_err(sqlx_err("count session photos"))?;
        if usize::try_from(waiting).unwrap_or(usize::MAX) >= MAX_SESSION_PHOTOS {
            return Err(LedgerError::conflict(format!(
                "the session already holds {MAX_SESSION_PHOTOS} photos"
            )));
        }
        let row = sqlx::query_as::<_, SessionPhotoRow>(&format!(
            "INSERT INTO session_photos (session_id, id, size, sha256, content_type, \
             uploaded_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {PHOTO_COLUMNS}"
        ))
        .bind(session.to_string())
        .bind(photo.id.to_string())
        .bind(i64::try_from(photo.size).unwrap_or(i64::MAX))
        .bind(photo.sha256.as_str())
        .bind(photo.content_type.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(sqlx_err("add session photo"))?;
        tx.commit().await.map_err(sqlx_err("commit"))?;
        Ok(row)
    }

    /// The session's photos no `personalize` job took yet, oldest first (at most
    /// [`MAX_SESSION_PHOTOS`]). Empty for an ended session (its rows are gone).
    pub async fn unclaimed_session_photos(
        &self,
        session: SessionId,
    ) -> Result<Vec<SessionPhotoRow>, LedgerError> {
        sqlx::query_as::<_, SessionPhotoRow>(&format!(
            "SELECT {PHOTO_COLUMNS} FROM session_photos \
             WHERE session_id = $1 AND personalize_job IS NULL \
             ORDER BY uploaded_at, id LIMIT $2"
        ))
        .bind(session.to_string())
        .bind(i64::try_from(MAX_SESSION_PHOTOS).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list session photos"))
    }

    /// Gives `photos` to the `personalize` job `job`: only those no job took yet. Returns how
    /// many it took; fewer than asked means a concurrent job took the rest (the caller fails
    /// its job and [releases](Ledger::release_session_photos) what it took).
    pub async fn claim_session_photos(
        &self,
        session: SessionId,
        job: JobId,
        photos: &[PhotoId],
    ) -> Result<u64, LedgerError> {
        if photos.is_empty() {
            return Ok(0);
        }
        if photos.len() > MAX_SESSION_PHOTOS {
            return Err(LedgerError::invalid(format!(
                "a personalize job takes at most {MAX_SESSION_PHOTOS} photos"
            )));
        }
        let list = (3..3 + photos.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE session_photos SET personalize_job = $2 \
             WHERE session_id = $1 AND personalize_job IS NULL AND id IN ({list})"
        );
        let mut query = sqlx::query(&sql)
            .bind(session.to_string())
            .bind(job.to_string());
        for photo in photos {
            query = query.bind(photo.to_string());
        }
        Ok(query
            .execute(&self.pool)
            .await
            .map_err(sqlx_err("claim session photos"))?
            .rows_affected())
    }

    /// Hands back the photos `job` took (its publish was not confirmed, or it lost a race for
    /// them): a later `personalize` job may take them. Returns how many.
    pub async fn release_session_photos(&self, job: JobId) -> Result<u64, LedgerError> {
        Ok(sqlx::query(
            "UPDATE session_photos SET personalize_job = NULL WHERE personalize_job = $1",
        )
        .bind(job.to_string())
        .execute(&self.pool)
        .await
        .map_err(sqlx_err("release session photos"))?
        .rows_affected())
    }

    /// The session's `personalize` jobs, newest first.
    pub async fn personalize_jobs(&self, session: SessionId) -> Result<Vec<Job>, LedgerError> {
        sqlx::query_as::<_, Job>(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE session_id = $1 AND kind = $2 \
             ORDER BY submitted_at DESC, id DESC"
        ))
        .bind(session.to_string())
        .bind(PERSONALIZE_KIND)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list personalize jobs"))
    }

    /// Ends the session now for `reason` and deletes its photo rows. Idempotent: the first end
    /// wins (its instant and reason stay). Returns the session as it stands after. `NotFound`
    /// for an unknown session. Its objects are the caller's to delete (then
    /// [`Ledger::mark_session_objects_deleted`]); the janitor is the backstop.
    pub async fn end_session(
        &self,
        id: SessionId,
        reason: SessionEndReason,
    ) -> Result<Session, LedgerError> {
        let now = to_ms(self.now())?;
        let mut tx = self.pool.begin().await.map_err(sqlx_err("begin"))?;
        sqlx::query::<Any>(
            "UPDATE sessions SET ended_at = $2, end_reason = $3 \
             WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(id.to_string())
        .bind(now)
        .bind(reason.as_str())
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err("end session"))?;
        sqlx::query::<Any>("DELETE FROM session_photos WHERE session_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err("delete session photos"))?;
        tx.commit().await.map_err(sqlx_err("commit"))?;
        self.get_session(id).await
    }

    /// Records, now, that everything under the ended session's prefix but its `ended` marker
    /// is verified gone; its `personalize` jobs' photo and adapter are recorded as deleted
    /// with it (both lived under the prefix). An earlier record stays. `Conflict` while the
    /// session has not ended; `NotFound` for an unknown one.
    pub async fn mark_session_objects_deleted(
        &self,
        id: SessionId,
    ) -> Result<Session, LedgerError> {
        let now = to_ms(self.now())?;
        let mut tx = self.pool.begin().await.map_err(sqlx_err("begin"))?;
        let marked = sqlx::query::<Any>(
            "UPDATE sessions SET objects_deleted_at = COALESCE(objects_deleted_at, $2) \
             WHERE id = $1 AND ended_at IS NOT NULL",
        )
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_err("mark session objects deleted"))?
        .rows_affected();
        if marked == 0 {
            drop(tx);
            self.get_session(id).await?;
            return Err(LedgerError::conflict("the session has not ended"));
        }
        for (column, guard) in [
            ("input_deleted_at", "1 = 1"),
            ("output_deleted_at", "output_key IS NOT NULL"),
        ] {
            sqlx::query::<Any>(&format!(
                "UPDATE jobs SET {column} = $2 WHERE session_id = $1 AND kind = $3 \
                 AND ({guard}) AND {column} IS NULL"
            ))
            .bind(id.to_string())
            .bind(now)
            .bind(PERSONALIZE_KIND)
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err("mark personalize jobs' objects deleted"))?;
        }
        tx.commit().await.map_err(sqlx_err("commit"))?;
        self.get_session(id).await
    }

    /// Every session of the account, ended or not, oldest first (for its erasure).
    pub async fn sessions_of_account(
        &self,
        account: &AccountId,
    ) -> Result<Vec<Session>, LedgerError> {
        sqlx::query_as::<_, Session>(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE account_id = $1 \
             ORDER BY created_at, id"
        ))
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err("list sessions of account"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_reasons_round_trip() {
        for reason in [
            SessionEndReason::Deleted,
            SessionEndReason::Expired,
            SessionEndReason::AccountErased,
        ] {
            assert_eq!(SessionEndReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(SessionEndReason::parse("erased"), None);
    }

    #[test]
    fn photos_are_checked_before_the_database() {
        let good = NewSessionPhoto {
            id: PhotoId::generate(),
            size: 10,
            sha256: "ab".repeat(32),
            content_type: "image/jpeg".into(),
        };
        assert!(good.validate().is_ok());
        for bad in [
            NewSessionPhoto {
                sha256: "AB".repeat(32),
                ..good.clone()
            },
            NewSessionPhoto {
                sha256: "ab".into(),
                ..good.clone()
            },
            NewSessionPhoto {
                content_type: "image/jpeg; x=\"a b\"".into(),
                ..good.clone()
            },
            NewSessionPhoto {
                size: u64::MAX,
                ..good.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_session_is_open_until_it_ends_or_expires() {
        let session = Session {
            id: SessionId::generate(),
            account_id: AccountId::new("a".to_owned()).expect("an account id"),
            created_at: Timestamp::from_unix_ms(0),
            expires_at: Timestamp::from_unix_ms(100),
            ended_at: None,
            end_reason: None,
            objects_deleted_at: None,
        };
        assert!(session.is_open(Timestamp::from_unix_ms(99)));
        assert!(!session.is_open(Timestamp::from_unix_ms(100)));
        let ended = Session {
            ended_at: Some(Timestamp::from_unix_ms(5)),
            end_reason: Some(SessionEndReason::Deleted),
            ..session
        };
        assert!(!ended.is_open(Timestamp::from_unix_ms(6)));
    }
}
