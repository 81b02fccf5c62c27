//! A fresh ledger per test: SQLite in memory, or a PostgreSQL schema of the test's own (unique
//! name, dropped at the end). A PostgreSQL that is down fails the test; nothing is skipped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clipfleet_ledger::{Ledger, ManualClock};
use clipfleet_proto::Timestamp;
use sqlx::Connection;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// An instant in 2026, where every test's clock starts.
pub const START: Timestamp = Timestamp::from_unix_ms(1_780_000_000_000);

#[derive(Debug)]
pub struct Fixture {
    pub ledger: Ledger,
    pub clock: Arc<ManualClock>,
    pub db: Db,
    /// The PostgreSQL schema to drop at the end.
    schema: Option<String>,
}

impl Fixture {
    /// A migrated ledger on `db`, with a manual clock at [`START`].
    pub async fn new(db: Db) -> anyhow::Result<Fixture> {
        let clock = Arc::new(ManualClock::new(START));
        let (url, schema) = match db {
            Db::Sqlite => ("sqlite::memory:".to_owned(), None),
            Db::Postgres => {
                let schema = clipfleet_testkit::unique_name("ledger").replace('-', "_");
                let mut admin = admin().await?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut admin)
                    .await
                    .context("create the test's schema")?;
                admin.close().await.context("close admin connection")?;
                let base = clipfleet_testkit::postgres_url();
                let sep = if base.contains('?') { '&' } else { '?' };
                (
                    format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                    Some(schema),
                )
            }
        };
        let ledger = tokio::time::timeout(
            Duration::from_secs(30),
            Ledger::connect_with_clock(&url, clock.clone()),
        )
        .await
        .context("connect: no answer within 30 s")?
        .context("connect (is PostgreSQL running? scripts/services.sh start)")?;
        ledger.migrate().await.context("migrate")?;
        Ok(Fixture {
            ledger,
            clock,
            db,
            schema,
        })
    }

    /// Closes the ledger and drops the test's schema.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.ledger.close().await;
        if let Some(schema) = self.schema {
            let mut admin = admin().await?;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut admin)
                .await
                .context("drop the test's schema")?;
        }
        Ok(())
    }
}

async fn admin() -> anyhow::Result<sqlx::PgConnection> {
    let url = clipfleet_testkit::postgres_url();
    tokio::time::timeout(Duration::from_secs(30), sqlx::PgConnection::connect(&url))
        .await
        .context("connect to PostgreSQL: no answer within 30 s")?
        .context("connect to PostgreSQL (is it running? scripts/services.sh start)")
}

/// Runs the suite function `$name` on both databases, each in a fixture of its own that is
/// cleaned up whether the test passed or not.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::fixture::{Db, Fixture};

                async fn run(db: Db) -> anyhow::Result<()> {
                    let fixture = Fixture::new(db).await?;
                    let result = $crate::suite::$name(&fixture).await;
                    fixture.cleanup().await?;
                    result
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() -> anyhow::Result<()> {
                    run(Db::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() -> anyhow::Result<()> {
                    run(Db::Postgres).await
                }
            }
        )+
    };
}
