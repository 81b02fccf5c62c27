//! Store URLs resolve to their backends through `open`; bad URLs are refused with a typed error.

use clipfleet_store::testsuite::read_object;
use clipfleet_store::{ObjectKey, StoreErrorKind, body_from_bytes, open, open_sealed};

#[tokio::test]
async fn memory_and_file_urls_open_working_stores() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file_url = format!("file://{}", dir.path().display());
    let key = ObjectKey::new("inputs/acc/job")?;
    for url in ["memory://", file_url.as_str()] {
        let store = open(url).await?;
        store.put(&key, body_from_bytes(&b"photo"[..])).await?;
        assert_eq!(read_object(store.as_ref(), &key).await?, b"photo", "{url}");
        store.delete(&key).await?;
    }
    assert!(dir.path().join(".clipfleet-tmp").is_dir());
    Ok(())
}

#[tokio::test]
async fn sealed_urls_seal() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open_sealed(&format!("file://{}", dir.path().display()), "ephemeral").await?;
    let key = ObjectKey::new("inputs/acc/job")?;
    store
        .put(&key, body_from_bytes(&b"photo bytes"[..]))
        .await?;
    let stored = std::fs::read(dir.path().join("inputs/acc/job"))?;
    assert!(stored.starts_with(b"CFSEAL"));
    assert_eq!(read_object(store.as_ref(), &key).await?, b"photo bytes");
    Ok(())
}

#[tokio::test]
async fn bad_urls_are_refused_by_kind() {
    for url in [
        "ftp://host/x",
        "memory://name",
        "file://relative/dir",
        "s3://Bad_Bucket",
        "",
    ] {
        let err = open(url).await.err();
        assert_eq!(
            err.map(|err| err.kind()),
            Some(StoreErrorKind::InvalidInput),
            "{url}"
        );
    }
    let err = open_sealed("memory://", "file://relative.toml").await.err();
    assert_eq!(
        err.map(|err| err.kind()),
        Some(StoreErrorKind::InvalidInput)
    );
}
