//! The crate's one error type: a small kind callers match on and a lowercase message.

use std::fmt;

/// What went wrong while setting telemetry up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TelemetryErrorKind {
    /// A setting is wrong: an endpoint that is not `http://…`, a pseudonym key too short, a log
    /// filter that does not parse.
    InvalidInput,
    /// Something that was set once per process was already set differently.
    Conflict,
    /// The exporter or subscriber could not be built.
    Internal,
}

impl fmt::Display for TelemetryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TelemetryErrorKind::InvalidInput => "invalid input",
            TelemetryErrorKind::Conflict => "conflict",
            TelemetryErrorKind::Internal => "internal error",
        })
    }
}

/// A telemetry setup error. Messages never carry key material.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct TelemetryError {
    kind: TelemetryErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl TelemetryError {
    pub(crate) fn new(kind: TelemetryErrorKind, message: impl Into<String>) -> Self {
        TelemetryError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        TelemetryError::new(TelemetryErrorKind::InvalidInput, message)
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The category callers match on.
    pub fn kind(&self) -> TelemetryErrorKind {
        self.kind
    }
}
