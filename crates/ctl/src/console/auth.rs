//! Operator sign-in and the safety of every action.
//!
//! - The operator token is the console's own, never the app backend's API token; only its
//!   SHA-256 is held, compared in constant time; a wrong one costs the caller a pause.
//! - A session is a 256-bit random id in a cookie that is `HttpOnly` (no script reads it),
//!   `SameSite=Strict` (no other site's page sends it), `Path=/`, `Secure` behind TLS, and held
//!   server-side with an expiry; signing in replaces the id (no fixation).
//! - Every POST carries the session's CSRF token (a second random value, in each form) and is
//!   refused when the browser says it comes from another origin (`Origin`, `Sec-Fetch-Site`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use clipfleet_proto::JobId;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The session cookie's name.
pub const COOKIE: &str = "clipfleet_console";

/// How long a session lives without being used.
const IDLE: Duration = Duration::from_secs(8 * 3600);

/// Sessions held at most (anonymous ones included); the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// One browser's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The CSRF token its forms carry.
    pub csrf: String,
    /// Signed in as an operator.
    pub operator: bool,
    /// The try-it jobs this browser submitted (only these may show their video here).
    pub try_jobs: Vec<JobId>,
    /// The try-it account of this browser.
    pub try_account: Option<String>,
    used: Instant,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No session, or not an operator.
    NotSignedIn,
    /// From another site, or without the form's CSRF token.
    CrossSite,
}

/// 32 random bytes as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if OsRng.try_fill_bytes(&mut bytes).is_err() {
        // Without the OS's randomness no session can be safe: every sign-in fails instead.
        return String::new();
    }
    hex::encode(bytes)
}

/// The server's sessions and the operator token's digest.
#[derive(Debug)]
pub struct Sessions {
    token_sha256: [u8; 32],
    secure: bool,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Sessions for an operator token; `secure` marks the cookie `Secure` (served over TLS).
    pub fn new(operator_token: &str, secure: bool) -> Sessions {
        Sessions {
            token_sha256: Sha256::digest(operator_token.as_bytes()).into(),
            secure,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `token` is the operator token.
    pub fn token_matches(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        bool::from(digest.ct_eq(&self.token_sha256))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic elsewhere while holding the map leaves it whole (every update is one insert
        // or remove): keep serving.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session the request's cookie names, if live (its idle timer restarts).
    pub fn get(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, COOKIE)?;
        let mut map = self.lock();
        let session = map.get_mut(&id)?;
        if session.used.elapsed() > IDLE {
            map.remove(&id);
            return None;
        }
        session.used = Instant::now();
        Some((id, session.clone()))
    }

    /// A new session; returns its id.
    pub fn create(&self, operator: bool) -> Option<(String, Session)> {
        let (id, csrf) = (random_token(), random_token());
        if id.is_empty() || csrf.is_empty() {
            return None;
        }
        let session = Session {
            csrf,
            operator,
            try_jobs: Vec::new(),
            try_account: None,
            used: Instant::now(),
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.used.elapsed() <= IDLE);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.used)
                    .map(|(id, _)| id.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), session.clone());
        Some((id, session))
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Changes a session in place.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Session)) {
        if let Some(session) = self.lock().get_mut(id) {
            change(session);
        }
    }

    /// The `Set-Cookie` value for a session id.
    pub fn set_cookie(&self, id: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            IDLE.as_secs()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }

    /// The `Set-Cookie` value that ends the cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        HeaderValue::from_static("clipfleet_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    /// A POST is allowed: from this origin, with the session's CSRF token; and for operator
    /// actions, an operator's session.
    pub fn check_post(
        &self,
        headers: &HeaderMap,
        csrf: &str,
        need_operator: bool,
    ) -> Result<(String, Session), Refusal> {
        if !same_origin(headers) {
            return Err(Refusal::CrossSite);
        }
        let Some((id, session)) = self.get(headers) else {
            return Err(Refusal::NotSignedIn);
        };
        if csrf.is_empty() || !bool::from(csrf.as_bytes().ct_eq(session.csrf.as_bytes())) {
            return Err(Refusal::CrossSite);
        }
        if need_operator && !session.operator {
            return Err(Refusal::NotSignedIn);
        }
        Ok((id, session))
    }
}

/// One cookie's value.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the browser says the request comes from a page of this origin. Requests without
/// either header (scripts, old browsers) still need the session cookie and the CSRF token.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
                return false;
            };
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        map
    }

    #[test]
    fn only_the_operator_token_matches() {
        let sessions = Sessions::new("s3cret-operator", false);
        assert!(sessions.token_matches("s3cret-operator"));
        assert!(!sessions.token_matches("s3cret-operato"));
        assert!(!sessions.token_matches(""));
    }

    #[test]
    fn posts_need_the_session_the_csrf_token_and_this_origin() {
        let sessions = Sessions::new("t", false);
        let (id, session) = sessions.create(true).expect("randomness");
        let cookie = format!("other=1; {COOKIE}={id}");
        let ok = headers(&[
            ("cookie", &cookie),
            ("host", "127.0.0.1:8090"),
            ("origin", "http://127.0.0.1:8090"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(sessions.check_post(&ok, &session.csrf, true).is_ok());
        assert_eq!(
            sessions.check_post(&ok, "0000", true).err(),
            Some(Refusal::CrossSite)
        );
        let cross = headers(&[
            ("cookie", &cookie),
            ("host", "127.0.0.1:8090"),
            ("origin", "http://localhost:9000"),
        ]);
        assert_eq!(
            sessions.check_post(&cross, &session.csrf, true).err(),
            Some(Refusal::CrossSite)
        );
        let fetch_cross = headers(&[("cookie", &cookie), ("sec-fetch-site", "cross-site")]);
        assert_eq!(
            sessions.check_post(&fetch_cross, &session.csrf, true).err(),
            Some(Refusal::CrossSite)
        );
        let none = headers(&[("host", "127.0.0.1:8090")]);
        assert_eq!(
            sessions.check_post(&none, &session.csrf, true).err(),
            Some(Refusal::NotSignedIn)
        );
        let (anon_id, anon) = sessions.create(false).expect("randomness");
        let anon_cookie = format!("{COOKIE}={anon_id}");
        let anon_headers = headers(&[("cookie", &anon_cookie)]);
        assert_eq!(
            sessions.check_post(&anon_headers, &anon.csrf, true).err(),
            Some(Refusal::NotSignedIn)
        );
        assert!(
            sessions
                .check_post(&anon_headers, &anon.csrf, false)
                .is_ok()
        );
        sessions.remove(&id);
        assert!(sessions.get(&ok).is_none(), "a removed session is gone");
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let value = Sessions::new("t", true).set_cookie(&"ab".repeat(32));
        let text = value.to_str().expect("ascii");
        assert!(
            text.contains("HttpOnly")
                && text.contains("SameSite=Strict")
                && text.contains("Secure")
        );
    }
}
