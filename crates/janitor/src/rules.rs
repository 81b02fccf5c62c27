//! The retention rules of DESIGN.md §8, each a pure function of the snapshot (the instant, the
//! ledger's rows and the store's objects) and the policy: no I/O, no clock. [`plan`] runs them
//! all; each rule is public on its own so tests can hold it to its promise.
//!
//! A legal hold spares everything of its account, by every rule (the law may require keeping
//! what the policy would delete); plans list what a hold kept.
//!
//! Accounts come first: an account being purged takes all its objects with it, so the per-object
//! rules leave that account's objects alone (one deletion, one audit row, per object).

use std::collections::{BTreeMap, BTreeSet};

use clipfleet_ledger::{AccountStatus, JobStatus, SubjectKind};
use clipfleet_proto::{AccountId, JobId, Timestamp};
use clipfleet_store::ObjectKey;

use crate::facts::{AccountFacts, JobFacts, ObjectFacts, Snapshot, key_account, parse_input_key};
use crate::plan::{
    AccountPurge, Action, AfterDelete, Kept, ObjectDeletion, Plan, Rule, UsageExpiry,
};
use crate::policy::Policy;

/// The key of the marker object that ends a session: `sessions/<account>/<session>/ended`.
pub const SESSION_END_MARKER: &str = "ended";

/// Runs every rule on `snapshot`.
pub fn plan(snapshot: &Snapshot, policy: &Policy) -> Plan {
    let now = snapshot.now;
    let mut kept = Vec::new();
    let mut actions = accounts(
        now,
        policy,
        &snapshot.accounts,
        &snapshot.account_objects,
        &mut kept,
    );
    let purged: BTreeSet<AccountId> = actions
        .iter()
        .filter_map(|action| match action {
            Action::PurgeAccount(purge) => Some(purge.account.clone()),
            _ => None,
        })
        .collect();
    let held: BTreeSet<AccountId> = snapshot
        .accounts
        .iter()
        .filter(|account| account.legal_hold)
        .map(|account| account.id.clone())
        .chain(snapshot.held.iter().cloned())
        .collect();
    let spared = |account: &AccountId| purged.contains(account) || held.contains(account);
    actions.extend(photos(
        now,
        policy,
        snapshot.jobs.values(),
        &spared,
        &mut kept,
    ));
    actions.extend(orphan_photos(
        now,
        policy,
        &snapshot.stored_inputs,
        &snapshot.jobs,
        &spared,
    ));
    actions.extend(videos(
        now,
        policy,
        snapshot.jobs.values(),
        &spared,
        &mut kept,
    ));
    actions.extend(sessions(now, policy, &snapshot.stored_sessions, &spared));
    actions.extend(tombstones(now, policy, snapshot, &purged, &mut kept));
    actions.extend(usage(now, policy, snapshot));
    actions.sort_by_key(Action::rule);
    Plan { now, actions, kept }
}

fn age(now: Timestamp, since: Timestamp) -> std::time::Duration {
    now.saturating_since(since)
}

/// Accounts: under 14 or erasure requested → at once, with a tombstone; terminated → at
/// `terminated_at + N calendar months`. Never one under legal hold.
pub fn accounts(
    now: Timestamp,
    policy: &Policy,
    accounts: &[AccountFacts],
    objects: &BTreeMap<AccountId, Vec<ObjectFacts>>,
    kept: &mut Vec<Kept>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for account in accounts {
        let decision = if account.under_14 {
            Some((
                Rule::UnderAge,
                account.erasure_requested_at.unwrap_or(account.created_at),
            ))
        } else if let Some(asked) = account.erasure_requested_at {
            Some((Rule::ErasureRequest, asked))
        } else {
            match (account.status, account.terminated_at) {
                (AccountStatus::Terminated, Some(ended))
                    if policy.account_purge_due(ended) <= now =>
                {
                    Some((Rule::AccountRetention, ended))
                }
                _ => None,
            }
        };
        let Some((rule, since)) = decision else {
            continue;
        };
        if account.legal_hold {
            kept.push(Kept {
                rule,
                subject: account.id.to_string(),
                why: "legal_hold",
            });
            continue;
        }
        let mut keys: Vec<ObjectKey> = objects
            .get(&account.id)
            .map(|objects| objects.iter().map(|object| object.key.clone()).collect())
            .unwrap_or_default();
        keys.sort();
        keys.dedup();
        actions.push(Action::PurgeAccount(AccountPurge {
            rule,
            account: account.id.clone(),
            keys,
            tombstone: rule != Rule::AccountRetention,
            age: age(now, since),
        }));
    }
    actions
}

fn job_key(job: &JobFacts, key: &str, rule: Rule, kept: &mut Vec<Kept>) -> Option<ObjectKey> {
    match ObjectKey::new(key) {
        Ok(key) => Some(key),
        Err(_) => {
            kept.push(Kept {
                rule,
                subject: job.id.to_string(),
                why: "bad_key",
            });
            None
        }
    }
}

/// Photos the ledger records as present: the job ended, or the photo is past
/// `input_max_age` (a job still queued then fails `expired`).
pub fn photos<'a>(
    now: Timestamp,
    policy: &Policy,
    jobs: impl IntoIterator<Item = &'a JobFacts>,
    spared: &dyn Fn(&AccountId) -> bool,
    kept: &mut Vec<Kept>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for job in jobs {
        if job.input_deleted || spared(&job.account) {
            continue;
        }
        let old = age(now, job.submitted_at) >= policy.input_max_age;
        let (rule, then) = if job.status.is_terminal() {
            (Rule::PhotoOfEndedJob, AfterDelete::InputDeleted(job.id))
        } else if old && job.status == JobStatus::Queued {
            (
                Rule::PhotoPastMaxAge,
                AfterDelete::InputDeletedJobExpired(job.id),
            )
        } else if old {
            (Rule::PhotoPastMaxAge, AfterDelete::InputDeleted(job.id))
        } else {
            continue;
        };
        if let Some(key) = job_key(job, &job.input_key, rule, kept) {
            actions.push(Action::DeleteObject(ObjectDeletion {
                rule,
                key,
                subject_kind: SubjectKind::Job,
                subject_id: job.id.to_string(),
                age: age(now, job.submitted_at),
                then,
            }));
        }
    }
    actions
}

/// Stored photos no job row accounts for (or whose job records the photo as deleted), once
/// older than `orphan_grace`. A photo whose job records it as present is the photo rules'.
pub fn orphan_photos(
    now: Timestamp,
    policy: &Policy,
    stored: &[ObjectFacts],
    jobs: &BTreeMap<JobId, JobFacts>,
    spared: &dyn Fn(&AccountId) -> bool,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for object in stored {
        let parsed = parse_input_key(&object.key);
        if let Some((account, _)) = &parsed
            && spared(account)
        {
            continue;
        }
        let job_id = parsed.as_ref().and_then(|(_, job)| *job);
        let job = job_id.and_then(|id| jobs.get(&id));
        if job.is_some_and(|job| !job.input_deleted && job.input_key == object.key.as_str()) {
            continue;
        }
        if age(now, object.last_modified) < policy.orphan_grace {
            continue;
        }
        actions.push(Action::DeleteObject(ObjectDeletion {
            rule: Rule::OrphanPhoto,
            key: object.key.clone(),
            subject_kind: SubjectKind::Job,
            subject_id: job_id.map_or_else(|| "unknown".to_owned(), |id| id.to_string()),
            age: age(now, object.last_modified),
            then: AfterDelete::Nothing,
        }));
    }
    actions
}

/// Videos the ledger records as present: past `output_ttl` from generation, or at once when
/// the holder asked (the ledger's `output_expires_at` brought forward to the request).
pub fn videos<'a>(
    now: Timestamp,
    policy: &Policy,
    jobs: impl IntoIterator<Item = &'a JobFacts>,
    spared: &dyn Fn(&AccountId) -> bool,
    kept: &mut Vec<Kept>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for job in jobs {
        let Some(output_key) = &job.output_key else {
            continue;
        };
        if job.output_deleted || spared(&job.account) {
            continue;
        }
        let generated = job.finished_at.unwrap_or(job.submitted_at);
        let rule = if age(now, generated) >= policy.output_ttl {
            Rule::VideoPastTtl
        } else if job.output_expires_at.is_some_and(|due| due <= now) {
            Rule::VideoDeleteRequested
        } else {
            continue;
        };
        if let Some(key) = job_key(job, output_key, rule, kept) {
            actions.push(Action::DeleteObject(ObjectDeletion {
                rule,
                key,
                subject_kind: SubjectKind::Job,
                subject_id: job.id.to_string(),
                age: age(now, generated),
                then: AfterDelete::OutputDeleted(job.id),
            }));
        }
    }
    actions
}

/// Session artifacts (`sessions/<account>/<session>/…`): all of a session at once when its
/// first artifact is older than `session_ttl`; when its `ended` marker is there, every other
/// artifact at once and the marker itself once it is older than the tombstone hold (no job of
/// the session can still run then: a worker checks the marker before and after it writes an
/// adapter, so the marker must outlive any job that could write one).
pub fn sessions(
    now: Timestamp,
    policy: &Policy,
    stored: &[ObjectFacts],
    spared: &dyn Fn(&AccountId) -> bool,
) -> Vec<Action> {
    let mut by_session: BTreeMap<(String, String), Vec<&ObjectFacts>> = BTreeMap::new();
    for object in stored {
        let mut segments = object.key.segments();
        let (Some("sessions"), Some(account), Some(session), Some(_)) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            continue;
        };
        by_session
            .entry((account.to_owned(), session.to_owned()))
            .or_default()
            .push(object);
    }
    let mut actions = Vec::new();
    for ((account, session), objects) in by_session {
        if AccountId::new(account.as_str()).is_ok_and(|id| spared(&id)) {
            continue;
        }
        let marker_key = format!("sessions/{account}/{session}/{SESSION_END_MARKER}");
        let marker = objects
            .iter()
            .find(|object| object.key.as_str() == marker_key);
        let ended = marker.is_some();
        let started = objects
            .iter()
            .map(|object| object.last_modified)
            .min()
            .unwrap_or(now);
        let rule = if ended {
            Rule::SessionEnded
        } else if age(now, started) >= policy.session_ttl {
            Rule::SessionTtl
        } else {
            continue;
        };
        let marker_held = marker.is_some_and(|m| {
            age(now, m.last_modified) < policy.tombstone_hold() && rule == Rule::SessionEnded
        });
        for object in objects {
            if marker_held && object.key.as_str() == marker_key {
                continue;
            }
            actions.push(Action::DeleteObject(ObjectDeletion {
                rule,
                key: object.key.clone(),
                subject_kind: SubjectKind::Session,
                subject_id: format!("{account}/{session}"),
                age: age(now, started),
                then: AfterDelete::Nothing,
            }));
        }
    }
    actions
}

/// Tombstones (`tombstones/<account>`): once the account's rows are purged, anything still
/// under its prefixes (a job that was running during the purge) goes at once; the tombstone
/// itself goes when it is older than the policy's hold, no job of the account is queued or
/// running, and nothing is left under its prefixes.
pub fn tombstones(
    now: Timestamp,
    policy: &Policy,
    snapshot: &Snapshot,
    purged_now: &BTreeSet<AccountId>,
    kept: &mut Vec<Kept>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for tombstone in &snapshot.tombstones {
        let Some(account) = key_account(&tombstone.key) else {
            continue;
        };
        if purged_now.contains(&account) || snapshot.accounts_in_ledger.contains(&account) {
            continue; // the purge is not finished: the tombstone still has work to guard
        }
        let leftovers: Vec<&ObjectFacts> = snapshot
            .account_objects
            .get(&account)
            .map(|objects| objects.iter().collect())
            .unwrap_or_default();
        for object in &leftovers {
            actions.push(Action::DeleteObject(ObjectDeletion {
                rule: Rule::ErasedAccountLeftovers,
                key: object.key.clone(),
                subject_kind: SubjectKind::Account,
                subject_id: account.to_string(),
                age: age(now, object.last_modified),
                then: AfterDelete::Nothing,
            }));
        }
        let old = age(now, tombstone.last_modified) >= policy.tombstone_hold();
        if snapshot.accounts_with_live_jobs.contains(&account) {
            kept.push(Kept {
                rule: Rule::TombstoneExpired,
                subject: account.to_string(),
                why: "jobs_still_live",
            });
        } else if old && leftovers.is_empty() {
            actions.push(Action::DeleteObject(ObjectDeletion {
                rule: Rule::TombstoneExpired,
                key: tombstone.key.clone(),
                subject_kind: SubjectKind::Account,
                subject_id: account.to_string(),
                age: age(now, tombstone.last_modified),
                then: AfterDelete::Nothing,
            }));
        }
    }
    actions
}

/// Usage records older than `usage_max_age`.
pub fn usage(now: Timestamp, policy: &Policy, snapshot: &Snapshot) -> Option<Action> {
    let facts = snapshot.usage?;
    let cutoff = Timestamp::from_unix_ms(
        now.unix_ms()
            .saturating_sub(u64::try_from(policy.usage_max_age.as_millis()).unwrap_or(u64::MAX)),
    );
    // Counted against another cutoff: not what this policy says; the next sweep recounts.
    if facts.before != cutoff || facts.count == 0 {
        return None;
    }
    Some(Action::ExpireUsage(UsageExpiry {
        before: cutoff,
        count: facts.count,
        age: facts
            .oldest
            .map_or(std::time::Duration::ZERO, |oldest| age(now, oldest)),
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_ms(1_780_000_000_000);
    const MIN: u64 = 60_000;

    fn policy() -> Policy {
        Policy {
            input_max_age: Duration::from_secs(3600),
            output_ttl: Duration::from_secs(86_400),
            account_months_after_termination: 6,
            usage_max_age: Duration::from_secs(90 * 86_400),
            orphan_grace: Duration::from_secs(900),
            session_ttl: Duration::from_secs(86_400),
        }
    }

    fn ago(ms: u64) -> Timestamp {
        Timestamp::from_unix_ms(NOW.unix_ms() - ms)
    }

    fn account(id: &str) -> AccountFacts {
        AccountFacts {
            id: AccountId::new(id).unwrap(),
            status: AccountStatus::Active,
            terminated_at: None,
            under_14: false,
            legal_hold: false,
            erasure_requested_at: None,
            created_at: ago(1000 * 86_400_000),
        }
    }

    fn job(account: &str, status: JobStatus, submitted_ms_ago: u64) -> JobFacts {
        let id = JobId::generate();
        let account = AccountId::new(account).unwrap();
        JobFacts {
            input_key: ObjectKey::input(&account, id).to_string(),
            id,
            account,
            status,
            submitted_at: ago(submitted_ms_ago),
            finished_at: None,
            input_deleted: false,
            output_key: None,
            output_expires_at: None,
            output_deleted: false,
        }
    }

    fn object(key: &str, ms_ago: u64) -> ObjectFacts {
        ObjectFacts {
            key: ObjectKey::new(key).unwrap(),
            last_modified: ago(ms_ago),
        }
    }

    #[test]
    fn photos_go_when_the_job_ends_or_at_max_age() {
        let young = job("a", JobStatus::Queued, 10 * MIN);
        let old = job("a", JobStatus::Queued, 61 * MIN);
        let running_old = job("a", JobStatus::Running, 61 * MIN);
        let ended = job("a", JobStatus::Failed, MIN);
        let mut kept = Vec::new();
        let jobs = [young, old.clone(), running_old.clone(), ended.clone()];
        let actions = photos(NOW, &policy(), &jobs, &|_| false, &mut kept);
        let then: Vec<AfterDelete> = actions
            .iter()
            .map(|a| match a {
                Action::DeleteObject(d) => d.then,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            then,
            [
                AfterDelete::InputDeletedJobExpired(old.id),
                AfterDelete::InputDeleted(running_old.id),
                AfterDelete::InputDeleted(ended.id),
            ]
        );
        assert!(kept.is_empty());
    }

    #[test]
    fn accounts_go_at_once_or_after_calendar_months_never_under_hold() {
        let mut child = account("child");
        child.under_14 = true;
        let mut erased = account("erased");
        erased.erasure_requested_at = Some(ago(MIN));
        let mut ended = account("ended");
        ended.status = AccountStatus::Terminated;
        ended.terminated_at = Some(ago(185 * 86_400_000));
        let mut recent = account("recent");
        recent.status = AccountStatus::Terminated;
        recent.terminated_at = Some(ago(150 * 86_400_000));
        let mut held = ended.clone();
        held.id = AccountId::new("held").unwrap();
        held.legal_hold = true;
        let mut kept = Vec::new();
        let actions = accounts(
            NOW,
            &policy(),
            &[child, erased, ended, recent, held],
            &BTreeMap::new(),
            &mut kept,
        );
        let purges: Vec<(Rule, String, bool)> = actions
            .iter()
            .map(|a| match a {
                Action::PurgeAccount(p) => (p.rule, p.account.to_string(), p.tombstone),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            purges,
            [
                (Rule::UnderAge, "child".to_owned(), true),
                (Rule::ErasureRequest, "erased".to_owned(), true),
                (Rule::AccountRetention, "ended".to_owned(), false),
            ]
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].subject.as_str(), kept[0].why),
            ("held", "legal_hold")
        );
    }

    #[test]
    fn a_purged_account_is_deleted_once_not_by_every_rule() {
        let mut snapshot = Snapshot::empty(NOW);
        let mut child = account("child");
        child.under_14 = true;
        snapshot.accounts.push(child);
        let photo = job("child", JobStatus::Succeeded, 2 * 3600 * 1000);
        snapshot.account_objects.insert(
            AccountId::new("child").unwrap(),
            vec![object(&photo.input_key, MIN)],
        );
        snapshot.stored_inputs.push(object(&photo.input_key, MIN));
        snapshot.jobs.insert(photo.id, photo);
        let plan = plan(&snapshot, &policy());
        assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
        assert_eq!(plan.object_keys().len(), 1);
    }

    #[test]
    fn sessions_end_by_marker_or_ttl_and_orphans_wait() {
        let stored = [
            object("sessions/a/s1/lora.bin", MIN),
            object("sessions/a/s1/ended", 2 * 3600 * 1000),
            object("sessions/a/s2/lora.bin", 25 * 3600 * 1000),
            object("sessions/a/s3/lora.bin", MIN),
        ];
        let actions = sessions(NOW, &policy(), &stored, &|_| false);
        let rules: Vec<Rule> = actions.iter().map(Action::rule).collect();
        assert_eq!(
            rules,
            [Rule::SessionEnded, Rule::SessionEnded, Rule::SessionTtl]
        );
        // The marker outlives the session's other objects until no job of it can run.
        let young_marker = [
            object("sessions/a/s4/adapters/portrait", MIN),
            object("sessions/a/s4/ended", 1000),
        ];
        let actions = sessions(NOW, &policy(), &young_marker, &|_| false);
        let keys: Vec<String> = actions
            .iter()
            .filter_map(|action| match action {
                Action::DeleteObject(deletion) => Some(deletion.key.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(keys, ["sessions/a/s4/adapters/portrait"]);
        let stored = [
            object("inputs/a/x", 14 * MIN),
            object("inputs/a/y", 16 * MIN),
        ];
        let orphans = orphan_photos(NOW, &policy(), &stored, &BTreeMap::new(), &|_| false);
        assert_eq!(orphans.len(), 1);
    }
}
