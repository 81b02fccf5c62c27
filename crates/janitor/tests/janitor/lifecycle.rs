//! The generated lifecycle rules are accepted by the S3 API (the emulator) and read back as
//! written.

use std::time::Duration;

use anyhow::{Context, ensure};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
};
use clipfleet_janitor::{LifecycleConfiguration, lifecycle_configuration};
use clipfleet_testkit::{aws_sdk_config, unique_name};

use crate::fixture::{default_policy, s3_admin};

fn to_sdk(config: &LifecycleConfiguration) -> anyhow::Result<BucketLifecycleConfiguration> {
    let mut rules = Vec::new();
    for rule in &config.rules {
        let mut built = LifecycleRule::builder()
            .id(&rule.id)
            .filter(
                LifecycleRuleFilter::builder()
                    .prefix(&rule.filter.prefix)
                    .build(),
            )
            .status(ExpirationStatus::from(rule.status.as_str()));
        if let Some(expiration) = &rule.expiration {
            let mut exp = LifecycleExpiration::builder();
            if let Some(days) = expiration.days {
                exp = exp.days(i32::try_from(days)?);
            }
            if let Some(marker) = expiration.expired_object_delete_marker {
                exp = exp.expired_object_delete_marker(marker);
            }
            built = built.expiration(exp.build());
        }
        if let Some(noncurrent) = &rule.noncurrent_version_expiration {
            built = built.noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(i32::try_from(noncurrent.noncurrent_days)?)
                    .build(),
            );
        }
        if let Some(abort) = &rule.abort_incomplete_multipart_upload {
            built = built.abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(i32::try_from(abort.days_after_initiation)?)
                    .build(),
            );
        }
        rules.push(built.build()?);
    }
    Ok(BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()?)
}

#[tokio::test]
async fn the_emulator_accepts_the_generated_lifecycle() -> anyhow::Result<()> {
    let admin = s3_admin(&aws_sdk_config().await);
    let bucket = unique_name("lifecycle");
    admin
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .context("create bucket")?;
    let mut policy = default_policy();
    policy.output_ttl = Duration::from_secs(30 * 3600);
    let generated = lifecycle_configuration(&policy, "fleet/");
    let result = async {
        admin
            .put_bucket_lifecycle_configuration()
            .bucket(&bucket)
            .lifecycle_configuration(to_sdk(&generated)?)
            .send()
            .await
            .context("put lifecycle configuration")?;
        let read = admin
            .get_bucket_lifecycle_configuration()
            .bucket(&bucket)
            .send()
            .await
            .context("get lifecycle configuration")?;
        let rules = read.rules();
        ensure!(
            rules.len() == generated.rules.len(),
            "{} rules read back",
            rules.len()
        );
        for (want, got) in generated.rules.iter().zip(rules) {
            ensure!(got.id() == Some(want.id.as_str()), "{:?}", got.id());
            let prefix = got.filter().and_then(|f| f.prefix());
            ensure!(prefix == Some(want.filter.prefix.as_str()), "{prefix:?}");
            let days = got.expiration().and_then(|e| e.days());
            let want_days = want
                .expiration
                .as_ref()
                .and_then(|e| e.days)
                .map(|d| d as i32);
            ensure!(days == want_days, "{}: days {days:?}", want.id);
        }
        let outputs = rules
            .iter()
            .find(|r| r.id() == Some("clipfleet-outputs"))
            .context("outputs rule")?;
        ensure!(
            outputs.expiration().and_then(|e| e.days()) == Some(2),
            "30 h videos expire on day 2"
        );
        Ok(())
    }
    .await;
    admin
        .delete_bucket_lifecycle()
        .bucket(&bucket)
        .send()
        .await
        .ok();
    admin
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .context("delete bucket")?;
    result
}
