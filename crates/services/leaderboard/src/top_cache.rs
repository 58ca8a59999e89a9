//! [`TopCache`]: serialized answers of `GET /leaderboard` for live boards, reused until a board
//! changes. A top-100 read then costs a map lookup instead of a rank-store query and a JSON
//! encoding of 100 entries, which is what lets reads outrun the rank store itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use liveops_core::Window;

/// Longest an answer is reused even without a change seen here: another process (a second
/// leaderboard replica on the same Redis) may have changed the board.
pub const MAX_AGE: Duration = Duration::from_millis(250);

/// Most answers kept; past it the cache starts over (keys are window × period × limit).
const MAX_ENTRIES: usize = 64;

/// Which answer: window, period, limit.
type Key = (Window, String, u64);

struct Cached {
    generation: u64,
    at: Instant,
    body: Bytes,
}

/// Serialized top-N answers, invalidated by [`TopCache::invalidate`] on every change this process
/// makes to a live board, and after `MAX_AGE` (250 ms) in any case.
#[derive(Default)]
pub struct TopCache {
    generation: AtomicU64,
    entries: Mutex<HashMap<Key, Cached>>,
}

impl std::fmt::Debug for TopCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopCache")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TopCache {
    /// Forgets every answer: a live board changed.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The generation to [`TopCache::put`] an answer under; read it before querying the board,
    /// so a change made meanwhile makes the answer stale at once.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A still-valid answer.
    pub(crate) fn get(&self, window: Window, period: &str, limit: u64) -> Option<Bytes> {
        let generation = self.generation();
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = entries
            .get(&(window, period.to_owned(), limit))
            .filter(|c| c.generation == generation && c.at.elapsed() < MAX_AGE)
            .map(|c| c.body.clone());
        metrics::counter!("leaderboard_top_cache_total", "result" => if hit.is_some() { "hit" } else { "miss" })
            .increment(1);
        hit
    }

    /// Keeps an answer computed under `generation`.
    pub(crate) fn put(
        &self,
        window: Window,
        period: String,
        limit: u64,
        generation: u64,
        body: Bytes,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            (window, period, limit),
            Cached {
                generation,
                at: Instant::now(),
                body,
            },
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_reused_until_a_change_or_their_age_runs_out() {
        let cache = TopCache::default();
        assert!(cache.get(Window::Daily, "d", 100).is_none());
        let g = cache.generation();
        cache.put(Window::Daily, "d".into(), 100, g, Bytes::from_static(b"a"));
        assert_eq!(cache.get(Window::Daily, "d", 100).unwrap(), "a");
        assert!(cache.get(Window::Daily, "d", 10).is_none(), "another limit");
        assert!(
            cache.get(Window::Weekly, "d", 100).is_none(),
            "another window"
        );
        cache.invalidate();
        assert!(cache.get(Window::Daily, "d", 100).is_none(), "changed");

        // An answer computed before a change is stale as soon as it is stored.
        let before = cache.generation();
        cache.invalidate();
        cache.put(
            Window::Daily,
            "d".into(),
            100,
            before,
            Bytes::from_static(b"b"),
        );
        assert!(cache.get(Window::Daily, "d", 100).is_none());

        let g = cache.generation();
        cache.put(Window::Daily, "d".into(), 100, g, Bytes::from_static(b"c"));
        std::thread::sleep(MAX_AGE + Duration::from_millis(20));
        assert!(cache.get(Window::Daily, "d", 100).is_none(), "too old");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = TopCache::default();
        let g = cache.generation();
        for limit in 0..(MAX_ENTRIES as u64 * 3) {
            cache.put(Window::Daily, "d".into(), limit, g, Bytes::new());
        }
        assert!(cache.entries.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
