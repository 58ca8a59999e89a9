//! [`Throttled`]: a log line written at most once a period, so an outage (or a store at its
//! bound) does not turn every refused request into a line (at 10 000 requests/s, 10 000 lines/s).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Instant;

/// When this process first asked a throttle: its periods are measured from here on the
/// monotonic clock, so a wall clock stepped back does not silence a log site for as long.
static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

/// One log site's throttle: the first call of a period is let through, the others are counted
/// and reported with the next line let through.
#[derive(Debug)]
pub struct Throttled {
    period_ms: i64,
    next_ms: AtomicI64,
    skipped: AtomicU64,
}

impl Throttled {
    /// A throttle letting one line through per `period_ms` milliseconds.
    pub const fn new(period_ms: i64) -> Self {
        Self {
            period_ms,
            next_ms: AtomicI64::new(i64::MIN),
            skipped: AtomicU64::new(0),
        }
    }

    /// `Some(n)` if this call may log (`n`: the calls left out since the last line), else
    /// `None` (counted for the next).
    pub fn admit(&self) -> Option<u64> {
        let since_start = STARTED.elapsed().as_millis();
        self.admit_at(i64::try_from(since_start).unwrap_or(i64::MAX))
    }

    /// [`Throttled::admit`] at `now_ms` (any clock that only goes forward).
    pub fn admit_at(&self, now_ms: i64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(self.period_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Throttled;

    #[test]
    fn one_line_a_period_reporting_the_calls_left_out() {
        let t = Throttled::new(10_000);
        assert_eq!(t.admit_at(1_000), Some(0), "the first");
        assert_eq!(t.admit_at(1_001), None);
        assert_eq!(t.admit_at(10_999), None);
        assert_eq!(
            t.admit_at(11_000),
            Some(2),
            "a period later, with the two left out"
        );
        assert_eq!(t.admit_at(11_500), None);
        assert_eq!(t.admit_at(30_000), Some(1));
    }
}
