//! Personalisation sessions: created with a TTL for an existing account, photos added while
//! open and bounded, claimed once by a `personalize` job, ended once (the first end wins, the
//! photo rows go), objects marked deleted only after the end.

use std::time::Duration;

use anyhow::{Context, ensure};
use clipfleet_ledger::{LedgerErrorKind, NewSessionPhoto, PERSONALIZE_KIND, SessionEndReason};
use clipfleet_proto::{EventKind, JobId, MAX_SESSION_PHOTOS, PhotoId, SessionId, StageDurations};

use super::{TTL, at, expect_kind};
use crate::events::{account, account_id, batch, event, new_job};
use crate::fixture::{Fixture, START};

/// A photo to add to a session.
pub fn photo() -> NewSessionPhoto {
    NewSessionPhoto {
        id: PhotoId::generate(),
        size: 2_048,
        sha256: "5a".repeat(32),
        content_type: "image/jpeg".into(),
    }
}

pub async fn session_lifecycle(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let ttl = Duration::from_secs(3600);
    expect_kind(
        ledger.create_session(&account_id("nobody"), ttl).await,
        LedgerErrorKind::NotFound,
        "a session of an unknown account",
    )?;
    let owner = account_id("sess");
    ledger.create_account(&account(&owner)).await?;
    let session = ledger.create_session(&owner, ttl).await.context("create")?;
    ensure!(session.account_id == owner && session.created_at == START);
    ensure!(session.expires_at == at(3_600_000), "{session:?}");
    ensure!(session.ended_at.is_none() && session.end_reason.is_none());
    ensure!(session.is_open(START), "a new session is open");
    ensure!(ledger.get_session(session.id).await? == session, "get");
    expect_kind(
        ledger.get_session(SessionId::generate()).await,
        LedgerErrorKind::NotFound,
        "get unknown",
    )?;

    // Photos, then a personalize job that takes them.
    let first = ledger
        .add_session_photo(session.id, &photo())
        .await
        .context("add photo")?;
    ensure!(first.session_id == session.id && first.personalize_job.is_none());
    ensure!(first.uploaded_at == START && first.size == 2_048);
    f.clock.advance(Duration::from_secs(1));
    let second = ledger.add_session_photo(session.id, &photo()).await?;
    let waiting = ledger.unclaimed_session_photos(session.id).await?;
    ensure!(
        waiting.iter().map(|p| p.id).collect::<Vec<_>>() == vec![first.id, second.id],
        "oldest first: {waiting:?}"
    );
    let mut training = new_job(&owner, None);
    training.kind = Some(PERSONALIZE_KIND.into());
    training.session_id = Some(session.id);
    let job = ledger.insert_job(&training).await?.job;
    ensure!(
        job.kind.as_deref() == Some("personalize") && job.session_id == Some(session.id),
        "kind and session round-trip: {job:?}"
    );
    let mut bad = new_job(&owner, None);
    bad.kind = Some("lora".into());
    expect_kind(
        ledger.insert_job(&bad).await,
        LedgerErrorKind::InvalidInput,
        "an unknown kind",
    )?;
    let plain = ledger.insert_job(&new_job(&owner, None)).await?.job;
    ensure!(plain.kind.is_none() && plain.session_id.is_none());
    let ids = [first.id, second.id];
    ensure!(
        ledger
            .claim_session_photos(session.id, job.id, &ids)
            .await?
            == 2
    );
    ensure!(
        ledger
            .unclaimed_session_photos(session.id)
            .await?
            .is_empty()
    );
    ensure!(
        ledger
            .claim_session_photos(session.id, JobId::generate(), &ids)
            .await?
            == 0,
        "a claimed photo is not claimed again"
    );
    ensure!(ledger.release_session_photos(job.id).await? == 2, "release");
    ensure!(
        ledger
            .claim_session_photos(session.id, job.id, &ids)
            .await?
            == 2
    );
    let listed = ledger.personalize_jobs(session.id).await?;
    ensure!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>() == vec![job.id],
        "only the training job is the session's personalize job: {listed:?}"
    );
    // The worker trains and stores the adapter, but has not reported the photos deleted.
    let adapter = format!("sessions/{owner}/{}/adapters/portrait", session.id);
    ledger
        .apply_events(
            &batch(vec![
                event(job.id, 1_000, "w-1", EventKind::Started),
                event(
                    job.id,
                    2_000,
                    "w-1",
                    EventKind::Succeeded {
                        output_key: adapter.clone(),
                        size: 400,
                        stages: StageDurations::default(),
                    },
                ),
            ]),
            TTL,
        )
        .await?;

    // The adapter goes with the session, never by the output TTL: no output sweep lists it.
    let long_after = at(10 * 365 * 24 * 3_600_000);
    ensure!(
        !ledger
            .expired_outputs(long_after, 1000)
            .await?
            .iter()
            .any(|j| j.id == job.id),
        "the output TTL would take the session's adapter"
    );
    ensure!(
        !ledger
            .jobs_with_output_due(long_after, long_after, &None, 1000)
            .await?
            .iter()
            .any(|j| j.id == job.id),
        "the janitor's output rule would take the session's adapter"
    );

    // Objects are marked deleted only once the session ended.
    expect_kind(
        ledger.mark_session_objects_deleted(session.id).await,
        LedgerErrorKind::Conflict,
        "mark an open session's objects deleted",
    )?;
    f.clock.advance(Duration::from_secs(60));
    let ended = ledger
        .end_session(session.id, SessionEndReason::Deleted)
        .await
        .context("end")?;
    ensure!(ended.ended_at == Some(at(61_000)), "{ended:?}");
    ensure!(ended.end_reason == Some(SessionEndReason::Deleted));
    ensure!(!ended.is_open(at(61_000)));
    let rows: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT COUNT(*) AS n FROM session_photos")
            .fetch_one(ledger.pool())
            .await?,
        "n",
    )?;
    ensure!(rows == 0, "{rows} photo rows outlived the session's end");
    f.clock.advance(Duration::from_secs(60));
    let again = ledger
        .end_session(session.id, SessionEndReason::AccountErased)
        .await?;
    ensure!(again == ended, "the first end wins: {again:?}");
    expect_kind(
        ledger.add_session_photo(session.id, &photo()).await,
        LedgerErrorKind::Conflict,
        "a photo for an ended session",
    )?;
    let marked = ledger.mark_session_objects_deleted(session.id).await?;
    ensure!(marked.objects_deleted_at == Some(at(121_000)), "{marked:?}");
    f.clock.advance(Duration::from_secs(60));
    let remarked = ledger.mark_session_objects_deleted(session.id).await?;
    ensure!(remarked == marked, "an earlier mark stays");
    let job = ledger.get_job(job.id).await?;
    ensure!(
        job.input_deleted_at == Some(at(121_000)) && job.output_deleted_at == Some(at(121_000)),
        "the training job's photo and adapter lived under the prefix: {job:?}"
    );
    ensure!(job.output_key.as_deref() == Some(adapter.as_str()));
    let plain = ledger.get_job(plain.id).await?;
    ensure!(
        plain.input_deleted_at.is_none(),
        "other jobs are not marked"
    );

    // The TTL ends a session for photos without any call.
    let short = ledger
        .create_session(&owner, Duration::from_secs(60))
        .await?;
    ledger.add_session_photo(short.id, &photo()).await?;
    f.clock.advance(Duration::from_secs(60));
    let now = at(241_000);
    ensure!(!ledger.get_session(short.id).await?.is_open(now));
    expect_kind(
        ledger.add_session_photo(short.id, &photo()).await,
        LedgerErrorKind::Conflict,
        "a photo past the TTL",
    )?;
    let listed: Vec<SessionId> = ledger
        .sessions_of_account(&owner)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    ensure!(listed == vec![session.id, short.id], "{listed:?}");
    for result in [
        ledger
            .end_session(SessionId::generate(), SessionEndReason::Deleted)
            .await,
        ledger
            .mark_session_objects_deleted(SessionId::generate())
            .await,
    ] {
        expect_kind(result, LedgerErrorKind::NotFound, "an unknown session")?;
    }
    expect_kind(
        ledger
            .add_session_photo(SessionId::generate(), &photo())
            .await,
        LedgerErrorKind::NotFound,
        "a photo for an unknown session",
    )?;
    Ok(())
}

pub async fn session_photos_are_bounded_and_claimed_once(f: &Fixture) -> anyhow::Result<()> {
    let ledger = &f.ledger;
    let owner = account_id("sess");
    ledger.create_account(&account(&owner)).await?;
    let session = ledger
        .create_session(&owner, Duration::from_secs(3600))
        .await?;
    let mut ids = Vec::new();
    for _ in 0..MAX_SESSION_PHOTOS {
        ids.push(ledger.add_session_photo(session.id, &photo()).await?.id);
    }
    expect_kind(
        ledger.add_session_photo(session.id, &photo()).await,
        LedgerErrorKind::Conflict,
        "one photo over the bound",
    )?;
    let duplicate = NewSessionPhoto {
        id: ids[0],
        ..photo()
    };
    // Two jobs race for the same photos: each photo goes to exactly one.
    let (a, b) = (JobId::generate(), JobId::generate());
    let (took_a, took_b) = tokio::join!(
        ledger.claim_session_photos(session.id, a, &ids),
        ledger.claim_session_photos(session.id, b, &ids),
    );
    let (took_a, took_b) = (took_a?, took_b?);
    ensure!(
        took_a + took_b == ids.len() as u64,
        "claimed {took_a} + {took_b} of {}",
        ids.len()
    );
    // Claimed photos no longer count against the bound.
    ledger
        .add_session_photo(session.id, &photo())
        .await
        .context("a photo once the others were claimed")?;
    expect_kind(
        ledger.add_session_photo(session.id, &duplicate).await,
        LedgerErrorKind::Conflict,
        "the same photo id twice",
    )?;
    expect_kind(
        ledger
            .claim_session_photos(
                session.id,
                a,
                &[PhotoId::generate(); MAX_SESSION_PHOTOS + 1],
            )
            .await,
        LedgerErrorKind::InvalidInput,
        "a claim over the bound",
    )?;
    let other = ledger
        .create_session(&owner, Duration::from_secs(3600))
        .await?;
    ensure!(
        ledger.claim_session_photos(other.id, a, &ids).await? == 0,
        "another session's photos are not claimed"
    );
    Ok(())
}
