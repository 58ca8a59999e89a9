//! Short-lived shared state, one small trait per concern: idempotency keys (a signed request
//! without a key is held and answered under its signature, ADR 0017), per-player rate windows,
//! blocks and strikes, login attempts, and the view cache.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Health, PortResult};

/// Most strikes remembered per player; older ones are dropped first.
pub const MAX_STRIKES: usize = 256;

/// The first answer to an idempotent request, replayed for repeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// HTTP status of the first answer.
    pub status: u16,
    /// Its JSON body.
    pub body: String,
}

/// What an idempotency key says about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdemState {
    /// First time: the caller now owns the key and must `complete` or `release` it (and
    /// `extend` it while it works, if that may outlast the hold's TTL).
    Fresh,
    /// Another request with this key is being processed.
    InFlight,
    /// Already answered.
    Done(StoredAnswer),
    /// The key was used with a different request body.
    Mismatch,
}

/// Outcome of a rate-limit hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateDecision {
    /// Within the limit.
    Allowed,
    /// Over the limit; retry after this many seconds.
    Limited {
        /// Seconds until the window resets.
        retry_after_s: u64,
    },
}

/// `Idempotency-Key` bookkeeping: who holds a key, and the answer once there is one.
#[async_trait]
pub trait Idempotency: Health {
    /// Takes `key` for a request whose body hashes to `fingerprint`, or reports its state.
    async fn idem_begin(
        &self,
        key: &str,
        fingerprint: &str,
        ttl: Duration,
    ) -> PortResult<IdemState>;
    /// Records the answer for a key taken with `Fresh` by the request whose body hashes to
    /// `fingerprint`; nothing if the key is not held for that body (the claim lapsed and another
    /// request took the key: its answer is its own).
    async fn idem_complete(
        &self,
        key: &str,
        fingerprint: &str,
        answer: StoredAnswer,
        ttl: Duration,
    ) -> PortResult<()>;
    /// Gives up a key taken with `Fresh` (the request failed and may be retried), only while it
    /// is held, unanswered, for the body `fingerprint`.
    async fn idem_release(&self, key: &str, fingerprint: &str) -> PortResult<()>;
    /// Keeps a key taken with `Fresh` held for at least `ttl` from now (never shortened), only
    /// while it is held, unanswered, for the body `fingerprint`; whether it is.
    async fn idem_extend(&self, key: &str, fingerprint: &str, ttl: Duration) -> PortResult<bool>;
}

/// One strike to record with [`Blocklist::add_strike`], and how it is counted and kept.
#[derive(Clone, Copy, Debug)]
pub struct Strike<'a> {
    /// The flagged event's id: a strike with an id recorded already is not recorded again.
    pub id: &'a str,
    /// When it was flagged (unix ms).
    pub at_ms: i64,
    /// The window the strikes are counted in, ending at `at_ms`.
    pub window: Duration,
    /// How long the player's strikes are kept after the latest (at least a `window`).
    pub keep: Duration,
}

/// One attempt to record with [`Attempts::attempt`], and the limit it is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// A fresh id per attempt: an id recorded already counts once.
    pub id: &'a str,
    /// When it is made (unix ms).
    pub at_ms: i64,
    /// The window the attempts are counted in, ending at `at_ms`.
    pub window: Duration,
    /// Most attempts within the window: at it, the attempt is refused and not recorded.
    pub max: u32,
}

/// Per-player event rate windows.
#[async_trait]
pub trait RateLimiter: Health {
    /// Counts `n` events for `player` in the current one-second window against `max`.
    /// A refused hit is not counted.
    async fn rate_hit(&self, player: &str, n: u32, max: u32) -> PortResult<RateDecision>;
    /// [`Self::rate_hit`] for each `(player, n)` of `hits`, in order, in one round trip where
    /// the store can; a player refused once is refused (with that answer, not counted) for the
    /// rest of the call, so hits of one event each admit a player's events while room lasts.
    async fn rate_hits(&self, hits: &[(&str, u32)], max: u32) -> PortResult<Vec<RateDecision>> {
        let mut refused: HashMap<&str, RateDecision> = HashMap::new();
        let mut out = Vec::with_capacity(hits.len());
        for &(player, n) in hits {
            let decision = match refused.get(player) {
                Some(&decision) => decision,
                None => self.rate_hit(player, n, max).await?,
            };
            if decision != RateDecision::Allowed {
                refused.insert(player, decision);
            }
            out.push(decision);
        }
        Ok(out)
    }
}

/// Fairness strikes and the blocks they lead to.
#[async_trait]
pub trait Blocklist: Health {
    /// Blocks `player` until unix milliseconds `until_ms` for strikes up to `from_ms`, unless
    /// blocked longer already (a redelivered strike never shortens nor needlessly restarts a
    /// block) or unblocked since (an unblock forgot those strikes, also one landing while the
    /// block was being decided); whether the block's end moved.
    async fn block(&self, player: &str, from_ms: i64, until_ms: i64) -> PortResult<bool>;
    /// When the player's block ends (unix ms), if blocked now.
    async fn blocked_until(&self, player: &str) -> PortResult<Option<i64>>;
    /// [`Self::blocked_until`] for each of `players`, in order, in one round trip where the
    /// store can.
    async fn blocked_until_each(&self, players: &[&str]) -> PortResult<Vec<Option<i64>>> {
        let mut out = Vec::with_capacity(players.len());
        for player in players {
            out.push(self.blocked_until(player).await?);
        }
        Ok(out)
    }
    /// Records `strike` for `player`, unless its id is recorded already (a redelivered batch
    /// strikes again harmlessly); returns the strikes in the strike's `window` that ends at its
    /// `at_ms` (later ones not counted: a late strike is judged on its own window). The
    /// player's strikes are kept until `keep` after the latest (at least a `window`), so a
    /// strike redelivered that late still finds the ones of its window.
    async fn add_strike(&self, player: &str, strike: Strike<'_>) -> PortResult<u32>;
    /// The windows a strike at `from_ms` counts in: each of the player's strikes from `from_ms`
    /// to a `window` later, oldest first, with the strikes in the `window` ending at it. A
    /// strike recorded late (after a crash) can fill the window of a later one.
    async fn strike_windows(
        &self,
        player: &str,
        from_ms: i64,
        window: Duration,
    ) -> PortResult<Vec<(i64, u32)>>;
    /// Strikes within the last `window` before `now_ms`.
    async fn strikes(&self, player: &str, now_ms: i64, window: Duration) -> PortResult<u32>;
    /// Lifts a player's block and forgets their strikes (an operator's decision); for `keep`
    /// (as long as strikes are kept) a strike from before now recorded again (a redelivered
    /// batch), or a block for such strikes, is not taken, so the decision is not undone.
    async fn unblock(&self, player: &str, keep: Duration) -> PortResult<()>;
}

/// Attempts per key in a sliding window: what throttles logins per address and per account.
#[async_trait]
pub trait Attempts: Health {
    /// Records `attempt` on `key` unless its `max` are within its `window` already, checking
    /// and recording in one step (attempts at the same moment cannot all pass one count);
    /// returns the attempts within the window, this one included, or `None` if refused
    /// (nothing recorded). An id recorded already counts once.
    async fn attempt(&self, key: &str, attempt: Attempt<'_>) -> PortResult<Option<u32>>;
    /// Attempts on `key` within the last `window` before `now_ms`.
    async fn attempts(&self, key: &str, now_ms: i64, window: Duration) -> PortResult<u32>;
    /// Forgets the attempts on `key`: all of them (a successful login clears its account's
    /// failures from its address), or only the attempt `id` (one taken back, never others').
    async fn forget_attempts(&self, key: &str, id: Option<&str>) -> PortResult<()>;
}

/// Serialized read views kept for a short time.
#[async_trait]
pub trait ViewCache: Health {
    /// Reads a cached value.
    async fn cache_get(&self, key: &str) -> PortResult<Option<Bytes>>;
    /// Caches a value for `ttl`.
    async fn cache_put(&self, key: &str, value: Bytes, ttl: Duration) -> PortResult<()>;
    /// Drops a cached value.
    async fn cache_del(&self, key: &str) -> PortResult<()>;
}
