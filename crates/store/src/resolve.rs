//! The one place a store URL becomes a backend: `memory://`, `file:///dir`, `s3://bucket/prefix`.
//! A backend compiled out of this build is refused by name, not mistaken for a bad URL.

use std::path::PathBuf;
use std::sync::Arc;

use crate::api::ObjectStore;
use crate::error::StoreError;
use crate::fs::LocalFileObjectStore;
use crate::memory::InMemoryObjectStore;
use crate::sealing::{SealedObjectStore, open_keyring};

/// Opens the store `url` names. S3 takes endpoint, region and credentials from the SDK's usual
/// sources (`AWS_ENDPOINT_URL`, `AWS_REGION`, …).
pub async fn open(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    match scheme {
        "memory" if url == "memory://" => Ok(Arc::new(InMemoryObjectStore::new())),
        "memory" => Err(StoreError::invalid(format!(
            "{url:?}: a memory store takes no path (memory://)"
        ))),
        "file" => {
            let path = &url["file://".len()..];
            if !path.starts_with('/') {
                return Err(StoreError::invalid(format!(
                    "{url:?}: a file store needs an absolute path (file:///dir)"
                )));
            }
            Ok(Arc::new(
                LocalFileObjectStore::open(PathBuf::from(path)).await?,
            ))
        }
        "s3" => open_s3(url).await,
        _ => Err(StoreError::invalid(format!(
            "{url:?}: unknown store url (memory://, file:///dir or s3://bucket/prefix)"
        ))),
    }
}

/// Opens the store `url` names, sealed with keys from the keyring `keyring` names
/// (`ephemeral` or `file:///path/keyring.toml`).
pub async fn open_sealed(url: &str, keyring: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let keyring = Arc::new(open_keyring(keyring)?);
    Ok(Arc::new(SealedObjectStore::new(open(url).await?, keyring)))
}

#[cfg(feature = "s3")]
async fn open_s3(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    use crate::s3::{S3Location, S3ObjectStore, S3Options};
    let store = S3ObjectStore::connect(S3Location::parse(url)?, S3Options::default()).await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "s3"))]
async fn open_s3(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    use crate::error::StoreErrorKind;
    Err(StoreError::new(
        StoreErrorKind::Unsupported,
        format!("{url:?}: clipfleet-store was built without the `s3` feature"),
    ))
}

#[cfg(all(test, not(feature = "s3")))]
mod tests {
    use super::*;
    use crate::error::StoreErrorKind;

    #[tokio::test]
    async fn compiled_out_s3_is_refused_by_name() {
        let err = open("s3://bucket/prefix").await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unsupported);
        assert!(
            err.to_string().contains("built without the `s3` feature"),
            "{err}"
        );
    }
}
