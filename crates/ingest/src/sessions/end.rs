//! The end of a session: `DELETE /v1/sessions/{id}` (the `ended` marker, then every other
//! object under the prefix deleted, audited and verified gone), and the end of an erased
//! account's sessions.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;
use clipfleet_ledger::{DeletionReason, NewDeletion, Session, SessionEndReason, SubjectKind};
use clipfleet_proto::AccountId;
use clipfleet_store::{ObjectKey, ObjectStore, body_from_bytes, list_all};
use serde_json::{Value, json};

use super::{load, now};
use crate::client::Caller;
use crate::error::ApiError;
use crate::service::State as AppState;

/// Who deletes a session's objects on request, in the deletion audit.
const ACTOR: &str = "ingest";

/// `DELETE /v1/sessions/{id}`: ends the session (the first end's reason stays) and deletes
/// everything under its prefix but the `ended` marker. Idempotent: a second call deletes
/// nothing and answers `deleted_objects: 0`.
pub(crate) async fn end(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let session = load(&state, &id).await?;
    caller
        .record(&state, Some(&session.account_id), "session.delete")
        .await;
    let reason = if session.ended_at.is_none() && now() >= session.expires_at {
        SessionEndReason::Expired
    } else {
        SessionEndReason::Deleted
    };
    let session = state.deps.ledger.end_session(session.id, reason).await?;
    let deleted = delete_session_objects(&state, &session).await?;
    tracing::debug!(session_id = %session.id, deleted, "session ended");
    Ok(Json(json!({
        "session_id": session.id.to_string(),
        "state": "ended",
        "end_reason": session.end_reason.map(SessionEndReason::as_str),
        "deleted_objects": deleted,
    })))
}

/// Puts the ended session's `ended` marker (workers check it before and after writing an
/// adapter), then deletes every other object under its prefix: audit intents first, then
/// `delete_many`, `purge_versions`, `still_stored` as the proof; confirmed, and the session
/// marked. Anything left is `503` (the janitor's `sessions/` rule finishes it). Returns how
/// many objects went.
async fn delete_session_objects(state: &AppState, session: &Session) -> Result<u64, ApiError> {
    let store: &dyn ObjectStore = &*state.deps.store;
    let ledger = &state.deps.ledger;
    let account = &session.account_id;
    let marker = ObjectKey::session_ended(account, session.id);
    store.put(&marker, body_from_bytes(Bytes::new())).await?;
    let prefix = ObjectKey::session_prefix(account, session.id);
    let keys: Vec<ObjectKey> = list_all(store, &prefix)
        .await?
        .into_iter()
        .map(|meta| meta.key)
        .filter(|key| *key != marker)
        .collect();
    if keys.is_empty() {
        ledger.mark_session_objects_deleted(session.id).await?;
        return Ok(0);
    }
    let intents: Vec<NewDeletion> = keys
        .iter()
        .map(|key| NewDeletion {
            subject_kind: SubjectKind::Session,
            // As the janitor's `sessions/` rule names it, so either one's record is the other's.
            subject_id: format!("{account}/{}", session.id),
            target: key.as_str().to_owned(),
            reason: DeletionReason::SessionEnded,
            actor: ACTOR.to_owned(),
            verified: false,
        })
        .collect();
    ledger.record_deletion_intents(&intents).await?;
    let report = store.delete_many(&keys).await;
    for failure in &report.failed {
        tracing::warn!(key = %failure.key.redacted(), error = %failure.message, "deleting a session object failed");
    }
    let purged = store.purge_versions(&keys).await;
    for failure in &purged.failed {
        tracing::warn!(key = %failure.key.redacted(), error = %failure.message, "purging a session object's versions failed");
    }
    let left = store.still_stored(&keys).await?;
    let gone: Vec<String> = intents
        .iter()
        .filter(|intent| !left.iter().any(|key| key.as_str() == intent.target))
        .map(NewDeletion::dedup_key)
        .collect();
    ledger.confirm_deletions(&gone, None).await?;
    if !left.is_empty() {
        return Err(ApiError::unavailable(
            "deleting the session's objects",
            format!("{} objects still stored", left.len()),
        ));
    }
    ledger.mark_session_objects_deleted(session.id).await?;
    Ok(gone.len() as u64)
}

/// Ends the account's sessions for its erasure: each one not yet cleaned up is ended
/// (`account_erased`, unless it ended before) and gets its `ended` marker, so a worker training
/// on it drops what it wrote. The janitor deletes the objects (the account's leftovers).
pub(crate) async fn end_for_erasure(state: &AppState, account: &AccountId) -> Result<(), ApiError> {
    let ledger = &state.deps.ledger;
    for session in ledger.sessions_of_account(account).await? {
        if session.objects_deleted_at.is_some() {
            continue;
        }
        let session = ledger
            .end_session(session.id, SessionEndReason::AccountErased)
            .await?;
        state
            .deps
            .store
            .put(
                &ObjectKey::session_ended(account, session.id),
                body_from_bytes(Bytes::new()),
            )
            .await?;
    }
    Ok(())
}
