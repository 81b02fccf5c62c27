//! The configuration file, its environment overrides and its guard rails.

use std::collections::BTreeMap;
use std::time::Duration;

use clipfleet_config::{Config, ConfigError, EMBEDDED_DEFAULT, Scheme};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn with(replace: &str, by: &str) -> String {
    assert!(
        EMBEDDED_DEFAULT.contains(replace),
        "example has no {replace:?}"
    );
    EMBEDDED_DEFAULT.replacen(replace, by, 1)
}

#[test]
fn the_embedded_default_is_a_self_contained_fleet() {
    let config = Config::embedded(&BTreeMap::new()).expect("embedded default");
    assert_eq!(config.broker.scheme(), Scheme::Memory);
    assert_eq!(config.store.scheme(), Scheme::Memory);
    assert_eq!(config.ledger.scheme(), Scheme::Sqlite);
    assert_eq!(config.keyring, "ephemeral");
    assert_eq!(config.retention.output_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(config.retention.account_months_after_termination, 6);
    let pool = config.pool("default").expect("default pool");
    assert_eq!(pool.model, "motion");
    assert_eq!(pool.max_deliveries, 5);
}

#[test]
fn environment_overrides_win_and_keep_types() {
    let config = Config::embedded(&env(&[
        (
            "CLIPFLEET_BROKER__URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        ),
        ("CLIPFLEET_RETENTION__OUTPUT_TTL", "2h"),
        ("CLIPFLEET_POOLS__0__MAX_BACKLOG", "500"),
        ("CLIPFLEET_LIMITS__MAX_PIXELS", "1000000"),
        // Not config: scripts' variables and other programs' are left alone.
        ("CLIPFLEET_CACHE", "/tmp/cache"),
        ("PATH", "/usr/bin"),
    ]))
    .expect("overridden");
    assert_eq!(config.broker.scheme(), Scheme::Amqp);
    assert_eq!(config.retention.output_ttl, Duration::from_secs(7200));
    assert_eq!(config.pools[0].max_backlog, 500);
    assert_eq!(config.limits.max_pixels, 1_000_000);
}

#[test]
fn an_override_of_nothing_is_an_error_like_a_typo_in_the_file() {
    for key in [
        "CLIPFLEET_BROKR__URL",
        "CLIPFLEET_BROKER__URLL",
        "CLIPFLEET_POOLS__7__NAME",
    ] {
        let err = Config::embedded(&env(&[(key, "x")])).expect_err(key);
        let text = err.to_string();
        assert!(
            matches!(err, ConfigError::Override { .. } | ConfigError::Parse(_)),
            "{key}: {text}"
        );
    }
    let err =
        Config::embedded(&env(&[("CLIPFLEET_LIMITS__MAX_PIXELS", "lots")])).expect_err("type");
    assert!(matches!(err, ConfigError::Parse(_)), "{err}");
}

#[test]
fn unknown_fields_in_the_file_are_refused() {
    let text = with("[broker]\n", "[broker]\nprefetch = 10\n");
    let err = Config::from_toml(&text, &BTreeMap::new()).expect_err("unknown field");
    assert!(err.to_string().contains("prefetch"), "{err}");
}

#[test]
fn other_versions_are_refused_by_name() {
    let err = Config::from_toml(&with("version = 1", "version = 2"), &BTreeMap::new())
        .expect_err("version 2");
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "version"),
        "{err}"
    );
    let err = Config::from_toml(&with("version = 1", ""), &BTreeMap::new()).expect_err("none");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn the_privacy_policy_bounds_retention() {
    let cases = [
        (
            "account_months_after_termination = 6",
            "account_months_after_termination = 7",
        ),
        ("output_ttl = \"24h\"", "output_ttl = \"30days\""),
        ("input_max_age = \"1h\"", "input_max_age = \"2days\""),
        ("orphan_grace = \"15m\"", "orphan_grace = \"2h\""),
        ("usage_max_age = \"90days\"", "usage_max_age = \"1year\""),
    ];
    for (from, to) in cases {
        let err = Config::from_toml(&with(from, to), &BTreeMap::new()).expect_err(to);
        assert!(matches!(err, ConfigError::Invalid { .. }), "{to}: {err}");
    }
}

#[test]
fn bad_backends_and_pools_are_refused() {
    let cases = [
        with("url = \"memory://\"", "url = \"kafka://broker\""),
        with("keyring = \"ephemeral\"", "keyring = \"hunter2\""),
        with("name = \"default\"", "name = \"../etc\""),
        with("max_deliveries = 5", "max_deliveries = 0"),
        EMBEDDED_DEFAULT.to_string()
            + "\n[[pools]]\nname = \"default\"\nmodel = \"m\"\nmodel_version = \"1\"\n\
               max_backlog = 1\njob_deadline = \"1m\"\nmax_deliveries = 1\n",
    ];
    for text in cases {
        let err = Config::from_toml(&text, &BTreeMap::new()).expect_err("refused");
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let err = Config::load(
        Some(std::path::Path::new("/nonexistent/clipfleet.toml")),
        &BTreeMap::new(),
    )
    .expect_err("missing file");
    assert!(
        err.to_string().contains("/nonexistent/clipfleet.toml"),
        "{err}"
    );
}

#[test]
fn debug_output_never_shows_credentials() {
    let config = Config::embedded(&env(&[(
        "CLIPFLEET_LEDGER__URL",
        "postgres://clip:topsecret@db:5432/clip",
    )]))
    .expect("config");
    assert!(!format!("{config:?}").contains("topsecret"));
}

#[test]
fn the_deployment_configs_load_with_their_secret_overrides() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let digest = "f01d2474fd375b4c5eb46064b550034167661b86322f1e1d3cb7645512a06607";
    for file in [
        "deploy/compose/clipfleet.toml",
        "deploy/k8s/base/clipfleet.toml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let config = Config::from_toml(
            &text,
            &env(&[("CLIPFLEET_INGEST__TOKENS__0__SHA256", digest)]),
        )
        .unwrap_or_else(|err| panic!("{file}: {err}"));
        assert_eq!(
            hex::encode(config.ingest.tokens[0].sha256),
            digest,
            "{file}"
        );
    }
}
