//! Sealing against the in-memory store: round trips at every boundary, and every way of
//! damaging a stored object fails with a typed error.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use proptest::prelude::*;

use super::*;
use crate::api::{body_from_bytes, body_from_stream, read_to_end};
use crate::error::StoreErrorKind;
use crate::memory::InMemoryObjectStore;

const SEGMENT: usize = 64;

/// Hands out copies of the stored chunks: chunks nobody else holds, so the reader takes its
/// in-place path (the in-memory store's own chunks are shared, so it takes the copying one).
#[derive(Debug, Default)]
struct OwnedChunks(InMemoryObjectStore);

#[async_trait::async_trait]
impl ObjectStore for OwnedChunks {
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<(), StoreError> {
        self.0.put(key, body).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StoreError> {
        use futures_util::StreamExt;
        let body = self.0.get(key).await?;
        Ok(Box::pin(body.map(|chunk| {
            chunk.map(|bytes| Bytes::copy_from_slice(&bytes))
        })))
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.0.head(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
    async fn delete_many(&self, keys: &[ObjectKey]) -> DeleteReport {
        self.0.delete_many(keys).await
    }
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<ListPage, StoreError> {
        self.0.list_page(prefix, after, max).await
    }
    async fn check_connectivity(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

struct Fixture {
    inner: Arc<dyn ObjectStore>,
    keyring: Arc<LocalKeyring>,
    sealed: SealedObjectStore,
}

fn fixture() -> Fixture {
    fixture_over(Arc::new(InMemoryObjectStore::new()))
}

/// Both reader paths: shared chunks (copied) and owned chunks (opened in place).
fn fixtures() -> [Fixture; 2] {
    [fixture(), fixture_over(Arc::new(OwnedChunks::default()))]
}

fn fixture_over(inner: Arc<dyn ObjectStore>) -> Fixture {
    let keyring = Arc::new(LocalKeyring::with_key("k1", [42; KEY_LEN]).unwrap());
    let sealed = SealedObjectStore::new(inner.clone(), keyring.clone())
        .with_segment_size(SEGMENT)
        .unwrap();
    Fixture {
        inner,
        keyring,
        sealed,
    }
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(format!("inputs/acc/{name}")).unwrap()
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// The body split into chunks of the given sizes (cycled).
fn chunked(data: &[u8], sizes: &[usize]) -> ByteStream {
    let mut chunks = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + size.max(&1)).min(data.len());
        chunks.push(Ok(Bytes::copy_from_slice(&data[at..end])));
        at = end;
    }
    body_from_stream(stream::iter(chunks))
}

async fn read(store: &dyn ObjectStore, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
    let body = store.get(key).await?;
    Ok(read_to_end(body, u64::MAX).await?.to_vec())
}

async fn stored(fixture: &Fixture, key: &ObjectKey) -> Vec<u8> {
    read(fixture.inner.as_ref(), key).await.unwrap()
}

async fn put_raw(fixture: &Fixture, key: &ObjectKey, bytes: Vec<u8>) {
    fixture
        .inner
        .put(key, body_from_bytes(bytes))
        .await
        .unwrap();
}

#[tokio::test]
async fn round_trips_at_every_segment_boundary() {
    for fixture in fixtures() {
        round_trips_at_every_segment_boundary_with(&fixture).await;
    }
}

async fn round_trips_at_every_segment_boundary_with(fixture: &Fixture) {
    for len in [
        0,
        1,
        SEGMENT - 1,
        SEGMENT,
        SEGMENT + 1,
        3 * SEGMENT,
        3 * SEGMENT + 5,
    ] {
        let data = plaintext(len);
        let k = key(&format!("len{len}"));
        fixture
            .sealed
            .put(&k, chunked(&data, &[7, 64, 1, 200]))
            .await
            .unwrap();
        assert_eq!(
            read(&fixture.sealed, &k).await.unwrap(),
            data,
            "length {len}"
        );
        let layout = SealedLayout::parse(&stored(fixture, &k).await).unwrap();
        let segments = len.div_ceil(SEGMENT).max(1);
        assert_eq!(
            stored(fixture, &k).await.len(),
            layout.header_len + len + segments * TAG_LEN,
            "length {len}: one tag per segment, an empty object has one segment"
        );
    }
}

#[tokio::test]
async fn a_header_split_across_tiny_chunks_still_opens() {
    for fixture in fixtures() {
        a_header_split_across_tiny_chunks_still_opens_with(&fixture).await;
    }
}

async fn a_header_split_across_tiny_chunks_still_opens_with(fixture: &Fixture) {
    let k = key("tiny");
    let data = plaintext(300);
    fixture
        .sealed
        .put(&k, body_from_bytes(data.clone()))
        .await
        .unwrap();
    let raw = stored(fixture, &k).await;
    fixture
        .inner
        .put(&k, chunked(&raw, &[1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(read(&fixture.sealed, &k).await.unwrap(), data);
}

#[tokio::test]
async fn flipping_any_bit_of_any_byte_fails_typed() {
    for fixture in fixtures() {
        flipping_any_bit_of_any_byte_fails_typed_with(&fixture).await;
    }
}

async fn flipping_any_bit_of_any_byte_fails_typed_with(fixture: &Fixture) {
    let k = key("flip");
    let data = plaintext(3 * SEGMENT + 10);
    fixture.sealed.put(&k, body_from_bytes(data)).await.unwrap();
    let raw = stored(fixture, &k).await;
    let layout = SealedLayout::parse(&raw).unwrap();
    let kek_id_bytes = format::FIXED_LEN + 1..format::FIXED_LEN + 1 + layout.kek_id.len();
    for position in 0..raw.len() {
        for bit in [0x01u8, 0x80] {
            let mut damaged = raw.clone();
            damaged[position] ^= bit;
            put_raw(fixture, &k, damaged).await;
            let err = read(&fixture.sealed, &k).await.unwrap_err();
            let expected = if kek_id_bytes.contains(&position) {
                // Another id: that key is not in the keyring (or the id is malformed).
                [StoreErrorKind::KeyUnavailable, StoreErrorKind::Corrupt]
            } else {
                [StoreErrorKind::Corrupt; 2]
            };
            assert!(
                expected.contains(&err.kind()),
                "byte {position} bit {bit:#x}: {err}"
            );
        }
    }
}

#[tokio::test]
async fn every_truncation_fails() {
    for fixture in fixtures() {
        every_truncation_fails_with(&fixture).await;
    }
}

async fn every_truncation_fails_with(fixture: &Fixture) {
    let k = key("cut");
    fixture
        .sealed
        .put(&k, body_from_bytes(plaintext(2 * SEGMENT + 3)))
        .await
        .unwrap();
    let raw = stored(fixture, &k).await;
    for len in 0..raw.len() {
        put_raw(fixture, &k, raw[..len].to_vec()).await;
        let err = read(&fixture.sealed, &k).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "cut to {len}: {err}");
    }
}

#[tokio::test]
async fn dropping_the_last_full_segment_fails() {
    // Exactly three full segments: without the last, the second-to-last full segment would
    // look like a complete object but for the STREAM last flag.
    let fixture = &fixture();
    let k = key("exact");
    fixture
        .sealed
        .put(&k, body_from_bytes(plaintext(3 * SEGMENT)))
        .await
        .unwrap();
    let raw = stored(fixture, &k).await;
    put_raw(fixture, &k, raw[..raw.len() - (SEGMENT + TAG_LEN)].to_vec()).await;
    let err = read(&fixture.sealed, &k).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
}

#[tokio::test]
async fn swapping_segments_or_splicing_another_objects_fails() {
    for fixture in fixtures() {
        swapping_segments_or_splicing_another_objects_fails_with(&fixture).await;
    }
}

async fn swapping_segments_or_splicing_another_objects_fails_with(fixture: &Fixture) {
    let (a, b) = (key("a"), key("b"));
    fixture
        .sealed
        .put(&a, body_from_bytes(plaintext(3 * SEGMENT + 1)))
        .await
        .unwrap();
    fixture
        .sealed
        .put(&b, body_from_bytes(plaintext(3 * SEGMENT + 1)))
        .await
        .unwrap();
    let raw_a = stored(fixture, &a).await;
    let raw_b = stored(fixture, &b).await;
    let header_len = SealedLayout::parse(&raw_a).unwrap().header_len;
    let stored_segment = SEGMENT + TAG_LEN;
    let seg = |i: usize| header_len + i * stored_segment..header_len + (i + 1) * stored_segment;

    let mut swapped = raw_a.clone();
    swapped[seg(0)].copy_from_slice(&raw_a[seg(1)]);
    swapped[seg(1)].copy_from_slice(&raw_a[seg(0)]);
    put_raw(fixture, &a, swapped).await;
    assert_eq!(
        read(&fixture.sealed, &a).await.unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );

    let mut spliced = raw_a.clone();
    spliced[seg(1)].copy_from_slice(&raw_b[seg(1)]);
    put_raw(fixture, &a, spliced).await;
    assert_eq!(
        read(&fixture.sealed, &a).await.unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );

    // b's header on a's segments: another data key.
    let mut mixed = raw_b[..header_len].to_vec();
    mixed.extend_from_slice(&raw_a[header_len..]);
    put_raw(fixture, &a, mixed).await;
    assert_eq!(
        read(&fixture.sealed, &a).await.unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );
}

#[tokio::test]
async fn destroyed_keys_make_objects_unreadable_and_rotation_keeps_the_rest() {
    let fixture = &fixture();
    let (old, new) = (key("old"), key("new"));
    fixture
        .sealed
        .put(&old, body_from_bytes(plaintext(100)))
        .await
        .unwrap();
    fixture.keyring.insert("k2", [7; KEY_LEN]).unwrap();
    fixture.keyring.set_current("k2").unwrap();
    fixture
        .sealed
        .put(&new, body_from_bytes(plaintext(100)))
        .await
        .unwrap();
    assert_eq!(
        SealedLayout::parse(&stored(fixture, &new).await)
            .unwrap()
            .kek_id,
        "k2"
    );
    assert_eq!(read(&fixture.sealed, &old).await.unwrap(), plaintext(100));
    fixture.keyring.destroy("k1").unwrap();
    let err = read(&fixture.sealed, &old).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::KeyUnavailable, "{err}");
    assert_eq!(read(&fixture.sealed, &new).await.unwrap(), plaintext(100));
}

#[tokio::test]
async fn an_unsealed_object_is_refused() {
    let fixture = &fixture();
    let k = key("plain");
    put_raw(fixture, &k, b"\xff\xd8\xff\xe0 a jpeg".to_vec()).await;
    assert_eq!(
        read(&fixture.sealed, &k).await.unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );
    put_raw(fixture, &k, Vec::new()).await;
    assert_eq!(
        read(&fixture.sealed, &k).await.unwrap_err().kind(),
        StoreErrorKind::Corrupt
    );
}

#[tokio::test]
async fn a_failing_body_stores_nothing() {
    let fixture = &fixture();
    let k = key("failing");
    let body = body_from_stream(stream::iter(vec![
        Ok(Bytes::from(plaintext(500))),
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "client went away",
        )),
    ]));
    let err = fixture.sealed.put(&k, body).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    assert_eq!(
        fixture.sealed.head(&k).await.unwrap_err().kind(),
        StoreErrorKind::NotFound
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_body_in_any_chunking_round_trips(
        len in 0usize..1000,
        sizes in proptest::collection::vec(1usize..600, 1..6),
        segment in 64usize..200,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            // Owned chunks: large ones are opened in place, small ones and straddling segments
            // through the copying path.
            let inner = Arc::new(OwnedChunks::default());
            let keyring = Arc::new(LocalKeyring::with_key("k1", [1; KEY_LEN]).unwrap());
            let sealed = SealedObjectStore::new(inner.clone(), keyring).with_segment_size(segment).unwrap();
            let data = plaintext(len);
            let k = key("prop");
            sealed.put(&k, chunked(&data, &sizes)).await.unwrap();
            let raw = read(inner.as_ref(), &k).await.unwrap();
            inner.put(&k, chunked(&raw, &sizes)).await.unwrap();
            prop_assert_eq!(read(&sealed, &k).await.unwrap(), data);
            Ok(())
        })?;
    }
}
