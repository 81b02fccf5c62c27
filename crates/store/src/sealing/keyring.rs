//! Key-encryption keys. [`Keyring`] is KMS-shaped (wrap and unwrap a data key, never hand out a
//! key-encryption key) so a KMS-backed keyring drops in for production; [`LocalKeyring`] holds
//! AES-256 keys by id in this process, from a file or made fresh per process (`ephemeral`).
//!
//! Rotation: add a key and make it current; objects sealed under older keys stay readable while
//! those keys are kept. Destruction: remove a key, and every object sealed under it becomes
//! unreadable (`KeyUnavailable`) — crypto-shredding, even for copies in backups.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::aead::{Aes256Gcm, NONCE_LEN};
use super::format::{TAG_LEN, WrappedKey, check_kek_id};
use crate::error::{StoreError, StoreErrorKind};

/// Bytes in a data key and in a local key-encryption key (AES-256).
pub const KEY_LEN: usize = 32;
/// Domain separation for the local wrapping: a wrapped key cannot be confused with a segment.
const WRAP_LABEL: &[u8] = b"clipfleet kek wrap v1\0";
const WRAP_NONCE_LEN: usize = NONCE_LEN;

/// A fresh 256-bit key for one object, zeroized when dropped.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Self, StoreError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut key[..])?;
        Ok(DataKey(key))
    }

    /// The key bytes (to build a cipher; never store or log them).
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

pub(crate) fn fill_random(buffer: &mut [u8]) -> Result<(), StoreError> {
    OsRng.try_fill_bytes(buffer).map_err(|err| {
        StoreError::new(
            StoreErrorKind::Unavailable,
            "operating system random generator failed",
        )
        .with_source(err)
    })
}

/// Wraps and unwraps data keys with key-encryption keys it never reveals.
#[async_trait]
pub trait Keyring: Send + Sync + fmt::Debug + 'static {
    /// Wraps `data_key` under the current key-encryption key, bound to `context` (authenticated,
    /// not stored: the same context must be given to unwrap).
    async fn wrap(&self, data_key: &DataKey, context: &[u8]) -> Result<WrappedKey, StoreError>;

    /// Unwraps a data key. `KeyUnavailable` when the key-encryption key is not (or no longer)
    /// in the keyring; `Corrupt` when the wrapped key or the context was altered.
    async fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, StoreError>;
}

/// Opens the keyring a config names: `ephemeral` or `file:///path/keyring.toml`.
pub fn open_keyring(spec: &str) -> Result<LocalKeyring, StoreError> {
    if spec == "ephemeral" {
        return LocalKeyring::ephemeral();
    }
    match spec.strip_prefix("file://") {
        Some(path) if path.starts_with('/') => LocalKeyring::load(Path::new(path)),
        _ => Err(StoreError::invalid(format!(
            "keyring {spec:?} is neither \"ephemeral\" nor a file:// url with an absolute path"
        ))),
    }
}

/// AES-256 key-encryption keys by id, one of them current (used to seal).
pub struct LocalKeyring {
    state: RwLock<State>,
}

struct State {
    current: String,
    keys: BTreeMap<String, Zeroizing<[u8; KEY_LEN]>>,
}

/// The keyring file: `current = "<id>"` and a `[keys]` table of id = 64 hex digits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    current: String,
    keys: BTreeMap<String, String>,
}

impl LocalKeyring {
    /// One key, current, under `id`.
    pub fn with_key(id: &str, key: [u8; KEY_LEN]) -> Result<Self, StoreError> {
        Self::from_key(id, Zeroizing::new(key))
    }

    fn from_key(id: &str, key: Zeroizing<[u8; KEY_LEN]>) -> Result<Self, StoreError> {
        check_kek_id(id)?;
        let mut keys = BTreeMap::new();
        keys.insert(id.to_owned(), key);
        Ok(LocalKeyring {
            state: RwLock::new(State {
                current: id.to_owned(),
                keys,
            }),
        })
    }

    /// A random key made now, with an id unique to this process: objects sealed under it are
    /// unreadable once the process ends (the embedded default, where nothing outlives it).
    pub fn ephemeral() -> Result<Self, StoreError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut key[..])?;
        let mut suffix = [0u8; 8];
        fill_random(&mut suffix)?;
        Self::from_key(&format!("ephemeral-{}", hex::encode(suffix)), key)
    }

    /// Reads a keyring file (see `SEALING.md`).
    pub fn load(path: &Path) -> Result<Self, StoreError> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|err| {
                StoreError::from_io(format!("read keyring {}", path.display()), err)
            })?);
        Self::from_toml(&text)
    }

    /// Parses a keyring file's text.
    pub fn from_toml(text: &str) -> Result<Self, StoreError> {
        // Errors from the parser may quote the file: keep them out of the message and source.
        let file: KeyringFile = toml::from_str(text)
            .map_err(|_| StoreError::invalid("keyring file is not valid (current = \"id\" and a [keys] table of id = 64 hex digits)"))?;
        let hex_keys: Vec<(String, Zeroizing<String>)> = file
            .keys
            .into_iter()
            .map(|(id, hex_key)| (id, Zeroizing::new(hex_key)))
            .collect();
        let mut keys = BTreeMap::new();
        for (id, hex_key) in hex_keys {
            check_kek_id(&id)?;
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            hex::decode_to_slice(hex_key.trim(), &mut key[..]).map_err(|_| {
                StoreError::invalid(format!("keyring key {id:?} is not 64 hex digits"))
            })?;
            keys.insert(id, key);
        }
        if !keys.contains_key(&file.current) {
            return Err(StoreError::invalid(format!(
                "keyring's current key {:?} is not among its keys",
                file.current
            )));
        }
        Ok(LocalKeyring {
            state: RwLock::new(State {
                current: file.current,
                keys,
            }),
        })
    }

    /// Adds a key (not current). Refuses an id already present: replacing a key would make
    /// every object sealed under it unreadable.
    pub fn insert(&self, id: &str, key: [u8; KEY_LEN]) -> Result<(), StoreError> {
        let key = Zeroizing::new(key);
        check_kek_id(id)?;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.keys.contains_key(id) {
            return Err(StoreError::invalid(format!(
                "keyring already holds key {id:?}"
            )));
        }
        state.keys.insert(id.to_owned(), key);
        Ok(())
    }

    /// Makes `id` the key new objects are sealed under.
    pub fn set_current(&self, id: &str) -> Result<(), StoreError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.keys.contains_key(id) {
            return Err(StoreError::invalid(format!("keyring holds no key {id:?}")));
        }
        state.current = id.to_owned();
        Ok(())
    }

    /// Destroys key `id` (zeroized): objects sealed under it can no longer be read. The current
    /// key cannot be destroyed; rotate first.
    pub fn destroy(&self, id: &str) -> Result<(), StoreError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if state.current == id {
            return Err(StoreError::invalid(format!(
                "key {id:?} is current: make another key current before destroying it"
            )));
        }
        state.keys.remove(id);
        Ok(())
    }

    /// The id new objects are sealed under.
    pub fn current_id(&self) -> String {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .clone()
    }

    /// Every key id held.
    pub fn key_ids(&self) -> Vec<String> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.keys.keys().cloned().collect()
    }
}

impl fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("LocalKeyring")
            .field("current", &state.current)
            .field("key_ids", &state.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn wrap_aad(kek_id: &str, context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_LABEL.len() + kek_id.len() + 1 + context.len());
    aad.extend_from_slice(WRAP_LABEL);
    aad.extend_from_slice(kek_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(context);
    aad
}

#[async_trait]
impl Keyring for LocalKeyring {
    async fn wrap(&self, data_key: &DataKey, context: &[u8]) -> Result<WrappedKey, StoreError> {
        let (kek_id, cipher) = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            let key = state
                .keys
                .get(&state.current)
                .ok_or_else(|| StoreError::internal("current key missing from keyring"))?;
            (state.current.clone(), Aes256Gcm::new(key))
        };
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        fill_random(&mut nonce)?;
        let aad = wrap_aad(&kek_id, context);
        // nonce ‖ the key encrypted in place ‖ tag
        let mut ciphertext = Vec::with_capacity(WRAP_NONCE_LEN + KEY_LEN + TAG_LEN);
        ciphertext.extend_from_slice(&nonce);
        ciphertext.extend_from_slice(data_key.expose());
        let tag = cipher
            .seal_detached(nonce, &aad, &mut ciphertext[WRAP_NONCE_LEN..])
            .map_err(|_| StoreError::internal("wrapping the data key failed"))?;
        ciphertext.extend_from_slice(&tag);
        Ok(WrappedKey { kek_id, ciphertext })
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<DataKey, StoreError> {
        let cipher = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            let key = state.keys.get(&wrapped.kek_id).ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::KeyUnavailable,
                    format!(
                        "key {:?} is not in the keyring (destroyed or foreign)",
                        wrapped.kek_id
                    ),
                )
            })?;
            Aes256Gcm::new(key)
        };
        if wrapped.ciphertext.len() != WRAP_NONCE_LEN + KEY_LEN + TAG_LEN {
            return Err(StoreError::corrupt("wrapped data key has the wrong length"));
        }
        let (nonce, sealed) = wrapped.ciphertext.split_at(WRAP_NONCE_LEN);
        let (encrypted, tag) = sealed.split_at(KEY_LEN);
        let nonce: [u8; WRAP_NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| StoreError::corrupt("wrapped data key has the wrong length"))?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(encrypted);
        let aad = wrap_aad(&wrapped.kek_id, context);
        cipher
            .open_detached(nonce, &aad, &mut key[..], tag)
            .map_err(|_| StoreError::corrupt("wrapped data key failed authentication"))?;
        Ok(DataKey(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
current = "k2"
[keys]
k1 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
k2 = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1eff"
"#;

    #[tokio::test]
    async fn wraps_under_current_and_unwraps_any_kept_key() {
        let ring = LocalKeyring::from_toml(FILE).unwrap();
        let data_key = DataKey::generate().unwrap();
        let wrapped = ring.wrap(&data_key, b"ctx").await.unwrap();
        assert_eq!(wrapped.kek_id, "k2");
        let back = ring.unwrap(&wrapped, b"ctx").await.unwrap();
        assert_eq!(back.expose(), data_key.expose());
        // Bound to its context.
        let err = ring.unwrap(&wrapped, b"other").await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
        // Rotate, then destroy the old key.
        ring.insert("k3", [7; KEY_LEN]).unwrap();
        ring.set_current("k3").unwrap();
        assert!(ring.unwrap(&wrapped, b"ctx").await.is_ok());
        ring.destroy("k2").unwrap();
        let err = ring.unwrap(&wrapped, b"ctx").await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::KeyUnavailable);
    }

    #[test]
    fn bad_keyrings_are_refused_without_quoting_keys() {
        for bad in [
            "current = \"k\"\n[keys]\nk = \"abc\"\n",
            "current = \"missing\"\n[keys]\nk = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n",
            "current = \"k\"\nkeys = 3\n",
            "current = \"bad id\"\n[keys]\n\"bad id\" = \"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\"\n",
            "not toml at all = = =",
        ] {
            let err = LocalKeyring::from_toml(bad).unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::InvalidInput, "{bad}");
            assert!(!err.to_string().contains("0001020304"), "{err}");
        }
    }

    #[test]
    fn the_current_key_cannot_be_destroyed_or_replaced() {
        let ring = LocalKeyring::with_key("k1", [1; KEY_LEN]).unwrap();
        assert!(ring.destroy("k1").is_err());
        assert!(ring.insert("k1", [2; KEY_LEN]).is_err());
        assert_eq!(ring.key_ids(), ["k1"]);
        assert!(!format!("{ring:?}").contains("0101"));
    }

    #[test]
    fn ephemeral_keyrings_have_distinct_ids() {
        let (a, b) = (
            LocalKeyring::ephemeral().unwrap(),
            LocalKeyring::ephemeral().unwrap(),
        );
        assert_ne!(a.current_id(), b.current_id());
        assert!(open_keyring("ephemeral").is_ok());
        assert_eq!(
            open_keyring("https://kms").unwrap_err().kind(),
            StoreErrorKind::InvalidInput
        );
    }
}
