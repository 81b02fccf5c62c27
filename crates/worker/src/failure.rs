//! How a job that cannot go on ends. Every failure is classified once, here: terminal (no
//! retry can help: the photo is deleted at once, a `failed` event says why, the job is acked)
//! or transient (a dependency failed: a delayed retry, the dead letters after the last attempt).

use clipfleet_broker::{Delivery, Nack};
use clipfleet_media::MediaError;
use clipfleet_proto::{ErrorCode, EventKind, GenerateJob};
use clipfleet_store::{StoreError, StoreErrorKind};
use tracing::{Instrument, info_span, warn};

use crate::Shared;
use crate::job::{Outcome, event};

/// Why a job stopped.
#[derive(Debug)]
pub(crate) enum JobError {
    /// No retry can help: fail the job.
    Terminal(ErrorCode, String),
    /// A dependency failed: retry later.
    Transient(ErrorCode, String),
}

pub(crate) fn store_error(what: &str, err: StoreError) -> JobError {
    let message = format!("{what}: {err}");
    match err.kind() {
        StoreErrorKind::NotFound => JobError::Terminal(ErrorCode::NotFound, message),
        StoreErrorKind::Corrupt | StoreErrorKind::KeyUnavailable => {
            JobError::Terminal(ErrorCode::BadImage, message)
        }
        _ if err.is_retryable() => JobError::Transient(ErrorCode::Unavailable, message),
        _ => JobError::Terminal(ErrorCode::Internal, message),
    }
}

pub(crate) fn media_error(err: MediaError) -> JobError {
    let code = err.code();
    if code.is_retryable() {
        JobError::Transient(code, err.to_string())
    } else {
        JobError::Terminal(code, err.to_string())
    }
}

/// Terminal failure: the photo goes at once, the ledger hears why, the job is acked.
pub(crate) async fn fail(
    shared: &Shared,
    delivery: &Delivery,
    job: &GenerateJob,
    code: ErrorCode,
    message: &str,
) -> Outcome {
    warn!(job_id = %job.job_id, %code, message, "job failed");
    let deleted = match shared.objects.for_job(job) {
        Ok(objects) => {
            objects
                .delete_after_failure()
                .instrument(info_span!("delete photo"))
                .await
        }
        // No object of the job can be named (never for a job that decoded): none to delete.
        Err(_) => Ok(()),
    };
    if let Err(err) = deleted {
        warn!(job_id = %job.job_id, error = %err, "photo not deleted; retrying the job later");
        return retry(
            shared,
            delivery,
            job,
            ErrorCode::Unavailable,
            "photo delete failed",
        )
        .await;
    }
    shared.telemetry.photo_deleted(job.submitted_at);
    let message: String = message.chars().take(512).collect();
    let events = vec![
        event(
            shared,
            job,
            EventKind::Failed {
                code,
                message,
                retryable: false,
            },
        ),
        event(shared, job, EventKind::InputDeleted),
    ];
    if shared.events.send(events).await.is_err() {
        // Not acked: redelivered, and the redelivery fails the same way and reports it.
        return Outcome::Abandoned;
    }
    match shared
        .broker
        .ack(std::slice::from_ref(&delivery.lease))
        .await
    {
        Ok(()) => Outcome::Failed(code),
        Err(_) => Outcome::Abandoned,
    }
}

/// Transient failure: back to the broker after a growing delay, or to the dead letters once
/// the attempts are used up (the photo stays for a replay; the janitor's age limit bounds it).
pub(crate) async fn retry(
    shared: &Shared,
    delivery: &Delivery,
    job: &GenerateJob,
    code: ErrorCode,
    message: &str,
) -> Outcome {
    let message: String = message.chars().take(512).collect();
    let last = delivery.retries + 1 >= shared.config.max_attempts;
    let _ = shared
        .events
        .send(vec![event(
            shared,
            job,
            EventKind::Failed {
                code,
                message: message.clone(),
                retryable: !last,
            },
        )])
        .await;
    if last {
        warn!(job_id = %job.job_id, %code, message, "out of attempts: dead-lettering");
        return match shared
            .broker
            .dead_letter(&delivery.lease, code.as_str())
            .await
        {
            Ok(()) => Outcome::DeadLettered,
            Err(_) => Outcome::Abandoned,
        };
    }
    let delay = shared.config.retry_base_delay * 2u32.saturating_pow(delivery.retries.min(10));
    warn!(job_id = %job.job_id, %code, message, delay_ms = delay.as_millis() as u64, "retrying later");
    match shared
        .broker
        .nack(&delivery.lease, Nack::RetryAfter(delay))
        .await
    {
        Ok(()) => Outcome::Retried,
        Err(_) => Outcome::Abandoned,
    }
}
