//! The event consumer: workers publish job events in batches; ingest applies the batches of one
//! receive to the ledger in one transaction ([`clipfleet_ledger::Ledger::apply_events`] is idempotent and
//! order-independent, so a redelivered or reordered batch is harmless) and acks it only then.
//! A batch the ledger refuses as invalid is dead-lettered; one that fails because the database
//! is away is retried after a delay. Broker trouble backs off and never ends the loop.

use std::sync::Arc;
use std::time::Duration;

use clipfleet_broker::{
    BrokerErrorKind, Delivery, Lease, Nack, QueueRef, Receive, receive_decoded,
};
use clipfleet_ledger::ApplyOutcome;
use clipfleet_proto::{EventBatch, MAX_EVENTS_PER_BATCH};
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
        for group in groups(deliveries) {
            apply_group(&state, group, &mut done).await;
        }
        if let Err(err) = broker.ack(&done).await {
            // The batches come back and are applied again: harmless.
            tracing::warn!(error = %err, "acking applied event batches failed");
        }
    }
}

/// The received batches in groups of at most [`MAX_EVENTS_PER_BATCH`] events, in order: each
/// group goes to the ledger as one transaction (group commit: under load a receive holds many
/// workers' batches, and a transaction per batch was most of PostgreSQL's work per job).
fn groups(deliveries: Vec<(Delivery, EventBatch)>) -> Vec<Vec<(Delivery, EventBatch)>> {
    let mut groups: Vec<Vec<(Delivery, EventBatch)>> = Vec::new();
    let mut events = 0;
    for (delivery, batch) in deliveries {
        let fits = events + batch.events.len() <= MAX_EVENTS_PER_BATCH;
        match groups.last_mut() {
            Some(group) if fits => {
                events += batch.events.len();
                group.push((delivery, batch));
            }
            _ => {
                events = batch.events.len();
                groups.push(vec![(delivery, batch)]);
            }
        }
    }
    groups
}

/// Applies a group of batches in one transaction and adds the leases to ack to `done`. The
/// ledger's application is idempotent and order-independent, so the merged batch ends in the
/// same rows as its parts one by one. When the ledger refuses the merged batch as invalid, each
/// batch is applied alone, so only the bad one is dead-lettered; when the database is away, each
/// is handed back for a retry.
async fn apply_group(state: &State, group: Vec<(Delivery, EventBatch)>, done: &mut Vec<Lease>) {
    if group.len() == 1 {
        for (delivery, batch) in group {
            if apply(state, &delivery.lease, &batch).await {
                done.push(delivery.lease);
            }
        }
        return;
    }
    let merged = EventBatch {
        v: group[0].1.v,
        events: group
            .iter()
            .flat_map(|(_, batch)| batch.events.iter().cloned())
            .collect(),
    };
    match state
        .deps
        .ledger
        .apply_events(&merged, state.config.retention.output_ttl)
        .await
    {
        Ok(outcome) => {
            count_outcome(state, &outcome);
            done.extend(group.into_iter().map(|(delivery, _)| delivery.lease));
        }
        Err(err) if err.is_retryable() => {
            state.metrics.event_failures.inc();
            tracing::warn!(error = %err, batches = group.len(), "the ledger could not take event batches; retrying them later");
            for (delivery, _) in &group {
                retry_later(state, &delivery.lease).await;
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, batches = group.len(), "the ledger refused merged event batches; applying them one by one");
            for (delivery, batch) in group {
                if apply(state, &delivery.lease, &batch).await {
                    done.push(delivery.lease);
                }
            }
        }
    }
}

fn count_outcome(state: &State, outcome: &ApplyOutcome) {
    for (label, count) in [
        ("applied", outcome.applied),
        ("unchanged", outcome.unchanged),
        ("unknown_job", outcome.unknown_job),
        ("unknown_kind", outcome.unknown_kind),
    ] {
        state
            .metrics
            .events
            .get_or_create(&OutcomeLabel { outcome: label })
            .inc_by(count as u64);
    }
}

/// Hands a batch the database could not take back to the broker, offered again after a delay.
async fn retry_later(state: &State, lease: &Lease) {
    if let Err(err) = state
        .deps
        .broker
        .nack(lease, Nack::RetryAfter(RETRY_DELAY))
        .await
    {
        tracing::warn!(error = %err, "could not hand an event batch back; its lease will lapse");
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
            count_outcome(state, &outcome);
            true
        }
        Err(err) if err.is_retryable() => {
            metrics.event_failures.inc();
            tracing::warn!(error = %err, "the ledger could not take an event batch; retrying it later");
            retry_later(state, lease).await;
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
