//! `clip-worker serve` as a process on the real services: RabbitMQ (lapin) and the S3 emulator
//! (sealed with a file keyring). A worker killed with SIGKILL in the middle of a job: a second
//! worker finishes it — exactly one video, the photo gone — and SIGTERM drains it cleanly. A
//! worker killed in the middle of a session's training: once the session ends, the job's
//! redelivery leaves neither adapter nor photo.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clipfleet_broker::{
    AmqpBroker, Broker, BrokerOptions, Outgoing, PoolSpec, QueueRef, Receive, Topic,
};
use clipfleet_infer::Manifest;
use clipfleet_proto::{
    AccountId, EventBatch, EventKind, JobKind, MAX_SESSION_PHOTOS, Motion, PhotoId, PoolName,
    SessionId, SessionPhoto, SessionRef, Timestamp, decode, encode,
};
use clipfleet_store::{
    ObjectKey, ObjectStore, StoreErrorKind, body_from_bytes, list_all, open_sealed,
};
use clipfleet_testkit::{amqp_url, aws_endpoint_url, aws_sdk_config, unique_name};
use clipfleet_worker::{job_for_photo, submit};
use sha2::{Digest, Sha256};

const NAMESPACE: &str = "clipfleet-test";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
}

async fn s3() -> aws_sdk_s3::Client {
    let shared = aws_sdk_config().await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    )
}

struct Setup {
    bucket: String,
    keyring: String,
    pool: PoolName,
    dir: PathBuf,
}

impl Setup {
    fn worker(&self, id: &str) -> Worker {
        self.worker_of(id, "motion")
    }

    /// A worker whose pool serves `model`.
    fn worker_of(&self, id: &str, model: &str) -> Worker {
        let child = Command::new(env!("CARGO_BIN_EXE_clip-worker"))
            .args(["serve", "--worker-id", id, "--broker-namespace", NAMESPACE])
            .arg("--manifest")
            .arg(repo().join("models/manifest.toml"))
            .env("CLIPFLEET_BROKER__URL", amqp_url())
            .env("CLIPFLEET_STORE__URL", format!("s3://{}", self.bucket))
            .env("CLIPFLEET_STORE__SEALING__KEYRING", &self.keyring)
            .env("CLIPFLEET_POOLS__0__NAME", self.pool.as_str())
            .env("CLIPFLEET_POOLS__0__MODEL", model)
            .env("AWS_ENDPOINT_URL", aws_endpoint_url())
            .env("AWS_REGION", region())
            .env(
                "AWS_ACCESS_KEY_ID",
                std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into()),
            )
            .env(
                "AWS_SECRET_ACCESS_KEY",
                std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()),
            )
            .env_remove("LD_LIBRARY_PATH")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{id}.log"))).expect("log"))
            .spawn()
            .expect("start clip-worker");
        Worker(child)
    }
}

/// Kills the worker if the test ends (or fails) before it does.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} failed");
}

async fn until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {timeout:?}");
}

/// A bucket, a file keyring and a RabbitMQ pool of the test's own.
async fn setup() -> (Setup, aws_sdk_s3::Client, Arc<dyn ObjectStore>, AmqpBroker) {
    let dir = std::env::temp_dir().join(unique_name("clip-worker-real"));
    std::fs::create_dir_all(&dir).expect("dir");
    let key: [u8; 32] = Sha256::digest(dir.to_string_lossy().as_bytes()).into();
    std::fs::write(
        dir.join("keyring.toml"),
        format!("current = \"k1\"\n[keys]\nk1 = \"{}\"\n", hex::encode(key)),
    )
    .expect("keyring");
    let setup = Setup {
        bucket: unique_name("worker"),
        keyring: format!("file://{}", dir.join("keyring.toml").display()),
        pool: PoolName::new(unique_name("w")).expect("pool"),
        dir: dir.clone(),
    };
    let s3 = s3().await;
    s3.create_bucket()
        .bucket(&setup.bucket)
        .send()
        .await
        .expect("create bucket (scripts/emulator.sh start)");
    let store: Arc<dyn ObjectStore> =
        open_sealed(&format!("s3://{}", setup.bucket), &setup.keyring)
            .await
            .expect("store");
    let options = BrokerOptions {
        namespace: NAMESPACE.into(),
        ..BrokerOptions::default()
    };
    let broker = AmqpBroker::connect(&amqp_url(), options)
        .await
        .expect("RabbitMQ");
    broker
        .ensure_pool(&setup.pool, PoolSpec::default())
        .await
        .expect("pool");
    (setup, s3, store, broker)
}

/// Deletes the test's bucket and pool.
async fn tear_down(setup: Setup, s3: &aws_sdk_s3::Client, broker: &AmqpBroker) {
    s3.delete_bucket()
        .bucket(&setup.bucket)
        .send()
        .await
        .expect("delete bucket");
    broker
        .admin()
        .expect("admin")
        .delete_pool(&setup.pool)
        .await
        .expect("delete pool");
    let _ = std::fs::remove_dir_all(&setup.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_is_finished_by_another_exactly_once() {
    let (setup, s3, store, broker) = setup().await;

    // A long job (240 frames) so the first worker is surely in the middle of it when killed.
    let photo = std::fs::read(repo().join("models/samples/hillside.jpg")).expect("photo");
    let account = AccountId::new("acct-real").expect("account");
    let manifest = Manifest::load(&repo().join("models/manifest.toml")).expect("manifest");
    let motion = manifest
        .models
        .iter()
        .find(|m| m.name == "motion")
        .expect("motion model");
    let deadline = Timestamp::from_system_time(SystemTime::now() + Duration::from_secs(600));
    let mut job = job_for_photo(
        &account,
        &setup.pool,
        motion,
        &photo,
        Motion::PanLeft,
        deadline,
    );
    job.params.frames = 240;
    let (job_id, input) = (job.job_id, ObjectKey::input(&account, job.job_id));
    submit(&broker, store.as_ref(), &job, photo)
        .await
        .expect("submit");

    let mut first = setup.worker("w1");
    let queue = QueueRef::Jobs(setup.pool.clone());
    until(
        "the first worker takes the job",
        Duration::from_secs(60),
        async || broker.depth(&queue).await.is_ok_and(|d| d.ready == 0),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&first.0, "KILL");
    first.0.wait().expect("reap the killed worker");
    let output = ObjectKey::output(&account, job_id);
    assert!(
        store.head(&output).await.is_err(),
        "the first worker finished before the kill: the test proves nothing"
    );
    assert!(
        store.head(&input).await.is_ok(),
        "the photo went with the killed worker"
    );

    let mut second = setup.worker("w2");
    until("the second worker stores the video and deletes the photo", Duration::from_secs(180), async || {
        store.head(&output).await.is_ok() && matches!(store.head(&input).await, Err(err) if err.kind() == StoreErrorKind::NotFound)
    })
    .await;
    let videos = list_all(store.as_ref(), &format!("outputs/{account}/"))
        .await
        .expect("list outputs");
    assert_eq!(videos.len(), 1, "exactly one video: {videos:?}");
    let everything = list_all(store.as_ref(), "").await.expect("list bucket");
    assert_eq!(
        everything.len(),
        1,
        "nothing but the video is stored: {everything:?}"
    );
    until("the job is acked", Duration::from_secs(30), async || {
        broker.depth(&queue).await.is_ok_and(|d| d.ready == 0)
    })
    .await;

    signal(&second.0, "TERM");
    let status = second.0.wait().expect("wait for the drained worker");
    assert!(
        status.success(),
        "SIGTERM should drain and exit 0, got {status}"
    );

    store.delete(&output).await.expect("clean up video");
    tear_down(setup, &s3, &broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_training_leaves_no_adapter_and_no_photo_once_the_session_ends() {
    let (setup, s3, store, broker) = setup().await;
    let manifest = Manifest::load(&repo().join("models/manifest.toml")).expect("manifest");
    let portrait = manifest
        .models
        .iter()
        .find(|m| m.name == "portrait")
        .expect("portrait model");
    let account = AccountId::new("acct-real").expect("account");
    let photo = std::fs::read(repo().join("models/samples/portrait.jpg")).expect("photo");
    let now = SystemTime::now();
    let session_id = SessionId::generate();
    // The session's photos as ingest stores them; the most a session takes, so the training
    // surely runs when the kill comes.
    let mut photos = Vec::new();
    for _ in 0..MAX_SESSION_PHOTOS {
        let id = PhotoId::generate();
        store
            .put(
                &ObjectKey::session_photo(&account, session_id, id),
                body_from_bytes(photo.clone()),
            )
            .await
            .expect("put photo");
        photos.push(id);
    }
    let mut job = job_for_photo(
        &account,
        &setup.pool,
        portrait,
        &photo,
        Motion::ZoomIn,
        Timestamp::from_system_time(now + Duration::from_secs(600)),
    );
    let first_photo = ObjectKey::session_photo(&account, session_id, photos[0]);
    job.input.key = first_photo.to_string();
    job.kind = JobKind::Personalize;
    job.session = Some(SessionRef {
        id: session_id,
        expires_at: Timestamp::from_system_time(now + Duration::from_secs(3600)),
        photos: photos
            .iter()
            .map(|id| SessionPhoto {
                id: *id,
                size: job.input.size,
                sha256: job.input.sha256.clone(),
                content_type: job.input.content_type.clone(),
            })
            .collect(),
    });
    job.v = job.schema_version();
    broker
        .publish(
            &Topic::Jobs(job.pool.clone(), job.priority),
            Outgoing::new(encode(&job).expect("encode")),
        )
        .await
        .expect("publish");

    let mut first = setup.worker_of("t1", "portrait");
    // Killed as the training starts: the worker says `progress 10` once the photos are fetched,
    // right before it hands them to the engine (a fixed sleep let a fast machine finish first).
    let job_id = job.job_id;
    until(
        "the first worker starts training",
        Duration::from_secs(60),
        async || {
            let Ok(got) = broker
                .receive(
                    &QueueRef::Events,
                    Receive::new(64, Duration::from_secs(30), Duration::from_millis(100)),
                )
                .await
            else {
                return false;
            };
            let training = got.iter().any(|delivery| {
                decode::<EventBatch>(&delivery.body).is_ok_and(|batch| {
                    batch.events.iter().any(|e| {
                        e.job_id == job_id && matches!(e.event, EventKind::Progress { pct: 10 })
                    })
                })
            });
            let leases: Vec<_> = got.iter().map(|d| d.lease.clone()).collect();
            let _ = broker.ack(&leases).await;
            training
        },
    )
    .await;
    signal(&first.0, "KILL");
    first.0.wait().expect("reap the killed worker");
    let adapter = ObjectKey::session_adapter(&account, session_id, "portrait").expect("key");
    assert!(
        store.head(&adapter).await.is_err(),
        "the training finished before the kill: the test proves nothing"
    );
    assert!(
        store.head(&first_photo).await.is_ok(),
        "the photos went with the killed worker"
    );

    // The session ends (what `DELETE /v1/sessions/{id}` writes first), then a worker gets the
    // training again: it fails `session_ended`, and deletes the photos; no adapter is written.
    let marker = ObjectKey::session_ended(&account, session_id);
    store
        .put(&marker, body_from_bytes(Vec::new()))
        .await
        .expect("end the session");
    let mut second = setup.worker_of("t2", "portrait");
    let prefix = ObjectKey::session_prefix(&account, session_id);
    until(
        "the redelivered training leaves only the session's end marker",
        Duration::from_secs(180),
        async || {
            list_all(store.as_ref(), &prefix)
                .await
                .is_ok_and(|left| left.len() == 1 && left[0].key == marker)
        },
    )
    .await;
    assert!(store.head(&adapter).await.is_err());
    signal(&second.0, "TERM");
    second.0.wait().expect("wait for the drained worker");
    store.delete(&marker).await.expect("clean up the marker");
    tear_down(setup, &s3, &broker).await;
}
