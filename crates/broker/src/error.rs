//! The broker layer's one error type: a kind callers match on, a message, and whether trying
//! again may help.

/// What went wrong, coarsely enough to decide what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerErrorKind {
    /// The broker cannot be reached or dropped the connection: retry after a backoff.
    Unavailable,
    /// The broker refused a publish (negative confirm, queue full): the message is not stored.
    Rejected,
    /// The lease is gone (it expired, or its channel closed): the broker redelivers the message
    /// to someone, so the holder must stop working on it and must not ack it.
    LeaseLost,
    /// A queue, pool or entity does not exist.
    NotFound,
    /// Arguments the broker or this layer cannot accept (a bad URL, a name, an option).
    InvalidInput,
    /// The backend does not offer this ability, or was compiled out.
    Unsupported,
    /// An operation did not finish in time.
    Timeout,
    /// Anything else: a bug or an unexpected broker answer.
    Internal,
}

/// A broker failure.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct BrokerError {
    /// What kind of failure.
    pub kind: BrokerErrorKind,
    /// What happened, for operators (no message bodies).
    pub message: String,
}

impl BrokerError {
    /// A new error of `kind`.
    pub fn new(kind: BrokerErrorKind, message: impl Into<String>) -> Self {
        BrokerError {
            kind,
            message: message.into(),
        }
    }

    /// Whether the same call may succeed later (after a reconnect or a backoff).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            BrokerErrorKind::Unavailable | BrokerErrorKind::Timeout | BrokerErrorKind::Rejected
        )
    }
}

/// Shorthand for results of this crate.
pub type BrokerResult<T> = Result<T, BrokerError>;
