//! The sealed-object reader against tampering. The input picks a plaintext and a list of edits
//! (XOR a byte, truncate, append); the target seals the plaintext in small segments, applies the
//! edits to the stored bytes, and reads the object back. The read must fail, or return exactly
//! the plaintext: a changed object never reads as other content. A first byte of 0xFF instead
//! feeds the input itself to the reader as a stored object: an error, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use clipfleet_store::{
    InMemoryObjectStore, LocalKeyring, ObjectKey, ObjectStore, SealedObjectStore, body_from_bytes,
    read_to_end,
};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fn stores() -> (Arc<dyn ObjectStore>, SealedObjectStore) {
    let raw: Arc<dyn ObjectStore> = Arc::new(InMemoryObjectStore::new());
    let keyring = LocalKeyring::with_key("fuzz-1", [7; 32]).expect("a keyring");
    let sealed = SealedObjectStore::new(raw.clone(), Arc::new(keyring))
        .with_segment_size(64)
        .expect("a small segment size");
    (raw, sealed)
}

async fn read(sealed: &SealedObjectStore, key: &ObjectKey) -> Option<Vec<u8>> {
    let body = sealed.get(key).await.ok()?;
    read_to_end(body, 1 << 20).await.ok().map(|b| b.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = ObjectKey::new("inputs/acct/01J0000000000000000000000Z").expect("a key");
    runtime().block_on(async {
        let (raw, sealed) = stores();
        if mode == 0xFF {
            raw.put(&key, body_from_bytes(rest.to_vec()))
                .await
                .expect("raw put");
            let _ = read(&sealed, &key).await;
            return;
        }
        // Plaintext: the first `mode` bytes of the rest (0..=254), edits after it.
        let split = usize::from(mode).min(rest.len());
        let (plaintext, edits) = rest.split_at(split);
        sealed
            .put(&key, body_from_bytes(plaintext.to_vec()))
            .await
            .expect("seal");
        let mut stored = read_raw(raw.as_ref(), &key).await;
        let original = stored.clone();
        for edit in edits.chunks(3) {
            let [op, a, b] = [
                edit[0],
                *edit.get(1).unwrap_or(&0),
                *edit.get(2).unwrap_or(&0),
            ];
            let at = usize::from(u16::from_le_bytes([a, b]));
            match op % 4 {
                0 | 1 if !stored.is_empty() => {
                    let i = at % stored.len();
                    stored[i] ^= op | 1;
                }
                2 => stored.truncate(at % (stored.len() + 1)),
                3 => stored.push(a),
                _ => {}
            }
        }
        raw.put(&key, body_from_bytes(stored.clone()))
            .await
            .expect("raw put");
        if let Some(got) = read(&sealed, &key).await {
            assert!(
                got == plaintext,
                "a tampered object read as other content ({} stored bytes changed: {})",
                stored.len(),
                stored != original
            );
        }
    });
});

async fn read_raw(raw: &dyn ObjectStore, key: &ObjectKey) -> Vec<u8> {
    let body = raw.get(key).await.expect("raw get");
    read_to_end(body, 1 << 20).await.expect("raw read").to_vec()
}
