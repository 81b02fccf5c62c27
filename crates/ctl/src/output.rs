//! What a command reports: one JSON document for scripts, text for people.

use serde_json::Value;

/// A command's result, printable both ways.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// For `--output json`.
    pub json: Value,
    /// For people.
    pub text: String,
}

impl Report {
    /// A report.
    pub fn new(json: Value, text: impl Into<String>) -> Report {
        Report {
            json,
            text: text.into(),
        }
    }
}
