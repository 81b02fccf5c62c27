//! `clip-ingest`: the fleet's front door (DESIGN.md §1). The app backend authenticates with a
//! service token and posts a photo; ingest checks the account (active, not under 14), bounds
//! and sniffs the photo from its header, seals it into the object store, writes the job row,
//! publishes the job with a confirm and answers `202`. If the publish is not confirmed the
//! photo is deleted and the answer is `503`: a photo is never stored without a queued job.
//!
//! The same process consumes the workers' job events and applies them to the ledger, so
//! `GET /v1/jobs/{id}` shows status, timings and error codes.
//!
//! Modules:
//! - `service`: [`Ingest`] (state, router, serve) and [`IngestDeps`], [`IngestOptions`].
//! - `http`: the HTTP/1 server loop (bounded read buffers, connect info, graceful stop).
//! - `submit`: `POST /v1/jobs`.
//! - `jobs`: `GET /v1/jobs/{id}`, `GET /v1/jobs/{id}/video` (ranges), `DELETE /v1/jobs/{id}`.
//! - `accounts`: `/v1/accounts…` (create, update, terminate, erasure: the account's sessions
//!   end with it).
//! - `sessions`: `/v1/sessions…` (create, photos, personalize, show, delete): personalisation
//!   sessions, whose adapter serves the jobs that name the session (`session_id`).
//! - `admission`: the per-pool backlog bound (`429` with `Retry-After`).
//! - `events`: the event consumer (broker → ledger).
//! - `client`: who is asking (address, device id) and the usage record of each request.
//! - `usage`: usage records written in groups (one statement and commit for many requests').
//! - `range`: `Range: bytes=…` for video downloads.
//! - `auth`: service tokens, compared in constant time.
//! - `error`: [`ApiError`], the JSON error answer with its stable code.
//! - `metrics`: what `/metrics` exports.

mod accounts;
mod admission;
mod auth;
mod client;
mod error;
mod events;
mod http;
mod jobs;
mod metrics;
mod range;
mod service;
mod sessions;
mod submit;
mod usage;

pub use error::ApiError;
pub use service::{DEV_TOKEN, Ingest, IngestDeps, IngestOptions, MAX_BLOCKING_THREADS};
