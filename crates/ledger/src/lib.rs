//! The ledger: the fleet's database of accounts, jobs, personalisation sessions, usage records
//! and the deletion audit (DESIGN.md §6), on PostgreSQL (production, services tests) or SQLite (the embedded default)
//! through sqlx, with one set of migrations for both. Queries are checked at run time, so the
//! build never needs a database.
//!
//! Ingest writes accounts, jobs and usage records; its event consumer applies workers' job
//! events with [`Ledger::apply_events`], idempotently and in any order; the janitor reads
//! expiries, purges and writes the deletion audit. Every instant the ledger makes comes from an
//! injected [`Clock`].
//!
//! Modules:
//! - `ledger`: [`Ledger`], opened by URL; the embedded migrations.
//! - `account`: [`Account`] and its lifecycle (suspend, terminate, erasure, tombstone).
//! - `job`: [`Job`], idempotent insertion, [`Ledger::fail_job`].
//! - `events`: the job-event state machine ([`Ledger::apply_events`]).
//! - `purge`: [`Ledger::delete_account`], the end of an account's rows.
//! - `session`: personalisation [`Session`]s, their photos and the jobs that train on them
//!   (created with a TTL, ended once, photo rows deleted at the end).
//! - `sweep`: what the janitor sweeps (expired videos, stale photos, accounts due) and marks.
//! - `retention`: the janitor's keyset-paged candidates, batched marks, and the audit as a
//!   write-ahead log (deduplicated intents confirmed once verified).
//! - `usage`: the policy's usage details per request ([`UsageRecord`]).
//! - `audit`: the deletion audit ([`Deletion`]).
//! - `operations`: what the operator console reads (recent jobs, attempts, per-minute rates)
//!   and the janitor's sweep records ([`SweepRecord`]).
//! - `clock`: [`Clock`], [`SystemClock`], [`ManualClock`].
//! - `error`: [`LedgerError`] and its [`LedgerErrorKind`]; sqlx errors are converted there only.

mod account;
mod audit;
mod clock;
mod error;
mod events;
mod job;
mod ledger;
mod operations;
mod purge;
mod retention;
mod session;
mod sweep;
mod usage;

pub use account::{Account, AccountStatus, NewAccount, PersonalFields};
pub use audit::{Deletion, DeletionFilter, DeletionReason, NewDeletion, SubjectKind};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{LedgerError, LedgerErrorKind};
pub use events::ApplyOutcome;
pub use job::{Idempotency, InsertedJob, Job, JobStatus, NewJob, PERSONALIZE_KIND};
pub use ledger::{Backend, Ledger};
pub use operations::{Attempt, MinuteRate, NewSweep, SweepRecord};
pub use purge::PurgedRows;
pub use retention::JobCursor;
pub use session::{NewSessionPhoto, Session, SessionEndReason, SessionPhotoRow};
pub use usage::{MAX_LIST_LIMIT, MAX_USAGE_BATCH, NewUsage, UsageRecord};
