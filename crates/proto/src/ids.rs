//! Identifiers. Job ids are ULIDs made by the server (sortable by creation time); the string ids
//! are validated on every decode because they become parts of object keys and queue names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct IdError {
    /// Which id was being read (`job_id`, `account_id`, …).
    pub kind: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

macro_rules! ulid_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Ulid);

        impl $name {
            /// A fresh id for the current time.
            pub fn generate() -> Self {
                $name(Ulid::new())
            }

            /// Wraps an existing ULID (tests, replays).
            pub const fn from_ulid(ulid: Ulid) -> Self {
                $name(ulid)
            }

            /// The ULID inside.
            pub const fn ulid(self) -> Ulid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Ulid::from_string(text).map($name).map_err(|err| IdError {
                    kind: $kind,
                    reason: err.to_string(),
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                text.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }
    };
}

ulid_id!(
    /// A job's id: a ULID, 26 Crockford base-32 characters on the wire. Also the name of the
    /// job's input and output objects, so redelivered work finds what an earlier attempt stored.
    JobId,
    "job_id"
);

ulid_id!(
    /// A personalisation session's id (a ULID): names the session's prefix
    /// `sessions/<account>/<session>/`, where its photos and its adapter live until it ends.
    SessionId,
    "session_id"
);

ulid_id!(
    /// One photo uploaded to a session (a ULID): `sessions/<account>/<session>/photos/<photo>`.
    PhotoId,
    "photo_id"
);

/// Characters of account and worker ids: ASCII letters, digits, `_`, `-` and `.`.
fn wide_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Characters of pool names: lowercase letters, digits and `-`, so a pool name fits every
/// broker's queue names (SQS allows only `[A-Za-z0-9_-]`) and `_`/`.` stay free as separators.
fn pool_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// Checks the shape shared by every string id: 1..=`max_len` bytes of `allowed` characters,
/// starting with a letter or digit: safe as one segment of an object key or queue name.
fn check_token(
    kind: &'static str,
    text: &str,
    max_len: usize,
    allowed: fn(char) -> bool,
) -> Result<(), IdError> {
    let fail = |reason: String| Err(IdError { kind, reason });
    if text.is_empty() {
        return fail("is empty".into());
    }
    if text.len() > max_len {
        return fail(format!("is {} bytes, more than {max_len}", text.len()));
    }
    if let Some(bad) = text.chars().find(|c| !allowed(*c)) {
        return fail(format!("contains {bad:?}"));
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return fail("does not start with a letter or digit".into());
    }
    Ok(())
}

macro_rules! token_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max_len:expr, $allowed:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest value accepted, in bytes.
            pub const MAX_LEN: usize = $max_len;

            /// Validates and wraps `text`.
            pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
                let text = text.into();
                check_token($kind, &text, Self::MAX_LEN, $allowed)?;
                Ok($name(text))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                $name::new(text)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                $name::new(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

token_id!(
    /// An account's opaque id, assigned by the app backend. Personal data never goes in it: it
    /// appears in object keys (`inputs/<account>/<job>`) and, pseudonymised, in telemetry.
    AccountId,
    "account_id",
    64,
    wide_char
);

token_id!(
    /// A worker process's id (host name plus a suffix, usually): heartbeats and events name it.
    WorkerId,
    "worker",
    128,
    wide_char
);

token_id!(
    /// A pool of workers serving one kind of job; queue names derive from it (`clip.jobs.<pool>`).
    PoolName,
    "pool",
    48,
    pool_char
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_text_round_trip() {
        let id = JobId::generate();
        assert_eq!(id.to_string().len(), 26);
        assert_eq!(id.to_string().parse::<JobId>(), Ok(id));
        assert!("not-a-ulid".parse::<JobId>().is_err());
        let err = "x".parse::<SessionId>().unwrap_err();
        assert_eq!(err.kind, "session_id");
    }

    #[test]
    fn token_ids_refuse_what_would_escape_a_key_segment() {
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "ä",
            "x\0y",
            &"a".repeat(65),
        ] {
            assert!(AccountId::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["acct_42", "A-1.b", &"a".repeat(64)] {
            assert!(AccountId::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn pool_names_fit_every_brokers_queue_names() {
        for bad in ["Default", "a.b", "a_b", "-a", ""] {
            assert!(PoolName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(PoolName::new("gpu-h200-2").is_ok());
    }

    #[test]
    fn the_error_names_the_id() {
        let err = PoolName::new("a/b").unwrap_err();
        assert_eq!(err.kind, "pool");
        assert!(err.to_string().contains("'/'"), "{err}");
    }
}
