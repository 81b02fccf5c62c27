//! Envelope encryption as a decorator over any [`ObjectStore`]: each object gets a fresh data
//! key, its body is sealed with AES-256-GCM (AWS-LC's, or RustCrypto's in a build without
//! AWS-LC: `aead`) in fixed-size segments (the STREAM construction),
//! and the data key travels in the object's header wrapped by a [`Keyring`]'s key. The format
//! is specified in `SEALING.md` beside this crate's manifest.

mod aead;
mod format;
mod keyring;
mod stream;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::api::{ByteStream, DeleteReport, ListPage, ObjectMeta, ObjectStore};
use crate::error::StoreError;
use crate::key::ObjectKey;
use format::Header;
use keyring::fill_random;
use stream::{OpenStream, SealStream};

#[cfg(feature = "testsuite")]
pub(crate) use format::FIXED_LEN;
pub use format::{
    DEFAULT_SEGMENT_SIZE, MAX_SEGMENT_SIZE, MIN_SEGMENT_SIZE, NONCE_PREFIX_LEN, TAG_LEN, WrappedKey,
};
pub use keyring::{DataKey, KEY_LEN, Keyring, LocalKeyring, open_keyring};

/// What a sealed object's header says, for tools that audit or rotate keys (which key sealed
/// this object?) and for tests that need the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedLayout {
    /// Bytes of the header; segments start right after it.
    pub header_len: usize,
    /// Plaintext bytes per segment (each stored segment adds a [`TAG_LEN`]-byte tag).
    pub segment_size: usize,
    /// The key-encryption key that wrapped the object's data key.
    pub kek_id: String,
}

impl SealedLayout {
    /// Reads the layout from the first bytes of a stored object (the header is at most about
    /// 1.1 KB). `Corrupt` when they are not a sealed header, `InvalidInput` when too short.
    pub fn parse(stored_prefix: &[u8]) -> Result<Self, StoreError> {
        match Header::parse(stored_prefix)? {
            Some((header, header_len)) => Ok(SealedLayout {
                header_len,
                segment_size: header.segment_size as usize,
                kek_id: header.wrapped.kek_id,
            }),
            None => Err(StoreError::invalid("too few bytes for a sealed header")),
        }
    }
}

/// Seals every object put through it and opens every object read through it.
#[derive(Debug, Clone)]
pub struct SealedObjectStore {
    inner: Arc<dyn ObjectStore>,
    keyring: Arc<dyn Keyring>,
    /// Plaintext bytes per segment: memory held per stream, and the unit of verification.
    segment_size: usize,
}

impl SealedObjectStore {
    /// Seals objects stored in `inner` with data keys wrapped by `keyring`.
    pub fn new(inner: Arc<dyn ObjectStore>, keyring: Arc<dyn Keyring>) -> Self {
        SealedObjectStore {
            inner,
            keyring,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }

    /// Uses `segment_size` plaintext bytes per segment for new objects (readers take it from
    /// each object's header).
    pub fn with_segment_size(mut self, segment_size: usize) -> Result<Self, StoreError> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(StoreError::invalid(format!(
                "segment size {segment_size} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}"
            )));
        }
        self.segment_size = segment_size;
        Ok(self)
    }

    /// The store the sealed bytes live in.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }
}

/// Reads from `body` until a whole header is parsed: the header, its bytes, and what was read
/// past it. The header is small and bounded, so this holds little.
async fn read_header(body: &mut ByteStream) -> Result<(Header, Bytes, Bytes), StoreError> {
    let mut head = BytesMut::new();
    loop {
        let Some(chunk) = body.next().await else {
            return Err(StoreError::corrupt("sealed object ends inside its header"));
        };
        let chunk = chunk?;
        if head.is_empty() {
            // Usual case: the first chunk holds the whole header. Copy the (small) header so
            // the rest stays the only reference to its buffer and can be opened in place.
            if let Some((header, len)) = Header::parse(&chunk)? {
                let header_bytes = Bytes::copy_from_slice(&chunk[..len]);
                return Ok((header, header_bytes, chunk.slice(len..)));
            }
        }
        head.extend_from_slice(&chunk);
        if let Some((header, len)) = Header::parse(&head)? {
            let rest = head.split_off(len).freeze();
            return Ok((header, head.freeze(), rest));
        }
    }
}

#[async_trait]
impl ObjectStore for SealedObjectStore {
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<(), StoreError> {
        let data_key = DataKey::generate()?;
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        fill_random(&mut nonce_prefix)?;
        let segment_size = u32::try_from(self.segment_size)
            .map_err(|_| StoreError::internal("segment size does not fit the header"))?;
        let context = format::fixed_part(segment_size, &nonce_prefix);
        let wrapped = self.keyring.wrap(&data_key, &context).await?;
        let header = Header {
            segment_size,
            nonce_prefix,
            wrapped,
        };
        let header = Bytes::from(header.encode()?);
        let sealed = SealStream::new(body, &data_key, &nonce_prefix, header, self.segment_size);
        self.inner.put(key, Box::pin(sealed)).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StoreError> {
        let mut body = self.inner.get(key).await?;
        let (header, header_bytes, rest) = read_header(&mut body).await?;
        let data_key = self
            .keyring
            .unwrap(&header.wrapped, &header.fixed_part())
            .await?;
        Ok(Box::pin(OpenStream::new(
            body,
            &data_key,
            &header.nonce_prefix,
            header_bytes,
            header.segment_size as usize,
            rest,
        )))
    }

    /// The stored object's metadata: `size` is the sealed size (see `SEALING.md`).
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> DeleteReport {
        self.inner.delete_many(keys).await
    }

    /// Listed sizes are sealed sizes (see `SEALING.md`).
    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        self.inner.list_page(prefix, continuation, max_keys).await
    }

    async fn check_connectivity(&self) -> Result<(), StoreError> {
        self.inner.check_connectivity().await
    }

    async fn purge_versions(&self, keys: &[ObjectKey]) -> DeleteReport {
        self.inner.purge_versions(keys).await
    }

    async fn still_stored(&self, keys: &[ObjectKey]) -> Result<Vec<ObjectKey>, StoreError> {
        self.inner.still_stored(keys).await
    }
}

#[cfg(test)]
mod tests;
