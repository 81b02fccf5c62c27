//! What sealing promises, checked over any store the sealed bytes live in: plaintext never
//! reaches it, any damage fails with a typed error, destroyed keys shred their objects.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;

use super::{ReportedSize, key, read_object, run_object_store_suite};
use crate::api::{ObjectStore, body_from_bytes};
use crate::error::StoreErrorKind;
use crate::key::ObjectKey;
use crate::sealing::{FIXED_LEN, KEY_LEN, LocalKeyring, SealedLayout, SealedObjectStore, TAG_LEN};

/// Small segments so a small object has several.
const SEGMENT: usize = 1024;

/// The whole contract through a sealing decorator over `inner`, then every sealing promise.
pub async fn run_sealed_suite(inner: Arc<dyn ObjectStore>) -> anyhow::Result<()> {
    let keyring = Arc::new(LocalKeyring::ephemeral().context("ephemeral keyring")?);
    let sealed = SealedObjectStore::new(inner.clone(), keyring);
    run_object_store_suite(&sealed, ReportedSize::Sealed)
        .await
        .context("object store contract through sealing")?;
    plaintext_never_reaches_the_inner_store(inner.clone())
        .await
        .context("plaintext never reaches the inner store")?;
    tampering_is_detected(inner.clone())
        .await
        .context("tampering is detected")?;
    destroyed_keys_make_objects_unreadable(inner)
        .await
        .context("destroyed keys make objects unreadable")?;
    Ok(())
}

fn sealed_over(
    inner: Arc<dyn ObjectStore>,
    keyring: Arc<LocalKeyring>,
) -> anyhow::Result<SealedObjectStore> {
    SealedObjectStore::new(inner, keyring)
        .with_segment_size(SEGMENT)
        .context("segment size")
}

/// Recognisable plaintext: text with counters (no two 16-byte windows alike) and a long run.
fn telltale_plaintext() -> Vec<u8> {
    let mut text = Vec::new();
    for i in 0..12_000 {
        text.extend_from_slice(format!("joyclip user photo row {i:06};").as_bytes());
    }
    text.extend_from_slice(&[0u8; 4096]);
    text
}

pub async fn plaintext_never_reaches_the_inner_store(
    inner: Arc<dyn ObjectStore>,
) -> anyhow::Result<()> {
    const WINDOW: usize = 16;
    let keyring = Arc::new(LocalKeyring::ephemeral().context("keyring")?);
    let sealed = SealedObjectStore::new(inner.clone(), keyring);
    let k = key("suite/sealed/plain/inputs/acc/job")?;
    let plaintext = telltale_plaintext();
    sealed
        .put(&k, body_from_bytes(plaintext.clone()))
        .await
        .context("put")?;
    let stored = read_object(inner.as_ref(), &k)
        .await
        .context("read stored bytes")?;
    ensure!(
        stored.len() > plaintext.len(),
        "stored bytes are shorter than the plaintext"
    );
    let stored_windows: HashSet<&[u8]> = stored.windows(WINDOW).collect();
    if let Some(at) = plaintext
        .windows(WINDOW)
        .position(|window| stored_windows.contains(window))
    {
        bail!(
            "plaintext bytes {at}..{} appear in the stored object",
            at + WINDOW
        );
    }
    ensure!(
        read_object(&sealed, &k).await.context("get")? == plaintext,
        "round trip differs"
    );
    sealed.delete(&k).await.context("delete")?;
    Ok(())
}

async fn expect_damage_detected(
    inner: &dyn ObjectStore,
    sealed: &SealedObjectStore,
    k: &ObjectKey,
    damaged: Vec<u8>,
    allowed: &[StoreErrorKind],
    what: &str,
) -> anyhow::Result<()> {
    inner
        .put(k, body_from_bytes(damaged))
        .await
        .with_context(|| format!("{what}: put"))?;
    match read_object(sealed, k).await {
        Ok(_) => bail!("{what}: the damaged object was read without error"),
        Err(err) if allowed.contains(&err.kind()) => Ok(()),
        Err(err) => bail!("{what}: got {err}, expected one of {allowed:?}"),
    }
}

/// Flips bytes of the header and of every segment, cuts, drops and swaps segments.
pub async fn tampering_is_detected(inner: Arc<dyn ObjectStore>) -> anyhow::Result<()> {
    let keyring = Arc::new(LocalKeyring::ephemeral().context("keyring")?);
    let sealed = sealed_over(inner.clone(), keyring)?;
    let k = key("suite/sealed/tamper/outputs/acc/job.mp4")?;
    let plaintext: Vec<u8> = (0..3 * SEGMENT + 500).map(|i| (i % 253) as u8).collect();
    sealed
        .put(&k, body_from_bytes(plaintext.clone()))
        .await
        .context("put")?;
    let raw = read_object(inner.as_ref(), &k)
        .await
        .context("read stored bytes")?;
    let layout = SealedLayout::parse(&raw).context("layout")?;
    let stored_segment = SEGMENT + TAG_LEN;
    let segments = (raw.len() - layout.header_len).div_ceil(stored_segment);
    ensure!(segments == 4, "{segments} segments, expected 4");
    let seg = |i: usize| {
        let start = layout.header_len + i * stored_segment;
        start..(start + stored_segment).min(raw.len())
    };
    let corrupt = [StoreErrorKind::Corrupt];

    // Every header byte; the key id's bytes may also name a key that is not there.
    let id_start = FIXED_LEN + 1;
    for position in 0..layout.header_len {
        let mut damaged = raw.clone();
        damaged[position] ^= 0x01;
        let in_id = (id_start..id_start + layout.kek_id.len()).contains(&position);
        let allowed: &[StoreErrorKind] = if in_id {
            &[StoreErrorKind::Corrupt, StoreErrorKind::KeyUnavailable]
        } else {
            &corrupt
        };
        expect_damage_detected(
            inner.as_ref(),
            &sealed,
            &k,
            damaged,
            allowed,
            &format!("header byte {position}"),
        )
        .await?;
    }
    // First, middle and last byte of every segment (ciphertext and tag).
    for i in 0..segments {
        let range = seg(i);
        for position in [range.start, (range.start + range.end) / 2, range.end - 1] {
            let mut damaged = raw.clone();
            damaged[position] ^= 0x80;
            expect_damage_detected(
                inner.as_ref(),
                &sealed,
                &k,
                damaged,
                &corrupt,
                &format!("segment {i} byte {position}"),
            )
            .await?;
        }
    }
    let cuts = [
        ("last segment dropped", seg(segments - 1).start),
        ("last byte dropped", raw.len() - 1),
        ("header only", layout.header_len),
        ("cut inside the header", layout.header_len / 2),
        ("nothing", 0),
    ];
    for (what, len) in cuts {
        expect_damage_detected(
            inner.as_ref(),
            &sealed,
            &k,
            raw[..len].to_vec(),
            &corrupt,
            what,
        )
        .await?;
    }
    for (a, b) in [(0, 1), (1, 2)] {
        let mut swapped = raw.clone();
        swapped[seg(a)].copy_from_slice(&raw[seg(b)]);
        swapped[seg(b)].copy_from_slice(&raw[seg(a)]);
        expect_damage_detected(
            inner.as_ref(),
            &sealed,
            &k,
            swapped,
            &corrupt,
            &format!("segments {a} and {b} swapped"),
        )
        .await?;
    }
    let mut appended = raw.clone();
    appended.extend_from_slice(&raw[seg(0)]);
    expect_damage_detected(
        inner.as_ref(),
        &sealed,
        &k,
        appended,
        &corrupt,
        "segment appended",
    )
    .await?;

    // The undamaged bytes still open: the failures above were the damage, not the setup.
    inner
        .put(&k, body_from_bytes(Bytes::from(raw)))
        .await
        .context("restore")?;
    ensure!(
        read_object(&sealed, &k).await.context("get restored")? == plaintext,
        "restored object differs"
    );
    sealed.delete(&k).await.context("delete")?;
    Ok(())
}

/// Rotation keeps old objects readable; destroying their key makes them unreadable.
pub async fn destroyed_keys_make_objects_unreadable(
    inner: Arc<dyn ObjectStore>,
) -> anyhow::Result<()> {
    let keyring =
        Arc::new(LocalKeyring::with_key("suite-old", [0x11; KEY_LEN]).context("keyring")?);
    let sealed = sealed_over(inner.clone(), keyring.clone())?;
    let (old, new) = (
        key("suite/sealed/shred/old")?,
        key("suite/sealed/shred/new")?,
    );
    sealed
        .put(&old, body_from_bytes(&b"sealed under the old key"[..]))
        .await
        .context("put old")?;
    keyring
        .insert("suite-new", [0x22; KEY_LEN])
        .context("add key")?;
    keyring.set_current("suite-new").context("rotate")?;
    sealed
        .put(&new, body_from_bytes(&b"sealed under the new key"[..]))
        .await
        .context("put new")?;
    ensure!(
        read_object(&sealed, &old)
            .await
            .context("old before destruction")?
            == b"sealed under the old key",
        "old differs"
    );
    keyring.destroy("suite-old").context("destroy")?;
    match read_object(&sealed, &old).await {
        Err(err) if err.kind() == StoreErrorKind::KeyUnavailable => {}
        other => bail!("old object after its key was destroyed: {other:?}"),
    }
    ensure!(
        read_object(&sealed, &new)
            .await
            .context("new after destruction")?
            == b"sealed under the new key",
        "new differs"
    );
    // Another process's ephemeral keyring cannot read it either.
    let stranger = SealedObjectStore::new(
        inner.clone(),
        Arc::new(LocalKeyring::ephemeral().context("keyring")?),
    );
    match read_object(&stranger, &new).await {
        Err(err) if err.kind() == StoreErrorKind::KeyUnavailable => {}
        other => bail!("read with a foreign keyring: {other:?}"),
    }
    ensure!(
        sealed.delete_many(&[old, new]).await.is_complete(),
        "cleanup failed"
    );
    Ok(())
}
