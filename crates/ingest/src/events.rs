//! The event consumer: workers publish job events in batches; ingest applies each batch to the
//! ledger in one transaction ([`clipfleet_ledger::Ledger::apply_events`] is idempotent and
//! order-independent, so a redelivered or reordered batch is harmless) and acks it only then.
//! A batch the ledger refuses as invalid is dead-lettered; one that fails because the database
//! is away is retried after a delay. Broker trouble backs off and never ends the loop.

use std::sync::Arc;
use std::time::Duration;

use clipfleet_broker::{BrokerErrorKind, Lease, Nack, QueueRef, Receive, receive_decoded};
use clipfleet_proto::EventBatch;
use tokio::sync::watch;

use crate::metrics::OutcomeLabel;
use crate::service::State;

/// How long a received batch stays ours before the broker hands it out again.
const LEASE: Duration = Duration::from_secs(60);
/// How long one receive waits for a batch.
const WAIT: Duration = Duration::from_secs(1);
/// Longest pause after broker failures.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Delay before a batch the database could not take is offered again.
const RETRY_DELAY: Duration = Duration::from_secs(2);

pub(crate) async fn consume(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let broker = state.deps.broker.clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let received = tokio::select! {
            received = receive_decoded::<EventBatch>(
                &*broker,
                &QueueRef::Events,
                Receive::new(state.options.event_batch, LEASE, WAIT),
            ) => received,
            _ = shutdown.changed() => return,
        };
        let deliveries = match received {
            Ok(deliveries) => {
                backoff = Duration::from_millis(100);
                deliveries
            }
            Err(err) => {
                tracing::warn!(error = %err, ?backoff, "receiving job events failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut done: Vec<Lease> = Vec::with_capacity(deliveries.len());
        for (delivery, batch) in deliveries {
            if apply(&state, &delivery.lease, &batch).await {
                done.push(delivery.lease);
            }
        }
        if let Err(err) = broker.ack(&done).await {
            // The batches come back and are applied again: harmless.
            tracing::warn!(error = %err, "acking applied event batches failed");
        }
    }
}

/// Applies one batch; true when it should be acked.
async fn apply(state: &State, lease: &Lease, batch: &EventBatch) -> bool {
    let metrics = &state.metrics;
    match state
        .deps
        .ledger
        .apply_events(batch, state.config.retention.output_ttl)
        .await
    {
        Ok(outcome) => {
            for (label, count) in [
                ("applied", outcome.applied),
                ("unchanged", outcome.unchanged),
                ("unknown_job", outcome.unknown_job),
                ("unknown_kind", outcome.unknown_kind),
            ] {
                metrics
                    .events
                    .get_or_create(&OutcomeLabel { outcome: label })
                    .inc_by(count as u64);
            }
            true
        }
        Err(err) if err.is_retryable() => {
            metrics.event_failures.inc();
            tracing::warn!(error = %err, "the ledger could not take an event batch; retrying it later");
            if let Err(err) = state
                .deps
                .broker
                .nack(lease, Nack::RetryAfter(RETRY_DELAY))
                .await
            {
                tracing::warn!(error = %err, "could not hand an event batch back; its lease will lapse");
            }
            false
        }
        Err(err) => {
            metrics.event_failures.inc();
            tracing::error!(error = %err, "dead-lettering an event batch the ledger refuses");
            match state.deps.broker.dead_letter(lease, "invalid_events").await {
                Ok(()) => false,
                // A queue without dead letters: keeping the batch would block nothing but
                // would be retried forever; drop it loudly.
                Err(dl) if dl.kind == BrokerErrorKind::Unsupported => true,
                Err(dl) => {
                    tracing::warn!(error = %dl, "dead-lettering failed; the batch comes back");
                    false
                }
            }
        }
    }
}
