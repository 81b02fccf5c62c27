//! The config loader on any text: a `Config` or a `ConfigError`, never a panic.
#![no_main]

use std::collections::BTreeMap;

use clipfleet_config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_toml(text, &BTreeMap::new());
    }
});
