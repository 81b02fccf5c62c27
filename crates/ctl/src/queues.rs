//! `queue move` and `dlq list | replay | purge`.
//!
//! Moves go through [`clipfleet_broker::BrokerAdmin::move_messages`], whose batches move whole
//! or not at all (an AMQP transaction on RabbitMQ): a mover killed mid-way and run again moves
//! every message exactly once. Replay republishes with a confirm and only then acks the dead
//! letter; a replayer killed between the two leaves a second copy of a job, which the workers
//! absorb (a job whose video exists only finishes).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clipfleet_broker::{
    Broker, DEAD_REASON_HEADER, Delivery, Nack, Outgoing, QueueRef, Receive, Topic,
};
use clipfleet_ledger::{AccountStatus, DeletionReason, NewDeletion, SubjectKind};
use clipfleet_proto::{ErrorCode, GenerateJob, PoolName, decode};
use clipfleet_store::{ObjectKey, StoreErrorKind};
use serde::Serialize;
use serde_json::json;

use crate::cli::{DlqArgs, QueueName};
use crate::ctx::Ctx;
use crate::exit::{CtlResult, Exit, Failure};
use crate::output::Report;
use crate::progress;

/// How long clipctl holds a dead letter it is looking at.
const LEASE: Duration = Duration::from_secs(60);

fn queue_ref(ctx: &Ctx, name: &QueueName) -> CtlResult<QueueRef> {
    Ok(match name {
        QueueName::Jobs(pool) => QueueRef::Jobs(ctx.pool_name(pool)?),
        QueueName::Dead(pool) => QueueRef::Dead(ctx.pool_name(pool)?),
    })
}

/// `queue move`.
pub async fn move_queue(
    ctx: &Ctx,
    from: &QueueName,
    to: &QueueName,
    limit: Option<u64>,
    batch: u64,
) -> CtlResult<Report> {
    if from == to {
        return Err(Failure::msg(
            Exit::Usage,
            "--from and --to are the same queue",
        ));
    }
    let (source, target) = (queue_ref(ctx, from)?, queue_ref(ctx, to)?);
    let broker = ctx.broker().await?;
    let admin = broker
        .admin()
        .ok_or_else(|| Failure::msg(Exit::Refused, "this broker has no operator actions"))?;
    let waiting = broker
        .depth(&source)
        .await
        .map_err(anyhow::Error::from)?
        .ready;
    let total = limit.map_or(waiting, |limit| limit.min(waiting));
    let bar = progress::bar(ctx, total, "messages");
    let mut moved = 0u64;
    while limit.is_none_or(|limit| moved < limit) {
        let want = limit.map_or(batch, |limit| (limit - moved).min(batch));
        let count = admin
            .move_messages(
                &source,
                &target,
                usize::try_from(want).unwrap_or(usize::MAX),
            )
            .await
            .with_context(|| format!("move from {from} to {to} (moved {moved} so far)"))?;
        if count == 0 {
            break;
        }
        moved += count as u64;
        bar.set_position(moved.min(total.max(moved)));
    }
    bar.finish_and_clear();
    Ok(Report::new(
        json!({ "from": from.to_string(), "to": to.to_string(), "moved": moved }),
        format!("moved {moved} message(s) from {from} to {to}\n"),
    ))
}

/// One dead letter as `dlq list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The job (none when the body is not a job).
    pub job_id: Option<String>,
    /// Whose.
    pub account_id: Option<String>,
    /// Why it died (an error code).
    pub reason: String,
    /// Deliveries before it died.
    pub deliveries: u32,
    /// Delayed retries before it died.
    pub retries: u32,
    /// `paid` or `free`.
    pub priority: Option<String>,
    /// When it was submitted (unix ms).
    pub submitted_at_ms: Option<u64>,
}

fn describe(delivery: &Delivery) -> (DeadLetter, Option<GenerateJob>) {
    let job = decode::<GenerateJob>(&delivery.body).ok();
    let letter = DeadLetter {
        job_id: job.as_ref().map(|j| j.job_id.to_string()),
        account_id: job.as_ref().map(|j| j.account_id.to_string()),
        reason: delivery.dead_reason().unwrap_or("unknown").to_owned(),
        deliveries: delivery.delivery_count,
        retries: delivery.retries,
        priority: job.as_ref().map(|j| j.priority.to_string()),
        submitted_at_ms: job.as_ref().map(|j| j.submitted_at.unix_ms()),
    };
    (letter, job)
}

/// Takes up to `limit` dead letters of `queue`, leased to this process.
async fn take(broker: &dyn Broker, queue: &QueueRef, limit: u64) -> CtlResult<Vec<Delivery>> {
    let mut taken = Vec::new();
    while (taken.len() as u64) < limit {
        let want = usize::try_from(limit - taken.len() as u64)
            .unwrap_or(usize::MAX)
            .min(256);
        let got = broker
            .receive(queue, Receive::new(want, LEASE, Duration::from_millis(300)))
            .await
            .map_err(anyhow::Error::from)?;
        if got.is_empty() {
            break;
        }
        taken.extend(got);
    }
    Ok(taken)
}

/// Up to `limit` dead letters of `pool`, read and put back untouched.
pub async fn peek(ctx: &Ctx, pool: &PoolName, limit: u64) -> CtlResult<Vec<DeadLetter>> {
    let broker = ctx.broker().await?;
    let queue = QueueRef::Dead(pool.clone());
    let taken = take(broker.as_ref(), &queue, limit).await?;
    let letters: Vec<DeadLetter> = taken.iter().map(|d| describe(d).0).collect();
    for delivery in &taken {
        broker
            .nack(&delivery.lease, Nack::Requeue)
            .await
            .map_err(anyhow::Error::from)?;
    }
    Ok(letters)
}

/// `dlq list`: reads the dead letters and puts them back untouched.
pub async fn list(ctx: &Ctx, args: &DlqArgs) -> CtlResult<Report> {
    let pool = ctx.pool(args.pool.as_deref())?.name.clone();
    let letters = peek(ctx, &pool, args.limit).await?;
    let mut text = format!("{} dead letter(s) in pool {pool}\n", letters.len());
    if !letters.is_empty() {
        let _ = writeln!(
            text,
            "{:<28} {:<24} {:<16} {:>10} {:>7}",
            "JOB", "ACCOUNT", "REASON", "DELIVERIES", "RETRIES"
        );
    }
    for letter in &letters {
        let _ = writeln!(
            text,
            "{:<28} {:<24} {:<16} {:>10} {:>7}",
            letter.job_id.as_deref().unwrap_or("(not a job)"),
            letter.account_id.as_deref().unwrap_or("-"),
            letter.reason,
            letter.deliveries,
            letter.retries
        );
    }
    Ok(Report::new(
        json!({ "pool": pool.to_string(), "dead_letters": letters }),
        text,
    ))
}

/// Why a dead letter may not run again.
async fn refusal(ctx: &Ctx, job: &GenerateJob) -> CtlResult<Option<&'static str>> {
    let tombstone = ctx
        .store()
        .await?
        .head(&ObjectKey::tombstone(&job.account_id))
        .await;
    match tombstone {
        Ok(_) => return Ok(Some("account_erased")),
        Err(err) if err.kind() == StoreErrorKind::NotFound => {}
        Err(err) => return Err(anyhow::Error::from(err).into()),
    }
    let account = match ctx.ledger().await?.get_account(&job.account_id).await {
        Ok(account) => account,
        Err(err) if err.kind() == clipfleet_ledger::LedgerErrorKind::NotFound => {
            return Ok(Some("unknown_account"));
        }
        Err(err) => return Err(anyhow::Error::from(err).into()),
    };
    Ok(
        if account.tombstoned_at.is_some() || account.erasure_requested_at.is_some() {
            Some("account_erased")
        } else if account.under_14 {
            Some("under_age")
        } else if account.status != AccountStatus::Active {
            Some("account_inactive")
        } else {
            None
        },
    )
}

/// Deletes a dead job's photo (audited) and fails its ledger row.
async fn discard(ctx: &Ctx, job: &GenerateJob, code: ErrorCode, why: &str) -> CtlResult<()> {
    let key = ObjectKey::input(&job.account_id, job.job_id);
    let ledger = ctx.ledger().await?;
    ctx.raw_store()
        .await?
        .delete(&key)
        .await
        .map_err(anyhow::Error::from)?;
    ledger
        .record_deletion(&NewDeletion {
            subject_kind: SubjectKind::Job,
            subject_id: job.job_id.to_string(),
            target: key.as_str().to_owned(),
            reason: DeletionReason::InputConsumed,
            actor: "operator:clipctl".to_owned(),
            verified: true,
        })
        .await
        .map_err(anyhow::Error::from)?;
    let _ = ledger.mark_inputs_deleted(&[job.job_id]).await;
    match ledger.fail_job(job.job_id, code, why).await {
        Ok(_) => Ok(()),
        // A job the ledger never saw (or already forgot): nothing to mark.
        Err(err) if err.kind() == clipfleet_ledger::LedgerErrorKind::NotFound => Ok(()),
        Err(err) => Err(anyhow::Error::from(err).into()),
    }
}

/// `dlq replay`: each dead job back to its pool's jobs queue, unless its account may no longer
/// run jobs, in which case its photo is deleted and the dead letter dropped.
pub async fn replay(ctx: &Ctx, args: &DlqArgs) -> CtlResult<Report> {
    let pool = ctx.pool(args.pool.as_deref())?.name.clone();
    let broker = ctx.broker().await?;
    let taken = take(broker.as_ref(), &QueueRef::Dead(pool.clone()), args.limit).await?;
    let bar = progress::bar(ctx, taken.len() as u64, "dead letters");
    let (mut replayed, mut discarded, mut undecodable) = (0u64, Vec::new(), 0u64);
    for delivery in &taken {
        let (_, job) = describe(delivery);
        let Some(job) = job else {
            // Not a job: nothing to run, nothing to delete. Left for `dlq purge`.
            undecodable += 1;
            broker
                .nack(&delivery.lease, Nack::Requeue)
                .await
                .map_err(anyhow::Error::from)?;
            bar.inc(1);
            continue;
        };
        if let Some(why) = refusal(ctx, &job).await? {
            discard(
                ctx,
                &job,
                ErrorCode::AccountErased,
                &format!("not replayed: {why}"),
            )
            .await?;
            discarded.push(json!({ "job_id": job.job_id.to_string(), "why": why }));
        } else {
            let mut headers = delivery.headers.clone();
            headers.remove(DEAD_REASON_HEADER);
            broker
                .publish(
                    &Topic::Jobs(pool.clone(), job.priority),
                    Outgoing {
                        body: delivery.body.clone(),
                        headers,
                    },
                )
                .await
                .map_err(anyhow::Error::from)?;
            replayed += 1;
        }
        broker
            .ack(std::slice::from_ref(&delivery.lease))
            .await
            .map_err(anyhow::Error::from)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let text = format!(
        "replayed {replayed} job(s) to jobs:{pool}; {} not replayed (photo deleted){}\n",
        discarded.len(),
        if undecodable > 0 {
            format!("; {undecodable} undecodable left in place")
        } else {
            String::new()
        }
    );
    Ok(Report::new(
        json!({ "pool": pool.to_string(), "replayed": replayed, "discarded": discarded, "undecodable": undecodable }),
        text,
    ))
}

/// `dlq purge`: drops dead letters and deletes the photos they refer to.
pub async fn purge(ctx: &Ctx, args: &DlqArgs, yes: bool) -> CtlResult<Report> {
    let pool = ctx.pool(args.pool.as_deref())?.name.clone();
    if !yes {
        return Err(Failure::msg(
            Exit::Refused,
            format!(
                "purging the dead letters of pool {pool} deletes them and their photos for good: add --yes"
            ),
        ));
    }
    let broker = ctx.broker().await?;
    let taken = take(broker.as_ref(), &QueueRef::Dead(pool.clone()), args.limit).await?;
    let bar = progress::bar(ctx, taken.len() as u64, "dead letters");
    let (mut purged, mut photos) = (0u64, 0u64);
    for delivery in &taken {
        if let (_, Some(job)) = describe(delivery) {
            let code = delivery
                .dead_reason()
                .map(ErrorCode::parse)
                .filter(|code| *code != ErrorCode::Unknown)
                .unwrap_or(ErrorCode::DeliveryLimit);
            discard(ctx, &job, code, "dead letter purged by an operator").await?;
            photos += 1;
        }
        broker
            .ack(std::slice::from_ref(&delivery.lease))
            .await
            .map_err(anyhow::Error::from)?;
        purged += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Report::new(
        json!({ "pool": pool.to_string(), "purged": purged, "photos_deleted": photos }),
        format!("purged {purged} dead letter(s) of pool {pool}; {photos} photo(s) deleted\n"),
    ))
}
