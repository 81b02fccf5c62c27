//! Job events: what workers report about jobs. They travel in batches, because every broker
//! message costs the broker as much as the job itself: a worker finishing eight jobs sends one
//! message, not sixteen.

use serde::{Deserialize, Serialize};

use crate::codec::{Invalid, Message};
use crate::{ErrorCode, JobId, Timestamp, WorkerId};

/// Most events one batch may carry; keeps a batch far below the message size limit.
pub const MAX_EVENTS_PER_BATCH: usize = 1024;

/// Longest failure message kept, in bytes (it is for operators, not for media or personal data).
const MAX_FAILURE_MESSAGE_BYTES: usize = 1024;

/// Milliseconds a job spent in each worker stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDurations {
    /// From `submitted_at` until a worker received it.
    pub queue_wait_ms: u32,
    /// Get, unseal, decode and resize of the photo.
    pub fetch_ms: u32,
    /// Waiting for a batch to fill.
    pub batch_wait_ms: u32,
    /// The forward pass (shared by the batch).
    pub infer_ms: u32,
    /// Video encoding.
    pub encode_ms: u32,
    /// Sealing and storing the video.
    pub store_ms: u32,
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A worker began running it.
    Started,
    /// Rendering progress, 0..=100.
    Progress {
        /// Percent done.
        pct: u8,
    },
    /// The video is durably stored.
    Succeeded {
        /// Object key of the video (`outputs/<account>/<job>.mp4`).
        output_key: String,
        /// Plaintext size of the video in bytes.
        size: u64,
        /// Time per stage.
        stages: StageDurations,
    },
    /// The job ended without a video (terminal) or will be retried (`retryable`).
    Failed {
        /// Stable code.
        code: ErrorCode,
        /// Short operator-facing text: no personal data, no media.
        message: String,
        /// Whether the job goes back to the queue for another attempt.
        retryable: bool,
    },
    /// The photo is deleted from the store (the privacy promise, made observable).
    InputDeleted,
    /// The job was dropped on request before it ran.
    Cancelled,
    /// A kind written by a newer version; readers skip it.
    #[serde(other)]
    Unknown,
}

/// One event about one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The job.
    pub job_id: JobId,
    /// When it happened, by the worker's clock.
    pub at: Timestamp,
    /// Which worker saw it.
    pub worker: WorkerId,
    /// What happened.
    pub event: EventKind,
}

/// The message on the events exchange: one or more job events, in the order they happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    /// Schema version.
    pub v: u32,
    /// The events, oldest first.
    pub events: Vec<JobEvent>,
}

impl Message for EventBatch {
    const KIND: &'static str = "event_batch";

    fn version(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), Invalid> {
        if self.events.is_empty() || self.events.len() > MAX_EVENTS_PER_BATCH {
            return Err(Invalid(format!(
                "events must hold 1..={MAX_EVENTS_PER_BATCH} events"
            )));
        }
        for event in &self.events {
            match &event.event {
                EventKind::Progress { pct } if *pct > 100 => {
                    return Err(Invalid(format!("progress pct {pct} is over 100")));
                }
                EventKind::Failed { message, .. } if message.len() > MAX_FAILURE_MESSAGE_BYTES => {
                    return Err(Invalid(format!(
                        "failure message is over {MAX_FAILURE_MESSAGE_BYTES} bytes"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
