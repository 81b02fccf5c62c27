//! Control messages: operators steer workers (drain, pause, resume) and workers announce
//! themselves (heartbeat) on the control exchange.

use serde::{Deserialize, Serialize};

use crate::codec::{Invalid, Message};
use crate::{PoolName, Timestamp, WorkerId};

/// Longest device or model label in a heartbeat, in bytes.
const MAX_LABEL_BYTES: usize = 128;

/// What a control message asks or tells. Steering commands name a pool, a worker, or neither
/// (every worker); a worker acts on a command whose pool and worker, where given, match it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlCommand {
    /// Stop taking jobs, requeue what was prefetched, finish what runs, exit.
    Drain {
        /// Only workers of this pool.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool: Option<PoolName>,
        /// Only this worker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<WorkerId>,
    },
    /// Stop taking new jobs but stay up (in-flight work finishes).
    Pause {
        /// Only workers of this pool.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool: Option<PoolName>,
        /// Only this worker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<WorkerId>,
    },
    /// Undo `pause` (and a `drain` not yet finished).
    Resume {
        /// Only workers of this pool.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pool: Option<PoolName>,
        /// Only this worker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker: Option<WorkerId>,
    },
    /// A worker saying it is alive, every few seconds.
    Heartbeat {
        /// Who.
        worker: WorkerId,
        /// Its pool.
        pool: PoolName,
        /// Jobs it holds right now.
        busy: u32,
        /// Jobs it can hold at once.
        slots: u32,
        /// Where inference runs (`cpu`, `cuda:0`).
        device: String,
        /// Model name and version it serves (`motion@1`).
        model: String,
        /// It has stopped taking jobs (drain or pause) and finishes what it holds. Absent
        /// (false) from writers that predate it.
        #[serde(default, skip_serializing_if = "is_false")]
        draining: bool,
    },
    /// A kind written by a newer version; readers ignore it.
    #[serde(other)]
    Unknown,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(value: &bool) -> bool {
    !*value
}

/// The message on the control exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Schema version.
    pub v: u32,
    /// When it was sent.
    pub at: Timestamp,
    /// What it says.
    pub command: ControlCommand,
}

impl Message for Control {
    const KIND: &'static str = "control";

    fn version(&self) -> u32 {
        self.v
    }

    fn validate(&self) -> Result<(), Invalid> {
        if let ControlCommand::Heartbeat { device, model, .. } = &self.command
            && (device.len() > MAX_LABEL_BYTES || model.len() > MAX_LABEL_BYTES)
        {
            return Err(Invalid(format!(
                "heartbeat device and model must be at most {MAX_LABEL_BYTES} bytes"
            )));
        }
        Ok(())
    }
}
