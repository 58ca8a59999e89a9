//! What a retention purge is told of the round it runs in, so that the processes sharing a
//! database walk each table about once a period between them rather than once a process.

use std::time::Duration;

/// A retention purge's round: when it runs and how often its task runs it. A purge walks its
/// table unless a walk of it that ran to its end (in any process on the database) belonged to a
/// round less than `every` before this one; it then skips the walk and answers 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeRound {
    /// When the round runs (unix ms): the time its cutoffs were taken from.
    pub at_ms: i64,
    /// The time between the task's rounds; zero: walk at every call.
    pub every: Duration,
}

impl PurgeRound {
    /// A round at `at_ms` that walks whenever the walks before it were (a one-off purge, a test).
    pub fn walking(at_ms: i64) -> Self {
        Self {
            at_ms,
            every: Duration::ZERO,
        }
    }

    /// Whether a walk that ran to its end in the round at `last_ms` spares this round its walk:
    /// it came less than `every` before this one, less a hundredth of `every` (a timer's ticks
    /// come a little late, wall clocks drift), so a lone process purging every `every` still
    /// walks at each of its rounds. A round later than this one (another process's clock ahead)
    /// never spares it: a clock set wrong does not stop the purges of the others.
    pub fn walked_recently(&self, last_ms: i64) -> bool {
        let spared = self.every.saturating_sub(self.every / 100);
        let spared = i64::try_from(spared.as_millis()).unwrap_or(i64::MAX);
        last_ms <= self.at_ms && self.at_ms.saturating_sub(last_ms) < spared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_walk_within_the_period_spares_the_round_and_one_before_it_does_not() {
        let round = PurgeRound {
            at_ms: 10 * HOUR,
            every: Duration::from_secs(3600),
        };
        assert!(round.walked_recently(10 * HOUR));
        assert!(round.walked_recently(9 * HOUR + HOUR / 2));
        // The lone process's own last round, its tick 30 s early on the wall clock.
        assert!(!round.walked_recently(9 * HOUR + 30_000));
        assert!(!round.walked_recently(9 * HOUR));
        assert!(!round.walked_recently(0));
        // Recorded ahead of this round's clock: not taken as recent.
        assert!(!round.walked_recently(10 * HOUR + 1));
    }

    #[test]
    fn a_walking_round_is_never_spared() {
        let round = PurgeRound::walking(5);
        assert!(!round.walked_recently(5));
        assert!(!round.walked_recently(4));
        assert!(!round.walked_recently(i64::MIN));
    }
}
