//! Usage records, the deletion audit and the purge of an account's rows.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_ledger::{
    DeletionFilter, DeletionReason, LedgerErrorKind, NewDeletion, NewUsage, PurgedRows,
    SessionEndReason, SubjectKind,
};
use sqlx::{Column, Row};

use super::{TTL, at, expect_kind};
use crate::events::{Outcome, account, account_id, batch, new_job, scenario};
use crate::fixture::Fixture;

pub async fn usage_records(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("usage");
    ledger.create_account(&account(&owner)).await?;
    let mut recorded = Vec::new();
    for (i, action) in ["job.submit", "job.get", "job.delete"]
        .into_iter()
        .enumerate()
    {
        let usage = NewUsage {
            account_id: Some(owner.clone()),
            ip: if i == 1 {
                "2001:db8::7".parse()?
            } else {
                "192.0.2.7".parse()?
            },
            device_id: Some("ios-5D1C".into()),
            action: action.into(),
        };
        recorded.push(ledger.record_usage(&usage).await.context("record")?);
        f.clock.advance(Duration::from_secs(3600));
    }
    let anonymous = NewUsage {
        account_id: None,
        ip: "198.51.100.1".parse()?,
        device_id: None,
        action: "job.submit".into(),
    };
    ledger
        .record_usage(&anonymous)
        .await
        .context("record without account")?;
    let listed = ledger.list_usage(&owner, 10).await.context("list")?;
    let newest_first: Vec<_> = recorded.iter().rev().cloned().collect();
    ensure!(listed == newest_first, "listed {listed:?}");
    ensure!(
        ledger.list_usage(&owner, 1).await?.len() == 1,
        "limit ignored"
    );

    let expired = ledger.expire_usage(at(3_600_000)).await.context("expire")?;
    ensure!(expired == 1, "expired {expired}");
    ensure!(ledger.list_usage(&owner, 10).await?.len() == 2);
    let bad = NewUsage {
        action: "Submit Job".into(),
        ..anonymous
    };
    expect_kind(
        ledger.record_usage(&bad).await,
        LedgerErrorKind::InvalidInput,
        "bad action",
    )?;
    Ok(())
}

/// Ingest writes its callers' usage records in groups: one statement, all or none.
pub async fn usage_records_in_groups(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("usage-group");
    ledger.create_account(&account(&owner)).await?;
    let usage = |n: usize| NewUsage {
        account_id: Some(owner.clone()),
        ip: "192.0.2.9".parse().expect("ip"),
        device_id: n.is_multiple_of(2).then(|| format!("android-{n}")),
        action: "job.submit".into(),
    };
    let group: Vec<_> = (0..40).map(usage).collect();
    let written = ledger.record_usage_many(&group).await.context("group")?;
    ensure!(written.len() == 40, "wrote {}", written.len());
    let listed = ledger.list_usage(&owner, 100).await?;
    let ids = |records: &[clipfleet_ledger::UsageRecord]| -> BTreeSet<String> {
        records.iter().map(|r| r.id.clone()).collect()
    };
    ensure!(ids(&listed) == ids(&written), "listed other records");
    ensure!(
        listed.iter().filter(|r| r.device_id.is_some()).count() == 20,
        "device ids lost"
    );
    ensure!(ledger.record_usage_many(&[]).await?.is_empty());
    // One bad record refuses the group: nothing of it is written.
    let mut bad = vec![usage(100), usage(101)];
    bad[1].action = "Job Submit".into();
    expect_kind(
        ledger.record_usage_many(&bad).await,
        LedgerErrorKind::InvalidInput,
        "a group with a bad action",
    )?;
    let too_many: Vec<_> = (0..=clipfleet_ledger::MAX_USAGE_BATCH).map(usage).collect();
    expect_kind(
        ledger.record_usage_many(&too_many).await,
        LedgerErrorKind::InvalidInput,
        "a group over the bound",
    )?;
    ensure!(
        ledger.list_usage(&owner, 1000).await?.len() == 40,
        "a refused group left rows"
    );
    Ok(())
}

pub async fn deletion_audit_holds_no_personal_data(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("audit");
    let new = account(&owner);
    ledger.create_account(&new).await?;
    let job = ledger.insert_job(&new_job(&owner, None)).await?.job;
    let input = NewDeletion {
        subject_kind: SubjectKind::Job,
        subject_id: job.id.to_string(),
        target: job.input_key.clone(),
        reason: DeletionReason::InputConsumed,
        actor: "worker".into(),
        verified: true,
    };
    let first = ledger
        .record_deletion(&input)
        .await
        .context("record input")?;
    f.clock.advance(Duration::from_secs(1));
    let purge = NewDeletion {
        subject_kind: SubjectKind::Account,
        subject_id: owner.to_string(),
        target: "accounts".into(),
        reason: DeletionReason::ErasureRequest,
        actor: "janitor".into(),
        verified: false,
    };
    let second = ledger
        .record_deletion(&purge)
        .await
        .context("record purge")?;
    let all = ledger
        .list_deletions(&DeletionFilter::default(), 100)
        .await
        .context("list all")?;
    ensure!(
        all.ends_with(&[first.clone(), second.clone()]),
        "listed {all:?}"
    );
    let about_job = ledger
        .list_deletions(
            &DeletionFilter {
                subject: Some((SubjectKind::Job, job.id.to_string())),
                since: None,
            },
            100,
        )
        .await?;
    ensure!(about_job == [first], "filtered {about_job:?}");
    let since = ledger
        .list_deletions(
            &DeletionFilter {
                subject: None,
                since: Some(at(1_000)),
            },
            100,
        )
        .await?;
    ensure!(since == [second], "since {since:?}");

    // The table has exactly the audit's columns: none can hold a personal field.
    let row = sqlx::query("SELECT * FROM deletions")
        .fetch_one(f.ledger.pool())
        .await
        .context("read a deletion row")?;
    let columns: BTreeSet<String> = row.columns().iter().map(|c| c.name().to_owned()).collect();
    let expected: BTreeSet<String> = [
        "id",
        "subject_kind",
        "subject_id",
        "target",
        "reason",
        "at",
        "actor",
        "verified",
        // 0002: made of the fields above (which accept only key-like text) and a count.
        "dedup_key",
        "row_count",
    ]
    .map(str::to_owned)
    .into();
    ensure!(columns == expected, "deletions columns {columns:?}");
    let texts = sqlx::query("SELECT subject_id, target, actor, reason FROM deletions")
        .fetch_all(f.ledger.pool())
        .await?;
    let personal = new.personal;
    for text in texts
        .iter()
        .flat_map(|r| (0..4).map(|i| r.get::<String, _>(i)))
    {
        for value in [
            &personal.email,
            &personal.name,
            &personal.phone,
            &personal.username,
        ] {
            let value = value.as_deref().unwrap_or_default();
            ensure!(!text.contains(value), "audit holds personal data");
        }
    }
    let leaky = NewDeletion {
        target: personal.email.unwrap_or_default(),
        ..purge
    };
    expect_kind(
        ledger.record_deletion(&leaky).await,
        LedgerErrorKind::InvalidInput,
        "email",
    )?;
    Ok(())
}

pub async fn account_rows_purge(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("purge");
    ledger.create_account(&account(&owner)).await?;
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let job = ledger.insert_job(&new_job(&owner, None)).await?.job.id;
        ledger
            .apply_events(&batch(scenario(job, 1, Outcome::Succeeded)), TTL)
            .await
            .context("events")?;
        jobs.push(job);
    }
    let usage = NewUsage {
        account_id: Some(owner.clone()),
        ip: "192.0.2.9".parse()?,
        device_id: None,
        action: "job.submit".into(),
    };
    ledger.record_usage(&usage).await?;
    // One open session with a photo, one ended (its photo rows went with the end).
    let open = ledger
        .create_session(&owner, Duration::from_secs(3600))
        .await?;
    ledger
        .add_session_photo(open.id, &super::sessions::photo())
        .await?;
    let ended = ledger
        .create_session(&owner, Duration::from_secs(3600))
        .await?;
    ledger
        .end_session(ended.id, SessionEndReason::Deleted)
        .await?;
    let bystander = account_id("purge");
    ledger.create_account(&account(&bystander)).await?;
    let kept = ledger.insert_job(&new_job(&bystander, None)).await?.job.id;
    let kept_session = ledger
        .create_session(&bystander, Duration::from_secs(3600))
        .await?;

    ledger.set_legal_hold(&owner, true).await?;
    expect_kind(
        ledger.delete_account(&owner).await,
        LedgerErrorKind::Conflict,
        "purge under legal hold",
    )?;
    ensure!(
        ledger.get_job(jobs[0]).await.is_ok(),
        "held account lost a job"
    );
    ledger.set_legal_hold(&owner, false).await?;
    let purged = ledger.delete_account(&owner).await.context("purge")?;
    ensure!(
        purged
            == PurgedRows {
                jobs: 2,
                usage_records: 1,
                sessions: 2,
                session_photos: 1,
            },
        "{purged:?}"
    );
    expect_kind(
        ledger.get_account(&owner).await,
        LedgerErrorKind::NotFound,
        "account",
    )?;
    for job in jobs {
        expect_kind(ledger.get_job(job).await, LedgerErrorKind::NotFound, "job")?;
    }
    let attempts: i64 = sqlx::query("SELECT COUNT(*) AS n FROM job_attempts")
        .fetch_one(ledger.pool())
        .await?
        .try_get("n")?;
    ensure!(attempts == 0, "{attempts} attempts outlived their jobs");
    ensure!(
        ledger.list_usage(&owner, 10).await?.is_empty(),
        "usage kept"
    );
    ensure!(
        ledger.get_job(kept).await.is_ok(),
        "another account's job went too"
    );
    for session in [open.id, ended.id] {
        expect_kind(
            ledger.get_session(session).await,
            LedgerErrorKind::NotFound,
            "session",
        )?;
    }
    ensure!(
        ledger.get_session(kept_session.id).await.is_ok(),
        "another account's session went too"
    );
    expect_kind(
        ledger.delete_account(&owner).await,
        LedgerErrorKind::NotFound,
        "again",
    )?;
    Ok(())
}
