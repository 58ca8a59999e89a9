//! What a retention purge is told of the round it runs in, so that the processes sharing a
//! database walk each table about once a period between them rather than once a process.

use std::time::Duration;

/// A retention purge's round: when it runs and how often its task runs it. A purge walks its
/// table unless the last walk of it that ran to its end (in any process on the database) spares
/// this round ([`PurgeRound::walked_recently`]); it then skips the walk and answers 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeRound {
    /// When the round runs (unix ms): the time its cutoffs were taken from.
    pub at_ms: i64,
    /// The time between the task's rounds; zero: walk at every call.
    pub every: Duration,
}

/// A walk of a purge's table that ran to its end, as recorded: when its round ran and when it
/// ended (unix ms, both by the walking process's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeWalk {
    /// When the walk's round ran ([`PurgeRound::at_ms`]).
    pub round_ms: i64,
    /// When the walk ended.
    pub finished_ms: i64,
}

impl PurgeRound {
    /// A round at `at_ms` that walks whenever the walks before it were (a one-off purge, a test).
    pub fn walking(at_ms: i64) -> Self {
        Self {
            at_ms,
            every: Duration::ZERO,
        }
    }

    /// Whether `last`, the last walk that ran to its end, spares this round its walk: its round
    /// came less than `every` before this one, or it took `every` or longer (its process's next
    /// round came while it walked) and ended less than `every` before this round, so a walk
    /// longer than its period is not followed by another at once. Less than `every` is less a
    /// hundredth of it (a timer's ticks come a little late, wall clocks drift), so a lone process
    /// whose walks fit its period still walks at each of its rounds. A time later than this
    /// round (another process's clock ahead) never spares it: a clock set wrong does not stop the
    /// purges of the others.
    pub fn walked_recently(&self, last: PurgeWalk) -> bool {
        let spared = self.every.saturating_sub(self.every / 100);
        let spared = i64::try_from(spared.as_millis()).unwrap_or(i64::MAX);
        let every = i64::try_from(self.every.as_millis()).unwrap_or(i64::MAX);
        let within = |ms: i64| ms <= self.at_ms && self.at_ms.saturating_sub(ms) < spared;
        let outlasted = last.finished_ms.saturating_sub(last.round_ms) >= every;
        within(last.round_ms) || (outlasted && within(last.finished_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const MINUTE: i64 = 60_000;

    /// An hourly round at `at_ms`.
    fn hourly(at_ms: i64) -> PurgeRound {
        PurgeRound {
            at_ms,
            every: Duration::from_secs(3600),
        }
    }

    /// A walk of the round at `round_ms` that ended at `finished_ms`.
    fn walk(round_ms: i64, finished_ms: i64) -> PurgeWalk {
        PurgeWalk {
            round_ms,
            finished_ms,
        }
    }

    /// A walk that ended as it began.
    fn instant(at_ms: i64) -> PurgeWalk {
        walk(at_ms, at_ms)
    }

    #[test]
    fn a_walk_within_the_period_spares_the_round_and_one_before_it_does_not() {
        let round = hourly(10 * HOUR);
        assert!(round.walked_recently(instant(10 * HOUR)));
        assert!(round.walked_recently(instant(9 * HOUR + HOUR / 2)));
        // The lone process's own last round, its tick 30 s early on the wall clock.
        assert!(!round.walked_recently(instant(9 * HOUR + 30_000)));
        assert!(!round.walked_recently(instant(9 * HOUR)));
        assert!(!round.walked_recently(instant(0)));
        // Recorded ahead of this round's clock: not taken as recent.
        assert!(!round.walked_recently(instant(10 * HOUR + 1)));
    }

    #[test]
    fn a_walk_that_fits_its_period_does_not_spare_the_next_round_however_late_it_ended() {
        // The lone process's last round, 30 s early, its walk 50 minutes long: walked again.
        let round = hourly(10 * HOUR - 30_000);
        assert!(!round.walked_recently(walk(9 * HOUR, 9 * HOUR + 50 * MINUTE)));
        assert!(!round.walked_recently(walk(9 * HOUR, 10 * HOUR - MINUTE)));
    }

    #[test]
    fn a_walk_longer_than_its_period_spares_the_rounds_a_period_after_its_end() {
        // Walked from 8:00 to 9:30: the process's 9:00 round comes at 9:30, at once.
        let long = walk(8 * HOUR, 9 * HOUR + HOUR / 2);
        for at in [9 * HOUR + HOUR / 2, 10 * HOUR, 10 * HOUR + 25 * MINUTE] {
            assert!(hourly(at).walked_recently(long), "{at}");
        }
        // A period after its end, the tick 30 s early: walked.
        assert!(!hourly(10 * HOUR + HOUR / 2 - 30_000).walked_recently(long));
        assert!(!hourly(11 * HOUR).walked_recently(long));
        // Exactly a period long counts as longer.
        assert!(hourly(9 * HOUR + 30 * MINUTE).walked_recently(walk(8 * HOUR, 9 * HOUR)));
    }

    #[test]
    fn an_end_ahead_of_the_rounds_clock_does_not_spare_it() {
        // Another process's clock runs ahead: its walk "ends" after this round.
        let round = hourly(10 * HOUR);
        assert!(!round.walked_recently(walk(8 * HOUR, 10 * HOUR + 1)));
        assert!(round.walked_recently(walk(8 * HOUR, 10 * HOUR)));
        // Its round within the period still spares (the round rule, as before).
        assert!(round.walked_recently(walk(9 * HOUR + HOUR / 2, 10 * HOUR + 1)));
    }

    #[test]
    fn a_walking_round_is_never_spared() {
        let round = PurgeRound::walking(5);
        assert!(!round.walked_recently(instant(5)));
        assert!(!round.walked_recently(instant(4)));
        assert!(!round.walked_recently(walk(0, 5)));
        assert!(!round.walked_recently(instant(i64::MIN)));
    }
}
