//! `/v1/sessions…`: personalisation sessions. An account's session takes photos, trains a
//! personalised adapter of an image model on them (a `personalize` job), and serves the
//! account's later jobs of that model that name it (`POST /v1/jobs` with `session_id`).
//!
//! - `POST /v1/sessions` `{account_id}` → `201` the session (TTL: `retention.session_ttl`).
//! - `POST /v1/sessions/{id}/photos` (multipart `photo`) → `201 {photo_id, photos}`: the photo
//!   intake of a job (byte bound, sniff, header probe), sealed under the session's prefix.
//! - `POST /v1/sessions/{id}/personalize` `{model?, model_version?, priority?}` → `202` the
//!   training job: it takes every photo no job took yet.
//! - `GET /v1/sessions/{id}` → the session: `open`, `ended` or `expired`, its latest training.
//! - `DELETE /v1/sessions/{id}` → ends it and deletes everything under its prefix but the
//!   `ended` marker (audited, verified gone); idempotent.
//!
//! A session's objects are reachable only through its own account's keys: a job names a session
//! of its own account or is refused as if the session did not exist.
//!
//! Here: create, show, photos, and the check of a job that names a session; `personalize`:
//! the training job; `end`: the end of a session (on request, or with its account).

mod end;
mod personalize;

use std::sync::Arc;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use clipfleet_ledger::{
    Job, JobStatus, LedgerErrorKind, NewSessionPhoto, Session, SessionEndReason,
};
use clipfleet_models::ModelSpec;
use clipfleet_proto::{
    AccountId, ErrorCode, MAX_SESSION_PHOTOS, PhotoId, SessionId, SessionRef, Timestamp,
};
use clipfleet_store::{ObjectKey, body_from_bytes};
use clipfleet_telemetry::pseudonym;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::Instrument;

pub(crate) use end::{end, end_for_erasure};
pub(crate) use personalize::personalize;

use crate::client::Caller;
use crate::error::ApiError;
use crate::service::State as AppState;
use crate::submit::{
    HeldPhoto, check_account, multipart_error, probe_photo, read_photo, remove_photo,
};

/// Largest JSON body of a session call.
const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSession {
    account_id: String,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// `open`, `ended` (on request, or with its account) or `expired` (its TTL passed).
fn state_of(session: &Session, now: Timestamp) -> &'static str {
    if session.ended_at.is_some() {
        "ended"
    } else if now >= session.expires_at {
        "expired"
    } else {
        "open"
    }
}

/// The session as the API shows it: `photos` counts those waiting for a training job,
/// `personalize` is its latest training job, `adapter_ready` whether jobs may use it now.
fn view(session: &Session, latest: Option<&Job>, photos: usize, now: Timestamp) -> Value {
    let state = state_of(session, now);
    let ms = |at: Option<Timestamp>| at.map_or(Value::Null, |at| json!(at.unix_ms()));
    let adapter_ready = state == "open" && latest.is_some_and(adapter_stored);
    json!({
        "session_id": session.id.to_string(),
        "account_id": session.account_id.as_str(),
        "state": state,
        "created_at_ms": session.created_at.unix_ms(),
        "expires_at_ms": session.expires_at.unix_ms(),
        "ended_at_ms": ms(session.ended_at),
        "end_reason": session.end_reason.map(SessionEndReason::as_str),
        "photos": photos,
        "personalize": latest.map(|job| json!({
            "job_id": job.id.to_string(),
            "model": job.model,
            "status": job.status.as_str(),
        })),
        "adapter_ready": adapter_ready,
    })
}

/// Whether a training job's adapter is stored (it succeeded, and nothing deleted it since).
fn adapter_stored(job: &Job) -> bool {
    job.status == JobStatus::Succeeded && job.output_deleted_at.is_none()
}

fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::bad_request(format!(
            "the body is over {MAX_BODY_BYTES} bytes"
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(format!("the body is not valid JSON for this call: {err}"))
    })
}

/// The session named in a path; an id that does not parse is a session that does not exist.
async fn load(state: &AppState, id: &str) -> Result<Session, ApiError> {
    let id: SessionId = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no session {id:?}")))?;
    Ok(state.deps.ledger.get_session(id).await?)
}

fn ended(session: &Session) -> ApiError {
    ApiError::new(
        ErrorCode::SessionEnded,
        format!("session {} has ended", session.id),
    )
}

/// The session if it may still take photos and train, else `410 session_ended`.
fn require_open(session: &Session) -> Result<(), ApiError> {
    if session.is_open(now()) {
        Ok(())
    } else {
        Err(ended(session))
    }
}

async fn show_session(state: &AppState, session: &Session) -> Result<Value, ApiError> {
    let ledger = &state.deps.ledger;
    let latest = ledger
        .personalize_jobs(session.id)
        .await?
        .into_iter()
        .next();
    let photos = ledger.unclaimed_session_photos(session.id).await?.len();
    Ok(view(session, latest.as_ref(), photos, now()))
}

/// `POST /v1/sessions`.
pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input: CreateSession = json_body(&body)?;
    let account = AccountId::new(input.account_id)
        .map_err(|err| ApiError::new(ErrorCode::InvalidParams, format!("account_id: {err}")))?;
    check_account(&state, &account).await?;
    let session = state
        .deps
        .ledger
        .create_session(&account, state.config.retention.session_ttl)
        .await?;
    caller
        .record(&state, Some(&account), "session.create")
        .await;
    tracing::debug!(
        session_id = %session.id,
        account = %pseudonym(account.as_str()),
        "session created"
    );
    let body = view(&session, None, 0, now());
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/sessions/{}", session.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/sessions/{id}`.
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let session = load(&state, &id).await?;
    caller
        .record(&state, Some(&session.account_id), "session.get")
        .await;
    Ok(Json(show_session(&state, &session).await?))
}

/// `POST /v1/sessions/{id}/photos`: one `photo` part, taken in like a job's photo.
pub(crate) async fn upload(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let session = load(&state, &id).await?;
    require_open(&session)?;
    check_account(&state, &session.account_id).await?;
    let ledger = &state.deps.ledger;
    if ledger.unclaimed_session_photos(session.id).await?.len() >= MAX_SESSION_PHOTOS {
        return Err(full());
    }
    let mut multipart = multipart
        .map_err(|rejection| ApiError::bad_request(format!("not a multipart form: {rejection}")))?;
    let mut photo: Option<HeldPhoto> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("photo") if photo.is_none() => {
                photo = Some(read_photo(&state, &headers, field).await?);
            }
            Some("photo") => return Err(ApiError::bad_request("the form has two photo parts")),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form part {:?}: the form has one `photo`",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let held = photo.ok_or_else(|| ApiError::bad_request("the form has no photo part"))?;
    // Its room in the upload budget is held until the photo is stored (the end of this call).
    let photo = held.bytes.clone();
    if photo.is_empty() {
        return Err(ApiError::bad_request("the photo part is empty"));
    }
    let content_type = probe_photo(&state, &photo)?;
    let digest: [u8; 32] = Sha256::digest(&photo).into();
    let new = NewSessionPhoto {
        id: PhotoId::generate(),
        size: photo.len() as u64,
        sha256: hex::encode(digest),
        content_type,
    };
    let key = ObjectKey::session_photo(&session.account_id, session.id, new.id);
    state
        .deps
        .store
        .put(&key, body_from_bytes(photo))
        .instrument(tracing::info_span!("store session photo"))
        .await?;
    // The row after the object: a session that ended meanwhile refuses it, and the photo goes
    // again (an end that came first lists the prefix after this put, and deletes it).
    if let Err(err) = ledger.add_session_photo(session.id, &new).await {
        remove_photo(&state, &key).await;
        if err.kind() != LedgerErrorKind::Conflict {
            return Err(err.into());
        }
        let now_session = ledger.get_session(session.id).await?;
        if !now_session.is_open(now()) {
            return Err(ended(&now_session));
        }
        return Err(full());
    }
    caller
        .record(&state, Some(&session.account_id), "session.photo")
        .await;
    let photos = ledger.unclaimed_session_photos(session.id).await?.len();
    let body = json!({ "photo_id": new.id.to_string(), "photos": photos });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn full() -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!(
            "the session already holds {} photos waiting for training",
            MAX_SESSION_PHOTOS
        ),
    )
}

fn no_adapter(spec: &ModelSpec) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidParams,
        format!("model {} takes no personalised adapter", spec.key()),
    )
}

/// The session a job of `account` names (`POST /v1/jobs` with `session_id`): the account's own
/// (another's is `404`, as if it did not exist), open (`410 session_ended`), for a model that
/// takes an adapter (`400 invalid_params`), whose adapter of that model is trained
/// (`409 session_not_ready`).
pub(crate) async fn for_job(
    state: &AppState,
    account: &AccountId,
    spec: &ModelSpec,
    id: &str,
) -> Result<SessionRef, ApiError> {
    let session = load(state, id).await?;
    if session.account_id != *account {
        return Err(ApiError::not_found(format!("no session {id:?}")));
    }
    require_open(&session)?;
    if spec.adapter.is_none() {
        return Err(no_adapter(spec));
    }
    let model_key = spec.key();
    let trained = state
        .deps
        .ledger
        .personalize_jobs(session.id)
        .await?
        .iter()
        .any(|job| job.model == model_key && adapter_stored(job));
    if !trained {
        return Err(ApiError::new(
            ErrorCode::SessionNotReady,
            format!("the session has no trained adapter of {model_key} yet"),
        ));
    }
    Ok(SessionRef {
        id: session.id,
        expires_at: session.expires_at,
        photos: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(ended: bool) -> Session {
        Session {
            id: SessionId::generate(),
            account_id: AccountId::new("acct-1".to_owned()).expect("an account id"),
            created_at: Timestamp::from_unix_ms(1_000),
            expires_at: Timestamp::from_unix_ms(2_000),
            ended_at: ended.then(|| Timestamp::from_unix_ms(1_500)),
            end_reason: ended.then_some(SessionEndReason::Deleted),
            objects_deleted_at: None,
        }
    }

    #[test]
    fn states_follow_the_end_and_the_ttl() {
        assert_eq!(
            state_of(&session(false), Timestamp::from_unix_ms(1_999)),
            "open"
        );
        assert_eq!(
            state_of(&session(false), Timestamp::from_unix_ms(2_000)),
            "expired"
        );
        assert_eq!(
            state_of(&session(true), Timestamp::from_unix_ms(1_600)),
            "ended"
        );
        let shown = view(&session(true), None, 0, Timestamp::from_unix_ms(1_600));
        assert_eq!(shown["end_reason"], "deleted");
        assert_eq!(shown["adapter_ready"], false);
        assert_eq!(shown["personalize"], Value::Null);
    }
}
