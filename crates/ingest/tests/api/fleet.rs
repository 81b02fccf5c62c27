//! An ingest process's worth of fleet for one test: ingest serving on 127.0.0.1:0, its
//! backends reachable by the test, and helpers to talk to it the way the app backend does.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clipfleet_broker::{Broker, BrokerOptions, InMemoryBroker, QueueRef, Receive};
use clipfleet_config::Config;
use clipfleet_ingest::{DEV_TOKEN, Ingest, IngestDeps, IngestOptions};
use clipfleet_ledger::Ledger;
use clipfleet_models::Manifest;
use clipfleet_proto::{GenerateJob, decode};
use clipfleet_store::{ObjectStore, list_all, open_sealed};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Fleet {
    pub base: String,
    pub http: reqwest::Client,
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn ObjectStore>,
    pub ledger: Ledger,
    pub config: Arc<Config>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Where a fleet's backends are.
pub struct Backends {
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn ObjectStore>,
    pub ledger: Ledger,
}

impl Fleet {
    /// On embedded defaults, with `overrides` (`CLIPFLEET_…` names) applied to the config.
    pub async fn embedded(overrides: &[(&str, &str)]) -> anyhow::Result<Fleet> {
        let broker: Arc<dyn Broker> = Arc::new(InMemoryBroker::new());
        Fleet::embedded_on(broker, overrides).await
    }

    /// On embedded defaults but with the given broker.
    pub async fn embedded_on(
        broker: Arc<dyn Broker>,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<Fleet> {
        let config = config(overrides)?;
        let store = open_sealed("memory://", "ephemeral").await?;
        let ledger = Ledger::connect("sqlite::memory:").await?;
        ledger.migrate().await?;
        Fleet::start(
            config,
            Backends {
                broker,
                store,
                ledger,
            },
        )
        .await
    }

    pub async fn start(config: Config, backends: Backends) -> anyhow::Result<Fleet> {
        let config = Arc::new(config);
        let manifest = Manifest::embedded("models".into())?;
        let ingest = Ingest::new(
            config.clone(),
            IngestDeps {
                broker: backends.broker.clone(),
                store: backends.store.clone(),
                ledger: backends.ledger.clone(),
                manifest,
            },
            IngestOptions::default(),
        )
        .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ingest.serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(Fleet {
            base,
            http: reqwest::Client::new(),
            broker: backends.broker,
            store: backends.store,
            ledger: backends.ledger,
            config,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops ingest (graceful) and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("ingest did not stop within 30 s")???;
        }
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the dev token and a device id.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(DEV_TOKEN)
            .header("x-device-id", "device-test-1")
    }

    /// `GET path`'s JSON body.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .request(reqwest::Method::GET, path)
            .send()
            .await?
            .json()
            .await?)
    }

    pub async fn create_account(&self, id: &str, extra: Value) -> anyhow::Result<Value> {
        let mut body = json!({ "account_id": id, "birth_date": "1990-04-01" });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let response = self
            .request(reqwest::Method::POST, "/v1/accounts")
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 201,
            "create account: {}",
            response.status()
        );
        Ok(response.json().await?)
    }

    /// Posts a photo for `account` with `params` merged over `{account_id}`.
    pub async fn submit(
        &self,
        account: &str,
        photo: Vec<u8>,
        params: Value,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut all = json!({ "account_id": account });
        if let (Some(all), Some(params)) = (all.as_object_mut(), params.as_object()) {
            all.extend(params.clone());
        }
        let form = Form::new()
            .part("params", Part::text(all.to_string()))
            .part(
                "photo",
                Part::bytes(photo)
                    .file_name("photo.jpg")
                    .mime_str("image/jpeg")?,
            );
        let mut request = self
            .request(reqwest::Method::POST, "/v1/jobs")
            .multipart(form);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        Ok(request.send().await?)
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Every photo in the store.
    pub async fn inputs(&self) -> anyhow::Result<Vec<String>> {
        Ok(list_all(&*self.store, "inputs/")
            .await?
            .into_iter()
            .map(|meta| meta.key.as_str().to_owned())
            .collect())
    }

    /// Jobs waiting in the default pool.
    pub async fn queued(&self) -> anyhow::Result<u64> {
        let pool = self.config.pools[0].name.clone();
        Ok(self.broker.depth(&QueueRef::Jobs(pool)).await?.ready)
    }

    /// Takes up to `n` jobs off the default pool's queue (acked).
    pub async fn take_jobs(&self, n: usize) -> anyhow::Result<Vec<GenerateJob>> {
        let pool = self.config.pools[0].name.clone();
        let mut jobs = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while jobs.len() < n && tokio::time::Instant::now() < deadline {
            let deliveries = self
                .broker
                .receive(
                    &QueueRef::Jobs(pool.clone()),
                    Receive::new(
                        n - jobs.len(),
                        Duration::from_secs(30),
                        Duration::from_millis(500),
                    ),
                )
                .await?;
            for delivery in deliveries {
                jobs.push(decode::<GenerateJob>(&delivery.body)?);
                self.broker
                    .ack(std::slice::from_ref(&delivery.lease))
                    .await?;
            }
        }
        Ok(jobs)
    }

    /// Polls `GET /v1/jobs/{id}` until `until` holds for the answer (10 s at most).
    pub async fn wait_job(
        &self,
        id: &str,
        until: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let job: Value = self
                .request(reqwest::Method::GET, &format!("/v1/jobs/{id}"))
                .send()
                .await?
                .json()
                .await?;
            if until(&job) {
                return Ok(job);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "job never reached the state: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The embedded config with overrides.
pub fn config(overrides: &[(&str, &str)]) -> anyhow::Result<Config> {
    let env: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Ok(Config::embedded(&env)?)
}

/// A JPEG of `width`×`height` with a gradient, about `width*height/5` bytes.
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 251) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out.into_inner()
}

/// A PNG of `width`×`height`.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(width, height, image::Rgb([10, 20, 30]));
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// The error code of an error answer.
pub async fn error_code(response: reqwest::Response) -> anyhow::Result<(u16, String)> {
    let status = response.status().as_u16();
    let body: Value = response.json().await.context("error body is JSON")?;
    let code = body["error"]["code"]
        .as_str()
        .with_context(|| format!("no error code in {body}"))?
        .to_owned();
    Ok((status, code))
}

#[allow(dead_code)]
pub fn broker_options(namespace: &str) -> BrokerOptions {
    BrokerOptions {
        namespace: namespace.to_owned(),
        ..BrokerOptions::default()
    }
}
