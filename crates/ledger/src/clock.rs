//! Where the ledger's instants come from. Injected, so retention and expiry are tested without
//! waiting for them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use clipfleet_proto::Timestamp;

/// A source of wall-clock instants.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}

/// A clock that moves only when told to: for tests, and for replaying at a fixed instant.
#[derive(Debug, Default)]
pub struct ManualClock {
    /// Unix milliseconds; atomic so a shared clock can be advanced while the ledger reads it.
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> Self {
        ManualClock {
            now_ms: AtomicU64::new(at.unix_ms()),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(ms))
            });
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.now_ms.store(at.unix_ms(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.now_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_unix_ms(1_000));
        assert_eq!(clock.now(), Timestamp::from_unix_ms(1_000));
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Timestamp::from_unix_ms(3_000));
        clock.set(Timestamp::from_unix_ms(5));
        assert_eq!(clock.now(), Timestamp::from_unix_ms(5));
    }
}
