//! The try-it page (on `clipctl up`): pick a photo and a motion, watch the job, play the video,
//! and see the proof that the photo is gone. It submits through ingest's HTTP API exactly as
//! the app backend would, for an account of this browser's own; a browser sees only the jobs
//! it submitted (the video route checks), so one visitor's media never reaches another.

use std::fmt::Write as _;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::multipart::MultipartError;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use clipfleet_client::{Client, ClientError};
use clipfleet_proto::{AccountId, Aspect, JobId, Motion};
use clipfleet_store::{ObjectKey, StoreErrorKind};
use serde_json::json;

use super::html::{esc, message, page};
use super::{Console, Session, Shared, random_token, session_or_new, with_cookie};

/// The largest upload the page passes on (ingest applies its own, smaller bound).
const MAX_UPLOAD: usize = 64 << 20;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/try",
            get(form)
                .post(submit)
                .layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route("/try/{job}", get(job_page))
        .route("/try/{job}/status", get(job_status))
        .route("/try/{job}/video", get(video))
}

fn client(console: &Console) -> Option<&Client> {
    console.try_it.as_ref()
}

fn not_served(console: &Console, session: Option<&Session>) -> Response {
    message(
        StatusCode::NOT_FOUND,
        &console.viewer(session),
        "Not here",
        "the try-it page is served by `clipctl up` (the fleet in one process)",
    )
}

/// `<option>`s of (value, label, selected).
fn select_options<'a>(items: impl Iterator<Item = (&'a str, &'a str, bool)>) -> String {
    let mut out = String::new();
    for (value, label, selected) in items {
        let _ = write!(
            out,
            "<option value=\"{}\"{}>{}</option>",
            esc(value),
            if selected { " selected" } else { "" },
            esc(label)
        );
    }
    out
}

fn form_body(console: &Console, session: &Session, error: Option<&str>) -> String {
    let options = select_options(
        Motion::KNOWN
            .iter()
            .map(|m| (m.as_str(), m.as_str(), *m == Motion::ZoomIn)),
    );
    let aspects = select_options(Aspect::KNOWN.iter().map(|a| {
        let label = if *a == Aspect::Auto {
            "the photo's own"
        } else {
            a.as_str()
        };
        (a.as_str(), label, *a == Aspect::Auto)
    }));
    format!(
        "{error}<form method=\"post\" action=\"/try\" enctype=\"multipart/form-data\" id=\"try\">{csrf}\
         <label>Photo (JPEG, PNG, WebP, HEIC) <input type=\"file\" name=\"photo\" id=\"photo\" accept=\"image/*\" required></label>\
         <label>Motion <select name=\"motion\" id=\"motion\">{options}</select></label>\
         <label>Shape <select name=\"aspect\" id=\"aspect\">{aspects}</select></label>\
         <button id=\"make\">Make the video</button></form>\
         <p class=\"hint\">The photo goes through the fleet's API as the app's would; it is deleted as soon as \
         the video exists, and this page shows the proof.</p>",
        error = error.map_or_else(String::new, |e| format!(
            "<p class=\"error\" id=\"message\">{}</p>",
            esc(e)
        )),
        csrf = console.viewer(Some(session)).csrf_input(),
    )
}

async fn form(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session, cookie)) = session_or_new(&console, &headers) else {
        return super::no_randomness(&console);
    };
    if client(&console).is_none() {
        return not_served(&console, Some(&session));
    }
    let viewer = console.viewer(Some(&session));
    with_cookie(
        page(
            StatusCode::OK,
            "Try it: a photo becomes a video",
            &viewer,
            &form_body(&console, &session, None),
        ),
        cookie,
    )
}

fn refused(console: &Console, session: &Session, status: StatusCode, text: &str) -> Response {
    page(
        status,
        "Try it: a photo becomes a video",
        &console.viewer(Some(session)),
        &form_body(console, session, Some(text)),
    )
}

async fn submit(
    State(console): State<Shared>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    let Some(client) = client(&console).cloned() else {
        return not_served(&console, None);
    };
    let upload_failed = |err: MultipartError| {
        let viewer = console.viewer(console.sessions.get(&headers).map(|(_, s)| s).as_ref());
        message(
            StatusCode::BAD_REQUEST,
            &viewer,
            "Upload failed",
            &format!("the form did not arrive whole: {}", err.body_text()),
        )
    };
    let (mut csrf, mut motion, mut aspect, mut photo) =
        (String::new(), String::new(), String::new(), None::<Bytes>);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return upload_failed(err),
        };
        let name = field.name().unwrap_or("").to_owned();
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => return upload_failed(err),
        };
        match name.as_str() {
            "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "motion" => motion = String::from_utf8_lossy(&bytes).into_owned(),
            "aspect" => aspect = String::from_utf8_lossy(&bytes).into_owned(),
            "photo" => photo = Some(bytes),
            _ => {}
        }
    }
    let (id, session) = match console.post(&headers, &csrf, false) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let Some(photo) = photo.filter(|p| !p.is_empty()) else {
        return refused(
            &console,
            &session,
            StatusCode::BAD_REQUEST,
            "choose a photo first",
        );
    };
    if Motion::parse(&motion) == Motion::Unknown {
        return refused(
            &console,
            &session,
            StatusCode::BAD_REQUEST,
            &format!("{motion:?} is not a motion this fleet knows"),
        );
    }
    let account = match &session.try_account {
        Some(account) => account.clone(),
        None => {
            let token = random_token();
            if token.is_empty() {
                return super::no_randomness(&console);
            }
            format!("try-it-{}", &token[..16])
        }
    };
    if let Err(err) = client.ensure_account(&account, "1990-01-01").await {
        return refused(&console, &session, status_of(&err), &err.to_string());
    }
    let accepted = match client
        .submit(
            &account,
            photo,
            json!({ "motion": motion, "aspect": if aspect.is_empty() { "auto" } else { aspect.as_str() } }),
            None,
        )
        .await
    {
        Ok(accepted) => accepted,
        // Ingest's own refusal (bad photo, too big, too many pixels…) with its stable code.
        Err(err) => return refused(&console, &session, status_of(&err), &err.to_string()),
    };
    let Ok(job) = accepted.job_id.parse::<JobId>() else {
        return refused(
            &console,
            &session,
            StatusCode::BAD_GATEWAY,
            "ingest answered with a malformed job id",
        );
    };
    console.sessions.update(&id, |session| {
        session.try_account = Some(account);
        session.try_jobs.push(job);
    });
    Redirect::to(&format!("/try/{job}")).into_response()
}

fn status_of(err: &ClientError) -> StatusCode {
    match err {
        ClientError::Api { status, .. } => {
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        ClientError::Transport(_) => StatusCode::SERVICE_UNAVAILABLE,
        ClientError::Protocol(_) => StatusCode::BAD_GATEWAY,
    }
}

/// This browser's job `job`, with the account it was submitted for.
fn owned(
    console: &Console,
    headers: &HeaderMap,
    job: &str,
) -> Result<(Session, JobId, String), Response> {
    let session = console.sessions.get(headers).map(|(_, s)| s);
    let Some(session) = session else {
        return Err(Redirect::to("/try").into_response());
    };
    let found = job
        .parse::<JobId>()
        .ok()
        .filter(|id| session.try_jobs.contains(id))
        .zip(session.try_account.clone());
    match found {
        Some((id, account)) => Ok((session, id, account)),
        None => Err(message(
            StatusCode::NOT_FOUND,
            &console.viewer(Some(&session)),
            "No such job here",
            "this browser submitted no such job",
        )),
    }
}

async fn job_page(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> Response {
    let (session, id, _) = match owned(&console, &headers, &job) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let body = format!(
        "<section id=\"try-job\" data-job=\"{id}\">\
         <p>Job <code>{id}</code>: <strong id=\"try-status\">queued</strong></p>\
         <progress id=\"try-progress\" max=\"100\" value=\"0\"></progress>\
         <video id=\"try-video\" controls muted loop playsinline hidden></video>\
         <h2>Your photo</h2><p id=\"try-proof\">still needed: the video is not ready yet</p>\
         <p id=\"try-error\" class=\"error\"></p>\
         <p><a href=\"/try\">Another photo</a></p></section>"
    );
    page(
        StatusCode::OK,
        "Try it: your video",
        &console.viewer(Some(&session)),
        &body,
    )
}

async fn job_status(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> Response {
    let (_, id, account) = match owned(&console, &headers, &job) {
        Ok(found) => found,
        Err(_) => {
            return (StatusCode::NOT_FOUND, Json(json!({ "error": "not_found" }))).into_response();
        }
    };
    let Some(client) = client(&console) else {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "not_found" }))).into_response();
    };
    let status = match client.job(&id.to_string()).await {
        Ok(status) => status,
        Err(err) => {
            return (
                status_of(&err),
                Json(json!({ "error": err.code().as_str(), "message": err.to_string() })),
            )
                .into_response();
        }
    };
    // Not only the ledger's word: look in the store itself.
    let photo_in_store = match (AccountId::new(&account), console.ctx.raw_store().await) {
        (Ok(account), Ok(store)) => match store.head(&ObjectKey::input(&account, id)).await {
            Ok(_) => Some(true),
            Err(err) if err.kind() == StoreErrorKind::NotFound => Some(false),
            Err(_) => None,
        },
        _ => None,
    };
    Json(json!({
        "status": status.status,
        "progress_pct": status.progress_pct,
        "error": status.error,
        "submitted_at_ms": status.submitted_at_ms,
        "finished_at_ms": status.finished_at_ms,
        "input_deleted_at_ms": status.input_deleted_at_ms,
        "photo_in_store": photo_in_store,
        "video": status.video.is_some().then(|| format!("/try/{id}/video")),
    }))
    .into_response()
}

async fn video(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> Response {
    let (session, id, _) = match owned(&console, &headers, &job) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(client) = client(&console) else {
        return not_served(&console, Some(&session));
    };
    match client.video(&id.to_string()).await {
        Ok(bytes) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
            response
        }
        Err(err) => message(
            status_of(&err),
            &console.viewer(Some(&session)),
            "No video",
            &err.to_string(),
        ),
    }
}
