//! The two halves of sealing as streams: [`SealStream`] turns plaintext chunks into the header
//! followed by sealed segments; [`OpenStream`] turns the segments after a parsed header back
//! into plaintext, verifying each. Both hold at most one segment of their own.
//!
//! Segment boundaries: a segment is sealed as "not last" only once a byte after it is known to
//! exist, and the final segment (possibly empty, possibly full) carries the STREAM last flag.
//! The reader mirrors this, so a stream cut at any point fails to authenticate.
//!
//! Zero copy where ownership allows: a chunk nobody else holds (`Bytes::try_into_mut`) is sealed
//! or opened in place, whole segments at a time, and handed on as slices of itself; shared
//! chunks, and segments straddling chunks, are copied into a segment buffer.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use zeroize::{Zeroize, Zeroizing};

use super::aead::{Aes256Gcm, NONCE_LEN};
use super::format::{NONCE_PREFIX_LEN, TAG_LEN};
use super::keyring::DataKey;
use crate::api::{ByteStream, SecretBuffer};
use crate::error::StoreError;

/// STREAM (Hoang et al. 2015) over AES-256-GCM, exactly as `aead::stream::StreamBE32`: nonce =
/// prefix (7) ‖ segment counter (u32 big-endian) ‖ last flag (1 byte). Written out here to seal
/// with detached tags in place; a test checks it against `aead::stream`.
struct Segments {
    cipher: Aes256Gcm,
    prefix: [u8; NONCE_PREFIX_LEN],
    /// The next segment's position.
    counter: u32,
    /// Set once the last segment was processed: nothing may follow it.
    finished: bool,
}

impl Segments {
    fn new(data_key: &DataKey, prefix: &[u8; NONCE_PREFIX_LEN]) -> Self {
        Segments {
            cipher: Aes256Gcm::new(data_key.expose()),
            prefix: *prefix,
            counter: 0,
            finished: false,
        }
    }

    /// The nonce for the next segment, advancing the counter.
    fn next_nonce(&mut self, last: bool) -> Option<[u8; NONCE_LEN]> {
        if self.finished {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..NONCE_PREFIX_LEN].copy_from_slice(&self.prefix);
        nonce[NONCE_PREFIX_LEN..11].copy_from_slice(&self.counter.to_be_bytes());
        nonce[11] = u8::from(last);
        if last {
            self.finished = true;
        } else {
            self.counter = self.counter.checked_add(1)?;
        }
        Some(nonce)
    }

    fn seal(
        &mut self,
        aad: &[u8],
        data: &mut [u8],
        last: bool,
    ) -> Result<[u8; TAG_LEN], StoreError> {
        let nonce = self
            .next_nonce(last)
            .ok_or_else(|| StoreError::internal("object has too many segments to seal"))?;
        self.cipher
            .seal_detached(nonce, aad, data)
            .map_err(|_| StoreError::internal("segment too large to seal"))
    }

    fn open(
        &mut self,
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8],
        last: bool,
    ) -> Result<(), StoreError> {
        let corrupt = || {
            StoreError::corrupt(
                "sealed segment failed authentication (tampered, truncated or reordered)",
            )
        };
        let nonce = self.next_nonce(last).ok_or_else(corrupt)?;
        self.cipher
            .open_detached(nonce, aad, data, tag)
            .map_err(|_| corrupt())
    }
}

/// The rest of the current input chunk: ours to modify when nobody else holds it.
enum Pending {
    Shared(Bytes),
    Owned(BytesMut),
}

impl Pending {
    fn from_chunk(chunk: Bytes) -> Self {
        match chunk.try_into_mut() {
            Ok(owned) => Pending::Owned(owned),
            Err(shared) => Pending::Shared(shared),
        }
    }

    fn len(&self) -> usize {
        match self {
            Pending::Shared(bytes) => bytes.len(),
            Pending::Owned(bytes) => bytes.len(),
        }
    }

    /// Copies `n` bytes into `out` and drops them; an owned chunk's copy is wiped first (the
    /// bytes may be plaintext).
    fn move_into(&mut self, out: &mut Vec<u8>, n: usize) {
        match self {
            Pending::Shared(bytes) => {
                out.extend_from_slice(&bytes[..n]);
                bytes.advance(n);
            }
            Pending::Owned(bytes) => {
                out.extend_from_slice(&bytes[..n]);
                bytes[..n].zeroize();
                bytes.advance(n);
            }
        }
    }
}

/// Owns a region of a chunk holding plaintext; wipes it when the last `Bytes` over it drops.
struct PlaintextRegion(BytesMut);

impl AsRef<[u8]> for PlaintextRegion {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for PlaintextRegion {
    fn drop(&mut self) {
        self.0.as_mut().zeroize();
    }
}

/// Plaintext in, `header ‖ segment₀ ‖ … ‖ segmentₙ` out.
pub(crate) struct SealStream {
    input: ByteStream,
    segments: Segments,
    /// The header's bytes: emitted first, and the associated data of every segment.
    header: Bytes,
    /// Emitted before anything else: the header, then a tag after an in-place segment.
    queued: Option<Bytes>,
    segment_size: usize,
    /// Plaintext of a segment being assembled from pieces; wiped if dropped unsealed.
    segment: Zeroizing<Vec<u8>>,
    pending: Pending,
    done: bool,
}

impl SealStream {
    pub fn new(
        input: ByteStream,
        data_key: &DataKey,
        nonce_prefix: &[u8; NONCE_PREFIX_LEN],
        header: Bytes,
        segment_size: usize,
    ) -> Self {
        SealStream {
            input,
            segments: Segments::new(data_key, nonce_prefix),
            queued: Some(header.clone()),
            header,
            segment_size,
            segment: Zeroizing::new(Vec::new()),
            pending: Pending::Shared(Bytes::new()),
            done: false,
        }
    }

    /// Seals the assembled segment buffer; sealed in place, it leaves as ciphertext.
    fn seal_buffer(&mut self, last: bool) -> Result<Bytes, StoreError> {
        let mut buffer = std::mem::take(&mut *self.segment);
        match self.segments.seal(&self.header, &mut buffer, last) {
            Ok(tag) => {
                buffer.extend_from_slice(&tag);
                Ok(Bytes::from(buffer))
            }
            Err(err) => {
                buffer.zeroize();
                Err(err)
            }
        }
    }

    fn next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>> {
        loop {
            let size = self.segment_size;
            if self.pending.len() > 0 {
                if self.segment.len() == size {
                    // More plaintext follows, so this full segment is not the last.
                    return Poll::Ready(Some(self.seal_buffer(false)));
                }
                if self.segment.is_empty()
                    && self.pending.len() > size
                    && let Pending::Owned(owned) = &mut self.pending
                {
                    let mut piece = owned.split_to(size);
                    let tag = self.segments.seal(&self.header, &mut piece, false)?;
                    self.queued = Some(Bytes::copy_from_slice(&tag));
                    return Poll::Ready(Some(Ok(piece.freeze())));
                }
                if self.segment.capacity() == 0 {
                    self.segment.reserve_exact(size + TAG_LEN);
                }
                let take = (size - self.segment.len()).min(self.pending.len());
                self.pending.move_into(&mut self.segment, take);
                continue;
            }
            match ready!(self.input.poll_next_unpin(cx)) {
                Some(Ok(chunk)) => self.pending = Pending::from_chunk(chunk),
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    if self.segment.capacity() == 0 {
                        self.segment.reserve_exact(TAG_LEN);
                    }
                    self.done = true;
                    return Poll::Ready(Some(self.seal_buffer(true)));
                }
            }
        }
    }
}

impl Drop for SealStream {
    fn drop(&mut self) {
        // Plaintext handed over to us and not yet sealed (an error or a cancelled put).
        if let Pending::Owned(owned) = &mut self.pending {
            owned.as_mut().zeroize();
        }
    }
}

impl Stream for SealStream {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(queued) = this.queued.take() {
            return Poll::Ready(Some(Ok(queued)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let item = ready!(this.next_item(cx));
        if matches!(item, Some(Err(_))) {
            this.done = true;
        }
        Poll::Ready(item)
    }
}

/// Stored segments in (the header already parsed and its key unwrapped), plaintext out. Each
/// chunk it yields is one verified segment whose bytes are wiped when the last reference to
/// them is dropped.
pub(crate) struct OpenStream {
    input: ByteStream,
    segments: Segments,
    /// The header's bytes, the associated data of every segment.
    header: Bytes,
    segment_size: usize,
    /// Ciphertext of a segment being assembled from pieces, opened in place.
    segment: SecretBuffer,
    pending: Pending,
    done: bool,
}

impl OpenStream {
    pub fn new(
        input: ByteStream,
        data_key: &DataKey,
        nonce_prefix: &[u8; NONCE_PREFIX_LEN],
        header: Bytes,
        segment_size: usize,
        already_read: Bytes,
    ) -> Self {
        OpenStream {
            input,
            segments: Segments::new(data_key, nonce_prefix),
            header,
            segment_size,
            segment: SecretBuffer::default(),
            pending: Pending::from_chunk(already_read),
            done: false,
        }
    }

    fn open_buffer(&mut self, last: bool) -> Result<Bytes, StoreError> {
        let mut buffer = std::mem::take(&mut self.segment);
        let stored = buffer.as_mut_vec();
        let Some(plain_len) = stored.len().checked_sub(TAG_LEN) else {
            return Err(StoreError::corrupt("sealed object is truncated"));
        };
        let (data, tag) = stored.split_at_mut(plain_len);
        self.segments.open(&self.header, data, tag, last)?;
        stored.truncate(plain_len);
        Ok(Bytes::from_owner(buffer))
    }

    fn next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StoreError>>> {
        let stored_segment = self.segment_size + TAG_LEN;
        loop {
            if self.pending.len() > 0 {
                if self.segment.len() == stored_segment {
                    return Poll::Ready(Some(self.open_buffer(false)));
                }
                if self.segment.is_empty()
                    && self.pending.len() > stored_segment
                    && let Pending::Owned(owned) = &mut self.pending
                {
                    let mut piece = owned.split_to(stored_segment);
                    let (data, tag) = piece.split_at_mut(self.segment_size);
                    self.segments.open(&self.header, data, tag, false)?;
                    piece.truncate(self.segment_size);
                    return Poll::Ready(Some(Ok(Bytes::from_owner(PlaintextRegion(piece)))));
                }
                if self.segment.as_mut_vec().capacity() == 0 {
                    self.segment = SecretBuffer::with_capacity(stored_segment);
                }
                let take = (stored_segment - self.segment.len()).min(self.pending.len());
                self.pending.move_into(self.segment.as_mut_vec(), take);
                continue;
            }
            match ready!(self.input.poll_next_unpin(cx)) {
                Some(Ok(chunk)) => self.pending = Pending::from_chunk(chunk),
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    self.done = true;
                    return Poll::Ready(match self.open_buffer(true) {
                        // An empty final segment verified: the object simply ends.
                        Ok(plain) if plain.is_empty() => None,
                        other => Some(other),
                    });
                }
            }
        }
    }
}

impl Stream for OpenStream {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let item = ready!(this.next_item(cx));
        if matches!(item, Some(Err(_))) {
            this.done = true;
        }
        Poll::Ready(item)
    }
}

#[cfg(test)]
mod tests {
    use aes_gcm::aead::KeyInit;
    use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};

    use super::*;

    /// Our STREAM nonces are `aead::stream::StreamBE32`'s: each seals what the other opens.
    #[test]
    fn segments_match_the_aead_crates_stream_construction() {
        let key = DataKey::generate().unwrap();
        let prefix = [3u8; NONCE_PREFIX_LEN];
        let aad = b"header bytes";
        let cipher = || aes_gcm::Aes256Gcm::new(key.expose().into());

        let mut ours = Segments::new(&key, &prefix);
        let mut theirs = DecryptorBE32::from_aead(cipher(), (&prefix).into());
        for (i, last) in [(0, false), (1, false), (2, true)] {
            let mut data = vec![i as u8; 100];
            let tag = ours.seal(aad, &mut data, last).unwrap();
            data.extend_from_slice(&tag);
            if last {
                theirs.decrypt_last_in_place(aad, &mut data).unwrap();
                break;
            }
            theirs.decrypt_next_in_place(aad, &mut data).unwrap();
            assert_eq!(data, vec![i as u8; 100]);
        }

        let mut ours = Segments::new(&key, &prefix);
        let mut theirs = EncryptorBE32::from_aead(cipher(), (&prefix).into());
        let mut first = b"first".to_vec();
        theirs.encrypt_next_in_place(aad, &mut first).unwrap();
        let mut last = b"last".to_vec();
        theirs.encrypt_last_in_place(aad, &mut last).unwrap();
        for (mut sealed, is_last) in [(first, false), (last, true)] {
            let split = sealed.len() - TAG_LEN;
            let (data, tag) = sealed.split_at_mut(split);
            ours.open(aad, data, tag, is_last).unwrap();
        }
        // Nothing may follow the last segment.
        assert!(
            ours.open(aad, &mut [0u8; 0], &[0u8; TAG_LEN], true)
                .is_err()
        );
    }
}
