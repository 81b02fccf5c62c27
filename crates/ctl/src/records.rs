//! `job show`, `account purge`, `janitor plan`, `topology apply`.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use clipfleet_broker::PoolSpec;
use clipfleet_janitor::{Janitor, LockSpec, Policy, SweepOutcome};
use clipfleet_ledger::{Clock, LedgerErrorKind, SystemClock};
use clipfleet_proto::{AccountId, JobId, Timestamp};
use clipfleet_store::{ObjectKey, ObjectStore, StoreErrorKind, body_from_bytes, list_all};
use serde_json::{Value, json};

use crate::cli::PurgeReason;
use crate::ctx::Ctx;
use crate::exit::{CtlResult, Exit, Failure};
use crate::output::Report;
use crate::progress;

fn ms(at: Option<Timestamp>) -> Value {
    at.map_or(Value::Null, |at| json!(at.unix_ms()))
}

async fn stored(store: &dyn ObjectStore, key: &str) -> CtlResult<bool> {
    let key = ObjectKey::new(key).map_err(|err| Failure::new(Exit::Failed, err))?;
    match store.head(&key).await {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == StoreErrorKind::NotFound => Ok(false),
        Err(err) => Err(anyhow::Error::from(err).into()),
    }
}

/// `job show ID`: the ledger's record and what the store holds for it.
pub async fn job_show(ctx: &Ctx, id: &str) -> CtlResult<Report> {
    let id: JobId = id
        .parse()
        .map_err(|_| Failure::msg(Exit::Usage, format!("{id:?} is not a job id")))?;
    let job = ctx.ledger().await?.get_job(id).await.map_err(|err| {
        let exit = if err.kind() == LedgerErrorKind::NotFound {
            Exit::NotFound
        } else {
            Exit::Failed
        };
        Failure::new(exit, anyhow::Error::from(err).context(format!("job {id}")))
    })?;
    let store = ctx.raw_store().await?;
    let photo_stored = stored(store.as_ref(), &job.input_key).await?;
    let video_stored = match &job.output_key {
        Some(key) => Some(stored(store.as_ref(), key).await?),
        None => None,
    };
    let json = json!({
        "job_id": job.id.to_string(),
        "account_id": job.account_id.as_str(),
        "pool": job.pool.as_str(),
        "model": job.model,
        "status": job.status.as_str(),
        "progress_pct": job.progress_pct,
        "attempts": job.attempts,
        "submitted_at_ms": job.submitted_at.unix_ms(),
        "started_at_ms": ms(job.started_at),
        "finished_at_ms": ms(job.finished_at),
        "input_deleted_at_ms": ms(job.input_deleted_at),
        "output_size": job.output_size,
        "output_expires_at_ms": ms(job.output_expires_at),
        "output_deleted_at_ms": ms(job.output_deleted_at),
        "error": job.error_code.map(|code| json!({ "code": code.as_str(), "message": job.error_message })),
        "photo_stored": photo_stored,
        "video_stored": video_stored,
    });
    let mut text = String::new();
    let _ = writeln!(text, "job      {}", job.id);
    let _ = writeln!(text, "account  {}", job.account_id);
    let _ = writeln!(text, "pool     {} ({})", job.pool, job.model);
    let _ = writeln!(
        text,
        "status   {} (attempts {})",
        job.status.as_str(),
        job.attempts
    );
    if let Some(code) = job.error_code {
        let _ = writeln!(
            text,
            "error    {}: {}",
            code.as_str(),
            job.error_message.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(
        text,
        "photo    {}",
        if photo_stored { "stored" } else { "gone" }
    );
    let _ = writeln!(
        text,
        "video    {}",
        match video_stored {
            Some(true) => "stored",
            Some(false) => "gone",
            None => "none",
        }
    );
    Ok(Report::new(json, text))
}

fn janitor(
    ctx: &Ctx,
    store: Arc<dyn ObjectStore>,
    ledger: clipfleet_ledger::Ledger,
) -> CtlResult<Janitor> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let lock = LockSpec::for_ledger_url(ctx.config.ledger.expose())
        .map_err(|err| Failure::new(Exit::Failed, err))?;
    Ok(Janitor::new(
        ledger,
        store,
        Policy::from_config(&ctx.config.retention),
        clock,
        lock,
    ))
}

/// `janitor plan`: what a sweep would delete now (nothing is deleted).
pub async fn janitor_plan(ctx: &Ctx) -> CtlResult<Report> {
    let janitor = janitor(
        ctx,
        ctx.raw_store().await?.clone(),
        ctx.ledger().await?.clone(),
    )?;
    let spinner = progress::spinner(ctx, "planning");
    let plan = janitor.plan().await.context("plan")?;
    spinner.finish_and_clear();
    let summary = plan.summary();
    Ok(Report::new(
        serde_json::to_value(&summary).context("plan as json")?,
        summary.to_text(),
    ))
}

/// `account purge ID --reason R`: marks the account (erasure or under 14), writes the tombstone
/// the workers check, runs one janitor sweep, and reports what the store and the ledger still
/// hold for the account.
pub async fn account_purge(ctx: &Ctx, id: &str, reason: PurgeReason) -> CtlResult<Report> {
    let id = AccountId::new(id).map_err(|err| Failure::new(Exit::Usage, err))?;
    let ledger = ctx.ledger().await?.clone();
    let marked = match reason {
        PurgeReason::ErasureRequest => ledger.request_erasure(&id).await,
        PurgeReason::UnderAge => ledger.flag_under_14(&id).await,
    };
    marked.map_err(|err| {
        let exit = if err.kind() == LedgerErrorKind::NotFound {
            Exit::NotFound
        } else {
            Exit::Failed
        };
        Failure::new(
            exit,
            anyhow::Error::from(err).context(format!("account {id}")),
        )
    })?;
    let marker = serde_json::to_vec(&json!({ "erased_at_ms": Timestamp::from_system_time(std::time::SystemTime::now()).unix_ms() }))
        .context("tombstone")?;
    ctx.store()
        .await?
        .put(&ObjectKey::tombstone(&id), body_from_bytes(marker))
        .await
        .context("write the tombstone")?;
    ledger
        .tombstone_account(&id)
        .await
        .context("tombstone the account")?;
    let raw = ctx.raw_store().await?.clone();
    let janitor = janitor(ctx, raw.clone(), ledger.clone())?;
    let spinner = progress::spinner(ctx, "janitor sweep");
    let outcome = janitor.sweep().await.context("janitor sweep")?;
    spinner.finish_and_clear();
    let swept = match &outcome {
        SweepOutcome::Swept(report) => report.total_deleted(),
        SweepOutcome::NotLeader => {
            return Err(Failure::msg(
                Exit::Refused,
                format!(
                    "account {id} is marked and tombstoned, but another janitor holds the leader lock: it purges the account on its next sweep"
                ),
            ));
        }
    };
    let mut left = Vec::new();
    for prefix in [format!("inputs/{id}/"), format!("outputs/{id}/")] {
        for meta in list_all(raw.as_ref(), &prefix)
            .await
            .context("list what is left")?
        {
            left.push(meta.key.as_str().to_owned());
        }
    }
    let row = match ledger.get_account(&id).await {
        Ok(account) if account.legal_hold => "kept (legal hold)",
        Ok(_) => "still present",
        Err(err) if err.kind() == LedgerErrorKind::NotFound => "deleted",
        Err(err) => return Err(anyhow::Error::from(err).into()),
    };
    let reason_text = match reason {
        PurgeReason::ErasureRequest => "erasure_request",
        PurgeReason::UnderAge => "under_age",
    };
    let text = format!(
        "account {id} purged ({reason_text}): sweep deleted {swept} item(s); media left: {}; account row: {row}\n",
        if left.is_empty() {
            "none".to_owned()
        } else {
            left.join(", ")
        }
    );
    let report = Report::new(
        json!({ "account_id": id.as_str(), "reason": reason_text, "swept": swept, "media_left": left, "account_row": row }),
        text,
    );
    if !left.is_empty() && row != "kept (legal hold)" {
        return Err(Failure::msg(Exit::Failed, report.text));
    }
    Ok(report)
}

/// `topology apply`: every pool's queues, declared idempotently.
pub async fn topology_apply(ctx: &Ctx) -> CtlResult<Report> {
    let broker = ctx.broker().await?;
    let mut pools = Vec::new();
    for pool in &ctx.config.pools {
        broker
            .ensure_pool(
                &pool.name,
                PoolSpec {
                    max_deliveries: pool.max_deliveries,
                },
            )
            .await
            .with_context(|| format!("queues of pool {}", pool.name))?;
        pools.push(pool.name.to_string());
    }
    Ok(Report::new(
        json!({ "broker": ctx.config.broker.to_string(), "pools": pools }),
        format!(
            "declared the queues of {} pool(s): {}\n",
            pools.len(),
            pools.join(", ")
        ),
    ))
}
