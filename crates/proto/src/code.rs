//! The stable error codes shared by HTTP answers, job events and the CLI.

open_enum! {
    /// Why something failed. The set is closed for this reader: a code a newer writer adds decodes
    /// as [`ErrorCode::Unknown`]. Codes are never renamed or reused; clients match on them.
    pub enum ErrorCode {
        /// The request itself is malformed (multipart, JSON, headers).
        BadRequest = "bad_request",
        /// No valid service token.
        Unauthorized = "unauthorized",
        /// The account is terminated, suspended or unknown to the caller's rights.
        AccountInactive = "account_inactive",
        /// The account holder is under 14: the service is not offered.
        UnderAge = "under_age",
        /// The thing asked for does not exist (or no longer does).
        NotFound = "not_found",
        /// The request conflicts with an earlier one (idempotency key reused with another body).
        Conflict = "conflict",
        /// The photo is not a format we take.
        UnsupportedFormat = "unsupported_format",
        /// The photo is over the byte or pixel limit.
        TooLarge = "too_large",
        /// The photo claims a supported format but does not decode (truncated, corrupt).
        BadImage = "bad_image",
        /// Job parameters out of range or inconsistent.
        InvalidParams = "invalid_params",
        /// The model named by the job is not served.
        UnknownModel = "unknown_model",
        /// The pool's backlog is over its admission bound; retry later.
        Overloaded = "overloaded",
        /// The job passed its deadline before it could run.
        Expired = "expired",
        /// The job was cancelled on request.
        Cancelled = "cancelled",
        /// The account was erased while the job waited; its data is gone.
        AccountErased = "account_erased",
        /// The model failed on this input.
        ModelError = "model_error",
        /// The device ran out of memory even for a batch of one.
        Oom = "oom",
        /// A dependency failed in a way that may pass on retry.
        Transient = "transient",
        /// A dependency (broker, store, database) is unreachable.
        Unavailable = "unavailable",
        /// A message on a queue could not be decoded.
        Undecodable = "undecodable",
        /// A message was delivered more times than the queue allows.
        DeliveryLimit = "delivery_limit",
        /// The session ended (deleted, past its TTL, or its account erased); its photos and its
        /// adapter are gone or going.
        SessionEnded = "session_ended",
        /// The session cannot serve this yet (no adapter trained, or one still training).
        SessionNotReady = "session_not_ready",
        /// A personalised adapter was made for another account, session or model: never used.
        AdapterMismatch = "adapter_mismatch",
        /// A bug: something that should not happen did.
        Internal = "internal",
    }
}

impl ErrorCode {
    /// The HTTP status an API answer with this code carries: the one table that maps them.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidParams | ErrorCode::Undecodable => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::AccountInactive | ErrorCode::UnderAge => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::Cancelled | ErrorCode::SessionNotReady => 409,
            ErrorCode::Expired | ErrorCode::AccountErased | ErrorCode::SessionEnded => 410,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnsupportedFormat => 415,
            ErrorCode::BadImage | ErrorCode::UnknownModel => 422,
            ErrorCode::Overloaded => 429,
            ErrorCode::ModelError
            | ErrorCode::AdapterMismatch
            | ErrorCode::DeliveryLimit
            | ErrorCode::Internal
            | ErrorCode::Unknown => 500,
            ErrorCode::Oom | ErrorCode::Transient | ErrorCode::Unavailable => 503,
        }
    }

    /// Whether the same work may succeed if tried again later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Oom | ErrorCode::Transient | ErrorCode::Unavailable | ErrorCode::Overloaded
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_spelling() {
        for code in ErrorCode::KNOWN {
            assert_eq!(ErrorCode::parse(code.as_str()), *code);
            assert_ne!(code.as_str(), "unknown");
        }
    }

    #[test]
    fn spellings_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::KNOWN {
            let text = code.as_str();
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
            assert!(seen.insert(text), "duplicate spelling {text}");
        }
    }

    #[test]
    fn unknown_spelling_is_unknown_not_an_error() {
        assert_eq!(ErrorCode::parse("gpu_on_fire"), ErrorCode::Unknown);
        assert_eq!(ErrorCode::Unknown.http_status(), 500);
    }

    #[test]
    fn client_errors_are_4xx_and_not_retryable() {
        for code in [
            ErrorCode::BadImage,
            ErrorCode::UnderAge,
            ErrorCode::TooLarge,
        ] {
            assert!((400..500).contains(&code.http_status()));
            assert!(!code.is_retryable());
        }
        assert!(ErrorCode::Transient.is_retryable());
    }
}
