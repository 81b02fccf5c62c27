//! `--embedded`: the fleet started in this process (`clipfleet-fleet`), configured for a load
//! test: pool 0 serves the model asked for, videos live a short TTL, the janitor sweeps often.
//! The load test still reaches it only through its HTTP API on a loopback port.

use std::collections::BTreeMap;

use anyhow::Context;
use clipfleet_config::Config;
use clipfleet_fleet::{Fleet, FleetOptions};

use crate::options::{EmbeddedFleet, ModelChoice};

/// The configuration overrides a load test puts over `fleet.env`.
pub(crate) fn overrides(
    fleet: &EmbeddedFleet,
    model: Option<&ModelChoice>,
) -> BTreeMap<String, String> {
    let mut env = fleet.env.clone();
    if let Some(model) = model {
        env.insert("CLIPFLEET_POOLS__0__MODEL".into(), model.name.clone());
        env.insert(
            "CLIPFLEET_POOLS__0__MODEL_VERSION".into(),
            model.version.clone(),
        );
    }
    env.insert(
        "CLIPFLEET_RETENTION__OUTPUT_TTL".into(),
        humantime::format_duration(fleet.output_ttl).to_string(),
    );
    env
}

/// Starts the fleet of `fleet` (models loaded and warmed up: seconds).
pub(crate) async fn start(
    fleet: &EmbeddedFleet,
    model: Option<&ModelChoice>,
) -> anyhow::Result<Fleet> {
    let config = Config::load(fleet.config.as_deref(), &overrides(fleet, model))
        .context("the embedded fleet's config")?;
    // The fleet shares this process (and, on a small machine, its cores) with the load
    // generator: one libtorch thread, as `clipctl up` runs it.
    tch::set_num_threads(1);
    let mut options = FleetOptions::embedded()?;
    options.config = config;
    options.workers_per_pool = fleet.workers.max(1);
    options.worker_slots = fleet.slots.max(1);
    options.janitor_every = fleet.janitor_every;
    Fleet::start(options)
        .await
        .context("start the embedded fleet")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn overrides_make_a_valid_config() -> anyhow::Result<()> {
        let fleet = EmbeddedFleet {
            output_ttl: Duration::from_millis(2500),
            ..EmbeddedFleet::default()
        };
        let config = Config::load(None, &overrides(&fleet, Some(&ModelChoice::noop())))?;
        assert_eq!(config.pools[0].model, "noop");
        assert_eq!(config.pools[0].model_version, "1");
        assert_eq!(config.retention.output_ttl, Duration::from_millis(2500));
        Ok(())
    }
}
