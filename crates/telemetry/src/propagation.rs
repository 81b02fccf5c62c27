//! W3C trace context (`traceparent`, `tracestate`) across processes: into and out of broker
//! message headers, and out of incoming HTTP requests.
//!
//! Message headers are a plain `BTreeMap<String, String>` here — exactly the broker's
//! `Headers` type — so this crate does not depend on the broker (nor the broker on it): the
//! services that use both hand one to the other. Values written stay within what every broker
//! backend carries (the broker checks keys and values of at most 1,024 bytes): an oversized
//! `tracestate` from a caller is dropped, never allowed to fail a publish.
//!
//! When no OpenTelemetry layer is installed (traces not exported), spans carry no context:
//! nothing is injected and extracted context is ignored.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C `traceparent` header.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The W3C `tracestate` header.
pub const TRACESTATE_HEADER: &str = "tracestate";

/// Longest header value written into message headers (the broker allows 1,024 bytes).
const MAX_HEADER_VALUE_BYTES: usize = 512;

struct MapInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.len() <= MAX_HEADER_VALUE_BYTES {
            self.0.insert(key.to_owned(), value);
        }
    }
}

struct MapExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HttpExtractor<'a>(&'a HeaderMap);

impl Extractor for HttpExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// Writes `span`'s trace context into message `headers` (nothing when `span` is not traced).
pub fn inject_context(span: &tracing::Span, headers: &mut BTreeMap<String, String>) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut MapInjector(headers));
}

/// `span`'s W3C `traceparent`, for a message body's trace field; `None` when not traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut headers = BTreeMap::new();
    inject_context(span, &mut headers);
    headers.remove(TRACEPARENT_HEADER)
}

/// Makes the remote span named by message `headers` the parent of `span` (which must not have
/// been entered yet). Without a `traceparent` header, `fallback` (a body's trace field) is
/// used. Returns whether a valid remote parent was found and set.
pub fn set_parent_from_headers(
    span: &tracing::Span,
    headers: &BTreeMap<String, String>,
    fallback: Option<&str>,
) -> bool {
    let propagator = TraceContextPropagator::new();
    let context = if headers.contains_key(TRACEPARENT_HEADER) {
        propagator.extract(&MapExtractor(headers))
    } else {
        let mut only = BTreeMap::new();
        if let Some(traceparent) = fallback {
            only.insert(TRACEPARENT_HEADER.to_owned(), traceparent.to_owned());
        }
        propagator.extract(&MapExtractor(&only))
    };
    set_parent(span, context)
}

/// Makes the caller's span named by an incoming request's `traceparent` the parent of `span`
/// (not yet entered). Returns whether one was found and set.
pub fn set_parent_from_http(span: &tracing::Span, headers: &HeaderMap) -> bool {
    set_parent(
        span,
        TraceContextPropagator::new().extract(&HttpExtractor(headers)),
    )
}

fn set_parent(span: &tracing::Span, context: opentelemetry::Context) -> bool {
    if !context.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(context).is_ok()
}

/// The trace id of `span` as 32 hex digits, when it is traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn traced() -> (tracing::Dispatch, InMemorySpanExporter, SdkTracerProvider) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber =
            tracing_subscriber::registry().with(crate::traces::otel_layer(&provider, "test"));
        (tracing::Dispatch::new(subscriber), exporter, provider)
    }

    #[test]
    fn context_goes_through_headers_and_the_remote_span_becomes_the_parent() {
        let (dispatch, exporter, provider) = traced();
        tracing::dispatcher::with_default(&dispatch, || {
            let mut headers = BTreeMap::new();
            headers.insert(TRACEPARENT_HEADER.to_owned(), PARENT.to_owned());
            let consumer = tracing::info_span!("consume");
            assert!(set_parent_from_headers(&consumer, &headers, None));
            let mut out = BTreeMap::new();
            inject_context(&consumer, &mut out);
            let written = out.get(TRACEPARENT_HEADER).expect("traceparent written");
            assert!(written.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
            assert_eq!(
                trace_id(&consumer).as_deref(),
                Some("0af7651916cd43dd8448eb211c80319c")
            );
            drop(consumer);
        });
        provider.force_flush().expect("flush");
        let spans = exporter.get_finished_spans().expect("spans");
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].parent_span_id.to_string(),
            "b7ad6b7169203331",
            "the remote span is the parent"
        );
    }

    #[test]
    fn the_body_field_stands_in_for_missing_headers_and_garbage_is_ignored() {
        let (dispatch, _exporter, _provider) = traced();
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("consume");
            assert!(set_parent_from_headers(
                &span,
                &BTreeMap::new(),
                Some(PARENT)
            ));
            let span = tracing::info_span!("consume");
            assert!(!set_parent_from_headers(
                &span,
                &BTreeMap::new(),
                Some("not a traceparent")
            ));
            let mut http = HeaderMap::new();
            http.insert(TRACEPARENT_HEADER, PARENT.parse().expect("value"));
            let span = tracing::info_span!("request");
            assert!(set_parent_from_http(&span, &http));
        });
    }

    #[test]
    fn without_a_tracing_layer_nothing_is_injected() {
        let span = tracing::info_span!("untraced");
        let mut headers = BTreeMap::new();
        inject_context(&span, &mut headers);
        assert!(headers.is_empty());
        assert_eq!(traceparent(&span), None);
    }

    #[test]
    fn oversized_tracestate_is_dropped_not_published() {
        let mut headers = BTreeMap::new();
        let mut injector = MapInjector(&mut headers);
        injector.set(TRACESTATE_HEADER, "k=".to_owned() + &"v".repeat(2000));
        injector.set(TRACEPARENT_HEADER, PARENT.to_owned());
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(TRACEPARENT_HEADER));
    }
}
