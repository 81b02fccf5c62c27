//! The API's one error answer: an HTTP status from [`ErrorCode::http_status`] and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`. Clients match on the code; the message is
//! for people and never carries personal data or secrets.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clipfleet_broker::BrokerError;
use clipfleet_ledger::{LedgerError, LedgerErrorKind};
use clipfleet_media::MediaError;
use clipfleet_proto::ErrorCode;
use clipfleet_store::{StoreError, StoreErrorKind};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
    /// Seconds the client should wait before retrying (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An answer with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// A dependency failed: the client may retry shortly.
    pub(crate) fn unavailable(what: &str, err: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %err, "{what} failed");
        ApiError::new(
            ErrorCode::Unavailable,
            format!("{what} is unavailable; retry"),
        )
        .retry_after(1)
    }

    /// A bug or an impossible state: logged with detail, answered without.
    pub(crate) fn internal(what: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{what} failed");
        ApiError::new(ErrorCode::Internal, format!("{what} failed"))
    }

    /// The HTTP status this answer carries.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({
            "error": { "code": self.code.as_str(), "message": self.message }
        });
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<LedgerError> for ApiError {
    fn from(err: LedgerError) -> Self {
        match err.kind() {
            LedgerErrorKind::NotFound => ApiError::not_found(err.message().to_owned()),
            LedgerErrorKind::Conflict => ApiError::new(ErrorCode::Conflict, err.message()),
            LedgerErrorKind::InvalidInput => ApiError::new(ErrorCode::InvalidParams, err.message()),
            LedgerErrorKind::Unavailable => ApiError::unavailable("the ledger", &err),
            LedgerErrorKind::Internal => ApiError::internal("the ledger", &err),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err.kind() {
            StoreErrorKind::NotFound => ApiError::not_found("the object is gone"),
            kind if kind.is_retryable() => ApiError::unavailable("the object store", &err),
            _ => ApiError::internal("the object store", &err),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(err: BrokerError) -> Self {
        if err.is_retryable() {
            ApiError::unavailable("the broker", &err)
        } else {
            ApiError::internal("the broker", &err)
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(err: MediaError) -> Self {
        ApiError::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_choose_the_status_and_retry_after_is_a_header() {
        let response = ApiError::new(ErrorCode::Overloaded, "busy")
            .retry_after(3)
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let response = ApiError::new(ErrorCode::UnderAge, "no").into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
}
