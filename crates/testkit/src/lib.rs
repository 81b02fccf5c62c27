//! Test support shared by every crate's service tests: where the development services are
//! (read from env, loopback defaults) and unique names so tests run in parallel without
//! stepping on each other.
//!
//! The services themselves are started by `scripts/services.sh` (RabbitMQ, PostgreSQL, the S3
//! and SQS emulator); tests never start or stop shared services. A test that must stop its
//! broker starts a [`PrivateRabbit`] of its own; one that must cut a connection silently puts a
//! [`StallingProxy`] in front of the service. Browser tests drive Debian's Chromium through
//! its WebDriver ([`Browser`]).

mod browser;
mod images;
mod models;
mod pg;
mod proxy;
mod rabbit;

pub use browser::Browser;
pub use images::{png_claiming, with_exif_orientation};
pub use models::{
    manifest_entry, repo_root, small_framed_motion_manifest, small_noop_entry, small_noop_manifest,
    write_manifest,
};
pub use pg::PgSchema;
pub use proxy::StallingProxy;
pub use rabbit::PrivateRabbit;

/// AMQP URL of the RabbitMQ used by tests (`CLIPFLEET_TEST_AMQP_URL`).
pub fn amqp_url() -> String {
    env_or(
        "CLIPFLEET_TEST_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    )
}

/// PostgreSQL URL used by tests (`CLIPFLEET_TEST_POSTGRES_URL`).
pub fn postgres_url() -> String {
    env_or(
        "CLIPFLEET_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

/// Endpoint of the S3 and SQS emulator (`AWS_ENDPOINT_URL`, as the AWS SDK itself reads it).
pub fn aws_endpoint_url() -> String {
    env_or("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
}

/// The AWS SDK configuration tests use, built as the product builds it but pointed at the
/// emulator: endpoint from `AWS_ENDPOINT_URL` (loopback default), region from `AWS_REGION`
/// (`us-east-1`), credentials from the environment or the emulator's dummy ones.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(aws_endpoint_url())
        .region(aws_config::Region::new(env_or("AWS_REGION", "us-east-1")));
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        let dummy =
            aws_credential_types::Credentials::new("test", "test", None, None, "clipfleet-tests");
        loader = loader.credentials_provider(dummy);
    }
    loader.load().await
}

/// A name no other test run uses: `prefix` plus a lowercase ULID, safe for queues, buckets
/// and schemas (S3 bucket names allow lowercase letters, digits and `-`).
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_suit_buckets() {
        let (a, b) = (unique_name("smoke"), unique_name("smoke"));
        assert_ne!(a, b);
        assert!(a.len() <= 63);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        );
    }
}
