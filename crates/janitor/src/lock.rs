//! One active janitor: a leader lock held for as long as the janitor works.
//!
//! - PostgreSQL: `pg_try_advisory_lock` on a dedicated connection (not from the ledger's pool:
//!   the lock belongs to the session that took it). The key is derived from the schema the
//!   ledger lives in, so janitors of the same ledger contend and those of other ledgers (test
//!   schemas side by side) do not. The lock ends with the connection: a janitor that dies
//!   releases it, one whose connection breaks notices at its next check and gives up leading.
//! - SQLite file: an exclusive `flock`-style lock on `<file>.janitor.lock` beside the database.
//! - SQLite in memory: the database lives in one process; a lock in that process suffices.
//!
//! A build without the `postgres` feature has no PostgreSQL ledger, and so no advisory lock: a
//! postgres:// URL is refused when the ledger opens, and by `for_ledger_url` for callers that
//! resolve the lock first.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "postgres")]
use sqlx::{Connection, PgConnection, Row};

use crate::error::{JanitorError, JanitorErrorKind};

/// Where the lock lives, from the ledger's URL.
#[derive(Debug, Clone)]
pub enum LockSpec {
    /// An advisory lock in this PostgreSQL database.
    #[cfg(feature = "postgres")]
    Postgres(String),
    /// A lock file.
    File(PathBuf),
    /// A lock in this process.
    InProcess(Arc<tokio::sync::Mutex<()>>),
}

/// A held leader lock; dropping it releases it.
#[derive(Debug)]
pub enum LeaderLock {
    /// The connection holding the advisory lock.
    #[cfg(feature = "postgres")]
    Postgres(Box<PgConnection>),
    /// The locked file.
    File(File),
    /// The in-process guard.
    InProcess(tokio::sync::OwnedMutexGuard<()>),
}

/// A 64-bit key from text (FNV-1a), stable across builds and platforms.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn lock_key(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl LockSpec {
    /// The lock for the ledger at `url`.
    pub fn for_ledger_url(url: &str) -> Result<LockSpec, JanitorError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Ok(LockSpec::Postgres(url.to_owned()));
            #[cfg(not(feature = "postgres"))]
            return Err(JanitorError::new(
                JanitorErrorKind::InvalidInput,
                "leader lock: built without the `postgres` feature, a PostgreSQL ledger is not \
                 available",
            ));
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(JanitorError::new(
                JanitorErrorKind::InvalidInput,
                "ledger url is neither postgres nor sqlite",
            ));
        };
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        if path.is_empty() || path == ":memory:" {
            return Ok(LockSpec::InProcess(Arc::new(tokio::sync::Mutex::new(()))));
        }
        Ok(LockSpec::File(PathBuf::from(format!(
            "{path}.janitor.lock"
        ))))
    }

    /// Takes the lock if no other janitor holds it: `Ok(None)` when one does.
    pub async fn try_acquire(&self) -> Result<Option<LeaderLock>, JanitorError> {
        match self {
            #[cfg(feature = "postgres")]
            LockSpec::Postgres(url) => {
                let unavailable = |what: &str, err: sqlx::Error| {
                    JanitorError::new(
                        JanitorErrorKind::Unavailable,
                        format!("leader lock: {what}"),
                    )
                    .with_source(err)
                };
                let mut conn = PgConnection::connect(url)
                    .await
                    .map_err(|err| unavailable("connect", err))?;
                let schema: String = sqlx::query("SELECT current_schema() AS s")
                    .fetch_one(&mut conn)
                    .await
                    .and_then(|row| row.try_get("s"))
                    .map_err(|err| unavailable("read schema", err))?;
                let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS got")
                    .bind(lock_key(&format!("clipfleet-janitor:{schema}")))
                    .fetch_one(&mut conn)
                    .await
                    .and_then(|row| row.try_get("got"))
                    .map_err(|err| unavailable("try advisory lock", err))?;
                Ok(got.then(|| LeaderLock::Postgres(Box::new(conn))))
            }
            LockSpec::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let file = OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(&path)
                        .map_err(|err| {
                            JanitorError::new(JanitorErrorKind::Unavailable, "open lock file")
                                .with_source(err)
                        })?;
                    match file.try_lock() {
                        Ok(()) => Ok(Some(LeaderLock::File(file))),
                        Err(TryLockError::WouldBlock) => Ok(None),
                        Err(TryLockError::Error(err)) => Err(JanitorError::new(
                            JanitorErrorKind::Unavailable,
                            "lock the lock file",
                        )
                        .with_source(err)),
                    }
                })
                .await
                .map_err(|err| {
                    JanitorError::new(JanitorErrorKind::Internal, "lock task").with_source(err)
                })?
            }
            LockSpec::InProcess(mutex) => Ok(mutex
                .clone()
                .try_lock_owned()
                .ok()
                .map(LeaderLock::InProcess)),
        }
    }
}

impl LeaderLock {
    /// Whether the lock is still held: for PostgreSQL, whether its connection still answers.
    pub async fn still_held(&mut self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            LeaderLock::Postgres(conn) => conn.ping().await.is_ok(),
            LeaderLock::File(_) | LeaderLock::InProcess(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_lock() {
        #[cfg(feature = "postgres")]
        assert!(matches!(
            LockSpec::for_ledger_url("postgres://u@h/db").unwrap(),
            LockSpec::Postgres(_)
        ));
        #[cfg(not(feature = "postgres"))]
        assert!(
            LockSpec::for_ledger_url("postgres://u@h/db")
                .unwrap_err()
                .to_string()
                .contains("`postgres` feature")
        );
        assert!(matches!(
            LockSpec::for_ledger_url("sqlite::memory:").unwrap(),
            LockSpec::InProcess(_)
        ));
        match LockSpec::for_ledger_url("sqlite:///var/l.db?mode=rwc").unwrap() {
            LockSpec::File(path) => assert_eq!(path, PathBuf::from("/var/l.db.janitor.lock")),
            other => panic!("{other:?}"),
        }
        assert!(LockSpec::for_ledger_url("mysql://h/db").is_err());
    }

    #[test]
    fn keys_are_stable() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(
            lock_key("clipfleet-janitor:public"),
            lock_key("clipfleet-janitor:t1")
        );
    }

    #[tokio::test]
    async fn a_file_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LockSpec::File(dir.path().join("l.db.janitor.lock"));
        let held = spec.try_acquire().await.unwrap().expect("free lock");
        assert!(spec.try_acquire().await.unwrap().is_none());
        drop(held);
        assert!(spec.try_acquire().await.unwrap().is_some());
    }
}
