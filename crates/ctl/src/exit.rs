//! Exit codes scripts can trust, and the error that carries one.

use std::fmt;

/// How `clipctl` exits. Stable: scripts match on these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: the operation failed (see the message).
    Failed,
    /// 2: the command line is wrong (clap's own code for usage errors).
    Usage,
    /// 3: what it names does not exist (job, account, queue).
    NotFound,
    /// 4: gave up waiting (`--timeout`).
    Timeout,
    /// 5: a backend (broker, store, ledger, ingest) could not be reached.
    Unavailable,
    /// 6: refused on purpose (a purge without `--yes`, a backend without the ability).
    Refused,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::NotFound => 3,
            Exit::Timeout => 4,
            Exit::Unavailable => 5,
            Exit::Refused => 6,
        }
    }
}

/// An error with the exit code it ends the process with.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl Failure {
    /// `error`, ending the process with `exit`.
    pub fn new(exit: Exit, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            exit,
            error: error.into(),
        }
    }

    /// A message, ending the process with `exit`.
    pub fn msg(exit: Exit, message: impl fmt::Display) -> Failure {
        Failure::new(exit, anyhow::anyhow!("{message}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        // Classify by the errors of our crates where one is in the chain.
        let exit = error
            .chain()
            .find_map(|cause| {
                if let Some(err) = cause.downcast_ref::<clipfleet_broker::BrokerError>() {
                    use clipfleet_broker::BrokerErrorKind as K;
                    return Some(match err.kind {
                        K::NotFound => Exit::NotFound,
                        K::Unavailable | K::Timeout => Exit::Unavailable,
                        K::Unsupported => Exit::Refused,
                        _ => Exit::Failed,
                    });
                }
                if let Some(err) = cause.downcast_ref::<clipfleet_ledger::LedgerError>() {
                    use clipfleet_ledger::LedgerErrorKind as K;
                    return Some(match err.kind() {
                        K::NotFound => Exit::NotFound,
                        K::Unavailable => Exit::Unavailable,
                        _ => Exit::Failed,
                    });
                }
                if let Some(err) = cause.downcast_ref::<clipfleet_store::StoreError>() {
                    use clipfleet_store::StoreErrorKind as K;
                    return Some(match err.kind() {
                        K::NotFound => Exit::NotFound,
                        K::Unavailable | K::Timeout => Exit::Unavailable,
                        _ => Exit::Failed,
                    });
                }
                None
            })
            .unwrap_or(Exit::Failed);
        Failure { exit, error }
    }
}

/// What every command returns.
pub type CtlResult<T> = Result<T, Failure>;
