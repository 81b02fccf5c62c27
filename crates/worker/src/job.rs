//! One job, from delivery to ack: checks (deadline, erased account, video already there),
//! fetch (get, unseal, verify, decode, fit), inference (batched by the engine), encode, store,
//! then finish — `succeeded`, delete the photo, `input_deleted`, ack. A failure ends the job
//! through `failure` (terminal or transient, classified once).
//!
//! Each job runs in a `job` span whose parent is the publishing span in ingest (W3C context
//! from the message headers, or the body's `trace`), with a child span per stage: one trace
//! from the upload to the last event. Spans name the account by its pseudonym only.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clipfleet_broker::{Delivery, LeaseHeartbeat};
use clipfleet_infer::{
    Adapter, AdapterScope, DetectRequest, GenerateRequest, InferError, InferErrorKind, ModelSpec,
    PARAMS_LEN, PersonalizeRequest, RgbFrame,
};
use clipfleet_media::{
    MediaError, RgbImage, STILL_JPEG_QUALITY, decode, decode_within, encode_jpeg, fit_around,
    fit_within,
};
use clipfleet_proto::{
    Aspect, ErrorCode, EventKind, GenerateJob, JobEvent, JobKind, Motion, SessionRef, Sha256Hex,
    StageDurations, Timestamp,
};
use clipfleet_store::{ByteStream, body_from_bytes, read_to_end};
use clipfleet_telemetry::{pseudonym, set_parent_from_headers};
use sha2::{Digest, Sha256};
use tracing::field::Empty;
use tracing::{Instrument, info, info_span, warn};

use crate::Shared;
use crate::failure::{JobError, fail, media_error, retry, store_error};
use crate::framing;
use crate::objects::JobObjects;
use crate::submit::job_kind;

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

impl Outcome {
    /// The outcome as a metric label and span attribute.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Abandoned => "abandoned",
        }
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
    let span = info_span!(
        "job",
        otel.name = "process job",
        otel.kind = "consumer",
        job_id = %job.job_id,
        account = %pseudonym(job.account_id.as_str()),
        pool = %job.pool,
        model = %format_args!("{}@{}", job.model.name, job.model.version),
        attempt = delivery.retries + 1,
        delivery = delivery.delivery_count,
        queue_wait_ms = Empty,
        outcome = Empty,
        error_code = Empty,
        otel.status_code = Empty,
    );
    set_parent_from_headers(&span, &delivery.headers, job.trace.as_deref());
    let outcome = settle(shared, delivery, job).instrument(span.clone()).await;
    span.record("outcome", outcome.as_str());
    match outcome {
        Outcome::Failed(code) => {
            span.record("error_code", code.as_str());
            span.record("otel.status_code", "ERROR");
        }
        Outcome::DeadLettered => {
            span.record("otel.status_code", "ERROR");
        }
        _ => {}
    }
    outcome
}

async fn settle(shared: Arc<Shared>, delivery: Delivery, job: GenerateJob) -> Outcome {
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

pub(crate) fn event(shared: &Shared, job: &GenerateJob, kind: EventKind) -> JobEvent {
    JobEvent {
        job_id: job.job_id,
        at: now(),
        worker: shared.config.worker_id.clone(),
        event: kind,
    }
}

async fn run(shared: &Shared, delivery: &Delivery, job: &GenerateJob) -> Result<Outcome, JobError> {
    tracing::debug!("job received");
    // The only objects this job can touch (its photo, its output, its account's tombstone, its
    // session's objects).
    let objects = shared
        .objects
        .for_job(job)
        .map_err(|err| JobError::Terminal(ErrorCode::InvalidParams, err.to_string()))?;
    if now() > job.deadline {
        return Err(JobError::Terminal(
            ErrorCode::Expired,
            "deadline passed before the job ran".into(),
        ));
    }
    if objects
        .account_erased()
        .await
        .map_err(|err| store_error("tombstone check", err))?
    {
        return Err(JobError::Terminal(
            ErrorCode::AccountErased,
            "account erased while the job waited".into(),
        ));
    }
    if let Some(session) = &job.session
        && session_over(&objects, session).await?
    {
        return Err(JobError::Terminal(
            ErrorCode::SessionEnded,
            "the session ended before the job ran".into(),
        ));
    }
    // Redelivered after the output was stored: only finish.
    if let Some(size) = objects.stored_output().await {
        info!(job_id = %job.job_id, "output already stored: finishing a redelivered job");
        return finish(
            shared,
            delivery,
            job,
            &objects,
            size,
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
    let served = job_kind(spec);
    let kind_ok = match job.kind {
        // A session's training: the model must name the adapter it trains.
        JobKind::Personalize => spec.adapter.is_some(),
        kind => kind == served,
    };
    if !kind_ok {
        return Err(JobError::Terminal(
            ErrorCode::InvalidParams,
            format!(
                "a {} job for {}, which makes a {}",
                job.kind,
                spec.key(),
                served
            ),
        ));
    }
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
    tracing::Span::current().record("queue_wait_ms", stages.queue_wait_ms);

    if job.kind == JobKind::Personalize {
        return personalize(shared, delivery, job, &objects, spec, motion, stages).await;
    }
    // A job of a session runs through the session's adapter of its model.
    let adapter = match &job.session {
        Some(session) => Some(Arc::new(
            session_adapter(job, session, &objects, spec).await?,
        )),
        None => None,
    };

    let started = Instant::now();
    // The video's shape: the named bucket, or (auto) the one nearest the decoded photo.
    let aspect = match job.params.aspect {
        Aspect::Auto => None,
        Aspect::Unknown => {
            return Err(JobError::Terminal(
                ErrorCode::InvalidParams,
                "aspect unknown to this worker".into(),
            ));
        }
        named => Some(spec.aspect_size(named.as_str()).ok_or_else(|| {
            JobError::Terminal(
                ErrorCode::InvalidParams,
                format!("model {} renders no {} video", spec.key(), named.as_str()),
            )
        })?),
    };
    let photo = objects
        .photo(0)
        .await
        .map_err(|err| store_error("get photo", err))?;
    let (fitted, focus) = fetch(shared, photo, &job.input.sha256, spec, aspect)
        .instrument(info_span!("fetch"))
        .await?;
    stages.fetch_ms = ms(started.elapsed());
    shared
        .events
        .post(vec![event(shared, job, EventKind::Progress { pct: 10 })]);

    let started = Instant::now();
    let request = GenerateRequest {
        model: spec.name.clone(),
        version: spec.version.clone(),
        image: frame_of(fitted)?,
        params: render_params(motion, job.params.seed, focus),
        frames,
        adapter,
    };
    let video = shared
        .engine
        .generate(request)
        .instrument(info_span!("infer"))
        .await
        .map_err(infer_error)?;
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
    let still = served == JobKind::Image;
    let encoded = if still {
        // An image job: its one frame as a JPEG, written from pixels alone (no metadata). On the
        // blocking pool: a 512x512 frame takes ~15 ms, too long to hold a runtime thread.
        let frame = frames.into_iter().next().ok_or_else(|| {
            JobError::Terminal(ErrorCode::ModelError, "the model rendered no frame".into())
        })?;
        tokio::task::spawn_blocking(move || encode_jpeg(&frame, STILL_JPEG_QUALITY))
            .instrument(info_span!("encode"))
            .await
            .map_err(|err| {
                JobError::Transient(ErrorCode::Internal, format!("encode task: {err}"))
            })?
    } else if encoder.is_quick(&frames) {
        // Cheaper in place than handing it to the blocking pool and back (two thread wake-ups).
        info_span!("encode").in_scope(|| encoder.encode(&frames, fps))
    } else {
        tokio::task::spawn_blocking(move || encoder.encode(&frames, fps))
            .instrument(info_span!("encode"))
            .await
            .map_err(|err| {
                JobError::Transient(ErrorCode::Internal, format!("encode task: {err}"))
            })?
    }
    .map_err(media_error)?;
    stages.encode_ms = ms(started.elapsed());

    let started = Instant::now();
    let size = encoded.len() as u64;
    let (stored, span) = if still {
        ("store image", info_span!("store image", image_bytes = size))
    } else {
        ("store video", info_span!("store video", video_bytes = size))
    };
    objects
        .put_output(body_from_bytes(encoded))
        .instrument(span)
        .await
        .map_err(|err| store_error(stored, err))?;
    stages.store_ms = ms(started.elapsed());
    finish(shared, delivery, job, &objects, size, stages).await
}

/// The model's params for a job: motion preset, strength, seed, reserved, focus x and y.
fn render_params(motion: usize, seed: u64, (focus_x, focus_y): (f32, f32)) -> [f32; PARAMS_LEN] {
    [
        motion as f32,
        0.7,
        (seed % (1 << 24)) as f32,
        0.0,
        focus_x,
        focus_y,
    ]
}

/// Whether the job's session is over: its TTL passed, or its `ended` marker is there.
async fn session_over(objects: &JobObjects, session: &SessionRef) -> Result<bool, JobError> {
    if now() >= session.expires_at {
        return Ok(true);
    }
    objects
        .session_ended()
        .await
        .map_err(|err| store_error("session check", err))
}

/// Whom the job's session adapter belongs to: the job's own account, session and model.
fn adapter_scope(job: &GenerateJob, session: &SessionRef) -> AdapterScope {
    AdapterScope {
        account: job.account_id.to_string(),
        session: session.id.to_string(),
        model: job.model.name.clone(),
        version: job.model.version.clone(),
    }
}

/// The session's adapter of the job's model, checked to be this account's, session's and
/// model's: none trained yet is `session_not_ready`, another scope `adapter_mismatch`.
async fn session_adapter(
    job: &GenerateJob,
    session: &SessionRef,
    objects: &JobObjects,
    spec: &ModelSpec,
) -> Result<Adapter, JobError> {
    if spec.adapter.is_none() {
        return Err(JobError::Terminal(
            ErrorCode::InvalidParams,
            format!("model {} takes no personalised adapter", spec.key()),
        ));
    }
    let bytes = objects
        .adapter()
        .instrument(info_span!("load adapter"))
        .await
        .map_err(|err| store_error("get adapter", err))?
        .ok_or_else(|| {
            JobError::Terminal(
                ErrorCode::SessionNotReady,
                "the session has no adapter of this model".into(),
            )
        })?;
    Adapter::from_bytes(&bytes, &adapter_scope(job, session)).map_err(infer_error)
}

/// A session's training: its photos fetched and framed like a job's (at the adapter's training
/// size), the adapter trained on the engine, written sealed under the session's prefix unless
/// the session ended meanwhile (checked before and after the write: a session that ends during
/// it gets no adapter), then finished like any job (its photos deleted).
async fn personalize(
    shared: &Shared,
    delivery: &Delivery,
    job: &GenerateJob,
    objects: &JobObjects,
    spec: &ModelSpec,
    motion: usize,
    mut stages: StageDurations,
) -> Result<Outcome, JobError> {
    let (Some(session), Some(adapter_spec)) = (&job.session, spec.adapter) else {
        return Err(JobError::Terminal(
            ErrorCode::InvalidParams,
            "a personalize job needs its session and a model with an adapter".into(),
        ));
    };
    let side = adapter_spec.train_size;
    let started = Instant::now();
    let mut photos = Vec::with_capacity(session.photos.len());
    let mut params = Vec::with_capacity(session.photos.len());
    for (index, photo) in session.photos.iter().enumerate() {
        let body = objects
            .photo(index)
            .await
            .map_err(|err| store_error("get photo", err))?;
        let (fitted, focus) = fetch(shared, body, &photo.sha256, spec, Some((side, side)))
            .instrument(info_span!("fetch", photo = index))
            .await?;
        photos.push(frame_of(fitted)?);
        params.push(render_params(motion, job.params.seed, focus));
    }
    stages.fetch_ms = ms(started.elapsed());
    shared
        .events
        .post(vec![event(shared, job, EventKind::Progress { pct: 10 })]);

    let started = Instant::now();
    let request = PersonalizeRequest {
        model: spec.name.clone(),
        version: spec.version.clone(),
        photos,
        params,
        scope: adapter_scope(job, session),
        seed: job.params.seed,
    };
    let (adapter, report) = shared
        .engine
        .personalize(request)
        .instrument(info_span!("train"))
        .await
        .map_err(infer_error)?;
    stages.infer_ms = ms(started.elapsed());
    info!(
        job_id = %job.job_id,
        photos = report.photos,
        steps = report.steps,
        loss_first = report.loss_first,
        loss_last = report.loss_last,
        train_ms = stages.infer_ms,
        "session adapter trained"
    );
    let bytes = adapter.to_bytes();
    drop(adapter);

    let started = Instant::now();
    if session_over(objects, session).await? {
        return Err(JobError::Terminal(
            ErrorCode::SessionEnded,
            "the session ended while its adapter trained".into(),
        ));
    }
    let size = bytes.len() as u64;
    objects
        .put_output(body_from_bytes(bytes))
        .instrument(info_span!("store adapter", adapter_bytes = size))
        .await
        .map_err(|err| store_error("store adapter", err))?;
    if session_over(objects, session).await? {
        // Ended while the adapter was written: take it back (a failure here retries, and the
        // retry fails `session_ended`, whose clean-up deletes it; the janitor is the backstop).
        objects
            .delete_output()
            .await
            .map_err(|err| store_error("delete adapter", err))?;
        return Err(JobError::Terminal(
            ErrorCode::SessionEnded,
            "the session ended while its adapter was written".into(),
        ));
    }
    stages.store_ms = ms(started.elapsed());
    finish(shared, delivery, job, objects, size, stages).await
}

/// A fitted image as the engine's frame (same layout; a mismatch is a bug of ours).
fn frame_of(image: RgbImage) -> Result<RgbFrame, JobError> {
    RgbFrame::new(image.width, image.height, image.data)
        .map_err(|err| JobError::Terminal(ErrorCode::Internal, err.to_string()))
}

/// How an inference error ends the job.
fn infer_error(err: InferError) -> JobError {
    match err.kind {
        InferErrorKind::OutOfMemory => JobError::Transient(ErrorCode::Oom, err.message),
        InferErrorKind::InvalidInput => JobError::Terminal(ErrorCode::InvalidParams, err.message),
        InferErrorKind::ModelError | InferErrorKind::ModelLoad => {
            JobError::Terminal(ErrorCode::ModelError, err.message)
        }
        InferErrorKind::AdapterMismatch => {
            JobError::Terminal(ErrorCode::AdapterMismatch, err.message)
        }
    }
}

/// Reads the sealed photo `body`, checks it against its `sha256`, decodes it and fits it to `size`, or
/// (none) to the model's bucket nearest the photo's aspect as decoded (EXIF orientation
/// applied: a phone's portrait photo is portrait here even when stored sideways), or to the
/// model's input size when it lists no buckets. When the model names a `framing` detector, the
/// crop is centred on the faces it finds and their centre in the frame is returned as the
/// camera's focus (`affine_grid` coordinates); otherwise the middle, `(0, 0)`.
async fn fetch(
    shared: &Shared,
    body: ByteStream,
    sha256: &Sha256Hex,
    spec: &ModelSpec,
    size: Option<(u32, u32)>,
) -> Result<(RgbImage, (f32, f32)), JobError> {
    let photo = read_to_end(body, shared.config.max_photo_bytes)
        .await
        .map_err(|err| store_error("read photo", err))?;
    let digest: [u8; 32] = Sha256::digest(&*photo).into();
    if Sha256Hex::from_digest(&digest) != *sha256 {
        return Err(JobError::Terminal(
            ErrorCode::BadImage,
            "photo does not match its sha256".into(),
        ));
    }
    let limits = shared.config.intake_limits;
    // The detector's entry, when the model frames on faces: its input is the box the photo is
    // scaled into for it.
    let detector = match &spec.framing {
        Some(framing) => Some(
            shared
                .models
                .get(&(framing.model.clone(), framing.version.clone()))
                .ok_or_else(|| {
                    JobError::Terminal(
                        ErrorCode::ModelError,
                        format!("framing {} is not loaded", framing.key()),
                    )
                })?,
        ),
        None => None,
    };
    // A photo of a few thousand pixels decodes and fits in microseconds: cheaper on the job's
    // task than handed to the blocking pool and back (two thread wake-ups each way).
    let small = if photo.len() <= QUICK_PHOTO_BYTES {
        decode_within(&photo, &limits, QUICK_PHOTO_PIXELS).map_err(media_error)?
    } else {
        None
    };
    let quick = small.is_some();
    let decoded = move || {
        let image = match small {
            Some(image) => image,
            None => decode(&photo, &limits)?,
        };
        drop(photo); // the encoded photo is zeroized as soon as it is decoded
        Ok::<_, MediaError>(image)
    };
    let Some(detector) = detector else {
        // Nothing to detect: decode and fit in one go, centred on the middle (the entry is
        // cloned only for the blocking pool).
        let fit_middle = move |target: &ModelSpec| {
            let image = decoded()?;
            let (width, height) = fitted_size(target, size, &image);
            let (fitted, _) = fit_around(&image, width, height, middle(&image))?;
            Ok((fitted, (0.0, 0.0)))
        };
        if quick {
            return fit_middle(spec).map_err(media_error);
        }
        let target = spec.clone();
        return on_cpu(false, move || fit_middle(&target)).await;
    };
    let box_size = (detector.input.width, detector.input.height);
    let (image, (seen, back)) = on_cpu(quick, move || {
        let image = decoded()?;
        let seen = fit_within(&image, box_size.0, box_size.1)?;
        Ok((image, seen))
    })
    .await?;
    let (width, height) = fitted_size(spec, size, &image);
    let request = DetectRequest {
        model: detector.name.clone(),
        version: detector.version.clone(),
        image: frame_of(seen)?,
    };
    let faces = shared
        .engine
        .detect(request)
        .instrument(info_span!("frame"))
        .await
        .map_err(infer_error)?;
    // Only the point to frame on leaves this block; the boxes are dropped here.
    let face_centre = framing::focus(&faces).map(|(x, y)| (x * back, y * back));
    on_cpu(quick, move || {
        let (fitted, crop) =
            fit_around(&image, width, height, face_centre.unwrap_or(middle(&image)))?;
        let focus = face_centre.map_or((0.0, 0.0), |(x, y)| crop.to_frame(x, y));
        Ok((fitted, focus))
    })
    .await
}

/// Photos at most this large (encoded bytes, and pixels by their header) are decoded and fitted
/// on the job's task (a 64×64 photo: tens of microseconds); larger ones on the blocking pool,
/// their header read again there (a few microseconds beside their decode).
const QUICK_PHOTO_BYTES: usize = 64 << 10;
const QUICK_PHOTO_PIXELS: u64 = 64 * 64;

/// Runs photo work in place when `quick`, else on the blocking pool.
async fn on_cpu<T: Send + 'static>(
    quick: bool,
    work: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
) -> Result<T, JobError> {
    let done = if quick {
        work()
    } else {
        tokio::task::spawn_blocking(work).await.map_err(|err| {
            JobError::Transient(ErrorCode::Internal, format!("decode task: {err}"))
        })?
    };
    done.map_err(media_error)
}

/// The size a photo is fitted to: the job's (a training's), else the model's aspect bucket
/// nearest the photo, else the model's input.
fn fitted_size(spec: &ModelSpec, size: Option<(u32, u32)>, image: &RgbImage) -> (u32, u32) {
    size.or_else(|| {
        spec.nearest_aspect(image.width, image.height)
            .and_then(|aspect| spec.aspect_size(aspect))
    })
    .unwrap_or((spec.input.width, spec.input.height))
}

fn middle(image: &RgbImage) -> (f64, f64) {
    (f64::from(image.width) / 2.0, f64::from(image.height) / 2.0)
}

fn event_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Started => "started",
        EventKind::Progress { .. } => "progress",
        EventKind::Succeeded { .. } => "succeeded",
        EventKind::Failed { .. } => "failed",
        EventKind::InputDeleted => "input_deleted",
        EventKind::Cancelled => "cancelled",
        EventKind::Unknown => "unknown",
    }
}

/// Publishes an event the job must not go on without (its confirm is awaited).
async fn report(shared: &Shared, job: &GenerateJob, kind: EventKind) -> Result<(), JobError> {
    let span = info_span!("report event", event = event_name(&kind));
    shared
        .events
        .send(vec![event(shared, job, kind)])
        .instrument(span)
        .await
        .map_err(|err| JobError::Transient(ErrorCode::Unavailable, err.to_string()))
}

/// The output is durable: say so, delete the photo, say that, ack.
async fn finish(
    shared: &Shared,
    delivery: &Delivery,
    job: &GenerateJob,
    objects: &JobObjects,
    size: u64,
    stages: StageDurations,
) -> Result<Outcome, JobError> {
    let span = info_span!("finish");
    finish_stages(shared, delivery, job, objects, size, stages)
        .instrument(span)
        .await
}

async fn finish_stages(
    shared: &Shared,
    delivery: &Delivery,
    job: &GenerateJob,
    objects: &JobObjects,
    size: u64,
    stages: StageDurations,
) -> Result<Outcome, JobError> {
    shared.telemetry.stages(&stages);
    let succeeded = EventKind::Succeeded {
        output_key: objects.output().as_str().to_owned(),
        size,
        stages,
    };
    report(shared, job, succeeded).await?;
    objects
        .delete_photo()
        .instrument(info_span!("delete photo"))
        .await
        .map_err(|err| store_error("delete photo", err))?;
    shared.telemetry.photo_deleted(job.submitted_at);
    report(shared, job, EventKind::InputDeleted).await?;
    if let Err(err) = shared
        .broker
        .ack(std::slice::from_ref(&delivery.lease))
        .instrument(info_span!("ack"))
        .await
    {
        // The video exists: a redelivery only finishes.
        warn!(job_id = %job.job_id, error = %err, "ack failed after the job finished");
        return Ok(Outcome::Abandoned);
    }
    Ok(Outcome::Succeeded)
}
