//! Streaming keeps memory bounded: putting and getting a 100 MB object through sealing, on the
//! local-directory backend, raises the process's peak resident memory by less than 16 MB.
//! One test in this binary, so nothing else shares the process's peak (nextest runs each test
//! in its own process anyway).

use std::sync::Arc;

use anyhow::{Context, ensure};
use clipfleet_store::testsuite::{expect_pattern, pattern_body};
use clipfleet_store::{
    LocalFileObjectStore, LocalKeyring, ObjectKey, ObjectStore, SealedObjectStore,
};

const OBJECT_BYTES: u64 = 100 * 1000 * 1000;
const LIMIT_BYTES: u64 = 16 * 1024 * 1024;

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed status line")?
        .parse()
        .context("malformed status number")?;
    Ok(kib * 1024)
}

/// Resets the peak (VmHWM) to the current RSS where the kernel allows it, so the peak measured
/// afterwards belongs to the work that follows; else the old peak only makes the check stricter.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn round_trip(store: &dyn ObjectStore, key: &ObjectKey) -> anyhow::Result<()> {
    store
        .put(key, pattern_body(OBJECT_BYTES, 256 * 1024))
        .await
        .context("put")?;
    let body = store.get(key).await.context("get")?;
    expect_pattern(body, OBJECT_BYTES)
        .await
        .context("compare")?;
    store.delete(key).await.context("delete")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the measured number is the point of this test
async fn sealed_put_and_get_of_100_mb_stay_under_16_mb_of_rss() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let inner = Arc::new(LocalFileObjectStore::open(dir.path()).await?);
    let keyring = Arc::new(LocalKeyring::ephemeral()?);
    let sealed = SealedObjectStore::new(inner, keyring);
    let key = ObjectKey::new("outputs/acc/01J0000000000000000000000.mp4")?;
    // Warm up allocator arenas and the blocking pool with a small object first.
    sealed.put(&key, pattern_body(1 << 20, 64 * 1024)).await?;
    sealed.delete(&key).await?;

    reset_peak();
    let baseline = status_bytes("VmHWM:")?;
    round_trip(&sealed, &key).await?;
    let peak = status_bytes("VmHWM:")?;
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "100 MB sealed put+get on a directory store: peak RSS {} KiB -> {} KiB, growth {} KiB",
        baseline / 1024,
        peak / 1024,
        growth / 1024
    );
    ensure!(
        growth < LIMIT_BYTES,
        "peak RSS grew by {} KiB, limit {} KiB",
        growth / 1024,
        LIMIT_BYTES / 1024
    );
    Ok(())
}
