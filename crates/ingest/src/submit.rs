//! `POST /v1/jobs`: a multipart form with a `params` part (JSON) and a `photo` part.
//!
//! Order of work, cheapest refusal first, nothing stored before every check passed:
//! token → params (JSON, model, account active and not under 14, idempotency key, admission)
//! → photo (streamed with a byte bound, sniffed, header probed for the pixel bound) → session
//! (when `session_id` names one: the account's, open, its adapter of the model trained) →
//! sealed put → ledger row → publish with confirm → `202 {job_id, status_url}`.
//!
//! If the ledger row or the publish fails, the photo is deleted again (and the row marked
//! failed): a stored photo always has a queued job. With an `Idempotency-Key`, the same key
//! and body answer the earlier job again; the same key with another body is `409`.

use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use axum::Json;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use clipfleet_broker::{Outgoing, Topic};
use clipfleet_config::PoolConfig;
use clipfleet_ledger::{AccountStatus, Idempotency, Job, NewJob};
use clipfleet_media::{Limits, probe};
use clipfleet_models::{ModelOutput, ModelSpec};
use clipfleet_proto::{
    AccountId, Aspect, ErrorCode, GenerateJob, InputRef, JobId, JobKind, ModelRef, Motion, Params,
    Priority, SessionRef, Sha256Hex, Timestamp, encode,
};
use clipfleet_store::{ObjectKey, body_from_bytes};
use clipfleet_telemetry::{inject_context, pseudonym, traceparent};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::client::Caller;
use crate::error::ApiError;
use crate::metrics::{CodeLabel, PoolLabel};
use crate::service::State as AppState;

/// Largest `params` part.
const MAX_PARAMS_BYTES: usize = 16 * 1024;
/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Largest `session_id` part (a ULID is 26 characters).
const MAX_SESSION_ID_BYTES: usize = 64;

/// The `params` part.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitParams {
    /// Whose photo (the app backend's account id).
    account_id: String,
    /// The model to run; picks the pool that serves it. Default: the first pool's.
    #[serde(default)]
    model: Option<String>,
    /// The model version, with `model`.
    #[serde(default)]
    model_version: Option<String>,
    /// The pool, when the caller knows it.
    #[serde(default)]
    pool: Option<String>,
    /// Camera motion preset (`zoom_in`, `zoom_out`, `pan_left`, `pan_right`, `parallax`).
    #[serde(default)]
    motion: Option<String>,
    /// Seed for models that take one.
    #[serde(default)]
    seed: Option<u64>,
    /// `free` (default) or `paid`.
    #[serde(default)]
    priority: Option<String>,
    /// The video's shape: `auto` (default: the bucket nearest the photo's) or one of the
    /// model's buckets (`9:16`, `3:4`, `1:1`, `4:3`, `16:9`).
    #[serde(default)]
    aspect: Option<String>,
    /// The account's personalisation session to render with (its adapter of the model must be
    /// trained). Also accepted as a form part of its own.
    #[serde(default)]
    session_id: Option<String>,
}

/// What the params part settled.
#[derive(Debug)]
struct Checked {
    account: AccountId,
    pool: PoolConfig,
    spec: ModelSpec,
    motion: Motion,
    seed: u64,
    priority: Priority,
    aspect: Aspect,
    params_digest: [u8; 32],
    /// The session named in the params, if any.
    session_id: Option<String>,
    /// The job an earlier request with the same idempotency key made.
    earlier: Option<Job>,
}

pub(crate) async fn submit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let started = Instant::now();
    state.metrics.uploads_in_flight.inc();
    let result = accept(&state, &caller, &headers, multipart).await;
    state.metrics.uploads_in_flight.dec();
    state
        .metrics
        .submit_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok((job, created)) => {
            if created {
                state
                    .metrics
                    .accepted
                    .get_or_create(&PoolLabel {
                        pool: job.pool.to_string(),
                    })
                    .inc();
            }
            accepted(&job, created)
        }
        Err(err) => {
            state
                .metrics
                .refused
                .get_or_create(&CodeLabel {
                    code: err.code.as_str().to_owned(),
                })
                .inc();
            err.into_response()
        }
    }
}

fn accepted(job: &Job, created: bool) -> Response {
    let status_url = format!("/v1/jobs/{}", job.id);
    let body = serde_json::json!({
        "job_id": job.id.to_string(),
        "status": job.status.as_str(),
        "status_url": status_url,
    });
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if !created {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

async fn accept(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(Job, bool), ApiError> {
    let idempotency_key = idempotency_key(headers)?;
    let mut multipart = multipart
        .map_err(|rejection| ApiError::bad_request(format!("not a multipart form: {rejection}")))?;
    let mut checked: Option<Checked> = None;
    let mut params_seen = false;
    let mut photo: Option<HeldPhoto> = None;
    let mut session_part: Option<String> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("params") if !params_seen => {
                params_seen = true;
                let text = read_field(field, 0, MAX_PARAMS_BYTES, || {
                    ApiError::bad_request(format!("params are over {MAX_PARAMS_BYTES} bytes"))
                })
                .await?;
                checked = Some(check_params(state, &text, idempotency_key.as_deref()).await?);
            }
            Some("photo") if photo.is_none() => {
                photo = Some(read_photo(state, headers, field).await?);
            }
            Some("session_id") if session_part.is_none() => {
                let text = read_field(field, 0, MAX_SESSION_ID_BYTES, || {
                    ApiError::bad_request("session_id is not a session id")
                })
                .await?;
                let text = std::str::from_utf8(&text)
                    .map_err(|_| ApiError::bad_request("session_id is not a session id"))?;
                session_part = Some(text.trim().to_owned());
            }
            Some(name @ ("params" | "photo" | "session_id")) => {
                return Err(ApiError::bad_request(format!(
                    "the form has two {name} parts"
                )));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form part {:?}: the form has `params` (JSON), `photo` and \
                     optionally `session_id`",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let checked = checked.ok_or_else(|| ApiError::bad_request("the form has no params part"))?;
    let held = photo.ok_or_else(|| ApiError::bad_request("the form has no photo part"))?;
    // Its room in the upload budget is held until the photo is stored (the end of this call).
    let photo = held.bytes.clone();
    if photo.is_empty() {
        return Err(ApiError::bad_request("the photo part is empty"));
    }
    let session_id = match (&checked.session_id, session_part) {
        (Some(named), Some(part)) if *named != part => {
            return Err(ApiError::bad_request(
                "session_id differs between the params and its own part",
            ));
        }
        (Some(named), _) => Some(named.clone()),
        (None, part) => part,
    };
    let photo_digest: [u8; 32] = Sha256::digest(&photo).into();
    let request_hash = {
        let mut hasher = Sha256::new();
        hasher.update(checked.params_digest);
        hasher.update(photo_digest);
        if let Some(session) = &session_id {
            hasher.update(b"session:");
            hasher.update(session.as_bytes());
        }
        hex::encode(hasher.finalize())
    };
    if let Some(earlier) = &checked.earlier {
        return replay(earlier, &request_hash);
    }
    let content_type = probe_photo(state, &photo)?;
    let session = match &session_id {
        Some(id) => {
            Some(crate::sessions::for_job(state, &checked.account, &checked.spec, id).await?)
        }
        None => None,
    };
    let mut job = generate_job(&checked, &photo, photo_digest, content_type, session)?;
    // The job's trace: never the account id itself, only its pseudonym.
    let span = tracing::info_span!(
        "submit job",
        job_id = %job.job_id,
        account = %pseudonym(checked.account.as_str()),
        pool = %job.pool,
        model = %checked.spec.key(),
        photo_bytes = photo.len(),
    );
    // For tools that republish a body without its headers (the headers carry the publish
    // span's context; this names the submission, in the same trace).
    job.trace = traceparent(&span);
    store_and_publish(
        state,
        &checked,
        job,
        photo,
        idempotency_key,
        request_hash,
        caller,
    )
    .instrument(span)
    .await
}

/// An earlier request with this idempotency key made `earlier`: the same body is a retry.
fn replay(earlier: &Job, request_hash: &str) -> Result<(Job, bool), ApiError> {
    if earlier.request_hash.as_deref() == Some(request_hash) {
        Ok((earlier.clone(), false))
    } else {
        Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "the idempotency key was used by job {} with another request",
                earlier.id
            ),
        ))
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| {
            !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES
                && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY_BYTES} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// Room for photos in memory, shared by every upload: bytes, as semaphore permits.
#[derive(Debug)]
pub(crate) struct UploadBudget {
    room: Arc<Semaphore>,
    total: usize,
}

/// A photo read into memory, with the room it takes (given back when dropped).
pub(crate) struct HeldPhoto {
    pub bytes: Bytes,
    _room: OwnedSemaphorePermit,
}

impl UploadBudget {
    pub(crate) fn new(total: usize) -> Self {
        let total = total.clamp(1, u32::MAX as usize);
        UploadBudget {
            room: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Waits for room for `bytes` (all of it, for a photo larger than the whole budget).
    async fn reserve(&self, bytes: usize) -> OwnedSemaphorePermit {
        let wanted = u32::try_from(bytes.clamp(1, self.total)).unwrap_or(u32::MAX);
        self.room
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the upload budget is never closed")
    }
}

/// Reads a `photo` part with the upload bound (the request's length sizes the buffer), once the
/// upload budget has room for it.
pub(crate) async fn read_photo(
    state: &AppState,
    headers: &HeaderMap,
    field: Field<'_>,
) -> Result<HeldPhoto, ApiError> {
    let max_photo = usize::try_from(state.config.limits.max_upload_bytes).unwrap_or(usize::MAX);
    // The request's length bounds the photo's: one allocation, no regrowth copies.
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let expected = length.unwrap_or(0).min(max_photo);
    let room = state
        .uploads
        .reserve(length.unwrap_or(max_photo).min(max_photo))
        .await;
    let bytes = read_field(field, expected, max_photo, || {
        ApiError::new(
            ErrorCode::TooLarge,
            format!("photo is over the {max_photo} byte limit"),
        )
    })
    .await?;
    state.metrics.upload_bytes.inc_by(bytes.len() as u64);
    Ok(HeldPhoto { bytes, _room: room })
}

/// Sniffs the photo and probes its header against the byte and pixel bounds; its media type.
pub(crate) fn probe_photo(state: &AppState, photo: &[u8]) -> Result<String, ApiError> {
    let limits = Limits {
        max_input_bytes: usize::try_from(state.config.limits.max_upload_bytes)
            .unwrap_or(usize::MAX),
        max_pixels: state.config.limits.max_pixels,
        ..Limits::default()
    };
    let info = probe(photo, &limits)?;
    Ok(format!("image/{}", info.format.name()))
}

pub(crate) fn multipart_error(err: MultipartError) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::TooLarge,
            "the request body is over the upload limit",
        )
    } else {
        ApiError::bad_request(format!("malformed multipart form: {}", err.body_text()))
    }
}

/// Reads one part, refusing it (with `over()`) as soon as it passes `max` bytes: an oversize
/// upload is never buffered whole.
pub(crate) async fn read_field(
    mut field: Field<'_>,
    expected: usize,
    max: usize,
    over: impl Fn() -> ApiError,
) -> Result<Bytes, ApiError> {
    let mut buffer = BytesMut::with_capacity(expected);
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buffer.len() + chunk.len() > max {
            return Err(over());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

async fn check_params(
    state: &AppState,
    text: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Checked, ApiError> {
    // An object, not an array: serde would otherwise fill the fields from an array by position.
    let value: serde_json::Value = serde_json::from_slice(text)
        .map_err(|err| ApiError::bad_request(format!("params are not valid JSON: {err}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("params must be a JSON object"));
    }
    let params: SubmitParams = serde_json::from_value(value)
        .map_err(|err| ApiError::bad_request(format!("params: {err}")))?;
    let account = AccountId::new(params.account_id.clone())
        .map_err(|err| ApiError::new(ErrorCode::InvalidParams, format!("account_id: {err}")))?;
    let motion = match params.motion.as_deref() {
        None => Motion::ZoomIn,
        Some(text) => match Motion::parse(text) {
            Motion::Unknown => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParams,
                    format!("motion {text:?} is not one of {:?}", motion_names()),
                ));
            }
            motion => motion,
        },
    };
    let priority = parse_priority(params.priority.as_deref())?;
    let (pool, spec) = choose_pool(state, &params)?;
    let aspect = match params.aspect.as_deref() {
        None => Aspect::Auto,
        Some(text) => match Aspect::parse(text) {
            Aspect::Unknown => {
                return Err(ApiError::new(
                    ErrorCode::InvalidParams,
                    format!("aspect {text:?} is not one of {:?}", aspect_names()),
                ));
            }
            Aspect::Auto => Aspect::Auto,
            named => {
                if spec.aspect_size(named.as_str()).is_none() {
                    return Err(ApiError::new(
                        ErrorCode::InvalidParams,
                        format!(
                            "model {} renders no {text} video (it renders {:?})",
                            spec.key(),
                            spec.aspects
                        ),
                    ));
                }
                named
            }
        },
    };
    check_account(state, &account).await?;
    let earlier = match idempotency_key {
        Some(key) => {
            state
                .deps
                .ledger
                .find_job_by_idempotency_key(&account, key)
                .await?
        }
        None => None,
    };
    if earlier.is_none() {
        state.admission.admit(&*state.deps.broker, &pool).await?;
    }
    Ok(Checked {
        account,
        pool,
        spec,
        motion,
        seed: params.seed.unwrap_or(0),
        priority,
        aspect,
        params_digest: Sha256::digest(text).into(),
        session_id: params.session_id,
        earlier,
    })
}

fn aspect_names() -> Vec<&'static str> {
    Aspect::KNOWN.iter().map(|aspect| aspect.as_str()).collect()
}

fn motion_names() -> Vec<&'static str> {
    Motion::KNOWN.iter().map(|motion| motion.as_str()).collect()
}

/// The pool that serves the requested model (and pool, if named), with the model's spec.
fn choose_pool(
    state: &AppState,
    params: &SubmitParams,
) -> Result<(PoolConfig, ModelSpec), ApiError> {
    let config = &state.config;
    let unknown = |what: String| ApiError::new(ErrorCode::UnknownModel, what);
    let serves = |pool: &PoolConfig| {
        params
            .model
            .as_deref()
            .is_none_or(|model| pool.model == model)
            && params
                .model_version
                .as_deref()
                .is_none_or(|version| pool.model_version == version)
    };
    let pool = match params.pool.as_deref() {
        Some(name) => {
            let pool = config.pool(name).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidParams, format!("no pool {name:?}"))
            })?;
            if !serves(pool) {
                return Err(unknown(format!(
                    "pool {name} serves {}@{}",
                    pool.model, pool.model_version
                )));
            }
            pool
        }
        None => config
            .pools
            .iter()
            .find(|pool| serves(pool))
            .ok_or_else(|| {
                unknown(format!(
                    "no pool serves model {}{}",
                    params.model.as_deref().unwrap_or("?"),
                    params
                        .model_version
                        .as_deref()
                        .map(|v| format!("@{v}"))
                        .unwrap_or_default()
                ))
            })?,
    };
    let spec = state.model_of(pool).ok_or_else(|| {
        unknown(format!(
            "{}@{} is not in the model manifest",
            pool.model, pool.model_version
        ))
    })?;
    Ok((pool.clone(), spec.clone()))
}

/// The account exists, is active, and its holder is not under 14. A birth date that turns
/// out to be under 14 flags the account (the janitor erases it at once).
pub(crate) async fn check_account(state: &AppState, id: &AccountId) -> Result<(), ApiError> {
    let inactive = |why: &str| ApiError::new(ErrorCode::AccountInactive, why);
    let account = match state.deps.ledger.get_account(id).await {
        Ok(account) => account,
        Err(err) if err.kind() == clipfleet_ledger::LedgerErrorKind::NotFound => {
            return Err(inactive("the account is not known"));
        }
        Err(err) => return Err(err.into()),
    };
    let today = Timestamp::from_system_time(std::time::SystemTime::now());
    let under_14 = account.under_14
        || account
            .birth_date
            .as_deref()
            .is_some_and(|date| crate::accounts::is_under_14(date, today));
    if under_14 {
        if !account.under_14 {
            crate::accounts::erase_under_14(state, id).await?;
        }
        return Err(ApiError::new(
            ErrorCode::UnderAge,
            "the service is not offered to children under 14",
        ));
    }
    if account.status != AccountStatus::Active || account.tombstoned_at.is_some() {
        return Err(inactive("the account is not active"));
    }
    Ok(())
}

fn generate_job(
    checked: &Checked,
    photo: &[u8],
    digest: [u8; 32],
    content_type: String,
    session: Option<SessionRef>,
) -> Result<GenerateJob, ApiError> {
    let job_id = JobId::generate();
    let submitted_at = Timestamp::from_system_time(std::time::SystemTime::now());
    let deadline = submitted_at.saturating_add(checked.pool.job_deadline);
    let spec = &checked.spec;
    let kind = match spec.output {
        ModelOutput::Video => JobKind::Video,
        ModelOutput::Image => JobKind::Image,
    };
    let mut job = GenerateJob {
        v: kind.schema_version(),
        kind,
        job_id,
        account_id: checked.account.clone(),
        pool: checked.pool.name.clone(),
        model: ModelRef {
            name: spec.name.clone(),
            version: spec.version.clone(),
        },
        input: InputRef {
            key: ObjectKey::input(&checked.account, job_id)
                .as_str()
                .to_owned(),
            size: photo.len() as u64,
            sha256: Sha256Hex::from_digest(&digest),
            content_type,
        },
        params: model_params(spec, checked.seed, checked.motion, checked.aspect)?,
        session,
        priority: checked.priority,
        submitted_at,
        deadline,
        trace: None,
    };
    // A job with a session is read only by workers that know sessions (version 3).
    job.v = job.schema_version();
    Ok(job)
}

/// The rendering parameters of a job of `spec`: its shape, with the caller's seed, motion and
/// aspect.
pub(crate) fn model_params(
    spec: &ModelSpec,
    seed: u64,
    motion: Motion,
    aspect: Aspect,
) -> Result<Params, ApiError> {
    let narrow = |what: &str, value: u32| {
        u16::try_from(value).map_err(|_| ApiError::internal(what, "model shape over u16"))
    };
    Ok(Params {
        frames: narrow("frames", spec.frames)?,
        fps: narrow("fps", spec.fps)?,
        width: narrow("width", spec.input.width)?,
        height: narrow("height", spec.input.height)?,
        seed,
        motion,
        aspect,
    })
}

/// Seal the photo in, write the row, publish; undo the earlier steps if a later one fails.
async fn store_and_publish(
    state: &AppState,
    checked: &Checked,
    job: GenerateJob,
    photo: Bytes,
    idempotency_key: Option<String>,
    request_hash: String,
    caller: &Caller,
) -> Result<(Job, bool), ApiError> {
    let deps = &state.deps;
    let key = ObjectKey::input(&job.account_id, job.job_id);
    let body = encode(&job).map_err(|err| ApiError::internal("encoding the job", err))?;
    deps.store
        .put(&key, body_from_bytes(photo))
        .instrument(tracing::info_span!("store photo"))
        .await?;
    let new_job = NewJob {
        id: job.job_id,
        account_id: job.account_id.clone(),
        pool: job.pool.clone(),
        model: format!("{}@{}", job.model.name, job.model.version),
        input_key: key.as_str().to_owned(),
        idempotency: idempotency_key.map(|key| Idempotency {
            key,
            request_hash: request_hash.clone(),
        }),
        kind: None,
        session_id: job.session.as_ref().map(|session| session.id),
    };
    let inserted = match deps
        .ledger
        .insert_job(&new_job)
        .instrument(tracing::info_span!("insert job"))
        .await
    {
        Ok(inserted) => inserted,
        Err(err) => {
            remove_photo(state, &key).await;
            return Err(err.into());
        }
    };
    if !inserted.created {
        // A concurrent request with the same key won the race: ours is not needed.
        remove_photo(state, &key).await;
        return replay(&inserted.job, &request_hash);
    }
    if let Err(why) = publish(state, &job, body).await {
        tracing::warn!(job = %job.job_id, error = %why, "publish not confirmed: rolling back");
        remove_photo(state, &key).await;
        if let Err(err) = deps
            .ledger
            .fail_job(
                job.job_id,
                ErrorCode::Unavailable,
                "publish was not confirmed",
            )
            .await
        {
            tracing::warn!(job = %job.job_id, error = %err, "could not mark the job failed");
        }
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the job could not be queued; nothing was kept; retry",
        )
        .retry_after(1));
    }
    tracing::debug!("job queued");
    caller
        .record(state, Some(&checked.account), "job.submit")
        .await;
    Ok((inserted.job, true))
}

/// Publishes an encoded job to its pool's queue with a confirm, within the publish timeout,
/// in a `publish job` span whose context goes into the message's headers. `Err` says why it
/// was not confirmed (the caller rolls back).
pub(crate) async fn publish(
    state: &AppState,
    job: &GenerateJob,
    body: Vec<u8>,
) -> Result<(), String> {
    let topic = Topic::Jobs(job.pool.clone(), job.priority);
    let publish = tracing::info_span!(
        "publish job",
        otel.kind = "producer",
        messaging.destination.name = %job.pool,
        messaging.message.id = %job.job_id,
    );
    let mut outgoing = Outgoing::new(body);
    inject_context(&publish, &mut outgoing.headers);
    let published = tokio::time::timeout(
        state.options.publish_timeout,
        state.deps.broker.publish(&topic, outgoing),
    )
    .instrument(publish)
    .await;
    match published {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!(
            "no confirm within {:?}",
            state.options.publish_timeout
        )),
    }
}

/// Deletes a photo whose job will not run. If even that fails, the janitor's rules (terminal
/// job, orphan, `input_max_age`) delete it later.
pub(crate) async fn remove_photo(state: &AppState, key: &ObjectKey) {
    if let Err(err) = state.deps.store.delete(key).await {
        tracing::warn!(error = %err, "could not delete a rolled-back photo; the janitor will");
    }
}

/// A request's `priority`: `free` when absent, `invalid_params` when neither `free` nor `paid`.
pub(crate) fn parse_priority(text: Option<&str>) -> Result<Priority, ApiError> {
    match text.map(Priority::parse) {
        None => Ok(Priority::Free),
        Some(Priority::Unknown) => Err(ApiError::new(
            ErrorCode::InvalidParams,
            format!(
                "priority {:?} is not free or paid",
                text.unwrap_or_default()
            ),
        )),
        Some(priority) => Ok(priority),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::UploadBudget;

    #[tokio::test]
    async fn uploads_wait_for_room_and_a_photo_over_the_budget_takes_all_of_it() {
        let budget = UploadBudget::new(1000);
        let first = budget.reserve(600).await;
        let second = tokio::time::timeout(Duration::from_millis(50), budget.reserve(600)).await;
        assert!(second.is_err(), "600 + 600 bytes fit a 1000 byte budget");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), budget.reserve(600))
            .await
            .expect("room once the first photo is stored");
        drop(second);
        // Larger than the whole budget: admitted alone, never stuck forever.
        let huge = tokio::time::timeout(Duration::from_secs(5), budget.reserve(1 << 30))
            .await
            .expect("a photo over the budget takes all of it");
        assert_eq!(budget.room.available_permits(), 0);
        drop(huge);
        assert_eq!(budget.room.available_permits(), 1000);
    }
}
