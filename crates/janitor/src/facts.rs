//! What the rules read: the few facts of ledger rows and stored objects they decide on, as plain
//! data. The gatherer (`gather.rs`) builds a [`Snapshot`] from the ledger and the store; tests
//! and property tests build one by hand.

use std::collections::{BTreeMap, BTreeSet};

use clipfleet_ledger::{Account, AccountStatus, Job, JobStatus};
use clipfleet_proto::{AccountId, JobId, Timestamp};
use clipfleet_store::{ObjectKey, ObjectMeta};

/// A job as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    /// The job.
    pub id: JobId,
    /// Whose job.
    pub account: AccountId,
    /// Where it stands.
    pub status: JobStatus,
    /// When ingest accepted it: photos age from here.
    pub submitted_at: Timestamp,
    /// When it ended: a video ages from here.
    pub finished_at: Option<Timestamp>,
    /// The photo's key.
    pub input_key: String,
    /// Whether the ledger records the photo as deleted.
    pub input_deleted: bool,
    /// The video's key, once one is stored.
    pub output_key: Option<String>,
    /// When the video is due (stored + TTL, or now on the holder's request).
    pub output_expires_at: Option<Timestamp>,
    /// Whether the ledger records the video as deleted.
    pub output_deleted: bool,
}

impl From<&Job> for JobFacts {
    fn from(job: &Job) -> Self {
        JobFacts {
            id: job.id,
            account: job.account_id.clone(),
            status: job.status,
            submitted_at: job.submitted_at,
            finished_at: job.finished_at,
            input_key: job.input_key.clone(),
            input_deleted: job.input_deleted_at.is_some(),
            output_key: job.output_key.clone(),
            output_expires_at: job.output_expires_at,
            output_deleted: job.output_deleted_at.is_some(),
        }
    }
}

/// An account as the rules see it (no personal field: the rules never need one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFacts {
    /// The account.
    pub id: AccountId,
    /// Where it stands.
    pub status: AccountStatus,
    /// When it ended.
    pub terminated_at: Option<Timestamp>,
    /// Flagged under 14 (at sign-up or later).
    pub under_14: bool,
    /// Retention suspended.
    pub legal_hold: bool,
    /// When the holder asked for erasure.
    pub erasure_requested_at: Option<Timestamp>,
    /// When the ledger first saw it.
    pub created_at: Timestamp,
}

impl From<&Account> for AccountFacts {
    fn from(account: &Account) -> Self {
        AccountFacts {
            id: account.id.clone(),
            status: account.status,
            terminated_at: account.terminated_at,
            under_14: account.under_14,
            legal_hold: account.legal_hold,
            erasure_requested_at: account.erasure_requested_at,
            created_at: account.created_at,
        }
    }
}

/// A stored object: its key and when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFacts {
    /// The key.
    pub key: ObjectKey,
    /// When it was last written.
    pub last_modified: Timestamp,
}

impl From<&ObjectMeta> for ObjectFacts {
    fn from(meta: &ObjectMeta) -> Self {
        ObjectFacts {
            key: meta.key.clone(),
            last_modified: Timestamp::from_system_time(meta.last_modified),
        }
    }
}

/// Usage records older than the policy's cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageFacts {
    /// The cutoff they were counted against (`now - usage_max_age`).
    pub before: Timestamp,
    /// How many.
    pub count: u64,
    /// The oldest one's instant.
    pub oldest: Option<Timestamp>,
}

/// Everything one sweep decides on, read at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The instant the rules judge at.
    pub now: Timestamp,
    /// Jobs whose photo or video the ledger records as present and that may be due, and the
    /// jobs of listed photos (orphan checks).
    pub jobs: BTreeMap<JobId, JobFacts>,
    /// Accounts a retention rule may apply to (legal holds included).
    pub accounts: Vec<AccountFacts>,
    /// Accounts under legal hold: nothing of theirs is deleted, by any rule.
    pub held: BTreeSet<AccountId>,
    /// Objects under each reviewed or tombstoned account's prefixes (`inputs/<a>/`,
    /// `outputs/<a>/`, `sessions/<a>/`).
    pub account_objects: BTreeMap<AccountId, Vec<ObjectFacts>>,
    /// Objects under `inputs/`.
    pub stored_inputs: Vec<ObjectFacts>,
    /// Objects under `sessions/`.
    pub stored_sessions: Vec<ObjectFacts>,
    /// Objects under `tombstones/`.
    pub tombstones: Vec<ObjectFacts>,
    /// Of the tombstoned accounts, those the ledger still has.
    pub accounts_in_ledger: BTreeSet<AccountId>,
    /// Of the tombstoned accounts, those with a job still queued or running.
    pub accounts_with_live_jobs: BTreeSet<AccountId>,
    /// Usage records past the cutoff.
    pub usage: Option<UsageFacts>,
}

impl Snapshot {
    /// An empty snapshot at `now`.
    pub fn empty(now: Timestamp) -> Snapshot {
        Snapshot {
            now,
            jobs: BTreeMap::new(),
            accounts: Vec::new(),
            held: BTreeSet::new(),
            account_objects: BTreeMap::new(),
            stored_inputs: Vec::new(),
            stored_sessions: Vec::new(),
            tombstones: Vec::new(),
            accounts_in_ledger: BTreeSet::new(),
            accounts_with_live_jobs: BTreeSet::new(),
            usage: None,
        }
    }
}

/// The prefixes under which an account's objects live.
pub fn account_prefixes(account: &AccountId) -> [String; 3] {
    [
        format!("inputs/{account}/"),
        format!("outputs/{account}/"),
        format!("sessions/{account}/"),
    ]
}

/// The account and job a photo key `inputs/<account>/<job>` names, when it has that shape.
pub fn parse_input_key(key: &ObjectKey) -> Option<(AccountId, Option<JobId>)> {
    let mut segments = key.segments();
    if segments.next() != Some("inputs") {
        return None;
    }
    let account = AccountId::new(segments.next()?).ok()?;
    let job = segments.next().and_then(|job| job.parse::<JobId>().ok());
    Some((account, job))
}

/// The account a key under one of the account prefixes (or `tombstones/`) belongs to.
pub fn key_account(key: &ObjectKey) -> Option<AccountId> {
    let mut segments = key.segments();
    match segments.next()? {
        "inputs" | "outputs" | "sessions" | "tombstones" => AccountId::new(segments.next()?).ok(),
        _ => None,
    }
}
