//! On a versioned bucket a delete only adds a delete marker: the janitor deletes every version
//! and marker, and its proof of deletion looks at versions, not just the current object.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use clipfleet_janitor::{Janitor, LockSpec, Rule};
use clipfleet_ledger::{Ledger, ManualClock};
use clipfleet_proto::{AccountId, JobId};
use clipfleet_store::{ObjectKey, ObjectStore, S3Location, S3ObjectStore, body_from_bytes};
use clipfleet_testkit::{aws_sdk_config, unique_name};

use crate::fixture::{default_policy, real_now, s3_admin, sweep};

#[tokio::test]
async fn every_version_goes_on_a_versioned_bucket() -> anyhow::Result<()> {
    let config = aws_sdk_config().await;
    let admin = s3_admin(&config);
    let bucket = unique_name("versioned");
    admin
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .context("create bucket")?;
    admin
        .put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .context("enable versioning")?;
    let store: Arc<dyn ObjectStore> = Arc::new(S3ObjectStore::from_sdk_config(
        &config,
        S3Location::parse(&format!("s3://{bucket}/fleet"))?,
    ));
    let result = async {
        let clock = Arc::new(ManualClock::new(real_now()));
        let ledger = Ledger::connect_with_clock("sqlite::memory:", clock.clone()).await?;
        ledger.migrate().await?;
        let account = AccountId::new("acct-v")?;
        let orphans: Vec<ObjectKey> = (0..5)
            .map(|_| ObjectKey::input(&account, JobId::generate()))
            .collect();
        for key in &orphans {
            store.put(key, body_from_bytes(&b"one"[..])).await?;
            store.put(key, body_from_bytes(&b"two"[..])).await?;
        }
        let left = store.still_stored(&orphans).await?;
        ensure!(
            left.len() == orphans.len(),
            "still_stored sees {} of 5",
            left.len()
        );
        clock.advance(Duration::from_secs(3600));
        let janitor = Janitor::new(
            ledger.clone(),
            store.clone(),
            default_policy(),
            clock.clone(),
            LockSpec::for_ledger_url("sqlite::memory:")?,
        );
        let report = sweep(&janitor).await?;
        ensure!(
            report.failures == 0 && report.deleted.get(&Rule::OrphanPhoto) == Some(&5),
            "{report:?}"
        );
        let versions = admin.list_object_versions().bucket(&bucket).send().await?;
        ensure!(
            versions.versions().is_empty() && versions.delete_markers().is_empty(),
            "left: {} versions, {} markers",
            versions.versions().len(),
            versions.delete_markers().len()
        );
        Ok(())
    }
    .await;
    let versions = admin.list_object_versions().bucket(&bucket).send().await?;
    for (key, version) in versions
        .versions()
        .iter()
        .map(|v| (v.key(), v.version_id()))
        .chain(
            versions
                .delete_markers()
                .iter()
                .map(|m| (m.key(), m.version_id())),
        )
    {
        admin
            .delete_object()
            .bucket(&bucket)
            .set_key(key.map(str::to_owned))
            .set_version_id(version.map(str::to_owned))
            .send()
            .await?;
    }
    admin
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .context("delete bucket")?;
    result
}
