//! The conformance suite against every backend, plain and sealed: memory, a local directory,
//! and S3 on the emulator (which must be running: these tests fail, never skip, without it).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_store::testsuite::{ReportedSize, run_object_store_suite, run_sealed_suite};
use clipfleet_store::{
    InMemoryObjectStore, LocalFileObjectStore, ObjectStore, S3Location, S3ObjectStore, list_all,
};
use clipfleet_testkit::{aws_sdk_config, unique_name};

/// Bounds a whole test so a hung service fails it instead of stalling CI.
async fn bounded<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(600), fut)
        .await
        .context("no result within 600 s")?
}

#[tokio::test]
async fn memory_store_keeps_the_contract() -> anyhow::Result<()> {
    run_object_store_suite(&InMemoryObjectStore::new(), ReportedSize::Plaintext).await
}

#[tokio::test]
async fn sealed_memory_store_keeps_the_contract_and_sealing_promises() -> anyhow::Result<()> {
    run_sealed_suite(Arc::new(InMemoryObjectStore::new())).await
}

/// After a suite (which deletes what it writes) a directory store holds nothing: no temporary
/// files, no empty directories naming accounts.
fn assert_directory_is_bare(root: &std::path::Path) -> anyhow::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(root)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    ensure!(names == [".clipfleet-tmp"], "left in the root: {names:?}");
    let temps = std::fs::read_dir(root.join(".clipfleet-tmp"))?.count();
    ensure!(temps == 0, "{temps} temporary files left");
    Ok(())
}

#[tokio::test]
async fn file_store_keeps_the_contract() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = LocalFileObjectStore::open(dir.path()).await?;
    run_object_store_suite(&store, ReportedSize::Plaintext).await?;
    assert_directory_is_bare(dir.path())
}

#[tokio::test]
async fn sealed_file_store_keeps_the_contract_and_sealing_promises() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = LocalFileObjectStore::open(dir.path()).await?;
    run_sealed_suite(Arc::new(store)).await?;
    assert_directory_is_bare(dir.path())
}

/// Runs `suite` against a fresh bucket, then empties and deletes the bucket whatever happened,
/// checking that no multipart upload was left behind.
async fn with_bucket<F, Fut>(suite: F) -> anyhow::Result<()>
where
    F: FnOnce(Arc<dyn ObjectStore>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = aws_sdk_config().await;
    let admin = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique_name("store");
    admin
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .context("create bucket (is the emulator running? scripts/emulator.sh start)")?;
    let location = S3Location::parse(&format!("s3://{bucket}/clipfleet"))?;
    let store: Arc<dyn ObjectStore> = Arc::new(S3ObjectStore::from_sdk_config(&config, location));
    let outcome = bounded(suite(store.clone())).await;

    let uploads = admin.list_multipart_uploads().bucket(&bucket).send().await;
    let left = list_all(store.as_ref(), "")
        .await
        .context("list leftovers")?;
    let keys: Vec<_> = left.into_iter().map(|meta| meta.key).collect();
    let report = store.delete_many(&keys).await;
    admin
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .context("delete bucket")?;
    outcome?;
    ensure!(keys.is_empty(), "the suite left {} objects", keys.len());
    ensure!(report.is_complete(), "cleanup failed: {:?}", report.failed);
    let uploads = uploads.context("list multipart uploads")?;
    ensure!(
        uploads.uploads().is_empty(),
        "{} multipart uploads left (failed puts must abort)",
        uploads.uploads().len()
    );
    Ok(())
}

#[tokio::test]
async fn s3_store_keeps_the_contract() -> anyhow::Result<()> {
    with_bucket(|store| async move {
        run_object_store_suite(store.as_ref(), ReportedSize::Plaintext).await
    })
    .await
}

#[tokio::test]
async fn sealed_s3_store_keeps_the_contract_and_sealing_promises() -> anyhow::Result<()> {
    with_bucket(run_sealed_suite).await
}
