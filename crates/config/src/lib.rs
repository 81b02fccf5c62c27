//! clipfleet's configuration: one versioned TOML file describing what the fleet is (backends,
//! pools, limits, retention), `CLIPFLEET_<SECTION>__<FIELD>` overrides from the environment, and
//! validation once into an immutable [`Config`].
//!
//! The environment is passed in as a map, so tests fake it; only this crate's
//! [`env_from_process`] and binaries' `main` read the real one. The example file
//! `clipfleet.example.toml` beside this crate is also the embedded default.
//!
//! Modules:
//! - `raw`: the file as written (serde, `deny_unknown_fields`).
//! - `overrides`: applying environment overrides to the parsed tree.
//! - `validated`: [`Config`] and its sections, and the checks that build them.

mod overrides;
mod raw;
mod validated;

use std::collections::BTreeMap;
use std::path::Path;

pub use validated::{
    BackendUrl, Config, IngestConfig, LimitsConfig, PoolConfig, RetentionConfig, Scheme,
    ServiceToken,
};

/// The schema version this crate reads and writes.
pub const CONFIG_VERSION: u32 = 1;

/// The example configuration, used as-is when no file is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../clipfleet.example.toml");

/// Prefix of environment variables that override the file.
pub const ENV_PREFIX: &str = "CLIPFLEET_";

/// Why a configuration was refused. Every variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not TOML, an unknown field, or a value of the wrong type.
    #[error("config does not parse: {0}")]
    Parse(String),
    /// An environment override that names no field or does not fit it.
    #[error("environment override {key}: {reason}")]
    Override {
        /// The variable.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A value outside what the fleet (or the privacy policy) allows.
    #[error("config field {field}: {reason}")]
    Invalid {
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Parses `text`, applies `env` overrides and validates.
    pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut tree: toml::Table =
            toml::from_str(text).map_err(|err| ConfigError::Parse(err.to_string()))?;
        overrides::apply(&mut tree, env)?;
        let raw = raw::RawConfig::from_tree(tree)?;
        validated::validate(raw)
    }

    /// The embedded default ([`EMBEDDED_DEFAULT`]) with `env` overrides.
    pub fn embedded(env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        Config::from_toml(EMBEDDED_DEFAULT, env)
    }

    /// The file at `path`, or the embedded default when there is none, with `env` overrides.
    pub fn load(
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        match path {
            None => Config::embedded(env),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                Config::from_toml(&text, env)
            }
        }
    }
}

/// The process environment's `CLIPFLEET_*` variables, for `main` to pass to [`Config::load`].
pub fn env_from_process() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(key, _)| key.starts_with(ENV_PREFIX))
        .collect()
}
