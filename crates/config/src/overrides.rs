//! `CLIPFLEET_<SECTION>__<FIELD>` environment overrides, applied to the parsed TOML tree before
//! it is deserialised, so an override goes through exactly the checks the file does.
//!
//! Segments are separated by `__` and lowercased; a numeric segment indexes an array of tables
//! (`CLIPFLEET_POOLS__0__MAX_BACKLOG`). Variables without `__` (`CLIPFLEET_CACHE`, …) belong to
//! scripts and tools, not to the file, and are left alone. The value replaces a string as a
//! string; anywhere else it is read as a TOML value when it is one (`500`, `true`) and as a string
//! otherwise.

use std::collections::BTreeMap;

use crate::{ConfigError, ENV_PREFIX};

pub(crate) fn apply(
    tree: &mut toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (key, value) in env {
        let Some(path) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !path.contains("__") {
            continue;
        }
        let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        apply_one(tree, &segments, value).map_err(|reason| ConfigError::Override {
            key: key.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn apply_one(tree: &mut toml::Table, segments: &[String], value: &str) -> Result<(), String> {
    if segments.iter().any(String::is_empty) {
        return Err("empty path segment".into());
    }
    let Some((field, parents)) = segments.split_last() else {
        return Err("empty path".into());
    };
    let mut table = tree;
    let mut at = 0;
    while at < parents.len() {
        let name = &parents[at];
        let where_ = || segments[..=at].join(".");
        table = match table.get_mut(name.as_str()) {
            Some(toml::Value::Table(inner)) => {
                at += 1;
                inner
            }
            Some(toml::Value::Array(items)) => {
                let index = parents
                    .get(at + 1)
                    .and_then(|segment| segment.parse::<usize>().ok())
                    .ok_or_else(|| format!("{} is a list: name an entry by index", where_()))?;
                let len = items.len();
                match items.get_mut(index) {
                    Some(toml::Value::Table(inner)) => {
                        at += 2;
                        inner
                    }
                    _ => return Err(format!("{} has no entry {index} (it has {len})", where_())),
                }
            }
            Some(_) => return Err(format!("{} is a value, not a section", where_())),
            None => return Err(format!("no section {}", where_())),
        };
    }
    let new_value = match table.get(field.as_str()) {
        Some(toml::Value::String(_)) => toml::Value::String(value.to_owned()),
        Some(toml::Value::Table(_) | toml::Value::Array(_)) => {
            return Err(format!("{} is a section, not a value", segments.join(".")));
        }
        _ => parse_scalar(value),
    };
    table.insert(field.clone(), new_value);
    Ok(())
}

fn parse_scalar(text: &str) -> toml::Value {
    #[derive(serde::Deserialize)]
    struct Probe {
        v: toml::Value,
    }
    match toml::from_str::<Probe>(&format!("v = {text}")) {
        Ok(Probe { v }) if !matches!(v, toml::Value::Table(_) | toml::Value::Array(_)) => v,
        _ => toml::Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> toml::Table {
        toml::from_str("[broker]\nurl = \"memory://\"\n[[pools]]\nname = \"a\"\nmax_backlog = 5\n")
            .expect("toml")
    }

    #[test]
    fn strings_stay_strings_and_numbers_become_numbers() {
        let mut t = tree();
        apply_one(&mut t, &["broker".into(), "url".into()], "123").expect("apply");
        assert_eq!(t["broker"]["url"].as_str(), Some("123"));
        apply_one(
            &mut t,
            &["pools".into(), "0".into(), "max_backlog".into()],
            "42",
        )
        .expect("apply");
        assert_eq!(t["pools"][0]["max_backlog"].as_integer(), Some(42));
    }

    #[test]
    fn paths_that_lead_nowhere_are_errors() {
        let mut t = tree();
        let cases: [&[&str]; 5] = [
            &["brokr", "url"],
            &["pools", "max_backlog"],
            &["pools", "3", "name"],
            &["broker", "url", "x"],
            &["broker", ""],
        ];
        for case in cases {
            let segments: Vec<String> = case.iter().map(|s| s.to_string()).collect();
            assert!(apply_one(&mut t, &segments, "1").is_err(), "{case:?}");
        }
        let err = apply_one(&mut t, &["pools".into(), "name".into()], "x").expect_err("list");
        assert!(err.contains("name an entry by index"), "{err}");
    }
}
