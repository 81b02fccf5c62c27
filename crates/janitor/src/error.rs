//! The crate's one error type: a small `Copy` kind callers match on, a lowercase message and an
//! optional source. Ledger and store errors become kinds here and nowhere else.

use std::fmt;

use clipfleet_ledger::{LedgerError, LedgerErrorKind};
use clipfleet_store::{StoreError, StoreErrorKind};

/// What went wrong, in the categories callers act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JanitorErrorKind {
    /// A backend (ledger, store, lock database) is unreachable or busy. Retryable.
    Unavailable,
    /// The configuration or an argument is wrong.
    InvalidInput,
    /// Another janitor holds the leader lock.
    NotLeader,
    /// A bug, or data that makes no sense.
    Internal,
}

impl JanitorErrorKind {
    /// Whether trying again later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            JanitorErrorKind::Unavailable | JanitorErrorKind::NotLeader
        )
    }

    /// The stable code of the kind (logs, metrics).
    pub fn code(self) -> &'static str {
        match self {
            JanitorErrorKind::Unavailable => "unavailable",
            JanitorErrorKind::InvalidInput => "invalid_input",
            JanitorErrorKind::NotLeader => "not_leader",
            JanitorErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for JanitorErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A janitor error. Messages name ids and keys, never personal data.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct JanitorError {
    kind: JanitorErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl JanitorError {
    /// An error of `kind`.
    pub fn new(kind: JanitorErrorKind, message: impl Into<String>) -> Self {
        JanitorError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The kind.
    pub fn kind(&self) -> JanitorErrorKind {
        self.kind
    }

    /// Attaches the cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// A ledger error met while doing `what`.
    pub fn ledger(what: &str, err: LedgerError) -> Self {
        let kind = match err.kind() {
            LedgerErrorKind::Unavailable => JanitorErrorKind::Unavailable,
            LedgerErrorKind::InvalidInput => JanitorErrorKind::InvalidInput,
            _ => JanitorErrorKind::Internal,
        };
        JanitorError::new(kind, format!("{what}: {err}")).with_source(err)
    }

    /// A store error met while doing `what`.
    pub fn store(what: &str, err: StoreError) -> Self {
        let kind = match err.kind() {
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout => JanitorErrorKind::Unavailable,
            StoreErrorKind::InvalidInput | StoreErrorKind::Unauthorized => {
                JanitorErrorKind::InvalidInput
            }
            _ => JanitorErrorKind::Internal,
        };
        JanitorError::new(kind, format!("{what}: {err}")).with_source(err)
    }
}
