//! Object storage for clipfleet: photos in, videos out, tombstones and session artifacts, all
//! behind one object-safe [`ObjectStore`] trait, sealed at rest by envelope encryption.
//!
//! - `api`: the trait (streaming put/get, head, idempotent delete, batched `delete_many`,
//!   paginated list, `still_stored` and `purge_versions` for proofs of deletion) and its
//!   types; body helpers.
//! - `key`: [`ObjectKey`], validated in one place for every backend (DESIGN §5's key scheme).
//! - `memory` ([`InMemoryObjectStore`], `memory://`), `fs` ([`LocalFileObjectStore`],
//!   `file:///dir`, atomic writes), `s3` ([`S3ObjectStore`], `s3://bucket/prefix`, feature
//!   `s3`, multipart uploads) — the backends.
//! - `retry`: the one retry layer under the S3 backend (the SDK's own retries are off).
//! - `sealing`: the [`SealedObjectStore`] decorator, the sealed format (`SEALING.md`) and
//!   keyrings ([`Keyring`], [`LocalKeyring`]).
//! - `resolve`: [`open`] and [`open_sealed`], URL scheme → backend.
//! - `testsuite` (feature `testsuite`): the conformance suite every backend runs.
//! - `error`: [`StoreError`] and its [`StoreErrorKind`].

mod api;
mod error;
mod fs;
mod key;
mod memory;
mod resolve;
mod retry;
#[cfg(feature = "s3")]
mod s3;
mod sealing;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub use api::{
    ByteStream, DeleteFailure, DeleteReport, ListPage, MAX_LIST_PAGE, ObjectMeta, ObjectStore,
    SecretBuffer, body_from_bytes, body_from_stream, list_all, read_to_end,
};
pub use error::{StoreError, StoreErrorKind};
pub use fs::LocalFileObjectStore;
pub use key::{MAX_KEY_LEN, MAX_SEGMENT_LEN, ObjectKey, RedactedKey};
pub use memory::InMemoryObjectStore;
pub use resolve::{open, open_sealed};
pub use retry::RetryPolicy;
#[cfg(feature = "s3")]
pub use s3::{DEFAULT_PART_SIZE, MIN_PART_SIZE, S3Location, S3ObjectStore, S3Options};
pub use sealing::{
    DEFAULT_SEGMENT_SIZE, DataKey, KEY_LEN, Keyring, LocalKeyring, MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE, NONCE_PREFIX_LEN, SealedLayout, SealedObjectStore, TAG_LEN, WrappedKey,
    open_keyring,
};
