//! `/v1/sessions…` on embedded defaults: a session's photos, its `personalize` job (schema
//! version 3, every photo listed), jobs that name it, its end (every object but the `ended`
//! marker deleted, audited, idempotent), and the refusals on the way.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clipfleet_ledger::{DeletionFilter, DeletionReason, JobStatus, SessionEndReason, SubjectKind};
use clipfleet_proto::{
    AccountId, EventBatch, EventKind, JobEvent, JobId, JobKind, MAX_SESSION_PHOTOS, PhotoId,
    SessionId, StageDurations, Timestamp, WorkerId,
};
use clipfleet_store::{ObjectKey, body_from_bytes, list_all, read_to_end};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::fleet::{Fleet, error_code, jpeg};
use crate::submit::Flaky;

const PORTRAIT: &[(&str, &str)] = &[
    ("CLIPFLEET_POOLS__0__MODEL", "portrait"),
    ("CLIPFLEET_POOLS__0__MODEL_VERSION", "1"),
];

fn account(text: &str) -> AccountId {
    AccountId::new(text.to_owned()).expect("an account id")
}

impl Fleet {
    async fn post_json(&self, path: &str, body: Value) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .request(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await?)
    }

    /// Opens a session of `account`; its id.
    async fn open_session(&self, account: &str) -> anyhow::Result<SessionId> {
        let response = self
            .post_json("/v1/sessions", json!({ "account_id": account }))
            .await?;
        anyhow::ensure!(
            response.status() == 201,
            "create session: {}",
            response.status()
        );
        let body: Value = response.json().await?;
        Ok(body["session_id"].as_str().unwrap_or_default().parse()?)
    }

    async fn upload(
        &self,
        session: SessionId,
        photo: Vec<u8>,
    ) -> anyhow::Result<reqwest::Response> {
        let form = Form::new().part(
            "photo",
            Part::bytes(photo)
                .file_name("photo.jpg")
                .mime_str("image/jpeg")?,
        );
        Ok(self
            .request(
                reqwest::Method::POST,
                &format!("/v1/sessions/{session}/photos"),
            )
            .multipart(form)
            .send()
            .await?)
    }

    async fn personalize(
        &self,
        session: SessionId,
        body: Value,
    ) -> anyhow::Result<reqwest::Response> {
        self.post_json(&format!("/v1/sessions/{session}/personalize"), body)
            .await
    }

    async fn end_session(&self, session: SessionId) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .request(reqwest::Method::DELETE, &format!("/v1/sessions/{session}"))
            .send()
            .await?)
    }

    /// Records what a worker reports of a training that stored the session's adapter.
    async fn trained(&self, job: JobId, adapter: &ObjectKey) -> anyhow::Result<()> {
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        let worker = WorkerId::new("worker-1")?;
        let event = |event| JobEvent {
            job_id: job,
            at: now,
            worker: worker.clone(),
            event,
        };
        self.ledger
            .apply_events(
                &EventBatch {
                    v: 1,
                    events: vec![
                        event(EventKind::Started),
                        event(EventKind::Succeeded {
                            output_key: adapter.as_str().to_owned(),
                            size: 512,
                            stages: StageDurations::default(),
                        }),
                    ],
                },
                Duration::from_secs(3600),
            )
            .await?;
        Ok(())
    }

    /// Every object under the session's prefix.
    async fn session_objects(
        &self,
        owner: &str,
        session: SessionId,
    ) -> anyhow::Result<Vec<String>> {
        let prefix = ObjectKey::session_prefix(&account(owner), session);
        Ok(list_all(&*self.store, &prefix)
            .await?
            .into_iter()
            .map(|meta| meta.key.as_str().to_owned())
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_trains_on_all_its_photos_and_serves_its_jobs() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(PORTRAIT).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let created = fleet
        .post_json("/v1/sessions", json!({ "account_id": "acct-1" }))
        .await?;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await?;
    assert_eq!(created["state"], "open");
    assert_eq!(
        (created["photos"].as_u64(), &created["adapter_ready"]),
        (Some(0), &json!(false))
    );
    let ttl = fleet.config.retention.session_ttl.as_millis() as u64;
    assert_eq!(
        created["expires_at_ms"].as_u64().unwrap_or(0)
            - created["created_at_ms"].as_u64().unwrap_or(0),
        ttl
    );
    let session: SessionId = created["session_id"].as_str().unwrap_or_default().parse()?;

    // Photos: sealed under the session's prefix, counted while they wait for a training.
    let photos = [jpeg(320, 240), jpeg(200, 200), jpeg(240, 320)];
    let mut ids = Vec::new();
    for (n, photo) in photos.iter().enumerate() {
        let response = fleet.upload(session, photo.clone()).await?;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await?;
        assert_eq!(body["photos"].as_u64(), Some(n as u64 + 1));
        let id: PhotoId = body["photo_id"].as_str().unwrap_or_default().parse()?;
        let key = ObjectKey::session_photo(&account("acct-1"), session, id);
        let stored = read_to_end(fleet.store.get(&key).await?, 1 << 30).await?;
        assert_eq!(&stored[..], &photo[..]);
        ids.push(id);
    }

    // The training job: schema version 3, every photo listed, the first as its input.
    let response = fleet.personalize(session, json!({})).await?;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str()?.to_owned();
    let shown: Value = response.json().await?;
    assert_eq!(shown["kind"], "personalize");
    assert_eq!(shown["session_id"], session.to_string());
    assert_eq!(shown["model"], "portrait@1");
    let job_id: JobId = shown["job_id"].as_str().unwrap_or_default().parse()?;
    assert_eq!(location, format!("/v1/jobs/{job_id}"));
    let jobs = fleet.take_jobs(1).await?;
    let job = &jobs[0];
    assert_eq!(
        (job.job_id, job.v, job.kind),
        (job_id, 3, JobKind::Personalize)
    );
    let session_ref = job.session.as_ref().expect("the job carries its session");
    assert_eq!(session_ref.id, session);
    assert_eq!(
        session_ref.expires_at.unix_ms(),
        created["expires_at_ms"].as_u64().unwrap_or(0)
    );
    // Every photo, oldest first: uploads within one millisecond (a fast machine) may list in
    // either order, so each is matched by its id.
    let mut listed_ids: Vec<PhotoId> = session_ref.photos.iter().map(|p| p.id).collect();
    listed_ids.sort_unstable();
    let mut uploaded = ids.clone();
    uploaded.sort_unstable();
    assert_eq!(listed_ids, uploaded);
    for listed in &session_ref.photos {
        let photo = &photos[ids
            .iter()
            .position(|id| *id == listed.id)
            .expect("uploaded")];
        assert_eq!(listed.sha256.as_str(), hex::encode(Sha256::digest(photo)));
        assert_eq!(
            (listed.size, listed.content_type.as_str()),
            (photo.len() as u64, "image/jpeg")
        );
    }
    assert_eq!(
        job.input.key,
        ObjectKey::session_photo(&account("acct-1"), session, session_ref.photos[0].id).as_str()
    );
    let row = fleet.ledger.get_job(job_id).await?;
    assert_eq!(
        (row.kind.as_deref(), row.session_id),
        (Some("personalize"), Some(session))
    );

    // The photos are taken; the session shows its training.
    let view = fleet.get_json(&format!("/v1/sessions/{session}")).await?;
    assert_eq!(view["photos"], 0);
    assert_eq!(view["personalize"]["job_id"], job_id.to_string());
    assert_eq!(view["personalize"]["status"], "queued");
    assert_eq!(view["adapter_ready"], false);
    let again = fleet
        .personalize(session, json!({"model": "portrait"}))
        .await?;
    assert_eq!(error_code(again).await?, (409, "session_not_ready".into()));
    assert_eq!(fleet.upload(session, jpeg(64, 64)).await?.status(), 201);
    let again = fleet
        .personalize(session, json!({"model": "portrait"}))
        .await?;
    assert_eq!(
        error_code(again).await?,
        (409, "conflict".into()),
        "one training per model"
    );

    // A job naming the session before its adapter exists.
    let early = fleet
        .submit(
            "acct-1",
            jpeg(320, 240),
            json!({"session_id": session.to_string()}),
            None,
        )
        .await?;
    assert_eq!(error_code(early).await?, (409, "session_not_ready".into()));

    // Trained: the adapter is ready, yet never shown nor downloadable.
    let adapter = ObjectKey::session_adapter(&account("acct-1"), session, "portrait")?;
    fleet
        .store
        .put(&adapter, body_from_bytes(&b"adapter"[..]))
        .await?;
    fleet.trained(job_id, &adapter).await?;
    let view = fleet.get_json(&format!("/v1/sessions/{session}")).await?;
    assert_eq!(
        (&view["adapter_ready"], &view["personalize"]["status"]),
        (&json!(true), &json!("succeeded"))
    );
    let shown = fleet.get_json(&location).await?;
    assert_eq!(
        (&shown["status"], &shown["output"], &shown["video"]),
        (&json!("succeeded"), &Value::Null, &Value::Null)
    );
    let download = fleet
        .request(reqwest::Method::GET, &format!("{location}/output"))
        .send()
        .await?;
    assert_eq!(error_code(download).await?, (404, "not_found".into()));

    // A job of the session: version 3, the session without photos, recorded with it.
    let response = fleet
        .submit(
            "acct-1",
            jpeg(320, 240),
            json!({"session_id": session.to_string()}),
            None,
        )
        .await?;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await?;
    let jobs = fleet.take_jobs(1).await?;
    let job = &jobs[0];
    assert_eq!((job.v, job.kind), (3, JobKind::Image));
    let session_ref = job.session.as_ref().expect("the job carries its session");
    assert_eq!((session_ref.id, session_ref.photos.len()), (session, 0));
    let shown = fleet
        .get_json(&format!(
            "/v1/jobs/{}",
            body["job_id"].as_str().unwrap_or_default()
        ))
        .await?;
    assert_eq!(
        (&shown["kind"], &shown["session_id"]),
        (&json!("image"), &json!(session.to_string()))
    );
    // The session as its own form part works alike.
    let form = Form::new()
        .part(
            "params",
            Part::text(json!({"account_id": "acct-1"}).to_string()),
        )
        .part("session_id", Part::text(session.to_string()))
        .part("photo", Part::bytes(jpeg(64, 64)).file_name("p.jpg"));
    let response = fleet
        .request(reqwest::Method::POST, "/v1/jobs")
        .multipart(form)
        .send()
        .await?;
    assert_eq!(response.status(), 202);
    assert_eq!(
        fleet.take_jobs(1).await?[0].session.as_ref().map(|s| s.id),
        Some(session)
    );
    // A job without a session is what it always was.
    fleet
        .submit("acct-1", jpeg(64, 64), json!({}), None)
        .await?;
    let plain = &fleet.take_jobs(1).await?[0];
    assert_eq!((plain.v, plain.session.is_none()), (2, true));
    let usage = fleet.ledger.list_usage(&account("acct-1"), 100).await?;
    for action in ["session.create", "session.photo", "session.personalize"] {
        assert!(
            usage.iter().any(|u| u.action == action),
            "no {action} usage record"
        );
    }
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_refuse_what_they_cannot_serve() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(PORTRAIT).await?;
    fleet.create_account("acct-1", json!({})).await?;
    fleet.create_account("acct-2", json!({})).await?;

    // Unknown (or malformed) sessions do not exist, whatever the call.
    for id in [
        SessionId::generate().to_string(),
        "not-a-session".to_owned(),
    ] {
        let path = format!("/v1/sessions/{id}");
        let shown = fleet.request(reqwest::Method::GET, &path).send().await?;
        assert_eq!(error_code(shown).await?, (404, "not_found".into()), "{id}");
        let ended = fleet.request(reqwest::Method::DELETE, &path).send().await?;
        assert_eq!(error_code(ended).await?, (404, "not_found".into()), "{id}");
        let trained = fleet
            .post_json(&format!("{path}/personalize"), json!({}))
            .await?;
        assert_eq!(
            error_code(trained).await?,
            (404, "not_found".into()),
            "{id}"
        );
        let job = fleet
            .submit("acct-1", jpeg(64, 64), json!({"session_id": id}), None)
            .await?;
        assert_eq!(error_code(job).await?, (404, "not_found".into()), "{id}");
    }
    let unknown = fleet
        .post_json("/v1/sessions", json!({"account_id": "nobody"}))
        .await?;
    assert_eq!(error_code(unknown).await?, (403, "account_inactive".into()));
    let malformed = fleet
        .post_json("/v1/sessions", json!({"account": "acct-1"}))
        .await?;
    assert_eq!(error_code(malformed).await?, (400, "bad_request".into()));

    let session = fleet.open_session("acct-1").await?;
    // Nothing to train on yet; a model no pool serves.
    let empty = fleet.personalize(session, json!({})).await?;
    assert_eq!(error_code(empty).await?, (409, "session_not_ready".into()));
    let unknown = fleet.personalize(session, json!({"model": "nope"})).await?;
    assert_eq!(error_code(unknown).await?, (422, "unknown_model".into()));
    let bad = fleet.personalize(session, json!({"lora_rank": 4})).await?;
    assert_eq!(error_code(bad).await?, (400, "bad_request".into()));
    // Another account's session is no session of its jobs.
    let theirs = fleet
        .submit(
            "acct-2",
            jpeg(64, 64),
            json!({"session_id": session.to_string()}),
            None,
        )
        .await?;
    assert_eq!(error_code(theirs).await?, (404, "not_found".into()));
    // Not an image: nothing kept.
    let refused = fleet.upload(session, b"GIF89a".to_vec()).await?;
    assert_eq!(
        error_code(refused).await?,
        (415, "unsupported_format".into())
    );
    assert!(fleet.session_objects("acct-1", session).await?.is_empty());
    // The bound on photos waiting for a training.
    for _ in 0..MAX_SESSION_PHOTOS {
        assert_eq!(fleet.upload(session, jpeg(32, 32)).await?.status(), 201);
    }
    let full = fleet.upload(session, jpeg(32, 32)).await?;
    assert_eq!(error_code(full).await?, (409, "conflict".into()));
    assert_eq!(
        fleet.session_objects("acct-1", session).await?.len(),
        MAX_SESSION_PHOTOS
    );

    // Ended: every call but GET and DELETE is `410 session_ended`.
    assert_eq!(fleet.end_session(session).await?.status(), 200);
    let upload = fleet.upload(session, jpeg(32, 32)).await?;
    assert_eq!(error_code(upload).await?, (410, "session_ended".into()));
    let trained = fleet.personalize(session, json!({})).await?;
    assert_eq!(error_code(trained).await?, (410, "session_ended".into()));
    let job = fleet
        .submit(
            "acct-1",
            jpeg(64, 64),
            json!({"session_id": session.to_string()}),
            None,
        )
        .await?;
    assert_eq!(error_code(job).await?, (410, "session_ended".into()));
    let view = fleet.get_json(&format!("/v1/sessions/{session}")).await?;
    assert_eq!(
        (&view["state"], &view["end_reason"]),
        (&json!("ended"), &json!("deleted"))
    );
    assert_eq!(fleet.queued().await?, 0, "nothing was queued");
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_an_adapter_is_not_personalised() -> anyhow::Result<()> {
    // The default pool serves `motion`, a video model that takes no adapter.
    let fleet = Fleet::embedded(&[]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let session = fleet.open_session("acct-1").await?;
    assert_eq!(fleet.upload(session, jpeg(64, 64)).await?.status(), 201);
    let default = fleet.personalize(session, json!({})).await?;
    assert_eq!(error_code(default).await?, (422, "unknown_model".into()));
    let named = fleet
        .personalize(session, json!({"model": "motion"}))
        .await?;
    assert_eq!(error_code(named).await?, (400, "invalid_params".into()));
    let job = fleet
        .submit(
            "acct-1",
            jpeg(64, 64),
            json!({"session_id": session.to_string()}),
            None,
        )
        .await?;
    assert_eq!(error_code(job).await?, (400, "invalid_params".into()));
    assert_eq!(fleet.queued().await?, 0);
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_session_deletes_everything_but_the_marker_audited_once() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(PORTRAIT).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let session = fleet.open_session("acct-1").await?;
    for _ in 0..2 {
        assert_eq!(fleet.upload(session, jpeg(64, 64)).await?.status(), 201);
    }
    let response = fleet.personalize(session, json!({})).await?;
    let shown: Value = response.json().await?;
    let job_id: JobId = shown["job_id"].as_str().unwrap_or_default().parse()?;
    let adapter = ObjectKey::session_adapter(&account("acct-1"), session, "portrait")?;
    fleet
        .store
        .put(&adapter, body_from_bytes(&b"adapter"[..]))
        .await?;
    fleet.trained(job_id, &adapter).await?;
    // Another session of the account is not touched.
    let other = fleet.open_session("acct-1").await?;
    assert_eq!(fleet.upload(other, jpeg(64, 64)).await?.status(), 201);

    let response = fleet.end_session(session).await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(
        (&body["state"], &body["deleted_objects"]),
        (&json!("ended"), &json!(3))
    );
    let marker = ObjectKey::session_ended(&account("acct-1"), session);
    assert_eq!(
        fleet.session_objects("acct-1", session).await?,
        vec![marker.as_str().to_owned()]
    );
    assert_eq!(fleet.session_objects("acct-1", other).await?.len(), 1);

    // Audited: one verified row per object, by ingest, for the session's end.
    let subject = format!("acct-1/{session}");
    let audit = fleet
        .ledger
        .list_deletions(
            &DeletionFilter {
                subject: Some((SubjectKind::Session, subject)),
                since: None,
            },
            100,
        )
        .await?;
    assert_eq!(audit.len(), 3, "{audit:?}");
    for row in &audit {
        let d = &row.deletion;
        assert!(
            d.verified && d.reason == DeletionReason::SessionEnded && d.actor == "ingest",
            "{d:?}"
        );
        assert!(
            d.target.starts_with(&format!("sessions/acct-1/{session}/")),
            "{d:?}"
        );
        assert_ne!(d.target, marker.as_str());
    }
    let ended = fleet.ledger.get_session(session).await?;
    assert_eq!(ended.end_reason, Some(SessionEndReason::Deleted));
    assert!(ended.objects_deleted_at.is_some());
    let job = fleet.ledger.get_job(job_id).await?;
    assert!(
        job.input_deleted_at.is_some() && job.output_deleted_at.is_some(),
        "{job:?}"
    );
    let view = fleet.get_json(&format!("/v1/sessions/{session}")).await?;
    assert_eq!(
        (&view["state"], &view["adapter_ready"], &view["photos"]),
        (&json!("ended"), &json!(false), &json!(0))
    );

    // Again: nothing more to delete, no second audit row.
    let again = fleet.end_session(session).await?;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await?;
    assert_eq!(again["deleted_objects"], 0);
    let audit = fleet
        .ledger
        .list_deletions(&DeletionFilter::default(), 100)
        .await?;
    assert_eq!(audit.len(), 3);
    let usage = fleet.ledger.list_usage(&account("acct-1"), 100).await?;
    assert!(usage.iter().any(|u| u.action == "session.delete"));
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_ttl_is_expired() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(&[("CLIPFLEET_RETENTION__SESSION_TTL", "1s")]).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let session = fleet.open_session("acct-1").await?;
    assert_eq!(fleet.upload(session, jpeg(64, 64)).await?.status(), 201);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let view = fleet.get_json(&format!("/v1/sessions/{session}")).await?;
    assert_eq!(view["state"], "expired");
    let late = fleet.upload(session, jpeg(64, 64)).await?;
    assert_eq!(error_code(late).await?, (410, "session_ended".into()));
    let body: Value = fleet.end_session(session).await?.json().await?;
    assert_eq!(
        (&body["end_reason"], &body["deleted_objects"]),
        (&json!("expired"), &json!(1))
    );
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_training_hands_its_photos_back() -> anyhow::Result<()> {
    let broker = Arc::new(Flaky::default());
    let fleet = Fleet::embedded_on(broker.clone(), PORTRAIT).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let session = fleet.open_session("acct-1").await?;
    for _ in 0..2 {
        assert_eq!(fleet.upload(session, jpeg(64, 64)).await?.status(), 201);
    }
    broker.down.store(true, Ordering::SeqCst);
    let refused = fleet.personalize(session, json!({})).await?;
    assert_eq!(error_code(refused).await?, (503, "unavailable".into()));
    let jobs = fleet.ledger.personalize_jobs(session).await?;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Failed);
    let view = fleet.get_json(&format!("/v1/sessions/{session}")).await?;
    assert_eq!(view["photos"], 2, "the photos went back to the session");
    assert_eq!(
        fleet.session_objects("acct-1", session).await?.len(),
        2,
        "photos kept"
    );
    broker.down.store(false, Ordering::SeqCst);
    let response = fleet
        .personalize(session, json!({"priority": "paid"}))
        .await?;
    assert_eq!(response.status(), 202);
    let jobs = fleet.take_jobs(1).await?;
    assert_eq!(jobs[0].session.as_ref().map(|s| s.photos.len()), Some(2));
    fleet.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_an_account_ends_its_sessions() -> anyhow::Result<()> {
    let fleet = Fleet::embedded(PORTRAIT).await?;
    fleet.create_account("acct-1", json!({})).await?;
    let session = fleet.open_session("acct-1").await?;
    assert_eq!(fleet.upload(session, jpeg(64, 64)).await?.status(), 201);
    let erased = fleet
        .request(reqwest::Method::POST, "/v1/accounts/acct-1/erasure")
        .send()
        .await?;
    assert_eq!(erased.status(), 202);
    let ended = fleet.ledger.get_session(session).await?;
    assert_eq!(ended.end_reason, Some(SessionEndReason::AccountErased));
    let marker = ObjectKey::session_ended(&account("acct-1"), session);
    assert!(
        fleet.store.head(&marker).await.is_ok(),
        "workers see the session ended"
    );
    let upload = fleet.upload(session, jpeg(64, 64)).await?;
    assert_eq!(error_code(upload).await?, (410, "session_ended".into()));
    let created = fleet
        .post_json("/v1/sessions", json!({"account_id": "acct-1"}))
        .await?;
    assert_eq!(error_code(created).await?, (403, "account_inactive".into()));
    fleet.stop().await
}
