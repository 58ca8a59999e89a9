//! A bound on the failed logins of the whole process per minute (`LOGIN_MAX_FAILED_PER_MINUTE`),
//! checked before a password is hashed. The limits per address and account do not hold a guessing
//! run spread over many addresses (a botnet, or the many /64s of one IPv6 allocation): its
//! failures would keep every password-hashing turn busy, so every operator's login would wait
//! and be refused 503. Past this bound, a login is answered 429 before its password is checked,
//! unless its account was signed in from its client address lately (its owner's usual place).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The window of [`FailedLogins`].
pub const FAILED_LOGINS_WINDOW: Duration = Duration::from_secs(60);

/// The failed logins of the process within the last [`FAILED_LOGINS_WINDOW`], at most `max`.
#[derive(Debug)]
pub struct FailedLogins {
    max: usize,
    /// When each counted failure was counted, unix ms, oldest first.
    at: Mutex<VecDeque<i64>>,
}

impl FailedLogins {
    /// At most `max_per_minute` failed logins a minute (at least 1).
    pub fn new(max_per_minute: u32) -> Self {
        Self {
            max: (max_per_minute as usize).max(1),
            at: Mutex::new(VecDeque::new()),
        }
    }

    /// Counts a failure at `now_ms` (taken back with [`FailedLogins::take_back`] if the password
    /// was right or was not checked), or, with the window full, how many seconds until a
    /// failure leaves it.
    pub fn count(&self, now_ms: i64) -> Result<(), u64> {
        let window = FAILED_LOGINS_WINDOW.as_millis() as i64;
        let mut at = self.at.lock().unwrap_or_else(PoisonError::into_inner);
        while at.front().is_some_and(|&t| t <= now_ms - window) {
            at.pop_front();
        }
        if at.len() >= self.max {
            let oldest = at.front().copied().unwrap_or(now_ms);
            let wait_ms = (oldest + window - now_ms).max(0);
            return Err((wait_ms as u64).div_ceil(1000).max(1));
        }
        at.push_back(now_ms);
        Ok(())
    }

    /// Takes back one failure counted at `at_ms`.
    pub fn take_back(&self, at_ms: i64) {
        let mut at = self.at.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = at.iter().rposition(|&t| t == at_ms) {
            at.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bound_failures_wait_until_the_oldest_leaves_the_minute() {
        let cap = FailedLogins::new(2);
        assert_eq!(cap.count(1_000), Ok(()));
        assert_eq!(cap.count(31_000), Ok(()));
        assert_eq!(cap.count(40_000), Err(21), "the first leaves at 61 s");
        cap.take_back(31_000);
        assert_eq!(
            cap.count(40_000),
            Ok(()),
            "a failure taken back frees its place"
        );
        assert_eq!(cap.count(60_999), Err(1));
        assert_eq!(cap.count(61_000), Ok(()), "the first is a minute old");
    }
}
