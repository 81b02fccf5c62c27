//! What every clipfleet service shares to be operated: log setup ([`init_logging`]), metrics in
//! the Prometheus text format ([`prometheus_client`], re-exported so every service registers
//! with the same version), and the operations endpoints ([`ops_router`]): `/livez` (the process
//! answers), `/readyz` (its dependencies answer, each check bounded by a timeout) and
//! `/metrics`.
//!
//! Nothing here knows a service: a service hands in its registry and a [`Readiness`] of its own.

mod logging;
mod ops;

pub use logging::{LogFormat, init_logging};
pub use ops::{Check, OpsState, READINESS_TIMEOUT, Readiness, metrics_text, ops_router};
pub use prometheus_client;
