//! The sealed object header (`SEALING.md` is the specification): what it holds, how it is
//! written and parsed. Parsing untrusted bytes never panics: every length is checked first.

use crate::error::StoreError;

/// First bytes of every sealed object.
pub const MAGIC: &[u8; 6] = b"CFSEAL";
/// The format this code writes and reads.
pub const VERSION: u8 = 1;
/// AES-256-GCM in the STREAM construction with a 32-bit big-endian segment counter.
pub const ALG_AES256GCM_STREAM_BE32: u8 = 1;
/// Bytes of the per-object nonce prefix; the STREAM counter and last flag fill the other 5.
pub const NONCE_PREFIX_LEN: usize = 7;
/// AES-GCM tag bytes at the end of every segment.
pub const TAG_LEN: usize = 16;
/// Plaintext bytes per segment by default: bounded memory, negligible tag overhead (0.02%).
pub const DEFAULT_SEGMENT_SIZE: usize = 64 * 1024;
/// Smallest segment accepted (tests use small segments to build many of them).
pub const MIN_SEGMENT_SIZE: usize = 64;
/// Largest segment accepted: a reader buffers one segment.
pub const MAX_SEGMENT_SIZE: usize = 16 * 1024 * 1024;
/// Longest key-encryption key id.
pub const MAX_KEK_ID_LEN: usize = 64;
/// Longest wrapped data key (a KMS ciphertext blob fits).
pub const MAX_WRAPPED_KEY_LEN: usize = 1024;
/// Bytes before the key id: magic, version, algorithm, segment size, nonce prefix.
pub const FIXED_LEN: usize = 6 + 1 + 1 + 4 + NONCE_PREFIX_LEN;

/// A data key wrapped by a key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Which key-encryption key wrapped it: the keyring looks the key up by this id.
    pub kek_id: String,
    /// The wrapped data key, opaque to everything but the keyring.
    pub ciphertext: Vec<u8>,
}

/// The header of one sealed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub segment_size: u32,
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    pub wrapped: WrappedKey,
}

/// Checks a key-encryption key id: 1..=64 ASCII letters, digits, `.`, `_` or `-`.
pub(crate) fn check_kek_id(id: &str) -> Result<(), StoreError> {
    let ok = (1..=MAX_KEK_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(format!(
            "key id {id:?} is not 1 to {MAX_KEK_ID_LEN} of [A-Za-z0-9._-]"
        )))
    }
}

/// The fixed part of a header: also the context the data key is wrapped under, so a wrapped
/// key moved to a header with another segment size or nonce prefix no longer unwraps.
pub(crate) fn fixed_part(
    segment_size: u32,
    nonce_prefix: &[u8; NONCE_PREFIX_LEN],
) -> [u8; FIXED_LEN] {
    let mut out = [0u8; FIXED_LEN];
    out[..6].copy_from_slice(MAGIC);
    out[6] = VERSION;
    out[7] = ALG_AES256GCM_STREAM_BE32;
    out[8..12].copy_from_slice(&segment_size.to_be_bytes());
    out[12..].copy_from_slice(nonce_prefix);
    out
}

impl Header {
    pub fn fixed_part(&self) -> [u8; FIXED_LEN] {
        fixed_part(self.segment_size, &self.nonce_prefix)
    }

    /// The header's bytes; they are also the associated data of every segment.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        check_kek_id(&self.wrapped.kek_id)?;
        let wrapped_len = u16::try_from(self.wrapped.ciphertext.len())
            .ok()
            .filter(|len| usize::from(*len) <= MAX_WRAPPED_KEY_LEN)
            .ok_or_else(|| StoreError::internal("wrapped data key is too long"))?;
        let id = self.wrapped.kek_id.as_bytes();
        let mut out = Vec::with_capacity(FIXED_LEN + 3 + id.len() + self.wrapped.ciphertext.len());
        out.extend_from_slice(&self.fixed_part());
        out.push(id.len() as u8); // checked: at most 64
        out.extend_from_slice(id);
        out.extend_from_slice(&wrapped_len.to_be_bytes());
        out.extend_from_slice(&self.wrapped.ciphertext);
        Ok(out)
    }

    /// Parses a header from the start of `bytes`: `Ok(None)` when more bytes are needed,
    /// `Ok(Some((header, length)))` once complete, `Corrupt` when it cannot be a header.
    pub fn parse(bytes: &[u8]) -> Result<Option<(Header, usize)>, StoreError> {
        let have = bytes.len();
        let magic_seen = &bytes[..have.min(MAGIC.len())];
        if magic_seen != &MAGIC[..magic_seen.len()] {
            return Err(StoreError::corrupt("not a sealed object (bad magic)"));
        }
        if have < FIXED_LEN + 1 {
            return Ok(None);
        }
        if bytes[6] != VERSION {
            return Err(StoreError::corrupt(format!(
                "unsupported sealing format version {}",
                bytes[6]
            )));
        }
        if bytes[7] != ALG_AES256GCM_STREAM_BE32 {
            return Err(StoreError::corrupt(format!(
                "unsupported sealing algorithm {}",
                bytes[7]
            )));
        }
        let segment_size = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&(segment_size as usize)) {
            return Err(StoreError::corrupt(format!(
                "segment size {segment_size} out of range"
            )));
        }
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&bytes[12..FIXED_LEN]);
        let id_len = usize::from(bytes[FIXED_LEN]);
        let id_end = FIXED_LEN + 1 + id_len;
        if have < id_end + 2 {
            return Ok(None);
        }
        let kek_id = std::str::from_utf8(&bytes[FIXED_LEN + 1..id_end])
            .ok()
            .filter(|id| check_kek_id(id).is_ok())
            .ok_or_else(|| StoreError::corrupt("malformed key id in header"))?
            .to_owned();
        let wrapped_len = usize::from(u16::from_be_bytes([bytes[id_end], bytes[id_end + 1]]));
        if wrapped_len == 0 || wrapped_len > MAX_WRAPPED_KEY_LEN {
            return Err(StoreError::corrupt(format!(
                "wrapped key length {wrapped_len} out of range"
            )));
        }
        let end = id_end + 2 + wrapped_len;
        if have < end {
            return Ok(None);
        }
        let header = Header {
            segment_size,
            nonce_prefix,
            wrapped: WrappedKey {
                kek_id,
                ciphertext: bytes[id_end + 2..end].to_vec(),
            },
        };
        Ok(Some((header, end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreErrorKind;

    fn sample() -> Header {
        Header {
            segment_size: 65536,
            nonce_prefix: [1, 2, 3, 4, 5, 6, 7],
            wrapped: WrappedKey {
                kek_id: "k2026-05".into(),
                ciphertext: vec![9; 60],
            },
        }
    }

    #[test]
    fn round_trips_and_asks_for_more_bytes_until_complete() {
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(Header::parse(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
        let mut with_body = bytes.clone();
        with_body.extend_from_slice(b"segments follow");
        assert_eq!(
            Header::parse(&with_body).unwrap(),
            Some((sample(), bytes.len()))
        );
    }

    #[test]
    fn rejects_what_cannot_be_a_header() {
        let good = sample().encode().unwrap();
        let mut cases = Vec::new();
        cases.push(b"PK\x03\x04 a zip file".to_vec());
        for (index, value) in [
            (6, 2u8),
            (7, 9),
            (8, 0xff),
            (FIXED_LEN, 0),
            (FIXED_LEN + 1, b'/'),
        ] {
            let mut bad = good.clone();
            bad[index] = value;
            cases.push(bad);
        }
        let mut zero_wrapped = good.clone();
        let at = FIXED_LEN + 1 + 8;
        zero_wrapped[at] = 0;
        zero_wrapped[at + 1] = 0;
        cases.push(zero_wrapped);
        for bad in cases {
            let err = Header::parse(&bad).unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{bad:?}");
        }
    }

    #[test]
    fn refuses_to_write_bad_key_ids() {
        let mut header = sample();
        header.wrapped.kek_id = "has space".into();
        assert!(header.encode().is_err());
        header.wrapped.kek_id = "k".repeat(MAX_KEK_ID_LEN + 1);
        assert!(header.encode().is_err());
    }
}
