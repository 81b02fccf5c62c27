//! Paid jobs overtake free ones without starving them: the one selection rule every backend
//! applies when both classes have work ready.

use clipfleet_proto::Priority;

/// After this many paid deliveries in a row while free work waited, one free job goes next.
/// Paid work gets at least 4/5 of a saturated pool; free work is never starved.
pub const PAID_STREAK: u32 = 4;

/// Chooses which class to deliver next. One per consumer of a jobs queue.
#[derive(Debug, Default, Clone)]
pub struct PrioritySelector {
    /// Paid deliveries since the last free one was chosen while free work waited.
    paid_streak: u32,
}

impl PrioritySelector {
    /// Picks the class of the next delivery, given which classes have one ready.
    pub fn pick(&mut self, paid_ready: bool, free_ready: bool) -> Option<Priority> {
        match (paid_ready, free_ready) {
            (false, false) => None,
            (true, false) => {
                // No free work waits: nothing is being starved, so the streak does not grow.
                self.paid_streak = 0;
                Some(Priority::Paid)
            }
            (false, true) => {
                self.paid_streak = 0;
                Some(Priority::Free)
            }
            (true, true) if self.paid_streak >= PAID_STREAK => {
                self.paid_streak = 0;
                Some(Priority::Free)
            }
            (true, true) => {
                self.paid_streak += 1;
                Some(Priority::Paid)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_first_but_free_is_never_starved() {
        let mut selector = PrioritySelector::default();
        let picks: Vec<_> = (0..10)
            .map(|_| selector.pick(true, true).expect("work"))
            .collect();
        let free = picks.iter().filter(|p| **p == Priority::Free).count();
        assert_eq!(free, 2, "{picks:?}");
        assert_eq!(picks[0], Priority::Paid);
        assert_eq!(picks[4], Priority::Free);
    }

    #[test]
    fn a_lone_class_is_served_and_nothing_is_nothing() {
        let mut selector = PrioritySelector::default();
        assert_eq!(selector.pick(false, false), None);
        assert_eq!(selector.pick(false, true), Some(Priority::Free));
        assert!((0..20).all(|_| selector.pick(true, false) == Some(Priority::Paid)));
        // The paid-only run did not count against free work that was not there.
        assert_eq!(selector.pick(true, true), Some(Priority::Paid));
    }
}
