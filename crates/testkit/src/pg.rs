//! A PostgreSQL schema of a test's own on the development server: unique name, a URL whose
//! connections use it (`search_path`), dropped at the end. A server that is down fails the
//! test; nothing is skipped.

use std::time::Duration;

use sqlx::Connection;

use crate::{postgres_url, unique_name};

/// A test's schema.
#[derive(Debug)]
pub struct PgSchema {
    /// Connect here: the server of [`postgres_url`] with `search_path` set to the schema.
    pub url: String,
    name: String,
}

impl PgSchema {
    /// Creates a schema named after `prefix` plus a unique suffix.
    pub async fn create(prefix: &str) -> Result<PgSchema, sqlx::Error> {
        let name = unique_name(prefix).replace('-', "_");
        let mut admin = admin().await?;
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let base = postgres_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        Ok(PgSchema {
            url: format!("{base}{sep}options=-c%20search_path%3D{name}"),
            name,
        })
    }

    /// Drops the schema and everything in it.
    pub async fn drop_schema(self) -> Result<(), sqlx::Error> {
        let mut admin = admin().await?;
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&mut admin)
            .await?;
        admin.close().await
    }
}

async fn admin() -> Result<sqlx::PgConnection, sqlx::Error> {
    let url = postgres_url();
    tokio::time::timeout(Duration::from_secs(30), sqlx::PgConnection::connect(&url))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}
