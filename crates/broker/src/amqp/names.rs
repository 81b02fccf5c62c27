//! Exchange and queue names and arguments of the RabbitMQ topology (DESIGN.md §4), under a
//! namespace (`clip` in production):
//!
//! | name | kind | role |
//! |---|---|---|
//! | `N.jobs` | direct exchange | jobs, routing key `<pool>` (free) or `<pool>.paid` |
//! | `N.jobs.<pool>`, `N.jobs.<pool>.paid` | quorum queues | delivery limit, at-least-once dead-lettering to `N.dead`, `reject-publish` overflow |
//! | `N.retry.<ms>` | fanout exchange + quorum queue | message TTL `<ms>`, dead-letters back to `N.jobs` with the original routing key |
//! | `N.dead` | direct exchange | dead letters, routing key `<pool>` / `<pool>.paid` |
//! | `N.dead.<pool>` | quorum queue | a pool's dead letters |
//! | `N.events` | topic exchange | job events, routing key `job.events` |
//! | `N.events.ledger` | quorum queue | bound `job.#`, consumed by ingest's ledger updater |
//! | `N.control` | topic exchange | control messages, routing key `control` |
//! | `N.control.<worker>` | auto-delete classic queue | one per worker, bound `#` |

use std::time::Duration;

use clipfleet_proto::{PoolName, Priority, WorkerId};

use crate::QueueRef;

/// Retry delays RabbitMQ offers, one TTL queue each; a requested delay rounds up to the next.
pub(crate) const RETRY_LADDER: [Duration; 7] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// Routing key of the events a worker publishes (the ledger queue binds `job.#`).
pub(crate) const EVENTS_ROUTING_KEY: &str = "job.events";

/// Routing key of control messages (every worker queue binds `#`).
pub(crate) const CONTROL_ROUTING_KEY: &str = "control";

#[derive(Debug, Clone)]
pub(crate) struct Names {
    ns: String,
}

impl Names {
    pub(crate) fn new(namespace: &str) -> Self {
        Names {
            ns: namespace.to_owned(),
        }
    }

    pub(crate) fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.ns)
    }
    pub(crate) fn dead_exchange(&self) -> String {
        format!("{}.dead", self.ns)
    }
    pub(crate) fn events_exchange(&self) -> String {
        format!("{}.events", self.ns)
    }
    pub(crate) fn control_exchange(&self) -> String {
        format!("{}.control", self.ns)
    }
    pub(crate) fn retry_exchange(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.ns, delay.as_millis())
    }

    /// Routing key of a pool's jobs of one class.
    pub(crate) fn jobs_key(pool: &PoolName, priority: Priority) -> String {
        match priority {
            Priority::Paid => format!("{pool}.paid"),
            _ => pool.to_string(),
        }
    }

    /// The queue behind a routing key of the jobs exchange.
    pub(crate) fn jobs_queue(&self, pool: &PoolName, priority: Priority) -> String {
        format!("{}.jobs.{}", self.ns, Names::jobs_key(pool, priority))
    }
    pub(crate) fn dead_queue(&self, pool: &PoolName) -> String {
        format!("{}.dead.{pool}", self.ns)
    }
    pub(crate) fn events_queue(&self) -> String {
        format!("{}.events.ledger", self.ns)
    }
    pub(crate) fn control_queue(&self, worker: &WorkerId) -> String {
        format!("{}.control.{worker}", self.ns)
    }
    pub(crate) fn retry_queue(&self, delay: Duration) -> String {
        self.retry_exchange(delay)
    }

    /// The physical queues behind a logical one, with the class each delivers.
    pub(crate) fn queues_of(&self, queue: &QueueRef) -> Vec<(String, Priority)> {
        match queue {
            QueueRef::Jobs(pool) => vec![
                (self.jobs_queue(pool, Priority::Paid), Priority::Paid),
                (self.jobs_queue(pool, Priority::Free), Priority::Free),
            ],
            QueueRef::Dead(pool) => vec![(self.dead_queue(pool), Priority::Free)],
            QueueRef::Events => vec![(self.events_queue(), Priority::Free)],
            QueueRef::Control(worker) => vec![(self.control_queue(worker), Priority::Free)],
        }
    }
}

/// The smallest ladder step at least `delay` (the longest step for anything longer).
pub(crate) fn retry_step(delay: Duration) -> Duration {
    RETRY_LADDER
        .iter()
        .copied()
        .find(|step| *step >= delay)
        .unwrap_or(RETRY_LADDER[RETRY_LADDER.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let names = Names::new("clip");
        let pool = PoolName::new("default").expect("pool");
        assert_eq!(names.jobs_queue(&pool, Priority::Free), "clip.jobs.default");
        assert_eq!(
            names.jobs_queue(&pool, Priority::Paid),
            "clip.jobs.default.paid"
        );
        assert_eq!(names.dead_queue(&pool), "clip.dead.default");
        assert_eq!(
            names.retry_queue(Duration::from_secs(30)),
            "clip.retry.30000"
        );
        assert_eq!(names.events_queue(), "clip.events.ledger");
    }

    #[test]
    fn retry_delays_round_up_the_ladder() {
        assert_eq!(retry_step(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            retry_step(Duration::from_millis(1001)),
            Duration::from_secs(3)
        );
        assert_eq!(retry_step(Duration::from_secs(3)), Duration::from_secs(3));
        assert_eq!(
            retry_step(Duration::from_secs(86_400)),
            Duration::from_secs(3600)
        );
    }
}
