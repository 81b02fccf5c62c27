//! The crate's one error type: a small `Copy` kind callers match on, a lowercase message and an
//! optional source. sqlx's errors become kinds here and nowhere else.

use std::fmt;

/// What went wrong, in the few categories callers act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerErrorKind {
    /// No such account, job or row.
    NotFound,
    /// The write contradicts a row already there: an id taken, or an idempotency key reused
    /// with another request body.
    Conflict,
    /// The arguments are wrong: a bad URL, a value out of range or of the wrong shape, a row
    /// referring to an account that does not exist.
    InvalidInput,
    /// The database is unreachable, busy or aborted us (pool timeout, I/O, deadlock, SQLite
    /// busy). Retryable.
    Unavailable,
    /// A bug, or something in the database that makes no sense (an undecodable row, a failed
    /// migration).
    Internal,
}

impl LedgerErrorKind {
    /// Whether trying the same call again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, LedgerErrorKind::Unavailable)
    }

    fn as_str(self) -> &'static str {
        match self {
            LedgerErrorKind::NotFound => "not found",
            LedgerErrorKind::Conflict => "conflict",
            LedgerErrorKind::InvalidInput => "invalid input",
            LedgerErrorKind::Unavailable => "unavailable",
            LedgerErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for LedgerErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ledger error. Messages never carry personal data: they name columns and ids, not values.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct LedgerError {
    kind: LedgerErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl LedgerError {
    /// An error of `kind` described by `message` (lowercase, no trailing period).
    pub fn new(kind: LedgerErrorKind, message: impl Into<String>) -> Self {
        LedgerError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The category callers match on.
    pub fn kind(&self) -> LedgerErrorKind {
        self.kind
    }

    /// The description without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        LedgerError::new(LedgerErrorKind::InvalidInput, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        LedgerError::new(LedgerErrorKind::NotFound, message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        LedgerError::new(LedgerErrorKind::Conflict, message)
    }

    /// sqlx's errors, converted in this one place. `what` names the operation (`insert job`).
    pub(crate) fn from_sqlx(what: &str, err: sqlx::Error) -> Self {
        use sqlx::Error as E;
        use sqlx::error::ErrorKind as Db;
        let err = match err {
            E::Migrate(migrate) => return LedgerError::from_migrate(what, *migrate),
            other => other,
        };
        let (kind, detail) = match &err {
            E::Database(db) => {
                let kind = match db.kind() {
                    Db::UniqueViolation => LedgerErrorKind::Conflict,
                    Db::ForeignKeyViolation => LedgerErrorKind::NotFound,
                    Db::NotNullViolation | Db::CheckViolation => LedgerErrorKind::InvalidInput,
                    _ if is_transient(db.as_ref()) => LedgerErrorKind::Unavailable,
                    _ => LedgerErrorKind::Internal,
                };
                // The database's own message names constraints, never values (PostgreSQL puts
                // values in `detail`, which is left out).
                (kind, db.message().to_owned())
            }
            E::RowNotFound => (LedgerErrorKind::NotFound, "no row".to_owned()),
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
                (LedgerErrorKind::Unavailable, err.to_string())
            }
            E::Configuration(_) => (LedgerErrorKind::InvalidInput, err.to_string()),
            _ => (LedgerErrorKind::Internal, err.to_string()),
        };
        LedgerError::new(kind, format!("{what}: {detail}")).with_source(err)
    }

    /// Migration errors: a database error inside keeps its own kind; anything else (a checksum
    /// mismatch, a migration missing from this build, a dirty one) needs an operator.
    pub(crate) fn from_migrate(what: &str, err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(inner)
            | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => {
                LedgerError::from_sqlx(what, inner)
            }
            other => LedgerError::new(LedgerErrorKind::Internal, format!("{what}: {other}"))
                .with_source(other),
        }
    }
}

/// Whether a database error passes on retry: SQLite busy or locked (extended result codes, the
/// primary code in the low byte); PostgreSQL serialization failure, deadlock, connection
/// exceptions (class 08), insufficient resources (class 53), shutdown and cancellation (57).
fn is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return code
            .parse::<i32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6));
    }
    matches!(
        &*code,
        "40001" | "40P01" | "57014" | "57P01" | "57P02" | "57P03"
    ) || code.starts_with("08")
        || code.starts_with("53")
}

/// Shorthand the repository modules use: `.map_err(sqlx_err("insert job"))`.
pub(crate) fn sqlx_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> LedgerError {
    move |err| LedgerError::from_sqlx(what, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_kind_then_message() {
        let err = LedgerError::conflict("idempotency key reused with another request");
        assert_eq!(
            err.to_string(),
            "conflict: idempotency key reused with another request"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn pool_and_io_failures_are_retryable() {
        for err in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let err = LedgerError::from_sqlx("get job", err);
            assert_eq!(err.kind(), LedgerErrorKind::Unavailable);
            assert!(err.is_retryable());
            assert!(err.message().starts_with("get job: "), "{err}");
        }
        let err = LedgerError::from_sqlx("get job", sqlx::Error::RowNotFound);
        assert_eq!(err.kind(), LedgerErrorKind::NotFound);
        let err = LedgerError::from_sqlx(
            "migrate",
            sqlx::Error::Migrate(Box::new(sqlx::migrate::MigrateError::VersionMissing(3))),
        );
        assert_eq!(err.kind(), LedgerErrorKind::Internal);
    }
}
