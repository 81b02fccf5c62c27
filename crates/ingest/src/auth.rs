//! Service tokens: the app backend sends `Authorization: Bearer <token>`; the configuration
//! holds only each token's SHA-256. The presented token is hashed and compared with every
//! configured digest in constant time, so neither the match nor its position leaks through
//! timing.

use axum::http::{HeaderMap, header};
use clipfleet_config::ServiceToken;
use clipfleet_proto::ErrorCode;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::error::ApiError;

/// Longest bearer token looked at; anything longer is refused unhashed.
const MAX_TOKEN_BYTES: usize = 4096;

/// The configured callers.
#[derive(Debug, Clone)]
pub(crate) struct Tokens(Vec<ServiceToken>);

impl Tokens {
    pub(crate) fn new(tokens: Vec<ServiceToken>) -> Self {
        Tokens(tokens)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name of the caller `headers` authenticate, or `unauthorized`.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<&str, ApiError> {
        let unauthorized = |why: &str| ApiError::new(ErrorCode::Unauthorized, why);
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("an Authorization: Bearer token is required"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|text| text.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty() && token.len() <= MAX_TOKEN_BYTES)
            .ok_or_else(|| unauthorized("the Authorization header is not a Bearer token"))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, known) in self.0.iter().enumerate() {
            let equal = digest.ct_eq(&known.sha256);
            index = u32::conditional_select(&index, &(i as u32), equal);
            found |= equal;
        }
        if bool::from(found) {
            Ok(self.0[index as usize].name.as_str())
        } else {
            Err(unauthorized("the token is not valid"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn tokens() -> Tokens {
        let config =
            clipfleet_config::Config::embedded(&Default::default()).expect("embedded config");
        Tokens::new(config.ingest.tokens.clone())
    }

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn the_embedded_dev_token_is_accepted_and_named() {
        assert_eq!(
            tokens()
                .authenticate(&with("Bearer clipfleet-dev-token"))
                .expect("valid"),
            "dev"
        );
    }

    #[test]
    fn missing_malformed_and_wrong_tokens_are_unauthorized() {
        let tokens = tokens();
        for headers in [
            HeaderMap::new(),
            with("Basic abc"),
            with("Bearer "),
            with("Bearer clipfleet-dev-token2"),
            with("bearer clipfleet-dev-token"),
        ] {
            let err = tokens.authenticate(&headers).expect_err("refused");
            assert_eq!(err.code, ErrorCode::Unauthorized);
        }
    }
}
