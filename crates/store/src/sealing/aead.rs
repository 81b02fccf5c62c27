//! AES-256-GCM with 96-bit nonces and detached 128-bit tags: from AWS-LC where the build has it
//! (feature `aws-lc`, on with `s3`, whose TLS stack links AWS-LC already), from RustCrypto's
//! pure-Rust `aes-gcm` otherwise (the lean build: no C library to compile for a first run).
//! One algorithm, the same bytes either way; a test checks that each opens what the other
//! seals. Why two: sealing 232 KB photos in 64 KiB segments here, `aes-gcm` 0.10 ran at
//! 0.63–0.67 GB/s (its GHASH one block at a time) and AWS-LC at 10.6–11.5 GB/s (AVX-512 VAES);
//! at 750 uploads/s that was a quarter of ingest's CPU (issue 20).
//!
//! Key material: `aes-gcm` wipes its round keys on drop (the `aes` crate's `zeroize` feature);
//! AWS-LC keeps the key schedule in an `EVP_AEAD_CTX` it allocates itself, and its allocator
//! (`OPENSSL_free`) cleanses every allocation before freeing it. The raw key bytes stay with
//! the caller, in `Zeroizing` arrays.

use aes_gcm::aead::{AeadInPlace, KeyInit};

use super::format::TAG_LEN;
use super::keyring::KEY_LEN;

/// Bytes in a nonce.
pub(crate) const NONCE_LEN: usize = 12;

/// Sealing or opening failed: a buffer too large to seal, or (opening) a tag that does not
/// authenticate. Callers say which, in their own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AeadFailed;

/// An AES-256-GCM key, ready to seal and open.
pub(crate) struct Aes256Gcm(Backend);

enum Backend {
    #[cfg(feature = "aws-lc")]
    AwsLc(aws_lc_rs::aead::LessSafeKey),
    // With AWS-LC built in, only the tests (which check one against the other) make this one.
    #[cfg_attr(feature = "aws-lc", allow(dead_code))]
    RustCrypto(Box<aes_gcm::Aes256Gcm>),
}

impl Aes256Gcm {
    /// The key on the fastest implementation this build has.
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        #[cfg(feature = "aws-lc")]
        {
            Self::aws_lc(key)
        }
        #[cfg(not(feature = "aws-lc"))]
        {
            Self::rust_crypto(key)
        }
    }

    /// The key on AWS-LC.
    #[cfg(feature = "aws-lc")]
    pub(crate) fn aws_lc(key: &[u8; KEY_LEN]) -> Self {
        use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
        // Only a wrong key length fails, and the type rules that out.
        let key = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256-GCM key");
        Aes256Gcm(Backend::AwsLc(LessSafeKey::new(key)))
    }

    /// The key on RustCrypto's `aes-gcm`.
    #[cfg_attr(feature = "aws-lc", allow(dead_code))]
    pub(crate) fn rust_crypto(key: &[u8; KEY_LEN]) -> Self {
        Aes256Gcm(Backend::RustCrypto(Box::new(aes_gcm::Aes256Gcm::new(
            key.into(),
        ))))
    }

    /// Encrypts `data` in place under `nonce`, authenticating `aad` too; the tag.
    pub(crate) fn seal_detached(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadFailed> {
        match &self.0 {
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc(key) => {
                use aws_lc_rs::aead::{Aad, Nonce};
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        data,
                    )
                    .map_err(|_| AeadFailed)?;
                tag.as_ref().try_into().map_err(|_| AeadFailed)
            }
            Backend::RustCrypto(cipher) => cipher
                .encrypt_in_place_detached(&nonce.into(), aad, data)
                .map(Into::into)
                .map_err(|_| AeadFailed),
        }
    }

    /// Checks `tag` over `data` and `aad` and decrypts `data` in place. On failure `data` holds
    /// no plaintext a caller may use (it may have been overwritten).
    pub(crate) fn open_detached(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AeadFailed> {
        if tag.len() != TAG_LEN {
            return Err(AeadFailed);
        }
        match &self.0 {
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc(key) => {
                use aws_lc_rs::aead::{Aad, Nonce};
                key.open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    tag,
                    data,
                )
                .map(|_| ())
                .map_err(|_| AeadFailed)
            }
            Backend::RustCrypto(cipher) => cipher
                .decrypt_in_place_detached(&nonce.into(), aad, data, aes_gcm::Tag::from_slice(tag))
                .map_err(|_| AeadFailed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every implementation this build has.
    fn all(key: &[u8; KEY_LEN]) -> Vec<(&'static str, Aes256Gcm)> {
        let mut keys = vec![("aes-gcm", Aes256Gcm::rust_crypto(key))];
        #[cfg(feature = "aws-lc")]
        keys.push(("aws-lc", Aes256Gcm::aws_lc(key)));
        keys
    }

    /// The same bytes from each implementation, each opening the others' (lengths around the
    /// AES block and the implementations' wide strides), and each refusing a flipped bit.
    #[test]
    fn implementations_agree() {
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8 * 7 + 1);
        let aad = b"sealed object header";
        for len in [0, 1, 15, 16, 17, 255, 256, 257, 4095, 65536] {
            let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| (len + i) as u8);
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let sealed: Vec<(Vec<u8>, [u8; TAG_LEN])> = all(&key)
                .iter()
                .map(|(_, cipher)| {
                    let mut data = plain.clone();
                    let tag = cipher.seal_detached(nonce, aad, &mut data).unwrap();
                    (data, tag)
                })
                .collect();
            assert!(sealed.windows(2).all(|w| w[0] == w[1]), "length {len}");
            let (ciphertext, tag) = &sealed[0];
            for (name, cipher) in all(&key) {
                let mut data = ciphertext.clone();
                cipher.open_detached(nonce, aad, &mut data, tag).unwrap();
                assert_eq!(data, plain, "{name} length {len}");
                let mut bad = *tag;
                bad[len % TAG_LEN] ^= 1;
                let mut data = ciphertext.clone();
                assert_eq!(
                    cipher.open_detached(nonce, aad, &mut data, &bad),
                    Err(AeadFailed),
                    "{name} length {len}"
                );
                assert_eq!(
                    cipher.open_detached(nonce, b"other header", &mut ciphertext.clone(), tag),
                    Err(AeadFailed),
                    "{name} length {len}"
                );
                assert_eq!(
                    cipher.open_detached(nonce, aad, &mut ciphertext.clone(), &tag[..15]),
                    Err(AeadFailed),
                    "{name} length {len}"
                );
            }
        }
    }

    /// A known answer: NIST's GCM test case 16 (AES-256, 96-bit IV, 60-byte plaintext, 20-byte
    /// AAD), from the GCM specification's appendix B.
    #[test]
    fn known_answer() {
        let hex = |s: &str| hex::decode(s).unwrap();
        let key: [u8; KEY_LEN] =
            hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
                .try_into()
                .unwrap();
        let nonce: [u8; NONCE_LEN] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let plain = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let expected = hex(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        );
        let expected_tag = hex("76fc6ece0f4e1768cddf8853bb2d551b");
        for (name, cipher) in all(&key) {
            let mut data = plain.clone();
            let tag = cipher.seal_detached(nonce, &aad, &mut data).unwrap();
            assert_eq!(data, expected, "{name}");
            assert_eq!(tag.to_vec(), expected_tag, "{name}");
        }
    }
}
