//! The anomaly rule: per event type, running statistics of the logarithm of the value an event
//! carries (`ln(1 + value)`); after a warm-up, a value whose logarithm is more than `anomaly_z`
//! standard deviations above the mean is flagged.
//!
//! On the log scale a long-tailed honest reward (log-normal, common in games) is judged by how
//! many times larger than typical it is, not by its distance from the mean in points: ADR 0018.
//! Pure logic: the consumer feeds it batches and stores what it decides.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use liveops_core::stores::Flag;
use liveops_core::{Envelope, EventType, Welford};
use uuid::Uuid;

/// Judges events against the running statistics it holds.
#[derive(Clone, Debug)]
pub(crate) struct Judge {
    anomaly_z: f64,
    warmup: u64,
    stats: BTreeMap<EventType, Welford>,
    /// When `stats` were last read from the store (other replicas add to them there).
    loaded: Instant,
}

/// What a batch was judged to be, before it is stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Ruling {
    /// Per input event, in order: quarantined?
    pub(crate) flagged: Vec<bool>,
    /// Decisions taken now (events judged before keep their earlier verdict and are not listed).
    pub(crate) verdicts: Vec<(Uuid, bool)>,
    /// Flags raised now, in input order.
    pub(crate) flags: Vec<Flag>,
    /// The statistics of the samples this batch added, per type (merged into the stored ones).
    pub(crate) stats: Vec<(EventType, Welford)>,
}

/// The scale values are judged on: `ln(1 + value)`, defined for every value an event carries (0
/// and up).
fn scale(value: f64) -> f64 {
    value.max(0.0).ln_1p()
}

/// The smallest spread judged against, on the log scale: a history of equal values still flags a
/// value about 20 % larger at `anomaly_z` 3.5 (ln 1.19 = 3.5 x 0.05), not every value above it.
const MIN_SPREAD: f64 = 0.05;

impl Judge {
    /// A judge starting from stored statistics.
    pub(crate) fn new(anomaly_z: f64, warmup: u64, stats: Vec<(EventType, Welford)>) -> Self {
        Self {
            anomaly_z,
            warmup,
            stats: stats.into_iter().collect(),
            loaded: Instant::now(),
        }
    }

    /// Replaces the statistics (after reloading them from the repository).
    pub(crate) fn reset(&mut self, stats: Vec<(EventType, Welford)>) {
        self.stats = stats.into_iter().collect();
        self.loaded = Instant::now();
    }

    /// Whether the statistics were read from the store longer than `every` ago.
    pub(crate) fn older_than(&self, every: Duration) -> bool {
        self.loaded.elapsed() > every
    }

    /// The statistics of one type.
    #[cfg(test)]
    pub(crate) fn stats(&self, kind: EventType) -> Welford {
        self.stats.get(&kind).copied().unwrap_or_default()
    }

    /// Judges `events` in order without changing the judge; `earlier` holds verdicts already
    /// stored for redelivered events, which are reused as they are. Call [`Judge::adopt`] once
    /// the ruling is stored.
    pub(crate) fn rule(
        &self,
        events: &[&Envelope],
        earlier: &HashMap<Uuid, bool>,
        now_ms: i64,
    ) -> Ruling {
        let mut stats = self.stats.clone();
        let mut added: BTreeMap<EventType, Welford> = BTreeMap::new();
        let mut seen: HashMap<Uuid, bool> = HashMap::new();
        let mut ruling = Ruling::default();
        for env in events {
            let id = env.event_id;
            if let Some(&flagged) = earlier.get(&id).or_else(|| seen.get(&id)) {
                ruling.flagged.push(flagged);
                continue;
            }
            let kind = env.event.kind();
            let mut flagged = false;
            if let Some(value) = env.event.anomaly_value() {
                let x = scale(value);
                let s = stats.entry(kind).or_default();
                let z = s.z(x, MIN_SPREAD);
                // Once warmed up, only values within `anomaly_z` of the history are learned:
                // one far above is flagged; one far below (0 points) is forwarded, since
                // learned such values widen the spread until cheats pass (a thousand kills of
                // 0 let one of ten times the median through).
                let judged = s.count >= self.warmup;
                if judged && z > self.anomaly_z {
                    flagged = true;
                    ruling.flags.push(Flag {
                        event_id: id,
                        player_id: env.event.player_id.as_str().to_owned(),
                        event_type: kind,
                        value,
                        z_score: z,
                        at_ms: now_ms,
                    });
                } else if !judged || z >= -self.anomaly_z {
                    s.push(x);
                    added.entry(kind).or_default().push(x);
                }
            }
            seen.insert(id, flagged);
            ruling.verdicts.push((id, flagged));
            ruling.flagged.push(flagged);
        }
        ruling.stats = added.into_iter().collect();
        ruling
    }

    /// Adds the samples of a stored ruling to the statistics.
    pub(crate) fn adopt(&mut self, ruling: &Ruling) {
        for (kind, added) in &ruling.stats {
            self.stats.entry(*kind).or_default().merge(added);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use liveops_testkit::received::{drop, envelope, kill};

    use super::*;

    fn boss(points: u32) -> Envelope {
        envelope("player_1", kill(points), 0)
    }

    fn drop_claimed() -> Envelope {
        envelope("player_1", drop("d"), 0)
    }

    fn warmed(judge: &mut Judge, n: u32) {
        let evs: Vec<Envelope> = (0..n).map(|i| boss(100 + i % 10)).collect();
        let refs: Vec<&Envelope> = evs.iter().collect();
        let r = judge.rule(&refs, &HashMap::new(), 1);
        assert!(r.flagged.iter().all(|f| !f));
        judge.adopt(&r);
    }

    #[test]
    fn nothing_is_flagged_during_warm_up() {
        let mut judge = Judge::new(3.5, 50, vec![]);
        warmed(&mut judge, 49);
        let wild = boss(1_000_000);
        let r = judge.rule(&[&wild], &HashMap::new(), 1);
        assert_eq!(r.flagged, vec![false]);
        // The batch's own sample, to be added to the 49 stored.
        assert_eq!(r.stats[0].1.count, 1);
        judge.adopt(&r);
        assert_eq!(judge.stats(EventType::BossKill).count, 50);
    }

    /// Values far below the history are forwarded but not learned: a flood of them cannot widen
    /// the spread so that a cheat passes.
    #[test]
    fn values_far_below_the_history_are_not_learned() {
        let mut judge = Judge::new(3.5, 50, vec![]);
        warmed(&mut judge, 200);
        let before = judge.stats(EventType::BossKill);
        let zeros: Vec<Envelope> = (0..1_000).map(|_| boss(0)).collect();
        let refs: Vec<&Envelope> = zeros.iter().collect();
        let r = judge.rule(&refs, &HashMap::new(), 1);
        assert!(r.flagged.iter().all(|f| !f), "forwarded");
        assert!(r.flags.is_empty());
        assert!(r.stats.is_empty(), "{:?}", r.stats);
        judge.adopt(&r);
        assert_eq!(judge.stats(EventType::BossKill), before);
        let cheat = boss(1_000);
        let r = judge.rule(&[&cheat], &HashMap::new(), 2);
        assert_eq!(r.flagged, vec![true], "ten times the usual still flagged");
    }

    #[test]
    fn an_outlier_after_warm_up_is_flagged_and_not_learned() {
        let mut judge = Judge::new(3.5, 50, vec![]);
        warmed(&mut judge, 60);
        let before = judge.stats(EventType::BossKill);
        let (normal, wild) = (boss(105), boss(50_000));
        let r = judge.rule(&[&normal, &wild], &HashMap::new(), 7);
        assert_eq!(r.flagged, vec![false, true]);
        assert_eq!(
            r.verdicts,
            vec![(normal.event_id, false), (wild.event_id, true)]
        );
        assert_eq!(r.flags.len(), 1);
        assert_eq!(r.flags[0].event_id, wild.event_id);
        assert_eq!(r.flags[0].at_ms, 7);
        assert!(r.flags[0].z_score > 3.5);
        assert_eq!(
            r.stats,
            vec![(EventType::BossKill, {
                let mut s = Welford::default();
                s.push(scale(105.0));
                s
            })]
        );
        // Not adopted yet: the judge is unchanged until the ruling is stored.
        assert_eq!(judge.stats(EventType::BossKill), before);
        judge.adopt(&r);
        let mut learned = before;
        learned.push(scale(105.0));
        let after = judge.stats(EventType::BossKill);
        assert_eq!(after.count, 61);
        assert!((after.mean - learned.mean).abs() < 1e-12 && (after.m2 - learned.m2).abs() < 1e-9);
    }

    #[test]
    fn earlier_verdicts_are_reused_not_rejudged() {
        let mut judge = Judge::new(3.5, 50, vec![]);
        warmed(&mut judge, 60);
        let (a, b) = (boss(105), boss(50_000));
        let earlier = HashMap::from([(a.event_id, true), (b.event_id, false)]);
        let r = judge.rule(&[&a, &b, &a], &earlier, 1);
        assert_eq!(r.flagged, vec![true, false, true]);
        assert!(r.verdicts.is_empty() && r.flags.is_empty() && r.stats.is_empty());
    }

    #[test]
    fn a_repeat_within_a_batch_counts_once() {
        let judge = Judge::new(3.5, 50, vec![]);
        let a = boss(10);
        let r = judge.rule(&[&a, &a], &HashMap::new(), 1);
        assert_eq!(r.flagged, vec![false, false]);
        assert_eq!(r.verdicts.len(), 1);
        assert_eq!(r.stats[0].1.count, 1);
    }

    /// `n` values of a log-normal with median `e^mu` and log-scale spread `sigma`, from a fixed
    /// seed (Box-Muller over a 64-bit LCG).
    fn log_normal(n: usize, mu: f64, sigma: f64) -> Vec<u32> {
        let mut state: u64 = 0x853c_49e6_748f_ea9b;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                (mu + sigma * z).exp().min(1e9) as u32
            })
            .collect()
    }

    fn flags_among(judge: &mut Judge, points: &[u32]) -> usize {
        let evs: Vec<Envelope> = points.iter().map(|&p| boss(p)).collect();
        let refs: Vec<&Envelope> = evs.iter().collect();
        let r = judge.rule(&refs, &HashMap::new(), 1);
        judge.adopt(&r);
        r.flags.len()
    }

    #[test]
    fn a_long_tailed_honest_reward_is_not_flagged_but_a_cheat_is() {
        let honest = log_normal(20_000, 7.0, 0.5);
        let mut judge = Judge::new(3.5, 100, vec![]);
        let flagged = flags_among(&mut judge, &honest);
        // On the log scale a log-normal is a normal: P(z > 3.5) = 2.3e-4, about 5 of 20 000.
        assert!(flagged <= 20, "{flagged} of 20 000 honest values flagged");
        // Judged on the points themselves, the same values put 1-2 % above 3.5 sigma: the
        // reason for the log scale (ADR 0018).
        let mut linear = Welford::default();
        let mut linear_flags = 0;
        for &p in &honest {
            let x = f64::from(p);
            if linear.count >= 100 && linear.z(x, 1.0) > 3.5 {
                linear_flags += 1;
            } else {
                linear.push(x);
            }
        }
        assert!(linear_flags > 100, "{linear_flags}");
        // A maximal score, or ten times the median, is still far out.
        let wild = boss(1_000_000);
        let tenfold = boss(10 * 1097);
        let r = judge.rule(&[&wild, &tenfold], &HashMap::new(), 1);
        assert_eq!(r.flagged, vec![true, true]);
        assert!(r.flags[0].z_score > 10.0, "{}", r.flags[0].z_score);
        assert_eq!(r.flags[0].value, 1_000_000.0);
    }

    #[test]
    fn a_constant_history_flags_a_fifth_more_not_a_tenth() {
        let mut judge = Judge::new(3.5, 50, vec![]);
        assert_eq!(flags_among(&mut judge, &[50; 60]), 0);
        let (tenth, fifth) = (boss(55), boss(62));
        let r = judge.rule(&[&tenth, &fifth], &HashMap::new(), 1);
        assert_eq!(r.flagged, vec![false, true]);
    }

    #[test]
    fn a_zero_value_is_judged_not_refused() {
        let mut judge = Judge::new(3.5, 0, vec![]);
        assert_eq!(flags_among(&mut judge, &[0, 0, 0]), 0);
        let s = judge.stats(EventType::BossKill);
        assert_eq!((s.count, s.mean), (3, 0.0));
        // After a history of zeros, any reward is many times the typical one.
        assert_eq!(flags_among(&mut judge, &[5]), 1);
    }

    #[test]
    fn events_without_a_value_pass_untouched() {
        let judge = Judge::new(3.5, 0, vec![]);
        let d = drop_claimed();
        let r = judge.rule(&[&d], &HashMap::new(), 1);
        assert_eq!(r.flagged, vec![false]);
        assert_eq!(r.verdicts, vec![(d.event_id, false)]);
        assert!(r.stats.is_empty());
    }
}
