//! Sealing throughput against the raw AEAD on the same buffers: what the envelope, the STREAM
//! nonces, segmenting and the store plumbing cost on top of AES-256-GCM itself. Goal: sealed
//! ≥ 80% of raw, both ways. The raw AEAD is AWS-LC's, which sealing uses in this build (the
//! store's `aws-lc` feature, on with `s3`); RustCrypto's `aes-gcm`, which the lean build seals
//! with, runs beside it for the record.

use std::hint::black_box;
use std::sync::Arc;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use clipfleet_store::{
    DEFAULT_SEGMENT_SIZE, InMemoryObjectStore, LocalKeyring, ObjectKey, ObjectStore,
    SealedObjectStore, body_from_stream,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{StreamExt, stream};

/// One object: a 16 MiB video, as the worker would put it.
const OBJECT_BYTES: usize = 16 * 1024 * 1024;
/// The chunk size bodies arrive in.
const CHUNK_BYTES: usize = 1024 * 1024;
const SEGMENT: usize = DEFAULT_SEGMENT_SIZE;

fn plaintext() -> Bytes {
    (0..OBJECT_BYTES)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The body as a fresh copy in `CHUNK_BYTES` chunks, each owned by nobody else.
fn owned_chunks(data: &[u8]) -> Vec<Result<Bytes, clipfleet_store::StoreError>> {
    data.chunks(CHUNK_BYTES)
        .map(|chunk| Ok(Bytes::from(chunk.to_vec())))
        .collect()
}

fn nonce(counter: u32, last: bool) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut nonce = [0u8; 12];
    nonce[7..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce.into()
}

fn sealing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let data = plaintext();
    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    let header = [0u8; 100]; // the raw AEAD authenticates as many header bytes as sealing does
    let inner = Arc::new(InMemoryObjectStore::new());
    let keyring = Arc::new(LocalKeyring::ephemeral().expect("keyring"));
    let sealed = SealedObjectStore::new(inner, keyring);
    let key = ObjectKey::new("outputs/acc/bench.mp4").expect("key");

    let mut group = c.benchmark_group("aes-256-gcm 16 MiB");
    group.throughput(Throughput::Bytes(OBJECT_BYTES as u64));
    group.sample_size(10);

    // Both sides work in place on a fresh copy of the same bytes (made outside the timing): a
    // put consumes its body, and chunks nobody else holds are sealed where they lie.
    let aws_lc = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &[7u8; 32]).expect("key"),
    );
    group.bench_function("raw aws-lc seal", |b| {
        b.iter_batched_ref(
            || data.to_vec(),
            |buffer| {
                for (i, segment) in buffer.chunks_mut(SEGMENT).enumerate() {
                    let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(
                        nonce(i as u32, false).into(),
                    );
                    let tag = aws_lc
                        .seal_in_place_separate_tag(
                            nonce,
                            aws_lc_rs::aead::Aad::from(&header),
                            segment,
                        )
                        .expect("encrypt");
                    black_box(tag.as_ref());
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("raw aes-gcm seal", |b| {
        b.iter_batched_ref(
            || data.to_vec(),
            |buffer| {
                for (i, segment) in buffer.chunks_mut(SEGMENT).enumerate() {
                    let tag = cipher
                        .encrypt_in_place_detached(&nonce(i as u32, false), &header, segment)
                        .expect("encrypt");
                    black_box(tag);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("sealed put", |b| {
        b.iter_batched(
            || owned_chunks(&data),
            |chunks| {
                runtime
                    .block_on(sealed.put(&key, body_from_stream(stream::iter(chunks))))
                    .expect("sealed put")
            },
            BatchSize::LargeInput,
        )
    });

    // Opening needs valid tags: seal a copy once, then open fresh copies of it.
    let mut ciphertext = data.to_vec();
    let tags: Vec<_> = ciphertext
        .chunks_mut(SEGMENT)
        .enumerate()
        .map(|(i, segment)| {
            cipher
                .encrypt_in_place_detached(&nonce(i as u32, false), &header, segment)
                .expect("encrypt")
        })
        .collect();
    group.bench_function("raw aws-lc open", |b| {
        b.iter_batched_ref(
            || ciphertext.clone(),
            |copy| {
                for (i, segment) in copy.chunks_mut(SEGMENT).enumerate() {
                    let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(
                        nonce(i as u32, false).into(),
                    );
                    aws_lc
                        .open_in_place_separate_tag(
                            nonce,
                            aws_lc_rs::aead::Aad::from(&header),
                            &tags[i],
                            segment,
                        )
                        .expect("decrypt");
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("raw aes-gcm open", |b| {
        b.iter_batched_ref(
            || ciphertext.clone(),
            |copy| {
                for (i, segment) in copy.chunks_mut(SEGMENT).enumerate() {
                    cipher
                        .decrypt_in_place_detached(
                            &nonce(i as u32, false),
                            &header,
                            segment,
                            &tags[i],
                        )
                        .expect("decrypt");
                }
            },
            BatchSize::LargeInput,
        )
    });
    // The in-memory store hands out chunks it keeps: opening copies each segment out first.
    runtime
        .block_on(sealed.put(&key, body_from_stream(stream::iter(owned_chunks(&data)))))
        .expect("seal the object to open");
    group.bench_function("sealed get", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut body = sealed.get(&key).await.expect("get");
                let mut total = 0;
                while let Some(chunk) = body.next().await {
                    total += chunk.expect("chunk").len();
                }
                assert_eq!(total, OBJECT_BYTES);
            })
        })
    });
    group.finish();
}

criterion_group!(benches, sealing);
criterion_main!(benches);
