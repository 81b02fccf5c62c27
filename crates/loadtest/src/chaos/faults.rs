//! The faults of a campaign: a schedule made up front from the run's length and seed (printed
//! before the run starts, so a reader knows what is coming), and the injector that carries it out
//! against the [`ProcessFleet`], recording when each fault really began and ended.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use super::fleet::{ProcessFleet, Role};
use crate::mix::SplitMix64;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// SIGKILL a random worker; the supervisor starts a replacement at once (an autoscaler).
    KillWorker,
    /// SIGTERM a random worker while it holds jobs (it drains); its replacement starts at once.
    DrainWorker,
    /// SIGKILL the session pool's worker once it holds a job (a training, or a job through an
    /// adapter), waiting up to 30 s for one; a replacement starts at once.
    KillSessionWorker,
    /// SIGKILL ingest; the supervisor starts it again on the same port.
    KillIngest,
    /// Stop RabbitMQ, leave it down this long, start it again.
    RestartBroker {
        /// Seconds down.
        down_s: f64,
    },
    /// Hold every byte to and from the object store this long.
    StoreOutage {
        /// Seconds unreachable.
        for_s: f64,
    },
    /// Hold every byte to and from PostgreSQL this long.
    LedgerOutage {
        /// Seconds unreachable.
        for_s: f64,
    },
}

impl FaultKind {
    /// Stable short name (`kill_worker`, `restart_broker`, …).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillWorker => "kill_worker",
            FaultKind::DrainWorker => "drain_worker",
            FaultKind::KillSessionWorker => "kill_session_worker",
            FaultKind::KillIngest => "kill_ingest",
            FaultKind::RestartBroker { .. } => "restart_broker",
            FaultKind::StoreOutage { .. } => "store_outage",
            FaultKind::LedgerOutage { .. } => "ledger_outage",
        }
    }

    fn lasts(self) -> Duration {
        match self {
            FaultKind::RestartBroker { down_s: s }
            | FaultKind::StoreOutage { for_s: s }
            | FaultKind::LedgerOutage { for_s: s } => Duration::from_secs_f64(s),
            _ => Duration::ZERO,
        }
    }
}

/// A fault due at an offset from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fault {
    /// Seconds from the start of the load.
    pub at_s: f64,
    /// What.
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// Which faults a campaign injects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSet {
    /// Kill a worker this often (none: no kills).
    pub kill_worker_every: Option<Duration>,
    /// Kill ingest once.
    pub kill_ingest: bool,
    /// Restart RabbitMQ once.
    pub restart_broker: bool,
    /// Make the store unreachable once.
    pub store_outage: bool,
    /// Make PostgreSQL unreachable once.
    pub ledger_outage: bool,
    /// Drain one worker once.
    pub drain_worker: bool,
    /// Kill the session pool's worker once, while it holds a job (only with session flows).
    pub kill_session_worker: bool,
    /// How long each outage lasts.
    pub outage: Duration,
}

impl FaultSet {
    /// Everything, a worker killed every `every`, outages of 5 s.
    pub fn all(every: Duration) -> FaultSet {
        FaultSet {
            kill_worker_every: Some(every),
            kill_ingest: true,
            restart_broker: true,
            store_outage: true,
            ledger_outage: true,
            drain_worker: true,
            kill_session_worker: false,
            outage: Duration::from_secs(5),
        }
    }

    /// Nothing: the baseline run.
    pub fn none() -> FaultSet {
        FaultSet {
            kill_worker_every: None,
            kill_ingest: false,
            restart_broker: false,
            store_outage: false,
            ledger_outage: false,
            drain_worker: false,
            kill_session_worker: false,
            outage: Duration::from_secs(5),
        }
    }
}

/// The schedule over a load of `length`: worker kills every `kill_worker_every` from then on
/// (jittered ±25 % by the seed), the one-off faults spread over the run (ingest at 20 %, the
/// broker at 35 %, the session worker at 45 %, the store at 55 %, the ledger at 70 %, the drain
/// at 85 %), so each one's
/// effect shows apart on the timeline while kills go on around them.
pub fn schedule(set: &FaultSet, length: Duration, seed: u64) -> Vec<Fault> {
    let mut rng = SplitMix64::new(seed ^ 0xC4A0_5EED);
    let total = length.as_secs_f64();
    let mut faults = Vec::new();
    if let Some(every) = set.kill_worker_every {
        let every = every.as_secs_f64().max(0.5);
        let mut at = every;
        while at < total {
            let jitter = (rng.unit() - 0.5) * 0.5 * every;
            faults.push(Fault {
                at_s: (at + jitter).max(0.5),
                kind: FaultKind::KillWorker,
            });
            at += every;
        }
    }
    let outage = set.outage.as_secs_f64();
    let once = [
        (set.kill_ingest, 0.20, FaultKind::KillIngest),
        (
            set.restart_broker,
            0.35,
            // 5–10 s down: 5–8 s asleep, plus the node's own start (1–2 s here).
            FaultKind::RestartBroker {
                down_s: (5.0 + rng.unit() * 3.0).round(),
            },
        ),
        (set.kill_session_worker, 0.45, FaultKind::KillSessionWorker),
        (
            set.store_outage,
            0.55,
            FaultKind::StoreOutage { for_s: outage },
        ),
        (
            set.ledger_outage,
            0.70,
            FaultKind::LedgerOutage { for_s: outage },
        ),
        (set.drain_worker, 0.85, FaultKind::DrainWorker),
    ];
    for (wanted, share, kind) in once {
        if wanted {
            faults.push(Fault {
                at_s: total * share,
                kind,
            });
        }
    }
    faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    faults
}

/// A fault as it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultRecord {
    /// Stable name.
    pub fault: &'static str,
    /// When it began, seconds from the start of the load.
    pub at_s: f64,
    /// When it ended (for outages and restarts), seconds from the start of the load.
    pub until_s: Option<f64>,
    /// What was done to what (`worker-3`), or why it could not be.
    pub detail: String,
    /// Whether it was carried out.
    pub done: bool,
}

/// Carries out `faults` against `fleet`, offsets counted from `start`; returns what happened,
/// in order of starting.
pub async fn inject(
    fleet: Arc<ProcessFleet>,
    faults: Vec<Fault>,
    start: Instant,
    seed: u64,
) -> Vec<FaultRecord> {
    let mut tasks = JoinSet::new();
    let mut rng = SplitMix64::new(seed ^ 0x00FA_7A11);
    for fault in faults {
        let pick = rng.next_u64();
        let fleet = fleet.clone();
        tasks.spawn(async move {
            tokio::time::sleep_until(start + Duration::from_secs_f64(fault.at_s)).await;
            let at_s = start.elapsed().as_secs_f64();
            let (detail, done) = carry_out(&fleet, fault.kind, pick).await;
            let until_s =
                (fault.kind.lasts() > Duration::ZERO).then(|| start.elapsed().as_secs_f64());
            if done {
                info!(fault = fault.kind.name(), at_s, %detail, "fault injected");
            } else {
                warn!(fault = fault.kind.name(), at_s, %detail, "fault not injected");
            }
            FaultRecord {
                fault: fault.kind.name(),
                at_s,
                until_s,
                detail,
                done,
            }
        });
    }
    let mut records = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(record) => records.push(record),
            Err(err) => warn!(error = %err, "a fault task failed"),
        }
    }
    records.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    records
}

async fn carry_out(fleet: &Arc<ProcessFleet>, kind: FaultKind, pick: u64) -> (String, bool) {
    match kind {
        FaultKind::KillWorker => match fleet.kill(Role::Worker, pick) {
            Some(name) => (format!("SIGKILL {name}; replacement started"), true),
            None => ("no serving worker to kill".into(), false),
        },
        FaultKind::KillSessionWorker => {
            match fleet.kill_session_worker(Duration::from_secs(30)).await {
                Some((name, busy, after)) => (
                    format!(
                        "SIGKILL {name} {} {:.1} s later; replacement started",
                        if busy { "holding a job" } else { "idle" },
                        after.as_secs_f64()
                    ),
                    true,
                ),
                None => ("no session worker to kill".into(), false),
            }
        }
        FaultKind::KillIngest => match fleet.kill(Role::Ingest, pick) {
            Some(name) => (format!("SIGKILL {name}; restarted on its port"), true),
            None => ("ingest was not running".into(), false),
        },
        FaultKind::DrainWorker => match fleet.drain_worker(pick) {
            Some((name, replacement)) => (
                format!("SIGTERM {name} (drains what it holds); {replacement} started"),
                true,
            ),
            None => ("no serving worker to drain".into(), false),
        },
        FaultKind::RestartBroker { down_s } => {
            if let Err(err) = fleet.stop_broker().await {
                return (format!("could not stop RabbitMQ: {err:#}"), false);
            }
            let stopped = Instant::now();
            tokio::time::sleep_until(stopped + Duration::from_secs_f64(down_s)).await;
            match fleet.start_broker().await {
                Ok(()) => (
                    format!(
                        "RabbitMQ stopped, down {:.1} s, started",
                        stopped.elapsed().as_secs_f64()
                    ),
                    true,
                ),
                Err(err) => (format!("could not start RabbitMQ again: {err:#}"), false),
            }
        }
        FaultKind::StoreOutage { for_s } => {
            fleet.store_reachable(false);
            tokio::time::sleep(Duration::from_secs_f64(for_s)).await;
            fleet.store_reachable(true);
            (format!("object store unreachable for {for_s:.1} s"), true)
        }
        FaultKind::LedgerOutage { for_s } => {
            fleet.ledger_reachable(false);
            tokio::time::sleep(Duration::from_secs_f64(for_s)).await;
            fleet.ledger_reachable(true);
            (format!("PostgreSQL unreachable for {for_s:.1} s"), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_has_every_fault_once_and_kills_throughout() {
        let faults = schedule(
            &FaultSet::all(Duration::from_secs(3)),
            Duration::from_secs(60),
            7,
        );
        let count = |name: &str| faults.iter().filter(|f| f.kind.name() == name).count();
        assert_eq!(count("kill_worker"), 19, "every 3 s over 60 s: {faults:?}");
        for once in [
            "kill_ingest",
            "restart_broker",
            "store_outage",
            "ledger_outage",
            "drain_worker",
        ] {
            assert_eq!(count(once), 1, "{once}");
        }
        assert!(
            faults.windows(2).all(|w| w[0].at_s <= w[1].at_s),
            "in order"
        );
        let down = faults.iter().find_map(|f| match f.kind {
            FaultKind::RestartBroker { down_s } => Some(down_s),
            _ => None,
        });
        assert!(down.is_some_and(|s| (5.0..=8.0).contains(&s)), "{down:?}");
        assert_eq!(
            schedule(
                &FaultSet::all(Duration::from_secs(3)),
                Duration::from_secs(60),
                7
            ),
            faults
        );
        assert!(schedule(&FaultSet::none(), Duration::from_secs(60), 7).is_empty());
        let with_sessions = FaultSet {
            kill_session_worker: true,
            ..FaultSet::none()
        };
        let faults = schedule(&with_sessions, Duration::from_secs(60), 7);
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].kind.name(), "kill_session_worker");
        assert!((faults[0].at_s - 27.0).abs() < 1e-9, "{faults:?}");
    }
}
