//! The web console and the try-it page in a real browser: Debian's Chromium, headless, driven
//! over WebDriver (`clipfleet_testkit::Browser`), against the embedded fleet.
//!
//! - An operator signs in (a wrong token is refused), sees a job submitted through the API
//!   appear and end, opens its timeline (photo gone, never shown), pauses the pool, finds a
//!   dead letter, replays it with confirmation and sees it run, drains one worker, and reads
//!   the janitor's plan and sweeps.
//! - Refused: every page and action without a session, and a cross-site form post from another
//!   site's page (nothing happens: the worker it aims at keeps running).
//! - Try it: a photo picked in the page becomes a video that plays in the page (`readyState`,
//!   `duration`, `currentTime` advancing), with the proof that the photo is gone; another
//!   browser cannot fetch that video.
//!
//! Screenshots of each page go to `$CARGO_TARGET_TMPDIR/console-screenshots/` (not committed).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clipfleet_broker::{QueueRef, Receive};
use clipfleet_client::Client;
use clipfleet_config::Config;
use clipfleet_ctl::Ctx;
use clipfleet_ctl::cli::Output;
use clipfleet_ctl::console::{self, ConsoleOptions};
use clipfleet_fleet::{DEV_TOKEN, Fleet, FleetOptions};
use clipfleet_proto::PoolName;
use clipfleet_testkit::{Browser, repo_root, small_noop_manifest};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const OPERATOR_TOKEN: &str = "operator-token-for-the-browser-test";
const WAIT: Duration = Duration::from_secs(30);

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

fn config(overrides: &[(&str, &str)]) -> Config {
    let env = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::load(None, &env).expect("embedded config")
}

/// The console over a running fleet, until the returned sender is dropped or fired.
async fn serve_console(fleet: &Fleet, try_it: bool) -> (String, oneshot::Sender<()>) {
    let ctx = Arc::new(Ctx::for_fleet(fleet, Output::Json));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ConsoleOptions {
        operator_token: OPERATOR_TOKEN.to_owned(),
        secure_cookie: false,
        try_it: try_it.then(|| Client::new(fleet.base_url(), DEV_TOKEN).expect("client")),
    };
    tokio::spawn(console::serve(ctx, options, listener, async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

fn js_str(value: &str) -> String {
    serde_json::to_string(value).expect("a JSON string")
}

/// A page on another site (`localhost` is not `127.0.0.1`'s site) whose form posts a drain to
/// the console as soon as it loads: what a malicious page would try.
async fn evil_site(console_url: &str, worker: &str) -> String {
    let form = format!(
        "<!doctype html><html><body><form id=\"f\" method=\"post\" action=\"{console_url}/steer\">\
         <input name=\"action\" value=\"drain\"><input name=\"worker\" value=\"{worker}\">\
         <input name=\"confirm\" value=\"yes\"><input name=\"csrf\" value=\"guess\"></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let form = form.clone();
            async move { axum::response::Html(form) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://localhost:{port}/")
}

/// On the overview, clicks `action` (drain, pause, resume) of pool `default`: the confirmation.
async fn steer_pool(browser: &Browser, url: &str, action: &str) -> anyhow::Result<()> {
    browser.goto(&format!("{url}/")).await?;
    browser
        .wait_for(
            "the pools table",
            "return document.querySelector('#pools tr[data-pool=default]')",
            WAIT,
        )
        .await?;
    browser
        .click(&format!(
            "#pools tr[data-pool=default] button[data-action={action}]"
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_fleet_from_the_console_in_a_browser() -> anyhow::Result<()> {
    let mut options = FleetOptions::embedded()?;
    options.config = config(&[("CLIPFLEET_POOLS__0__MODEL", "noop")]);
    options.manifest = small_noop_manifest("ctl-console");
    options.workers_per_pool = 2;
    options.worker_slots = 2;
    options.janitor_every = Some(Duration::from_millis(500));
    let fleet = Fleet::start(options).await?;
    let (url, _stop) = serve_console(&fleet, false).await;
    let client = Client::new(fleet.base_url(), DEV_TOKEN)?;
    client.ensure_account("acct-console", "1990-01-01").await?;
    let photo = Bytes::from(std::fs::read(
        repo_root().join("models/samples/hillside.jpg"),
    )?);

    // Without a session: pages send to sign-in, data and actions are refused.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = anonymous.get(format!("{url}/")).send().await?;
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/login");
    let data = anonymous.get(format!("{url}/api/overview")).send().await?;
    assert_eq!(data.status(), 401);
    let action = anonymous
        .post(format!("{url}/steer"))
        .form(&[("action", "drain"), ("pool", "default"), ("confirm", "yes")])
        .send()
        .await?;
    assert_eq!(action.status(), 401, "an action without a session");
    for path in ["/dead", "/janitor", "/jobs/01J00000000000000000000000"] {
        let page = anonymous.get(format!("{url}{path}")).send().await?;
        assert_eq!(page.status(), 303, "{path} without a session");
    }

    let browser = Browser::start().await?;
    let result = operator_session(&browser, &fleet, &client, &url, photo).await;
    if result.is_err() {
        let _ = browser
            .screenshot(&shots().join("failure-operator.png"))
            .await;
    }
    browser.quit().await?;
    result?;
    fleet.shutdown().await?;
    Ok(())
}

async fn operator_session(
    browser: &Browser,
    fleet: &Fleet,
    client: &Client,
    url: &str,
    photo: Bytes,
) -> anyhow::Result<()> {
    // Sign in: a wrong token first.
    browser.goto(&format!("{url}/")).await?;
    anyhow::ensure!(browser.url().await?.ends_with("/login"), "sent to sign in");
    browser
        .type_into("input[name=token]", "not-the-token")
        .await?;
    browser.click("#login button").await?;
    anyhow::ensure!(
        browser.text("#message").await? == "that is not the operator token",
        "a wrong token is refused"
    );
    let cookie_visible = browser.execute("return document.cookie", vec![]).await?;
    anyhow::ensure!(
        cookie_visible == "",
        "the session cookie is HttpOnly: {cookie_visible}"
    );
    browser.screenshot(&shots().join("login.png")).await?;
    browser
        .type_into("input[name=token]", OPERATOR_TOKEN)
        .await?;
    browser.click("#login button").await?;
    // The sign-in answers, then the page moves: wait for the overview (checking the URL at once
    // raced the navigation on a loaded machine).
    browser
        .wait_for(
            "signed in, on the overview",
            "return location.pathname === '/' && document.readyState === 'complete';",
            Duration::from_secs(15),
        )
        .await?;
    anyhow::ensure!(
        browser.url().await? == format!("{url}/"),
        "signed in, on the overview"
    );

    // A job submitted through the API appears, live, and ends.
    let accepted = client
        .submit("acct-console", photo.clone(), json!({}), None)
        .await?;
    let job = accepted.job_id.clone();
    browser
        .wait_for(
            "the job appears on the overview and succeeds",
            &format!(
                "const row = document.querySelector('#recent tr[data-job=' + {0} + ']'); \
                 return row && row.dataset.status === 'succeeded'",
                js_str(&js_str(&job))
            ),
            WAIT,
        )
        .await?;
    browser
        .wait_for(
            "both workers are heard",
            "return document.querySelectorAll('#workers tr[data-state=serving]').length === 2",
            WAIT,
        )
        .await?;
    let plotted = browser
        .execute(
            "return document.querySelectorAll('#throughput rect').length",
            vec![],
        )
        .await?;
    anyhow::ensure!(
        plotted.as_u64() >= Some(1),
        "the throughput plot shows the job"
    );
    browser.screenshot(&shots().join("overview.png")).await?;

    // Its page: the timeline, the photo gone, no media and no account id.
    browser
        .click(&format!("#recent a[href='/jobs/{job}']"))
        .await?;
    anyhow::ensure!(browser.text("#job-status").await? == "succeeded");
    anyhow::ensure!(
        browser.text("#photo-stored").await? == "gone",
        "the photo is gone"
    );
    let stages = browser.text("#worker-stages").await?;
    anyhow::ensure!(
        stages.contains("fetch") && stages.contains("infer") && stages.contains("encode"),
        "the worker's stages: {stages}"
    );
    let timeline = browser.text("#timeline").await?;
    anyhow::ensure!(
        timeline.contains("submitted to pool default")
            && timeline.contains("attempt 1 started")
            && timeline.contains("photo deleted"),
        "timeline: {timeline}"
    );
    let html = browser
        .execute("return document.documentElement.outerHTML", vec![])
        .await?;
    let html = html.as_str().unwrap_or_default();
    anyhow::ensure!(!html.contains("acct-console"), "accounts by pseudonym only");
    anyhow::ensure!(
        !html.contains("<video") && !html.contains("<img"),
        "no media shown to an operator"
    );
    browser.screenshot(&shots().join("job.png")).await?;

    // Pause the pool (through the confirmation), then a job waits in the queue.
    steer_pool(browser, url, "pause").await?;
    anyhow::ensure!(
        browser
            .text("#confirm-text")
            .await?
            .starts_with("pause every worker of pool default")
    );
    browser.click("#confirm").await?;
    anyhow::ensure!(browser.text("#message").await?.contains("pause sent"));
    browser.goto(&format!("{url}/")).await?;
    browser
        .wait_for(
            "both workers paused",
            "return document.querySelectorAll('#workers tr[data-state=draining]').length === 2",
            WAIT,
        )
        .await?;

    // A dead letter: a job taken off the queue and dead-lettered as a broker would.
    let dead_job = client
        .submit("acct-console", photo, json!({}), None)
        .await?
        .job_id;
    let pool = PoolName::new("default")?;
    let started = Instant::now();
    let delivery = loop {
        let got = fleet
            .broker
            .receive(
                &QueueRef::Jobs(pool.clone()),
                Receive::new(1, Duration::from_secs(30), Duration::from_millis(500)),
            )
            .await?;
        if let Some(delivery) = got.into_iter().next() {
            break delivery;
        }
        anyhow::ensure!(started.elapsed() < WAIT, "the job reached the queue");
    };
    fleet
        .broker
        .dead_letter(&delivery.lease, "delivery_limit")
        .await?;
    browser.click("header a[href='/dead']").await?;
    let letters = browser
        .text("section[data-pool=default] table.letters")
        .await?;
    anyhow::ensure!(
        letters.contains(&dead_job) && letters.contains("delivery_limit"),
        "the dead letter is listed with its reason: {letters}"
    );
    browser
        .screenshot(&shots().join("dead-letters.png"))
        .await?;
    browser.click("#replay-default").await?;
    anyhow::ensure!(
        browser
            .text("#confirm-text")
            .await?
            .starts_with("Replay the dead letters of pool default?")
    );
    browser.click("#confirm").await?;
    let done = browser.text("#message").await?;
    anyhow::ensure!(done.starts_with("replayed 1 job(s)"), "replayed: {done}");

    // Resume, and the replayed job runs.
    steer_pool(browser, url, "resume").await?;
    browser.click("#confirm").await?;
    let ended = client
        .wait(&dead_job, Duration::from_millis(100), WAIT, |_| {})
        .await?;
    anyhow::ensure!(
        ended.status == "succeeded",
        "the replayed job ran: {ended:?}"
    );

    // Drain one worker: it finishes and exits; the other keeps serving.
    browser.goto(&format!("{url}/")).await?;
    let first = browser
        .wait_for(
            "both workers serve again",
            "const rows = document.querySelectorAll('#workers tr[data-state=serving]'); \
             return rows.length === 2 && rows[0].dataset.worker",
            WAIT,
        )
        .await?;
    let first = first.as_str().unwrap_or_default().to_owned();
    let second = fleet
        .worker_ids()
        .into_iter()
        .map(|w| w.to_string())
        .find(|w| *w != first)
        .ok_or_else(|| anyhow::anyhow!("a second worker"))?;
    browser
        .click(&format!(
            "#workers tr[data-worker={}] button[data-action=drain]",
            js_str(&first)
        ))
        .await?;
    anyhow::ensure!(
        browser
            .text("#confirm-text")
            .await?
            .starts_with(&format!("drain worker {first}"))
    );
    browser.click("#confirm").await?;
    anyhow::ensure!(browser.text("#message").await?.contains("drain sent"));
    let started = Instant::now();
    while fleet.workers_running() != 1 {
        anyhow::ensure!(started.elapsed() < WAIT, "the drained worker exits");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A cross-site page's form post is refused and does nothing.
    let evil = evil_site(url, &second).await;
    browser.goto(&evil).await?;
    browser
        .wait_for(
            "the cross-site post is answered",
            "return location.host.startsWith('127.0.0.1') && document.readyState === 'complete'",
            WAIT,
        )
        .await?;
    let refused = browser.text("main").await?;
    anyhow::ensure!(
        refused.contains("Refused") || refused.contains("Not signed in"),
        "cross-site post refused: {refused}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    anyhow::ensure!(fleet.workers_running() == 1, "the other worker still runs");

    // The janitor: its plan and its last sweeps, counts per rule.
    browser.goto(&format!("{url}/janitor")).await?;
    let sweeps = browser.text("#sweeps").await?;
    anyhow::ensure!(
        !sweeps.contains("no sweep recorded yet"),
        "sweeps: {sweeps}"
    );
    anyhow::ensure!(browser.text("#plan").await?.contains("rule"));
    browser.screenshot(&shots().join("janitor.png")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_try_it_page_turns_a_photo_into_a_video_that_plays() -> anyhow::Result<()> {
    let mut options = FleetOptions::embedded()?;
    options.config = config(&[]);
    options.workers_per_pool = 1;
    options.janitor_every = None;
    let fleet = Fleet::start(options).await?;
    let (url, _stop) = serve_console(&fleet, true).await;
    let browser = Browser::start().await?;
    let result = try_it(&browser, &url).await;
    if result.is_err() {
        let _ = browser
            .screenshot(&shots().join("failure-try-it.png"))
            .await;
    }
    browser.quit().await?;
    let job = result?;

    // Another browser (no session) gets neither the status nor the video.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let video = anonymous
        .get(format!("{url}/try/{job}/video"))
        .send()
        .await?;
    assert_eq!(
        video.status(),
        303,
        "a video needs the browser that asked for it"
    );
    let status = anonymous
        .get(format!("{url}/try/{job}/status"))
        .send()
        .await?;
    assert_eq!(status.status(), 404);
    fleet.shutdown().await?;
    Ok(())
}

async fn try_it(browser: &Browser, url: &str) -> anyhow::Result<String> {
    browser.goto(&format!("{url}/try")).await?;
    // Bad input first: a file that is not a photo gets ingest's stable code, on the form.
    let not_a_photo = std::env::temp_dir()
        .canonicalize()?
        .join(format!("not-a-photo-{}.jpg", std::process::id()));
    std::fs::write(&not_a_photo, b"this is text, not a JPEG")?;
    browser
        .type_into("#photo", &not_a_photo.display().to_string())
        .await?;
    browser.click("#make").await?;
    let refused = browser.text("#message").await?;
    let _ = std::fs::remove_file(&not_a_photo);
    anyhow::ensure!(
        refused.contains("unsupported_format") || refused.contains("invalid"),
        "bad photo: {refused}"
    );

    let photo = repo_root()
        .join("models/samples/hillside.jpg")
        .canonicalize()?;
    browser
        .type_into("#photo", &photo.display().to_string())
        .await?;
    browser
        .execute(
            "document.getElementById('motion').value = 'pan_left'; \
             document.getElementById('aspect').value = '9:16'",
            vec![],
        )
        .await?;
    browser.click("#make").await?;
    let job = browser
        .wait_for(
            "the job page",
            "return document.getElementById('try-job')?.dataset.job",
            WAIT,
        )
        .await?
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let played = browser
        .wait_for(
            "the video plays",
            "const v = document.getElementById('try-video'); \
             return !v.hidden && v.readyState >= 2 && v.duration > 0 && v.currentTime > 0 \
               && { duration: v.duration, width: v.videoWidth, height: v.videoHeight }",
            Duration::from_secs(120),
        )
        .await?;
    anyhow::ensure!(
        played["duration"].as_f64() > Some(1.0),
        "a clip of seconds: {played}"
    );
    // The 4:3 sample photo, asked for 9:16: a portrait video at the model's pixel budget.
    anyhow::ensure!(
        played["width"].as_u64() == Some(384) && played["height"].as_u64() == Some(672),
        "a 9:16 video: {played}"
    );
    browser
        .wait_for(
            "the proof that the photo is gone",
            "return document.getElementById('try-proof').dataset.gone === 'true'",
            WAIT,
        )
        .await?;
    let proof = browser.text("#try-proof").await?;
    anyhow::ensure!(proof.contains("not found (gone)"), "proof: {proof}");
    anyhow::ensure!(browser.text("#try-status").await? == "succeeded");
    browser.screenshot(&shots().join("try-it.png")).await?;
    Ok(job)
}

/// A POST: path, form, the status and a piece of the message it must answer with.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

/// A browser-less client of the console that keeps its session cookie.
struct Operator {
    http: reqwest::Client,
    url: String,
    cookie: String,
    csrf: String,
}

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("clipfleet_console="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

impl Operator {
    async fn sign_in(url: &str, token: &str) -> anyhow::Result<(Operator, reqwest::Response)> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let login = http.get(format!("{url}/login")).send().await?;
        let cookie = session_cookie(&login).ok_or_else(|| anyhow::anyhow!("a session cookie"))?;
        let csrf = csrf_of(&login.text().await?);
        let answer = http
            .post(format!("{url}/login"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str()), ("token", token)])
            .send()
            .await?;
        let mut operator = Operator {
            http,
            url: url.to_owned(),
            cookie,
            csrf,
        };
        if let Some(signed_in) = session_cookie(&answer) {
            operator.cookie = signed_in;
            let overview = operator.get("/").await?;
            operator.csrf = csrf_of(&overview.text().await?);
        }
        Ok((operator, answer))
    }

    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .send()
            .await?)
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_to_every_form_gets_a_clear_message() -> anyhow::Result<()> {
    let mut options = FleetOptions::embedded()?;
    options.config = config(&[("CLIPFLEET_POOLS__0__MODEL", "noop")]);
    options.manifest = small_noop_manifest("ctl-console-bad");
    options.workers_per_pool = 1;
    options.janitor_every = None;
    let fleet = Fleet::start(options).await?;

    // The API's token is no operator token.
    let ctx = Arc::new(Ctx::for_fleet(&fleet, Output::Json));
    let refused = console::serve(
        ctx.clone(),
        ConsoleOptions {
            operator_token: DEV_TOKEN.to_owned(),
            secure_cookie: false,
            try_it: None,
        },
        TcpListener::bind("127.0.0.1:0").await?,
        async {},
    )
    .await
    .expect_err("the API token refused as the operator token");
    assert!(
        refused.to_string().contains("a token of its own"),
        "{refused}"
    );

    let (url, _stop) = serve_console(&fleet, false).await;
    let (_, wrong) = Operator::sign_in(&url, "not-the-operator-token").await?;
    assert_eq!(wrong.status(), 401);
    assert!(
        wrong
            .text()
            .await?
            .contains("that is not the operator token")
    );
    let (op, answer) = Operator::sign_in(&url, OPERATOR_TOKEN).await?;
    assert_eq!(answer.status(), 303);
    let csrf = op.csrf.clone();
    assert_eq!(csrf.len(), 64, "a CSRF token on every page");

    let unknown_job = "01J0000000000000000000000Z";
    let gets: &[(&str, u16, &str)] = &[
        ("/jobs?id=nonsense", 400, "is not a job id"),
        ("/jobs?id=", 400, "is not a job id"),
        ("/jobs/abc", 400, "is not a job id"),
        (&format!("/jobs/{unknown_job}"), 404, "no job"),
        ("/try", 404, "served by `clipctl up`"),
        ("/try/abc/video", 404, "this browser submitted no such job"),
    ];
    for (path, status, text) in gets {
        let answer = op.get(path).await?;
        assert_eq!(answer.status().as_u16(), *status, "GET {path}");
        let body = answer.text().await?;
        assert!(body.contains(text), "GET {path}: {body}");
    }
    let posts: &[Case<'_>] = &[
        (
            "/steer",
            vec![("csrf", &csrf), ("action", "explode"), ("pool", "default")],
            400,
            "can be drained, paused or resumed",
        ),
        (
            "/steer",
            vec![("csrf", &csrf), ("action", "drain")],
            400,
            "name either a pool or a worker",
        ),
        (
            "/steer",
            vec![
                ("csrf", &csrf),
                ("action", "drain"),
                ("pool", "default"),
                ("worker", "w"),
            ],
            400,
            "name either a pool or a worker",
        ),
        (
            "/steer",
            vec![
                ("csrf", &csrf),
                ("action", "pause"),
                ("pool", "nope"),
                ("confirm", "yes"),
            ],
            404,
            "no pool &quot;nope&quot;",
        ),
        (
            "/steer",
            vec![
                ("csrf", &csrf),
                ("action", "pause"),
                ("worker", "bad id!"),
                ("confirm", "yes"),
            ],
            400,
            "worker",
        ),
        (
            "/steer",
            vec![("action", "drain"), ("pool", "default"), ("confirm", "yes")],
            403,
            "nothing was done",
        ),
        (
            "/steer",
            vec![
                ("csrf", "0123"),
                ("action", "drain"),
                ("pool", "default"),
                ("confirm", "yes"),
            ],
            403,
            "nothing was done",
        ),
        (
            "/dead/replay",
            vec![("csrf", &csrf), ("pool", "nope")],
            404,
            "no pool &quot;nope&quot;",
        ),
        ("/dead/replay", vec![("csrf", &csrf)], 404, "no pool"),
        (
            "/dead/explode",
            vec![("csrf", &csrf), ("pool", "default")],
            404,
            "can be replayed or purged",
        ),
        ("/logout", vec![("csrf", "wrong")], 403, "nothing was done"),
    ];
    for (path, form, status, text) in posts {
        let answer = op.post(path, form).await?;
        assert_eq!(answer.status().as_u16(), *status, "POST {path} {form:?}");
        let body = answer.text().await?;
        assert!(body.contains(text), "POST {path} {form:?}: {body}");
    }
    // The right token from another origin is still refused.
    let cross = op
        .http
        .post(format!("{url}/steer"))
        .header("cookie", &op.cookie)
        .header("origin", "http://evil.example")
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "drain"),
            ("pool", "default"),
            ("confirm", "yes"),
        ])
        .send()
        .await?;
    assert_eq!(cross.status(), 403);
    assert_eq!(fleet.workers_running(), 1, "no refused action did anything");

    // Signing out ends the session.
    let out = op.post("/logout", &[("csrf", &csrf)]).await?;
    assert_eq!(out.status(), 303);
    assert_eq!(
        op.get("/").await?.status(),
        303,
        "the old cookie opens nothing"
    );
    assert_eq!(op.get("/livez").await?.status(), 200);
    assert_eq!(op.get("/readyz").await?.status(), 200);
    fleet.shutdown().await?;
    Ok(())
}
