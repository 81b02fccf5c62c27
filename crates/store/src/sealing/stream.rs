//! The two halves of sealing as streams: [`SealStream`] turns plaintext chunks into the header
//! followed by encrypted segments; [`OpenStream`] turns the segments after a parsed header back
//! into plaintext, verifying each. Both hold one segment at a time.
//!
//! Segment boundaries: a segment is sealed as "not last" only once a byte after it is known to
//! exist, and the final segment (possibly empty, possibly full) carries the STREAM last flag.
//! The reader mirrors this, so a stream cut at any point fails to authenticate.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use zeroize::Zeroizing;

use super::format::{NONCE_PREFIX_LEN, TAG_LEN};
use super::keyring::DataKey;
use crate::api::ByteStream;
use crate::error::StoreError;

fn cipher(data_key: &DataKey) -> Aes256Gcm {
    Aes256Gcm::new(data_key.expose().into())
}

/// Plaintext in, `header ‖ segment₀ ‖ … ‖ segmentₙ` out.
pub(crate) struct SealStream {
    input: ByteStream,
    /// `None` after the last segment was sealed (STREAM consumes it).
    encryptor: Option<EncryptorBE32<Aes256Gcm>>,
    /// The header's bytes: emitted first, and the associated data of every segment.
    header: Bytes,
    header_sent: bool,
    segment_size: usize,
    /// Plaintext of the segment being filled; zeroized if dropped before it is encrypted.
    segment: Zeroizing<Vec<u8>>,
    /// What is left of the last input chunk.
    pending: Bytes,
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
            encryptor: Some(EncryptorBE32::from_aead(
                cipher(data_key),
                nonce_prefix.into(),
            )),
            header,
            header_sent: false,
            segment_size,
            segment: Zeroizing::new(Vec::with_capacity(segment_size + TAG_LEN)),
            pending: Bytes::new(),
            done: false,
        }
    }

    fn seal(&mut self, last: bool) -> Result<Bytes, StoreError> {
        // Encrypted in place: once sealed, the buffer holds only ciphertext and can leave.
        let next = if last {
            Vec::new()
        } else {
            Vec::with_capacity(self.segment_size + TAG_LEN)
        };
        let mut buffer = Zeroizing::new(std::mem::replace(&mut *self.segment, next));
        let sealed = if last {
            self.encryptor
                .take()
                .map(|encryptor| encryptor.encrypt_last_in_place(&self.header, &mut *buffer))
        } else {
            self.encryptor
                .as_mut()
                .map(|encryptor| encryptor.encrypt_next_in_place(&self.header, &mut *buffer))
        };
        match sealed {
            Some(Ok(())) => Ok(Bytes::from(std::mem::take(&mut *buffer))),
            // STREAM's 32-bit counter ran out: 2³² segments, far beyond any object here.
            _ => Err(StoreError::internal("object has too many segments to seal")),
        }
    }
}

impl Stream for SealStream {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if !this.header_sent {
            this.header_sent = true;
            return Poll::Ready(Some(Ok(this.header.clone())));
        }
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if !this.pending.is_empty() {
                if this.segment.len() == this.segment_size {
                    // More plaintext follows, so this full segment is not the last.
                    let sealed = this.seal(false);
                    this.done = sealed.is_err();
                    return Poll::Ready(Some(sealed));
                }
                let take = (this.segment_size - this.segment.len()).min(this.pending.len());
                this.segment.extend_from_slice(&this.pending[..take]);
                this.pending.advance(take);
                continue;
            }
            match ready!(this.input.poll_next_unpin(cx)) {
                Some(Ok(chunk)) => this.pending = chunk,
                Some(Err(err)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    this.done = true;
                    return Poll::Ready(Some(this.seal(true)));
                }
            }
        }
    }
}

/// Stored segments in (the header already parsed and its key unwrapped), plaintext out. Each
/// chunk it yields is one verified segment, in a buffer zeroized when the last reference to it
/// is dropped.
pub(crate) struct OpenStream {
    input: ByteStream,
    /// `None` after the last segment was opened.
    decryptor: Option<DecryptorBE32<Aes256Gcm>>,
    /// The header's bytes, the associated data of every segment.
    header: Bytes,
    /// A full stored segment: plaintext segment size plus the tag.
    stored_segment: usize,
    segment: Vec<u8>,
    pending: Bytes,
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
            decryptor: Some(DecryptorBE32::from_aead(
                cipher(data_key),
                nonce_prefix.into(),
            )),
            header,
            stored_segment: segment_size + TAG_LEN,
            segment: Vec::with_capacity(segment_size + TAG_LEN),
            pending: already_read,
            done: false,
        }
    }

    fn open(&mut self, last: bool) -> Result<Bytes, StoreError> {
        let next = if last {
            Vec::new()
        } else {
            Vec::with_capacity(self.stored_segment)
        };
        let mut buffer = Zeroizing::new(std::mem::replace(&mut self.segment, next));
        let opened = if last {
            self.decryptor
                .take()
                .map(|decryptor| decryptor.decrypt_last_in_place(&self.header, &mut *buffer))
        } else {
            self.decryptor
                .as_mut()
                .map(|decryptor| decryptor.decrypt_next_in_place(&self.header, &mut *buffer))
        };
        match opened {
            Some(Ok(())) => Ok(Bytes::from_owner(buffer)),
            _ => Err(StoreError::corrupt(
                "sealed segment failed authentication (tampered, truncated or reordered)",
            )),
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
        loop {
            if !this.pending.is_empty() {
                if this.segment.len() == this.stored_segment {
                    let opened = this.open(false);
                    this.done = opened.is_err();
                    return Poll::Ready(Some(opened));
                }
                let take = (this.stored_segment - this.segment.len()).min(this.pending.len());
                this.segment.extend_from_slice(&this.pending[..take]);
                this.pending.advance(take);
                continue;
            }
            match ready!(this.input.poll_next_unpin(cx)) {
                Some(Ok(chunk)) => this.pending = chunk,
                Some(Err(err)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    this.done = true;
                    return Poll::Ready(match this.open(true) {
                        // An empty final segment verified: the object simply ends.
                        Ok(plain) if plain.is_empty() => None,
                        other => Some(other),
                    });
                }
            }
        }
    }
}
