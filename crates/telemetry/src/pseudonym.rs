//! Account pseudonyms: the only form in which an account id may appear in a log line or a span.
//!
//! `pseudonym(id)` is HMAC-SHA256 of the id under a key, cut to 64 bits (16 hex digits): stable
//! within a fleet that shares the key (so an operator can follow one account across ingest,
//! workers and the janitor), not reversible and not guessable without the key (an account id
//! is often an email-like or sequential value: a plain hash would be a lookup table away).
//! 64 bits keep collisions negligible for correlation at any realistic number of accounts.
//!
//! The key is set once per process ([`set_pseudonym_key`], from `init`). A process that never
//! sets one gets a random key on first use: its pseudonyms are consistent within the process
//! only.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::Sha256;

use crate::error::{TelemetryError, TelemetryErrorKind};

/// Shortest key accepted, in bytes.
pub const MIN_PSEUDONYM_KEY_BYTES: usize = 16;

/// Bytes of the MAC kept (shown as twice as many hex digits).
const PSEUDONYM_BYTES: usize = 8;

static KEY: OnceLock<Box<[u8]>> = OnceLock::new();

/// Fixes the process's pseudonym key. Setting the same key again is a no-op; another key after
/// the first (or after a pseudonym was already made with a random key) is a `Conflict`: the
/// pseudonyms of one process never change.
pub fn set_pseudonym_key(key: &[u8]) -> Result<(), TelemetryError> {
    if key.len() < MIN_PSEUDONYM_KEY_BYTES {
        return Err(TelemetryError::invalid(format!(
            "the pseudonym key must be at least {MIN_PSEUDONYM_KEY_BYTES} bytes"
        )));
    }
    let set = KEY.get_or_init(|| key.into());
    if **set == *key {
        Ok(())
    } else {
        Err(TelemetryError::new(
            TelemetryErrorKind::Conflict,
            "the pseudonym key is already fixed for this process",
        ))
    }
}

/// The pseudonym of `account_id` for logs and spans: 16 hex digits.
pub fn pseudonym(account_id: &str) -> String {
    let key = KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        if OsRng.try_fill_bytes(&mut key).is_err() {
            // A log field is no reason to panic; std's hash-map seeds (from the OS, with
            // fallbacks of their own) still make a key nobody outside the process knows.
            for chunk in key.chunks_mut(8) {
                let seed = RandomState::new().build_hasher().finish().to_le_bytes();
                chunk.copy_from_slice(&seed[..chunk.len()]);
            }
        }
        Box::new(key)
    });
    pseudonym_with(key, account_id)
}

fn pseudonym_with(key: &[u8], account_id: &str) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return "-".repeat(2 * PSEUDONYM_BYTES);
    };
    mac.update(account_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    hex::encode(&digest[..PSEUDONYM_BYTES])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_stable_and_short() {
        let a = pseudonym_with(b"0123456789abcdef", "ada@example.com");
        // What an operator gets from `printf %s ID | openssl dgst -sha256 -hmac KEY` (README).
        assert_eq!(a, "512383176ce1b4c2");
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, pseudonym_with(b"0123456789abcdef", "ada@example.com"));
        assert_ne!(a, pseudonym_with(b"0123456789abcdeF", "ada@example.com"));
        assert_ne!(a, pseudonym_with(b"0123456789abcdef", "ada@example.org"));
        assert!(!a.contains("ada"));
    }

    #[test]
    fn the_process_key_is_fixed_once() {
        assert_eq!(
            set_pseudonym_key(b"short").map_err(|e| e.kind()),
            Err(TelemetryErrorKind::InvalidInput)
        );
        let key = b"a key of this test, long enough";
        set_pseudonym_key(key).expect("first key");
        set_pseudonym_key(key).expect("the same key again");
        assert_eq!(
            set_pseudonym_key(b"another key, just as long").map_err(|e| e.kind()),
            Err(TelemetryErrorKind::Conflict)
        );
        assert_eq!(pseudonym("acct-1"), pseudonym_with(key, "acct-1"));
    }
}
