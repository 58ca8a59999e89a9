//! Game rules that are pure arithmetic: the level curve and the running statistics fairness keeps.

use serde::{Deserialize, Serialize};

/// XP needed per level: `level = 1 + number of thresholds reached`.
///
/// `LEVEL_CURVE` is either one step (`1000`: a level every 1000 XP, the default) or a list of
/// cumulative thresholds (`100,300,600,1000`), after which the last gap repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelCurve {
    thresholds: Vec<u64>,
}

impl Default for LevelCurve {
    fn default() -> Self {
        Self {
            thresholds: vec![1000],
        }
    }
}

/// Why a level curve could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("LEVEL_CURVE must be one positive step or strictly increasing positive thresholds")]
pub struct BadCurve;

impl LevelCurve {
    /// Parses `1000` or `100,300,600`.
    pub fn parse(s: &str) -> Result<Self, BadCurve> {
        let thresholds: Vec<u64> = s
            .split(',')
            .map(|t| t.trim().parse::<u64>().map_err(|_| BadCurve))
            .collect::<Result<_, _>>()?;
        let increasing = thresholds.windows(2).all(|w| w[0] < w[1]);
        if thresholds.is_empty() || thresholds[0] == 0 || !increasing {
            return Err(BadCurve);
        }
        Ok(Self { thresholds })
    }

    /// The level reached with `xp`.
    pub fn level(&self, xp: u64) -> u32 {
        let reached = self.thresholds.iter().take_while(|&&t| xp >= t).count() as u64;
        let last = *self.thresholds.last().unwrap_or(&1000);
        let gap = match self.thresholds.len() {
            1 => last,
            n => last - self.thresholds[n - 2],
        };
        let beyond = if xp >= last { (xp - last) / gap } else { 0 };
        (1 + reached + beyond).min(u64::from(u32::MAX)) as u32
    }
}

/// Welford's running mean and variance of one event type's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Welford {
    /// Samples seen.
    pub count: u64,
    /// Running mean.
    pub mean: f64,
    /// Sum of squared differences from the mean.
    pub m2: f64,
}

impl Welford {
    /// Adds one sample.
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let d = x - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (x - self.mean);
    }

    /// Adds the samples `other` summarises (Chan et al.'s parallel update): replicas each store
    /// what their batches saw and the stored statistics become those of all the samples.
    pub fn merge(&mut self, other: &Welford) {
        if other.count == 0 {
            return;
        }
        let count = self.count + other.count;
        let d = other.mean - self.mean;
        let (n_a, n_b, n) = (self.count as f64, other.count as f64, count as f64);
        self.mean += d * n_b / n;
        self.m2 += other.m2 + d * d * n_a * n_b / n;
        self.count = count;
    }

    /// Sample standard deviation (0 with fewer than two samples).
    pub fn stddev(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).sqrt()
        }
    }

    /// How many standard deviations `x` lies above the mean; the deviation is floored at `floor`
    /// so a perfectly constant history still flags a wild value.
    pub fn z(&self, x: f64, floor: f64) -> f64 {
        (x - self.mean) / self.stddev().max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_halves_match_one_pass() {
        let xs: Vec<f64> = (0..100).map(|i| f64::from(i * i % 37) / 3.0).collect();
        let (mut all, mut a, mut b) = (Welford::default(), Welford::default(), Welford::default());
        for (i, x) in xs.iter().enumerate() {
            all.push(*x);
            if i % 3 == 0 {
                a.push(*x)
            } else {
                b.push(*x)
            }
        }
        let mut merged = Welford::default();
        merged.merge(&a);
        merged.merge(&b);
        merged.merge(&Welford::default());
        assert_eq!(merged.count, all.count);
        assert!((merged.mean - all.mean).abs() < 1e-9, "{merged:?} {all:?}");
        assert!((merged.m2 - all.m2).abs() < 1e-6, "{merged:?} {all:?}");
    }

    #[test]
    fn default_curve_is_a_level_per_thousand_xp() {
        let c = LevelCurve::default();
        assert_eq!(c.level(0), 1);
        assert_eq!(c.level(999), 1);
        assert_eq!(c.level(1000), 2);
        assert_eq!(c.level(5500), 6);
    }

    #[test]
    fn threshold_curve_repeats_its_last_gap() {
        let c = LevelCurve::parse("100,300,600").unwrap();
        assert_eq!(c.level(99), 1);
        assert_eq!(c.level(100), 2);
        assert_eq!(c.level(599), 3);
        assert_eq!(c.level(600), 4);
        assert_eq!(c.level(899), 4);
        assert_eq!(c.level(900), 5);
        assert!(LevelCurve::parse("0").is_err());
        assert!(LevelCurve::parse("5,3").is_err());
        assert!(LevelCurve::parse("x").is_err());
    }

    #[test]
    fn welford_matches_direct_computation() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let mut w = Welford::default();
        xs.iter().for_each(|&x| w.push(x));
        assert!((w.mean - 5.0).abs() < 1e-12);
        assert!((w.stddev() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert!(w.z(100.0, 1.0) > 3.5);
    }
}
