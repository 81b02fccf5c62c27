//! A fleet for these tests and the app backend's side of its API: `Fleet` on the embedded
//! backends with the small `noop` model, ingest trusting `X-Forwarded-For` (as behind the app's
//! proxy, so the caller's address is really used), requests carrying a device id and an
//! address.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clipfleet_config::Config;
use clipfleet_fleet::{DEV_TOKEN, Fleet, FleetOptions};
use serde_json::{Value, json};

/// Starts a fleet on the embedded backends: one worker serving the `noop` model at 64×64, the
/// janitor sweeping every second.
pub async fn start_fleet(tag: &str) -> anyhow::Result<Fleet> {
    start_fleet_serving("noop", clipfleet_testkit::small_noop_manifest(tag)).await
}

/// [`start_fleet`] with the worker serving `model` (version 1) of `manifest`.
pub async fn start_fleet_serving(model: &str, manifest: PathBuf) -> anyhow::Result<Fleet> {
    let env: BTreeMap<String, String> =
        BTreeMap::from([("CLIPFLEET_POOLS__0__MODEL".into(), model.into())]);
    let mut options = FleetOptions::embedded()?;
    options.config = Config::load(None, &env)?;
    options.manifest = manifest;
    options.janitor_every = Some(Duration::from_secs(1));
    options.ingest.trust_forwarded_for = true;
    Fleet::start(options).await
}

/// The app backend talking to one fleet, for one user's device and address.
pub struct App<'a> {
    pub fleet: &'a Fleet,
    pub http: reqwest::Client,
    pub device_id: &'a str,
    pub client_ip: &'a str,
}

impl App<'_> {
    /// A request with the service token, the device id and the user's address.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.fleet.base_url()))
            .bearer_auth(DEV_TOKEN)
            .header("x-device-id", self.device_id)
            .header("x-forwarded-for", self.client_ip)
    }

    /// Creates an account with `personal` fields (an adult's birth date).
    pub async fn create_account(&self, account_id: &str, personal: Value) -> anyhow::Result<()> {
        let mut body = json!({ "account_id": account_id, "birth_date": "1990-04-01" });
        if let (Some(body), Some(personal)) = (body.as_object_mut(), personal.as_object()) {
            body.extend(personal.clone());
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
        Ok(())
    }

    /// Submits `photo` for `account_id`; the job id, or an error for any answer but `202`.
    pub async fn submit(&self, account_id: &str, photo: Vec<u8>) -> anyhow::Result<String> {
        let form = reqwest::multipart::Form::new()
            .part(
                "params",
                reqwest::multipart::Part::text(json!({ "account_id": account_id }).to_string()),
            )
            .part(
                "photo",
                reqwest::multipart::Part::bytes(photo)
                    .file_name("photo.jpg")
                    .mime_str("image/jpeg")?,
            );
        let response = self
            .request(reqwest::Method::POST, "/v1/jobs")
            .multipart(form)
            .send()
            .await?;
        anyhow::ensure!(response.status() == 202, "submit: {}", response.status());
        let body: Value = response.json().await?;
        Ok(body["job_id"]
            .as_str()
            .context("no job_id in the answer")?
            .to_owned())
    }

    /// Polls the job until it succeeded and its photo is deleted (60 s at most).
    pub async fn wait_done(&self, job_id: &str) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let job: Value = self
                .request(reqwest::Method::GET, &format!("/v1/jobs/{job_id}"))
                .send()
                .await?
                .json()
                .await?;
            if job["status"] == "succeeded" && !job["input_deleted_at_ms"].is_null() {
                return Ok(job);
            }
            anyhow::ensure!(job["status"] != "failed", "the job failed: {job}");
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the job did not finish: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A 256×256 JPEG whose comment segment (`FF FE`) carries `marker`, so a log or span holding
/// the photo's bytes would show it.
pub fn photo_with_marker(marker: &str) -> anyhow::Result<Vec<u8>> {
    let image = image::RgbImage::from_fn(256, 256, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 251) as u8])
    });
    let mut jpeg = Cursor::new(Vec::new());
    image.write_to(&mut jpeg, image::ImageFormat::Jpeg)?;
    let jpeg = jpeg.into_inner();
    anyhow::ensure!(jpeg.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    let length = u16::try_from(marker.len() + 2)?;
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xFE];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(marker.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    Ok(out)
}
