//! `POST /v1/sessions/{id}/personalize`: the training of a session's adapter of a model, on
//! every photo no job took yet. Row, claim of the photos, confirmed publish; a lost race for
//! the photos or an unconfirmed publish fails the row and hands the photos back.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use clipfleet_config::PoolConfig;
use clipfleet_ledger::{Job, JobStatus, NewJob, PERSONALIZE_KIND, Session, SessionPhotoRow};
use clipfleet_models::ModelSpec;
use clipfleet_proto::{
    Aspect, ErrorCode, GenerateJob, InputRef, JobId, JobKind, ModelRef, Motion, PhotoId, Priority,
    SessionPhoto, SessionRef, Sha256Hex, encode,
};
use clipfleet_store::ObjectKey;
use clipfleet_telemetry::{pseudonym, traceparent};
use serde::Deserialize;
use tracing::Instrument;

use super::{json_body, load, no_adapter, now, require_open};
use crate::client::Caller;
use crate::error::ApiError;
use crate::metrics::PoolLabel;
use crate::service::State as AppState;
use crate::submit::{check_account, model_params, publish};

/// `POST /v1/sessions/{id}/personalize`'s body (all optional; an empty body is `{}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonalizeRequest {
    /// The model to personalise; default: the first pool's model that takes an adapter.
    #[serde(default)]
    model: Option<String>,
    /// Its version, with `model`.
    #[serde(default)]
    model_version: Option<String>,
    /// `free` (default) or `paid`.
    #[serde(default)]
    priority: Option<String>,
}

/// The pool and model a `personalize` request names (or the first pool's model that takes an
/// adapter): `422 unknown_model` when no pool serves it, `400 invalid_params` when it takes no
/// adapter.
fn adapter_model(
    state: &AppState,
    model: Option<&str>,
    version: Option<&str>,
) -> Result<(PoolConfig, ModelSpec), ApiError> {
    let pools = &state.config.pools;
    let Some(model) = model else {
        return pools
            .iter()
            .find_map(|pool| {
                let spec = state.model_of(pool)?;
                spec.adapter.is_some().then(|| (pool.clone(), spec.clone()))
            })
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::UnknownModel,
                    "no pool serves a model that takes a personalised adapter",
                )
            });
    };
    let (pool, spec) = pools
        .iter()
        .filter(|pool| pool.model == model && version.is_none_or(|v| pool.model_version == v))
        .find_map(|pool| Some((pool.clone(), state.model_of(pool)?.clone())))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownModel,
                format!(
                    "no pool serves model {model}{}",
                    version.map(|v| format!("@{v}")).unwrap_or_default()
                ),
            )
        })?;
    if spec.adapter.is_none() {
        return Err(no_adapter(&spec));
    }
    Ok((pool, spec))
}

/// `POST /v1/sessions/{id}/personalize`: queues the training of the session's adapter of a
/// model on every photo no job took yet.
pub(crate) async fn personalize(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: PersonalizeRequest = json_body(&body)?;
    let priority = crate::submit::parse_priority(input.priority.as_deref())?;
    let session = load(&state, &id).await?;
    require_open(&session)?;
    let (pool, spec) = adapter_model(
        &state,
        input.model.as_deref(),
        input.model_version.as_deref(),
    )?;
    check_account(&state, &session.account_id).await?;
    let ledger = &state.deps.ledger;
    let photos = ledger.unclaimed_session_photos(session.id).await?;
    if photos.is_empty() {
        return Err(ApiError::new(
            ErrorCode::SessionNotReady,
            "the session has no photos to train on: upload some first",
        ));
    }
    let model_key = spec.key();
    if let Some(earlier) = ledger
        .personalize_jobs(session.id)
        .await?
        .into_iter()
        .find(|job| {
            job.model == model_key
                && matches!(
                    job.status,
                    JobStatus::Queued | JobStatus::Running | JobStatus::Succeeded
                )
        })
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "the session's adapter of {model_key} is {} by job {}",
                if earlier.status == JobStatus::Succeeded {
                    "trained"
                } else {
                    "being trained"
                },
                earlier.id
            ),
        ));
    }
    state.admission.admit(&*state.deps.broker, &pool).await?;
    let mut job = personalize_job(&session, &pool, &spec, &photos, priority)?;
    let span = tracing::info_span!(
        "personalize session",
        job_id = %job.job_id,
        session_id = %session.id,
        account = %pseudonym(session.account_id.as_str()),
        pool = %job.pool,
        model = %model_key,
        photos = photos.len(),
    );
    job.trace = traceparent(&span);
    let queued = queue_training(&state, &session, job, &photos)
        .instrument(span)
        .await?;
    state
        .metrics
        .accepted
        .get_or_create(&PoolLabel {
            pool: queued.pool.to_string(),
        })
        .inc();
    caller
        .record(&state, Some(&session.account_id), "session.personalize")
        .await;
    let status_url = format!("/v1/jobs/{}", queued.id);
    let mut response = (
        StatusCode::ACCEPTED,
        Json(crate::jobs::view(&queued, &state.deps.manifest)),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The training job: its input is the first photo, `session.photos` all it trains on.
fn personalize_job(
    session: &Session,
    pool: &PoolConfig,
    spec: &ModelSpec,
    photos: &[SessionPhotoRow],
    priority: Priority,
) -> Result<GenerateJob, ApiError> {
    let sha = |text: &str| {
        Sha256Hex::new(text).map_err(|err| ApiError::internal("a session photo's digest", err))
    };
    let first = photos
        .first()
        .ok_or_else(|| ApiError::internal("a personalize job", "no photos"))?;
    let job_id = JobId::generate();
    let submitted_at = now();
    let mut job = GenerateJob {
        v: JobKind::Personalize.schema_version(),
        kind: JobKind::Personalize,
        job_id,
        account_id: session.account_id.clone(),
        pool: pool.name.clone(),
        model: ModelRef {
            name: spec.name.clone(),
            version: spec.version.clone(),
        },
        input: InputRef {
            key: ObjectKey::session_photo(&session.account_id, session.id, first.id)
                .as_str()
                .to_owned(),
            size: first.size,
            sha256: sha(&first.sha256)?,
            content_type: first.content_type.clone(),
        },
        params: model_params(spec, 0, Motion::ZoomIn, Aspect::Auto)?,
        session: Some(SessionRef {
            id: session.id,
            expires_at: session.expires_at,
            photos: photos
                .iter()
                .map(|photo| {
                    Ok(SessionPhoto {
                        id: photo.id,
                        size: photo.size,
                        sha256: sha(&photo.sha256)?,
                        content_type: photo.content_type.clone(),
                    })
                })
                .collect::<Result<_, ApiError>>()?,
        }),
        priority,
        submitted_at,
        deadline: submitted_at.saturating_add(pool.job_deadline),
        trace: None,
    };
    job.v = job.schema_version();
    Ok(job)
}

/// Row, claim of the photos, publish; a lost race for the photos or an unconfirmed publish
/// fails the row and hands the photos back (they belong to the session, not to the job).
async fn queue_training(
    state: &AppState,
    session: &Session,
    job: GenerateJob,
    photos: &[SessionPhotoRow],
) -> Result<Job, ApiError> {
    let ledger = &state.deps.ledger;
    let body = encode(&job).map_err(|err| ApiError::internal("encoding the job", err))?;
    let inserted = ledger
        .insert_job(&NewJob {
            id: job.job_id,
            account_id: job.account_id.clone(),
            pool: job.pool.clone(),
            model: format!("{}@{}", job.model.name, job.model.version),
            input_key: job.input.key.clone(),
            idempotency: None,
            kind: Some(PERSONALIZE_KIND.to_owned()),
            session_id: Some(session.id),
        })
        .instrument(tracing::info_span!("insert job"))
        .await?;
    let ids: Vec<PhotoId> = photos.iter().map(|photo| photo.id).collect();
    let claimed = ledger
        .claim_session_photos(session.id, job.job_id, &ids)
        .await;
    let failure = match claimed {
        Ok(n) if n == ids.len() as u64 => match publish(state, &job, body).await {
            Ok(()) => None,
            Err(why) => {
                tracing::warn!(job = %job.job_id, error = %why, "publish not confirmed: rolling back");
                Some((
                    ErrorCode::Unavailable,
                    "publish was not confirmed",
                    ApiError::new(
                        ErrorCode::Unavailable,
                        "the training could not be queued; nothing was kept; retry",
                    )
                    .retry_after(1),
                ))
            }
        },
        Ok(_) => Some((
            ErrorCode::Conflict,
            "another personalize job took the photos",
            ApiError::new(
                ErrorCode::Conflict,
                "another personalize job of the session took its photos",
            ),
        )),
        Err(err) => Some((
            ErrorCode::Unavailable,
            "the photos could not be claimed",
            ApiError::from(err),
        )),
    };
    let Some((code, message, answer)) = failure else {
        tracing::debug!("training queued");
        return Ok(inserted.job);
    };
    if let Err(err) = ledger.fail_job(job.job_id, code, message).await {
        tracing::warn!(job = %job.job_id, error = %err, "could not mark the job failed");
    }
    if let Err(err) = ledger.release_session_photos(job.job_id).await {
        tracing::warn!(job = %job.job_id, error = %err, "could not hand the photos back");
    }
    Err(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::MAX_BODY_BYTES;

    #[test]
    fn an_empty_body_is_the_default_request() {
        let request: PersonalizeRequest = json_body(b"  ").expect("empty is default");
        assert!(request.model.is_none() && request.priority.is_none());
        assert!(json_body::<PersonalizeRequest>(b"{\"lora\": 1}").is_err());
        assert!(json_body::<PersonalizeRequest>(&vec![b' '; MAX_BODY_BYTES + 1]).is_err());
    }
}
