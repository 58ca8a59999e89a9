//! `HotState` in process: 64 shards of plain maps, each behind its own mutex, with TTLs that
//! expire lazily on access and in bulk through [`MemoryHotState::purge_expired`].

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use liveops_core::ports::{
    Attempt, Attempts, Blocklist, Health, IdemState, Idempotency, PortResult, RateDecision,
    RateLimiter, StoredAnswer, Strike, ViewCache,
};
use liveops_core::{now_ms, Throttled};
use sha2::{Digest as _, Sha256};

/// Number of shards (a power of two).
const SHARDS: usize = 64;
use liveops_core::ports::hot::MAX_STRIKES;

/// The in-process `HotState`: the embedded default.
///
/// Every key lives in one of 64 shards chosen by a keyed hash, each a `Mutex` over small maps,
/// so there is no global lock and an operation on one key is atomic. Entries with a TTL expire
/// lazily (an expired entry reads as absent) and are freed by [`Self::purge_expired`], which
/// [`Self::spawn_purger`] runs periodically. Idempotency holds are bounded in number
/// ([`Self::with_idempotency_limit`]), and so are strikes ([`DEFAULT_STRIKE_LIMIT`]).
pub struct MemoryHotState {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Most idempotency holds a shard keeps.
    idem_per_shard: usize,
    /// Most bytes of cached views a shard keeps.
    cache_bytes_per_shard: usize,
    /// Most strikes a shard keeps (each player's set counted for at least one).
    strikes_per_shard: usize,
    /// Most login attempts a shard keeps (each key's set counted for at least one).
    attempts_per_shard: usize,
}

/// Most bytes of cached views kept (keys and values counted): past it, the views nearest their
/// end are forgotten (`hot_state_evicted_total{kind="cache"}`), which costs their next reads a
/// trip to the store. Reads are public, so without a bound any player id and season asked for
/// would be held for the TTL.
pub const DEFAULT_VIEW_CACHE_BYTES: usize = 256 << 20;

/// Most idempotency holds kept by default (about 160 heap bytes each with a one-event answer:
/// some 650 MB; `IDEMP_MAX_KEYS`).
pub const DEFAULT_IDEMPOTENCY_LIMIT: usize = 4_000_000;

/// The bytes a hold is counted for besides its answer's body (its map slot, digests, deadline
/// and the answer's box): with a one-event answer of ~60 bytes, the ~160 of a hold.
const HOLD_BYTES: usize = 100;

/// Bytes of holds kept per hold of the limit: the limit × this is the holds' byte budget, so a
/// hold whose answer is large (a batch's: up to ~100 KB) counts for many small ones.
const BYTES_PER_HOLD: usize = 160;

/// Most strikes kept (each player's set counted for its strikes, and at least one; about 250
/// heap bytes for a player struck once, 70 for each further strike: some 64 MB at most): past
/// it, the players' sets nearest their end are forgotten
/// (`hot_state_evicted_total{kind="strikes"}`). A set is kept a window and a block after its
/// latest strike (660 s by default): without a bound, a flood of anomalous events under new
/// player ids would keep one set per event that long.
pub const DEFAULT_STRIKE_LIMIT: usize = 262_144;

/// Most login attempts kept (each key's set counted for its attempts, and at least one; about
/// the size of strikes: some 64 MB at most): past it, the sets nearest their end are forgotten
/// (`hot_state_evicted_total{kind="attempts"}`). Sets are made before any password is hashed
/// (per address, per account and address, per account), so without a bound a flood of logins
/// under new emails from many addresses would keep them all for their window.
pub const DEFAULT_ATTEMPT_LIMIT: usize = 262_144;

impl std::fmt::Debug for MemoryHotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHotState")
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// When an entry stops being valid; `None` for a TTL too long to represent (never).
type Deadline = Option<Instant>;

fn deadline(now: Instant, ttl: Duration) -> Deadline {
    now.checked_add(ttl)
}

fn alive(until: Deadline, now: Instant) -> bool {
    until.is_none_or(|t| t > now)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug)]
struct Expiring<T> {
    value: T,
    until: Deadline,
}

/// An idempotency key or body fingerprint as held: the first 16 bytes of its SHA-256, not its
/// text (hex keys and fingerprints made a hold ~325 heap bytes; now ~160 with a one-event answer).
/// Two texts sharing one are a 2^-64 chance even at 2^32 holds of one shard.
type Digest = [u8; 16];

fn digest(text: &str) -> Digest {
    let full = Sha256::digest(text.as_bytes());
    let mut out = [0; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// One idempotency hold: the body it was taken for, until when, and its answer once given.
#[derive(Debug)]
struct Hold {
    fingerprint: Digest,
    until: Deadline,
    /// Status and body of the answer; `None` while in flight.
    answer: Option<(u16, Box<str>)>,
}

impl Hold {
    /// The bytes it is counted for.
    fn size(&self) -> usize {
        HOLD_BYTES + self.answer.as_ref().map_or(0, |(_, body)| body.len())
    }
}

/// A shard's idempotency holds and the bytes they are counted for, kept under a number and a
/// byte budget (`IDEMP_MAX_KEYS` and that × [`BYTES_PER_HOLD`], split among the shards).
#[derive(Debug, Default)]
struct Holds {
    map: HashMap<Digest, Hold>,
    bytes: usize,
}

impl Holds {
    fn remove(&mut self, id: &Digest) {
        if let Some(h) = self.map.remove(id) {
            self.bytes -= h.size();
        }
    }

    /// Puts `hold` under `id`, in place of an expired one if any.
    fn insert(&mut self, id: Digest, hold: Hold) {
        self.bytes += hold.size();
        if let Some(old) = self.map.insert(id, hold) {
            self.bytes -= old.size();
        }
    }

    fn recount(&mut self) {
        self.bytes = self.map.values().map(Hold::size).sum();
    }

    fn purge(&mut self, now: Instant) {
        self.map.retain(|_, h| alive(h.until, now));
        self.recount();
    }

    /// Gives the hold `id` its answer (and its new deadline), counting the answer's bytes.
    fn answer(&mut self, id: &Digest, answer: (u16, Box<str>), until: Deadline) {
        if let Some(hold) = self.map.get_mut(id) {
            self.bytes -= hold.size();
            hold.answer = Some(answer);
            hold.until = until;
            self.bytes += hold.size();
        }
    }

    /// Frees room for `more` bytes within `most` holds and `budget` bytes: past either, the
    /// expired holds, then the live ones nearest their end, a twentieth at a time. Returns how
    /// many live ones went.
    fn make_room(&mut self, more: usize, most: usize, budget: usize, now: Instant) -> usize {
        let mut gone = 0;
        while !self.map.is_empty() && (self.map.len() >= most || self.bytes + more > budget) {
            let room = self.map.len() - (self.map.len() / 20).max(1);
            gone += make_room(&mut self.map, room, now, |h| h.until);
            self.recount();
        }
        gone
    }
}

/// The order in which holds are forgotten past the limit: nearest their end first (a
/// signature's minutes before a key's day, and of equal TTLs the oldest); never-ending last.
fn end_order(until: Deadline) -> (bool, Deadline) {
    (until.is_none(), until)
}

/// Frees a full map of one shard down to `room` entries: the expired ones, then the live ones
/// nearest their end; returns how many live ones went. Called once per twentieth of a share, so
/// its scans are not paid on every insert.
fn make_room<K: Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    room: usize,
    now: Instant,
    until: impl Fn(&V) -> Deadline,
) -> usize {
    map.retain(|_, v| alive(until(v), now));
    if map.len() <= room {
        return 0;
    }
    let evict = map.len() - room;
    let mut ends: Vec<_> = map.values().map(|v| end_order(until(v))).collect();
    let cut = *ends.select_nth_unstable(evict - 1).1;
    let mut gone = 0;
    map.retain(|_, v| {
        let keep = gone == evict || end_order(until(v)) > cut;
        gone += usize::from(!keep);
        keep
    });
    gone
}

/// How often a kind's evictions are warned of at most.
const EVICTION_WARNING_MS: i64 = 60_000;

/// Counts live entries forgotten at a limit, and warns as `log` lets it: at most once a minute
/// per kind ([`EVICTION_WARNING_MS`]; the counter has every one).
fn note_evicted(kind: &'static str, gone: usize, log: &Throttled) {
    if gone == 0 {
        return;
    }
    metrics::counter!("hot_state_evicted_total", "kind" => kind).increment(gone as u64);
    if log.admit().is_some() {
        tracing::warn!(
            kind,
            evicted = gone,
            "in-process hot state at its limit: forgot the live entries nearest their end \
             (hot_state_evicted_total)"
        );
    }
}

#[derive(Debug)]
struct RateWindow {
    /// Unix second the count belongs to.
    second: i64,
    count: u32,
}

#[derive(Debug, Default)]
struct Strikes {
    /// Strike times (unix ms), ascending, each with its id if it has one.
    at: VecDeque<(i64, Option<Box<str>>)>,
    /// When the times go (unix ms): `keep` after the latest (at least its window), or after an
    /// unblock.
    keep_until: i64,
    /// Strikes at or before this (unix ms) were forgotten by an unblock: not recorded again.
    forgotten_upto: Option<i64>,
}

impl Strikes {
    /// What the set counts towards the bound: its strikes, and at least one for the set itself.
    fn held(&self) -> usize {
        self.at.len().max(1)
    }

    fn count_after(&self, after: i64) -> u32 {
        self.count_between(after, i64::MAX)
    }

    /// How many fall in `(after, until]`.
    fn count_between(&self, after: i64, until: i64) -> u32 {
        let older = self.at.partition_point(|(t, _)| *t <= after);
        let upto = self.at.partition_point(|(t, _)| *t <= until);
        upto.saturating_sub(older) as u32
    }

    /// Each time in `[from, from + window)` with how many fall in the `window` ending at it.
    fn windows_from(&self, from: i64, window: i64) -> Vec<(i64, u32)> {
        let end = from.saturating_add(window);
        self.at
            .iter()
            .filter(|(t, _)| (from..end).contains(t))
            .map(|(t, _)| (*t, self.count_between(t.saturating_sub(window), *t)))
            .collect()
    }
}

/// Strike times per key: the strikes of each player, or the attempts on each key, with what
/// they hold towards a bound.
#[derive(Debug, Default)]
struct StrikeLog {
    sets: HashMap<Box<str>, Strikes>,
    /// What the sets hold towards the bound ([`Strikes::held`]), in all, kept as they change.
    held: usize,
}

impl StrikeLog {
    fn len(&self) -> usize {
        self.sets.len()
    }

    fn recount(&mut self) {
        self.held = self.sets.values().map(Strikes::held).sum();
    }

    /// What `key`'s set counts towards the bound; none without one.
    fn held_by(&self, key: &str) -> usize {
        self.sets.get(key).map_or(0, Strikes::held)
    }

    /// Runs `change` on `key`'s set (made if there is none), keeping `held` up to date.
    fn change<T>(&mut self, key: &str, change: impl FnOnce(&mut Strikes) -> T) -> T {
        let (strikes, before) = match self.sets.get_mut(key) {
            Some(s) => {
                let held = s.held();
                (s, held)
            }
            None => (self.sets.entry(key.into()).or_default(), 0),
        };
        let out = change(strikes);
        self.held = self.held.saturating_sub(before) + strikes.held();
        out
    }

    /// With `limit` held, frees the log to a twentieth below it: the sets past their end, then
    /// the live ones nearest it, a twentieth of the sets at a time ([`make_room`]); returns how
    /// many live sets went.
    fn keep_under(&mut self, limit: usize) -> usize {
        if self.held < limit {
            return 0;
        }
        let room = limit - (limit / 20).max(1);
        let (now, now_ms) = (Instant::now(), now_ms());
        let until = |s: &Strikes| {
            let left = u64::try_from(s.keep_until.saturating_sub(now_ms)).unwrap_or(0);
            deadline(now, Duration::from_millis(left))
        };
        let mut gone = 0;
        while self.held > room && !self.sets.is_empty() {
            let sets = self.sets.len() - (self.sets.len() / 20).max(1);
            gone += make_room(&mut self.sets, sets, now, until);
            self.recount();
        }
        gone
    }

    /// How many of `key`'s fall within `window` before `now_ms`.
    fn count(&self, key: &str, now_ms: i64, window: Duration) -> u32 {
        let after = now_ms.saturating_sub(millis(window));
        self.sets.get(key).map_or(0, |s| s.count_after(after))
    }

    /// Records `id` of `key`'s at `at_ms`, unless it is kept already; returns how many fall after
    /// `window` before `at_ms` and up to `upto` (a strike is judged on the window ending at it,
    /// `at_ms`; an attempt counts the later ones too, `i64::MAX`). The key's times are kept until
    /// `keep` (at least `window`) after the latest.
    fn record(
        &mut self,
        key: &str,
        id: &str,
        at_ms: i64,
        (window, keep): (Duration, Duration),
        upto: i64,
    ) -> u32 {
        let keep = millis(keep.max(window));
        let window = millis(window);
        let after = at_ms.saturating_sub(window);
        self.change(key, |strikes| {
            // Gone by now, as a Redis key expiring then is, whether purged yet or not.
            if strikes.keep_until <= now_ms() {
                strikes.at.clear();
                strikes.forgotten_upto = None;
            }
            // A strike an unblock forgot, or one kept already, is not recorded (again).
            let forgotten = strikes.forgotten_upto.is_some_and(|upto| at_ms <= upto);
            if forgotten
                || strikes
                    .at
                    .iter()
                    .any(|(_, kept)| kept.as_deref() == Some(id))
            {
                return strikes.count_between(after, upto);
            }
            let pos = strikes.at.partition_point(|(t, _)| *t <= at_ms);
            strikes.at.insert(pos, (at_ms, Some(id.into())));
            // Bounded by count, not by a window before the newest: a late strike (a redelivered
            // batch) still finds the earlier ones in its window. The key goes at `keep_until`.
            while strikes.at.len() > MAX_STRIKES {
                strikes.at.pop_front();
            }
            strikes.keep_until = strikes.keep_until.max(at_ms.saturating_add(keep));
            strikes.count_between(after, upto)
        })
    }

    /// Forgets all of `key`'s.
    fn forget(&mut self, key: &str) {
        self.held = self.held.saturating_sub(self.held_by(key));
        self.sets.remove(key);
    }

    /// Forgets `key`'s time recorded as `id`, if there is one.
    fn forget_id(&mut self, key: &str, id: &str) {
        if !self.sets.contains_key(key) {
            return;
        }
        let left = self.change(key, |s| {
            s.at.retain(|(_, kept)| kept.as_deref() != Some(id));
            s.at.len() + usize::from(s.forgotten_upto.is_some())
        });
        // A set left with nothing to tell goes at once, not at its end.
        if left == 0 {
            self.forget(key);
        }
    }

    /// Forgets `key`'s strikes, and until `keep_until` those at or before `now` recorded again.
    /// (Up to the newest strike or an earlier unblock if later: another replica's clock may run
    /// ahead.)
    fn forget_strikes(&mut self, key: &str, now: i64, keep_until: i64) {
        self.change(key, |strikes| {
            let kept = strikes.keep_until > now;
            let newest = strikes.at.back().map(|(t, _)| *t).filter(|_| kept);
            let before = strikes.forgotten_upto.filter(|_| kept);
            strikes.at.clear();
            strikes.forgotten_upto = [Some(now), newest, before].into_iter().flatten().max();
            strikes.keep_until = strikes.keep_until.max(keep_until);
        });
    }

    /// Up to when an unblock forgot `key`'s strikes (unix ms), while that is kept at `now`.
    fn forgotten_upto(&self, key: &str, now: i64) -> Option<i64> {
        let strikes = self.sets.get(key).filter(|s| s.keep_until > now)?;
        strikes.forgotten_upto
    }

    /// Drops the keys past their `keep_until` at `now_ms`.
    fn purge(&mut self, now_ms: i64) {
        self.sets.retain(|_, s| s.keep_until > now_ms);
        self.recount();
    }
}

/// Bytes a cached view is counted for: its key and its value.
fn cached_size(key: &str, value: &Bytes) -> usize {
    key.len() + value.len()
}

/// A shard's cached views and the bytes they hold, kept under a budget.
#[derive(Debug, Default)]
struct Views {
    map: HashMap<Box<str>, Expiring<Bytes>>,
    bytes: usize,
}

impl Views {
    fn len(&self) -> usize {
        self.map.len()
    }

    fn get(&mut self, key: &str, now: Instant) -> Option<Bytes> {
        match self.map.get(key) {
            Some(e) if alive(e.until, now) => Some(e.value.clone()),
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= cached_size(key, &e.value);
        }
    }

    fn recount(&mut self) {
        self.bytes = self.map.iter().map(|(k, e)| cached_size(k, &e.value)).sum();
    }

    fn purge(&mut self, now: Instant) {
        self.map.retain(|_, e| alive(e.until, now));
        self.recount();
    }

    /// Caches `entry` under `key` within `budget` bytes; past it, first frees a twentieth of the
    /// budget (expired views, then the live ones nearest their end, which also keeps a player's
    /// version: it outlives the views cached under the version before it). A view larger than
    /// the whole budget is not kept (nor is the one it replaces), and the others stay. Returns
    /// how many live views went, the one not kept included.
    fn put(&mut self, key: &str, entry: Expiring<Bytes>, budget: usize, now: Instant) -> usize {
        self.remove(key);
        let size = cached_size(key, &entry.value);
        if size > budget {
            return 1;
        }
        let mut gone = 0;
        if self.bytes + size > budget {
            let target = budget - budget / 20;
            while self.bytes + size > target && !self.map.is_empty() {
                let room = self.map.len() - (self.map.len() / 20).max(1);
                gone += make_room(&mut self.map, room, now, |e| e.until);
                self.recount();
            }
        }
        self.map.insert(key.into(), entry);
        self.bytes += size;
        gone
    }
}

#[derive(Debug, Default)]
struct Shard {
    idem: Holds,
    rate: HashMap<Box<str>, RateWindow>,
    blocks: HashMap<Box<str>, i64>,
    strikes: StrikeLog,
    attempts: StrikeLog,
    cache: Views,
}

impl Shard {
    fn len(&self) -> usize {
        self.idem.map.len()
            + self.rate.len()
            + self.blocks.len()
            + self.strikes.len()
            + self.attempts.len()
            + self.cache.len()
    }

    /// Drops every expired entry; returns how many.
    fn purge(&mut self, now: Instant, now_ms: i64) -> usize {
        let before = self.len();
        self.idem.purge(now);
        let second = now_ms.div_euclid(1000);
        self.rate.retain(|_, w| w.second >= second);
        self.blocks.retain(|_, until| *until > now_ms);
        self.strikes.purge(now_ms);
        self.attempts.purge(now_ms);
        self.cache.purge(now);
        before - self.len()
    }
}

impl Default for MemoryHotState {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryHotState {
    /// An empty store keeping up to [`DEFAULT_IDEMPOTENCY_LIMIT`] idempotency holds.
    pub fn new() -> Self {
        Self::with_idempotency_limit(DEFAULT_IDEMPOTENCY_LIMIT)
    }

    /// An empty store keeping up to about `limit` idempotency holds: past it, a new hold first
    /// frees the expired ones of its shard, then forgets live ones
    /// (`hot_state_evicted_total{kind="idempotency"}`). A forgotten hold costs a repeat its
    /// replayed answer, not a double count: the repeat carries the same event ids, which every
    /// consumer applies once.
    pub fn with_idempotency_limit(limit: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            idem_per_shard: limit.div_ceil(SHARDS).max(1),
            cache_bytes_per_shard: DEFAULT_VIEW_CACHE_BYTES / SHARDS,
            strikes_per_shard: DEFAULT_STRIKE_LIMIT / SHARDS,
            attempts_per_shard: DEFAULT_ATTEMPT_LIMIT / SHARDS,
        }
    }

    /// Most idempotency holds a shard keeps, and their byte budget.
    fn idem_bounds(&self) -> (usize, usize) {
        (self.idem_per_shard, self.idem_per_shard * BYTES_PER_HOLD)
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one(key) as usize & (SHARDS - 1);
        // Every operation leaves a shard consistent, so a poisoned lock is still usable.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Frees every expired entry, one shard at a time; returns how many were freed.
    pub fn purge_expired(&self) -> usize {
        let (now, wall) = (Instant::now(), now_ms());
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .purge(now, wall)
            })
            .sum()
    }

    /// Entries held, expired ones not yet purged included.
    pub fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Runs [`Self::purge_expired`] every `every` on the current Tokio runtime; the task ends
    /// once the store is dropped.
    pub fn spawn_purger(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { break };
                let freed = state.purge_expired();
                metrics::counter!("hot_state_purged_total").increment(freed as u64);
                metrics::gauge!("hot_state_entries").set(state.entries() as f64);
            }
        })
    }
}

#[async_trait]
impl Idempotency for MemoryHotState {
    async fn idem_begin(
        &self,
        key: &str,
        fingerprint: &str,
        ttl: Duration,
    ) -> PortResult<IdemState> {
        let now = Instant::now();
        let (id, print) = (digest(key), digest(fingerprint));
        let mut shard = self.shard(key);
        if let Some(hold) = shard.idem.map.get(&id).filter(|h| alive(h.until, now)) {
            return Ok(match &hold.answer {
                _ if hold.fingerprint != print => IdemState::Mismatch,
                None => IdemState::InFlight,
                Some((status, body)) => IdemState::Done(StoredAnswer {
                    status: *status,
                    body: body.to_string(),
                }),
            });
        }
        let (most, budget) = self.idem_bounds();
        let gone = shard.idem.make_room(HOLD_BYTES, most, budget, now);
        static LOG: Throttled = Throttled::new(EVICTION_WARNING_MS);
        note_evicted("idempotency", gone, &LOG);
        let hold = Hold {
            fingerprint: print,
            until: deadline(now, ttl),
            answer: None,
        };
        shard.idem.insert(id, hold);
        Ok(IdemState::Fresh)
    }

    /// Only a live claim of this body is completed: a key whose claim lapsed (or was released)
    /// stays free, and one another body took since keeps that request's claim.
    async fn idem_complete(
        &self,
        key: &str,
        fingerprint: &str,
        answer: StoredAnswer,
        ttl: Duration,
    ) -> PortResult<()> {
        let now = Instant::now();
        let id = digest(key);
        let mut shard = self.shard(key);
        let ours = shard.idem.map.get(&id).filter(|h| alive(h.until, now));
        if ours.is_some_and(|h| h.fingerprint == digest(fingerprint)) {
            let (most, budget) = self.idem_bounds();
            let body = answer.body.into_boxed_str();
            static LOG: Throttled = Throttled::new(EVICTION_WARNING_MS);
            // An answer past a quarter of the shard's budget is not kept (the others stay): a
            // repeat runs again, with the same event ids.
            if HOLD_BYTES + body.len() > budget / 4 {
                shard.idem.remove(&id);
                note_evicted("idempotency", 1, &LOG);
                return Ok(());
            }
            shard
                .idem
                .answer(&id, (answer.status, body), deadline(now, ttl));
            // Within the byte budget with the answer: others go first, nearer their end than
            // this hold's new deadline (the number of holds did not grow).
            let gone = shard.idem.make_room(0, most + 1, budget, now);
            note_evicted("idempotency", gone, &LOG);
        }
        Ok(())
    }

    async fn idem_release(&self, key: &str, fingerprint_text: &str) -> PortResult<()> {
        let id = digest(key);
        let mut shard = self.shard(key);
        let ours = matches!(
            shard.idem.map.get(&id),
            Some(Hold { fingerprint, answer: None, .. }) if *fingerprint == digest(fingerprint_text)
        );
        if ours {
            shard.idem.remove(&id);
        }
        Ok(())
    }

    async fn idem_extend(&self, key: &str, fingerprint: &str, ttl: Duration) -> PortResult<bool> {
        let now = Instant::now();
        let id = digest(key);
        let mut shard = self.shard(key);
        let Some(hold) = shard.idem.map.get_mut(&id).filter(|h| alive(h.until, now)) else {
            return Ok(false);
        };
        if hold.answer.is_some() || hold.fingerprint != digest(fingerprint) {
            return Ok(false);
        }
        hold.until = match (hold.until, deadline(now, ttl)) {
            (Some(held), Some(asked)) => Some(held.max(asked)),
            _ => None, // one of them never ends
        };
        Ok(true)
    }
}

#[async_trait]
impl RateLimiter for MemoryHotState {
    async fn rate_hit(&self, player: &str, n: u32, max: u32) -> PortResult<RateDecision> {
        let second = now_ms().div_euclid(1000);
        let mut shard = self.shard(player);
        let count = match shard.rate.get(player) {
            Some(w) if w.second == second => w.count,
            _ => 0,
        };
        let total = u64::from(count) + u64::from(n);
        if total > u64::from(max) {
            return Ok(RateDecision::Limited { retry_after_s: 1 });
        }
        // total <= max, so it fits in a u32.
        let count = total as u32;
        match shard.rate.get_mut(player) {
            Some(w) => *w = RateWindow { second, count },
            None => {
                shard
                    .rate
                    .insert(player.into(), RateWindow { second, count });
            }
        }
        Ok(RateDecision::Allowed)
    }
}

#[async_trait]
impl Blocklist for MemoryHotState {
    async fn block(&self, player: &str, from_ms: i64, until_ms: i64) -> PortResult<bool> {
        let now = now_ms();
        let mut shard = self.shard(player);
        let current = shard.blocks.get(player).copied().filter(|&u| u > now);
        let unblocked = shard.strikes.forgotten_upto(player, now);
        if until_ms <= now
            || current.is_some_and(|u| u >= until_ms)
            || unblocked.is_some_and(|upto| from_ms <= upto)
        {
            return Ok(false);
        }
        shard.blocks.insert(player.into(), until_ms);
        Ok(true)
    }

    async fn blocked_until(&self, player: &str) -> PortResult<Option<i64>> {
        let now = now_ms();
        let mut shard = self.shard(player);
        match shard.blocks.get(player) {
            Some(&until) if until > now => Ok(Some(until)),
            Some(_) => {
                shard.blocks.remove(player);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn add_strike(&self, player: &str, strike: Strike<'_>) -> PortResult<u32> {
        let retention = (strike.window, strike.keep);
        let mut shard = self.shard(player);
        let log = &mut shard.strikes;
        let gone = log.keep_under(self.strikes_per_shard);
        let count = log.record(player, strike.id, strike.at_ms, retention, strike.at_ms);
        drop(shard);
        static LOG: Throttled = Throttled::new(EVICTION_WARNING_MS);
        note_evicted("strikes", gone, &LOG);
        Ok(count)
    }

    async fn strike_windows(
        &self,
        player: &str,
        from_ms: i64,
        window: Duration,
    ) -> PortResult<Vec<(i64, u32)>> {
        let shard = self.shard(player);
        Ok(shard
            .strikes
            .sets
            .get(player)
            .filter(|s| s.keep_until > now_ms())
            .map_or_else(Vec::new, |s| s.windows_from(from_ms, millis(window))))
    }

    async fn strikes(&self, player: &str, now_ms: i64, window: Duration) -> PortResult<u32> {
        Ok(self.shard(player).strikes.count(player, now_ms, window))
    }

    async fn unblock(&self, player: &str, keep: Duration) -> PortResult<()> {
        let mut shard = self.shard(player);
        shard.blocks.remove(player);
        let now = now_ms();
        let keep_until = now.saturating_add(millis(keep));
        shard.strikes.forget_strikes(player, now, keep_until);
        Ok(())
    }
}

#[async_trait]
impl Attempts for MemoryHotState {
    async fn attempt(&self, key: &str, attempt: Attempt<'_>) -> PortResult<Option<u32>> {
        let (id, at, window) = (attempt.id, attempt.at_ms, attempt.window);
        // Counted and recorded under the shard's lock: one step for concurrent callers.
        let mut shard = self.shard(key);
        let log = &mut shard.attempts;
        let kept = log.sets.get(key).filter(|s| s.keep_until > now_ms());
        let recorded = kept.is_some_and(|s| s.at.iter().any(|(_, k)| k.as_deref() == Some(id)));
        if !recorded && log.count(key, at, window) >= attempt.max {
            return Ok(None);
        }
        let gone = log.keep_under(self.attempts_per_shard);
        let count = log.record(key, id, at, (window, window), i64::MAX);
        drop(shard);
        static LOG: Throttled = Throttled::new(EVICTION_WARNING_MS);
        note_evicted("attempts", gone, &LOG);
        Ok(Some(count))
    }

    async fn attempts(&self, key: &str, now_ms: i64, window: Duration) -> PortResult<u32> {
        Ok(self.shard(key).attempts.count(key, now_ms, window))
    }

    async fn forget_attempts(&self, key: &str, id: Option<&str>) -> PortResult<()> {
        let mut shard = self.shard(key);
        match id {
            None => shard.attempts.forget(key),
            Some(id) => shard.attempts.forget_id(key, id),
        }
        Ok(())
    }
}

#[async_trait]
impl ViewCache for MemoryHotState {
    async fn cache_get(&self, key: &str) -> PortResult<Option<Bytes>> {
        Ok(self.shard(key).cache.get(key, Instant::now()))
    }

    async fn cache_put(&self, key: &str, value: Bytes, ttl: Duration) -> PortResult<()> {
        let now = Instant::now();
        let gone = self.shard(key).cache.put(
            key,
            Expiring {
                value,
                until: deadline(now, ttl),
            },
            self.cache_bytes_per_shard,
            now,
        );
        static LOG: Throttled = Throttled::new(EVICTION_WARNING_MS);
        note_evicted("cache", gone, &LOG);
        Ok(())
    }

    async fn cache_del(&self, key: &str) -> PortResult<()> {
        self.shard(key).cache.remove(key);
        Ok(())
    }
}

#[async_trait]
impl Health for MemoryHotState {
    async fn healthcheck(&self) -> PortResult<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    /// The strike `id` at `at_ms`, counted in and kept for `window`.
    fn strike(id: &str, at_ms: i64, window: Duration) -> Strike<'_> {
        Strike {
            id,
            at_ms,
            window,
            keep: window,
        }
    }

    /// Past its limit a shard frees expired holds first, then forgets live ones: the holds
    /// kept stay bounded, the newest hold is always kept, and every forgotten one is counted.
    #[tokio::test]
    async fn idempotency_holds_stay_within_their_limit() {
        let hot = MemoryHotState::with_idempotency_limit(SHARDS * 40);
        let ttl = Duration::from_secs(600);
        for i in 0..20_000 {
            let key = format!("gateway:events:{i}");
            assert_eq!(
                hot.idem_begin(&key, "f", ttl).await.unwrap(),
                IdemState::Fresh
            );
            // The hold just made is there.
            assert_eq!(
                hot.idem_begin(&key, "f", ttl).await.unwrap(),
                IdemState::InFlight
            );
        }
        let held: usize = hot
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .idem
                    .map
                    .len()
            })
            .sum();
        assert!(held <= SHARDS * 40, "{held} holds kept");
        assert!(
            held >= SHARDS * 30,
            "{held}: a shard keeps most of its share"
        );
        // Expired holds go before live ones: a shard of expired holds keeps every new one.
        let hot = MemoryHotState::with_idempotency_limit(SHARDS * 8);
        for i in 0..2_000 {
            let key = format!("short:{i}");
            hot.idem_begin(&key, "f", SHORT).await.unwrap();
        }
        tokio::time::sleep(SHORT * 2).await;
        // Half a key a shard on average: no shard is near its 8 (a ninth is vanishingly rare).
        let live: Vec<String> = (0..SHARDS / 2).map(|i| format!("live:{i}")).collect();
        for key in &live {
            hot.idem_begin(key, "f", ttl).await.unwrap();
        }
        for key in &live {
            assert_eq!(
                hot.idem_begin(key, "f", ttl).await.unwrap(),
                IdemState::InFlight,
                "{key}"
            );
        }
    }

    /// Large answers (a batch's refusals) count their bytes: a flood of them stays within the
    /// byte budget of the limit (× 160 bytes) long before the number of holds is reached, and
    /// the answer just stored is kept.
    #[tokio::test]
    async fn holds_with_large_answers_stay_within_their_byte_budget() {
        let hot = MemoryHotState::with_idempotency_limit(SHARDS * 2000);
        let budget = SHARDS * 2000 * BYTES_PER_HOLD;
        let ttl = Duration::from_secs(600);
        let body = "x".repeat(64 << 10);
        for i in 0..2_000 {
            let key = format!("gateway:events.batch:{i}");
            hot.idem_begin(&key, "f", ttl).await.unwrap();
            let answer = StoredAnswer {
                status: 200,
                body: body.clone(),
            };
            hot.idem_complete(&key, "f", answer, ttl).await.unwrap();
            assert!(
                matches!(
                    hot.idem_begin(&key, "f", ttl).await.unwrap(),
                    IdemState::Done(_)
                ),
                "{key}: the answer just stored is kept"
            );
        }
        let (held, bytes) = hot.shards.iter().fold((0, 0), |(n, b), s| {
            let s = s.lock().unwrap_or_else(PoisonError::into_inner);
            let counted: usize = s.idem.map.values().map(Hold::size).sum();
            assert_eq!(counted, s.idem.bytes, "the running count is exact");
            (n + s.idem.map.len(), b + s.idem.bytes)
        });
        assert!(bytes <= budget, "{bytes} bytes kept, budget {budget}");
        assert!(held < 2_000 && held > 0, "{held} holds kept");
        // An answer past a quarter of a shard's budget is not kept, and the others stay.
        let small = MemoryHotState::with_idempotency_limit(SHARDS * 100);
        for key in ["kept:1", "kept:2", "big"] {
            small.idem_begin(key, "f", ttl).await.unwrap();
        }
        for key in ["kept:1", "kept:2"] {
            let answer = StoredAnswer {
                status: 202,
                body: "{}".into(),
            };
            small.idem_complete(key, "f", answer, ttl).await.unwrap();
        }
        let answer = StoredAnswer {
            status: 200,
            body: "x".repeat(100 * BYTES_PER_HOLD),
        };
        small.idem_complete("big", "f", answer, ttl).await.unwrap();
        let again = small.idem_begin("big", "f", ttl).await.unwrap();
        assert_eq!(again, IdemState::Fresh, "not kept");
        for key in ["kept:1", "kept:2"] {
            let kept = small.idem_begin(key, "f", ttl).await.unwrap();
            assert!(matches!(kept, IdemState::Done(_)), "{key}: {kept:?}");
        }
    }

    /// Past the limit the holds nearest their end go: a key's answer (a day) outlives a flood
    /// of signature holds (minutes), and of holds with one TTL the newest stay.
    #[tokio::test]
    async fn the_holds_nearest_their_end_are_forgotten_first() {
        let hot = MemoryHotState::with_idempotency_limit(SHARDS * 40);
        let (day, minutes) = (Duration::from_secs(86_400), Duration::from_secs(601));
        let keyed: Vec<String> = (0..SHARDS * 5)
            .map(|i| format!("gateway:events:k{i}"))
            .collect();
        for key in &keyed {
            hot.idem_begin(key, "f", day).await.unwrap();
        }
        for i in 0..SHARDS * 200 {
            hot.idem_begin(&format!("gateway-signed:events:{i}"), "f", minutes)
                .await
                .unwrap();
        }
        for key in &keyed {
            assert_eq!(
                hot.idem_begin(key, "f", day).await.unwrap(),
                IdemState::InFlight,
                "{key}"
            );
        }
        // The newest signature holds are all kept; the oldest all forgotten.
        for i in (SHARDS * 200 - SHARDS * 10)..SHARDS * 200 {
            let key = format!("gateway-signed:events:{i}");
            assert_eq!(
                hot.idem_begin(&key, "f", minutes).await.unwrap(),
                IdemState::InFlight,
                "{key}"
            );
        }
        for i in 0..SHARDS * 10 {
            let key = format!("gateway-signed:events:{i}");
            assert_eq!(
                hot.idem_begin(&key, "f", minutes).await.unwrap(),
                IdemState::Fresh,
                "{key}"
            );
        }
    }

    /// Cached views stay within their bytes: past them the views nearest their end go, so the
    /// players' versions (a longer TTL) outlive a flood of views, and the newest views stay.
    #[tokio::test]
    async fn cached_views_stay_within_their_bytes() {
        let hot = MemoryHotState {
            cache_bytes_per_shard: 2_000,
            ..MemoryHotState::new()
        };
        let (long, short) = (Duration::from_secs(60), Duration::from_secs(30));
        let versions: Vec<String> = (0..SHARDS * 4)
            .map(|i| format!("progress-version:p{i}"))
            .collect();
        for key in &versions {
            hot.cache_put(key, Bytes::from_static(b"0190d5e2"), long)
                .await
                .unwrap();
        }
        let view = |i: usize| format!("progress:v2:p{i}:1:0");
        let n = SHARDS * 200;
        for i in 0..n {
            hot.cache_put(&view(i), Bytes::from(vec![b'x'; 100]), short)
                .await
                .unwrap();
        }
        for key in &versions {
            assert!(hot.cache_get(key).await.unwrap().is_some(), "{key}");
        }
        for shard in hot.shards.iter() {
            let mut shard = shard.lock().unwrap();
            let counted = shard.cache.bytes;
            assert!(counted <= 2_000, "{counted} bytes in a shard");
            shard.cache.recount();
            assert_eq!(shard.cache.bytes, counted, "the running count is exact");
        }
        assert!(hot.cache_get(&view(n - 1)).await.unwrap().is_some());
        assert!(hot.cache_get(&view(0)).await.unwrap().is_none());
        // Replacing and deleting keep the count exact.
        hot.cache_put(&view(n - 1), Bytes::from_static(b"y"), short)
            .await
            .unwrap();
        hot.cache_del(&versions[0]).await.unwrap();
        for shard in hot.shards.iter() {
            let mut shard = shard.lock().unwrap();
            let counted = shard.cache.bytes;
            shard.cache.recount();
            assert_eq!(shard.cache.bytes, counted);
        }
    }

    /// A view larger than its shard's budget is not kept: the shard keeps the views it held
    /// (none evicted for it), drops the one the large view would have replaced, stays within its
    /// budget, and the large one is counted as evicted (what `cache_put` adds to
    /// `hot_state_evicted_total{kind="cache"}`).
    #[tokio::test]
    async fn a_view_larger_than_its_shard_is_not_kept() {
        let (budget, ttl, now) = (2_000, Duration::from_secs(30), Instant::now());
        let entry = |size: usize| Expiring {
            value: Bytes::from(vec![b'x'; size]),
            until: deadline(now, ttl),
        };
        let mut views = Views::default();
        for i in 0..5 {
            let key = format!("progress:v3:p{i}:1:0");
            assert_eq!(views.put(&key, entry(100), budget, now), 0);
        }
        let large = "progress:v3:p9:1:0";
        assert_eq!(views.put(large, entry(100), budget, now), 0);
        let held = views.bytes;
        // Larger than the budget, its key counted: not kept, the rest untouched.
        let too_large = budget - large.len() + 1;
        assert_eq!(views.put(large, entry(too_large), budget, now), 1);
        assert_eq!(
            views.get(large, now),
            None,
            "neither it nor the one it replaced"
        );
        assert_eq!(views.len(), 5, "no other view evicted for it");
        assert_eq!(views.bytes, held - cached_size(large, &entry(100).value));
        views.recount();
        assert_eq!(
            views.bytes,
            held - large.len() - 100,
            "the running count is exact"
        );
        // Exactly the budget still fits, evicting the others.
        let fits = budget - large.len();
        assert_eq!(views.put(large, entry(fits), budget, now), 5);
        assert!(views.get(large, now).is_some());
        assert_eq!(views.bytes, budget);

        // Through the port: the large view is not served, a shard's others still are.
        let hot = MemoryHotState {
            cache_bytes_per_shard: budget,
            ..MemoryHotState::new()
        };
        hot.cache_put("progress:v3:p1:1:0", Bytes::from_static(b"small"), ttl)
            .await
            .unwrap();
        hot.cache_put(large, Bytes::from(vec![b'y'; budget]), ttl)
            .await
            .unwrap();
        assert_eq!(hot.cache_get(large).await.unwrap(), None);
        let small = hot.cache_get("progress:v3:p1:1:0").await.unwrap();
        assert_eq!(small.as_deref(), Some(&b"small"[..]));
        for shard in hot.shards.iter() {
            assert!(shard.lock().unwrap().cache.bytes <= budget);
        }
    }

    #[tokio::test]
    async fn purge_frees_expired_entries_only() {
        let hot = MemoryHotState::new();
        let now = now_ms();
        for i in 0..100 {
            let k = format!("k{i}");
            hot.idem_begin(&k, "fp", SHORT).await.unwrap();
            hot.cache_put(&k, Bytes::from_static(b"v"), SHORT)
                .await
                .unwrap();
            hot.block(&k, now, now + 100).await.unwrap();
            let s = strike("s", now - 1000, Duration::from_millis(1100));
            hot.add_strike(&k, s).await.unwrap();
        }
        hot.idem_begin("keep", "fp", Duration::from_secs(60))
            .await
            .unwrap();
        hot.cache_put("keep", Bytes::new(), Duration::MAX)
            .await
            .unwrap();
        assert_eq!(hot.purge_expired(), 0);
        assert_eq!(hot.entries(), 402);
        hot.rate_hit("gone", 1, 10).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(hot.purge_expired(), 401);
        // The long-lived entries stay; the rate window of a past second goes.
        assert_eq!(hot.entries(), 2);
        assert_eq!(
            hot.idem_begin("keep", "fp", SHORT).await.unwrap(),
            IdemState::InFlight
        );
        assert_eq!(hot.cache_get("keep").await.unwrap(), Some(Bytes::new()));
    }

    #[tokio::test]
    async fn expired_entries_read_as_absent_before_any_purge() {
        let hot = MemoryHotState::new();
        hot.cache_put("c", Bytes::from_static(b"x"), SHORT)
            .await
            .unwrap();
        tokio::time::sleep(SHORT * 2).await;
        assert_eq!(hot.cache_get("c").await.unwrap(), None);
        assert_eq!(
            hot.idem_begin("i", "a", SHORT).await.unwrap(),
            IdemState::Fresh
        );
        tokio::time::sleep(SHORT * 2).await;
        assert_eq!(
            hot.idem_begin("i", "b", SHORT).await.unwrap(),
            IdemState::Fresh
        );
    }

    #[tokio::test]
    async fn completing_a_lapsed_claim_does_nothing() {
        let hot = MemoryHotState::new();
        let answer = StoredAnswer {
            status: 202,
            body: "{}".into(),
        };
        hot.idem_complete("never", "fp", answer.clone(), SHORT)
            .await
            .unwrap();
        assert_eq!(
            hot.idem_begin("never", "fp", SHORT).await.unwrap(),
            IdemState::Fresh
        );
    }

    #[tokio::test]
    async fn a_set_past_its_window_is_gone_before_it_is_purged() {
        let hot = MemoryHotState::new();
        let (t, w) = (now_ms(), Duration::from_secs(10));
        let old = strike("old", t - 20_000, w);
        hot.add_strike("p", old).await.unwrap();
        assert_eq!(hot.strike_windows("p", t - 20_000, w).await.unwrap(), []);
        // A late strike within its window does not find it either, as on Redis, whose key
        // expired a window after the strike.
        let late = strike("late", t - 15_000, w);
        assert_eq!(hot.add_strike("p", late).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn strikes_are_capped_and_kept_in_order() {
        let hot = MemoryHotState::new();
        let w = Duration::from_secs(3600);
        // Times from now: a set whose window has passed is gone.
        let t = now_ms();
        for i in 0..(MAX_STRIKES as i64 + 50) {
            let id = i.to_string();
            hot.add_strike("p", strike(&id, t + i, w)).await.unwrap();
        }
        assert_eq!(
            hot.strikes("p", t + 1000, w).await.unwrap(),
            MAX_STRIKES as u32
        );
        // A late strike lands in order and counts; it is judged on the window ending at it.
        let hot2 = MemoryHotState::new();
        for (id, at) in [("a", t + 5_000), ("b", t + 3_000)] {
            assert_eq!(hot2.add_strike("q", strike(id, at, w)).await.unwrap(), 1);
        }
        assert_eq!(
            hot2.strikes("q", t + 4_000, Duration::from_millis(1500))
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            hot2.strikes("q", t + 6_000, Duration::from_millis(1500))
                .await
                .unwrap(),
            1
        );
    }

    /// Past its bound a shard forgets the players' strike sets nearest their end: a flood of one
    /// strike under each of many new player ids stays bounded, the newest players' strikes and
    /// those of a player struck after the flood are kept, and the running count of what the log
    /// holds (a set's strikes, at least one) stays exact through strikes, unblocks and purges.
    #[tokio::test]
    async fn strikes_of_many_players_stay_within_their_bound() {
        let hot = MemoryHotState {
            strikes_per_shard: 40,
            ..MemoryHotState::new()
        };
        let (w, keep) = (Duration::from_secs(600), Duration::from_secs(660));
        let t = now_ms();
        let cheat = |id| Strike {
            id,
            at_ms: t + 100_000,
            window: w,
            keep,
        };
        for id in ["c0", "c1", "c2"] {
            hot.add_strike("cheater", cheat(id)).await.unwrap();
        }
        let n = SHARDS * 200;
        let player = |i: usize| format!("flood_{i}");
        for i in 0..n {
            let s = Strike {
                id: "s",
                at_ms: t + i as i64,
                window: w,
                keep,
            };
            assert_eq!(hot.add_strike(&player(i), s).await.unwrap(), 1);
        }
        let exact = |hot: &MemoryHotState| -> usize {
            hot.shards
                .iter()
                .map(|s| {
                    let mut shard = s.lock().unwrap();
                    let counted = shard.strikes.held;
                    shard.strikes.recount();
                    assert_eq!(shard.strikes.held, counted, "running count");
                    counted
                })
                .sum()
        };
        let held = exact(&hot);
        assert!(held <= SHARDS * 40, "{held} strikes kept");
        assert!(
            held >= SHARDS * 30,
            "{held}: a shard keeps most of its share"
        );
        // The cheater's set ends last: kept through the flood, all three strikes counting.
        assert_eq!(hot.strikes("cheater", t + 100_000, w).await.unwrap(), 3);
        // The newest players keep theirs (five a shard on average, of the 38 or more it keeps);
        // the oldest are forgotten.
        for i in (n - SHARDS * 5)..n {
            let at = t + i as i64;
            assert_eq!(hot.strikes(&player(i), at, w).await.unwrap(), 1, "{i}");
        }
        for i in 0..SHARDS * 10 {
            let at = t + i as i64;
            assert_eq!(hot.strikes(&player(i), at, w).await.unwrap(), 0, "{i}");
        }
        // An unblock leaves the set with no strikes (its marker counts one); a strike the
        // unblock forgot is not recorded again; a purge recounts.
        hot.unblock("cheater", keep).await.unwrap();
        hot.add_strike("cheater", cheat("c0")).await.unwrap();
        assert_eq!(hot.shard("cheater").strikes.held_by("cheater"), 1);
        exact(&hot);
        hot.purge_expired();
        assert_eq!(exact(&hot), held - 2);
    }

    #[tokio::test]
    async fn purger_task_runs_and_stops_with_the_store() {
        let hot = Arc::new(MemoryHotState::new());
        hot.cache_put("c", Bytes::new(), Duration::from_millis(1))
            .await
            .unwrap();
        let task = hot.spawn_purger(Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(hot.entries(), 0);
        drop(hot);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// Login attempts are bounded like strikes: a flood of one attempt under each of many keys
    /// stays within the bound, the newest kept; an attempt taken back leaves no set behind.
    #[tokio::test]
    async fn login_attempts_of_many_keys_stay_within_their_bound() {
        let hot = MemoryHotState {
            attempts_per_shard: 40,
            ..MemoryHotState::new()
        };
        let (t, window) = (now_ms(), Duration::from_secs(900));
        let attempt = |id| Attempt {
            id,
            at_ms: t,
            window,
            max: 10,
        };
        let n = SHARDS * 200;
        for i in 0..n {
            let key = format!("login:account:flood_{i}@example.com");
            assert_eq!(hot.attempt(&key, attempt("a")).await.unwrap(), Some(1));
        }
        let held: usize = hot
            .shards
            .iter()
            .map(|s| s.lock().unwrap().attempts.held)
            .sum();
        assert!(held <= SHARDS * 40, "{held} attempts kept");
        let newest = format!("login:account:flood_{}@example.com", n - 1);
        assert_eq!(hot.attempts(&newest, t, window).await.unwrap(), 1);
        // Taken back: the set goes with its only attempt.
        hot.attempt("login:address:203.0.113.9", attempt("b"))
            .await
            .unwrap();
        hot.forget_attempts("login:address:203.0.113.9", Some("b"))
            .await
            .unwrap();
        let shard = hot.shard("login:address:203.0.113.9");
        assert!(!shard
            .attempts
            .sets
            .contains_key("login:address:203.0.113.9"));
    }
}
