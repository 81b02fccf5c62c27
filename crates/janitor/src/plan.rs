//! A plan: what one sweep deletes, each deletion with the rule that demands it. Built by the
//! pure rules (`rules.rs`), applied by the executor (`execute.rs`), printed by `plan`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use clipfleet_ledger::{DeletionReason, SubjectKind};
use clipfleet_proto::{AccountId, JobId, Timestamp};
use clipfleet_store::ObjectKey;
use serde::Serialize;

/// The rules of DESIGN.md §8, one per reason something is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The photo of a job that ended (the worker's delete did not happen or was not recorded).
    PhotoOfEndedJob,
    /// A photo past `input_max_age`, whatever its job's state.
    PhotoPastMaxAge,
    /// A photo no job row accounts for, past `orphan_grace`.
    OrphanPhoto,
    /// A video past `output_ttl` from its generation.
    VideoPastTtl,
    /// A video whose holder asked for its deletion.
    VideoDeleteRequested,
    /// A terminated account at `terminated_at + N calendar months`.
    AccountRetention,
    /// An account flagged under 14: at once.
    UnderAge,
    /// An account whose holder asked for erasure: at once.
    ErasureRequest,
    /// Objects found under an erased account's prefixes after its purge (work in flight).
    ErasedAccountLeftovers,
    /// Usage records past `usage_max_age`.
    UsagePastMaxAge,
    /// The artifacts of a session marked ended.
    SessionEnded,
    /// The artifacts of a session past `session_ttl`.
    SessionTtl,
    /// A tombstone once no job of its account can still run.
    TombstoneExpired,
}

impl Rule {
    /// Every rule, in the order plans list them.
    pub const ALL: [Rule; 13] = [
        Rule::PhotoOfEndedJob,
        Rule::PhotoPastMaxAge,
        Rule::OrphanPhoto,
        Rule::VideoPastTtl,
        Rule::VideoDeleteRequested,
        Rule::AccountRetention,
        Rule::UnderAge,
        Rule::ErasureRequest,
        Rule::ErasedAccountLeftovers,
        Rule::UsagePastMaxAge,
        Rule::SessionEnded,
        Rule::SessionTtl,
        Rule::TombstoneExpired,
    ];

    /// The rule's name in plans, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::PhotoOfEndedJob => "photo_of_ended_job",
            Rule::PhotoPastMaxAge => "photo_past_max_age",
            Rule::OrphanPhoto => "orphan_photo",
            Rule::VideoPastTtl => "video_past_ttl",
            Rule::VideoDeleteRequested => "video_delete_requested",
            Rule::AccountRetention => "account_retention",
            Rule::UnderAge => "under_age",
            Rule::ErasureRequest => "erasure_request",
            Rule::ErasedAccountLeftovers => "erased_account_leftovers",
            Rule::UsagePastMaxAge => "usage_past_max_age",
            Rule::SessionEnded => "session_ended",
            Rule::SessionTtl => "session_ttl",
            Rule::TombstoneExpired => "tombstone_expired",
        }
    }

    /// The reason the audit records.
    pub fn reason(self) -> DeletionReason {
        match self {
            Rule::PhotoOfEndedJob => DeletionReason::InputConsumed,
            Rule::PhotoPastMaxAge => DeletionReason::InputMaxAge,
            Rule::OrphanPhoto => DeletionReason::Orphan,
            Rule::VideoPastTtl => DeletionReason::OutputTtl,
            Rule::VideoDeleteRequested => DeletionReason::DeleteRequest,
            Rule::AccountRetention => DeletionReason::AccountRetention,
            Rule::UnderAge => DeletionReason::UnderAge,
            Rule::ErasureRequest | Rule::ErasedAccountLeftovers => DeletionReason::ErasureRequest,
            Rule::UsagePastMaxAge => DeletionReason::UsageMaxAge,
            Rule::SessionEnded | Rule::SessionTtl => DeletionReason::SessionEnded,
            Rule::TombstoneExpired => DeletionReason::TombstoneExpired,
        }
    }
}

/// What the ledger learns once an object is verified gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDelete {
    /// Nothing to record beyond the audit.
    Nothing,
    /// The job's photo is gone.
    InputDeleted(JobId),
    /// The job's photo is gone and the job, still queued, fails `expired`.
    InputDeletedJobExpired(JobId),
    /// The job's video is gone.
    OutputDeleted(JobId),
}

/// One object to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDeletion {
    /// Why.
    pub rule: Rule,
    /// What.
    pub key: ObjectKey,
    /// Whom the audit files it under.
    pub subject_kind: SubjectKind,
    /// The job, session or account id.
    pub subject_id: String,
    /// How old the thing is (since submission, generation, writing).
    pub age: Duration,
    /// What to record once it is gone.
    pub then: AfterDelete,
}

/// An account to purge: its objects, then its rows; personal fields first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPurge {
    /// Why.
    pub rule: Rule,
    /// Whose.
    pub account: AccountId,
    /// The objects under its prefixes.
    pub keys: Vec<ObjectKey>,
    /// Whether to write `tombstones/<account>` first so workers drop its queued jobs (an
    /// immediate purge: jobs may be in flight).
    pub tombstone: bool,
    /// Since termination, the erasure request or the flag.
    pub age: Duration,
}

/// Usage records to expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageExpiry {
    /// Records made before this go.
    pub before: Timestamp,
    /// How many the plan saw.
    pub count: u64,
    /// The oldest one's age.
    pub age: Duration,
}

/// One thing a sweep does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete one object.
    DeleteObject(ObjectDeletion),
    /// Purge an account.
    PurgeAccount(AccountPurge),
    /// Expire usage records.
    ExpireUsage(UsageExpiry),
}

impl Action {
    /// The rule behind it.
    pub fn rule(&self) -> Rule {
        match self {
            Action::DeleteObject(deletion) => deletion.rule,
            Action::PurgeAccount(purge) => purge.rule,
            Action::ExpireUsage(_) => Rule::UsagePastMaxAge,
        }
    }

    fn age(&self) -> Duration {
        match self {
            Action::DeleteObject(deletion) => deletion.age,
            Action::PurgeAccount(purge) => purge.age,
            Action::ExpireUsage(expiry) => expiry.age,
        }
    }

    /// (objects, rows) it deletes, as far as the plan knows.
    fn volume(&self) -> (u64, u64) {
        match self {
            Action::DeleteObject(_) => (1, 0),
            Action::PurgeAccount(purge) => (purge.keys.len() as u64, 1),
            Action::ExpireUsage(expiry) => (0, expiry.count),
        }
    }
}

/// Something a rule would have touched but may not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// The rule that stood back.
    pub rule: Rule,
    /// The account or job.
    pub subject: String,
    /// Why (`legal_hold`, `bad_key`, `account_still_in_ledger`…).
    pub why: &'static str,
}

/// What one sweep will do, judged at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The instant the rules judged at.
    pub now: Timestamp,
    /// The deletions, in rule order.
    pub actions: Vec<Action>,
    /// What the rules left alone on purpose.
    pub kept: Vec<Kept>,
}

/// One rule's line in a plan's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSummary {
    /// The rule.
    pub rule: Rule,
    /// Actions (objects, accounts, usage expiries).
    pub actions: u64,
    /// Objects they delete.
    pub objects: u64,
    /// Ledger rows they delete (accounts, usage records).
    pub rows: u64,
    /// The oldest thing's age, in seconds.
    pub oldest_age_s: u64,
}

/// A plan as `clip-janitor plan` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    /// The instant judged at, Unix milliseconds.
    pub now_ms: u64,
    /// Rules with something to do.
    pub rules: Vec<RuleSummary>,
    /// What was kept on purpose.
    pub kept: Vec<Kept>,
}

impl Plan {
    /// Counts and oldest ages by rule.
    pub fn summary(&self) -> PlanSummary {
        let mut by_rule: BTreeMap<Rule, RuleSummary> = BTreeMap::new();
        for action in &self.actions {
            let rule = action.rule();
            let line = by_rule.entry(rule).or_insert(RuleSummary {
                rule,
                actions: 0,
                objects: 0,
                rows: 0,
                oldest_age_s: 0,
            });
            let (objects, rows) = action.volume();
            line.actions += 1;
            line.objects += objects;
            line.rows += rows;
            line.oldest_age_s = line.oldest_age_s.max(action.age().as_secs());
        }
        PlanSummary {
            now_ms: self.now.unix_ms(),
            rules: by_rule.into_values().collect(),
            kept: self.kept.clone(),
        }
    }

    /// How many actions a rule has.
    pub fn count(&self, rule: Rule) -> usize {
        self.actions.iter().filter(|a| a.rule() == rule).count()
    }

    /// Every object key the plan deletes, with its rule.
    pub fn object_keys(&self) -> Vec<(Rule, &ObjectKey)> {
        let mut keys = Vec::new();
        for action in &self.actions {
            match action {
                Action::DeleteObject(deletion) => keys.push((deletion.rule, &deletion.key)),
                Action::PurgeAccount(purge) => {
                    keys.extend(purge.keys.iter().map(|key| (purge.rule, key)));
                }
                Action::ExpireUsage(_) => {}
            }
        }
        keys
    }
}

impl PlanSummary {
    /// The summary as a table for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<26} {:>8} {:>9} {:>9} {:>12}",
            "rule", "actions", "objects", "rows", "oldest age"
        );
        for line in &self.rules {
            let age = humantime::format_duration(Duration::from_secs(line.oldest_age_s));
            let _ = writeln!(
                out,
                "{:<26} {:>8} {:>9} {:>9} {:>12}",
                line.rule.as_str(),
                line.actions,
                line.objects,
                line.rows,
                age.to_string()
            );
        }
        if self.rules.is_empty() {
            let _ = writeln!(out, "(nothing to delete)");
        }
        for kept in &self.kept {
            let _ = writeln!(
                out,
                "kept by {}: {} ({})",
                kept.rule.as_str(),
                kept.subject,
                kept.why
            );
        }
        out
    }
}
