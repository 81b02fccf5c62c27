//! The crate's one error type: a small `Copy` kind callers match on, a lowercase message, an
//! optional source, and the retry decision (`is_retryable`, `retry_after`) travelling with it.

use std::fmt;
use std::time::Duration;

/// What went wrong, in the few categories callers act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// No object under the key. `head` answers this for a deleted object: deletions are verified
    /// with it.
    NotFound,
    /// The request itself is wrong: a bad key or prefix, a malformed URL or keyring, a bucket
    /// that does not exist, a key that collides with a directory of other keys.
    InvalidInput,
    /// The backend refused our credentials or permissions.
    Unauthorized,
    /// The backend did not answer in time. Retryable.
    Timeout,
    /// The backend is unreachable, overloaded or failed on its side. Retryable.
    Unavailable,
    /// A sealed object failed authentication: tampered with, truncated, reordered, spliced from
    /// another object, or never sealed at all. Never retryable: the bytes are wrong.
    Corrupt,
    /// The key-encryption key that sealed the object is not in the keyring: it was destroyed
    /// (crypto-shredding) or belongs to another deployment.
    KeyUnavailable,
    /// The URL names a backend this build does not include.
    Unsupported,
    /// A bug, or an answer from the backend that makes no sense.
    Internal,
}

impl StoreErrorKind {
    /// Whether trying the same call again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, StoreErrorKind::Timeout | StoreErrorKind::Unavailable)
    }

    fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::NotFound => "not found",
            StoreErrorKind::InvalidInput => "invalid input",
            StoreErrorKind::Unauthorized => "unauthorized",
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Corrupt => "corrupt sealed object",
            StoreErrorKind::KeyUnavailable => "key unavailable",
            StoreErrorKind::Unsupported => "unsupported",
            StoreErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object store error. Messages never contain object contents or key material.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// Set when the backend said how long to wait (throttling); the retry layer honours it.
    retry_after: Option<Duration>,
}

impl StoreError {
    /// An error of `kind` described by `message` (lowercase, no trailing period).
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            source: None,
            retry_after: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Attaches the delay the backend asked for.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The category callers match on.
    pub fn kind(&self) -> StoreErrorKind {
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

    /// How long the backend asked us to wait before retrying, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    pub(crate) fn not_found(what: impl fmt::Display) -> Self {
        StoreError::new(StoreErrorKind::NotFound, format!("no object {what}"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        StoreError::new(StoreErrorKind::InvalidInput, message)
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        StoreError::new(StoreErrorKind::Corrupt, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        StoreError::new(StoreErrorKind::Internal, message)
    }

    /// The local filesystem's errors, converted in this one place.
    pub(crate) fn from_io(what: impl fmt::Display, err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => StoreErrorKind::NotFound,
            Io::PermissionDenied | Io::ReadOnlyFilesystem => StoreErrorKind::Unauthorized,
            Io::TimedOut => StoreErrorKind::Timeout,
            Io::Interrupted | Io::WouldBlock | Io::StorageFull | Io::QuotaExceeded => {
                StoreErrorKind::Unavailable
            }
            Io::IsADirectory | Io::NotADirectory | Io::InvalidFilename => {
                StoreErrorKind::InvalidInput
            }
            _ => StoreErrorKind::Internal,
        };
        StoreError::new(kind, what.to_string()).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_kind_then_message() {
        let err = StoreError::new(
            StoreErrorKind::KeyUnavailable,
            "no key \"k1\" in the keyring",
        );
        assert_eq!(
            err.to_string(),
            "key unavailable: no key \"k1\" in the keyring"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn only_timeouts_and_unavailability_retry() {
        let retryable: Vec<_> = [
            StoreErrorKind::NotFound,
            StoreErrorKind::InvalidInput,
            StoreErrorKind::Unauthorized,
            StoreErrorKind::Timeout,
            StoreErrorKind::Unavailable,
            StoreErrorKind::Corrupt,
            StoreErrorKind::KeyUnavailable,
            StoreErrorKind::Unsupported,
            StoreErrorKind::Internal,
        ]
        .into_iter()
        .filter(|kind| kind.is_retryable())
        .collect();
        assert_eq!(
            retryable,
            [StoreErrorKind::Timeout, StoreErrorKind::Unavailable]
        );
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let err = StoreError::from_io("open x", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(err.kind(), StoreErrorKind::NotFound);
        assert!(std::error::Error::source(&err).is_some());
    }
}
