//! The operator console: a small web service with the powers and the safety of `clipctl`, and
//! on `clipctl up` the try-it page.
//!
//! Why its own service and not a route tree on ingest: ingest faces the app backend (and, in
//! front of it, the internet); the console acts on the broker's dead letters, steers workers
//! and reads the whole ledger. Kept apart, a flaw in one cannot lend the other's powers, the
//! console can run on an operator network only, and every action goes through the very
//! functions `clipctl` runs (`queues::replay`, `steer::steer`, …) over the same [`Ctx`]: the
//! same checks, audit and confirmations.
//!
//! Modules: `auth` (operator token, sessions, CSRF and origin checks), `html` (escaping, the
//! page frame), `pages` (overview and its live data, a job's timeline, dead letters, steering,
//! the janitor), `try_it` (the main job in a browser). Pages are rendered on the server; the
//! one script (`assets/console.js`) polls `/api/overview` and draws the live tables and plots.
//! Media never reaches an operator: a job's page says whether its photo and video are stored,
//! and accounts appear by pseudonym only.

// A handler's early exit is the page it answers with: `Result<_, Response>` throughout.
#![allow(clippy::result_large_err)]

mod auth;
mod html;
mod pages;
mod try_it;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use clipfleet_client::Client;
use serde::Deserialize;
use sha2::Digest as _;
use tokio::net::TcpListener;

pub use auth::random_token;
use auth::{Refusal, Session, Sessions};
use html::{Viewer, esc, message, page};

use crate::ctx::Ctx;
use crate::exit::{Exit, Failure};
use crate::heartbeats::{Listener, WorkerSeen};

/// What the console serves with.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The operator token (not the API token): signing in asks for it.
    pub operator_token: String,
    /// Mark the session cookie `Secure` (the console is served over TLS).
    pub secure_cookie: bool,
    /// Serve the try-it page, submitting through this ingest client.
    pub try_it: Option<Client>,
}

/// The console's shared state.
#[derive(Debug)]
pub(crate) struct Console {
    ctx: Arc<Ctx>,
    sessions: Sessions,
    /// The latest heartbeat of each worker; `None` without a control bus (SQS).
    workers: Mutex<Option<Vec<WorkerSeen>>>,
    try_it: Option<Client>,
}

type Shared = Arc<Console>;

impl Console {
    fn viewer(&self, session: Option<&Session>) -> Viewer {
        Viewer {
            csrf: session.map(|s| s.csrf.clone()).unwrap_or_default(),
            operator: session.is_some_and(|s| s.operator),
            try_it: self.try_it.is_some(),
        }
    }

    fn workers(&self) -> Option<Vec<WorkerSeen>> {
        self.workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The operator's session, or the response that sends the browser to sign in.
    fn operator(&self, headers: &HeaderMap) -> Result<Session, Response> {
        match self.sessions.get(headers) {
            Some((_, session)) if session.operator => Ok(session),
            _ => Err(Redirect::to("/login").into_response()),
        }
    }

    /// A POST's session, checked (origin, CSRF, and operator when `need_operator`).
    fn post(
        &self,
        headers: &HeaderMap,
        csrf: &str,
        need_operator: bool,
    ) -> Result<(String, Session), Response> {
        self.sessions
            .check_post(headers, csrf, need_operator)
            .map_err(|refusal| {
                let viewer = self.viewer(self.sessions.get(headers).map(|(_, s)| s).as_ref());
                match refusal {
                    Refusal::NotSignedIn => message(
                        StatusCode::UNAUTHORIZED,
                        &viewer,
                        "Not signed in",
                        "this action needs an operator session: sign in first",
                    ),
                    Refusal::CrossSite => message(
                        StatusCode::FORBIDDEN,
                        &viewer,
                        "Refused",
                        "this request did not come from a console page (cross-site, or without the form's token): nothing was done",
                    ),
                }
            })
    }

    /// A failed command as a page: its message, with a status that says what kind.
    fn failure(&self, session: &Session, failure: &Failure) -> Response {
        let status = match failure.exit {
            Exit::Usage => StatusCode::BAD_REQUEST,
            Exit::NotFound => StatusCode::NOT_FOUND,
            Exit::Refused => StatusCode::CONFLICT,
            Exit::Unavailable | Exit::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            Exit::Ok | Exit::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        };
        message(
            status,
            &self.viewer(Some(session)),
            "That did not work",
            &failure.to_string(),
        )
    }
}

fn routes(console: Shared) -> Router {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/livez", get(live))
        .route("/readyz", get(ready))
        .route("/static/console.js", get(script))
        .route("/static/console.css", get(style))
        .merge(pages::routes())
        .merge(try_it::routes())
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// Serves the console on `listener` until `shutdown` resolves; listens to the workers'
/// heartbeats meanwhile.
pub async fn serve(
    ctx: Arc<Ctx>,
    options: ConsoleOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if options.operator_token.len() < 16 {
        anyhow::bail!("the operator token must be at least 16 characters");
    }
    let digest: [u8; 32] = sha2::Sha256::digest(options.operator_token.as_bytes()).into();
    if ctx.config.ingest.tokens.iter().any(|t| t.sha256 == digest) {
        anyhow::bail!(
            "the operator token is one of the ingest API's tokens: the console needs a token of its own"
        );
    }
    let console = Arc::new(Console {
        ctx,
        sessions: Sessions::new(&options.operator_token, options.secure_cookie),
        workers: Mutex::new(Some(Vec::new())),
        try_it: options.try_it,
    });
    let listening = tokio::spawn(listen_to_heartbeats(console.clone()));
    let served = axum::serve(listener, routes(console))
        .with_graceful_shutdown(shutdown)
        .await;
    listening.abort();
    served.map_err(anyhow::Error::from)
}

/// Keeps `console.workers` current from the control exchange; reconnects after a failure.
async fn listen_to_heartbeats(console: Shared) {
    loop {
        let broker = match console.ctx.broker().await {
            Ok(broker) => broker.clone(),
            Err(err) => {
                tracing::warn!(error = %err, "console: broker unavailable");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let mut listener = match Listener::subscribe(broker.as_ref()).await {
            Ok(Some(listener)) => listener,
            Ok(None) => {
                *console
                    .workers
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "console: cannot listen to heartbeats");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        loop {
            if let Err(err) = listener.poll(Duration::from_millis(500)).await {
                tracing::warn!(error = %err, "console: heartbeat listener failed");
                break;
            }
            // Forget workers silent for ten minutes (gone, not just late).
            listener.seen.retain(|_, seen| {
                seen.heard
                    .is_some_and(|at| at.elapsed() < Duration::from_secs(600))
            });
            *console
                .workers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(listener.snapshot());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Up (for a liveness probe; no session needed, nothing told).
async fn live() -> &'static str {
    "ok\n"
}

/// Ready when the ledger answers and the broker is connected (for a readiness probe).
async fn ready(State(console): State<Shared>) -> Response {
    let ledger = match console.ctx.ledger().await {
        Ok(ledger) => ledger.ping().await.map_err(|err| err.to_string()),
        Err(failure) => Err(failure.to_string()),
    };
    let broker = console
        .ctx
        .broker()
        .await
        .map(drop)
        .map_err(|f| f.to_string());
    match ledger.and(broker) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
    }
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/console.js"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/console.css"),
    )
        .into_response()
}

/// The session of this browser, made if it has none (sign-in and try-it forms need a CSRF
/// token before anyone signs in). Returns the cookie to set when one was made.
fn session_or_new(
    console: &Console,
    headers: &HeaderMap,
) -> Option<(String, Session, Option<HeaderValue>)> {
    if let Some((id, session)) = console.sessions.get(headers) {
        return Some((id, session, None));
    }
    let (id, session) = console.sessions.create(false)?;
    let cookie = console.sessions.set_cookie(&id);
    Some((id, session, Some(cookie)))
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn no_randomness(console: &Console) -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        &console.viewer(None),
        "Unavailable",
        "the system's random number source failed: no session can be made",
    )
}

fn login_form(viewer: &Viewer, error: Option<&str>) -> String {
    format!(
        "{}<form method=\"post\" action=\"/login\" id=\"login\">{}\
         <label>Operator token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required autofocus></label>\
         <button>Sign in</button></form>\
         <p class=\"hint\">The console's own token (<code>clipctl console</code> prints it, or reads \
         <code>CLIPFLEET_CONSOLE_TOKEN</code>), not the API's.</p>",
        error.map_or_else(String::new, |e| format!(
            "<p class=\"error\" id=\"message\">{}</p>",
            esc(e)
        )),
        viewer.csrf_input()
    )
}

async fn login_page(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let Some((_, session, cookie)) = session_or_new(&console, &headers) else {
        return no_randomness(&console);
    };
    if session.operator {
        return Redirect::to("/").into_response();
    }
    let viewer = console.viewer(Some(&session));
    with_cookie(
        page(
            StatusCode::OK,
            "Sign in",
            &viewer,
            &login_form(&viewer, None),
        ),
        cookie,
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: String,
}

async fn login(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let (id, session) = match console.post(&headers, &form.csrf, false) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if !console.sessions.token_matches(&form.token) {
        // A pause per wrong guess; the comparison itself is constant-time.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let viewer = console.viewer(Some(&session));
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            &viewer,
            &login_form(&viewer, Some("that is not the operator token")),
        );
    }
    // A new id for the signed-in session: an id planted before sign-in is worth nothing.
    console.sessions.remove(&id);
    let Some((new_id, _)) = console.sessions.create(true) else {
        return no_randomness(&console);
    };
    let cookie = console.sessions.set_cookie(&new_id);
    with_cookie(Redirect::to("/").into_response(), Some(cookie))
}

#[derive(Debug, Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let (id, _) = match console.post(&headers, &form.csrf, false) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    console.sessions.remove(&id);
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, console.sessions.clear_cookie());
    response
}
