//! A janitor over a fresh ledger and a fresh store per test: SQLite in memory or a PostgreSQL
//! schema of the test's own; a local directory or a bucket of the test's own on the S3
//! emulator. Everything is dropped at the end. A service that is down fails the test.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clipfleet_janitor::{ExecuteOptions, Janitor, LockSpec, Policy, SweepOutcome, SweepReport};
use clipfleet_ledger::{Ledger, ManualClock, NewAccount, NewJob, PersonalFields};
use clipfleet_proto::{
    AccountId, EventBatch, EventKind, JobEvent, JobId, PoolName, StageDurations, Timestamp,
    WorkerId,
};
use clipfleet_store::{
    LocalFileObjectStore, ObjectKey, ObjectStore, S3Location, S3ObjectStore, body_from_bytes,
    list_all,
};
use clipfleet_testkit::{aws_sdk_config, unique_name};
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    File,
    S3,
}

/// The policy of the embedded config: 1 h photos, 24 h videos, 6 months, 90 days usage,
/// 15 min orphan grace, 24 h sessions.
pub fn default_policy() -> Policy {
    Policy {
        input_max_age: Duration::from_secs(3600),
        output_ttl: Duration::from_secs(24 * 3600),
        account_months_after_termination: 6,
        usage_max_age: Duration::from_secs(90 * 24 * 3600),
        orphan_grace: Duration::from_secs(15 * 60),
        session_ttl: Duration::from_secs(24 * 3600),
    }
}

pub struct Fixture {
    pub ledger: Ledger,
    pub clock: Arc<ManualClock>,
    pub store: Arc<dyn ObjectStore>,
    pub lock: LockSpec,
    schema: Option<String>,
    bucket: Option<(aws_sdk_s3::Client, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("schema", &self.schema)
            .finish()
    }
}

pub fn s3_admin(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

async fn admin() -> anyhow::Result<sqlx::PgConnection> {
    let url = clipfleet_testkit::postgres_url();
    tokio::time::timeout(Duration::from_secs(30), sqlx::PgConnection::connect(&url))
        .await
        .context("connect to PostgreSQL: no answer within 30 s")?
        .context("connect to PostgreSQL (is it running? scripts/services.sh start)")
}

/// The real wall clock, to the millisecond: objects carry real write times.
pub fn real_now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

impl Fixture {
    pub async fn new(db: Db, store: Store) -> anyhow::Result<Fixture> {
        let clock = Arc::new(ManualClock::new(real_now()));
        let (url, schema) = match db {
            Db::Sqlite => ("sqlite::memory:".to_owned(), None),
            Db::Postgres => {
                let schema = unique_name("janitor").replace('-', "_");
                let mut admin = admin().await?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut admin)
                    .await
                    .context("create the test's schema")?;
                admin.close().await?;
                let base = clipfleet_testkit::postgres_url();
                let sep = if base.contains('?') { '&' } else { '?' };
                (
                    format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                    Some(schema),
                )
            }
        };
        let ledger = Ledger::connect_with_clock(&url, clock.clone())
            .await
            .context("connect ledger")?;
        ledger.migrate().await.context("migrate")?;
        let lock = LockSpec::for_ledger_url(&url)?;
        let (store, bucket, dir): (Arc<dyn ObjectStore>, _, _) = match store {
            Store::File => {
                let dir = tempfile::tempdir()?;
                let store = LocalFileObjectStore::open(dir.path()).await?;
                (Arc::new(store), None, Some(dir))
            }
            Store::S3 => {
                let config = aws_sdk_config().await;
                let admin = s3_admin(&config);
                let bucket = unique_name("janitor");
                admin.create_bucket().bucket(&bucket).send().await.context(
                    "create bucket (is the emulator running? scripts/emulator.sh start)",
                )?;
                let location = S3Location::parse(&format!("s3://{bucket}/fleet"))?;
                let store = S3ObjectStore::from_sdk_config(&config, location);
                (Arc::new(store), Some((admin, bucket)), None)
            }
        };
        Ok(Fixture {
            ledger,
            clock,
            store,
            lock,
            schema,
            bucket,
            _dir: dir,
        })
    }

    /// A janitor over this fixture with `policy`.
    pub fn janitor(&self, policy: Policy) -> Janitor {
        self.janitor_over(policy, self.store.clone(), ExecuteOptions::default())
    }

    /// A janitor over another view of the store (a failing wrapper).
    pub fn janitor_over(
        &self,
        policy: Policy,
        store: Arc<dyn ObjectStore>,
        options: ExecuteOptions,
    ) -> Janitor {
        Janitor::new(
            self.ledger.clone(),
            store,
            policy,
            self.clock.clone(),
            self.lock.clone(),
        )
        .with_execute_options(options)
    }

    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.ledger.close().await;
        if let Some(schema) = self.schema {
            let mut admin = admin().await?;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut admin)
                .await
                .context("drop the test's schema")?;
        }
        if let Some((admin, bucket)) = self.bucket {
            let versions = admin.list_object_versions().bucket(&bucket).send().await?;
            for v in versions.versions() {
                admin
                    .delete_object()
                    .bucket(&bucket)
                    .set_key(v.key().map(str::to_owned))
                    .set_version_id(v.version_id().map(str::to_owned))
                    .send()
                    .await?;
            }
            for m in versions.delete_markers() {
                admin
                    .delete_object()
                    .bucket(&bucket)
                    .set_key(m.key().map(str::to_owned))
                    .set_version_id(m.version_id().map(str::to_owned))
                    .send()
                    .await?;
            }
            for object in list_all(self.store.as_ref(), "").await? {
                self.store.delete(&object.key).await?;
            }
            admin
                .delete_bucket()
                .bucket(&bucket)
                .send()
                .await
                .context("delete bucket")?;
        }
        Ok(())
    }

    // --- building a world ---

    pub async fn account(&self, prefix: &str, under_14: bool) -> anyhow::Result<AccountId> {
        let id = AccountId::new(unique_name(prefix))?;
        self.ledger
            .create_account(&NewAccount {
                id: id.clone(),
                birth_date: Some("1990-04-01".into()),
                under_14,
                personal: PersonalFields {
                    email: Some("ada@example.com".into()),
                    name: Some("Ada Lovelace".into()),
                    phone: Some("+44 20 7946 0000".into()),
                    ..PersonalFields::default()
                },
            })
            .await?;
        Ok(id)
    }

    /// A job, queued now, with its photo stored.
    pub async fn job(&self, account: &AccountId) -> anyhow::Result<JobId> {
        let id = JobId::generate();
        self.ledger
            .insert_job(&NewJob {
                id,
                account_id: account.clone(),
                pool: PoolName::new("default")?,
                model: "motion@1".into(),
                input_key: ObjectKey::input(account, id).to_string(),
                idempotency: None,
                kind: None,
                session_id: None,
            })
            .await?;
        self.put(&ObjectKey::input(account, id)).await?;
        Ok(id)
    }

    /// The job's video stored and its `succeeded` event applied at the clock's now (the
    /// photo left behind: the worker's delete "did not happen").
    pub async fn succeed(&self, account: &AccountId, job: JobId) -> anyhow::Result<ObjectKey> {
        let key = ObjectKey::output(account, job);
        self.put(&key).await?;
        let now = clipfleet_ledger::Clock::now(self.clock.as_ref());
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
                            output_key: key.to_string(),
                            size: 1000,
                            stages: StageDurations::default(),
                        }),
                    ],
                },
                Duration::from_secs(24 * 3600),
            )
            .await?;
        Ok(key)
    }

    pub async fn put(&self, key: &ObjectKey) -> anyhow::Result<()> {
        self.store
            .put(key, body_from_bytes(&b"sealed bytes"[..]))
            .await
            .with_context(|| format!("put {key}"))
    }

    pub async fn exists(&self, key: &ObjectKey) -> anyhow::Result<bool> {
        Ok(!self
            .store
            .still_stored(std::slice::from_ref(key))
            .await?
            .is_empty())
    }

    /// Every key in the store.
    pub async fn keys(&self) -> anyhow::Result<Vec<String>> {
        Ok(list_all(self.store.as_ref(), "")
            .await?
            .into_iter()
            .map(|meta| meta.key.to_string())
            .collect())
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Audit rows about `target`: (reason, verified, row_count).
    pub async fn audit(&self, target: &str) -> anyhow::Result<Vec<(String, i64, Option<i64>)>> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT reason, verified, row_count FROM deletions WHERE target = $1 ORDER BY at",
        )
        .bind(target)
        .fetch_all(self.ledger.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("reason")?,
                    row.try_get("verified")?,
                    row.try_get("row_count")?,
                ))
            })
            .collect()
    }

    /// Every audit row, all columns as text, to look for personal data.
    pub async fn audit_text(&self) -> anyhow::Result<String> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT subject_kind, subject_id, target, reason, actor, dedup_key FROM deletions",
        )
        .fetch_all(self.ledger.pool())
        .await?;
        let mut text = String::new();
        for row in rows {
            for column in [
                "subject_kind",
                "subject_id",
                "target",
                "reason",
                "actor",
                "dedup_key",
            ] {
                let value: Option<String> = row.try_get(column)?;
                text.push_str(value.as_deref().unwrap_or(""));
                text.push('\n');
            }
        }
        Ok(text)
    }
}

/// Sweeps and insists the janitor leads (within 5 s: PostgreSQL frees a dead janitor's lock
/// when it notices its connection closed).
pub async fn sweep(janitor: &Janitor) -> anyhow::Result<SweepReport> {
    for _ in 0..50 {
        match janitor.sweep().await? {
            SweepOutcome::Swept(report) => return Ok(report),
            SweepOutcome::NotLeader => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    anyhow::bail!("the janitor did not get the lock within 5 s")
}

/// Runs a scenario on SQLite and PostgreSQL, each with the local store and with S3.
#[macro_export]
macro_rules! on_all {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::fixture::{Db, Fixture, Store};

                async fn run(db: Db, store: Store) -> anyhow::Result<()> {
                    let fixture = Fixture::new(db, store).await?;
                    let result = tokio::time::timeout(
                        std::time::Duration::from_secs(300),
                        $crate::scenarios::$name(&fixture),
                    )
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("no result within 300 s")));
                    fixture.cleanup().await?;
                    result
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_file() -> anyhow::Result<()> {
                    run(Db::Sqlite, Store::File).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_s3() -> anyhow::Result<()> {
                    run(Db::Sqlite, Store::S3).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_file() -> anyhow::Result<()> {
                    run(Db::Postgres, Store::File).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_s3() -> anyhow::Result<()> {
                    run(Db::Postgres, Store::S3).await
                }
            }
        )+
    };
}
