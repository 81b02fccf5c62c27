//! The conformance suite every backend runs (feature `testsuite`): plain async functions, each
//! step labelled, so a failure names what broke. [`run_object_store_suite`] holds any store to
//! the [`ObjectStore`] contract; [`run_sealed_suite`] adds what sealing promises, over any
//! store the sealed bytes live in.
//!
//! Steps write under `suite/<step>/…` and delete what they wrote, so a store can be reused.

mod sealed;

use std::time::{Duration, SystemTime};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};

use crate::api::{
    ByteStream, ObjectStore, body_from_bytes, body_from_stream, list_all, read_to_end,
};
use crate::error::{StoreError, StoreErrorKind};
use crate::key::ObjectKey;

pub use sealed::{
    destroyed_keys_make_objects_unreadable, plaintext_never_reaches_the_inner_store,
    run_sealed_suite, tampering_is_detected,
};

/// What `head` and `list` report as an object's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportedSize {
    /// The bytes put (plain backends).
    Plaintext,
    /// The stored, sealed size: plaintext plus header and one tag per segment.
    Sealed,
}

impl ReportedSize {
    fn check(self, reported: u64, plaintext: u64) -> anyhow::Result<()> {
        match self {
            ReportedSize::Plaintext => ensure!(
                reported == plaintext,
                "size {reported}, expected {plaintext}"
            ),
            ReportedSize::Sealed => ensure!(
                reported >= plaintext + crate::TAG_LEN as u64,
                "sealed size {reported} too small for {plaintext} plaintext bytes"
            ),
        }
        Ok(())
    }
}

/// Every step of the contract, in order.
pub async fn run_object_store_suite(
    store: &dyn ObjectStore,
    sizes: ReportedSize,
) -> anyhow::Result<()> {
    check_connectivity(store)
        .await
        .context("connectivity check")?;
    small_object_round_trip(store, sizes)
        .await
        .context("small object round trip")?;
    empty_object_round_trip(store, sizes)
        .await
        .context("empty object round trip")?;
    large_object_streams(store, sizes)
        .await
        .context("large object streams")?;
    overwrite_replaces(store)
        .await
        .context("overwrite replaces")?;
    missing_objects_are_not_found(store)
        .await
        .context("missing objects are not found")?;
    delete_is_idempotent(store)
        .await
        .context("delete is idempotent")?;
    delete_many_crosses_batches(store)
        .await
        .context("delete_many crosses batches")?;
    list_pages_in_key_order(store, sizes)
        .await
        .context("list pages in key order")?;
    failed_put_leaves_nothing(store)
        .await
        .context("failed put leaves nothing")?;
    bad_prefixes_are_refused(store)
        .await
        .context("bad prefixes are refused")?;
    still_stored_proves_deletion(store)
        .await
        .context("still_stored proves deletion")?;
    Ok(())
}

fn key(text: &str) -> anyhow::Result<ObjectKey> {
    ObjectKey::new(text).with_context(|| format!("key {text:?}"))
}

/// Reads a whole object, whether it fails at `get` or midway through the body.
pub async fn read_object(store: &dyn ObjectStore, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
    let body = store.get(key).await?;
    Ok(read_to_end(body, u64::MAX).await?.to_vec())
}

/// The byte at `offset` of every pattern body: cheap, and not periodic over a part or segment.
pub fn pattern_byte(offset: u64) -> u8 {
    let mixed = offset ^ (offset >> 7) ^ (offset >> 17);
    (mixed.wrapping_mul(0x9E37_79B9) >> 11) as u8
}

/// A body of `len` pattern bytes generated on the fly in `chunk`-byte pieces: nothing holds
/// the whole object.
pub fn pattern_body(len: u64, chunk: usize) -> ByteStream {
    let chunk = chunk.max(1) as u64;
    body_from_stream(stream::unfold(0u64, move |offset| async move {
        if offset >= len {
            return None;
        }
        let end = (offset + chunk).min(len);
        let bytes: Vec<u8> = (offset..end).map(pattern_byte).collect();
        Some((Ok(Bytes::from(bytes)), end))
    }))
}

/// Checks, chunk by chunk, that `body` is exactly `len` pattern bytes.
pub async fn expect_pattern(mut body: ByteStream, len: u64) -> anyhow::Result<()> {
    let mut offset = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("read body")?;
        for (i, byte) in chunk.iter().enumerate() {
            let at = offset + i as u64;
            ensure!(at < len, "body longer than {len} bytes");
            ensure!(*byte == pattern_byte(at), "wrong byte at offset {at}");
        }
        offset += chunk.len() as u64;
    }
    ensure!(offset == len, "body has {offset} bytes, expected {len}");
    Ok(())
}

fn expect_kind<T>(
    result: Result<T, StoreError>,
    kind: StoreErrorKind,
    what: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(_) => bail!("{what}: succeeded, expected {kind}"),
        Err(err) if err.kind() == kind => Ok(()),
        Err(err) => bail!("{what}: got {err}, expected {kind}"),
    }
}

pub async fn check_connectivity(store: &dyn ObjectStore) -> anyhow::Result<()> {
    store
        .check_connectivity()
        .await
        .context("check_connectivity")?;
    Ok(())
}

pub async fn small_object_round_trip(
    store: &dyn ObjectStore,
    sizes: ReportedSize,
) -> anyhow::Result<()> {
    let k = key("suite/small/inputs/acc-1/01J0000000000000000000000")?;
    let data = b"a photo's bytes, small enough for one chunk".to_vec();
    store
        .put(&k, body_from_bytes(data.clone()))
        .await
        .context("put")?;
    let back = read_object(store, &k).await.context("get")?;
    ensure!(back == data, "read back {} different bytes", back.len());
    let meta = store.head(&k).await.context("head")?;
    ensure!(meta.key == k, "head names {}", meta.key);
    sizes
        .check(meta.size, data.len() as u64)
        .context("head size")?;
    store.delete(&k).await.context("delete")?;
    Ok(())
}

pub async fn empty_object_round_trip(
    store: &dyn ObjectStore,
    sizes: ReportedSize,
) -> anyhow::Result<()> {
    let k = key("suite/empty/tombstones/acc-2")?;
    store
        .put(&k, body_from_bytes(Bytes::new()))
        .await
        .context("put")?;
    ensure!(
        read_object(store, &k).await.context("get")?.is_empty(),
        "not empty"
    );
    let meta = store.head(&k).await.context("head")?;
    sizes.check(meta.size, 0).context("head size")?;
    store.delete(&k).await.context("delete")?;
    Ok(())
}

/// 20 MiB and 3 bytes in odd-sized chunks: several S3 parts, many sealing segments.
pub async fn large_object_streams(
    store: &dyn ObjectStore,
    sizes: ReportedSize,
) -> anyhow::Result<()> {
    const LEN: u64 = 20 * 1024 * 1024 + 3;
    let k = key("suite/large/outputs/acc-3/01J0000000000000000000000.mp4")?;
    store
        .put(&k, pattern_body(LEN, 1_000_003))
        .await
        .context("put")?;
    let body = store.get(&k).await.context("get")?;
    expect_pattern(body, LEN).await.context("compare")?;
    let meta = store.head(&k).await.context("head")?;
    sizes.check(meta.size, LEN).context("head size")?;
    store.delete(&k).await.context("delete")?;
    Ok(())
}

pub async fn overwrite_replaces(store: &dyn ObjectStore) -> anyhow::Result<()> {
    let k = key("suite/overwrite/obj")?;
    store
        .put(&k, body_from_bytes(&b"first version, longer"[..]))
        .await
        .context("first put")?;
    store
        .put(&k, body_from_bytes(&b"second"[..]))
        .await
        .context("second put")?;
    let back = read_object(store, &k).await.context("get")?;
    ensure!(back == b"second", "read back {back:?}");
    store.delete(&k).await.context("delete")?;
    Ok(())
}

pub async fn missing_objects_are_not_found(store: &dyn ObjectStore) -> anyhow::Result<()> {
    let k = key("suite/missing/never-written")?;
    expect_kind(store.head(&k).await, StoreErrorKind::NotFound, "head")?;
    expect_kind(
        read_object(store, &k).await,
        StoreErrorKind::NotFound,
        "get",
    )?;
    Ok(())
}

pub async fn delete_is_idempotent(store: &dyn ObjectStore) -> anyhow::Result<()> {
    let k = key("suite/delete/inputs/acc-4/job")?;
    store
        .delete(&k)
        .await
        .context("delete of a missing object")?;
    store
        .put(&k, body_from_bytes(&b"x"[..]))
        .await
        .context("put")?;
    store.delete(&k).await.context("delete")?;
    expect_kind(
        store.head(&k).await,
        StoreErrorKind::NotFound,
        "head after delete",
    )?;
    store.delete(&k).await.context("second delete")?;
    let left = list_all(store, "suite/delete/").await.context("list")?;
    ensure!(left.is_empty(), "{} objects left", left.len());
    Ok(())
}

/// `still_stored` names exactly the keys present (several under one prefix, answered by a
/// listing on S3, and single ones, answered by `head`), and none once they are deleted.
pub async fn still_stored_proves_deletion(store: &dyn ObjectStore) -> anyhow::Result<()> {
    let mut present: Vec<ObjectKey> = (0..6)
        .map(|i| key(&format!("suite/proof/inputs/acc-{}/job-{i}", i / 5)))
        .collect::<anyhow::Result<_>>()?;
    present.push(key("suite/proof/single")?);
    for k in &present {
        store
            .put(k, body_from_bytes(&b"x"[..]))
            .await
            .context("put")?;
    }
    let mut asked = present.clone();
    asked.push(key("suite/proof/inputs/acc-0/never")?);
    asked.push(key("suite/proof/elsewhere/never")?);
    let mut stored = store.still_stored(&asked).await.context("still_stored")?;
    stored.sort();
    let mut expected = present.clone();
    expected.sort();
    ensure!(stored == expected, "still_stored said {stored:?}");
    let report = store.delete_many(&present).await;
    ensure!(report.is_complete(), "failures: {:?}", report.failed);
    let report = store.purge_versions(&present).await;
    ensure!(
        report.is_complete(),
        "version failures: {:?}",
        report.failed
    );
    let stored = store
        .still_stored(&asked)
        .await
        .context("still_stored after delete")?;
    ensure!(stored.is_empty(), "still stored after delete: {stored:?}");
    Ok(())
}

/// 1,005 objects (more than one S3 `DeleteObjects` batch) plus keys that never existed.
pub async fn delete_many_crosses_batches(store: &dyn ObjectStore) -> anyhow::Result<()> {
    const COUNT: usize = 1005;
    let keys: Vec<ObjectKey> = (0..COUNT)
        .map(|i| key(&format!("suite/many/obj-{i:05}")))
        .collect::<anyhow::Result<_>>()?;
    stream::iter(keys.iter().cloned())
        .map(|k| async move {
            store
                .put(&k, body_from_bytes(Bytes::from(k.to_string())))
                .await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .context("put")?;
    let listed = list_all(store, "suite/many/")
        .await
        .context("list before")?;
    ensure!(listed.len() == COUNT, "listed {} of {COUNT}", listed.len());
    let mut to_delete = keys.clone();
    to_delete.push(key("suite/many/never-existed")?);
    let report = store.delete_many(&to_delete).await;
    ensure!(report.is_complete(), "failures: {:?}", report.failed);
    let left = list_all(store, "suite/many/").await.context("list after")?;
    ensure!(left.is_empty(), "{} objects left", left.len());
    expect_kind(
        store.head(&keys[COUNT - 1]).await,
        StoreErrorKind::NotFound,
        "head",
    )?;
    let report = store.delete_many(&[]).await;
    ensure!(report.is_complete(), "empty delete_many failed");
    Ok(())
}

pub async fn list_pages_in_key_order(
    store: &dyn ObjectStore,
    sizes: ReportedSize,
) -> anyhow::Result<()> {
    let started = SystemTime::now() - Duration::from_secs(120);
    let mut written = Vec::new();
    for name in [
        "a/obj-3", "a/obj-0", "a/obj-6", "a/obj-1", "a/obj-5", "a/obj-2", "a/obj-4", "ab", "b/x",
        "b/y",
    ] {
        let k = key(&format!("suite/list/{name}"))?;
        store
            .put(&k, body_from_bytes(Bytes::from(name.to_owned())))
            .await
            .context("put")?;
        written.push(k);
    }
    let mut pages = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let page = store
            .list_page("suite/list/a/", continuation.as_deref(), 3)
            .await
            .context("list page")?;
        ensure!(page.objects.len() <= 3, "page of {}", page.objects.len());
        pages.push(page.objects.len());
        for meta in &page.objects {
            let name = meta.key.as_str().trim_start_matches("suite/list/");
            sizes
                .check(meta.size, name.len() as u64)
                .with_context(|| format!("size of {name}"))?;
            let now = SystemTime::now() + Duration::from_secs(120);
            ensure!(
                meta.last_modified >= started && meta.last_modified <= now,
                "last_modified of {name} is not around now"
            );
        }
        continuation = page.continuation;
        if continuation.is_none() {
            break;
        }
        ensure!(pages.len() < 10, "listing does not end");
    }
    ensure!(
        pages.iter().sum::<usize>() == 7,
        "pages {pages:?} do not hold 7 objects"
    );
    let keys: Vec<String> = list_all(store, "suite/list/a/")
        .await
        .context("list a/")?
        .into_iter()
        .map(|meta| meta.key.to_string())
        .collect();
    let expected: Vec<String> = (0..7).map(|i| format!("suite/list/a/obj-{i}")).collect();
    ensure!(keys == expected, "listed {keys:?}");
    let partial = list_all(store, "suite/list/a")
        .await
        .context("partial prefix")?;
    ensure!(
        partial.len() == 8,
        "partial prefix listed {}",
        partial.len()
    );
    let all = list_all(store, "suite/list/").await.context("list all")?;
    ensure!(all.len() == 10, "listed {}", all.len());
    let none = list_all(store, "suite/list/c/")
        .await
        .context("empty prefix")?;
    ensure!(
        none.is_empty(),
        "listed {} under an unused prefix",
        none.len()
    );
    ensure!(
        store.delete_many(&written).await.is_complete(),
        "cleanup failed"
    );
    Ok(())
}

/// A body that fails after 9 MiB (past one S3 part): nothing appears, an older object stays.
pub async fn failed_put_leaves_nothing(store: &dyn ObjectStore) -> anyhow::Result<()> {
    fn failing_body() -> ByteStream {
        let good = pattern_body(9 * 1024 * 1024, 1024 * 1024);
        let bad = stream::iter([Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "upload cut",
        ))]);
        body_from_stream(good.chain(bad))
    }
    let fresh = key("suite/failed/fresh")?;
    expect_kind(
        store.put(&fresh, failing_body()).await,
        StoreErrorKind::Unavailable,
        "put",
    )?;
    expect_kind(
        store.head(&fresh).await,
        StoreErrorKind::NotFound,
        "head after failed put",
    )?;
    let old = key("suite/failed/old")?;
    store
        .put(&old, body_from_bytes(&b"old version"[..]))
        .await
        .context("put old")?;
    expect_kind(
        store.put(&old, failing_body()).await,
        StoreErrorKind::Unavailable,
        "overwrite",
    )?;
    ensure!(
        read_object(store, &old).await.context("get old")? == b"old version",
        "a failed overwrite changed the object"
    );
    let listed = list_all(store, "suite/failed/").await.context("list")?;
    ensure!(
        listed.len() == 1,
        "listed {} objects, expected only the old one",
        listed.len()
    );
    store.delete(&old).await.context("delete")?;
    Ok(())
}

pub async fn bad_prefixes_are_refused(store: &dyn ObjectStore) -> anyhow::Result<()> {
    for prefix in ["../", "/etc", "suite//x", "suite/.hidden"] {
        expect_kind(
            store.list_page(prefix, None, 10).await,
            StoreErrorKind::InvalidInput,
            &format!("list {prefix:?}"),
        )?;
    }
    ensure!(
        ObjectKey::new("inputs/../x").is_err(),
        "a traversing key was accepted"
    );
    Ok(())
}
