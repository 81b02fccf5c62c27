//! The validated, immutable configuration and the checks that build it, including the guard
//! rails that keep a configuration inside what the privacy policy promises.

use std::fmt;
use std::time::Duration;

use clipfleet_proto::PoolName;

use crate::ConfigError;
use crate::raw::{RawConfig, RawIngest, RawPool, RawRetention};

/// Backend kinds, from a URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `memory://`: in-process (broker, store).
    Memory,
    /// `amqp://`: RabbitMQ.
    Amqp,
    /// `amqps://`: RabbitMQ over TLS.
    Amqps,
    /// `sqs://`: Amazon SQS (or an emulator at `AWS_ENDPOINT_URL`).
    Sqs,
    /// `file://`: a local directory (store).
    File,
    /// `s3://`: Amazon S3 (or an emulator).
    S3,
    /// `sqlite:`: SQLite (ledger).
    Sqlite,
    /// `postgres://`: PostgreSQL (ledger).
    Postgres,
}

/// A backend URL whose scheme was checked. `Debug` and `Display` hide any password.
#[derive(Clone, PartialEq, Eq)]
pub struct BackendUrl {
    scheme: Scheme,
    url: String,
}

impl BackendUrl {
    fn parse(field: &str, url: &str, allowed: &[(&str, Scheme)]) -> Result<Self, ConfigError> {
        let prefix = url.split_once(':').map_or("", |(scheme, _)| scheme);
        let scheme = allowed
            .iter()
            .find(|(name, _)| *name == prefix)
            .map(|(_, scheme)| *scheme)
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|(name, _)| *name).collect();
                invalid(field, format!("scheme {prefix:?} is not one of {names:?}"))
            })?;
        Ok(BackendUrl {
            scheme,
            url: url.to_owned(),
        })
    }

    /// Which backend.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The full URL, credentials included: hand it to the backend, never to a log.
    pub fn expose(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // scheme://user:password@host → scheme://user:***@host
        match self.url.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                    write!(f, "{scheme}://{user}:***@{host}")
                }
                None => f.write_str(&self.url),
            },
            None => f.write_str(&self.url),
        }
    }
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({self})", self.scheme)
    }
}

/// Limits on what ingest accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Largest photo, in bytes.
    pub max_upload_bytes: u64,
    /// Largest photo, in pixels, checked from the header before decoding.
    pub max_pixels: u64,
}

/// The privacy policy's retention periods.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionConfig {
    /// A photo older than this is deleted whatever its job's state.
    pub input_max_age: Duration,
    /// A video is deleted this long after it was generated.
    pub output_ttl: Duration,
    /// Calendar months after termination at which an account's data is purged.
    pub account_months_after_termination: u32,
    /// Usage records older than this are deleted.
    pub usage_max_age: Duration,
    /// A photo with no job row is deleted after this long (crash between upload and insert).
    pub orphan_grace: Duration,
    /// Per-session artifacts are deleted after this long at most.
    pub session_ttl: Duration,
}

/// A caller of the ingest API (the app backend), known by the SHA-256 of its bearer token: the
/// configuration never holds a token itself.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceToken {
    /// Who holds it, for logs and metrics.
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
}

impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The ingest API.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngestConfig {
    /// Callers allowed in (none: ingest refuses to start).
    pub tokens: Vec<ServiceToken>,
}

/// One pool of workers and its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Pool name; the queue is `clip.jobs.<name>`.
    pub name: PoolName,
    /// Model name served by the pool's workers.
    pub model: String,
    /// Model version.
    pub model_version: String,
    /// Waiting jobs at which ingest starts answering 429.
    pub max_backlog: u64,
    /// How long after submission a job may still start.
    pub job_deadline: Duration,
    /// Deliveries before a job is dead-lettered.
    pub max_deliveries: u32,
}

/// The whole validated configuration. Built only by [`Config::from_toml`] and friends; nothing
/// changes it afterwards (share it behind an `Arc`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Broker backend.
    pub broker: BackendUrl,
    /// Object store backend.
    pub store: BackendUrl,
    /// Source of key-encryption keys: `ephemeral` or a `file://` keyring.
    pub keyring: String,
    /// Ledger database.
    pub ledger: BackendUrl,
    /// Upload limits.
    pub limits: LimitsConfig,
    /// Retention periods.
    pub retention: RetentionConfig,
    /// The ingest API's callers.
    pub ingest: IngestConfig,
    /// Worker pools (at least one).
    pub pools: Vec<PoolConfig>,
}

impl Config {
    /// The pool called `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|pool| pool.name.as_str() == name)
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a humantime duration (`90s`, `15m`, `24h`, `90days`) within `(0, max]`.
fn duration(field: &str, text: &str, max: Duration) -> Result<Duration, ConfigError> {
    let value = humantime::parse_duration(text)
        .map_err(|err| invalid(field, format!("{text:?} is not a duration: {err}")))?;
    if value.is_zero() || value > max {
        return Err(invalid(
            field,
            format!("{text} is outside (0, {}]", humantime::format_duration(max)),
        ));
    }
    Ok(value)
}

fn within(
    field: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(invalid(field, format!("{value} is outside {range:?}")))
    }
}

pub(crate) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    use Scheme::*;
    let broker = BackendUrl::parse(
        "broker.url",
        &raw.broker.url,
        &[
            ("memory", Memory),
            ("amqp", Amqp),
            ("amqps", Amqps),
            ("sqs", Sqs),
        ],
    )?;
    let store = BackendUrl::parse(
        "store.url",
        &raw.store.url,
        &[("memory", Memory), ("file", File), ("s3", S3)],
    )?;
    let ledger = BackendUrl::parse(
        "ledger.url",
        &raw.ledger.url,
        &[
            ("sqlite", Sqlite),
            ("postgres", Postgres),
            ("postgresql", Postgres),
        ],
    )?;
    let keyring = raw.store.sealing.keyring;
    if keyring != "ephemeral" && !keyring.starts_with("file://") {
        return Err(invalid(
            "store.sealing.keyring",
            "must be \"ephemeral\" or a file:// URL",
        ));
    }
    let limits = LimitsConfig {
        max_upload_bytes: within(
            "limits.max_upload_bytes",
            raw.limits.max_upload_bytes,
            1..=256 << 20,
        )?,
        max_pixels: within("limits.max_pixels", raw.limits.max_pixels, 1..=200_000_000)?,
    };
    let retention = retention(&raw.retention)?;
    let ingest = ingest(&raw.ingest)?;
    if raw.pools.is_empty() {
        return Err(invalid("pools", "at least one pool is needed"));
    }
    let pools = raw
        .pools
        .iter()
        .enumerate()
        .map(|(index, pool)| pool_config(index, pool))
        .collect::<Result<Vec<_>, _>>()?;
    for (index, pool) in pools.iter().enumerate() {
        if pools[..index].iter().any(|other| other.name == pool.name) {
            return Err(invalid(
                &format!("pools[{index}].name"),
                format!("{} appears twice", pool.name),
            ));
        }
    }
    Ok(Config {
        broker,
        store,
        keyring,
        ledger,
        limits,
        retention,
        ingest,
        pools,
    })
}

fn ingest(raw: &RawIngest) -> Result<IngestConfig, ConfigError> {
    let mut tokens: Vec<ServiceToken> = Vec::with_capacity(raw.tokens.len());
    for (index, token) in raw.tokens.iter().enumerate() {
        let field = |name: &str| format!("ingest.tokens[{index}].{name}");
        let name_ok = !token.name.is_empty()
            && token.name.len() <= 64
            && token
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(&field("name"), "must be 1..=64 of [A-Za-z0-9_-]"));
        }
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&token.sha256, &mut sha256).map_err(|_| {
            invalid(
                &field("sha256"),
                "must be the 64 hex digits of the token's SHA-256",
            )
        })?;
        if tokens.iter().any(|t| t.name == token.name) {
            return Err(invalid(
                &field("name"),
                format!("{} appears twice", token.name),
            ));
        }
        tokens.push(ServiceToken {
            name: token.name.clone(),
            sha256,
        });
    }
    Ok(IngestConfig { tokens })
}

/// The policy's promises bound every retention value: photos are gone within a day at the very
/// latest, generated media within a week, account data within six months of termination.
fn retention(raw: &RawRetention) -> Result<RetentionConfig, ConfigError> {
    let input_max_age = duration("retention.input_max_age", &raw.input_max_age, DAY)?;
    let orphan_grace = duration("retention.orphan_grace", &raw.orphan_grace, input_max_age)?;
    let months = raw.account_months_after_termination;
    if months > 6 {
        return Err(invalid(
            "retention.account_months_after_termination",
            format!("{months} is more than the 6 months the privacy policy allows"),
        ));
    }
    Ok(RetentionConfig {
        input_max_age,
        output_ttl: duration("retention.output_ttl", &raw.output_ttl, 7 * DAY)?,
        account_months_after_termination: months,
        usage_max_age: duration("retention.usage_max_age", &raw.usage_max_age, 183 * DAY)?,
        orphan_grace,
        session_ttl: duration("retention.session_ttl", &raw.session_ttl, 7 * DAY)?,
    })
}

fn pool_config(index: usize, raw: &RawPool) -> Result<PoolConfig, ConfigError> {
    let field = |name: &str| format!("pools[{index}].{name}");
    let name =
        PoolName::new(raw.name.clone()).map_err(|err| invalid(&field("name"), err.to_string()))?;
    for (what, text) in [("model", &raw.model), ("model_version", &raw.model_version)] {
        if text.is_empty() || text.len() > 128 {
            return Err(invalid(&field(what), "must be 1..=128 bytes"));
        }
    }
    Ok(PoolConfig {
        name,
        model: raw.model.clone(),
        model_version: raw.model_version.clone(),
        max_backlog: within(&field("max_backlog"), raw.max_backlog, 1..=100_000_000)?,
        job_deadline: duration(&field("job_deadline"), &raw.job_deadline, 7 * DAY)?,
        max_deliveries: within(&field("max_deliveries"), raw.max_deliveries.into(), 1..=100)?
            as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_hides_the_password() {
        let url = BackendUrl::parse(
            "x",
            "amqp://guest:s3cret@host:5672/%2f",
            &[("amqp", Scheme::Amqp)],
        )
        .expect("url");
        assert_eq!(url.to_string(), "amqp://guest:***@host:5672/%2f");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(url.expose().contains("s3cret"));
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(
            duration("f", "90m", DAY).expect("ok"),
            Duration::from_secs(5400)
        );
        assert!(duration("f", "0s", DAY).is_err());
        assert!(duration("f", "25h", DAY).is_err());
        assert!(duration("f", "soon", DAY).is_err());
    }
}
