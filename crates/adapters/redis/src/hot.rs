//! Hot state on Redis (idempotency, rate windows, blocks, login attempts, view cache), single node
//! or Redis Cluster.
//!
//! Every operation touches one key, so it is atomic and cluster-safe without hash tags; the
//! batched reads of blocks (one `MGET`) and counts of rate windows (one script on a single node,
//! one per player on a cluster) touch each key on its own. Keys (after an optional prefix):
//! - `hot:idem:<key>` — JSON `{"fp": <fingerprint>, "nonce": <the claim's>?, "answer": {status,
//!   body}?}` with a TTL, a claim's extended by its request while that runs (a claim carries its
//!   call's nonce, an answered record none; a release that knows no nonce reads past it, and a
//!   record without one is never taken for a retry);
//! - `hot:rate:<player>:<unix second>` — the count of one one-second window, gone 2 s later;
//! - `hot:block:<player>` — the block's end (unix ms), expiring with it; after an unblock, minus
//!   the time its strikes were forgotten up to (read as a block long ended, also by a release
//!   that knows no unblock marker), for as long as the strikes' marker;
//! - `hot:strikes:<player>` — a ZSET of strike times, the newest `MAX_STRIKES`, expiring `keep`
//!   (at least a window) after the latest; after an unblock, a member `forgotten` scored minus
//!   the unblock's time (below every strike time) until then;
//! - `hot:attempts:<key>` — a ZSET of attempt times (logins per address and per account), one
//!   member `id:<attempt id>` each, the newest `MAX_STRIKES`, expiring a window after the latest;
//! - `hot:cache:<key>` — cached bytes with a TTL.
//!
//! Scripts that read then write (idempotency, rate windows, strikes, attempts) run as Lua, so concurrent
//! callers on any number of replicas see one order.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use liveops_core::now_ms;
use liveops_core::ports::hot::MAX_STRIKES;
use liveops_core::ports::{
    Attempt, Attempts, Blocklist, IdemState, Idempotency, PortError, PortResult, RateDecision,
    RateLimiter, StoredAnswer, Strike, ViewCache,
};
use redis::Script;
use serde::{Deserialize, Serialize};

use super::conn::{clean_prefix, ttl_ms, RedisConn};

/// How long a rate window's counter outlives the start of its second.
const RATE_KEY_TTL_MS: u64 = 2000;

/// Returns the record under KEYS[1], or claims the key with ARGV[1] (the body ARGV[4], the
/// nonce ARGV[3]) for ARGV[2] ms and returns nil; also nil if the record is that unanswered
/// claim: this call's own, made by a run of it retried after its reply was lost (a cluster
/// client retries so). Only a record holding the nonce's text is decoded.
const IDEM_BEGIN_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return false
end
if string.find(v, ARGV[3], 1, true) then
  local ok, rec = pcall(cjson.decode, v)
  if ok and type(rec) == 'table' and rec['nonce'] == ARGV[3] and rec['fp'] == ARGV[4]
    and (rec['answer'] == nil or rec['answer'] == cjson.null) then
    return false
  end
end
return v
";

/// The start of a script over the idempotency record KEYS[1]: 0 if there is none, an error if
/// it cannot be read, else the record as `rec` (a literal, for `concat!`).
macro_rules! idem_record_lua {
    () => {
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, rec = pcall(cjson.decode, v)
if not ok or type(rec) ~= 'table' or type(rec['fp']) ~= 'string' then
  return redis.error_reply('CORRUPT unreadable idempotency record')
end"#
    };
}

/// Stores the answer ARGV[1] (JSON) for ARGV[2] ms next to the claim's fingerprint, only if the
/// claim is still there and for the body ARGV[3]; returns 1 if stored.
const IDEM_COMPLETE_LUA: &str = concat!(
    idem_record_lua!(),
    r#"
if rec['fp'] ~= ARGV[3] then return 0 end
local out = '{"fp":' .. cjson.encode(rec['fp']) .. ',"answer":' .. ARGV[1] .. '}'
redis.call('SET', KEYS[1], out, 'PX', ARGV[2])
return 1
"#
);

/// Deletes the claim KEYS[1] if it is unanswered and for the body ARGV[1]; returns 1 if deleted.
const IDEM_RELEASE_LUA: &str = concat!(
    idem_record_lua!(),
    r#"
if rec['fp'] ~= ARGV[1] then return 0 end
if rec['answer'] ~= nil and rec['answer'] ~= cjson.null then return 0 end
redis.call('DEL', KEYS[1])
return 1
"#
);

/// Keeps the claim KEYS[1] at least ARGV[2] ms (never shortened) if it is unanswered and for the
/// body ARGV[1]; returns 1 if it is.
const IDEM_EXTEND_LUA: &str = concat!(
    idem_record_lua!(),
    r#"
if rec['fp'] ~= ARGV[1] then return 0 end
if rec['answer'] ~= nil and rec['answer'] ~= cjson.null then return 0 end
local left = redis.call('PTTL', KEYS[1])
if left >= 0 and left < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"#
);

/// Adds ARGV[2 + i] hits to the window KEYS[i], for each key in order, unless that passes the
/// limit ARGV[1]; a window lives ARGV[2] ms. A key may repeat: once refused, it is refused for
/// the rest of the call. Returns, per key, 1 if counted, 0 if refused (and not counted).
const RATE_LUA: &str = r"
local max = tonumber(ARGV[1])
local refused, out = {}, {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[i + 2])
  out[i] = 0
  if not refused[key] then
    local count = tonumber(redis.call('GET', key) or '0')
    if count + n > max then
      refused[key] = true
    else
      redis.call('INCRBY', key, n)
      redis.call('PEXPIRE', key, ARGV[2])
      out[i] = 1
    end
  end
end
return out
";

/// Sets the block KEYS[1] to end at ARGV[1] (living ARGV[2] ms) for strikes up to ARGV[3],
/// unless it ends later already or an unblock (a negative value, minus the time it forgot up
/// to) forgot those strikes (a key that is neither is replaced); returns 1 if its end moved.
const BLOCK_LUA: &str = r"
local ok, held = pcall(redis.call, 'GET', KEYS[1])
local current = ok and tonumber(held or '0') or nil
if current ~= nil and current < 0 and tonumber(ARGV[3]) <= -current then return 0 end
if current ~= nil and current >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Records a strike at ARGV[1] (member ARGV[2]; a member already there keeps its first time;
/// none at or before an unblock's `forgotten` time), forgets all but the newest ARGV[4] (not
/// those a window before the newest: a late strike still finds them in its window), keeps the
/// set at least ARGV[5] ms, and returns the strikes after ARGV[3] up to ARGV[6].
const STRIKE_LUA: &str = r"
local forgotten = redis.call('ZSCORE', KEYS[1], 'forgotten')
if forgotten and tonumber(ARGV[1]) <= -tonumber(forgotten) then
  return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[3], ARGV[6])
end
redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[2])
local lo = forgotten and 1 or 0
local n = redis.call('ZCARD', KEYS[1]) - lo
local max = tonumber(ARGV[4])
if n > max then redis.call('ZREMRANGEBYRANK', KEYS[1], lo, lo + n - max - 1) end
local keep = tonumber(ARGV[5])
if keep < 1 then keep = 1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or keep > ttl then redis.call('PEXPIRE', KEYS[1], keep) end
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[3], ARGV[6])
";

/// Records the attempt ARGV[2] at ARGV[1] in KEYS[1] unless ARGV[4] or more fall after ARGV[3]
/// already (a member already there counts once), forgets all but the newest ARGV[5], keeps the
/// set at least ARGV[6] ms; returns the attempts after ARGV[3], or -1 if refused (nothing
/// recorded).
const ATTEMPT_LUA: &str = r"
local after = '(' .. ARGV[3]
local n = redis.call('ZCOUNT', KEYS[1], after, '+inf')
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return n end
if n >= tonumber(ARGV[4]) then return -1 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local size = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[5])
if size > max then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, size - max - 1) end
local keep = tonumber(ARGV[6])
if keep < 1 then keep = 1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or keep > ttl then redis.call('PEXPIRE', KEYS[1], keep) end
return redis.call('ZCOUNT', KEYS[1], after, '+inf')
";

/// Forgets the strikes of KEYS[1]: only the member `forgotten` stays, scored minus the time it
/// forgets up to (ARGV[1], the unblock's time, or the newest strike or earlier unblock if later:
/// another replica's clock may run ahead), below every strike time, for ARGV[2] ms, so a strike
/// at or before it recorded again (a redelivered batch) is not recorded; returns that time.
const FORGET_STRIKES_LUA: &str = r"
local upto = tonumber(ARGV[1])
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) > upto then upto = tonumber(newest[2]) end
local before = redis.call('ZSCORE', KEYS[1], 'forgotten')
if before and -tonumber(before) > upto then upto = -tonumber(before) end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[1], -upto, 'forgotten')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return upto
";

/// Marks the block KEYS[1] lifted by an unblock that forgot up to minus ARGV[1] (living ARGV[2]
/// ms), unless a mark for as late a time or later is there (another unblock's, whose `SET`
/// landed first); returns 1 if marked.
const UNBLOCK_MARK_LUA: &str = r"
local ok, held = pcall(redis.call, 'GET', KEYS[1])
local current = ok and tonumber(held or '0') or nil
if current ~= nil and current <= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Each strike with a score in `[ARGV[1], ARGV[2])`, oldest first, and the strikes in the
/// `ARGV[3]` ms ending at it: a flat list of (time, count).
const STRIKE_WINDOWS_LUA: &str = r"
local w = tonumber(ARGV[3])
local got = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '(' .. ARGV[2], 'WITHSCORES')
local out = {}
for j = 2, #got, 2 do
  local s = tonumber(got[j])
  out[#out + 1] = s
  out[#out + 1] = redis.call('ZCOUNT', KEYS[1], '(' .. string.format('%d', s - w),
    string.format('%d', s))
end
return out
";

/// The stored state of an idempotency key. Unknown fields are read past, as the previous
/// release reads `nonce`.
#[derive(Debug, Serialize, Deserialize)]
struct IdemRecord {
    fp: String,
    /// The claiming call's nonce (none in an answered record, nor in a claim of a release
    /// before nonces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer: Option<StoredAnswer>,
}

/// What tells one `idem_begin` call's claim from every other's: 128 random bits, kept in the
/// claim and never shown outside it. Reused only to run the same call again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimNonce(String);

impl ClaimNonce {
    /// A new random nonce.
    pub fn new() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()))
    }
}

impl Default for ClaimNonce {
    fn default() -> Self {
        Self::new()
    }
}

struct Scripts {
    idem_begin: Script,
    idem_complete: Script,
    idem_release: Script,
    idem_extend: Script,
    rate: Script,
    strike: Script,
    attempt: Script,
    strike_windows: Script,
    forget_strikes: Script,
    unblock_mark: Script,
    block: Script,
}

/// Hot state on Redis: shared by every replica of every service.
pub struct RedisHotState {
    conn: RedisConn,
    prefix: String,
    scripts: Scripts,
}

super::conn::store_debug_and_health!(RedisHotState);

/// The logs of times kept in sorted sets, one per key: a player's strikes, or the attempts on
/// a key.
#[derive(Clone, Copy)]
enum TimeLog {
    Strikes,
    Attempts,
}

impl TimeLog {
    /// The key kind of its sets.
    fn kind(self) -> &'static str {
        match self {
            TimeLog::Strikes => "strikes",
            TimeLog::Attempts => "attempts",
        }
    }

    /// The op names (for metrics and errors) of a record and of a count.
    fn ops(self) -> (&'static str, &'static str) {
        match self {
            TimeLog::Strikes => ("hot.add_strike", "hot.strikes"),
            TimeLog::Attempts => ("hot.attempt", "hot.attempts"),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> PortError {
    PortError::Corrupt(format!("{what}: {err}"))
}

/// The end of a block read back as `until` (absent, or an unblock's negative mark: none), if
/// after `now`.
fn block_end(until: Option<String>, now: i64) -> PortResult<Option<i64>> {
    let Some(until) = until else {
        return Ok(None);
    };
    let until: i64 = until
        .parse()
        .map_err(|e| corrupt("reading a block's end", e))?;
    Ok((until > now).then_some(until))
}

impl RedisHotState {
    /// A store over `conn`, with keys under `hot:`.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            prefix: String::new(),
            scripts: Scripts {
                idem_begin: Script::new(IDEM_BEGIN_LUA),
                idem_complete: Script::new(IDEM_COMPLETE_LUA),
                idem_release: Script::new(IDEM_RELEASE_LUA),
                idem_extend: Script::new(IDEM_EXTEND_LUA),
                rate: Script::new(RATE_LUA),
                strike: Script::new(STRIKE_LUA),
                attempt: Script::new(ATTEMPT_LUA),
                strike_windows: Script::new(STRIKE_WINDOWS_LUA),
                forget_strikes: Script::new(FORGET_STRIKES_LUA),
                unblock_mark: Script::new(UNBLOCK_MARK_LUA),
                block: Script::new(BLOCK_LUA),
            },
        }
    }

    /// Puts `prefix` in front of every key (to share a server; tests use one per run).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = clean_prefix(prefix);
        self
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}hot:{kind}:{id}", self.prefix)
    }

    /// [`Idempotency::idem_begin`] under `nonce`, which the claim keeps: a claim found with the
    /// same nonce (an earlier run of this call, its reply lost) answers `Fresh`, one with another
    /// nonce or none (a claim of the previous release) `InFlight`. A caller that retries a
    /// begin itself passes the nonce of the first try; `idem_begin` draws a new one.
    pub async fn idem_claim(
        &self,
        key: &str,
        fingerprint: &str,
        nonce: &ClaimNonce,
        ttl: Duration,
    ) -> PortResult<IdemState> {
        let claim = serde_json::to_string(&IdemRecord {
            fp: fingerprint.to_owned(),
            nonce: Some(nonce.0.clone()),
            answer: None,
        })
        .map_err(|e| corrupt("encoding an idempotency claim", e))?;
        let mut call = self.scripts.idem_begin.prepare_invoke();
        call.key(self.key("idem", key))
            .arg(claim)
            .arg(ttl_ms(ttl))
            .arg(nonce.0.as_str())
            .arg(fingerprint);
        let existing: Option<String> = self.conn.invoke("hot.idem_begin", &call).await?;
        let Some(existing) = existing else {
            return Ok(IdemState::Fresh);
        };
        let record: IdemRecord = serde_json::from_str(&existing)
            .map_err(|e| corrupt("reading an idempotency record", e))?;
        Ok(match record {
            IdemRecord { fp, .. } if fp != fingerprint => IdemState::Mismatch,
            IdemRecord {
                answer: Some(answer),
                ..
            } => IdemState::Done(answer),
            IdemRecord { answer: None, .. } => IdemState::InFlight,
        })
    }

    /// Deletes the key `key` (built with [`Self::key`]); `op` names the call in metrics.
    async fn delete(&self, op: &'static str, key: String) -> PortResult<()> {
        let _: i64 = self.conn.query(op, redis::cmd("DEL").arg(key)).await?;
        Ok(())
    }
}

#[async_trait]
impl Idempotency for RedisHotState {
    /// Each call claims under a nonce of its own (see [`RedisHotState::idem_claim`]), so a run
    /// of the script the client retried after losing its reply answers `Fresh` again.
    async fn idem_begin(
        &self,
        key: &str,
        fingerprint: &str,
        ttl: Duration,
    ) -> PortResult<IdemState> {
        self.idem_claim(key, fingerprint, &ClaimNonce::new(), ttl)
            .await
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
        let answer =
            serde_json::to_string(&answer).map_err(|e| corrupt("encoding an answer", e))?;
        let mut call = self.scripts.idem_complete.prepare_invoke();
        call.key(self.key("idem", key))
            .arg(answer)
            .arg(ttl_ms(ttl))
            .arg(fingerprint);
        let _stored: i64 = self.conn.invoke("hot.idem_complete", &call).await?;
        Ok(())
    }

    async fn idem_release(&self, key: &str, fingerprint: &str) -> PortResult<()> {
        let mut call = self.scripts.idem_release.prepare_invoke();
        call.key(self.key("idem", key)).arg(fingerprint);
        let _released: i64 = self.conn.invoke("hot.idem_release", &call).await?;
        Ok(())
    }

    async fn idem_extend(&self, key: &str, fingerprint: &str, ttl: Duration) -> PortResult<bool> {
        let mut call = self.scripts.idem_extend.prepare_invoke();
        call.key(self.key("idem", key))
            .arg(fingerprint)
            .arg(ttl_ms(ttl));
        let held: i64 = self.conn.invoke("hot.idem_extend", &call).await?;
        Ok(held == 1)
    }
}

/// Most players whose rate windows a cluster counts at once (each is one script call).
const CLUSTER_RATE_CALLS: usize = 256;

impl RedisHotState {
    /// Counts `hits` (`(player, n)`, a player's entries in order) in the windows of `second`
    /// with one script call: on a cluster, every entry must be the same player's.
    async fn count_hits(
        &self,
        hits: &[(&str, u32)],
        max: u32,
        second: i64,
    ) -> PortResult<Vec<RateDecision>> {
        let mut call = self.scripts.rate.prepare_invoke();
        call.arg(max).arg(RATE_KEY_TTL_MS);
        for &(player, n) in hits {
            call.key(self.key("rate", &format!("{player}:{second}")))
                .arg(n);
        }
        let counted: Vec<i64> = self.conn.invoke("hot.rate_hit", &call).await?;
        if counted.len() != hits.len() {
            return Err(corrupt(
                "counting rate windows",
                format!("{} answers to {} hits", counted.len(), hits.len()),
            ));
        }
        Ok(counted
            .into_iter()
            .map(|c| match c {
                1 => RateDecision::Allowed,
                _ => RateDecision::Limited { retry_after_s: 1 },
            })
            .collect())
    }
}

#[async_trait]
impl RateLimiter for RedisHotState {
    async fn rate_hit(&self, player: &str, n: u32, max: u32) -> PortResult<RateDecision> {
        let second = now_ms().div_euclid(1000);
        let decisions = self.count_hits(&[(player, n)], max, second).await?;
        Ok(decisions
            .into_iter()
            .next()
            .unwrap_or(RateDecision::Limited { retry_after_s: 1 }))
    }

    /// One script call on a single node; on a cluster one per player (their windows lie in
    /// different slots), sent side by side.
    async fn rate_hits(&self, hits: &[(&str, u32)], max: u32) -> PortResult<Vec<RateDecision>> {
        let second = now_ms().div_euclid(1000);
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        if !self.conn.is_cluster() {
            return self.count_hits(hits, max, second).await;
        }
        // Each player's entries, in order, with where their answers go.
        let mut players: Vec<(Vec<usize>, Vec<(&str, u32)>)> = Vec::new();
        let mut at: HashMap<&str, usize> = HashMap::new();
        for (i, &hit) in hits.iter().enumerate() {
            let k = *at.entry(hit.0).or_insert_with(|| {
                players.push((Vec::new(), Vec::new()));
                players.len() - 1
            });
            players[k].0.push(i);
            players[k].1.push(hit);
        }
        let calls: Vec<_> = players
            .iter()
            .map(|(_, own)| self.count_hits(own, max, second))
            .collect();
        let answers: Vec<Vec<RateDecision>> = stream::iter(calls)
            .buffered(CLUSTER_RATE_CALLS)
            .try_collect()
            .await?;
        let mut out = vec![RateDecision::Limited { retry_after_s: 1 }; hits.len()];
        for ((entries, _), decisions) in players.iter().zip(answers) {
            for (&i, decision) in entries.iter().zip(decisions) {
                out[i] = decision;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Blocklist for RedisHotState {
    async fn block(&self, player: &str, from_ms: i64, until_ms: i64) -> PortResult<bool> {
        let left = until_ms.saturating_sub(now_ms());
        if left <= 0 {
            return Ok(false);
        }
        let ttl = ttl_ms(Duration::from_millis(left.unsigned_abs()));
        let mut call = self.scripts.block.prepare_invoke();
        call.key(self.key("block", player))
            .arg(until_ms)
            .arg(ttl)
            .arg(from_ms);
        let moved: i64 = self.conn.invoke("hot.block", &call).await?;
        Ok(moved == 1)
    }

    async fn blocked_until(&self, player: &str) -> PortResult<Option<i64>> {
        let until: Option<String> = self
            .conn
            .query(
                "hot.blocked_until",
                redis::cmd("GET").arg(self.key("block", player)),
            )
            .await?;
        block_end(until, now_ms())
    }

    /// One `MGET` (a cluster's client splits it by slot and sends the parts side by side).
    async fn blocked_until_each(&self, players: &[&str]) -> PortResult<Vec<Option<i64>>> {
        if players.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = players.iter().map(|p| self.key("block", p)).collect();
        let found: Vec<Option<String>> = self
            .conn
            .query("hot.blocked_until", redis::cmd("MGET").arg(keys))
            .await?;
        if found.len() != players.len() {
            return Err(corrupt(
                "reading blocks",
                format!("{} answers to {} players", found.len(), players.len()),
            ));
        }
        let now = now_ms();
        found
            .into_iter()
            .map(|until| block_end(until, now))
            .collect()
    }

    async fn add_strike(&self, player: &str, strike: Strike<'_>) -> PortResult<u32> {
        // Recorded once (`ZADD NX` keeps its first time), counting the window ending at it; the
        // set kept while a late strike can still find this one in its window.
        let at = strike.at_ms;
        let keep = kept_for(at, millis(strike.keep.max(strike.window)));
        let mut call = self.scripts.strike.prepare_invoke();
        call.key(self.key(TimeLog::Strikes.kind(), player))
            .arg(at)
            .arg(member(strike.id))
            .arg(at.saturating_sub(millis(strike.window)))
            .arg(MAX_STRIKES)
            .arg(keep)
            .arg(at);
        self.conn.invoke(TimeLog::Strikes.ops().0, &call).await
    }

    async fn strike_windows(
        &self,
        player: &str,
        from_ms: i64,
        window: Duration,
    ) -> PortResult<Vec<(i64, u32)>> {
        let window = millis(window);
        let mut call = self.scripts.strike_windows.prepare_invoke();
        call.key(self.key(TimeLog::Strikes.kind(), player))
            .arg(from_ms)
            .arg(from_ms.saturating_add(window))
            .arg(window);
        let flat: Vec<i64> = self.conn.invoke("hot.strike_windows", &call).await?;
        Ok(flat
            .chunks_exact(2)
            .map(|p| (p[0], u32::try_from(p[1]).unwrap_or(u32::MAX)))
            .collect())
    }

    async fn strikes(&self, player: &str, now_ms: i64, window: Duration) -> PortResult<u32> {
        self.count(TimeLog::Strikes, player, now_ms, window).await
    }

    async fn unblock(&self, player: &str, keep: Duration) -> PortResult<()> {
        // Two keys: two commands (each may live on another cluster node). The strikes are
        // forgotten first: if the second fails, the player is still blocked (and the caller,
        // told so, may try again), never unblocked with strikes that would block again. The
        // block is replaced by the time forgotten up to, negated: a block being decided on
        // those strikes meanwhile (read before they were forgotten) is refused when it lands.
        // Of two unblocks at once, the later time's mark stays whichever lands last.
        let ttl = ttl_ms(keep);
        let mut call = self.scripts.forget_strikes.prepare_invoke();
        call.key(self.key(TimeLog::Strikes.kind(), player))
            .arg(now_ms())
            .arg(ttl);
        let upto: i64 = self.conn.invoke("hot.unblock", &call).await?;
        let mut call = self.scripts.unblock_mark.prepare_invoke();
        call.key(self.key("block", player))
            .arg(upto.saturating_neg().min(-1))
            .arg(ttl);
        let _marked: i64 = self.conn.invoke("hot.unblock", &call).await?;
        Ok(())
    }
}

impl RedisHotState {
    /// How many times in `key`'s set of `log` fall within `window` before `now_ms`.
    async fn count(
        &self,
        log: TimeLog,
        key: &str,
        now_ms: i64,
        window: Duration,
    ) -> PortResult<u32> {
        let after = now_ms.saturating_sub(millis(window));
        self.conn
            .query(
                log.ops().1,
                redis::cmd("ZCOUNT")
                    .arg(self.key(log.kind(), key))
                    .arg(format!("({after}"))
                    .arg("+inf"),
            )
            .await
    }
}

/// The member of the strike or attempt `id` in its set.
fn member(id: &str) -> String {
    format!("id:{id}")
}

/// A set's time to live (ms) so that it lasts `keep_ms` past a time at `at_ms`.
fn kept_for(at_ms: i64, keep_ms: i64) -> u64 {
    let left = at_ms.saturating_add(keep_ms).saturating_sub(now_ms());
    ttl_ms(Duration::from_millis(left.max(0).unsigned_abs()))
}

#[async_trait]
impl Attempts for RedisHotState {
    async fn attempt(&self, key: &str, attempt: Attempt<'_>) -> PortResult<Option<u32>> {
        let (at, window) = (attempt.at_ms, millis(attempt.window));
        // Kept while this attempt can still fall inside a window it is counted in.
        let keep = kept_for(at, window);
        let mut call = self.scripts.attempt.prepare_invoke();
        call.key(self.key(TimeLog::Attempts.kind(), key))
            .arg(at)
            .arg(member(attempt.id))
            .arg(at.saturating_sub(window))
            .arg(attempt.max)
            .arg(MAX_STRIKES)
            .arg(keep);
        let counted: i64 = self.conn.invoke(TimeLog::Attempts.ops().0, &call).await?;
        Ok(u32::try_from(counted).ok())
    }

    async fn attempts(&self, key: &str, now_ms: i64, window: Duration) -> PortResult<u32> {
        self.count(TimeLog::Attempts, key, now_ms, window).await
    }

    async fn forget_attempts(&self, key: &str, id: Option<&str>) -> PortResult<()> {
        let key = self.key(TimeLog::Attempts.kind(), key);
        let Some(id) = id else {
            return self.delete("hot.forget_attempts", key).await;
        };
        let mut forget = redis::cmd("ZREM");
        forget.arg(key).arg(member(id));
        let _: i64 = self.conn.query("hot.forget_attempts", &forget).await?;
        Ok(())
    }
}

#[async_trait]
impl ViewCache for RedisHotState {
    async fn cache_get(&self, key: &str) -> PortResult<Option<Bytes>> {
        let value: Option<Vec<u8>> = self
            .conn
            .query(
                "hot.cache_get",
                redis::cmd("GET").arg(self.key("cache", key)),
            )
            .await?;
        Ok(value.map(Bytes::from))
    }

    async fn cache_put(&self, key: &str, value: Bytes, ttl: Duration) -> PortResult<()> {
        self.conn
            .query(
                "hot.cache_put",
                redis::cmd("SET")
                    .arg(self.key("cache", key))
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(ttl_ms(ttl)),
            )
            .await
    }

    async fn cache_del(&self, key: &str) -> PortResult<()> {
        self.delete("hot.cache_del", self.key("cache", key)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn records_read_back() {
        let claim = serde_json::to_string(&IdemRecord {
            fp: "abc".into(),
            nonce: None,
            answer: None,
        })
        .unwrap();
        assert_eq!(claim, r#"{"fp":"abc"}"#);
        // What the completion script writes, escapes as Lua's cjson makes them.
        let done: IdemRecord = serde_json::from_str(
            r#"{"fp":"a\/b","answer":{"status":202,"body":"{\"eventId\":\"x\"}"}}"#,
        )
        .unwrap();
        assert_eq!(done.fp, "a/b");
        assert_eq!(
            done.answer,
            Some(StoredAnswer {
                status: 202,
                body: r#"{"eventId":"x"}"#.into()
            })
        );
    }

    /// The record as the release before nonces read it: `fp` and `answer`, nothing else.
    #[derive(Debug, Deserialize)]
    struct PreviousRelease {
        fp: String,
        answer: Option<StoredAnswer>,
    }

    #[test]
    fn claims_with_a_nonce_read_in_both_releases() {
        let nonce = ClaimNonce::new().0;
        assert_eq!(nonce.len(), 32);
        assert_ne!(nonce, ClaimNonce::new().0);
        let claim = serde_json::to_string(&IdemRecord {
            fp: "abc".into(),
            nonce: Some(nonce.clone()),
            answer: None,
        })
        .unwrap();
        assert_eq!(claim, format!(r#"{{"fp":"abc","nonce":"{nonce}"}}"#));
        // A pod of the previous release reads a new claim as a claim of that body (in flight).
        let old: PreviousRelease = serde_json::from_str(&claim).unwrap();
        assert_eq!((old.fp.as_str(), old.answer), ("abc", None));
        // And this release reads the previous one's claims (no nonce): never a call's own.
        let new: IdemRecord = serde_json::from_str(r#"{"fp":"abc"}"#).unwrap();
        assert_eq!(
            (new.fp.as_str(), new.nonce, new.answer),
            ("abc", None, None)
        );
    }
}
