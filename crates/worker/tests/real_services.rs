//! `clip-worker serve` as a process on the real services: RabbitMQ (lapin) and the S3 emulator
//! (sealed with a file keyring). A worker killed with SIGKILL in the middle of a job: a second
//! worker finishes it — exactly one video, the photo gone — and SIGTERM drains it cleanly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clipfleet_broker::{AmqpBroker, Broker, BrokerOptions, PoolSpec, QueueRef};
use clipfleet_infer::Manifest;
use clipfleet_proto::{AccountId, Motion, PoolName, Timestamp};
use clipfleet_store::{ObjectKey, ObjectStore, StoreErrorKind, list_all, open_sealed};
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
        let child = Command::new(env!("CARGO_BIN_EXE_clip-worker"))
            .args(["serve", "--worker-id", id, "--broker-namespace", NAMESPACE])
            .arg("--manifest")
            .arg(repo().join("models/manifest.toml"))
            .env("CLIPFLEET_BROKER__URL", amqp_url())
            .env("CLIPFLEET_STORE__URL", format!("s3://{}", self.bucket))
            .env("CLIPFLEET_STORE__SEALING__KEYRING", &self.keyring)
            .env("CLIPFLEET_POOLS__0__NAME", self.pool.as_str())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_is_finished_by_another_exactly_once() {
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
    let _ = std::fs::remove_dir_all(&dir);
}
