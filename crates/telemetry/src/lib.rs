//! What every clipfleet service shares to be operated:
//!
//! - logs and traces, set up once per process ([`init`] with [`TelemetryOptions`]): structured
//!   logs on stderr, and — when an OTLP endpoint is configured — the `tracing` spans of
//!   clipfleet's crates exported as OpenTelemetry spans ([`OtlpTraces`]);
//! - trace context across processes: W3C `traceparent`/`tracestate` into and out of broker
//!   message headers ([`inject_context`], [`set_parent_from_headers`]; headers are a plain
//!   `BTreeMap<String, String>`, the broker's `Headers`, so neither crate depends on the
//!   other) and out of incoming HTTP requests ([`trace_http`]);
//! - [`pseudonym`]: the only form an account id takes in logs and spans (keyed HMAC);
//! - metrics in the Prometheus text format ([`prometheus_client`], re-exported so every
//!   service registers with the same version) and the operations endpoints ([`ops_router`]):
//!   `/livez` (the process answers), `/readyz` (its dependencies answer, each check bounded by
//!   a timeout) and `/metrics`.
//!
//! Nothing here knows a service: a service hands in its registry and a [`Readiness`] of its own.
//!
//! Modules: `logging` (init, options, guard), `traces` (OTLP export, the OpenTelemetry layer),
//! `propagation` (W3C context through headers), `http` (request spans), `pseudonym`, `ops`
//! (operations endpoints), `error`.

mod error;
mod http;
mod logging;
mod ops;
mod propagation;
mod pseudonym;
mod traces;

pub use error::{TelemetryError, TelemetryErrorKind};
pub use http::trace_http;
pub use logging::{
    LogFormat, PSEUDONYM_KEY_ENV, TelemetryGuard, TelemetryOptions, init, init_logging,
};
pub use opentelemetry_sdk;
pub use ops::{Check, OpsState, READINESS_TIMEOUT, Readiness, metrics_text, ops_router};
pub use prometheus_client;
pub use propagation::{
    TRACEPARENT_HEADER, TRACESTATE_HEADER, inject_context, set_parent_from_headers,
    set_parent_from_http, trace_id, traceparent,
};
pub use pseudonym::{MIN_PSEUDONYM_KEY_BYTES, pseudonym, set_pseudonym_key};
pub use traces::{OTLP_ENDPOINT_ENV, OTLP_TRACES_ENDPOINT_ENV, OtlpTraces, otel_layer, resource};
