//! What a process keeps of campaigns' draws: a decided draw's answers, which do not change any
//! more, so each is written out once and served again as it is; an undecided one's for
//! [`OPEN_COUNT_FRESH`], so a loop of reads of its draw reads every entrant once in that time.
//! (Entrant counts are not kept: the repository keeps them as entries are written.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// Most draw answers kept (each campaign's with and without its list count apart).
const DRAWS: usize = 16;
/// Most bytes of draw answers kept, together (a million entrants' list is about 20 MB).
const DRAW_BYTES: usize = 64 * 1024 * 1024;
/// How long an undecided draw's answer is served again: it says who had entered at most this
/// long ago.
pub const OPEN_COUNT_FRESH: Duration = Duration::from_secs(5);

/// Values read last, up to a number of them and a total weight; least recently read go first.
struct Recent<K, V> {
    /// Least recently read first.
    kept: Mutex<Vec<(K, V)>>,
    max_len: usize,
    max_weight: usize,
    weigh: fn(&V) -> usize,
}

impl<K: PartialEq, V: Clone> Recent<K, V> {
    fn new(max_len: usize, max_weight: usize, weigh: fn(&V) -> usize) -> Self {
        Self {
            kept: Mutex::default(),
            max_len,
            max_weight,
            weigh,
        }
    }

    /// The value kept under `key`, now the most recently read.
    fn get(&self, key: &K) -> Option<V> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let at = kept.iter().position(|(k, _)| k == key)?;
        let found = kept.remove(at);
        let value = found.1.clone();
        kept.push(found);
        Some(value)
    }

    /// Keeps `value` under `key`, forgetting the least recently read past the bounds; one
    /// heavier than all the weight allowed is not kept. Answers the weight kept.
    fn keep(&self, key: K, value: V) -> usize {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if (self.weigh)(&value) <= self.max_weight && self.max_len > 0 {
            kept.retain(|(k, _)| *k != key);
            kept.push((key, value));
        }
        let mut weight: usize = kept.iter().map(|(_, v)| (self.weigh)(v)).sum();
        while kept.len() > self.max_len || weight > self.max_weight {
            weight -= (self.weigh)(&kept.remove(0).1);
        }
        weight
    }
}

/// What is kept of closed campaigns, per process.
pub struct ClosedCampaigns {
    /// Draws' JSON answers, by campaign id and whether they list the entrants, with when an
    /// undecided one's was written (`None`: decided, served however old), in one bound.
    draws: Recent<(String, bool), (Bytes, Option<Instant>)>,
    draw_hits: AtomicU64,
    draw_misses: AtomicU64,
}

impl Default for ClosedCampaigns {
    fn default() -> Self {
        Self::new(DRAWS, DRAW_BYTES)
    }
}

impl ClosedCampaigns {
    /// Keeps up to `draws` draw answers of `draw_bytes` together.
    pub fn new(draws: usize, draw_bytes: usize) -> Self {
        Self {
            draws: Recent::new(draws, draw_bytes, |(json, _)| json.len()),
            draw_hits: AtomicU64::new(0),
            draw_misses: AtomicU64::new(0),
        }
    }

    /// The answer kept for the campaign's draw with or without its list, if any: a decided
    /// draw's, or an undecided one's written within `OPEN_COUNT_FRESH` (5 s) of `now`; counted as a
    /// hit or a miss (`participation_draw_cache_total{result}`).
    pub fn draw(&self, campaign_id: &str, with_list: bool, now: Instant) -> Option<Bytes> {
        let json = self.kept_draw(campaign_id, with_list, now);
        let (counter, result) = match json {
            Some(_) => (&self.draw_hits, "hit"),
            None => (&self.draw_misses, "miss"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("participation_draw_cache_total", "result" => result).increment(1);
        json
    }

    /// [`Self::draw`] not counted: for a read already counted a miss that waited for its turn
    /// and may find the answer another wrote meanwhile.
    pub fn kept_draw(&self, campaign_id: &str, with_list: bool, now: Instant) -> Option<Bytes> {
        let (json, written) = self.draws.get(&(campaign_id.to_owned(), with_list))?;
        match written {
            Some(at) if now.saturating_duration_since(at) >= OPEN_COUNT_FRESH => None,
            _ => Some(json),
        }
    }

    /// Keeps a decided draw's answer.
    pub fn keep_draw(&self, campaign_id: &str, with_list: bool, json: Bytes) {
        self.keep(campaign_id, with_list, (json, None));
    }

    /// Keeps an undecided draw's answer, written at `at`, for `OPEN_COUNT_FRESH` (5 s).
    pub fn keep_open_draw(&self, campaign_id: &str, with_list: bool, json: Bytes, at: Instant) {
        self.keep(campaign_id, with_list, (json, Some(at)));
    }

    /// Keeps a draw's answer (`participation_draw_cache_bytes`: all kept, together).
    fn keep(&self, campaign_id: &str, with_list: bool, answer: (Bytes, Option<Instant>)) {
        let bytes = self.draws.keep((campaign_id.to_owned(), with_list), answer);
        metrics::gauge!("participation_draw_cache_bytes").set(bytes as f64);
    }

    /// How many draw reads were answered from what was kept.
    pub fn draw_hits(&self) -> u64 {
        self.draw_hits.load(Ordering::Relaxed)
    }

    /// How many draw reads found nothing kept (decided, or undecided and fresh).
    pub fn draw_misses(&self) -> u64 {
        self.draw_misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn the_least_recently_read_go_first_past_either_bound() {
        let (kept, now) = (ClosedCampaigns::new(3, 10), Instant::now());
        kept.keep_draw("a", true, json(4));
        kept.keep_draw("a", false, json(1));
        kept.keep_draw("b", true, json(4));
        assert_eq!(kept.draw("a", true, now), Some(json(4)));
        assert_eq!(kept.draw("c", true, now), None);
        // A fourth answer: the one read least recently, (a, false), is forgotten.
        kept.keep_draw("c", false, json(1));
        assert_eq!(kept.draw("a", false, now), None);
        assert_eq!(kept.draw("b", true, now), Some(json(4)));
        // Past the bytes: the least recently read go until the rest fit.
        kept.keep_draw("d", true, json(6));
        assert_eq!(kept.draw("a", true, now), None);
        assert_eq!(kept.draw("c", false, now), None);
        assert_eq!(kept.draw("b", true, now), Some(json(4)));
        assert_eq!(kept.draw("d", true, now), Some(json(6)));
        assert_eq!((kept.draw_hits(), kept.draw_misses()), (4, 4));
        // Too large to keep at all: nothing is forgotten for it.
        kept.keep_draw("e", true, json(11));
        assert_eq!(kept.draw("e", true, now), None);
        assert_eq!(kept.draw("b", true, now), Some(json(4)));
    }

    #[test]
    fn an_undecided_draw_s_answer_is_served_again_only_while_fresh() {
        let (kept, written) = (ClosedCampaigns::new(3, 10), Instant::now());
        kept.keep_open_draw("c1", true, json(4), written);
        let later = written + OPEN_COUNT_FRESH - Duration::from_millis(1);
        assert_eq!(kept.draw("c1", true, later), Some(json(4)));
        assert_eq!(kept.draw("c1", false, written), None, "without its list");
        assert_eq!(kept.draw("c1", true, written + OPEN_COUNT_FRESH), None);
        assert_eq!((kept.draw_hits(), kept.draw_misses()), (1, 2));
        // Decided since: the decided answer is served, however old.
        kept.keep_draw("c1", true, json(5));
        let much_later = written + OPEN_COUNT_FRESH * 10;
        assert_eq!(kept.draw("c1", true, much_later), Some(json(5)));
        // Within the same bounds as the decided answers: too large is not kept.
        kept.keep_open_draw("c2", true, json(11), written);
        assert_eq!(kept.draw("c2", true, written), None);
    }
}
