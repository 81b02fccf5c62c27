//! Admission control: once a pool's backlog (jobs waiting, ready or delayed) reaches the pool's
//! `max_backlog`, submissions are refused with `429 overloaded` and a `Retry-After` before
//! anything is stored. The broker is asked at most once per refresh interval per pool; between
//! readings, the jobs this process admitted are added to the last reading, so a burst cannot
//! overshoot the bound by more than what other ingest replicas admit meanwhile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clipfleet_broker::{Broker, QueueRef};
use clipfleet_config::PoolConfig;
use clipfleet_proto::{ErrorCode, PoolName};

use crate::error::ApiError;

/// Seconds an overloaded client is asked to wait.
const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    backlog: u64,
    admitted_since: u64,
}

#[derive(Debug)]
pub(crate) struct Admission {
    refresh: Duration,
    readings: Mutex<HashMap<PoolName, Reading>>,
}

impl Admission {
    pub(crate) fn new(refresh: Duration) -> Self {
        Admission {
            refresh,
            readings: Mutex::new(HashMap::new()),
        }
    }

    /// Admits one job into `pool`, or refuses it with `overloaded`.
    pub(crate) async fn admit(
        &self,
        broker: &dyn Broker,
        pool: &PoolConfig,
    ) -> Result<(), ApiError> {
        let fresh = self
            .reading(&pool.name)
            .filter(|r| r.at.elapsed() < self.refresh);
        if fresh.is_none() {
            let depth = broker
                .depth(&QueueRef::Jobs(pool.name.clone()))
                .await
                .map_err(ApiError::from)?;
            let backlog = depth.ready + depth.delayed.unwrap_or(0);
            self.lock().insert(
                pool.name.clone(),
                Reading {
                    at: Instant::now(),
                    backlog,
                    admitted_since: 0,
                },
            );
        }
        let mut readings = self.lock();
        let reading = readings
            .get_mut(&pool.name)
            .ok_or_else(|| ApiError::internal("admission", "a pool's reading vanished"))?;
        if reading.backlog + reading.admitted_since >= pool.max_backlog {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                format!(
                    "pool {} has {} jobs waiting (bound {}); retry later",
                    pool.name,
                    reading.backlog + reading.admitted_since,
                    pool.max_backlog
                ),
            )
            .retry_after(RETRY_AFTER_SECS));
        }
        reading.admitted_since += 1;
        Ok(())
    }

    fn reading(&self, pool: &PoolName) -> Option<Reading> {
        self.lock().get(pool).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolName, Reading>> {
        // A poisoned map only holds readings: use it as it is.
        self.readings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
