//! A personalisation session end to end through ingest's API, on every backend: memory broker,
//! sealed memory store, SQLite in memory; RabbitMQ, the S3 emulator, PostgreSQL; SQS (the
//! emulator), a local directory, a SQLite file. A session is opened, three photos uploaded, the
//! portrait's adapter trained on them, two portraits rendered through it, then the session
//! deleted. Afterwards every object the store holds and every row of every ledger table is
//! listed: only what the policy allows is there — the two portraits (until their TTL), the
//! session's end marker (until no job can still run), and rows of ids, states, times and the
//! deletion audit. No photo, no adapter, no photo digest, no table the test does not know.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clipfleet_client::Client;
use clipfleet_config::Config;
use clipfleet_fleet::{DEV_TOKEN, Fleet, FleetOptions};
use clipfleet_testkit::{PgSchema, aws_sdk_config, manifest_entry, unique_name, write_manifest};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{Column, Row, TypeInfo};

/// The portrait at a 256-pixel budget, its adapter trained in 60 steps at 64², framed by MTCNN.
fn manifest(tag: &str) -> PathBuf {
    let portrait = manifest_entry("portrait")
        .replace(
            "input = { width = 512, height = 512 }",
            "input = { width = 256, height = 256 }",
        )
        .replace("steps = 200", "steps = 60")
        .replace("train_size = 128", "train_size = 64");
    write_manifest(
        tag,
        &format!(
            "version = 1\n[[model]]{portrait}[[model]]{}",
            manifest_entry("mtcnn")
        ),
        &["portrait.pt", "mtcnn.pt"],
    )
}

/// The fleet serving `portrait` on the backends of `env` (config overrides).
async fn start(tag: &str, env: &[(&str, &str)], namespace: &str) -> anyhow::Result<Fleet> {
    let mut vars: BTreeMap<String, String> =
        BTreeMap::from([("CLIPFLEET_POOLS__0__MODEL".into(), "portrait".into())]);
    vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let mut options = FleetOptions::embedded()?;
    options.config = Config::load(None, &vars)?;
    options.manifest = manifest(tag);
    options.janitor_every = Some(Duration::from_secs(1));
    options.broker_namespace = Some(namespace.to_owned());
    Fleet::start(options).await
}

fn jpeg(width: u32, height: u32, seed: u8) -> anyhow::Result<Vec<u8>> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width) as u8 ^ seed,
            (y * 255 / height) as u8,
            seed.wrapping_mul(3),
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg)?;
    Ok(out.into_inner())
}

/// Every row of every table, each cell as text, by table.
async fn ledger_rows(fleet: &Fleet) -> anyhow::Result<BTreeMap<String, Vec<Vec<String>>>> {
    let pool = fleet.ledger.pool();
    let tables: Vec<String> = match sqlx::query_scalar::<_, String>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(pool)
    .await
    {
        Ok(tables) => tables,
        Err(_) => {
            sqlx::query_scalar::<_, String>(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema()",
            )
            .fetch_all(pool)
            .await?
        }
    };
    let mut all = BTreeMap::new();
    for table in tables {
        if table == "_sqlx_migrations" {
            // sqlx's record of the migrations applied (version, description, checksum): no data
            // of anyone's, and columns its `Any` driver cannot read.
            all.insert(table, Vec::new());
            continue;
        }
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(pool)
            .await
            .with_context(|| format!("read {table}"))?;
        let cells = rows
            .iter()
            .map(|row| {
                row.columns()
                    .iter()
                    .map(|column| {
                        let i = column.ordinal();
                        row.try_get::<Option<String>, _>(i)
                            .map(|v| v.unwrap_or_default())
                            .or_else(|_| {
                                row.try_get::<Option<i64>, _>(i)
                                    .map(|v| v.map(|v| v.to_string()).unwrap_or_default())
                            })
                            .or_else(|_| {
                                row.try_get::<Option<Vec<u8>>, _>(i)
                                    .map(|v| hex::encode(v.unwrap_or_default()))
                            })
                            .unwrap_or_else(|_| format!("<{}>", column.type_info().name()))
                    })
                    .collect()
            })
            .collect();
        all.insert(table, cells);
    }
    Ok(all)
}

/// The job once it ended and its photo (or a training's photos) is deleted.
async fn done(client: &Client, job_id: &str) -> anyhow::Result<clipfleet_client::JobStatus> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = client
            .wait(
                job_id,
                Duration::from_millis(100),
                Duration::from_secs(120),
                |_| {},
            )
            .await?;
        if status.input_deleted_at_ms.is_some() {
            return Ok(status);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "photo of {job_id} not deleted: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One session's life through the API, then the listing proof. Returns how long
/// `DELETE /v1/sessions/{id}` took (the photos and adapter gone and verified when it answers).
async fn a_session_leaves_only_what_the_policy_allows(fleet: &Fleet) -> anyhow::Result<Duration> {
    let client = Client::new(fleet.base_url(), DEV_TOKEN)?;
    let account = unique_name("acct-session");
    client.ensure_account(&account, "1990-04-01").await?;
    let session = client.create_session(&account).await?;
    anyhow::ensure!(session.is_open(), "{session:?}");
    let portrait =
        std::fs::read(clipfleet_testkit::repo_root().join("models/samples/portrait.jpg"))?;
    let photos = [portrait.clone(), jpeg(400, 300, 7)?, jpeg(300, 400, 91)?];
    let digests: Vec<String> = photos
        .iter()
        .map(|p| hex::encode(Sha256::digest(p)))
        .collect();
    for photo in &photos {
        client
            .upload_session_photo(&session.session_id, Bytes::from(photo.clone()))
            .await?;
    }
    // A portrait of the session, as the app's backend submits it.
    let submit_in_session = |photo: Vec<u8>| {
        client.submit_in_session(
            &account,
            &session.session_id,
            Bytes::from(photo),
            json!({ "model": "portrait" }),
            None,
        )
    };
    // Not trained yet: a job of the session is refused.
    let early = submit_in_session(portrait.clone()).await;
    anyhow::ensure!(
        early.as_ref().err().map(|e| e.code()) == Some(clipfleet_proto::ErrorCode::SessionNotReady),
        "a job before the adapter: {early:?}"
    );
    let training = client.personalize(&session.session_id, None).await?;
    let trained = done(&client, &training.job_id).await?;
    anyhow::ensure!(trained.status == "succeeded", "training: {trained:?}");
    let ready = client.session(&session.session_id).await?;
    anyhow::ensure!(ready.adapter_ready && ready.photos == 0, "{ready:?}");
    // The adapter is never handed out.
    let adapter = client.output(&training.job_id).await;
    anyhow::ensure!(adapter.is_err(), "the adapter was downloadable");

    let mut outputs = BTreeSet::new();
    for photo in [portrait.clone(), jpeg(320, 240, 33)?] {
        let job = submit_in_session(photo).await?;
        let finished = done(&client, &job.job_id).await?;
        anyhow::ensure!(finished.status == "succeeded", "portrait: {finished:?}");
        let still = client.output(&job.job_id).await?;
        image::load_from_memory(&still).context("a JPEG")?;
        outputs.insert(format!("outputs/{account}/{}.jpg", job.job_id));
    }

    let started = Instant::now();
    let ended = client.end_session(&session.session_id).await?;
    let took = started.elapsed();
    anyhow::ensure!(ended.deleted_objects >= 1, "{ended:?}");
    let again = client.end_session(&session.session_id).await?;
    anyhow::ensure!(again.deleted_objects == 0, "{again:?}");
    let after = submit_in_session(portrait.clone()).await;
    anyhow::ensure!(
        after.as_ref().err().map(|e| e.code()) == Some(clipfleet_proto::ErrorCode::SessionEnded),
        "a job after the session: {after:?}"
    );

    // Every object: the two portraits and the session's end marker, nothing else.
    let keys: BTreeSet<String> = clipfleet_store::list_all(fleet.raw_store.as_ref(), "")
        .await?
        .into_iter()
        .map(|object| object.key.as_str().to_owned())
        .filter(|key| key.contains(&account))
        .collect();
    let mut allowed = outputs.clone();
    allowed.insert(format!("sessions/{account}/{}/ended", session.session_id));
    anyhow::ensure!(keys == allowed, "stored: {keys:?}, allowed: {allowed:?}");

    // Every ledger row: known tables only; the session ended with its photo rows gone; every
    // job's photo deleted; no photo's digest anywhere.
    let rows = ledger_rows(fleet).await?;
    let known = [
        "_sqlx_migrations",
        "accounts",
        "deletions",
        "janitor_sweeps",
        "job_attempts",
        "jobs",
        "session_photos",
        "sessions",
        "usage_records",
    ];
    for table in rows.keys() {
        anyhow::ensure!(
            known.contains(&table.as_str()),
            "table {table} is not one this test knows: what may it keep?"
        );
    }
    let of_account = |table: &str| -> Vec<&Vec<String>> {
        rows.get(table)
            .map(|rows| {
                rows.iter()
                    .filter(|row| row.iter().any(|c| c == &account))
                    .collect()
            })
            .unwrap_or_default()
    };
    anyhow::ensure!(
        rows.get("session_photos").is_none_or(Vec::is_empty),
        "photo rows outlive the session: {:?}",
        rows.get("session_photos")
    );
    anyhow::ensure!(
        of_account("sessions").len() == 1,
        "{:?}",
        rows.get("sessions")
    );
    anyhow::ensure!(of_account("jobs").len() == 3, "{:?}", of_account("jobs"));
    for (table, table_rows) in &rows {
        for row in table_rows {
            for digest in &digests {
                anyhow::ensure!(
                    !row.iter().any(|cell| cell.contains(digest.as_str())),
                    "{table} keeps a photo's digest: {row:?}"
                );
            }
        }
    }
    let audited = rows
        .get("deletions")
        .map(|rows| {
            rows.iter()
                .filter(|row| row.iter().any(|c| c.contains(&session.session_id)))
                .count()
        })
        .unwrap_or(0);
    anyhow::ensure!(audited >= 1, "the session's deletion is not audited");
    Ok(took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_embedded_backends_leaves_only_what_the_policy_allows() -> anyhow::Result<()> {
    let fleet = start("sessions-embedded", &[], &unique_name("s")).await?;
    let result = a_session_leaves_only_what_the_policy_allows(&fleet).await;
    fleet.shutdown().await?;
    result.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_rabbitmq_s3_and_postgres_leaves_only_what_the_policy_allows()
-> anyhow::Result<()> {
    let shared = aws_sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique_name("sessions");
    s3.create_bucket().bucket(&bucket).send().await?;
    let schema = PgSchema::create("sessions").await?;
    let store = format!("s3://{bucket}");
    let amqp = clipfleet_testkit::amqp_url();
    let namespace = unique_name("s");
    let fleet = start(
        "sessions-real",
        &[
            ("CLIPFLEET_BROKER__URL", &amqp),
            ("CLIPFLEET_STORE__URL", &store),
            ("CLIPFLEET_LEDGER__URL", &schema.url),
        ],
        &namespace,
    )
    .await?;
    let result = a_session_leaves_only_what_the_policy_allows(&fleet).await;
    let (raw, broker, pools) = (
        fleet.raw_store.clone(),
        fleet.broker.clone(),
        fleet.config.pools.clone(),
    );
    fleet.shutdown().await?;
    for object in clipfleet_store::list_all(raw.as_ref(), "").await? {
        raw.delete(&object.key).await?;
    }
    s3.delete_bucket().bucket(&bucket).send().await?;
    if let Some(admin) = broker.admin() {
        for pool in &pools {
            admin.delete_pool(&pool.name).await?;
        }
    }
    schema.drop_schema().await?;
    result.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_sqs_a_directory_and_a_sqlite_file_leaves_only_what_the_policy_allows()
-> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique_name("clipfleet-sessions"));
    std::fs::create_dir_all(dir.join("store"))?;
    let store = format!("file://{}", dir.join("store").display());
    let ledger = format!("sqlite://{}/ledger.db", dir.display());
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    let sqs = format!("sqs://{region}");
    let fleet = start(
        "sessions-sqs",
        &[
            ("CLIPFLEET_BROKER__URL", &sqs),
            ("CLIPFLEET_STORE__URL", &store),
            ("CLIPFLEET_LEDGER__URL", &ledger),
        ],
        &unique_name("s"),
    )
    .await?;
    let result = a_session_leaves_only_what_the_policy_allows(&fleet).await;
    let (broker, pools) = (fleet.broker.clone(), fleet.config.pools.clone());
    fleet.shutdown().await?;
    if let Some(admin) = broker.admin() {
        for pool in &pools {
            admin.delete_pool(&pool.name).await?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result.map(drop)
}
