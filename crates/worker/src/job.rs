//! One job, from delivery to ack: checks (deadline, erased account, video already there),
//! fetch (get, unseal, verify, decode, fit), inference (batched by the engine), encode, store,
//! then finish — `succeeded`, delete the photo, `input_deleted`, ack. Every failure is
//! classified once: terminal (photo deleted, `failed` event, ack), or transient (delayed retry,
//! dead letter after the last attempt).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clipfleet_broker::{Delivery, LeaseHeartbeat, Nack};
use clipfleet_infer::{GenerateRequest, InferErrorKind, RgbFrame};
use clipfleet_media::{FitMode, MediaError, RgbImage, decode, fit};
use clipfleet_proto::{
    ErrorCode, EventKind, GenerateJob, JobEvent, Motion, Sha256Hex, StageDurations, Timestamp,
};
use clipfleet_store::{ObjectKey, StoreError, StoreErrorKind, body_from_bytes, read_to_end};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::Shared;

/// How a job ended, for the report and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The video is stored and the photo deleted.
    Succeeded,
    /// Ended without a video; the photo is deleted.
    Failed(ErrorCode),
    /// Handed back for a delayed retry.
    Retried,
    /// Out of attempts: moved to the dead letters.
    DeadLettered,
    /// The lease was lost (or the broker unreachable at the end): someone else finishes it.
    Abandoned,
}

/// Why a job stopped.
#[derive(Debug)]
enum JobError {
    /// No retry can help: fail the job.
    Terminal(ErrorCode, String),
    /// A dependency failed: retry later.
    Transient(ErrorCode, String),
}

fn store_error(what: &str, err: StoreError) -> JobError {
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

fn media_error(err: MediaError) -> JobError {
    let code = err.code();
    if code.is_retryable() {
        JobError::Transient(code, err.to_string())
    } else {
        JobError::Terminal(code, err.to_string())
    }
}

fn ms(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Runs one job to its outcome. Never panics on bad input; never acks before the outcome is
/// durable.
pub(crate) async fn process(shared: Arc<Shared>, delivery: Delivery, job: GenerateJob) -> Outcome {
    let heartbeat = LeaseHeartbeat::start(
        shared.broker.clone(),
        delivery.lease.clone(),
        shared.config.lease,
    );
    let outcome = match run(&shared, &delivery, &job).await {
        Ok(outcome) => outcome,
        Err(JobError::Terminal(code, message)) => {
            fail(&shared, &delivery, &job, code, &message).await
        }
        Err(JobError::Transient(code, message)) => {
            retry(&shared, &delivery, &job, code, &message).await
        }
    };
    drop(heartbeat);
    outcome
}

fn event(shared: &Shared, job: &GenerateJob, kind: EventKind) -> JobEvent {
    JobEvent {
        job_id: job.job_id,
        at: now(),
        worker: shared.config.worker_id.clone(),
        event: kind,
    }
}

async fn run(shared: &Shared, delivery: &Delivery, job: &GenerateJob) -> Result<Outcome, JobError> {
    let input = ObjectKey::input(&job.account_id, job.job_id);
    let output = ObjectKey::output(&job.account_id, job.job_id);
    if now() > job.deadline {
        return Err(JobError::Terminal(
            ErrorCode::Expired,
            "deadline passed before the job ran".into(),
        ));
    }
    match shared
        .store
        .head(&ObjectKey::tombstone(&job.account_id))
        .await
    {
        Ok(_) => {
            return Err(JobError::Terminal(
                ErrorCode::AccountErased,
                "account erased while the job waited".into(),
            ));
        }
        Err(err) if err.kind() == StoreErrorKind::NotFound => {}
        Err(err) => return Err(store_error("tombstone check", err)),
    }
    // Redelivered after the video was stored: only finish.
    if let Ok(meta) = shared.store.head(&output).await {
        info!(job_id = %job.job_id, "video already stored: finishing a redelivered job");
        return finish(
            shared,
            delivery,
            job,
            &input,
            &output,
            meta.size,
            StageDurations::default(),
        )
        .await;
    }
    let spec = shared
        .models
        .get(&(job.model.name.clone(), job.model.version.clone()))
        .ok_or_else(|| {
            JobError::Terminal(
                ErrorCode::UnknownModel,
                format!(
                    "{}@{} is not served by this pool",
                    job.model.name, job.model.version
                ),
            )
        })?;
    let motion = Motion::KNOWN
        .iter()
        .position(|m| *m == job.params.motion)
        .ok_or_else(|| {
            JobError::Terminal(ErrorCode::InvalidParams, "unknown motion preset".into())
        })?;
    let fps = u32::from(job.params.fps);
    let frames = u32::from(job.params.frames);
    if !(1..=120).contains(&fps) || !(1..=1024).contains(&frames) {
        return Err(JobError::Terminal(
            ErrorCode::InvalidParams,
            "fps or frames out of range".into(),
        ));
    }
    // Like progress, `started` is informative: a lost one is superseded by the outcome, so the
    // job does not wait for its confirm.
    shared
        .events
        .post(vec![event(shared, job, EventKind::Started)]);
    let mut stages = StageDurations {
        queue_wait_ms: ms(now().saturating_since(job.submitted_at)),
        ..StageDurations::default()
    };

    let started = Instant::now();
    let body = shared
        .store
        .get(&input)
        .await
        .map_err(|err| store_error("get photo", err))?;
    let photo = read_to_end(body, shared.config.max_photo_bytes)
        .await
        .map_err(|err| store_error("read photo", err))?;
    let digest: [u8; 32] = Sha256::digest(&*photo).into();
    if Sha256Hex::from_digest(&digest) != job.input.sha256 {
        return Err(JobError::Terminal(
            ErrorCode::BadImage,
            "photo does not match its sha256".into(),
        ));
    }
    let (limits, width, height) = (
        shared.config.intake_limits,
        spec.input.width,
        spec.input.height,
    );
    let fitted = tokio::task::spawn_blocking(move || -> Result<RgbImage, MediaError> {
        let image = decode(&photo, &limits)?;
        drop(photo); // the encoded photo is zeroized as soon as it is decoded
        fit(&image, width, height, FitMode::Cover)
    })
    .await
    .map_err(|err| JobError::Transient(ErrorCode::Internal, format!("decode task: {err}")))?
    .map_err(media_error)?;
    stages.fetch_ms = ms(started.elapsed());
    shared
        .events
        .post(vec![event(shared, job, EventKind::Progress { pct: 10 })]);

    let started = Instant::now();
    let request = GenerateRequest {
        model: spec.name.clone(),
        version: spec.version.clone(),
        image: RgbFrame::new(fitted.width, fitted.height, fitted.data)
            .map_err(|err| JobError::Terminal(ErrorCode::Internal, err.to_string()))?,
        params: [
            motion as f32,
            0.7,
            (job.params.seed % (1 << 24)) as f32,
            0.0,
        ],
        frames,
    };
    let video = shared
        .engine
        .generate(request)
        .await
        .map_err(|err| match err.kind {
            InferErrorKind::OutOfMemory => JobError::Transient(ErrorCode::Oom, err.message),
            InferErrorKind::InvalidInput => {
                JobError::Terminal(ErrorCode::InvalidParams, err.message)
            }
            InferErrorKind::ModelError | InferErrorKind::ModelLoad => {
                JobError::Terminal(ErrorCode::ModelError, err.message)
            }
        })?;
    stages.infer_ms = ms(started.elapsed());
    shared
        .events
        .post(vec![event(shared, job, EventKind::Progress { pct: 80 })]);

    let started = Instant::now();
    let encoder = shared.encoder.clone();
    let frames: Vec<RgbImage> = video
        .into_iter()
        .map(|f| RgbImage {
            width: f.width,
            height: f.height,
            data: f.data,
        })
        .collect();
    let mp4 = tokio::task::spawn_blocking(move || encoder.encode(&frames, fps))
        .await
        .map_err(|err| JobError::Transient(ErrorCode::Internal, format!("encode task: {err}")))?
        .map_err(media_error)?;
    stages.encode_ms = ms(started.elapsed());

    let started = Instant::now();
    let size = mp4.len() as u64;
    shared
        .store
        .put(&output, body_from_bytes(mp4))
        .await
        .map_err(|err| store_error("store video", err))?;
    stages.store_ms = ms(started.elapsed());
    finish(shared, delivery, job, &input, &output, size, stages).await
}

/// Publishes an event the job must not go on without (its confirm is awaited).
async fn report(shared: &Shared, job: &GenerateJob, kind: EventKind) -> Result<(), JobError> {
    shared
        .events
        .send(vec![event(shared, job, kind)])
        .await
        .map_err(|err| JobError::Transient(ErrorCode::Unavailable, err.to_string()))
}

/// The video is durable: say so, delete the photo, say that, ack.
async fn finish(
    shared: &Shared,
    delivery: &Delivery,
    job: &GenerateJob,
    input: &ObjectKey,
    output: &ObjectKey,
    size: u64,
    stages: StageDurations,
) -> Result<Outcome, JobError> {
    shared.telemetry.stages(&stages);
    let succeeded = EventKind::Succeeded {
        output_key: output.as_str().to_owned(),
        size,
        stages,
    };
    report(shared, job, succeeded).await?;
    shared
        .store
        .delete(input)
        .await
        .map_err(|err| store_error("delete photo", err))?;
    report(shared, job, EventKind::InputDeleted).await?;
    if let Err(err) = shared
        .broker
        .ack(std::slice::from_ref(&delivery.lease))
        .await
    {
        // The video exists: a redelivery only finishes.
        warn!(job_id = %job.job_id, error = %err, "ack failed after the job finished");
        return Ok(Outcome::Abandoned);
    }
    Ok(Outcome::Succeeded)
}

/// Terminal failure: the photo goes at once, the ledger hears why, the job is acked.
async fn fail(
    shared: &Shared,
    delivery: &Delivery,
    job: &GenerateJob,
    code: ErrorCode,
    message: &str,
) -> Outcome {
    warn!(job_id = %job.job_id, %code, message, "job failed");
    let input = ObjectKey::input(&job.account_id, job.job_id);
    if let Err(err) = shared.store.delete(&input).await {
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
async fn retry(
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
