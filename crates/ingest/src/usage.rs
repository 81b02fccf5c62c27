//! Usage records written in groups: every request's record was an `INSERT` and a commit of its
//! own, a third of the ledger's statements on the submit path. Records arriving while one group
//! is being written go out together in the next (one statement, one commit); each caller still
//! waits for its own group, so a request is answered only after its record is durable, as
//! before. An idle ingest writes a lone record at once.

use clipfleet_ledger::{Ledger, LedgerError, LedgerErrorKind, MAX_USAGE_BATCH, NewUsage};
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), LedgerError>>;

/// Records waiting for the writer at most (callers then wait to queue theirs).
const QUEUE: usize = 4 * MAX_USAGE_BATCH;

/// Where requests send their usage records.
#[derive(Debug, Clone)]
pub(crate) struct UsageLog {
    queue: mpsc::Sender<(NewUsage, Waiter)>,
}

fn stopped() -> LedgerError {
    LedgerError::new(LedgerErrorKind::Unavailable, "the usage writer stopped")
}

impl UsageLog {
    /// Starts the writer on the current runtime.
    pub(crate) fn start(ledger: Ledger) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(ledger, pending));
        UsageLog { queue }
    }

    /// Records `usage` (in a group with other requests') and returns once it is written.
    pub(crate) async fn record(&self, usage: NewUsage) -> Result<(), LedgerError> {
        // A record the ledger would refuse is refused here, not with its whole group.
        usage.validate()?;
        let (done, written) = oneshot::channel();
        self.queue
            .send((usage, done))
            .await
            .map_err(|_| stopped())?;
        written.await.map_err(|_| stopped())?
    }
}

async fn write_loop(ledger: Ledger, mut pending: mpsc::Receiver<(NewUsage, Waiter)>) {
    let mut group = Vec::with_capacity(MAX_USAGE_BATCH);
    while pending.recv_many(&mut group, MAX_USAGE_BATCH).await > 0 {
        let (usages, waiters): (Vec<NewUsage>, Vec<Waiter>) = group.drain(..).unzip();
        let result = ledger.record_usage_many(&usages).await.map(|_| ());
        for waiter in waiters {
            let copy = match &result {
                Ok(()) => Ok(()),
                Err(err) => Err(LedgerError::new(err.kind(), err.message())),
            };
            let _ = waiter.send(copy);
        }
    }
}
