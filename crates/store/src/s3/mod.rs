//! `s3://bucket/prefix`: Amazon S3 or an S3 emulator through the AWS SDK. Endpoint, region and
//! credentials come from the SDK's usual sources (`AWS_ENDPOINT_URL`, `AWS_REGION`, profiles)
//! or from [`S3Options`]; path-style addressing whenever the endpoint is overridden (emulators).
//! The SDK's own retries are off: every request goes through this crate's [`RetryPolicy`].
//! Large bodies are uploaded in parts (see `upload.rs`).

mod errors;
mod upload;
mod versions;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::DateTime;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures_util::stream;

use crate::api::{
    ByteStream, DeleteFailure, DeleteReport, ListPage, ObjectMeta, ObjectStore, page_size,
};
use crate::error::{StoreError, StoreErrorKind};
use crate::key::{ObjectKey, check_prefix};
use crate::retry::RetryPolicy;
use errors::{classify, from_sdk};

pub use upload::{DEFAULT_PART_SIZE, MIN_PART_SIZE};

/// The most keys one `DeleteObjects` request may name.
const DELETE_BATCH: usize = 1000;

/// Where in S3 a store lives: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// Prepended to every key: empty, or ending in `/`.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket` or `s3://bucket/some/prefix`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| StoreError::invalid(format!("{url:?} is not an s3:// url")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(StoreError::invalid(format!(
                "{bucket:?} is not a valid bucket name"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            ObjectKey::new(prefix).map_err(|err| {
                StoreError::invalid(format!("bad prefix in {url:?}: {}", err.message()))
            })?;
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }
}

/// Settings that override the SDK's environment-derived defaults.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// Endpoint override (an emulator, a private endpoint); else `AWS_ENDPOINT_URL` or AWS.
    pub endpoint_url: Option<String>,
    /// Region; else the SDK's chain, else `us-east-1`.
    pub region: Option<String>,
}

/// An object store in an S3 bucket, under an optional key prefix.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: Client,
    location: S3Location,
    /// The one retry layer: the SDK's own is disabled.
    retry: RetryPolicy,
    /// Bodies up to this size go up in one `PutObject`; larger ones in parts of this size,
    /// which is also the most body memory one put holds.
    part_size: usize,
    /// Whether the bucket keeps versions, asked once (deletion proofs and purges need it).
    versioned: Arc<tokio::sync::OnceCell<bool>>,
}

impl S3ObjectStore {
    /// Loads the SDK's configuration from the environment (with `options` on top) and opens
    /// the store at `location`.
    pub async fn connect(location: S3Location, options: S3Options) -> Result<Self, StoreError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(endpoint) = options.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = options.region {
            loader = loader.region(Region::new(region));
        }
        let sdk_config = loader.load().await;
        Ok(Self::from_sdk_config(&sdk_config, location))
    }

    /// Opens the store at `location` with an SDK configuration built by the caller (tests,
    /// callers that share one `SdkConfig` between services).
    pub fn from_sdk_config(sdk_config: &SdkConfig, location: S3Location) -> Self {
        let mut config = aws_sdk_s3::config::Builder::from(sdk_config)
            // Emulators serve every bucket on one host; AWS itself prefers virtual hosts.
            .force_path_style(sdk_config.endpoint_url().is_some())
            // Checksums on streamed bodies only where S3 requires them (DeleteObjects).
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            );
        if sdk_config.region().is_none() {
            config = config.region(Region::from_static("us-east-1"));
        }
        S3ObjectStore {
            client: Client::from_conf(config.build()),
            location,
            retry: RetryPolicy::default(),
            part_size: DEFAULT_PART_SIZE,
            versioned: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Uses `part_size` bytes per uploaded part (at least [`MIN_PART_SIZE`], S3's minimum).
    pub fn with_part_size(mut self, part_size: usize) -> Result<Self, StoreError> {
        if part_size < MIN_PART_SIZE {
            return Err(StoreError::invalid(format!(
                "part size {part_size} is below s3's minimum of {MIN_PART_SIZE} bytes"
            )));
        }
        self.part_size = part_size;
        Ok(self)
    }

    /// Uses `retry` for every request.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Where the store lives.
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    fn full_key(&self, key: &ObjectKey) -> String {
        format!("{}{key}", self.location.prefix)
    }

    fn bucket(&self) -> &str {
        &self.location.bucket
    }

    async fn delete_batch(&self, batch: &[ObjectKey], report: &mut DeleteReport) {
        let identifiers = batch
            .iter()
            .map(|key| ObjectIdentifier::builder().key(self.full_key(key)).build())
            .collect();
        self.send_delete("delete objects", identifiers, batch, report)
            .await;
    }

    /// Sends one `DeleteObjects` for `identifiers` (objects, or versions, of `keys`) with the
    /// retry policy, and records in `report` every key S3 could not delete; one already gone
    /// counts as deleted.
    pub(super) async fn send_delete(
        &self,
        what: &'static str,
        identifiers: Result<Vec<ObjectIdentifier>, aws_sdk_s3::error::BuildError>,
        keys: &[ObjectKey],
        report: &mut DeleteReport,
    ) {
        let delete = identifiers
            .and_then(|ids| Delete::builder().set_objects(Some(ids)).quiet(true).build());
        let delete = match delete {
            Ok(delete) => delete,
            Err(err) => {
                let err = StoreError::internal(format!("build {what} request")).with_source(err);
                return fail_all(keys, &err, report);
            }
        };
        let sent = self
            .retry
            .run(what, || async {
                self.client
                    .delete_objects()
                    .bucket(self.bucket())
                    .delete(delete.clone())
                    .send()
                    .await
                    .map_err(|err| from_sdk(what, err))
            })
            .await;
        match sent {
            Ok(output) => {
                for error in output.errors() {
                    let kind = classify(error.code(), None);
                    let Some(key) = error
                        .key()
                        .and_then(|full| full.strip_prefix(self.location.prefix.as_str()))
                        .and_then(|key| ObjectKey::new(key).ok())
                    else {
                        continue;
                    };
                    if kind == StoreErrorKind::NotFound {
                        continue; // already gone: that is what was asked
                    }
                    report.failed.push(DeleteFailure {
                        key,
                        kind,
                        message: format!(
                            "{}: {}",
                            error.code().unwrap_or("error"),
                            error.message().unwrap_or("no message")
                        ),
                    });
                }
            }
            Err(err) => fail_all(keys, &err, report),
        }
    }
}

fn fail_all(batch: &[ObjectKey], err: &StoreError, report: &mut DeleteReport) {
    report.failed.extend(batch.iter().map(|key| DeleteFailure {
        key: key.clone(),
        kind: err.kind(),
        message: err.to_string(),
    }));
}

fn system_time(time: Option<&DateTime>) -> SystemTime {
    time.and_then(|time| SystemTime::try_from(*time).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &ObjectKey, body: ByteStream) -> Result<(), StoreError> {
        upload::put(self, &self.full_key(key), body).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<ByteStream, StoreError> {
        let full_key = self.full_key(key);
        let output = self
            .retry
            .run("get object", || async {
                self.client
                    .get_object()
                    .bucket(self.bucket())
                    .key(&full_key)
                    .send()
                    .await
                    .map_err(|err| from_sdk("get object", err))
            })
            .await?;
        let body = stream::unfold(Some(output.body), |body| async move {
            let mut body = body?;
            match body.next().await? {
                Ok(chunk) => Some((Ok(chunk), Some(body))),
                Err(err) => Some((
                    Err(
                        StoreError::new(StoreErrorKind::Unavailable, "read object body")
                            .with_source(err),
                    ),
                    None,
                )),
            }
        });
        Ok(Box::pin(body))
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let full_key = self.full_key(key);
        let output = self
            .retry
            .run("head object", || async {
                self.client
                    .head_object()
                    .bucket(self.bucket())
                    .key(&full_key)
                    .send()
                    .await
                    .map_err(|err| from_sdk("head object", err))
            })
            .await?;
        Ok(ObjectMeta {
            key: key.clone(),
            size: output
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            last_modified: system_time(output.last_modified()),
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let full_key = self.full_key(key);
        let deleted = self
            .retry
            .run("delete object", || async {
                self.client
                    .delete_object()
                    .bucket(self.bucket())
                    .key(&full_key)
                    .send()
                    .await
                    .map_err(|err| from_sdk("delete object", err))
            })
            .await;
        match deleted {
            Err(err) if err.kind() == StoreErrorKind::NotFound => Ok(()),
            other => other.map(drop),
        }
    }

    async fn delete_many(&self, keys: &[ObjectKey]) -> DeleteReport {
        let mut report = DeleteReport::default();
        for batch in keys.chunks(DELETE_BATCH) {
            self.delete_batch(batch, &mut report).await;
        }
        report
    }

    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        check_prefix(prefix)?;
        let full_prefix = format!("{}{prefix}", self.location.prefix);
        let max_keys = i32::try_from(page_size(max_keys)).unwrap_or(1000);
        let output = self
            .retry
            .run("list objects", || async {
                self.client
                    .list_objects_v2()
                    .bucket(self.bucket())
                    .prefix(&full_prefix)
                    .set_continuation_token(continuation.map(str::to_owned))
                    .max_keys(max_keys)
                    .send()
                    .await
                    .map_err(|err| from_sdk("list objects", err))
            })
            .await?;
        let objects = output
            .contents()
            .iter()
            .filter_map(|object| {
                // Objects this store would never write (foreign names) are not listed: they
                // could not be addressed through it either.
                let key = object.key()?.strip_prefix(self.location.prefix.as_str())?;
                Some(ObjectMeta {
                    key: ObjectKey::new(key).ok()?,
                    size: object
                        .size()
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                    last_modified: system_time(object.last_modified()),
                })
            })
            .collect();
        let continuation = if output.is_truncated() == Some(true) {
            output.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage {
            objects,
            continuation,
        })
    }

    async fn purge_versions(&self, keys: &[ObjectKey]) -> DeleteReport {
        self.purge_key_versions(keys).await
    }

    async fn still_stored(&self, keys: &[ObjectKey]) -> Result<Vec<ObjectKey>, StoreError> {
        self.still_stored_keys(keys).await
    }

    async fn check_connectivity(&self) -> Result<(), StoreError> {
        self.retry
            .run("head bucket", || async {
                self.client
                    .head_bucket()
                    .bucket(self.bucket())
                    .send()
                    .await
                    .map_err(|err| from_sdk("head bucket", err))
            })
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_with_and_without_prefix() {
        let plain = S3Location::parse("s3://media-bucket").unwrap();
        assert_eq!(
            (plain.bucket.as_str(), plain.prefix.as_str()),
            ("media-bucket", "")
        );
        let nested = S3Location::parse("s3://media-bucket/prod/eu/").unwrap();
        assert_eq!(nested.prefix, "prod/eu/");
        for bad in [
            "s3://",
            "s3://UPPER",
            "s3://ab",
            "s3://b_ucket",
            "s3://bucket/../x",
            "file:///x",
        ] {
            assert_eq!(
                S3Location::parse(bad).unwrap_err().kind(),
                StoreErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }
}
