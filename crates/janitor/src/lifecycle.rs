//! The S3 lifecycle rules that back the janitor up: if it stops, the bucket still expires
//! photos, videos and session artifacts on its own, and cleans up what deletes leave behind on
//! a versioned bucket (noncurrent versions, expired delete markers) and abandoned multipart
//! uploads. The JSON has the shape of `PutBucketLifecycleConfiguration`'s body, so an operator
//! applies it with `aws s3api put-bucket-lifecycle-configuration --lifecycle-configuration
//! file://lifecycle.json`.
//!
//! S3 counts lifecycle days from the object's creation and acts at the next midnight UTC, so
//! the bucket's deadline is up to a day past the janitor's: it is a backstop, not the rule.
//! Tombstones (`tombstones/`) and models are never expired by lifecycle: only the janitor may
//! judge when a tombstone can go.

use std::time::Duration;

use serde::Serialize;

use crate::policy::Policy;

const DAY_SECS: u64 = 24 * 3600;

/// A lifecycle configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleConfiguration {
    /// The rules.
    pub rules: Vec<LifecycleRule>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleRule {
    /// The rule's name.
    #[serde(rename = "ID")]
    pub id: String,
    /// Which keys.
    pub filter: Filter,
    /// Always `Enabled`.
    pub status: String,
    /// When current objects (or expired delete markers) go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
    /// When noncurrent versions go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noncurrent_version_expiration: Option<NoncurrentVersionExpiration>,
    /// When unfinished multipart uploads are aborted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_multipart_upload: Option<AbortIncompleteMultipartUpload>,
}

/// A key prefix filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Filter {
    /// The prefix (the store's own prefix included).
    pub prefix: String,
}

/// Expiration of current objects: after `days`, or of expired delete markers (S3 refuses both
/// in one rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Expiration {
    /// Days after creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    /// Remove delete markers with no version left behind them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_object_delete_marker: Option<bool>,
}

/// Expiration of noncurrent versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NoncurrentVersionExpiration {
    /// Days after the version became noncurrent.
    pub noncurrent_days: u32,
}

/// Abort of unfinished multipart uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AbortIncompleteMultipartUpload {
    /// Days after the upload started.
    pub days_after_initiation: u32,
}

/// Whole days covering `span`, at least one (S3's smallest lifecycle unit).
pub fn days_covering(span: Duration) -> u32 {
    let days = span.as_secs().div_ceil(DAY_SECS).max(1);
    u32::try_from(days).unwrap_or(u32::MAX)
}

fn media_rules(name: &str, prefix: String, days: u32) -> [LifecycleRule; 2] {
    [
        LifecycleRule {
            id: format!("clipfleet-{name}"),
            filter: Filter {
                prefix: prefix.clone(),
            },
            status: "Enabled".to_owned(),
            expiration: Some(Expiration {
                days: Some(days),
                expired_object_delete_marker: None,
            }),
            noncurrent_version_expiration: Some(NoncurrentVersionExpiration { noncurrent_days: 1 }),
            abort_incomplete_multipart_upload: Some(AbortIncompleteMultipartUpload {
                days_after_initiation: 1,
            }),
        },
        LifecycleRule {
            id: format!("clipfleet-{name}-delete-markers"),
            filter: Filter { prefix },
            status: "Enabled".to_owned(),
            expiration: Some(Expiration {
                days: None,
                expired_object_delete_marker: Some(true),
            }),
            noncurrent_version_expiration: None,
            abort_incomplete_multipart_upload: None,
        },
    ]
}

/// The lifecycle rules for a store whose keys start with `store_prefix` (empty, or ending in
/// `/`): photos after at most a day, videos after `output_ttl` and session artifacts after
/// `session_ttl` (rounded up to days); for each, noncurrent versions a day after a delete,
/// expired delete markers removed, unfinished uploads aborted after a day.
pub fn lifecycle_configuration(policy: &Policy, store_prefix: &str) -> LifecycleConfiguration {
    let mut rules = Vec::new();
    for (name, prefix, span) in [
        (
            "inputs",
            "inputs/",
            policy.input_max_age.min(Duration::from_secs(DAY_SECS)),
        ),
        ("outputs", "outputs/", policy.output_ttl),
        ("sessions", "sessions/", policy.session_ttl),
    ] {
        rules.extend(media_rules(
            name,
            format!("{store_prefix}{prefix}"),
            days_covering(span),
        ));
    }
    LifecycleConfiguration { rules }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            input_max_age: Duration::from_secs(3600),
            output_ttl: Duration::from_secs(30 * 3600),
            account_months_after_termination: 6,
            usage_max_age: Duration::from_secs(90 * DAY_SECS),
            orphan_grace: Duration::from_secs(900),
            session_ttl: Duration::from_secs(DAY_SECS),
        }
    }

    #[test]
    fn days_round_up_and_never_reach_zero() {
        assert_eq!(days_covering(Duration::from_secs(1)), 1);
        assert_eq!(days_covering(Duration::from_secs(DAY_SECS)), 1);
        assert_eq!(days_covering(Duration::from_secs(DAY_SECS + 1)), 2);
    }

    #[test]
    fn rules_cover_media_prefixes_but_never_tombstones() {
        let config = lifecycle_configuration(&policy(), "prod/");
        let json = serde_json::to_value(&config).unwrap();
        let rules = json["Rules"].as_array().unwrap();
        assert_eq!(rules.len(), 6);
        assert_eq!(rules[0]["ID"], "clipfleet-inputs");
        assert_eq!(rules[0]["Filter"]["Prefix"], "prod/inputs/");
        assert_eq!(rules[0]["Expiration"]["Days"], 1);
        assert_eq!(rules[0]["NoncurrentVersionExpiration"]["NoncurrentDays"], 1);
        assert_eq!(
            rules[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"],
            1
        );
        assert_eq!(rules[1]["Expiration"]["ExpiredObjectDeleteMarker"], true);
        assert!(rules[1]["Expiration"].get("Days").is_none());
        assert_eq!(rules[2]["Filter"]["Prefix"], "prod/outputs/");
        assert_eq!(
            rules[2]["Expiration"]["Days"], 2,
            "30 h rounds up to 2 days"
        );
        assert_eq!(rules[4]["Filter"]["Prefix"], "prod/sessions/");
        for rule in rules {
            assert_eq!(rule["Status"], "Enabled");
            let prefix = rule["Filter"]["Prefix"].as_str().unwrap();
            assert!(
                !prefix.contains("tombstones") && !prefix.contains("models"),
                "{prefix}"
            );
        }
    }

    #[test]
    fn the_committed_terraform_backstop_is_what_the_generator_writes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/terraform/aws/lifecycle.json");
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("lifecycle.json"))
                .expect("json");
        let config = clipfleet_config::Config::embedded(&Default::default()).expect("config");
        let generated = serde_json::to_value(lifecycle_configuration(
            &Policy::from_config(&config.retention),
            "",
        ))
        .expect("json");
        assert_eq!(
            committed, generated,
            "regenerate: clip-janitor lifecycle > deploy/terraform/aws/lifecycle.json"
        );
    }
}
