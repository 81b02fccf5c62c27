//! `drain`, `pause`, `resume`: steering messages on the control exchange, and `drain --wait`
//! watching the addressed workers' heartbeats until none holds a job.

use std::time::{Duration, Instant, SystemTime};

use clipfleet_broker::{Outgoing, Topic};
use clipfleet_proto::{
    Control, ControlCommand, PoolName, SCHEMA_VERSION, Timestamp, WorkerId, encode,
};
use serde_json::json;

use crate::cli::{DrainArgs, Target};
use crate::ctx::Ctx;
use crate::exit::{CtlResult, Exit, Failure};
use crate::heartbeats::{Listener, WorkerSeen};
use crate::output::Report;
use crate::progress;

/// How often a worker heartbeats on the control exchange (`WorkerConfig::heartbeat_every`'s
/// default; `status` listens a little longer than this for the same reason).
const WORKER_HEARTBEAT: Duration = Duration::from_secs(5);

/// What a steering command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// Stop taking jobs, finish, exit.
    Drain,
    /// Stop taking jobs, stay up.
    Pause,
    /// Take jobs again.
    Resume,
}

/// The pool and worker a target names, checked.
fn addressed(ctx: &Ctx, target: &Target) -> CtlResult<(Option<PoolName>, Option<WorkerId>)> {
    let pool = target
        .pool
        .as_deref()
        .map(|name| ctx.pool_name(name))
        .transpose()?;
    let worker = target
        .worker
        .as_deref()
        .map(WorkerId::new)
        .transpose()
        .map_err(|err| Failure::new(Exit::Usage, err))?;
    Ok((pool, worker))
}

fn matches(seen: &WorkerSeen, pool: Option<&PoolName>, worker: Option<&WorkerId>) -> bool {
    pool.is_none_or(|p| p.as_str() == seen.pool) && worker.is_none_or(|w| w.as_str() == seen.worker)
}

/// Publishes one steering command.
pub async fn steer(ctx: &Ctx, what: Steer, target: &Target) -> CtlResult<Report> {
    let (pool, worker) = addressed(ctx, target)?;
    let broker = ctx.broker().await?;
    if broker.control_bus().is_none() {
        return Err(Failure::msg(
            Exit::Refused,
            "this broker has no control bus (SQS): scale the worker deployment down instead; workers drain on SIGTERM",
        ));
    }
    let command = match what {
        Steer::Drain => ControlCommand::Drain {
            pool: pool.clone(),
            worker: worker.clone(),
        },
        Steer::Pause => ControlCommand::Pause {
            pool: pool.clone(),
            worker: worker.clone(),
        },
        Steer::Resume => ControlCommand::Resume {
            pool: pool.clone(),
            worker: worker.clone(),
        },
    };
    let message = Control {
        v: SCHEMA_VERSION,
        at: Timestamp::from_system_time(SystemTime::now()),
        command,
    };
    let body = encode(&message).map_err(|err| Failure::new(Exit::Failed, err))?;
    broker
        .publish(&Topic::Control, Outgoing::new(body))
        .await
        .map_err(anyhow::Error::from)?;
    let verb = match what {
        Steer::Drain => "drain",
        Steer::Pause => "pause",
        Steer::Resume => "resume",
    };
    let whom = describe(pool.as_ref(), worker.as_ref());
    Ok(Report::new(
        json!({ "sent": verb, "pool": pool.map(|p| p.to_string()), "worker": worker.map(|w| w.to_string()) }),
        format!("{verb} sent to {whom}\n"),
    ))
}

fn describe(pool: Option<&PoolName>, worker: Option<&WorkerId>) -> String {
    match (pool, worker) {
        (_, Some(worker)) => format!("worker {worker}"),
        (Some(pool), None) => format!("the workers of pool {pool}"),
        (None, None) => "every worker".to_owned(),
    }
}

/// `drain`, and with `--wait` the watch until the addressed workers hold nothing.
pub async fn drain(ctx: &Ctx, args: &DrainArgs) -> CtlResult<Report> {
    let (pool, worker) = addressed(ctx, &args.target)?;
    let broker = ctx.broker().await?;
    // Listen before sending, so the workers' answers are not missed.
    let listener = if args.wait {
        Listener::subscribe(broker.as_ref()).await?
    } else {
        None
    };
    let sent = steer(ctx, Steer::Drain, &args.target).await?;
    let Some(mut listener) = listener else {
        return Ok(sent);
    };
    let started = Instant::now();
    let bar = progress::bar(ctx, 0, "jobs in flight");
    let mut peak = 0u64;
    // A worker that was heard and then fell silent for this long has gone (exited).
    let silent_after = Duration::from_secs(12);
    // Every live worker heartbeats at least this often: until then a worker not yet heard may
    // be one of the addressed (a busy host can answer the drain late), so "all drained" waits.
    let everyone_heard_after = WORKER_HEARTBEAT + Duration::from_millis(500);
    loop {
        listener.poll(Duration::from_millis(500)).await?;
        let addressed: Vec<&WorkerSeen> = listener
            .seen
            .values()
            .filter(|seen| matches(seen, pool.as_ref(), worker.as_ref()))
            .collect();
        let busy: u64 = addressed
            .iter()
            .filter(|seen| seen.heard.is_none_or(|at| at.elapsed() < silent_after))
            .map(|seen| u64::from(seen.busy))
            .sum();
        peak = peak.max(busy);
        bar.set_length(peak);
        bar.set_position(peak - busy);
        let done = !addressed.is_empty()
            && started.elapsed() >= everyone_heard_after
            && addressed.iter().all(|seen| {
                (seen.draining && seen.busy == 0)
                    || seen.heard.is_none_or(|at| at.elapsed() >= silent_after)
            });
        if done {
            bar.finish_and_clear();
            let workers: Vec<_> = addressed.iter().map(|seen| seen.worker.clone()).collect();
            return Ok(Report::new(
                json!({ "sent": "drain", "drained": workers, "took_ms": started.elapsed().as_millis() as u64 }),
                format!(
                    "{}drained: {} ({} worker(s), {:.1} s)\n",
                    sent.text,
                    workers.join(", "),
                    workers.len(),
                    started.elapsed().as_secs_f64()
                ),
            ));
        }
        if started.elapsed() >= args.timeout {
            bar.abandon();
            return Err(Failure::msg(
                Exit::Timeout,
                if addressed.is_empty() {
                    format!("no addressed worker was heard within {:?}", args.timeout)
                } else {
                    format!("{busy} job(s) still in flight after {:?}", args.timeout)
                },
            ));
        }
    }
}
