//! The long-running mode: sweeps at an interval, serves `/livez`, `/readyz` and `/metrics`,
//! and stops between sweeps when told to.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_janitor::{RunOptions, SweepOutcome, run};
use clipfleet_proto::JobId;
use clipfleet_store::ObjectKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixture::{Db, Fixture, Store, default_policy};

async fn get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: janitor\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sweeps_serves_health_and_metrics_and_stops() -> anyhow::Result<()> {
    let f = Fixture::new(Db::Sqlite, Store::File).await?;
    let result = async {
        let account = f.account("svc", false).await?;
        let orphan = ObjectKey::input(&account, JobId::generate());
        f.put(&orphan).await?;
        f.advance(Duration::from_secs(3600));
        let janitor = Arc::new(f.janitor(default_policy()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = RunOptions {
            interval: Duration::from_millis(50),
            once: false,
        };
        let running = tokio::spawn(run(janitor.clone(), options, Some(listener), async move {
            let _ = stopped.await;
        }));
        let mut metrics = String::new();
        for _ in 0..100 {
            metrics = get(addr, "/metrics").await?;
            if metrics.contains("clipfleet_janitor_deleted_total{rule=\"orphan_photo\"} 1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ensure!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        ensure!(
            metrics.contains("clipfleet_janitor_deleted_total{rule=\"orphan_photo\"} 1"),
            "{metrics}"
        );
        ensure!(
            metrics.contains("clipfleet_janitor_sweep_duration_seconds_count"),
            "{metrics}"
        );
        ensure!(get(addr, "/livez").await?.starts_with("HTTP/1.1 200"));
        let ready = get(addr, "/readyz").await?;
        ensure!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        ensure!(!f.exists(&orphan).await?, "the orphan survived the loop");
        let _ = stop.send(());
        let last = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .context("the loop did not stop")???;
        ensure!(matches!(last, Some(SweepOutcome::Swept(_))), "{last:?}");
        Ok(())
    }
    .await;
    f.cleanup().await?;
    result
}
