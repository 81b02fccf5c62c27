//! `--embedded`: the fleet started in this process (`clipfleet-fleet`), configured for a load
//! test: one pool per model of the run (named after it), outputs live a short TTL, the janitor
//! sweeps often. The load test still reaches it only through its HTTP API on a loopback port.
//!
//! The pools are written into the config's text: its `[[pools]]` tables (the embedded
//! default's, or those of `--config`) are replaced by one per model, each with the first pool's
//! backlog, deadline and deliveries (the environment overrides can only change pools that
//! exist, not add them). The rest of the file, and the `CLIPFLEET_*` overrides, apply as ever.

use std::collections::BTreeMap;

use anyhow::Context;
use clipfleet_config::{Config, EMBEDDED_DEFAULT, PoolConfig};
use clipfleet_fleet::{Fleet, FleetOptions};

use crate::options::{EmbeddedFleet, ModelChoice};

/// Longest pool name (`clipfleet_proto::PoolName`'s limit).
const POOL_NAME_MAX: usize = 48;

/// The configuration overrides a load test puts over `fleet.env`.
pub(crate) fn overrides(fleet: &EmbeddedFleet) -> BTreeMap<String, String> {
    let mut env = fleet.env.clone();
    env.insert(
        "CLIPFLEET_RETENTION__OUTPUT_TTL".into(),
        humantime::format_duration(fleet.output_ttl).to_string(),
    );
    env
}

/// The embedded fleet's config: the file (or the embedded default) with one pool per model of
/// `models` in their place (none: the file's own pools), under the overrides.
pub(crate) fn config(fleet: &EmbeddedFleet, models: &[ModelChoice]) -> anyhow::Result<Config> {
    let env = overrides(fleet);
    let text = match &fleet.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("read the config file {}", path.display()))?,
        None => EMBEDDED_DEFAULT.to_owned(),
    };
    let base = Config::from_toml(&text, &env).context("the embedded fleet's config")?;
    if models.is_empty() {
        return Ok(base);
    }
    let template = base
        .pools
        .first()
        .context("the embedded fleet's config has no pool")?;
    let mut generated = without_pools(&text);
    let mut names: Vec<String> = Vec::with_capacity(models.len());
    for model in models {
        let name = pool_name(&model.name, &names);
        generated.push_str(&pool_table(&name, model, template)?);
        names.push(name);
    }
    let config = Config::from_toml(&generated, &env)
        .context("the embedded fleet's config with a pool per model")?;
    anyhow::ensure!(
        config.pools.len() == models.len(),
        "could not replace the config's pools with one per model ({} pools after, {} models): \
         write the file's pools as [[pools]] tables",
        config.pools.len(),
        models.len()
    );
    Ok(config)
}

/// `text` without its `[[pools]]` tables: from each such header to the next table header.
/// Line-based (no TOML writer here): a multi-line string holding a line that starts with `[`
/// would confuse it, which the pool count check in [`config`] then reports.
fn without_pools(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_pools = false;
    for line in text.lines() {
        let header: String = line
            .trim_start()
            .chars()
            .take_while(|c| *c != '#')
            .filter(|c| !c.is_whitespace())
            .collect();
        if header.starts_with('[') {
            in_pools = header == "[[pools]]" || header.starts_with("[pools.");
        }
        if !in_pools {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The pool of `model`: its name in the pool alphabet (`[a-z0-9-]`, starting with a letter or
/// digit, at most 48), made unique among `taken` with a `-2`, `-3`… suffix.
pub(crate) fn pool_name(model: &str, taken: &[String]) -> String {
    let mut base: String = model
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect::<String>()
        .trim_start_matches('-')
        .to_owned();
    if base.is_empty() {
        base = "pool".into();
    }
    base.truncate(POOL_NAME_MAX);
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        let suffix = format!("-{n}");
        let mut head = base.clone();
        head.truncate(POOL_NAME_MAX - suffix.len());
        name = format!("{head}{suffix}");
        n += 1;
    }
    name
}

/// A `[[pools]]` table serving `model`, with `template`'s limits.
fn pool_table(name: &str, model: &ModelChoice, template: &PoolConfig) -> anyhow::Result<String> {
    // A JSON string is a valid TOML basic string (same escapes).
    let quoted = |text: &str| serde_json::to_string(text).context("quote a config string");
    Ok(format!(
        "\n[[pools]]\nname = {}\nmodel = {}\nmodel_version = {}\nmax_backlog = {}\n\
         job_deadline = {}\nmax_deliveries = {}\n",
        quoted(name)?,
        quoted(&model.name)?,
        quoted(&model.version)?,
        template.max_backlog,
        quoted(&humantime::format_duration(template.job_deadline).to_string())?,
        template.max_deliveries,
    ))
}

/// Starts the fleet of `fleet` serving `models` (loaded and warmed up: seconds).
pub(crate) async fn start(fleet: &EmbeddedFleet, models: &[ModelChoice]) -> anyhow::Result<Fleet> {
    let config = config(fleet, models)?;
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

    fn model(name: &str, version: &str) -> ModelChoice {
        ModelChoice {
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn overrides_make_a_valid_config() -> anyhow::Result<()> {
        let fleet = EmbeddedFleet {
            output_ttl: Duration::from_millis(2500),
            ..EmbeddedFleet::default()
        };
        let config = config(&fleet, &[ModelChoice::noop()])?;
        assert_eq!(config.pools.len(), 1);
        assert_eq!(config.pools[0].name.as_str(), "noop");
        assert_eq!(config.pools[0].model, "noop");
        assert_eq!(config.pools[0].model_version, "1");
        assert_eq!(config.retention.output_ttl, Duration::from_millis(2500));
        Ok(())
    }

    #[test]
    fn one_pool_per_model_named_after_it() -> anyhow::Result<()> {
        let fleet = EmbeddedFleet {
            env: BTreeMap::from([("CLIPFLEET_POOLS__0__MAX_BACKLOG".into(), "77".into())]),
            ..EmbeddedFleet::default()
        };
        let models = [
            model("noop", "1"),
            model("portrait", "1"),
            model("Motion_RIFE", "3.9"),
        ];
        let config = config(&fleet, &models)?;
        let pools: Vec<(&str, &str, &str)> = config
            .pools
            .iter()
            .map(|p| (p.name.as_str(), p.model.as_str(), p.model_version.as_str()))
            .collect();
        assert_eq!(
            pools,
            vec![
                ("noop", "noop", "1"),
                ("portrait", "portrait", "1"),
                ("motion-rife", "Motion_RIFE", "3.9"),
            ]
        );
        // The first pool's limits (overrides included) are every pool's; the override applies
        // to the first generated pool again.
        assert!(config.pools.iter().all(|p| p.max_backlog == 77));
        assert_eq!(config.pools[1].job_deadline, Duration::from_secs(600));
        // The rest of the file is untouched.
        assert_eq!(config.broker.scheme(), clipfleet_config::Scheme::Memory);
        Ok(())
    }

    #[test]
    fn pool_names_fit_the_alphabet_and_stay_unique() {
        assert_eq!(pool_name("portrait", &[]), "portrait");
        assert_eq!(pool_name("_Face.Swap v2", &[]), "face-swap-v2");
        assert_eq!(pool_name("__", &[]), "pool");
        assert_eq!(pool_name("a_b", &["a-b".into()]), "a-b-2");
        assert_eq!(pool_name("a.b", &["a-b".into(), "a-b-2".into()]), "a-b-3");
        let long = "x".repeat(60);
        assert_eq!(pool_name(&long, &[]).len(), 48);
        let taken = vec!["x".repeat(48)];
        let second = pool_name(&long, &taken);
        assert!(second.len() <= 48 && second.ends_with("-2"), "{second}");
        for name in ["portrait", "face-swap-v2", "a-b-3", second.as_str()] {
            assert!(clipfleet_proto::PoolName::new(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn pools_are_cut_out_of_the_text() {
        let text = "version = 1\n[store]\nurl = \"x\"\n[[pools]]\nname = \"a\"\n\
                    [[ pools ]] # two\nname = \"b\"\n[ingest]\nk = 1\n";
        assert_eq!(
            without_pools(text),
            "version = 1\n[store]\nurl = \"x\"\n[ingest]\nk = 1\n"
        );
    }
}
