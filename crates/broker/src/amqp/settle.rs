//! Settling one consumer channel's deliveries, acks coalesced (group commit).
//!
//! Every `basic.ack` is a frame lapin's I/O loop writes and a command RabbitMQ's quorum queue
//! applies; a worker finishing thousands of jobs a second spent most of its broker budget on
//! them. So a channel's settles go through one task: what callers asked while the previous
//! round was being written goes out in the next round, and the acks of a round that cover the
//! channel's oldest unsettled deliveries without a gap go out as one `basic.ack` with
//! `multiple` set (RabbitMQ's "acknowledge everything up to this tag"). Acks further on, past a
//! delivery still held (a job still running), go out one by one in the same round: nobody's
//! ack waits for another job to finish.
//!
//! The lease semantics do not change: a delivery is covered by a multiple ack only once its
//! own caller asked for its ack, and each caller's ack returns once its frame is written. The
//! task tracks which tags the channel holds unsettled, so a delivery settled twice is refused
//! here (a second `basic.ack` of a tag would close the channel), and every settle of the
//! channel — nacks, and the acks after a retry's or a dead letter's confirmed copy — goes
//! through it to keep that record true.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::sync::{mpsc, oneshot};

/// Largest round: the rest wait for the next one.
const MAX_ROUND: usize = 4096;

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Nack { requeue: bool },
}

/// `Ok(true)`: written; `Ok(false)`: already settled, or its channel closed; `Err`: the channel
/// failed while writing it.
pub(crate) type Settled = Result<bool, lapin::Error>;

struct Request {
    tag: u64,
    acker: Acker,
    how: Settle,
    done: oneshot::Sender<Settled>,
}

/// The settling side of one consumer channel. Dropped with the channel's last lease; its task
/// ends then.
#[derive(Debug)]
pub(crate) struct Settler {
    requests: mpsc::UnboundedSender<Request>,
    /// Delivery tags the channel holds: delivered and not yet settled.
    unsettled: Arc<Mutex<BTreeSet<u64>>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("tag", &self.tag)
            .field("how", &self.how)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// What one round writes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// The highest tag of the oldest unsettled run the round acks whole: one multiple ack.
    multiple_up_to: Option<u64>,
    /// Acked one by one.
    single: Vec<u64>,
}

/// Splits the acks of a round: those that, with nothing unsettled between them, start at the
/// channel's oldest unsettled tag go out as one multiple ack (when there are two or more);
/// the rest one by one. `acks` is sorted; `unsettled` includes them.
fn plan(unsettled: &BTreeSet<u64>, acks: &[u64]) -> Plan {
    let covered = unsettled
        .iter()
        .zip(acks)
        .take_while(|(held, acked)| held == acked)
        .count();
    if covered < 2 {
        return Plan {
            multiple_up_to: None,
            single: acks.to_vec(),
        };
    }
    Plan {
        multiple_up_to: Some(acks[covered - 1]),
        single: acks[covered..].to_vec(),
    }
}

impl Settler {
    /// A settler for a freshly opened channel; its task runs on the current runtime.
    pub(crate) fn start() -> Arc<Self> {
        let (requests, pending) = mpsc::unbounded_channel();
        let unsettled = Arc::new(Mutex::new(BTreeSet::new()));
        tokio::spawn(settle_loop(pending, unsettled.clone()));
        Arc::new(Settler {
            requests,
            unsettled,
        })
    }

    /// Records a delivery the channel now holds.
    pub(crate) fn delivered(&self, tag: u64) {
        lock(&self.unsettled).insert(tag);
    }

    /// Whether the channel still holds `tag` unsettled.
    pub(crate) fn holds(&self, tag: u64) -> bool {
        lock(&self.unsettled).contains(&tag)
    }

    /// Queues a settle for the channel's next round; the receiver answers once written.
    pub(crate) fn settle(
        &self,
        tag: u64,
        acker: &Acker,
        how: Settle,
    ) -> oneshot::Receiver<Settled> {
        let (done, answer) = oneshot::channel();
        let request = Request {
            tag,
            acker: acker.clone(),
            how,
            done,
        };
        if let Err(refused) = self.requests.send(request) {
            // The task is gone only with the runtime: nothing can be written.
            let _ = refused.0.done.send(Ok(false));
        }
        answer
    }
}

async fn settle_loop(
    mut pending: mpsc::UnboundedReceiver<Request>,
    unsettled: Arc<Mutex<BTreeSet<u64>>>,
) {
    let mut round = Vec::new();
    while pending.recv_many(&mut round, MAX_ROUND).await > 0 {
        write_round(std::mem::take(&mut round), &unsettled).await;
    }
}

/// Writes one round: nacks one by one, acks coalesced where they can be. Every request of the
/// round is answered.
async fn write_round(round: Vec<Request>, unsettled: &Mutex<BTreeSet<u64>>) {
    let mut acks = Vec::new();
    let mut writes = Vec::new();
    {
        let mut held = lock(unsettled);
        for request in round {
            // Settled already (by an earlier request, or a multiple ack that covered it).
            if !held.contains(&request.tag) {
                let _ = request.done.send(Ok(false));
                continue;
            }
            match request.how {
                Settle::Ack => acks.push(request),
                Settle::Nack { requeue } => {
                    held.remove(&request.tag);
                    writes.push((vec![request.done], Write::Nack(request.acker, requeue)));
                }
            }
        }
        acks.sort_unstable_by_key(|request| request.tag);
        acks.dedup_by_key(|request| request.tag);
        let tags: Vec<u64> = acks.iter().map(|request| request.tag).collect();
        let plan = plan(&held, &tags);
        for tag in &tags {
            held.remove(tag);
        }
        let mut acks = acks.into_iter();
        if let Some(last) = plan.multiple_up_to {
            let mut waiters = Vec::new();
            let mut acker = None;
            for request in acks.by_ref() {
                waiters.push(request.done);
                if request.tag == last {
                    acker = Some(request.acker);
                    break;
                }
            }
            if let Some(acker) = acker {
                writes.push((waiters, Write::AckUpTo(acker)));
            }
        }
        for request in acks {
            writes.push((vec![request.done], Write::Ack(request.acker)));
        }
    }
    // Submitted in order (lapin queues each frame when its future is first polled), written
    // concurrently: the round costs one trip through lapin's I/O loop, not one per frame.
    let results = futures_util::future::join_all(writes.iter().map(|(_, write)| write.run())).await;
    for ((waiters, _), result) in writes.into_iter().zip(results) {
        for waiter in waiters {
            let copy = match &result {
                Ok(written) => Ok(*written),
                Err(err) => Err(err.clone()),
            };
            let _ = waiter.send(copy);
        }
    }
}

enum Write {
    Ack(Acker),
    AckUpTo(Acker),
    Nack(Acker, bool),
}

impl Write {
    async fn run(&self) -> Settled {
        match self {
            Write::Ack(acker) => acker.ack(BasicAckOptions::default()).await,
            Write::AckUpTo(acker) => acker.ack(BasicAckOptions { multiple: true }).await,
            Write::Nack(acker, requeue) => {
                acker
                    .nack(BasicNackOptions {
                        requeue: *requeue,
                        multiple: false,
                    })
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(tags: &[u64]) -> BTreeSet<u64> {
        tags.iter().copied().collect()
    }

    #[test]
    fn the_oldest_run_goes_out_as_one_multiple_ack() {
        let plan = plan(&held(&[3, 4, 5, 6, 9]), &[3, 4, 5, 9]);
        assert_eq!(plan.multiple_up_to, Some(5));
        assert_eq!(plan.single, vec![9]);
    }

    #[test]
    fn acks_past_a_held_delivery_go_one_by_one() {
        // 3 is still running: nothing may be acked "up to" anything past it.
        let plan = plan(&held(&[3, 4, 5, 6]), &[4, 5, 6]);
        assert_eq!(plan.multiple_up_to, None);
        assert_eq!(plan.single, vec![4, 5, 6]);
    }

    #[test]
    fn a_lone_ack_is_a_plain_ack() {
        let plan = plan(&held(&[7, 8]), &[7]);
        assert_eq!(plan.multiple_up_to, None);
        assert_eq!(plan.single, vec![7]);
    }

    #[test]
    fn a_gap_in_the_acks_ends_the_run() {
        // 2 is held and not acked: the multiple ack stops at 1.
        let plan = plan(&held(&[0, 1, 2, 3]), &[0, 1, 3]);
        assert_eq!(plan.multiple_up_to, Some(1));
        assert_eq!(plan.single, vec![3]);
    }
}
