//! What each arrival is: one submission of a model picked by weight, or a whole session flow.
//! Decided from the seed and the arrival's index alone, so arrival `i` is the same thing in an
//! open or a closed loop, whichever lane takes it, and a run can be repeated.

use crate::mix::SplitMix64;
use crate::options::WeightedModel;

/// Mixed into the seed for the arrivals' own generators, so they do not repeat the stream that
/// picks the inputs and spaces the arrivals.
const ARRIVAL_SALT: u64 = 0x5EED_A11C_0DE5_u64;

/// A seeded, weighted choice among `n` options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WeightedChoice {
    /// Running sums of the weights: option `i` owns `[cumulative[i-1], cumulative[i])`.
    cumulative: Vec<f64>,
}

impl WeightedChoice {
    /// A choice by `weights` (each finite and at least 0, their sum above 0).
    pub fn new(weights: &[f64]) -> anyhow::Result<WeightedChoice> {
        let mut cumulative = Vec::with_capacity(weights.len());
        let mut total = 0.0;
        for (index, &weight) in weights.iter().enumerate() {
            anyhow::ensure!(
                weight.is_finite() && weight >= 0.0,
                "weight {weight} of option {index} is not a finite number of at least 0"
            );
            total += weight;
            cumulative.push(total);
        }
        anyhow::ensure!(total > 0.0, "the weights add up to nothing");
        Ok(WeightedChoice { cumulative })
    }

    /// The option `unit` (uniform in `[0, 1)`) falls on; never one of weight 0.
    pub fn pick(&self, unit: f64) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let target = unit.clamp(0.0, 1.0) * total;
        self.cumulative
            .iter()
            .position(|&upto| target < upto)
            // `unit` at (or rounding to) 1: the last option that has a weight.
            .unwrap_or_else(|| {
                self.cumulative
                    .iter()
                    .position(|&upto| upto >= total)
                    .unwrap_or(0)
            })
    }
}

/// What one arrival does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// One submission of the run's model at this index (`None`: the fleet's default).
    Job {
        /// Index into the run's models.
        model: Option<usize>,
    },
    /// A session flow.
    Session,
}

/// The arrivals of a run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    seed: u64,
    /// `None` when the run names no model.
    models: Option<WeightedChoice>,
    session_share: f64,
}

impl Plan {
    /// The plan of `models` and `session_share` at `seed`. Refuses weights that leave nothing
    /// to submit outside session flows.
    pub fn new(models: &[WeightedModel], session_share: f64, seed: u64) -> anyhow::Result<Plan> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&session_share),
            "the session share {session_share} is not within 0..=1"
        );
        let weights: Vec<f64> = models.iter().map(|m| m.weight).collect();
        let models = match WeightedChoice::new(&weights) {
            _ if models.is_empty() => None,
            Ok(choice) => Some(choice),
            // Only session flows need no submission weight.
            Err(_) if session_share >= 1.0 => Some(WeightedChoice::new(&vec![1.0; weights.len()])?),
            Err(err) => {
                return Err(err.context("the models' weights leave nothing to submit"));
            }
        };
        Ok(Plan {
            seed,
            models,
            session_share,
        })
    }

    /// Arrival `index`'s own generator: what it picks (a session's photos) is its own too.
    pub fn rng(&self, index: u64) -> SplitMix64 {
        let mut mixer = SplitMix64::new(self.seed ^ ARRIVAL_SALT);
        let key = mixer.next_u64() ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = SplitMix64::new(key);
        // One step decorrelates neighbouring indices.
        rng.next_u64();
        rng
    }

    /// What arrival `index` is.
    pub fn arrival(&self, index: u64) -> Arrival {
        let mut rng = self.rng(index);
        // Draw both whatever the share, so a share does not shift the models of other arrivals.
        let (session, model) = (rng.unit(), rng.unit());
        if session < self.session_share {
            return Arrival::Session;
        }
        Arrival::Job {
            model: self.models.as_ref().map(|choice| choice.pick(model)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ModelChoice;

    fn weighted(weights: &[f64]) -> Vec<WeightedModel> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| WeightedModel {
                model: ModelChoice {
                    name: format!("m{i}"),
                    version: "1".into(),
                },
                weight,
            })
            .collect()
    }

    #[test]
    fn weighted_choice_follows_the_weights() -> anyhow::Result<()> {
        let choice = WeightedChoice::new(&[1.0, 0.0, 3.0])?;
        assert_eq!(choice.pick(0.0), 0);
        assert_eq!(choice.pick(0.2499), 0);
        assert_eq!(choice.pick(0.25), 2);
        assert_eq!(choice.pick(0.999_999), 2);
        assert_eq!(choice.pick(1.0), 2);
        let mut rng = SplitMix64::new(9);
        let mut seen = [0u32; 3];
        for _ in 0..40_000 {
            seen[choice.pick(rng.unit())] += 1;
        }
        assert_eq!(seen[1], 0, "a weight of 0 is never picked");
        assert!((9_400..10_600).contains(&seen[0]), "{seen:?}");
        // A weight of 0 at the end: 1.0 still lands on the last one that has a weight.
        assert_eq!(WeightedChoice::new(&[2.0, 0.0])?.pick(1.0), 0);
        for bad in [
            &[][..],
            &[0.0, 0.0],
            &[1.0, -1.0],
            &[f64::NAN],
            &[f64::INFINITY],
        ] {
            assert!(WeightedChoice::new(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn arrivals_are_a_function_of_seed_and_index() -> anyhow::Result<()> {
        let models = weighted(&[1.0, 2.0]);
        let (a, b) = (Plan::new(&models, 0.25, 7)?, Plan::new(&models, 0.25, 7)?);
        let first: Vec<Arrival> = (0..200).map(|i| a.arrival(i)).collect();
        // Asked in another order (as closed-loop lanes do): the same answers.
        let again: Vec<Arrival> = (0..200).rev().map(|i| b.arrival(i)).collect();
        assert_eq!(first, again.into_iter().rev().collect::<Vec<_>>());
        let other: Vec<Arrival> = (0..200)
            .map(|i| Plan::new(&models, 0.25, 8).map(|p| p.arrival(i)))
            .collect::<anyhow::Result<_>>()?;
        assert_ne!(first, other, "another seed, other arrivals");
        let sessions = first.iter().filter(|a| **a == Arrival::Session).count();
        assert!((30..70).contains(&sessions), "{sessions} sessions of 200");
        let heavy = first
            .iter()
            .filter(|a| **a == Arrival::Job { model: Some(1) })
            .count();
        let light = first
            .iter()
            .filter(|a| **a == Arrival::Job { model: Some(0) })
            .count();
        assert!(heavy > light, "weight 2 against 1: {heavy} vs {light}");
        Ok(())
    }

    #[test]
    fn shares_and_weights_at_their_bounds() -> anyhow::Result<()> {
        let none = Plan::new(&[], 0.0, 1)?;
        assert!((0..50).all(|i| none.arrival(i) == Arrival::Job { model: None }));
        let one = Plan::new(&weighted(&[1.0]), 0.0, 1)?;
        assert!((0..50).all(|i| one.arrival(i) == Arrival::Job { model: Some(0) }));
        let all = Plan::new(&weighted(&[0.0]), 1.0, 1)?;
        assert!((0..50).all(|i| all.arrival(i) == Arrival::Session));
        // Sessions only at weight 0 are fine; anything else needs a weight.
        assert!(Plan::new(&weighted(&[0.0]), 0.5, 1).is_err());
        assert!(Plan::new(&weighted(&[1.0]), 1.5, 1).is_err());
        // A session share moves no other arrival's model.
        let models = weighted(&[1.0, 1.0, 1.0]);
        let (plain, mixed) = (Plan::new(&models, 0.0, 3)?, Plan::new(&models, 0.3, 3)?);
        for i in 0..100 {
            if let Arrival::Job { model } = mixed.arrival(i) {
                assert_eq!(plain.arrival(i), Arrival::Job { model });
            }
        }
        Ok(())
    }
}
