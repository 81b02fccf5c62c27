//! The `ObjectStore` trait every backend and decorator implements, the types it speaks, and
//! small helpers for bodies and listings.

use std::fmt::Debug;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use zeroize::Zeroize;

use crate::error::{StoreError, StoreErrorKind};
use crate::key::ObjectKey;

/// An object's body: chunks pulled one at a time, so memory stays bounded whatever the size.
/// An `Err` item ends the body: the object (or upload) is not to be trusted.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send + 'static>>;

/// The most keys one `list_page` returns (S3's own page limit).
pub const MAX_LIST_PAGE: usize = 1000;

/// What `head` and `list` say about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Stored size in bytes. Through a sealing decorator this is the sealed size (plaintext plus
    /// header and tags), see `SEALING.md`.
    pub size: u64,
    /// When the object was last written; retention rules age objects by it.
    pub last_modified: SystemTime,
}

/// One page of a listing, in ascending key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// The objects on this page.
    pub objects: Vec<ObjectMeta>,
    /// Pass it back to get the next page; `None` on the last page. Opaque to callers.
    pub continuation: Option<String>,
}

/// A key that `delete_many` could not delete, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    /// The key that is (maybe) still there.
    pub key: ObjectKey,
    /// Why, as a kind callers can act on (retry when retryable).
    pub kind: StoreErrorKind,
    /// The backend's description.
    pub message: String,
}

/// The outcome of `delete_many`: every key not listed in `failed` is gone (or never existed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "some keys may not have been deleted"]
pub struct DeleteReport {
    /// Keys that may still exist.
    pub failed: Vec<DeleteFailure>,
}

impl DeleteReport {
    /// Whether every key is gone.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A flat namespace of immutable-once-written objects. Implementations: `InMemoryObjectStore`,
/// `LocalFileObjectStore`, `S3ObjectStore`, and the `SealedObjectStore` decorator; choose one by
/// URL with [`crate::open`].
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug + 'static {
    /// Stores `body` under `key`, replacing any object there. All or nothing: readers see the
    /// old object or the whole new one; when `body` yields an error, or the call fails or is
    /// dropped, no partial object becomes visible. Memory stays bounded by the backend's
    /// buffer (one S3 part at most), whatever the object's size.
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<(), StoreError>;

    /// Streams the object under `key`; `NotFound` when there is none.
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StoreError>;

    /// The object's metadata; `NotFound` when there is none (deletions are verified with it).
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError>;

    /// Deletes the object under `key`. Idempotent: deleting a missing object is `Ok`.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Deletes every key, in batches of the backend's limit (1,000 per S3 `DeleteObjects`).
    /// Missing keys count as deleted; the report lists each key that may remain, with why.
    async fn delete_many(&self, keys: &[ObjectKey]) -> DeleteReport;

    /// One page of the objects whose keys start with `prefix` (empty: all), in ascending key
    /// order, at most `max_keys` (clamped to 1..=[`MAX_LIST_PAGE`]), starting after the page
    /// that returned `continuation`.
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError>;

    /// Whether the backend answers (the `/readyz` check): cheap, reads no object.
    async fn check_connectivity(&self) -> Result<(), StoreError>;

    /// On a versioned backend, deletes every stored version and delete marker of each key
    /// (what `delete` leaves behind there); the report lists what may remain. A backend that
    /// keeps no versions has nothing more to delete: the default does nothing.
    async fn purge_versions(&self, keys: &[ObjectKey]) -> DeleteReport {
        let _ = keys;
        DeleteReport::default()
    }

    /// Of `keys`, those the backend still holds anything of: the object itself or, on a
    /// versioned backend, any version or delete marker. The proof of deletion: empty after
    /// `delete_many` and `purge_versions` succeeded. The default asks `head` for each key;
    /// backends may answer many keys with one listing.
    async fn still_stored(&self, keys: &[ObjectKey]) -> Result<Vec<ObjectKey>, StoreError> {
        let mut stored = Vec::new();
        for key in keys {
            match self.head(key).await {
                Ok(_) => stored.push(key.clone()),
                Err(err) if err.kind() == StoreErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        Ok(stored)
    }
}

/// A body of one chunk.
pub fn body_from_bytes(bytes: impl Into<Bytes>) -> ByteStream {
    let bytes = bytes.into();
    Box::pin(stream::iter((!bytes.is_empty()).then_some(Ok(bytes))))
}

/// A body from any stream of chunks.
pub fn body_from_stream(
    stream: impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static,
) -> ByteStream {
    Box::pin(stream)
}

/// Bytes that may hold plaintext media: zeroized (whole allocation, spare capacity included)
/// when dropped. `zeroize`'s own `Vec` impl wipes element by element; this wipes with one
/// bulk fill behind an optimisation barrier, an order of magnitude faster on media.
#[derive(Default)]
pub struct SecretBuffer(Vec<u8>);

impl SecretBuffer {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        SecretBuffer(Vec::with_capacity(capacity))
    }

    /// Bytes it can hold without reallocating.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// The bytes, mutably; growing past the capacity is the caller's to avoid (a reallocation
    /// would leave the old bytes behind).
    pub fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for SecretBuffer {
    fn drop(&mut self) {
        self.0.spare_capacity_mut().zeroize();
        self.0.as_mut_slice().zeroize();
    }
}

impl std::ops::Deref for SecretBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for SecretBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBuffer({} bytes)", self.0.len())
    }
}

/// Reads a whole body into memory, refusing more than `max_bytes` (`InvalidInput`). The buffer
/// is zeroized when dropped, and when it grows the old allocation is zeroized too: use it for
/// decrypted media.
pub async fn read_to_end(mut body: ByteStream, max_bytes: u64) -> Result<SecretBuffer, StoreError> {
    let mut buffer = SecretBuffer::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let needed = buffer.len() + chunk.len();
        if needed as u64 > max_bytes {
            return Err(StoreError::invalid(format!(
                "object is larger than {max_bytes} bytes"
            )));
        }
        if needed > buffer.capacity() {
            // Grow by hand: Vec's own growth would leave the old bytes behind, unzeroized.
            let capacity = needed.max(buffer.capacity() * 2).min(max_bytes as usize);
            let mut grown = SecretBuffer::with_capacity(capacity);
            grown.as_mut_vec().extend_from_slice(&buffer);
            buffer = grown;
        }
        buffer.as_mut_vec().extend_from_slice(&chunk);
    }
    Ok(buffer)
}

/// Every object under `prefix`, page after page. For bounded listings (tests, small prefixes);
/// large sweeps page with [`ObjectStore::list_page`] themselves.
pub async fn list_all(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut objects = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let page = store
            .list_page(prefix, continuation.as_deref(), MAX_LIST_PAGE)
            .await?;
        objects.extend(page.objects);
        match page.continuation {
            Some(next) => continuation = Some(next),
            None => return Ok(objects),
        }
    }
}

/// `max_keys` clamped to what one page may hold.
pub(crate) fn page_size(max_keys: usize) -> usize {
    max_keys.clamp(1, MAX_LIST_PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        body_from_stream(stream::iter(
            parts
                .iter()
                .map(|part| Ok(Bytes::from_static(part)))
                .collect::<Vec<_>>(),
        ))
    }

    #[tokio::test]
    async fn read_to_end_concatenates_and_bounds() {
        let all = read_to_end(chunks(&[b"ab", b"", b"cde"]), 5).await.unwrap();
        assert_eq!(&all[..], b"abcde");
        let err = read_to_end(chunks(&[b"ab", b"cdef"]), 5).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn an_empty_body_has_no_chunks() {
        let mut body = body_from_bytes(Bytes::new());
        assert!(body.next().await.is_none());
    }
}
