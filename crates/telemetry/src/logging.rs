//! One process's telemetry set up at once ([`init`]): structured logs on stderr (JSON for
//! machines, pretty for people; the level from a `RUST_LOG`-style filter, default `info`),
//! OpenTelemetry traces when an OTLP endpoint is configured, and the pseudonym key.
//!
//! Only `main` reads the process environment; it hands the variables in as a map
//! ([`TelemetryOptions::from_env`]), so tests fake them.

use std::collections::BTreeMap;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::error::TelemetryError;
use crate::pseudonym::set_pseudonym_key;
use crate::traces::{OtlpTraces, otel_layer};

/// The variable holding the fleet's pseudonym key (at least 16 bytes; share it between the
/// fleet's processes so an account's pseudonym is the same in all of them).
pub const PSEUDONYM_KEY_ENV: &str = "CLIPFLEET_PSEUDONYM_KEY";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `pretty` or `json`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pretty" => Some(LogFormat::Pretty),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// How one process reports.
#[derive(Clone)]
#[non_exhaustive]
pub struct TelemetryOptions {
    /// `service.name` of its spans (`clip-ingest`, `clip-worker`, `clip-janitor`).
    pub service_name: String,
    /// How log lines look.
    pub log_format: LogFormat,
    /// A `RUST_LOG`-style filter for log lines; `info` when absent.
    pub log_filter: Option<String>,
    /// Where traces go; none exported when absent.
    pub traces: Option<OtlpTraces>,
    /// The fleet's pseudonym key; a random one per process when absent.
    pub pseudonym_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for TelemetryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryOptions")
            .field("service_name", &self.service_name)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("traces", &self.traces)
            .field(
                "pseudonym_key",
                &self.pseudonym_key.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

impl TelemetryOptions {
    /// Logs only, at `info`, no traces, a per-process pseudonym key.
    pub fn new(service_name: impl Into<String>, log_format: LogFormat) -> Self {
        TelemetryOptions {
            service_name: service_name.into(),
            log_format,
            log_filter: None,
            traces: None,
            pseudonym_key: None,
        }
    }

    /// Options from the process's variables: `RUST_LOG`, the standard `OTEL_*` endpoint
    /// variables (see [`OtlpTraces::from_env`]) and [`PSEUDONYM_KEY_ENV`].
    pub fn from_env(
        service_name: impl Into<String>,
        log_format: LogFormat,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, TelemetryError> {
        Ok(TelemetryOptions {
            log_filter: env.get("RUST_LOG").cloned(),
            traces: OtlpTraces::from_env(env)?,
            pseudonym_key: env
                .get(PSEUDONYM_KEY_ENV)
                .map(|key| key.as_bytes().to_vec()),
            ..TelemetryOptions::new(service_name, log_format)
        })
    }
}

/// Keeps trace export running; dropping it flushes the spans still queued (hold it in `main`
/// until the end).
#[derive(Debug, Default)]
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are being exported.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Flushes the batch; errors (collector away) have nowhere useful to go at exit.
            let _ = provider.shutdown();
        }
    }
}

/// Installs the process's subscriber (logs, and traces when configured) and its pseudonym key.
/// A second call (tests) keeps the first subscriber and exports nothing of its own.
pub fn init(options: TelemetryOptions) -> Result<TelemetryGuard, TelemetryError> {
    if let Some(key) = &options.pseudonym_key {
        set_pseudonym_key(key)?;
    }
    let filter =
        EnvFilter::try_new(options.log_filter.as_deref().unwrap_or("info")).map_err(|err| {
            TelemetryError::invalid("the log filter (RUST_LOG) does not parse").with_source(err)
        })?;
    let provider = options
        .traces
        .as_ref()
        .map(|traces| traces.provider(&options.service_name))
        .transpose()?;
    let logs = match options.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let traces = provider
        .as_ref()
        .map(|provider| otel_layer(provider, &options.service_name));
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init()
        .is_ok();
    if !installed {
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Ok(TelemetryGuard::default());
    }
    if let Some(traces) = &options.traces {
        tracing::info!(endpoint = %traces.endpoint, "exporting traces over otlp");
    }
    if options.pseudonym_key.is_none() {
        tracing::info!(
            "no {PSEUDONYM_KEY_ENV}: account pseudonyms are consistent within this process only"
        );
    }
    Ok(TelemetryGuard { provider })
}

/// Logs only (no traces, a per-process pseudonym key), the filter from `RUST_LOG`. Installs
/// the global subscriber once; later calls (tests) are no-ops.
pub fn init_logging(format: LogFormat) {
    let mut options = TelemetryOptions::new("clipfleet", format);
    options.log_filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|filter| EnvFilter::try_new(filter).is_ok());
    let _guard = init(options);
}
