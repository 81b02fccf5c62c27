//! The clipfleet wire protocol: every message that crosses the broker, and the error codes that
//! HTTP answers, job events and the CLI share.
//!
//! Messages are MessagePack maps with named fields (so other languages and newer versions can read
//! them), each carrying a schema version `v`; fields a reader does not know are ignored, and an
//! enum value it does not know decodes as `Unknown` rather than failing. No media bytes travel in
//! messages: jobs reference objects in the store. The spec another team implements from is
//! `proto/README.md`; `proto/vectors/` holds golden encodings.
//!
//! Modules:
//! - `ids`: job ids (ULID) and the validated string ids (account, worker, pool).
//! - `time`: [`Timestamp`], Unix milliseconds on the wire.
//! - `code`: [`ErrorCode`], the closed set of stable error codes, and their HTTP statuses.
//! - `job`: [`GenerateJob`], the work item a worker runs.
//! - `event`: [`EventBatch`] of [`JobEvent`]s, what workers report.
//! - `control`: [`Control`] messages (drain, pause, resume, heartbeat).
//! - `codec`: [`encode`] and [`decode`], with size, version and validity checks.
//!
//! This crate does no I/O and depends on no other crate of the workspace.

#[macro_use]
mod open_enum;

mod code;
mod codec;
mod control;
mod event;
mod ids;
mod job;
mod time;

pub use code::ErrorCode;
pub use codec::{DecodeError, EncodeError, MAX_MESSAGE_BYTES, Message, decode, encode};
pub use control::{Control, ControlCommand};
pub use event::{EventBatch, EventKind, JobEvent, MAX_EVENTS_PER_BATCH, StageDurations};
pub use ids::{AccountId, IdError, JobId, PhotoId, PoolName, SessionId, WorkerId};
pub use job::{
    Aspect, GenerateJob, InputRef, JobKind, MAX_SESSION_PHOTOS, ModelRef, Motion, Params, Priority,
    SessionPhoto, SessionRef, Sha256Hex,
};
pub use time::Timestamp;

/// The schema version this crate writes into `v`. Additive changes (a new optional field, a new
/// enum value) keep it; only a change an existing reader would misread bumps it. A job of a kind
/// other than video is the one exception: it is written at its kind's version
/// ([`JobKind::schema_version`]), so readers of version 1 refuse it.
pub const SCHEMA_VERSION: u32 = 1;

/// The newest schema version this crate reads: 2 adds a job's `kind` (what a reader of 1 alone
/// would misread), 3 a job's `session` (a reader of 2 would render a session's job without its
/// personalised adapter, or not know a `personalize` job); every other message reads the same at
/// 1, 2 and 3.
pub const MAX_SUPPORTED_VERSION: u32 = 3;

/// The oldest schema version this crate still reads.
pub const MIN_SUPPORTED_VERSION: u32 = 1;
