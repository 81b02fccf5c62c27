//! Listening on the control exchange: the workers' heartbeats, as `status` and `drain --wait`
//! see them. clipctl subscribes like a worker would (its own auto-deleted control queue) and
//! never answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use clipfleet_broker::{Broker, QueueRef, Receive};
use clipfleet_proto::{Control, ControlCommand, Timestamp, WorkerId, decode};
use serde::Serialize;

use crate::exit::{CtlResult, Exit, Failure};

/// What the last heartbeat of one worker said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerSeen {
    /// Its id.
    pub worker: String,
    /// Its pool.
    pub pool: String,
    /// Jobs it held.
    pub busy: u32,
    /// Jobs it can hold.
    pub slots: u32,
    /// Where it runs inference.
    pub device: String,
    /// The models it serves.
    pub model: String,
    /// Not taking jobs (drain or pause).
    pub draining: bool,
    /// When it was sent (unix ms).
    pub at_ms: u64,
    /// How long ago it was sent, in ms, when listening stopped.
    pub age_ms: u64,
    #[serde(skip)]
    pub(crate) heard: Option<Instant>,
}

/// A subscription to the control exchange.
pub struct Listener<'a> {
    broker: &'a dyn Broker,
    queue: QueueRef,
    /// Latest heartbeat per worker id.
    pub seen: BTreeMap<String, WorkerSeen>,
}

impl<'a> Listener<'a> {
    /// Subscribes; `None` when the broker has no control bus (SQS).
    pub async fn subscribe(broker: &'a dyn Broker) -> CtlResult<Option<Listener<'a>>> {
        let Some(bus) = broker.control_bus() else {
            return Ok(None);
        };
        let id = WorkerId::new(format!(
            "clipctl.{}.{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ))
        .map_err(|err| Failure::new(Exit::Failed, err))?;
        bus.subscribe_control(&id)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(Some(Listener {
            broker,
            queue: QueueRef::Control(id),
            seen: BTreeMap::new(),
        }))
    }

    /// Collects heartbeats for up to `wait`; returns how many arrived.
    pub async fn poll(&mut self, wait: Duration) -> CtlResult<usize> {
        let deliveries = self
            .broker
            .receive(
                &self.queue,
                Receive::new(256, Duration::from_secs(30), wait),
            )
            .await
            .map_err(anyhow::Error::from)?;
        let mut heard = 0;
        for delivery in &deliveries {
            let Ok(Control {
                at,
                command:
                    ControlCommand::Heartbeat {
                        worker,
                        pool,
                        busy,
                        slots,
                        device,
                        model,
                        draining,
                    },
                ..
            }) = decode::<Control>(&delivery.body)
            else {
                continue;
            };
            heard += 1;
            let newer = self
                .seen
                .get(worker.as_str())
                .is_none_or(|seen| seen.at_ms <= at.unix_ms());
            if newer {
                self.seen.insert(
                    worker.to_string(),
                    WorkerSeen {
                        worker: worker.to_string(),
                        pool: pool.to_string(),
                        busy,
                        slots,
                        device,
                        model,
                        draining,
                        at_ms: at.unix_ms(),
                        age_ms: 0,
                        heard: Some(Instant::now()),
                    },
                );
            }
        }
        let leases: Vec<_> = deliveries.iter().map(|d| d.lease.clone()).collect();
        self.broker
            .ack(&leases)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(heard)
    }

    /// Listens for `window`, then returns every worker heard, ages filled in.
    pub async fn collect(mut self, window: Duration) -> CtlResult<Vec<WorkerSeen>> {
        let until = Instant::now() + window;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            self.poll(left.min(Duration::from_secs(1))).await?;
        }
        Ok(self.snapshot())
    }

    /// Every worker heard so far, ages as of now.
    pub fn snapshot(&self) -> Vec<WorkerSeen> {
        let now = Timestamp::from_system_time(SystemTime::now()).unix_ms();
        self.seen
            .values()
            .map(|seen| WorkerSeen {
                age_ms: now.saturating_sub(seen.at_ms),
                ..seen.clone()
            })
            .collect()
    }
}
