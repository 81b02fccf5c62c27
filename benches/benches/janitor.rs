//! The janitor, in one run (`cargo bench -p clipfleet-benches --bench janitor`):
//!
//! 1. Deleting expired objects on the S3 API (the emulator): the janitor's batched executor
//!    (audit records first, `DeleteObjects` with 1,000 keys per request, 4 batches in flight,
//!    verification by listing, confirmation) against one `DeleteObject` per key with nothing
//!    else. The one-by-one side runs on a sample of keys and is extrapolated per key (the
//!    ratio is per-key throughput either way). Puts of the fixture objects are not timed.
//! 2. The plan's time (gather + rules, nothing deleted) on a ledger of 1,000,000 jobs, on a
//!    SQLite file and on PostgreSQL: 98.5 % of jobs done and cleaned, 1 % with a video past
//!    its TTL, 0.25 % with an ended job's photo left, 0.25 % queued now (not due).
//!
//! Medians over rounds. Environment: AWS_ENDPOINT_URL (emulator, default 127.0.0.1:4566),
//! CLIPFLEET_TEST_POSTGRES_URL, BENCH_OBJECTS (default 100000), BENCH_SAMPLE (default 5000),
//! BENCH_ROUNDS (default 3), BENCH_JOBS (default 1000000), BENCH_SKIP (`delete` or `plan`).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::sync::Arc;
use std::time::{Duration, Instant};

use clipfleet_benches::{env_usize, median};
use clipfleet_janitor::{
    AfterDelete, ExecuteOptions, Executor, Janitor, LockSpec, ObjectDeletion, Policy, Rule,
};
use clipfleet_ledger::{Clock, Ledger, ManualClock, SubjectKind};
use clipfleet_proto::{AccountId, JobId, Timestamp};
use clipfleet_store::{
    InMemoryObjectStore, ObjectKey, ObjectStore, S3Location, S3ObjectStore, body_from_bytes,
    list_all,
};
use clipfleet_testkit::{aws_sdk_config, postgres_url, unique_name};
use futures_util::{StreamExt, stream};
use sqlx::Connection;

fn policy() -> Policy {
    Policy {
        input_max_age: Duration::from_secs(3600),
        output_ttl: Duration::from_secs(24 * 3600),
        account_months_after_termination: 6,
        usage_max_age: Duration::from_secs(90 * 24 * 3600),
        orphan_grace: Duration::from_secs(900),
        session_ttl: Duration::from_secs(24 * 3600),
    }
}

/// `n` video keys over 100 accounts.
fn keys(n: usize) -> Vec<ObjectKey> {
    (0..n)
        .map(|i| {
            let account = AccountId::new(format!("acct-{}", i % 100)).expect("account id");
            ObjectKey::output(&account, JobId::generate())
        })
        .collect()
}

async fn put_all(store: &dyn ObjectStore, keys: &[ObjectKey]) {
    stream::iter(keys)
        .map(|key| async move {
            store
                .put(key, body_from_bytes(&b"expired video"[..]))
                .await
                .expect("put fixture object");
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

async fn delete_bench() {
    let objects = env_usize("BENCH_OBJECTS", 100_000);
    let sample = env_usize("BENCH_SAMPLE", 5_000);
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let config = aws_sdk_config().await;
    let admin = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = unique_name("janitor-bench");
    admin
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket (emulator running?)");
    let store = S3ObjectStore::from_sdk_config(
        &config,
        S3Location::parse(&format!("s3://{bucket}/fleet")).expect("location"),
    );
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_ms(1_780_000_000_000)));
    let ledger = Ledger::connect_with_clock("sqlite::memory:", clock)
        .await
        .expect("ledger");
    ledger.migrate().await.expect("migrate");
    let (mut batched, mut single) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let batch_keys = keys(objects);
        let put_start = Instant::now();
        put_all(&store, &batch_keys).await;
        let put_s = put_start.elapsed().as_secs_f64();
        let deletions: Vec<ObjectDeletion> = batch_keys
            .iter()
            .map(|key| ObjectDeletion {
                rule: Rule::VideoPastTtl,
                key: key.clone(),
                subject_kind: SubjectKind::Job,
                subject_id: key
                    .segments()
                    .last()
                    .unwrap_or("x")
                    .trim_end_matches(".mp4")
                    .to_owned(),
                age: Duration::from_secs(86_400),
                then: AfterDelete::Nothing,
            })
            .collect();
        let refs: Vec<&ObjectDeletion> = deletions.iter().collect();
        let executor = Executor::new(&ledger, &store, ExecuteOptions::default());
        let start = Instant::now();
        let (deleted, failures) = executor.delete_objects(&refs).await;
        let took = start.elapsed().as_secs_f64();
        let gone: u64 = deleted.values().sum();
        assert_eq!(
            (gone, failures),
            (objects as u64, 0),
            "batched executor incomplete"
        );
        batched.push(objects as f64 / took);

        let single_keys = keys(sample);
        put_all(&store, &single_keys).await;
        let start = Instant::now();
        for key in &single_keys {
            store.delete(key).await.expect("delete object");
        }
        let took_single = start.elapsed().as_secs_f64();
        single.push(sample as f64 / took_single);
        assert!(
            list_all(&store, "").await.expect("list").is_empty(),
            "objects left"
        );
        println!(
            "round {round}: batched {objects} keys in {took:.2} s ({:.0} keys/s; puts took {put_s:.1} s), one-by-one {sample} keys in {took_single:.2} s ({:.0} keys/s)",
            objects as f64 / took,
            sample as f64 / took_single
        );
    }
    let (b, s) = (median(batched), median(single));
    println!(
        "delete {objects} expired objects on the emulator: batched executor {b:.0} keys/s ({:.1} s), one DeleteObject per key {s:.0} keys/s (extrapolated {:.1} s); ratio {:.1}x (median of {rounds})",
        objects as f64 / b,
        objects as f64 / s,
        b / s
    );
    admin.delete_bucket().bucket(&bucket).send().await.ok();
}

/// Fills a migrated ledger with `jobs` jobs over 10,000 accounts, in SQL, at `now`.
async fn fill(ledger: &Ledger, jobs: usize, now: Timestamp, postgres: bool) {
    let now_ms = i64::try_from(now.unix_ms()).expect("now");
    let series = |n: usize| {
        if postgres {
            format!("generate_series(0, {}) AS s(n)", n - 1)
        } else {
            format!(
                "(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < {}) SELECT n FROM s) AS s",
                n - 1
            )
        }
    };
    let pad = |expr: &str, width: usize| {
        if postgres {
            format!("lpad(({expr})::text, {width}, '0')")
        } else {
            format!("printf('%0{width}d', {expr})")
        }
    };
    let account = format!("'acct-' || {}", pad("n % 10000", 5));
    sqlx::query(&format!(
        "INSERT INTO accounts (id, status, created_at, updated_at) \
         SELECT 'acct-' || {}, 'active', {now_ms}, {now_ms} FROM {}",
        pad("n", 5),
        series(10_000)
    ))
    .execute(ledger.pool())
    .await
    .expect("insert accounts");
    let day = 86_400_000i64;
    // n % 400: 0..=3 video due, 4 ended photo left, 5 queued now, the rest done and clean.
    let sql = format!(
        "INSERT INTO jobs (id, account_id, pool, model, status, status_key, submitted_at, \
         finished_at, input_key, input_deleted_at, output_key, output_expires_at, output_deleted_at, attempts) \
         SELECT '01J' || {id}, {account}, 'default', 'motion@1', \
           CASE WHEN n % 400 = 5 THEN 'queued' ELSE 'succeeded' END, 0, \
           {now_ms} - CASE WHEN n % 400 = 5 THEN 0 ELSE 2 * {day} END - n, \
           CASE WHEN n % 400 = 5 THEN NULL ELSE {now_ms} - 2 * {day} END, \
           'inputs/' || {account} || '/01J' || {id}, \
           CASE WHEN n % 400 IN (4, 5) THEN NULL ELSE {now_ms} - 2 * {day} END, \
           CASE WHEN n % 400 = 5 THEN NULL ELSE 'outputs/' || {account} || '/01J' || {id} || '.mp4' END, \
           CASE WHEN n % 400 = 5 THEN NULL ELSE {now_ms} - {day} END, \
           CASE WHEN n % 400 < 4 OR n % 400 = 5 THEN NULL ELSE {now_ms} - {day} END, 1 \
         FROM {series}",
        id = pad("n", 23),
        series = series(jobs),
    );
    sqlx::query(&sql)
        .execute(ledger.pool())
        .await
        .expect("insert jobs");
    if postgres {
        sqlx::query("ANALYZE jobs")
            .execute(ledger.pool())
            .await
            .expect("analyze");
    } else {
        sqlx::query("ANALYZE")
            .execute(ledger.pool())
            .await
            .expect("analyze");
    }
}

async fn plan_on(name: &str, url: &str, jobs: usize, rounds: usize, postgres: bool) {
    let now = Timestamp::from_unix_ms(1_780_000_000_000);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let ledger = Ledger::connect_with_clock(url, clock.clone())
        .await
        .expect("ledger");
    ledger.migrate().await.expect("migrate");
    let start = Instant::now();
    fill(&ledger, jobs, now, postgres).await;
    let fill_s = start.elapsed().as_secs_f64();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemoryObjectStore::new());
    let janitor = Janitor::new(
        ledger.clone(),
        store,
        policy(),
        clock,
        LockSpec::for_ledger_url(url).expect("lock"),
    );
    let mut times = Vec::new();
    let mut actions = 0;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let plan = janitor.plan().await.expect("plan");
        times.push(start.elapsed().as_secs_f64());
        actions = plan.actions.len();
    }
    println!(
        "plan on {name} with {jobs} jobs: {:.3} s median of {} ({actions} deletions planned; filled in {fill_s:.1} s)",
        median(times),
        rounds.max(1)
    );
    ledger.close().await;
}

async fn plan_bench() {
    let jobs = env_usize("BENCH_JOBS", 1_000_000);
    let rounds = env_usize("BENCH_ROUNDS", 3).max(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/ledger.db", dir.path().display());
    plan_on("a SQLite file", &url, jobs, rounds, false).await;

    let schema = unique_name("janitor_bench").replace('-', "_");
    let mut admin = sqlx::PgConnection::connect(&postgres_url())
        .await
        .expect("postgres");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("schema");
    let base = postgres_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    plan_on("PostgreSQL", &url, jobs, rounds, true).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .expect("drop schema");
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported (one fixed run).
    let skip = std::env::var("BENCH_SKIP").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if skip != "delete" {
            delete_bench().await;
        }
        if skip != "plan" {
            plan_bench().await;
        }
    });
}
