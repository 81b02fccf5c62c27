//! `status`: per pool, what waits, what runs, what died; which workers are alive.

use std::fmt::Write as _;

use clipfleet_broker::QueueRef;
use serde::Serialize;
use serde_json::json;

use crate::cli::StatusArgs;
use crate::ctx::Ctx;
use crate::exit::CtlResult;
use crate::heartbeats::{Listener, WorkerSeen};
use crate::output::Report;
use crate::progress;

/// One pool's queues.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    /// The pool.
    pub pool: String,
    /// The model it serves.
    pub model: String,
    /// Jobs ready to run.
    pub ready: u64,
    /// Jobs delivered and not settled (where the backend tells).
    pub in_flight: Option<u64>,
    /// Jobs waiting out a retry delay (where the backend tells).
    pub delayed: Option<u64>,
    /// Consumers on the jobs queue (where the backend tells).
    pub consumers: Option<u64>,
    /// Dead letters.
    pub dead: u64,
}

/// Every pool's queue depths.
pub async fn pool_statuses(ctx: &Ctx) -> CtlResult<Vec<PoolStatus>> {
    let broker = ctx.broker().await?;
    let mut pools = Vec::new();
    for pool in &ctx.config.pools {
        let jobs = broker
            .depth(&QueueRef::Jobs(pool.name.clone()))
            .await
            .map_err(anyhow::Error::from)?;
        let dead = broker
            .depth(&QueueRef::Dead(pool.name.clone()))
            .await
            .map_err(anyhow::Error::from)?;
        pools.push(PoolStatus {
            pool: pool.name.to_string(),
            model: format!("{}@{}", pool.model, pool.model_version),
            ready: jobs.ready,
            in_flight: jobs.in_flight,
            delayed: jobs.delayed,
            consumers: jobs.consumers,
            dead: dead.ready,
        });
    }
    Ok(pools)
}

/// `status`.
pub async fn status(ctx: &Ctx, args: &StatusArgs) -> CtlResult<Report> {
    let pools = pool_statuses(ctx).await?;
    let broker = ctx.broker().await?;
    let workers: Option<Vec<WorkerSeen>> = match Listener::subscribe(broker.as_ref()).await? {
        Some(listener) => {
            let spinner = progress::spinner(ctx, "listening for worker heartbeats");
            let seen = listener.collect(args.listen).await?;
            spinner.finish_and_clear();
            Some(seen)
        }
        None => None,
    };
    let json = json!({
        "broker": ctx.config.broker.to_string(),
        "pools": pools,
        "workers": workers,
    });
    Ok(Report::new(json, render(&pools, workers.as_deref())))
}

fn opt(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn render(pools: &[PoolStatus], workers: Option<&[WorkerSeen]>) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<16} {:<12} {:>8} {:>9} {:>8} {:>9} {:>6}",
        "POOL", "MODEL", "READY", "IN-FLIGHT", "DELAYED", "CONSUMERS", "DEAD"
    );
    for pool in pools {
        let _ = writeln!(
            text,
            "{:<16} {:<12} {:>8} {:>9} {:>8} {:>9} {:>6}",
            pool.pool,
            pool.model,
            pool.ready,
            opt(pool.in_flight),
            opt(pool.delayed),
            opt(pool.consumers),
            pool.dead
        );
    }
    match workers {
        None => text.push_str("\nworkers: this broker has no control bus (SQS): none heard\n"),
        Some([]) => text.push_str("\nworkers: none heard\n"),
        Some(workers) => {
            let _ = writeln!(
                text,
                "\n{:<32} {:<16} {:>9} {:<8} {:<12} {:<9} {:>9}",
                "WORKER", "POOL", "BUSY", "DEVICE", "MODEL", "STATE", "LAST SEEN"
            );
            for w in workers {
                let _ = writeln!(
                    text,
                    "{:<32} {:<16} {:>9} {:<8} {:<12} {:<9} {:>8.1}s",
                    w.worker,
                    w.pool,
                    format!("{}/{}", w.busy, w.slots),
                    w.device,
                    w.model,
                    if w.draining { "draining" } else { "serving" },
                    w.age_ms as f64 / 1000.0
                );
            }
        }
    }
    text
}
