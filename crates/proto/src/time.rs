//! Wall-clock instants on the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An instant as whole milliseconds since the Unix epoch (UTC), a MessagePack unsigned integer on
/// the wire. Plain integers keep every language's reader trivial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The instant `ms` milliseconds after the Unix epoch.
    pub const fn from_unix_ms(ms: u64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_ms(self) -> u64 {
        self.0
    }

    /// Truncates a `SystemTime` to the millisecond; instants before 1970 clamp to the epoch.
    pub fn from_system_time(at: SystemTime) -> Self {
        let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The same instant as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// This instant plus `by`, saturating at the end of representable time.
    pub fn saturating_add(self, by: Duration) -> Self {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// How long after `earlier` this instant is (zero if it is not after it).
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_round_trip_is_millisecond_exact() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        assert_eq!(Timestamp::from_system_time(at).to_system_time(), at);
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_ms(u64::MAX - 1);
        assert_eq!(t.saturating_add(Duration::from_secs(5)).unix_ms(), u64::MAX);
        assert_eq!(
            Timestamp::from_unix_ms(5).saturating_since(Timestamp::from_unix_ms(9)),
            Duration::ZERO
        );
    }
}
