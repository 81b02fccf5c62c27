//! Proof of deletion on S3: which keys a bucket still holds anything of, answered with one
//! listing per key prefix rather than one `HeadObject` per key; and, on a versioned bucket, the
//! versions and delete markers a plain delete leaves behind, deleted by version id.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_s3::types::{BucketVersioningStatus, ObjectIdentifier};
use futures_util::{StreamExt, stream};

use super::errors::from_sdk;
use super::{DELETE_BATCH, S3ObjectStore, fail_all};
use crate::api::{DeleteReport, MAX_LIST_PAGE};
use crate::error::{StoreError, StoreErrorKind};
use crate::key::ObjectKey;

/// A prefix holding at least this many of the keys asked about is listed once instead of
/// heading each key.
const LIST_THRESHOLD: usize = 4;

/// Prefixes (or keys) checked at once.
const CONCURRENCY: usize = 8;

/// One stored version (or delete marker) of a key, with the store's prefix removed.
#[derive(Debug, Clone)]
struct StoredVersion {
    key: String,
    version_id: Option<String>,
}

/// `keys` grouped by their parent (`inputs/acc/` for `inputs/acc/job`).
fn by_parent(keys: &[ObjectKey]) -> BTreeMap<&str, Vec<&ObjectKey>> {
    let mut groups: BTreeMap<&str, Vec<&ObjectKey>> = BTreeMap::new();
    for key in keys {
        let text = key.as_str();
        let parent = text.rfind('/').map_or("", |at| &text[..=at]);
        groups.entry(parent).or_default().push(key);
    }
    groups
}

impl S3ObjectStore {
    /// Whether the bucket keeps versions (versioning enabled, or suspended after being on: the
    /// versions made meanwhile remain). Asked once per store.
    pub(super) async fn is_versioned(&self) -> Result<bool, StoreError> {
        self.versioned
            .get_or_try_init(|| async {
                let output = self
                    .retry
                    .run("get bucket versioning", || async {
                        self.client
                            .get_bucket_versioning()
                            .bucket(self.bucket())
                            .send()
                            .await
                            .map_err(|err| from_sdk("get bucket versioning", err))
                    })
                    .await?;
                Ok(matches!(
                    output.status(),
                    Some(BucketVersioningStatus::Enabled | BucketVersioningStatus::Suspended)
                ))
            })
            .await
            .copied()
    }

    /// Every version and delete marker under `prefix` (relative to the store's prefix).
    async fn list_versions(&self, prefix: &str) -> Result<Vec<StoredVersion>, StoreError> {
        let full_prefix = format!("{}{prefix}", self.location.prefix);
        let mut found = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let output = self
                .retry
                .run("list object versions", || async {
                    self.client
                        .list_object_versions()
                        .bucket(self.bucket())
                        .prefix(&full_prefix)
                        .set_key_marker(markers.0.clone())
                        .set_version_id_marker(markers.1.clone())
                        .max_keys(i32::try_from(MAX_LIST_PAGE).unwrap_or(1000))
                        .send()
                        .await
                        .map_err(|err| from_sdk("list object versions", err))
                })
                .await?;
            let strip = |full: Option<&str>| {
                full.and_then(|full| full.strip_prefix(self.location.prefix.as_str()))
                    .map(str::to_owned)
            };
            for version in output.versions() {
                if let Some(key) = strip(version.key()) {
                    let version_id = version.version_id().map(str::to_owned);
                    found.push(StoredVersion { key, version_id });
                }
            }
            for marker in output.delete_markers() {
                if let Some(key) = strip(marker.key()) {
                    let version_id = marker.version_id().map(str::to_owned);
                    found.push(StoredVersion { key, version_id });
                }
            }
            if output.is_truncated() != Some(true) {
                return Ok(found);
            }
            let next = (
                output.next_key_marker().map(str::to_owned),
                output.next_version_id_marker().map(str::to_owned),
            );
            if next.0.is_none() || next == markers {
                return Err(StoreError::new(
                    StoreErrorKind::Internal,
                    "list object versions: truncated page without a usable marker",
                ));
            }
            markers = next;
        }
    }

    /// Which of `keys` (all under `parent`) are still there, by listing `parent` (or the one
    /// key itself).
    async fn stored_in_group(
        &self,
        parent: &str,
        keys: &[&ObjectKey],
        versioned: bool,
    ) -> Result<Vec<ObjectKey>, StoreError> {
        let prefix = match keys {
            [only] => only.as_str(),
            _ => parent,
        };
        let present: BTreeSet<String> = if versioned {
            self.list_versions(prefix)
                .await?
                .into_iter()
                .map(|version| version.key)
                .collect()
        } else if keys.len() >= LIST_THRESHOLD {
            crate::api::list_all(self, prefix)
                .await?
                .into_iter()
                .map(|meta| meta.key.as_str().to_owned())
                .collect()
        } else {
            let mut present = BTreeSet::new();
            for key in keys {
                match crate::api::ObjectStore::head(self, key).await {
                    Ok(_) => {
                        present.insert(key.as_str().to_owned());
                    }
                    Err(err) if err.kind() == StoreErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
            present
        };
        Ok(keys
            .iter()
            .filter(|key| present.contains(key.as_str()))
            .map(|key| (*key).clone())
            .collect())
    }

    pub(super) async fn still_stored_keys(
        &self,
        keys: &[ObjectKey],
    ) -> Result<Vec<ObjectKey>, StoreError> {
        let versioned = self.is_versioned().await?;
        // Owned groups: the futures below must not borrow from a local with a named lifetime
        // (async_trait boxes them as `Send` for any lifetime).
        let groups: Vec<(String, Vec<ObjectKey>)> = by_parent(keys)
            .into_iter()
            .map(|(parent, group)| (parent.to_owned(), group.into_iter().cloned().collect()))
            .collect();
        let mut stored = Vec::new();
        let mut checks = stream::iter(groups.into_iter().map(|(parent, group)| async move {
            let refs: Vec<&ObjectKey> = group.iter().collect();
            self.stored_in_group(&parent, &refs, versioned).await
        }))
        .buffer_unordered(CONCURRENCY);
        while let Some(found) = checks.next().await {
            stored.extend(found?);
        }
        stored.sort();
        Ok(stored)
    }

    pub(super) async fn purge_key_versions(&self, keys: &[ObjectKey]) -> DeleteReport {
        let mut report = DeleteReport::default();
        match self.is_versioned().await {
            Ok(false) => return report,
            Ok(true) => {}
            Err(err) => {
                fail_all(keys, &err, &mut report);
                return report;
            }
        }
        for (parent, group) in by_parent(keys) {
            let prefix = match group.as_slice() {
                [only] => only.as_str(),
                _ => parent,
            };
            let wanted: BTreeMap<&str, &ObjectKey> =
                group.iter().map(|key| (key.as_str(), *key)).collect();
            let versions = match self.list_versions(prefix).await {
                Ok(versions) => versions,
                Err(err) => {
                    let owned: Vec<ObjectKey> = group.iter().map(|key| (*key).clone()).collect();
                    fail_all(&owned, &err, &mut report);
                    continue;
                }
            };
            let doomed: Vec<StoredVersion> = versions
                .into_iter()
                .filter(|version| wanted.contains_key(version.key.as_str()))
                .collect();
            for batch in doomed.chunks(DELETE_BATCH) {
                self.delete_version_batch(batch, &mut report).await;
            }
        }
        report
    }

    async fn delete_version_batch(&self, batch: &[StoredVersion], report: &mut DeleteReport) {
        let keys: Vec<ObjectKey> = batch
            .iter()
            .filter_map(|version| ObjectKey::new(version.key.as_str()).ok())
            .collect();
        let identifiers: Result<Vec<_>, _> = batch
            .iter()
            .map(|version| {
                ObjectIdentifier::builder()
                    .key(format!("{}{}", self.location.prefix, version.key))
                    .set_version_id(version.version_id.clone())
                    .build()
            })
            .collect();
        self.send_delete("delete object versions", identifiers, &keys, report)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_by_their_parent() {
        let keys: Vec<ObjectKey> = ["inputs/a/1", "inputs/a/2", "inputs/b/1", "top"]
            .into_iter()
            .map(|key| ObjectKey::new(key).unwrap())
            .collect();
        let groups = by_parent(&keys);
        let sizes: Vec<(&str, usize)> = groups.iter().map(|(p, k)| (*p, k.len())).collect();
        assert_eq!(sizes, [("", 1), ("inputs/a/", 2), ("inputs/b/", 1)]);
    }
}
