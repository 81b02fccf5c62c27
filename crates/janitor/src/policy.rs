//! The retention policy as the rules read it: the config's `[retention]` section plus calendar
//! arithmetic. Its fields are public so tests build policies directly.

use std::time::Duration;

use clipfleet_config::RetentionConfig;
use clipfleet_proto::Timestamp;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The retention periods the rules apply (DESIGN.md §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// A photo still stored this long after its job was submitted is deleted whatever the job's
    /// state; a job still queued then fails `expired`.
    pub input_max_age: Duration,
    /// A video is deleted this long after it was generated.
    pub output_ttl: Duration,
    /// Calendar months after termination at which an account is purged.
    pub account_months_after_termination: u32,
    /// Usage records older than this are deleted.
    pub usage_max_age: Duration,
    /// A photo no job row accounts for is deleted once it is this old (ingest puts the photo,
    /// then inserts the row: a crash between the two leaves one).
    pub orphan_grace: Duration,
    /// Session artifacts are deleted this long after the session's first artifact at the
    /// latest, at once when the session's `ended` marker is there.
    pub session_ttl: Duration,
}

impl Policy {
    /// The policy of a validated configuration.
    pub fn from_config(retention: &RetentionConfig) -> Policy {
        Policy {
            input_max_age: retention.input_max_age,
            output_ttl: retention.output_ttl,
            account_months_after_termination: retention.account_months_after_termination,
            usage_max_age: retention.usage_max_age,
            orphan_grace: retention.orphan_grace,
            session_ttl: retention.session_ttl,
        }
    }

    /// When an account terminated at `terminated_at` is due for purge.
    pub fn account_purge_due(&self, terminated_at: Timestamp) -> Timestamp {
        add_months(terminated_at, self.account_months_after_termination)
    }

    /// How long a tombstone stays: after `input_max_age` no job of the account can still run
    /// (its photo is gone, so a worker that dequeues it fails it).
    pub fn tombstone_hold(&self) -> Duration {
        self.input_max_age
    }

    /// A lower bound of the termination instant of any account due at `now`: a calendar month
    /// is at least 28 days, so the ledger can preselect with a plain comparison.
    pub fn terminated_before_bound(&self, now: Timestamp) -> Timestamp {
        let span = u64::from(self.account_months_after_termination) * 28 * DAY_MS;
        Timestamp::from_unix_ms(now.unix_ms().saturating_sub(span).saturating_add(1))
    }
}

/// `at` plus `months` calendar months (UTC), the day clamped to the target month's length
/// (31 January + 1 month = 28 or 29 February), the time of day kept.
pub fn add_months(at: Timestamp, months: u32) -> Timestamp {
    let ms = at.unix_ms();
    let days = ms / DAY_MS;
    let in_day = ms % DAY_MS;
    let (year, month, day) = civil_from_days(days);
    let total = u64::from(month - 1) + u64::from(months);
    let year = year + total / 12;
    let month = u32::try_from(total % 12).unwrap_or(0) + 1;
    let day = day.min(days_in_month(year, month));
    Timestamp::from_unix_ms(days_from_civil(year, month, day) * DAY_MS + in_day)
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (H. Hinnant's algorithm,
/// for dates from 1970 on).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date (from 1970 on).
fn days_from_civil(year: u64, month: u32, day: u32) -> u64 {
    let year = year - u64::from(month <= 2);
    let era = year / 400;
    let yoe = year - era * 400;
    let month = u64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + u64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date at midnight.
    fn date(year: u64, month: u32, day: u32) -> Timestamp {
        Timestamp::from_unix_ms(days_from_civil(year, month, day) * DAY_MS)
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [0, 59, 365, 11_016, 20_000, 20_454, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn months_are_calendar_months() {
        assert_eq!(add_months(date(2026, 1, 15), 6), date(2026, 7, 15));
        assert_eq!(add_months(date(2026, 8, 31), 6), date(2027, 2, 28));
        assert_eq!(add_months(date(2027, 8, 31), 6), date(2028, 2, 29));
        assert_eq!(add_months(date(2026, 12, 1), 1), date(2027, 1, 1));
        assert_eq!(add_months(date(2026, 5, 5), 0), date(2026, 5, 5));
        let noon = Timestamp::from_unix_ms(date(2026, 1, 31).unix_ms() + 43_200_000);
        assert_eq!(
            add_months(noon, 1).unix_ms(),
            date(2026, 2, 28).unix_ms() + 43_200_000
        );
    }

    #[test]
    fn the_bound_never_misses_a_due_account() {
        let policy = Policy {
            input_max_age: Duration::from_secs(3600),
            output_ttl: Duration::from_secs(86_400),
            account_months_after_termination: 6,
            usage_max_age: Duration::from_secs(90 * 86_400),
            orphan_grace: Duration::from_secs(900),
            session_ttl: Duration::from_secs(86_400),
        };
        for start in [date(2026, 1, 1), date(2026, 8, 31), date(2027, 2, 1)] {
            let due = policy.account_purge_due(start);
            assert!(start < policy.terminated_before_bound(due), "{start:?}");
        }
    }
}
