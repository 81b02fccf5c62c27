//! A headless Chromium driven over the W3C WebDriver protocol (chromedriver's HTTP JSON API):
//! navigate, find, click, type, run a script, take a screenshot. Enough for the console's
//! end-to-end tests without a WebDriver crate. `scripts/install-system-deps.sh --browser`
//! installs Debian's `chromium` and `chromium-driver`; a machine without them fails the test
//! with a message saying so (never skips).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The key WebDriver puts an element reference under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn program(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// One browser (one chromedriver, one session, a profile of its own).
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver (`CLIPFLEET_CHROMEDRIVER`, default `/usr/bin/chromedriver`) on a
    /// free loopback port and opens a headless Chromium (`CLIPFLEET_CHROMIUM`, default
    /// `/usr/bin/chromium`) with a fresh profile.
    pub async fn start() -> anyhow::Result<Browser> {
        let driver_path = program("CLIPFLEET_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = program("CLIPFLEET_CHROMIUM", "/usr/bin/chromium");
        for path in [&driver_path, &chromium] {
            if !path.exists() {
                bail!(
                    "{} is missing: scripts/install-system-deps.sh --browser installs Chromium and chromedriver",
                    path.display()
                );
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("find a free port")?
            .port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", driver_path.display()))?;
        let profile = tempfile::tempdir().context("a browser profile")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("http client")?;
        let base = format!("http://127.0.0.1:{port}");
        let ready = Instant::now();
        loop {
            if let Ok(response) = http.get(format!("{base}/status")).send().await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            if ready.elapsed() > Duration::from_secs(20) {
                bail!("chromedriver did not become ready within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    // This machine's network is closed: no background fetches to be refused.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                    "--window-size=1280,1000",
                    "--autoplay-policy=no-user-gesture-required",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .context("create a browser session")?
            .json()
            .await
            .context("session answer")?;
        let session = answer["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("chromedriver refused a session: {answer}"))?;
        let browser = Browser {
            http,
            session: format!("{base}/session/{session}"),
            driver,
            _profile: profile,
        };
        // Finding an element waits for it (up to 10 s): a click that submits a form can return
        // before the next page is there.
        browser
            .call(
                reqwest::Method::POST,
                "/timeouts",
                Some(json!({ "implicit": 10_000 })),
            )
            .await
            .context("set the implicit wait")?;
        Ok(browser)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .with_context(|| format!("WebDriver {path}"))?
            .json()
            .await
            .with_context(|| format!("WebDriver {path} answer"))?;
        if let Some(error) = answer["value"]["error"].as_str() {
            bail!(
                "WebDriver {path}: {error}: {}",
                answer["value"]["message"].as_str().unwrap_or("")
            );
        }
        Ok(answer["value"].clone())
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The page's address.
    pub async fn url(&self) -> anyhow::Result<String> {
        let value = self.call(reqwest::Method::GET, "/url", None).await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    async fn element(&self, css: &str) -> anyhow::Result<String> {
        let value = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .with_context(|| format!("find {css}"))?;
        value[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no element reference for {css}: {value}"))
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let id = self.element(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await
        .with_context(|| format!("click {css}"))
        .map(drop)
    }

    /// Types `text` into the first element matching `css` (for a file input: a path, made
    /// canonical as chromedriver wants it).
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let id = self.element(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .with_context(|| format!("type into {css}"))
        .map(drop)
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let id = self.element(css).await?;
        let value = self
            .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page; its return value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Polls `script` until it returns something truthy (not null, false, 0 or ""), or fails
    /// after `timeout` saying `what` did not happen.
    pub async fn wait_for(
        &self,
        what: &str,
        script: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let value = self.execute(script, Vec::new()).await?;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(value);
            }
            if started.elapsed() > timeout {
                let url = self.url().await.unwrap_or_default();
                bail!("{what}: not within {timeout:?} (page {url}, last value {value})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A PNG of the viewport, written to `path` (folders made).
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let value = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .context("screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }

    /// Closes the browser and stops chromedriver.
    pub async fn quit(mut self) -> anyhow::Result<()> {
        let closed = self.call(reqwest::Method::DELETE, "", None).await;
        let _ = self.driver.kill().await;
        closed.map(drop)
    }
}
