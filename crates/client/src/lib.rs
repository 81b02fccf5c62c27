//! The ingest HTTP API (`/v1/…`) from the caller's side: what the app backend does, and what
//! `clipctl generate` and `clip-loadtest` do. It speaks only HTTP and the stable error codes of
//! `proto`, never the fleet's internals, so a tool built on it works against any fleet.
//!
//! Jobs: [`Client::submit`], [`Client::job`], [`Client::wait`], [`Client::output`],
//! [`Client::delete_job`]. Personalisation sessions: [`Client::create_session`],
//! [`Client::upload_session_photo`], [`Client::personalize`] (a training job, waited on like
//! any job), [`Client::submit_in_session`] (a job rendered with the session's adapter),
//! [`Client::session`], [`Client::end_session`].

use std::time::Duration;

use bytes::Bytes;
use clipfleet_proto::ErrorCode;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use serde_json::{Value, json};

/// What went wrong talking to ingest.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Ingest answered with an error: its HTTP status and stable code.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The stable error code (`unknown` when the body had none).
        code: ErrorCode,
        /// The message.
        message: String,
        /// `Retry-After`, when given (429, 503).
        retry_after: Option<Duration>,
    },
    /// No answer (connection refused, reset, timed out).
    #[error("ingest unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// An answer that is not what the API promises.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The stable code: the API's, or `unavailable` for transport failures.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Api { code, .. } => *code,
            ClientError::Transport(_) => ErrorCode::Unavailable,
            ClientError::Protocol(_) => ErrorCode::Internal,
        }
    }
}

/// A job's status as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct JobStatus {
    /// The job.
    pub job_id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `expired`, `cancelled`.
    pub status: String,
    /// Progress, where the worker reports it.
    #[serde(default)]
    pub progress_pct: Option<u8>,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// When ingest accepted it (unix ms).
    pub submitted_at_ms: u64,
    /// When a worker started it.
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    /// When it ended.
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
    /// When its photo was deleted.
    #[serde(default)]
    pub input_deleted_at_ms: Option<u64>,
    /// When its video was deleted.
    #[serde(default)]
    pub output_deleted_at_ms: Option<u64>,
    /// `{code, message}` for a failed job.
    #[serde(default)]
    pub error: Option<Value>,
    /// `{url, size, expires_at_ms}` while a video job's video is there.
    #[serde(default)]
    pub video: Option<Value>,
    /// `{url, content_type, size, expires_at_ms}` while the output (video or image) is there.
    #[serde(default)]
    pub output: Option<Value>,
    /// What the job makes: `video`, `image` (a still, from an image-to-image model), or
    /// `personalize` (a session's adapter, never shown nor downloadable).
    #[serde(default = "video_kind")]
    pub kind: String,
    /// The personalisation session the job belongs to, if any.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The models its output goes through, in order (`name@version`; a framing detector, a
    /// chain's stages).
    #[serde(default)]
    pub runs: Vec<String>,
}

fn video_kind() -> String {
    "video".into()
}

impl JobStatus {
    /// Whether the job has ended (nothing more will happen to it but deletions).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "failed" | "expired" | "cancelled"
        )
    }

    /// The failed job's error code.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .map(ErrorCode::parse)
    }
}

/// A submission ingest accepted.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Accepted {
    /// The job.
    pub job_id: String,
    /// Where its status is.
    pub status_url: String,
}

/// A session's latest training job, as `GET /v1/sessions/{id}` shows it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SessionTraining {
    /// The `personalize` job.
    pub job_id: String,
    /// The model whose adapter it trains (`name@version`).
    pub model: String,
    /// Its status (`queued`, `running`, `succeeded`, …).
    pub status: String,
}

/// A personalisation session as `GET /v1/sessions/{id}` shows it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SessionView {
    /// The session.
    pub session_id: String,
    /// Whose session.
    pub account_id: String,
    /// `open`, `ended` (deleted, or its account erased) or `expired` (its TTL passed).
    pub state: String,
    /// When it was created (unix ms).
    pub created_at_ms: u64,
    /// When its TTL ends it (unix ms).
    pub expires_at_ms: u64,
    /// When it was ended.
    #[serde(default)]
    pub ended_at_ms: Option<u64>,
    /// Why it ended: `deleted`, `expired`, `account_erased`.
    #[serde(default)]
    pub end_reason: Option<String>,
    /// Photos waiting for a training job.
    #[serde(default)]
    pub photos: u32,
    /// Its latest training job.
    #[serde(default)]
    pub personalize: Option<SessionTraining>,
    /// Whether jobs naming the session may use its adapter now.
    #[serde(default)]
    pub adapter_ready: bool,
}

impl SessionView {
    /// Whether it still takes photos and serves jobs.
    pub fn is_open(&self) -> bool {
        self.state == "open"
    }
}

/// The answer to `DELETE /v1/sessions/{id}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct EndedSession {
    /// The session.
    pub session_id: String,
    /// `ended`.
    pub state: String,
    /// Why it ended (the first end's reason).
    #[serde(default)]
    pub end_reason: Option<String>,
    /// Objects this call deleted (0 when an earlier call or the janitor did).
    pub deleted_objects: u64,
}

/// A client of one ingest.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    device_id: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the ingest at `base` (`http://host:port`), calling with `token`.
    pub fn new(base: &str, token: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            device_id: "clipfleet-client".to_owned(),
            http,
        })
    }

    /// Sends `device_id` as the app's device id header on every request.
    pub fn with_device_id(mut self, device_id: &str) -> Client {
        device_id.clone_into(&mut self.device_id);
        self
    }

    /// Where ingest is.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("x-device-id", &self.device_id)
    }

    /// Creates an account (`birth_date` `YYYY-MM-DD`); an account that exists already is fine.
    pub async fn ensure_account(
        &self,
        account_id: &str,
        birth_date: &str,
    ) -> Result<(), ClientError> {
        let response = self
            .request(reqwest::Method::POST, "/v1/accounts")
            .json(&json!({ "account_id": account_id, "birth_date": birth_date }))
            .send()
            .await?;
        if response.status() == StatusCode::CONFLICT {
            return Ok(());
        }
        expect(response, StatusCode::CREATED).await.map(drop)
    }

    /// Submits a photo with `params` (merged over `{account_id}`), optionally idempotent.
    pub async fn submit(
        &self,
        account_id: &str,
        photo: Bytes,
        params: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Accepted, ClientError> {
        let mut all = json!({ "account_id": account_id });
        if let (Some(all), Some(params)) = (all.as_object_mut(), params.as_object()) {
            all.extend(params.clone());
        }
        let photo = Part::stream(reqwest::Body::from(photo))
            .file_name("photo")
            .mime_str("application/octet-stream")?;
        let form = Form::new()
            .part("params", Part::text(all.to_string()))
            .part("photo", photo);
        let mut request = self
            .request(reqwest::Method::POST, "/v1/jobs")
            .multipart(form);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await?;
        let body = expect(response, StatusCode::ACCEPTED).await?;
        serde_json::from_slice(&body)
            .map_err(|err| ClientError::Protocol(format!("submit answer: {err}")))
    }

    /// Submits a photo to be rendered with the personalised adapter of `session_id` (a
    /// session of `account_id` whose adapter of the model is trained): [`Client::submit`] with
    /// `session_id` in the params.
    pub async fn submit_in_session(
        &self,
        account_id: &str,
        session_id: &str,
        photo: Bytes,
        params: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Accepted, ClientError> {
        let mut all = json!({ "session_id": session_id });
        if let (Some(all), Some(params)) = (all.as_object_mut(), params.as_object()) {
            all.extend(params.clone());
        }
        self.submit(account_id, photo, all, idempotency_key).await
    }

    /// Opens a personalisation session for `account_id` (active, not under 14).
    pub async fn create_session(&self, account_id: &str) -> Result<SessionView, ClientError> {
        let response = self
            .request(reqwest::Method::POST, "/v1/sessions")
            .json(&json!({ "account_id": account_id }))
            .send()
            .await?;
        let body = expect(response, StatusCode::CREATED).await?;
        parse(&body, "session answer")
    }

    /// Uploads a photo to an open session; returns the photo's id.
    pub async fn upload_session_photo(
        &self,
        session_id: &str,
        photo: Bytes,
    ) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        struct Uploaded {
            photo_id: String,
        }
        let photo = Part::stream(reqwest::Body::from(photo))
            .file_name("photo")
            .mime_str("application/octet-stream")?;
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/sessions/{session_id}/photos"),
            )
            .multipart(Form::new().part("photo", photo))
            .send()
            .await?;
        let body = expect(response, StatusCode::CREATED).await?;
        parse::<Uploaded>(&body, "photo answer").map(|uploaded| uploaded.photo_id)
    }

    /// Queues the training of the session's adapter of `model` (default: the first served
    /// model that takes one) on the photos uploaded since the last training; the training
    /// job's status (wait on it with [`Client::wait`]).
    pub async fn personalize(
        &self,
        session_id: &str,
        model: Option<&str>,
    ) -> Result<JobStatus, ClientError> {
        let body = model.map_or_else(|| json!({}), |model| json!({ "model": model }));
        let response = self
            .request(
                reqwest::Method::POST,
                &format!("/v1/sessions/{session_id}/personalize"),
            )
            .json(&body)
            .send()
            .await?;
        let body = expect(response, StatusCode::ACCEPTED).await?;
        parse(&body, "personalize answer")
    }

    /// A session's state and latest training.
    pub async fn session(&self, session_id: &str) -> Result<SessionView, ClientError> {
        let response = self
            .request(reqwest::Method::GET, &format!("/v1/sessions/{session_id}"))
            .send()
            .await?;
        let body = expect(response, StatusCode::OK).await?;
        parse(&body, "session answer")
    }

    /// Ends a session: its photos and adapter are deleted. Idempotent.
    pub async fn end_session(&self, session_id: &str) -> Result<EndedSession, ClientError> {
        let response = self
            .request(
                reqwest::Method::DELETE,
                &format!("/v1/sessions/{session_id}"),
            )
            .send()
            .await?;
        let body = expect(response, StatusCode::OK).await?;
        parse(&body, "end session answer")
    }

    /// A job's status.
    pub async fn job(&self, job_id: &str) -> Result<JobStatus, ClientError> {
        let response = self
            .request(reqwest::Method::GET, &format!("/v1/jobs/{job_id}"))
            .send()
            .await?;
        let body = expect(response, StatusCode::OK).await?;
        serde_json::from_slice(&body)
            .map_err(|err| ClientError::Protocol(format!("job answer: {err}")))
    }

    /// Polls a job every `every` until it ends or `timeout` passes; `on_poll` sees each status.
    pub async fn wait(
        &self,
        job_id: &str,
        every: Duration,
        timeout: Duration,
        mut on_poll: impl FnMut(&JobStatus),
    ) -> Result<JobStatus, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.job(job_id).await?;
            on_poll(&status);
            if status.is_terminal() {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Protocol(format!(
                    "job {job_id} still {} after {timeout:?}",
                    status.status
                )));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The job's output as stored: its MP4, or an image job's JPEG.
    pub async fn output(&self, job_id: &str) -> Result<Bytes, ClientError> {
        self.get_bytes(&format!("/v1/jobs/{job_id}/output")).await
    }

    /// The job's MP4.
    pub async fn video(&self, job_id: &str) -> Result<Bytes, ClientError> {
        self.get_bytes(&format!("/v1/jobs/{job_id}/video")).await
    }

    /// `GET path`'s body, or the API's error.
    async fn get_bytes(&self, path: &str) -> Result<Bytes, ClientError> {
        let response = self.request(reqwest::Method::GET, path).send().await?;
        expect(response, StatusCode::OK).await
    }

    /// `DELETE /v1/jobs/{id}`: cancels a queued job, deletes a finished job's video.
    pub async fn delete_job(&self, job_id: &str) -> Result<(), ClientError> {
        let response = self
            .request(reqwest::Method::DELETE, &format!("/v1/jobs/{job_id}"))
            .send()
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(api_error(response).await)
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|err| ClientError::Protocol(format!("{what}: {err}")))
}

async fn expect(response: reqwest::Response, want: StatusCode) -> Result<Bytes, ClientError> {
    if response.status() == want {
        return Ok(response.bytes().await?);
    }
    Err(api_error(response).await)
}

async fn api_error(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let field = |name: &str| {
        body.get(name)
            .or_else(|| body.get("error").and_then(|e| e.get(name)))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    ClientError::Api {
        status,
        code: field("code").map_or(ErrorCode::Unknown, |c| ErrorCode::parse(&c)),
        message: field("message").unwrap_or_default(),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_training_job_and_its_session_read_as_ingest_writes_them() {
        let job: JobStatus = serde_json::from_value(json!({
            "job_id": "01J00000000000000000000000",
            "status": "queued",
            "submitted_at_ms": 1,
            "kind": "personalize",
            "session_id": "01J00000000000000000000001",
            "output": null,
        }))
        .expect("a job");
        assert_eq!(job.kind, "personalize");
        assert_eq!(
            job.session_id.as_deref(),
            Some("01J00000000000000000000001")
        );
        let plain: JobStatus = serde_json::from_value(json!({
            "job_id": "j", "status": "queued", "submitted_at_ms": 1,
        }))
        .expect("a job of an older ingest");
        assert_eq!((plain.kind.as_str(), plain.session_id), ("video", None));

        let session: SessionView = serde_json::from_value(json!({
            "session_id": "s", "account_id": "a", "state": "open",
            "created_at_ms": 1, "expires_at_ms": 2, "ended_at_ms": null, "end_reason": null,
            "photos": 3, "adapter_ready": false,
            "personalize": {"job_id": "j", "model": "portrait@1", "status": "running"},
        }))
        .expect("a session");
        assert!(session.is_open() && !session.adapter_ready);
        assert_eq!(
            session.personalize.map(|p| p.status),
            Some("running".into())
        );
        let ended: EndedSession = serde_json::from_value(json!({
            "session_id": "s", "state": "ended", "end_reason": "deleted", "deleted_objects": 4,
        }))
        .expect("an ended session");
        assert_eq!(ended.deleted_objects, 4);
    }
}
