//! The configuration file exactly as written. Every table refuses fields it does not know, so a
//! typo is an error instead of a silently ignored setting.

use serde::Deserialize;

use crate::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Checked by `from_tree` before the rest is read; kept here so `deny_unknown_fields` knows it.
    #[serde(rename = "version")]
    pub _version: u32,
    pub broker: RawBroker,
    pub store: RawStore,
    pub ledger: RawLedger,
    pub limits: RawLimits,
    pub retention: RawRetention,
    #[serde(default)]
    pub ingest: RawIngest,
    pub pools: Vec<RawPool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIngest {
    #[serde(default)]
    pub tokens: Vec<RawToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToken {
    pub name: String,
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBroker {
    pub url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub url: String,
    pub sealing: RawSealing,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSealing {
    pub keyring: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLedger {
    pub url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_upload_bytes: u64,
    pub max_pixels: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub input_max_age: String,
    pub output_ttl: String,
    pub account_months_after_termination: u32,
    pub usage_max_age: String,
    pub orphan_grace: String,
    pub session_ttl: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub name: String,
    pub model: String,
    pub model_version: String,
    pub max_backlog: u64,
    pub job_deadline: String,
    pub max_deliveries: u32,
}

impl RawConfig {
    pub(crate) fn from_tree(tree: toml::Table) -> Result<Self, ConfigError> {
        // Refuse an unknown version before the shape: a newer file may be shaped differently.
        match tree.get("version") {
            Some(toml::Value::Integer(v)) if *v == i64::from(crate::CONFIG_VERSION) => {}
            Some(other) => {
                let shown = match other {
                    toml::Value::Integer(v) => v.to_string(),
                    other => format!("a {}", other.type_str()),
                };
                return Err(ConfigError::Invalid {
                    field: "version".into(),
                    reason: format!(
                        "{shown} is not supported (this build reads version {})",
                        crate::CONFIG_VERSION
                    ),
                });
            }
            None => {
                return Err(ConfigError::Invalid {
                    field: "version".into(),
                    reason: "missing".into(),
                });
            }
        }
        RawConfig::deserialize(toml::Value::Table(tree))
            .map_err(|err| ConfigError::Parse(err.to_string()))
    }
}
