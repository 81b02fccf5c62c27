//! The `Ledger` handle: a pool opened by URL on PostgreSQL or SQLite, the embedded migrations,
//! and the conversions between our types and what the two databases store.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clipfleet_proto::Timestamp;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::clock::{Clock, SystemClock};
use crate::error::{LedgerError, sqlx_err};

/// The migrations, compiled in: the same files for both databases. Append new ones; never edit
/// one that has shipped (sqlx refuses a changed checksum).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "ledger", include_str!("../migrations/0001_ledger.sql")),
    (2, "janitor", include_str!("../migrations/0002_janitor.sql")),
    (3, "console", include_str!("../migrations/0003_console.sql")),
    (
        4,
        "sessions",
        include_str!("../migrations/0004_sessions.sql"),
    ),
];

/// How long a caller waits for a pooled connection before the call fails as `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections of a PostgreSQL or SQLite-file pool. SQLite writes one at a time anyway; a few
/// connections let reads proceed beside a write.
const MAX_CONNECTIONS: u32 = 8;
/// A pooled connection idle this long is pinged before it is handed out again.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Which database a ledger runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL: production and the services tests.
    Postgres,
    /// SQLite, in memory or in a file: the embedded default.
    Sqlite,
}

/// The ledger: accounts, jobs, usage records and the deletion audit. Cheap to clone (a pool
/// handle); every method is one transaction or one statement.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Where `created_at`, usage and deletion instants come from.
    pub(crate) clock: Arc<dyn Clock>,
}

impl Ledger {
    /// Opens the ledger at `url` with the system clock: `postgres://…` (or `postgresql://`),
    /// `sqlite::memory:`, `sqlite:///absolute/path` or `sqlite://relative/path` (the file is
    /// created if missing). Does not migrate: call [`Ledger::migrate`].
    pub async fn connect(url: &str) -> Result<Ledger, LedgerError> {
        Ledger::connect_with_clock(url, Arc::new(SystemClock)).await
    }

    /// [`Ledger::connect`] with an injected clock.
    pub async fn connect_with_clock(
        url: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Ledger, LedgerError> {
        sqlx::any::install_default_drivers();
        let (backend, url, in_memory) = resolve_url(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        let options = if in_memory {
            // Every connection to `sqlite::memory:` is a database of its own: one connection,
            // kept for the life of the pool, is the database.
            options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            // A connection back from a busy moment is not pinged before its next query: the
            // ping was a second round trip for every query ingest makes (issue 20's profile).
            // One idle longer than `PING_IF_IDLE_FOR` may have been cut meanwhile (a database
            // restart, a proxy's idle timeout): that one is still checked first.
            options
                .max_connections(MAX_CONNECTIONS)
                .test_before_acquire(false)
                .before_acquire(|connection, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_IF_IDLE_FOR {
                            sqlx::Connection::ping(connection).await?;
                        }
                        Ok(true)
                    })
                })
        };
        let pool = options.connect(&url).await.map_err(sqlx_err("connect"))?;
        let ledger = Ledger {
            pool,
            backend,
            clock,
        };
        if backend == Backend::Sqlite && !in_memory {
            // Readers never wait for the writer; persistent in the file once set.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&ledger.pool)
                .await
                .map_err(sqlx_err("set journal mode"))?;
        }
        Ok(ledger)
    }

    /// Applies the migrations this build has and the database lacks. Idempotent; on
    /// PostgreSQL an advisory lock keeps concurrent starters from racing.
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        let migrator = Migrator::new(Embedded)
            .await
            .map_err(|err| LedgerError::from_migrate("load migrations", err))?;
        migrator
            .run(&self.pool)
            .await
            .map_err(|err| LedgerError::from_migrate("migrate", err))
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for read-only inspection by operator tools and tests (schema checks). Writes
    /// go through the methods, which keep the rules.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The connectivity check behind `/readyz`.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(sqlx_err("ping"))
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// The compiled-in migrations as a sqlx migration source.
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Checks the scheme and completes a SQLite URL: files are created when missing.
fn resolve_url(url: &str) -> Result<(Backend, String, bool), LedgerError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if cfg!(feature = "postgres") {
            return Ok((Backend::Postgres, url.to_owned(), false));
        }
        return Err(LedgerError::invalid(
            "built without the `postgres` feature of clipfleet-ledger: postgres:// is not \
             available (the embedded build has SQLite only)",
        ));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        return Err(LedgerError::invalid(format!(
            "ledger url scheme {scheme:?} is not postgres, postgresql or sqlite"
        )));
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if path.is_empty() {
        return Err(LedgerError::invalid("sqlite ledger url names no file"));
    }
    if path == ":memory:" {
        return Ok((Backend::Sqlite, "sqlite::memory:".to_owned(), true));
    }
    let url = if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    Ok((Backend::Sqlite, url, false))
}

/// An instant as the BIGINT the tables hold.
pub(crate) fn to_ms(at: Timestamp) -> Result<i64, LedgerError> {
    i64::try_from(at.unix_ms())
        .map_err(|_| LedgerError::invalid(format!("instant {} ms is out of range", at.unix_ms())))
}

/// A duration in milliseconds as a BIGINT.
pub(crate) fn duration_ms(duration: Duration) -> Result<i64, LedgerError> {
    i64::try_from(duration.as_millis())
        .map_err(|_| LedgerError::invalid(format!("duration {duration:?} is out of range")))
}

/// A stored instant back as a `Timestamp`; a negative one is a corrupt row.
pub(crate) fn from_ms(column: &str, ms: i64) -> Result<Timestamp, sqlx::Error> {
    u64::try_from(ms)
        .map(Timestamp::from_unix_ms)
        .map_err(|_| decode_error(column, format!("negative instant {ms}")))
}

/// A stored 0/1 flag back as a bool.
pub(crate) fn from_flag(column: &str, flag: i64) -> Result<bool, sqlx::Error> {
    match flag {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(decode_error(column, format!("flag {other} is not 0 or 1"))),
    }
}

/// The error a row mapping returns for a value it cannot read.
pub(crate) fn decode_error(column: &str, reason: impl Into<String>) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: reason.into().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_urls_resolve_as_they_are() {
        for url in ["postgres://u@h/db", "postgresql://h/db"] {
            assert_eq!(
                resolve_url(url).unwrap(),
                (Backend::Postgres, url.to_owned(), false)
            );
        }
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn postgres_urls_are_refused_by_name_without_the_feature() {
        for url in ["postgres://u@h/db", "postgresql://h/db"] {
            let err = resolve_url(url).unwrap_err();
            assert_eq!(err.kind(), crate::LedgerErrorKind::InvalidInput, "{url}");
            assert!(err.to_string().contains("`postgres` feature"), "{err}");
        }
    }

    #[test]
    fn urls_resolve_to_backends() {
        let cases = [
            ("sqlite::memory:", Backend::Sqlite, "sqlite::memory:", true),
            (
                "sqlite://:memory:",
                Backend::Sqlite,
                "sqlite::memory:",
                true,
            ),
            (
                "sqlite:///var/l.db",
                Backend::Sqlite,
                "sqlite:///var/l.db?mode=rwc",
                false,
            ),
            (
                "sqlite://l.db",
                Backend::Sqlite,
                "sqlite://l.db?mode=rwc",
                false,
            ),
            (
                "sqlite://l.db?mode=ro",
                Backend::Sqlite,
                "sqlite://l.db?mode=ro",
                false,
            ),
        ];
        for (url, backend, resolved, in_memory) in cases {
            assert_eq!(
                resolve_url(url).unwrap(),
                (backend, resolved.to_owned(), in_memory),
                "{url}"
            );
        }
        for bad in ["mysql://h/db", "sqlite:", "sqlite://", "/tmp/x.db"] {
            let err = resolve_url(bad).unwrap_err();
            assert_eq!(err.kind(), crate::LedgerErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn instants_and_flags_refuse_what_does_not_fit() {
        assert!(to_ms(Timestamp::from_unix_ms(u64::MAX)).is_err());
        assert_eq!(to_ms(Timestamp::from_unix_ms(7)).unwrap(), 7);
        assert!(from_ms("at", -1).is_err());
        assert!(from_flag("verified", 2).is_err());
        assert!(from_flag("verified", 1).unwrap());
    }
}
