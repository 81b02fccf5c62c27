//! The janitor: clipfleet's retention engine (DESIGN.md §8). The privacy policy's promises —
//! photos gone once the video exists, videos gone after a day, accounts gone six months after
//! they end, children's data gone at once — become rules, each a pure function of the instant,
//! the policy and what the ledger and the store hold; an executor applies what they decide,
//! records every deletion in the audit before it happens, verifies it afterwards, and resumes
//! cleanly after a crash. One janitor leads at a time (a leader lock).
//!
//! Modules:
//! - `policy`: [`Policy`], the config's retention section, calendar months.
//! - `facts`: [`Snapshot`] and the facts of rows and objects the rules read.
//! - `rules`: the rules, pure; [`rules::plan`] runs them all.
//! - `plan`: [`Plan`], its actions by [`Rule`], and the summary `clip-janitor plan` prints.
//! - `gather`: reads a snapshot from the ledger and the store, bounded by [`Limits`].
//! - `execute`: [`Executor`]: audit first, batched deletes, verification, marks.
//! - `lock`: the leader lock ([`LockSpec`]): PostgreSQL advisory lock, lock file, in-process.
//! - `lifecycle`: the S3 lifecycle rules that back the janitor up.
//! - `service`: [`Janitor`] and [`run`], the sweep loop with `/livez`, `/readyz`, `/metrics`.
//! - `metrics`: the counters, in the Prometheus text format.
//! - `error`: [`JanitorError`] and its [`JanitorErrorKind`].

mod error;
mod execute;
mod facts;
mod gather;
mod lifecycle;
mod lock;
mod metrics;
mod plan;
mod policy;
pub mod rules;
mod service;

pub use error::{JanitorError, JanitorErrorKind};
pub use execute::{ExecuteOptions, Executor, SweepReport};
pub use facts::{
    AccountFacts, JobFacts, ObjectFacts, Snapshot, UsageFacts, account_prefixes, key_account,
    parse_input_key,
};
pub use gather::{Limits, gather};
pub use lifecycle::{
    AbortIncompleteMultipartUpload, Expiration, Filter, LifecycleConfiguration, LifecycleRule,
    NoncurrentVersionExpiration, days_covering, lifecycle_configuration,
};
pub use lock::{LeaderLock, LockSpec};
pub use metrics::Metrics;
pub use plan::{
    AccountPurge, Action, AfterDelete, Kept, ObjectDeletion, Plan, PlanSummary, Rule, RuleSummary,
    UsageExpiry,
};
pub use policy::{Policy, add_months};
pub use service::{Janitor, RunOptions, SweepOutcome, run};
