//! `GET /v1/jobs/{id}` (status, timings, error code), `GET /v1/jobs/{id}/output` (the unsealed
//! output, ranges supported: an MP4, or an image job's JPEG; `/video` is the same route under its
//! first name) and `DELETE /v1/jobs/{id}` (cancel a queued job; delete a finished job's output).
//!
//! A session's training job (`kind: personalize`) has no output to show or download: its
//! adapter is the session's, served to the session's jobs only and deleted with the session.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use clipfleet_ledger::{
    DeletionReason, Job, JobStatus, NewDeletion, PERSONALIZE_KIND, SubjectKind,
};
use clipfleet_models::{Manifest, ModelOutput, ModelSpec};
use clipfleet_proto::{ErrorCode, JobId, Timestamp};
use clipfleet_store::{ObjectKey, StoreErrorKind, read_to_end};
use serde_json::{Value, json};

use crate::client::Caller;
use crate::error::ApiError;
use crate::range::{self, RangeRequest};
use crate::service::State as AppState;

/// Largest video served (the encoder's output is far smaller).
const MAX_VIDEO_BYTES: u64 = 512 << 20;

fn ms(at: Option<Timestamp>) -> Value {
    at.map_or(Value::Null, |at| json!(at.unix_ms()))
}

/// Whether a stored output key is an image job's still (`outputs/<account>/<job>.jpg`).
fn is_image_key(key: &str) -> bool {
    key.ends_with(".jpg")
}

/// The media type and file extension an output is served with.
fn media_type(image: bool) -> (&'static str, &'static str) {
    if image {
        ("image/jpeg", "jpg")
    } else {
        ("video/mp4", "mp4")
    }
}

/// Whether the job trains a session's adapter (whose output is never shown or served).
fn is_personalize(job: &Job) -> bool {
    job.kind.as_deref() == Some(PERSONALIZE_KIND)
}

/// The job as the API shows it; `runs` lists the models its output goes through (a framing
/// detector, a chain's stages), from the manifest; `kind` what it makes, and `output` where it
/// is once stored (`video` too for a video job, the field's first name); `session_id` the
/// session it belongs to.
pub(crate) fn view(job: &Job, manifest: &Manifest) -> Value {
    let spec = job
        .model
        .split_once('@')
        .and_then(|(name, version)| manifest.find(name, version));
    let runs = spec.map_or_else(|| vec![job.model.clone()], ModelSpec::runs);
    // Its stored key says what it made; before that, its model does.
    let image = match job.output_key.as_deref() {
        Some(key) => is_image_key(key),
        None => spec.is_some_and(|spec| spec.output == ModelOutput::Image),
    };
    let personalize = is_personalize(job);
    let kind = if personalize {
        PERSONALIZE_KIND
    } else if image {
        "image"
    } else {
        "video"
    };
    let shown = !personalize && job.status == JobStatus::Succeeded;
    let output = (shown && job.output_deleted_at.is_none()).then(|| {
        json!({
            "url": format!("/v1/jobs/{}/output", job.id),
            "content_type": media_type(image).0,
            "size": job.output_size,
            "expires_at_ms": ms(job.output_expires_at),
        })
    });
    let video = output.as_ref().filter(|_| !image).map(|output| {
        json!({
            "url": format!("/v1/jobs/{}/video", job.id),
            "size": output["size"],
            "expires_at_ms": output["expires_at_ms"],
        })
    });
    let error = job
        .error_code
        .map(|code| json!({ "code": code.as_str(), "message": job.error_message }));
    let mut view = json!({
        "job_id": job.id.to_string(),
        "account_id": job.account_id.as_str(),
        "pool": job.pool.as_str(),
        "model": job.model,
        "runs": runs,
        "kind": kind,
        "status": job.status.as_str(),
        "progress_pct": job.progress_pct,
        "attempts": job.attempts,
        "submitted_at_ms": job.submitted_at.unix_ms(),
        "started_at_ms": ms(job.started_at),
        "finished_at_ms": ms(job.finished_at),
        "input_deleted_at_ms": ms(job.input_deleted_at),
        "output_deleted_at_ms": ms(job.output_deleted_at),
        "error": error,
        "output": output,
        "video": video,
    });
    if let (Some(session), Some(fields)) = (job.session_id, view.as_object_mut()) {
        fields.insert("session_id".into(), json!(session.to_string()));
    }
    view
}

async fn load(state: &AppState, id: &str) -> Result<Job, ApiError> {
    let id: JobId = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no job {id:?}")))?;
    Ok(state.deps.ledger.get_job(id).await?)
}

pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = load(&state, &id).await?;
    caller
        .record(&state, Some(&job.account_id), "job.get")
        .await;
    Ok(Json(view(&job, &state.deps.manifest)))
}

/// `GET /v1/jobs/{id}/output` (and `/video`): the job's output as stored, unsealed.
pub(crate) async fn output(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = load(&state, &id).await?;
    if is_personalize(&job) {
        // The adapter is the session's: never downloadable.
        return Err(ApiError::not_found(format!("job {} has no output", job.id)));
    }
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let expired = job.output_expires_at.is_some_and(|at| at <= now);
    let key = match (&job.output_key, job.status) {
        (Some(key), JobStatus::Succeeded) if job.output_deleted_at.is_none() && !expired => key,
        (_, status) if !status.is_terminal() => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("job {} is {}: no output yet", job.id, status.as_str()),
            ));
        }
        _ => return Err(ApiError::not_found(format!("job {} has no output", job.id))),
    };
    let (content_type, extension) = media_type(is_image_key(key));
    let key = stored_key(key)?;
    caller
        .record(&state, Some(&job.account_id), "job.output")
        .await;
    let stream = state.deps.store.get(&key).await?;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let mut response = match (job.output_size, range_header) {
        // A whole video streams straight from the store, unsealed segment by segment.
        (Some(size), None) => {
            let mut response = Response::new(Body::from_stream(stream));
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            response
        }
        _ => {
            let bytes = read_to_end(stream, MAX_VIDEO_BYTES).await?;
            let len = bytes.len() as u64;
            match range::parse(range_header, len) {
                RangeRequest::Full => Response::new(Body::from(bytes.to_vec())),
                RangeRequest::Partial { start, end } => {
                    let slice = bytes[start as usize..=end as usize].to_vec();
                    let mut response = Response::new(Body::from(slice));
                    *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                    insert(
                        &mut response,
                        header::CONTENT_RANGE,
                        format!("bytes {start}-{end}/{len}"),
                    );
                    response
                }
                RangeRequest::Unsatisfiable => {
                    let mut response = Response::new(Body::empty());
                    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                    insert(
                        &mut response,
                        header::CONTENT_RANGE,
                        format!("bytes */{len}"),
                    );
                    return Ok(response);
                }
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    insert(
        &mut response,
        header::CONTENT_DISPOSITION,
        format!("inline; filename=\"{}.{extension}\"", job.id),
    );
    Ok(response)
}

/// A key the ledger recorded; one that does not parse is a bug, not the caller's fault.
fn stored_key(key: &str) -> Result<ObjectKey, ApiError> {
    ObjectKey::new(key.to_owned()).map_err(|err| ApiError::internal("the job's output key", err))
}

fn insert(response: &mut Response, name: header::HeaderName, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(name, value);
    }
}

pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = load(&state, &id).await?;
    caller
        .record(&state, Some(&job.account_id), "job.delete")
        .await;
    let ledger = &state.deps.ledger;
    if is_personalize(&job) {
        // Its photos and its adapter are the session's (`DELETE /v1/sessions/{id}` deletes
        // them): a queued training is cancelled and hands its photos back to the session.
        let job = match job.status {
            JobStatus::Queued => {
                let after = ledger.cancel_job(job.id).await?;
                if after.status == JobStatus::Cancelled {
                    ledger.release_session_photos(after.id).await?;
                }
                after
            }
            _ => job,
        };
        return Ok(Json(view(&job, &state.deps.manifest)));
    }
    let job = match job.status {
        JobStatus::Queued => {
            let after = ledger.cancel_job(job.id).await?;
            if after.status != JobStatus::Cancelled {
                return Err(running(&after));
            }
            let key = ObjectKey::input(&after.account_id, after.id);
            delete_verified(&state, &after, &key, DeletionReason::DeleteRequest).await?;
            ledger.mark_input_deleted(after.id).await?
        }
        JobStatus::Running => return Err(running(&job)),
        JobStatus::Succeeded if job.output_deleted_at.is_none() => {
            if let Some(key) = &job.output_key {
                let key = stored_key(key)?;
                delete_verified(&state, &job, &key, DeletionReason::DeleteRequest).await?;
            }
            ledger.mark_output_deleted(job.id).await?
        }
        // Ended without a video, or the video is already gone: nothing left to delete.
        _ => job,
    };
    Ok(Json(view(&job, &state.deps.manifest)))
}

fn running(job: &Job) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!(
            "job {} is running; delete its video once it has finished",
            job.id
        ),
    )
    .retry_after(5)
}

/// Deletes `key`, checks it is gone and writes the deletion audit.
async fn delete_verified(
    state: &AppState,
    job: &Job,
    key: &ObjectKey,
    reason: DeletionReason,
) -> Result<(), ApiError> {
    let store = &state.deps.store;
    store.delete(key).await?;
    let verified = match store.head(key).await {
        Err(err) if err.kind() == StoreErrorKind::NotFound => true,
        Ok(_) => false,
        Err(err) => return Err(err.into()),
    };
    state
        .deps
        .ledger
        .record_deletion(&NewDeletion {
            subject_kind: SubjectKind::Job,
            subject_id: job.id.to_string(),
            target: key.as_str().to_owned(),
            reason,
            actor: "ingest".to_owned(),
            verified,
        })
        .await?;
    if !verified {
        return Err(ApiError::unavailable(
            "deleting the object",
            "it is still there after the delete",
        ));
    }
    Ok(())
}
