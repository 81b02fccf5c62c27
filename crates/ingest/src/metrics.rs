//! Ingest's metrics, registered once per process (`/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabel {
    pub code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PoolLabel {
    pub pool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Every metric ingest exports.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Jobs accepted (202), by pool.
    pub accepted: Family<PoolLabel, Counter>,
    /// Submissions refused, by error code.
    pub refused: Family<CodeLabel, Counter>,
    /// Seconds from request to answer for `POST /v1/jobs`.
    pub submit_seconds: Histogram,
    /// Uploads being received now.
    pub uploads_in_flight: Gauge,
    /// Photo bytes received.
    pub upload_bytes: Counter,
    /// Job events applied to the ledger, by outcome (applied, unchanged, unknown_job, …).
    pub events: Family<OutcomeLabel, Counter>,
    /// Event batches the consumer could not apply (retried or dead-lettered).
    pub event_failures: Counter,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            accepted: Family::default(),
            refused: Family::default(),
            submit_seconds: Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            uploads_in_flight: Gauge::default(),
            upload_bytes: Counter::default(),
            events: Family::default(),
            event_failures: Counter::default(),
        };
        let ingest = registry.sub_registry_with_prefix("ingest");
        ingest.register("jobs_accepted", "Jobs accepted", metrics.accepted.clone());
        ingest.register(
            "submissions_refused",
            "Submissions refused, by error code",
            metrics.refused.clone(),
        );
        ingest.register(
            "submit_duration_seconds",
            "Time from request to answer of POST /v1/jobs",
            metrics.submit_seconds.clone(),
        );
        ingest.register(
            "uploads_in_flight",
            "Uploads being received",
            metrics.uploads_in_flight.clone(),
        );
        ingest.register(
            "upload_bytes",
            "Photo bytes received",
            metrics.upload_bytes.clone(),
        );
        ingest.register(
            "job_events",
            "Job events applied to the ledger, by outcome",
            metrics.events.clone(),
        );
        ingest.register(
            "job_event_batch_failures",
            "Event batches that could not be applied (retried or dead-lettered)",
            metrics.event_failures.clone(),
        );
        metrics
    }
}
