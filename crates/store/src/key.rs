//! Object keys, validated in this one place for every backend: `/`-separated segments of ASCII
//! letters, digits, `_`, `-`, `.` and `=`, none empty, none starting with `.` (so no `.`, `..`
//! or hidden files), no leading `/`, bounded lengths. Such a key is a safe relative path on a
//! local filesystem and an unremarkable S3 key.

use std::fmt;
use std::str::FromStr;

use clipfleet_proto::{AccountId, JobId, PhotoId, SessionId};

use crate::error::StoreError;

/// The longest key accepted, in bytes (S3 allows 1,024 including the store's prefix).
pub const MAX_KEY_LEN: usize = 900;
/// The longest segment accepted, in bytes: a file name on common filesystems.
pub const MAX_SEGMENT_LEN: usize = 255;

/// A validated object key, e.g. `inputs/<account>/<job>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`.
    pub fn new(key: impl Into<String>) -> Result<Self, StoreError> {
        let key = key.into();
        check_key(&key)?;
        Ok(ObjectKey(key))
    }

    /// `inputs/<account>/<job>`: a job's photo, deleted once its video exists.
    pub fn input(account: &AccountId, job: JobId) -> Self {
        ObjectKey(format!("inputs/{account}/{job}"))
    }

    /// `outputs/<account>/<job>.mp4`: a job's video, deleted after the output TTL.
    pub fn output(account: &AccountId, job: JobId) -> Self {
        ObjectKey(format!("outputs/{account}/{job}.mp4"))
    }

    /// `outputs/<account>/<job>.jpg`: an image job's still image, kept and deleted like a video.
    pub fn output_image(account: &AccountId, job: JobId) -> Self {
        ObjectKey(format!("outputs/{account}/{job}.jpg"))
    }

    /// `sessions/<account>/<session>/`: everything of one personalisation session, deleted
    /// together when it ends.
    pub fn session_prefix(account: &AccountId, session: SessionId) -> String {
        format!("sessions/{account}/{session}/")
    }

    /// `sessions/<account>/<session>/photos/<photo>`: a photo uploaded to a session.
    pub fn session_photo(account: &AccountId, session: SessionId, photo: PhotoId) -> Self {
        ObjectKey(format!("sessions/{account}/{session}/photos/{photo}"))
    }

    /// `sessions/<account>/<session>/adapters/<model>`: the session's personalised adapter of a
    /// model (a manifest name, which is a valid segment; the version is inside the adapter).
    pub fn session_adapter(
        account: &AccountId,
        session: SessionId,
        model: &str,
    ) -> Result<Self, StoreError> {
        ObjectKey::new(format!("sessions/{account}/{session}/adapters/{model}"))
    }

    /// `sessions/<account>/<session>/ended`: the marker that ends a session. Workers check it
    /// before and after writing an adapter; the janitor deletes the session's other objects at
    /// once and the marker itself only once no job of the session can still run.
    pub fn session_ended(account: &AccountId, session: SessionId) -> Self {
        ObjectKey(format!("sessions/{account}/{session}/ended"))
    }

    /// `tombstones/<account>`: marks an erased account; workers check it before running a job.
    pub fn tombstone(account: &AccountId) -> Self {
        ObjectKey(format!("tombstones/{account}"))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key for logs and error messages: the segment that names an account hidden
    /// (`inputs/*/<job>`; `models/…` keys name no account and show whole). Object keys hold
    /// account ids, which never appear in logs.
    pub fn redacted(&self) -> RedactedKey<'_> {
        RedactedKey(&self.0)
    }

    /// The key's segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object key shown with its account segment hidden ([`ObjectKey::redacted`]).
#[derive(Debug, Clone, Copy)]
pub struct RedactedKey<'a>(&'a str);

impl fmt::Display for RedactedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = self.0.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(first), Some(_), rest) if first != "models" => {
                write!(f, "{first}/*")?;
                match rest {
                    Some(rest) => write!(f, "/{rest}"),
                    None => Ok(()),
                }
            }
            _ => f.write_str(self.0),
        }
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for ObjectKey {
    type Err = StoreError;
    fn from_str(key: &str) -> Result<Self, StoreError> {
        ObjectKey::new(key)
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::invalid("object key is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::invalid(format!(
            "object key is {} bytes, more than {MAX_KEY_LEN}",
            key.len()
        )));
    }
    for segment in key.split('/') {
        check_segment(key, segment, false)?;
    }
    Ok(())
}

/// Checks a list prefix: empty (everything), or whole segments followed by an optional partial
/// one (`inputs/`, `inputs/acc`), under the same rules as keys.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.len() > MAX_KEY_LEN {
        return Err(StoreError::invalid(format!(
            "prefix is {} bytes, more than {MAX_KEY_LEN}",
            prefix.len()
        )));
    }
    if prefix.is_empty() {
        return Ok(());
    }
    let mut segments = prefix.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        check_segment(prefix, segment, last)?;
    }
    Ok(())
}

fn check_segment(whole: &str, segment: &str, may_be_empty: bool) -> Result<(), StoreError> {
    let fail = |reason: String| {
        Err(StoreError::invalid(format!(
            "key {} {reason}",
            RedactedKey(whole)
        )))
    };
    if segment.is_empty() {
        if may_be_empty {
            return Ok(());
        }
        return fail("has an empty segment (a leading, trailing or doubled '/')".into());
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return fail(format!("has a segment longer than {MAX_SEGMENT_LEN} bytes"));
    }
    if segment.starts_with('.') {
        return fail("has a segment starting with '.'".into());
    }
    if let Some(bad) = segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '=')))
    {
        return fail(format!("contains {bad:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_keys_hide_the_account() {
        let account = AccountId::new("ada-lovelace").unwrap();
        let job = JobId::generate();
        for key in [
            ObjectKey::input(&account, job),
            ObjectKey::output(&account, job),
            ObjectKey::output_image(&account, job),
            ObjectKey::tombstone(&account),
            ObjectKey::session_photo(&account, SessionId::generate(), PhotoId::generate()),
            ObjectKey::session_ended(&account, SessionId::generate()),
        ] {
            let shown = key.redacted().to_string();
            assert!(!shown.contains("ada-lovelace"), "{shown}");
            assert!(shown.contains("/*"), "{shown}");
        }
        assert_eq!(
            ObjectKey::input(&account, job).redacted().to_string(),
            format!("inputs/*/{job}")
        );
        let model = ObjectKey::new("models/motion/1/motion.pt").unwrap();
        assert_eq!(model.redacted().to_string(), "models/motion/1/motion.pt");
        let err = ObjectKey::new("inputs/ada-lovelace/a b").unwrap_err();
        assert!(!err.to_string().contains("ada-lovelace"), "{err}");
    }

    #[test]
    fn design_keys_are_valid() {
        let account = AccountId::new("a".repeat(AccountId::MAX_LEN)).unwrap();
        let job = JobId::generate();
        for key in [
            ObjectKey::input(&account, job),
            ObjectKey::output(&account, job),
            ObjectKey::output_image(&account, job),
            ObjectKey::tombstone(&account),
            ObjectKey::session_photo(&account, SessionId::generate(), PhotoId::generate()),
            ObjectKey::session_ended(&account, SessionId::generate()),
            ObjectKey::session_adapter(&account, SessionId::generate(), "portrait").unwrap(),
        ] {
            assert_eq!(ObjectKey::new(key.as_str()).unwrap(), key);
        }
        assert!(ObjectKey::new("models/zoom/1.0.0/model.pt").is_ok());
        assert!(ObjectKey::new("sessions/acc/s-1/lora=3.bin").is_ok());
    }

    #[test]
    fn unsafe_keys_are_refused() {
        let long_segment = "x".repeat(MAX_SEGMENT_LEN + 1);
        let long_key = "ab/".repeat(MAX_KEY_LEN / 3 + 1);
        for bad in [
            "",
            "/etc/passwd",
            "inputs/../secrets",
            "inputs/./a",
            "..",
            "inputs//a",
            "inputs/a/",
            "inputs/.hidden",
            "inputs\\a",
            "inputs/a b",
            "inputs/é",
            "inputs/a\0b",
            long_segment.as_str(),
            long_key.as_str(),
        ] {
            let err = ObjectKey::new(bad).unwrap_err();
            assert_eq!(
                err.kind(),
                crate::StoreErrorKind::InvalidInput,
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn prefixes_may_end_in_a_slash_or_a_partial_segment() {
        for good in ["", "inputs/", "inputs/acc", "inputs/acc/", "in"] {
            assert!(check_prefix(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "/",
            "/inputs",
            "../",
            "inputs/../",
            "inputs//",
            "inputs/.",
            "a\\b",
        ] {
            assert!(check_prefix(bad).is_err(), "{bad:?} accepted");
        }
    }
}
