//! The AWS SDK's errors, converted to `StoreError` kinds in this one place.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::{StoreError, StoreErrorKind};

/// Converts an SDK error from operation `op` (e.g. `"get object"`).
pub(super) fn from_sdk<E>(op: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, detail) = match &err {
        SdkError::TimeoutError(_) => (StoreErrorKind::Timeout, "timed out".to_owned()),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            (StoreErrorKind::Timeout, "connection timed out".to_owned())
        }
        SdkError::DispatchFailure(_) => (
            StoreErrorKind::Unavailable,
            "could not reach the endpoint".to_owned(),
        ),
        SdkError::ResponseError(_) => (
            StoreErrorKind::Unavailable,
            "unreadable response".to_owned(),
        ),
        SdkError::ServiceError(service) => {
            let status = service_status(&err);
            let code = service.err().code();
            let kind = classify(code, status);
            let detail = match (code, service.err().message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                (None, _) => format!("http status {}", status.unwrap_or(0)),
            };
            (kind, detail)
        }
        SdkError::ConstructionFailure(_) => (
            StoreErrorKind::Internal,
            "could not build the request".to_owned(),
        ),
        _ => (StoreErrorKind::Internal, "unexpected sdk error".to_owned()),
    };
    StoreError::new(kind, format!("{op}: {detail}")).with_source(err)
}

fn service_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|raw| raw.status().as_u16())
}

/// An S3 error code (or, without one, the HTTP status) as a kind. Also used for the per-key
/// errors of `DeleteObjects`, which carry a code but no status.
pub(super) fn classify(code: Option<&str>, status: Option<u16>) -> StoreErrorKind {
    match code {
        Some("NoSuchKey" | "NotFound" | "NoSuchUpload") => return StoreErrorKind::NotFound,
        // The configured bucket is wrong: not an absent object (delete must not report Ok).
        Some("NoSuchBucket") => return StoreErrorKind::InvalidInput,
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "AllAccessDisabled",
        ) => return StoreErrorKind::Unauthorized,
        Some("RequestTimeout") => return StoreErrorKind::Timeout,
        Some("SlowDown" | "InternalError" | "ServiceUnavailable" | "OperationAborted") => {
            return StoreErrorKind::Unavailable;
        }
        _ => {}
    }
    match status {
        Some(404) => StoreErrorKind::NotFound,
        Some(401 | 403) => StoreErrorKind::Unauthorized,
        Some(408) => StoreErrorKind::Timeout,
        Some(429 | 500..=599) => StoreErrorKind::Unavailable,
        Some(400..=499) => StoreErrorKind::InvalidInput,
        _ => StoreErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_win_over_statuses() {
        assert_eq!(
            classify(Some("NoSuchKey"), Some(404)),
            StoreErrorKind::NotFound
        );
        assert_eq!(
            classify(Some("NoSuchBucket"), Some(404)),
            StoreErrorKind::InvalidInput
        );
        assert_eq!(
            classify(Some("SlowDown"), Some(503)),
            StoreErrorKind::Unavailable
        );
        assert_eq!(
            classify(Some("AccessDenied"), None),
            StoreErrorKind::Unauthorized
        );
    }

    #[test]
    fn statuses_classify_code_less_answers() {
        // HEAD answers carry no body, so no code.
        assert_eq!(classify(None, Some(404)), StoreErrorKind::NotFound);
        assert_eq!(classify(None, Some(403)), StoreErrorKind::Unauthorized);
        assert_eq!(classify(None, Some(503)), StoreErrorKind::Unavailable);
        assert_eq!(classify(None, Some(400)), StoreErrorKind::InvalidInput);
        assert_eq!(classify(Some("Weird"), None), StoreErrorKind::Internal);
    }
}
