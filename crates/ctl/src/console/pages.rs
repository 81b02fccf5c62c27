//! The operator's pages: the overview (live through `/api/overview`), a job's timeline, dead
//! letters (replay, purge), steering (drain, pause, resume), the janitor's plan and sweeps.
//! Actions confirm first and then run the `clipctl` command of the same name over the
//! console's [`Ctx`](crate::Ctx).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use clipfleet_ledger::{DeletionFilter, Job, LedgerErrorKind, SubjectKind};
use clipfleet_proto::{JobId, Timestamp};
use clipfleet_store::{ObjectKey, StoreErrorKind};
use clipfleet_telemetry::pseudonym;
use serde::Deserialize;
use serde_json::{Value, json};

use super::html::{esc, instant, message, page, took};
use super::{Console, Shared};
use crate::cli::{DlqArgs, Target};
use crate::exit::{CtlResult, Failure};
use crate::steer::{Steer, steer};
use crate::{queues, records, status};

/// Dead letters shown per pool.
const DEAD_SHOWN: u64 = 200;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(overview))
        .route("/api/overview", get(overview_data))
        .route("/jobs", get(find_job))
        .route("/jobs/{id}", get(job_page))
        .route("/dead", get(dead_letters))
        .route("/dead/{action}", post(dead_action))
        .route("/steer", post(steer_action))
        .route("/janitor", get(janitor_page))
}

fn now_ms() -> u64 {
    Timestamp::from_system_time(SystemTime::now()).unix_ms()
}

macro_rules! operator {
    ($console:expr, $headers:expr) => {
        match $console.operator(&$headers) {
            Ok(session) => session,
            Err(response) => return response,
        }
    };
}

async fn overview(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let session = operator!(console, headers);
    let viewer = console.viewer(Some(&session));
    let body = "\
<section><h2>Pools</h2><table id=\"pools\"><thead><tr><th>pool</th><th>model</th><th>ready</th>\
<th>in flight</th><th>delayed</th><th>consumers</th><th>dead</th><th>steer</th></tr></thead>\
<tbody></tbody></table></section>\
<section><h2>Workers</h2><table id=\"workers\"><thead><tr><th>worker</th><th>pool</th><th>device</th>\
<th>model</th><th>slots</th><th>state</th><th>heartbeat</th><th>steer</th></tr></thead><tbody></tbody></table>\
<p class=\"hint\" id=\"workers-note\"></p></section>\
<section class=\"plots\"><figure><figcaption>Jobs ended per minute, last hour \
(<span class=\"ok\">succeeded</span>, <span class=\"error\">failed</span>)</figcaption>\
<svg id=\"throughput\" viewBox=\"0 0 600 160\" role=\"img\" aria-label=\"jobs per minute\"></svg></figure>\
<figure><figcaption>Submit → end per minute, last hour (mean, <span class=\"max\">max</span>)</figcaption>\
<svg id=\"latency\" viewBox=\"0 0 600 160\" role=\"img\" aria-label=\"latency\"></svg></figure></section>\
<section><h2>Recent jobs</h2><form method=\"get\" action=\"/jobs\" class=\"inline\">\
<input name=\"id\" placeholder=\"job id\" aria-label=\"job id\"><button>Show job</button></form>\
<table id=\"recent\"><thead><tr><th>job</th><th>account</th><th>pool</th><th>status</th>\
<th>progress</th><th>submitted</th></tr></thead><tbody></tbody></table></section>\
<p class=\"hint\">Updated every 2 s: <span id=\"updated\">not yet</span> <span id=\"live-error\" class=\"error\"></span></p>";
    page(StatusCode::OK, "Overview", &viewer, body)
}

/// One minute of the last hour.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Minute {
    minute_ms: u64,
    succeeded: u64,
    failed: u64,
    mean_ms: u64,
    max_ms: u64,
}

fn job_row(job: &Job) -> Value {
    json!({
        "job_id": job.id.to_string(),
        "account": pseudonym(job.account_id.as_str()),
        "pool": job.pool.as_str(),
        "model": job.model,
        "status": job.status.as_str(),
        "progress_pct": job.progress_pct,
        "submitted_at_ms": job.submitted_at.unix_ms(),
    })
}

async fn overview_data(State(console): State<Shared>, headers: HeaderMap) -> Response {
    if console
        .sessions
        .get(&headers)
        .is_none_or(|(_, session)| !session.operator)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "not_signed_in" })),
        )
            .into_response();
    }
    let mut errors = Vec::new();
    let pools = match status::pool_statuses(&console.ctx).await {
        Ok(pools) => json!(pools),
        Err(err) => {
            errors.push(format!("broker: {err}"));
            json!([])
        }
    };
    let now = now_ms();
    let (recent, minutes) = match ledger_view(&console, now).await {
        Ok(view) => view,
        Err(err) => {
            errors.push(format!("ledger: {err}"));
            (Vec::new(), Vec::new())
        }
    };
    // Ages as of this answer, not as of the listener's last poll.
    let workers = console.workers().map(|mut workers| {
        for worker in &mut workers {
            worker.age_ms = now.saturating_sub(worker.at_ms);
        }
        workers
    });
    Json(json!({
        "now_ms": now,
        "pools": pools,
        "workers": workers,
        "control_bus": workers.is_some(),
        "recent": recent,
        "minutes": minutes,
        "errors": errors,
    }))
    .into_response()
}

async fn ledger_view(console: &Console, now: u64) -> CtlResult<(Vec<Value>, Vec<Minute>)> {
    let ledger = console.ctx.ledger().await?;
    let recent = ledger
        .recent_jobs(20)
        .await
        .map_err(anyhow::Error::from)?
        .iter()
        .map(job_row)
        .collect();
    let first = (now / 60_000).saturating_sub(59) * 60_000;
    let mut minutes: Vec<Minute> = (0..60)
        .map(|i| Minute {
            minute_ms: first + i * 60_000,
            ..Minute::default()
        })
        .collect();
    let mut weighted = vec![0u64; 60];
    for rate in ledger
        .ended_per_minute(Timestamp::from_unix_ms(first))
        .await
        .map_err(anyhow::Error::from)?
    {
        let Some(i) = rate
            .minute
            .unix_ms()
            .checked_sub(first)
            .map(|d| usize::try_from(d / 60_000).unwrap_or(usize::MAX))
            .filter(|i| *i < 60)
        else {
            continue;
        };
        let minute = &mut minutes[i];
        if rate.status == "succeeded" {
            minute.succeeded += rate.count;
        } else {
            minute.failed += rate.count;
        }
        weighted[i] += rate.mean_ms * rate.count;
        minute.max_ms = minute.max_ms.max(rate.max_ms);
    }
    for (minute, sum) in minutes.iter_mut().zip(weighted) {
        if let Some(mean) = sum.checked_div(minute.succeeded + minute.failed) {
            minute.mean_ms = mean;
        }
    }
    Ok((recent, minutes))
}

#[derive(Debug, Deserialize)]
struct FindJob {
    #[serde(default)]
    id: String,
}

async fn find_job(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(find): Query<FindJob>,
) -> Response {
    let session = operator!(console, headers);
    let id = find.id.trim();
    match id.parse::<JobId>() {
        Ok(job) => Redirect::to(&format!("/jobs/{job}")).into_response(),
        Err(_) => message(
            StatusCode::BAD_REQUEST,
            &console.viewer(Some(&session)),
            "No such job",
            &format!(
                "{id:?} is not a job id (26 characters of Crockford base 32, as the API returns)"
            ),
        ),
    }
}

async fn stored(console: &Console, key: &str) -> CtlResult<Option<bool>> {
    let Ok(key) = ObjectKey::new(key) else {
        return Ok(None);
    };
    match console.ctx.raw_store().await?.head(&key).await {
        Ok(_) => Ok(Some(true)),
        Err(err) if err.kind() == StoreErrorKind::NotFound => Ok(Some(false)),
        Err(err) => Err(anyhow::Error::from(err).into()),
    }
}

fn stored_text(stored: Option<bool>) -> &'static str {
    match stored {
        Some(true) => "stored",
        Some(false) => "gone",
        None => "none",
    }
}

async fn job_page(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = operator!(console, headers);
    let viewer = console.viewer(Some(&session));
    let Ok(id) = id.parse::<JobId>() else {
        return message(
            StatusCode::BAD_REQUEST,
            &viewer,
            "No such job",
            &format!("{id:?} is not a job id"),
        );
    };
    match job_body(&console, id).await {
        Ok(body) => page(StatusCode::OK, &format!("Job {id}"), &viewer, &body),
        Err(failure) => console.failure(&session, &failure),
    }
}

async fn job_body(console: &Console, id: JobId) -> CtlResult<String> {
    let ledger = console.ctx.ledger().await?;
    let job = ledger.get_job(id).await.map_err(|err| {
        let exit = if err.kind() == LedgerErrorKind::NotFound {
            crate::exit::Exit::NotFound
        } else {
            crate::exit::Exit::Failed
        };
        Failure::new(exit, anyhow::Error::from(err).context(format!("job {id}")))
    })?;
    let attempts = ledger.job_attempts(id).await.map_err(anyhow::Error::from)?;
    let worker_stages = ledger.job_stages(id).await.map_err(anyhow::Error::from)?;
    let deletions = ledger
        .list_deletions(
            &DeletionFilter {
                subject: Some((SubjectKind::Job, id.to_string())),
                since: None,
            },
            100,
        )
        .await
        .map_err(anyhow::Error::from)?;
    let photo = stored(console, &job.input_key).await?;
    let video = match &job.output_key {
        Some(key) => stored(console, key).await?,
        None => None,
    };

    let mut events: Vec<(u64, String)> = vec![(
        job.submitted_at.unix_ms(),
        format!("submitted to pool {}", job.pool),
    )];
    for (n, attempt) in attempts.iter().enumerate() {
        events.push((
            attempt.started_at.unix_ms(),
            format!("attempt {} started on worker {}", n + 1, attempt.worker),
        ));
    }
    if let Some(at) = job.finished_at {
        let mut what = format!("ended {}", job.status.as_str());
        if let Some(code) = job.error_code {
            let _ = write!(what, ": {}", code.as_str());
        }
        events.push((at.unix_ms(), what));
    }
    if let Some(at) = job.input_deleted_at {
        events.push((at.unix_ms(), "photo deleted".to_owned()));
    }
    if let Some(at) = job.output_deleted_at {
        events.push((at.unix_ms(), "video deleted".to_owned()));
    }
    for deletion in &deletions {
        let target = ObjectKey::new(&deletion.deletion.target)
            .map_or_else(|_| "a record".to_owned(), |key| key.redacted().to_string());
        events.push((
            deletion.at.unix_ms(),
            format!(
                "audit: {} deleted by {} ({}){}",
                target,
                deletion.deletion.actor,
                deletion.deletion.reason.as_str(),
                if deletion.deletion.verified {
                    ", verified gone"
                } else {
                    ", not yet verified"
                }
            ),
        ));
    }
    events.sort_by_key(|(at, _)| *at);

    let submitted = job.submitted_at.unix_ms();
    let first_start = attempts.first().map(|a| a.started_at.unix_ms());
    let last_start = attempts.last().map(|a| a.started_at.unix_ms());
    let finished = job.finished_at.map(Timestamp::unix_ms);
    let span = |from: Option<u64>, to: Option<u64>| match (from, to) {
        (Some(from), Some(to)) => took(to.saturating_sub(from)),
        _ => "–".to_owned(),
    };
    let mut body = String::new();
    let _ = write!(
        body,
        "<table class=\"facts\" id=\"job\">\
         <tr><th>status</th><td id=\"job-status\">{status}</td></tr>\
         <tr><th>account</th><td>{account} <span class=\"hint\">(pseudonym)</span></td></tr>\
         <tr><th>pool / model</th><td>{pool} / {model}</td></tr>\
         <tr><th>attempts</th><td>{attempts}</td></tr>\
         <tr><th>error</th><td>{error}</td></tr>\
         <tr><th>photo</th><td id=\"photo-stored\">{photo}</td></tr>\
         <tr><th>video</th><td id=\"video-stored\">{video}{expires}</td></tr></table>\
         <p class=\"hint\">Media is the user's alone: the console says whether it is stored, never shows it.</p>\
         <h2>Stages</h2><table class=\"facts\" id=\"stages\">\
         <tr><th>queued (submitted → first start)</th><td>{queued}</td></tr>\
         <tr><th>last attempt (start → end)</th><td>{ran}</td></tr>\
         <tr><th>end to end (submitted → end)</th><td>{total}</td></tr>\
         <tr><th>photo lifetime (submitted → deleted)</th><td>{photo_life}</td></tr></table>\
         {worker_stages}<h2>Timeline</h2><ol class=\"timeline\" id=\"timeline\">",
        status = esc(job.status.as_str()),
        account = esc(&pseudonym(job.account_id.as_str())),
        pool = esc(job.pool.as_str()),
        model = esc(&job.model),
        attempts = job.attempts,
        error = job.error_code.map_or_else(
            || "none".to_owned(),
            |code| format!(
                "{}: {}",
                esc(code.as_str()),
                esc(job.error_message.as_deref().unwrap_or(""))
            )
        ),
        photo = stored_text(photo),
        video = stored_text(video),
        expires = job.output_expires_at.map_or_else(String::new, |at| format!(
            " (expires {})",
            instant(at.unix_ms())
        )),
        queued = span(Some(submitted), first_start),
        ran = span(last_start, finished),
        total = span(Some(submitted), finished),
        photo_life = span(
            Some(submitted),
            job.input_deleted_at.map(Timestamp::unix_ms)
        ),
        worker_stages = stages_table(&worker_stages),
    );
    for (at, what) in &events {
        let _ = write!(
            body,
            "<li><time>{}</time> <span class=\"after\">+{}</span> {}</li>",
            instant(*at),
            took(at.saturating_sub(submitted)),
            esc(what)
        );
    }
    body.push_str("</ol>");
    Ok(body)
}

/// What the worker measured in the successful attempt, one row per stage.
fn stages_table(stages: &[(String, u64)]) -> String {
    if stages.is_empty() {
        return String::new();
    }
    let mut table = String::from(
        "<h2>In the worker (successful attempt)</h2><table class=\"facts\" id=\"worker-stages\">",
    );
    for (stage, ms) in stages {
        let _ = write!(
            table,
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(&stage.replace('_', " ")),
            took(*ms)
        );
    }
    table.push_str("</table>");
    table
}

async fn dead_letters(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let session = operator!(console, headers);
    let viewer = console.viewer(Some(&session));
    let mut body = String::new();
    for pool in &console.ctx.config.pools {
        let letters = match queues::peek(&console.ctx, &pool.name, DEAD_SHOWN).await {
            Ok(letters) => letters,
            Err(failure) => return console.failure(&session, &failure),
        };
        let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
        for letter in &letters {
            *reasons.entry(letter.reason.as_str()).or_default() += 1;
        }
        let name = esc(pool.name.as_str());
        let _ = write!(
            body,
            "<section class=\"pool\" data-pool=\"{name}\"><h2>Pool {name}: {n} dead letter(s){more}</h2>",
            n = letters.len(),
            more = if letters.len() as u64 >= DEAD_SHOWN {
                " or more"
            } else {
                ""
            },
        );
        if letters.is_empty() {
            body.push_str("<p>None.</p></section>");
            continue;
        }
        body.push_str(
            "<table class=\"reasons\"><thead><tr><th>reason</th><th>count</th></tr></thead><tbody>",
        );
        for (reason, n) in &reasons {
            let _ = write!(body, "<tr><td>{}</td><td>{n}</td></tr>", esc(reason));
        }
        body.push_str("</tbody></table><table class=\"letters\"><thead><tr><th>job</th><th>account</th>\
            <th>reason</th><th>deliveries</th><th>retries</th><th>priority</th><th>submitted</th></tr></thead><tbody>");
        for letter in &letters {
            let job = letter.job_id.as_deref().map_or_else(
                || "(not a job)".to_owned(),
                |id| format!("<a href=\"/jobs/{0}\">{0}</a>", esc(id)),
            );
            let _ = write!(
                body,
                "<tr><td>{job}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&letter
                    .account_id
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), pseudonym)),
                esc(&letter.reason),
                letter.deliveries,
                letter.retries,
                esc(letter.priority.as_deref().unwrap_or("-")),
                letter
                    .submitted_at_ms
                    .map_or_else(|| "-".to_owned(), instant),
            );
        }
        let _ = write!(
            body,
            "</tbody></table><div class=\"actions\">\
             <form method=\"post\" action=\"/dead/replay\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"pool\" value=\"{name}\"><button id=\"replay-{name}\">Replay…</button></form>\
             <form method=\"post\" action=\"/dead/purge\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"pool\" value=\"{name}\"><button class=\"danger\" id=\"purge-{name}\">Purge…</button></form>\
             </div></section>",
            csrf = viewer.csrf_input(),
        );
    }
    page(StatusCode::OK, "Dead letters", &viewer, &body)
}

#[derive(Debug, Deserialize)]
struct PoolAction {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    confirm: String,
}

/// A page asking to confirm `what`, re-posting `fields` with `confirm=yes`.
fn confirm_page(
    console: &Console,
    session: &super::Session,
    action: &str,
    what: &str,
    fields: &[(&str, &str)],
    danger: bool,
) -> Response {
    let viewer = console.viewer(Some(session));
    let mut hidden = viewer.csrf_input();
    for (name, value) in fields {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    page(
        StatusCode::OK,
        "Confirm",
        &viewer,
        &format!(
            "<p id=\"confirm-text\">{}</p><form method=\"post\" action=\"{}\">{hidden}\
             <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <button id=\"confirm\"{}>Yes, do it</button> <a href=\"/\">Cancel</a></form>",
            esc(what),
            esc(action),
            if danger { " class=\"danger\"" } else { "" }
        ),
    )
}

async fn dead_action(
    State(console): State<Shared>,
    headers: HeaderMap,
    Path(action): Path<String>,
    Form(form): Form<PoolAction>,
) -> Response {
    let (_, session) = match console.post(&headers, &form.csrf, true) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let viewer = console.viewer(Some(&session));
    let pool = match console.ctx.pool_name(form.pool.trim()) {
        Ok(pool) => pool,
        Err(failure) => return console.failure(&session, &failure),
    };
    let purge = match action.as_str() {
        "replay" => false,
        "purge" => true,
        other => {
            return message(
                StatusCode::NOT_FOUND,
                &viewer,
                "No such action",
                &format!("{other:?}: dead letters can be replayed or purged"),
            );
        }
    };
    if form.confirm != "yes" {
        let what = if purge {
            format!(
                "Purge the dead letters of pool {pool}? They are dropped and their photos deleted for good (audited)."
            )
        } else {
            format!(
                "Replay the dead letters of pool {pool}? Each goes back to its jobs queue; one whose account may no longer run jobs has its photo deleted instead (audited)."
            )
        };
        return confirm_page(
            &console,
            &session,
            &format!("/dead/{action}"),
            &what,
            &[("pool", pool.as_str())],
            purge,
        );
    }
    let args = DlqArgs {
        pool: Some(pool.to_string()),
        limit: 1000,
    };
    let done = if purge {
        queues::purge(&console.ctx, &args, true).await
    } else {
        queues::replay(&console.ctx, &args).await
    };
    match done {
        Ok(report) => message(StatusCode::OK, &viewer, "Done", report.text.trim()),
        Err(failure) => console.failure(&session, &failure),
    }
}

#[derive(Debug, Deserialize)]
struct SteerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    worker: String,
    #[serde(default)]
    confirm: String,
}

async fn steer_action(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<SteerForm>,
) -> Response {
    let (_, session) = match console.post(&headers, &form.csrf, true) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let viewer = console.viewer(Some(&session));
    let what = match form.action.as_str() {
        "drain" => Steer::Drain,
        "pause" => Steer::Pause,
        "resume" => Steer::Resume,
        other => {
            return message(
                StatusCode::BAD_REQUEST,
                &viewer,
                "No such action",
                &format!("{other:?}: a pool or a worker can be drained, paused or resumed"),
            );
        }
    };
    let (pool, worker) = (form.pool.trim(), form.worker.trim());
    let whom = match (pool.is_empty(), worker.is_empty()) {
        (false, true) => format!("every worker of pool {pool}"),
        (true, false) => format!("worker {worker}"),
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                &viewer,
                "Whom?",
                "name either a pool or a worker",
            );
        }
    };
    if form.confirm != "yes" {
        let effect = match what {
            Steer::Drain => "it stops taking jobs, finishes the ones it holds and exits",
            Steer::Pause => "it stops taking jobs and stays up",
            Steer::Resume => "it takes jobs again",
        };
        return confirm_page(
            &console,
            &session,
            "/steer",
            &format!(
                "{} {whom}? ({effect}; no job is lost: what it holds finishes or goes back to the queue)",
                form.action
            ),
            &[
                ("action", form.action.as_str()),
                ("pool", pool),
                ("worker", worker),
            ],
            what == Steer::Drain,
        );
    }
    let target = Target {
        pool: (!pool.is_empty()).then(|| pool.to_owned()),
        worker: (!worker.is_empty()).then(|| worker.to_owned()),
        all: false,
    };
    match steer(&console.ctx, what, &target).await {
        Ok(report) => message(StatusCode::OK, &viewer, "Sent", report.text.trim()),
        Err(failure) => console.failure(&session, &failure),
    }
}

async fn janitor_page(State(console): State<Shared>, headers: HeaderMap) -> Response {
    let session = operator!(console, headers);
    let viewer = console.viewer(Some(&session));
    let plan = match records::janitor_plan(&console.ctx).await {
        Ok(report) => report.json,
        Err(failure) => return console.failure(&session, &failure),
    };
    let sweeps = match console.ctx.ledger().await {
        Ok(ledger) => match ledger.recent_sweeps(20).await {
            Ok(sweeps) => sweeps,
            Err(err) => return console.failure(&session, &anyhow::Error::from(err).into()),
        },
        Err(failure) => return console.failure(&session, &failure),
    };
    let mut body = String::from(
        "<h2>Plan: what a sweep would delete now</h2><table id=\"plan\"><thead><tr><th>rule</th>\
         <th>actions</th><th>objects</th><th>rows</th><th>oldest</th></tr></thead><tbody>",
    );
    let rules = plan["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        body.push_str("<tr><td colspan=\"5\">nothing is due</td></tr>");
    }
    for rule in &rules {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(rule["rule"].as_str().unwrap_or("?")),
            rule["actions"],
            rule["objects"],
            rule["rows"],
            took(rule["oldest_age_s"].as_u64().unwrap_or(0) * 1000),
        );
    }
    body.push_str("</tbody></table>");
    // What was kept on purpose, counted (subjects name accounts: not shown).
    let mut kept: BTreeMap<(String, String), u64> = BTreeMap::new();
    for item in plan["kept"].as_array().into_iter().flatten() {
        let key = (
            item["rule"].as_str().unwrap_or("?").to_owned(),
            item["why"].as_str().unwrap_or("?").to_owned(),
        );
        *kept.entry(key).or_default() += 1;
    }
    if !kept.is_empty() {
        body.push_str("<p>Kept on purpose: ");
        let parts: Vec<String> = kept
            .iter()
            .map(|((rule, why), n)| format!("{} × {} ({})", n, esc(rule), esc(why)))
            .collect();
        body.push_str(&parts.join("; "));
        body.push_str("</p>");
    }
    body.push_str(
        "<h2>Last sweeps</h2><table id=\"sweeps\"><thead><tr><th>started</th><th>took</th>\
         <th>deleted, by rule</th><th>accounts purged</th><th>failures</th><th>recovered</th></tr></thead><tbody>",
    );
    if sweeps.is_empty() {
        body.push_str("<tr><td colspan=\"6\">no sweep recorded yet</td></tr>");
    }
    for record in &sweeps {
        let sweep = &record.sweep;
        let deleted = if sweep.deleted.is_empty() {
            "nothing".to_owned()
        } else {
            sweep
                .deleted
                .iter()
                .map(|(rule, n)| format!("{} {n}", esc(rule)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{deleted}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            instant(sweep.started_at.unix_ms()),
            took(u64::try_from(sweep.took.as_millis()).unwrap_or(u64::MAX)),
            sweep.accounts_purged,
            sweep.failures,
            sweep.recovered
        );
    }
    body.push_str("</tbody></table>");
    page(StatusCode::OK, "Janitor", &viewer, &body)
}
