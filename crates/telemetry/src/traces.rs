//! OpenTelemetry traces: the existing `tracing` spans of clipfleet's crates, turned into
//! OpenTelemetry spans by `tracing-opentelemetry` and exported over OTLP/HTTP (protobuf) to a
//! collector — only when an endpoint is configured. Without one no layer is installed and
//! nothing is exported or propagated.
//!
//! The endpoint comes from the standard variables, read by `main` and handed in as a map:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or `OTEL_EXPORTER_OTLP_ENDPOINT` (a base:
//! `/v1/traces` is appended); `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn
//! export off. The exporter speaks plain `http://` only (no TLS stack is built in): send to a
//! collector on the node or in the cluster. The SDK itself honours the standard sampler and
//! batch variables (`OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`) and the exporter
//! `OTEL_EXPORTER_OTLP_HEADERS`.
//!
//! Spans are exported at INFO and above from `clipfleet*` targets only: dependencies' spans
//! (hyper, sqlx, lapin) stay out of traces whatever `RUST_LOG` says.
//!
//! The exporter is the crate's `otlp` feature (on in the service binaries): a build without it
//! (the embedded `clipctl`) still reads the variables, and refuses an endpoint by name rather
//! than dropping the spans without a word.

use std::collections::BTreeMap;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

use crate::error::TelemetryError;

/// The standard base endpoint variable (`/v1/traces` is appended).
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard traces endpoint variable (used as is; wins over the base).
pub const OTLP_TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// Where traces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTraces {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://otel-collector:4318/v1/traces`.
    pub endpoint: String,
}

impl OtlpTraces {
    /// Trace export as the standard `OTEL_*` variables in `env` ask for; `None` when no
    /// endpoint is set or export is turned off.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Option<Self>, TelemetryError> {
        let set = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let endpoint = if let Some(url) = set(OTLP_TRACES_ENDPOINT_ENV) {
            url.to_owned()
        } else if let Some(base) = set(OTLP_ENDPOINT_ENV) {
            format!("{}/v1/traces", base.trim_end_matches('/'))
        } else {
            return Ok(None);
        };
        OtlpTraces::new(endpoint).map(Some)
    }

    /// Export to `endpoint`, an `http://` URL.
    pub fn new(endpoint: impl Into<String>) -> Result<Self, TelemetryError> {
        let endpoint = endpoint.into();
        if endpoint.starts_with("https://") {
            return Err(TelemetryError::invalid(
                "the OTLP endpoint is https, but traces are sent without TLS: use a collector \
                 reachable over http (on the node or in the cluster)",
            ));
        }
        if !endpoint.starts_with("http://") || endpoint.len() <= "http://".len() {
            return Err(TelemetryError::invalid(format!(
                "the OTLP endpoint {endpoint:?} is not an http:// URL"
            )));
        }
        Ok(OtlpTraces { endpoint })
    }

    /// A tracer provider batching spans to the endpoint from a thread of its own.
    #[cfg(feature = "otlp")]
    pub(crate) fn provider(&self, service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
        use opentelemetry_otlp::{SpanExporter, WithExportConfig};
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(self.endpoint.clone())
            .build()
            .map_err(|err| {
                TelemetryError::new(
                    crate::TelemetryErrorKind::Internal,
                    "building the OTLP exporter failed",
                )
                .with_source(err)
            })?;
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(service_name))
            .build())
    }

    /// Without the exporter compiled in, an endpoint is a configuration this build cannot keep.
    #[cfg(not(feature = "otlp"))]
    pub(crate) fn provider(
        &self,
        _service_name: &str,
    ) -> Result<SdkTracerProvider, TelemetryError> {
        Err(TelemetryError::invalid(format!(
            "traces are to go to {:?}, but this build has no OTLP exporter (the `otlp` feature \
             of clipfleet-telemetry): unset OTEL_EXPORTER_OTLP_*ENDPOINT or use a service binary",
            self.endpoint
        )))
    }
}

/// What every span of this process says about where it comes from.
pub fn resource(service_name: &str) -> Resource {
    Resource::builder_empty()
        .with_service_name(service_name.to_owned())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// The layer that turns clipfleet's `tracing` spans into OpenTelemetry spans of `provider`
/// (INFO and above, `clipfleet*` targets only). Services get it from `init`; tests build one
/// over an in-memory exporter.
pub fn otel_layer<S>(
    provider: &SdkTracerProvider,
    service_name: &str,
) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let tracer = provider.tracer(service_name.to_owned());
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_filter(
            Targets::new()
                .with_default(LevelFilter::OFF)
                .with_target("clipfleet", LevelFilter::INFO),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_endpoint_comes_from_the_standard_variables() {
        assert_eq!(OtlpTraces::from_env(&env(&[])).expect("ok"), None);
        let base = OtlpTraces::from_env(&env(&[(OTLP_ENDPOINT_ENV, "http://collector:4318/")]))
            .expect("ok")
            .expect("some");
        assert_eq!(base.endpoint, "http://collector:4318/v1/traces");
        let exact = OtlpTraces::from_env(&env(&[
            (OTLP_ENDPOINT_ENV, "http://collector:4318"),
            (OTLP_TRACES_ENDPOINT_ENV, "http://other:4318/custom"),
        ]))
        .expect("ok")
        .expect("some");
        assert_eq!(exact.endpoint, "http://other:4318/custom");
        let off = OtlpTraces::from_env(&env(&[
            (OTLP_ENDPOINT_ENV, "http://collector:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]))
        .expect("ok");
        assert_eq!(off, None);
    }

    #[test]
    fn only_plain_http_endpoints_are_accepted() {
        let err = OtlpTraces::from_env(&env(&[(OTLP_ENDPOINT_ENV, "https://collector:4318")]))
            .expect_err("https refused");
        assert_eq!(err.kind(), crate::TelemetryErrorKind::InvalidInput);
        assert!(err.to_string().contains("without TLS"), "{err}");
        assert!(OtlpTraces::new("collector:4318").is_err());
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn a_provider_builds_without_a_runtime_or_a_collector() {
        let traces = OtlpTraces::new("http://127.0.0.1:9/v1/traces").expect("valid");
        let provider = traces.provider("test").expect("provider");
        provider.shutdown().ok();
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn an_endpoint_without_the_exporter_is_refused_by_name() {
        let traces = OtlpTraces::new("http://127.0.0.1:9/v1/traces").expect("valid");
        let err = traces.provider("test").expect_err("no exporter");
        assert_eq!(err.kind(), crate::TelemetryErrorKind::InvalidInput);
        assert!(err.to_string().contains("`otlp` feature"), "{err}");
    }
}
