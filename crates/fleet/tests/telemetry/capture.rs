//! The process's subscriber for these tests: JSON log lines (TRACE from our crates, DEBUG from
//! the rest) into a buffer, and clipfleet's spans through the same OpenTelemetry layer the
//! services install, into an in-memory exporter (exported as each span ends).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use clipfleet_telemetry::opentelemetry_sdk::trace::{
    InMemorySpanExporter, SdkTracerProvider, SpanData,
};
use clipfleet_telemetry::{otel_layer, resource};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Everything the fleet logged and traced in this process.
pub struct Capture {
    logs: Arc<Mutex<Vec<u8>>>,
    spans: InMemorySpanExporter,
    _provider: SdkTracerProvider,
}

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// The capture, installed as the global subscriber on first use.
    pub fn global() -> &'static Capture {
        static CAPTURE: OnceLock<Capture> = OnceLock::new();
        CAPTURE.get_or_init(|| {
            let logs = Arc::new(Mutex::new(Vec::new()));
            let spans = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(spans.clone())
                .with_resource(resource("clipfleet-e2e"))
                .build();
            let writer = Buffer(logs.clone());
            let subscriber = tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_writer(move || writer.clone())
                        .with_filter(EnvFilter::new("debug,clipfleet=trace")),
                )
                .with(otel_layer(&provider, "clipfleet-e2e"));
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            Capture {
                logs,
                spans,
                _provider: provider,
            }
        })
    }

    /// Every log line so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Every finished span so far.
    pub fn spans(&self) -> Vec<SpanData> {
        self.spans.get_finished_spans().unwrap_or_default()
    }

    /// Waits (10 s at most) for a finished span named `name` whose `job_id` is `job_id`.
    pub async fn wait_for_span(&self, name: &str, job_id: &str) -> anyhow::Result<SpanData> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(span) = self
                .spans()
                .into_iter()
                .find(|span| span.name == name && attribute(span, "job_id") == Some(job_id.into()))
            {
                return Ok(span);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no finished {name:?} span for job {job_id}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A span's attribute as text.
pub fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}
