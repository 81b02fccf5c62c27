//! Reads what the rules decide on into a [`Snapshot`]: the ledger's candidates (keyset pages,
//! nothing marked) and listings of the store's prefixes. Every read is bounded by [`Limits`];
//! what does not fit waits for the next sweep.

use std::collections::BTreeSet;

use clipfleet_ledger::{JobCursor, Ledger};
use clipfleet_proto::{AccountId, JobId, Timestamp};
use clipfleet_store::{MAX_LIST_PAGE, ObjectStore};

use crate::error::JanitorError;
use crate::facts::{
    AccountFacts, JobFacts, ObjectFacts, Snapshot, UsageFacts, account_prefixes, key_account,
    parse_input_key,
};
use crate::policy::Policy;

/// Ledger rows per page.
const PAGE: u32 = 1000;

/// How much one sweep reads at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Jobs per job rule (photos due, videos due).
    pub max_jobs: usize,
    /// Accounts reviewed.
    pub max_accounts: usize,
    /// Objects listed per store prefix.
    pub max_listed: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_jobs: 100_000,
            max_accounts: 10_000,
            max_listed: 100_000,
        }
    }
}

fn ms_before(now: Timestamp, span: std::time::Duration) -> Timestamp {
    Timestamp::from_unix_ms(
        now.unix_ms()
            .saturating_sub(u64::try_from(span.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// Objects under `prefix`, at most `max`.
pub(crate) async fn list_prefix(
    store: &dyn ObjectStore,
    prefix: &str,
    max: usize,
) -> Result<Vec<ObjectFacts>, JanitorError> {
    let mut objects = Vec::new();
    let mut continuation: Option<String> = None;
    while objects.len() < max {
        let page = store
            .list_page(prefix, continuation.as_deref(), MAX_LIST_PAGE)
            .await
            .map_err(|err| JanitorError::store("list objects", err))?;
        objects.extend(page.objects.iter().map(ObjectFacts::from));
        match page.continuation {
            Some(next) => continuation = Some(next),
            None => break,
        }
    }
    objects.truncate(max);
    Ok(objects)
}

async fn account_objects(
    store: &dyn ObjectStore,
    account: &AccountId,
    max: usize,
) -> Result<Vec<ObjectFacts>, JanitorError> {
    let mut objects = Vec::new();
    for prefix in account_prefixes(account) {
        objects.extend(list_prefix(store, &prefix, max).await?);
    }
    Ok(objects)
}

/// Reads the snapshot the rules judge at `now`.
pub async fn gather(
    ledger: &Ledger,
    store: &dyn ObjectStore,
    policy: &Policy,
    now: Timestamp,
    limits: Limits,
) -> Result<Snapshot, JanitorError> {
    let mut snapshot = Snapshot::empty(now);
    let ledger_err = |what: &'static str| move |err| JanitorError::ledger(what, err);

    // Accounts: a superset of the due ones (a calendar month is at least 28 days); the rules
    // decide. Their prefixes are listed so a purge knows its objects.
    let terminated_before = policy.terminated_before_bound(now);
    let mut after: Option<AccountId> = None;
    while snapshot.accounts.len() < limits.max_accounts {
        let page = ledger
            .accounts_for_review(terminated_before, after.as_ref(), PAGE)
            .await
            .map_err(ledger_err("list accounts for review"))?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        let full = page.len() == PAGE as usize;
        snapshot
            .accounts
            .extend(page.iter().map(AccountFacts::from));
        if !full {
            break;
        }
    }
    // Legal holds spare everything of their account; a hold without a limit would be an
    // unbounded read, so more holds than accounts reviewed is refused rather than cut.
    let held = ledger
        .accounts_on_legal_hold(u32::try_from(limits.max_accounts).unwrap_or(u32::MAX))
        .await
        .map_err(ledger_err("list legal holds"))?;
    if held.len() >= limits.max_accounts {
        return Err(JanitorError::new(
            crate::JanitorErrorKind::Internal,
            "more legal holds than max_accounts: raise the limit",
        ));
    }
    snapshot.held = held.into_iter().collect();
    for account in &snapshot.accounts {
        if !account.legal_hold {
            let objects = account_objects(store, &account.id, limits.max_listed).await?;
            snapshot.account_objects.insert(account.id.clone(), objects);
        }
    }

    // Jobs with a photo or a video that may be due.
    let input_cutoff = ms_before(now, policy.input_max_age);
    let mut cursor: JobCursor = None;
    let mut read = 0;
    while read < limits.max_jobs {
        let page = ledger
            .jobs_with_input_due(input_cutoff, &cursor, PAGE)
            .await
            .map_err(ledger_err("list jobs with a photo due"))?;
        let Some(last) = page.last() else { break };
        cursor = Some((last.submitted_at, last.id));
        read += page.len();
        let full = page.len() == PAGE as usize;
        for job in &page {
            snapshot.jobs.insert(job.id, JobFacts::from(job));
        }
        if !full {
            break;
        }
    }
    let finished_before = ms_before(now, policy.output_ttl);
    let mut cursor: JobCursor = None;
    let mut read = 0;
    while read < limits.max_jobs {
        let page = ledger
            .jobs_with_output_due(now, finished_before, &cursor, PAGE)
            .await
            .map_err(ledger_err("list jobs with a video due"))?;
        let Some(last) = page.last() else { break };
        cursor = Some((
            last.output_expires_at.unwrap_or(Timestamp::from_unix_ms(0)),
            last.id,
        ));
        read += page.len();
        let full = page.len() == PAGE as usize;
        for job in &page {
            snapshot.jobs.insert(job.id, JobFacts::from(job));
        }
        if !full {
            break;
        }
    }

    // Stored photos, and the jobs they name (orphans have none).
    snapshot.stored_inputs = list_prefix(store, "inputs/", limits.max_listed).await?;
    let named: Vec<JobId> = snapshot
        .stored_inputs
        .iter()
        .filter_map(|object| parse_input_key(&object.key).and_then(|(_, job)| job))
        .filter(|id| !snapshot.jobs.contains_key(id))
        .collect();
    for job in ledger
        .jobs_by_ids(&named)
        .await
        .map_err(ledger_err("get jobs of stored photos"))?
    {
        snapshot.jobs.insert(job.id, JobFacts::from(&job));
    }

    snapshot.stored_sessions = list_prefix(store, "sessions/", limits.max_listed).await?;

    // Tombstones: is the account still in the ledger, are its jobs still live, and what is
    // left under its prefixes once it is gone.
    snapshot.tombstones = list_prefix(store, "tombstones/", limits.max_listed).await?;
    let tombstoned: Vec<AccountId> = snapshot
        .tombstones
        .iter()
        .filter_map(|object| key_account(&object.key))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (known, live) = ledger
        .accounts_and_live_jobs(&tombstoned)
        .await
        .map_err(ledger_err("check tombstoned accounts"))?;
    snapshot.accounts_in_ledger = known.into_iter().collect();
    snapshot.accounts_with_live_jobs = live.into_iter().collect();
    for account in &tombstoned {
        if !snapshot.accounts_in_ledger.contains(account) {
            let objects = account_objects(store, account, limits.max_listed).await?;
            snapshot.account_objects.insert(account.clone(), objects);
        }
    }

    let before = ms_before(now, policy.usage_max_age);
    let (count, oldest) = ledger
        .usage_before(before)
        .await
        .map_err(ledger_err("count usage records"))?;
    snapshot.usage = Some(UsageFacts {
        before,
        count,
        oldest,
    });
    Ok(snapshot)
}
