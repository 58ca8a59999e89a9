//! [`RedisBus`]: the [`Bus`] on Redis Streams (`BUS_KIND=redis`): a topic is `BUS_PARTITIONS`
//! streams by player hash, consumers of a group share them through leases so each player's events
//! stay in order, dead letters and replays per group. The design, the key layout and the failure
//! handling: `docs/adr/0010-redis-streams-bus.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use liveops_core::ports::{
    drain_in_chunks, BusOptions, DeadLetterRequest, Delivery, Health, Message, PollRequest,
};
use liveops_core::{Bus, PortError, PortResult};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult, Script, Value};
use tokio::time::Instant;

use crate::conn::{tcp_settings, Watched};
use crate::replicas::Followers;

/// Default `MAXLEN ~` of each stream (per partition, retry and dead-letter stream): the bound of
/// one a group stopped reading (polls drop what every group acked).
pub const DEFAULT_MAX_LEN: u64 = 1_000_000;

/// `MAXLEN ~` of a group's dead letters and of its retry stream, whatever `BUS_REDIS_MAX_LEN`
/// says: dead letters are the last copy of the events they hold.
pub const DEAD_MAX_LEN: u64 = DEFAULT_MAX_LEN;

/// Longest any single Redis call may take before the bus answers `Unavailable`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Most messages one publish script appends; bigger publishes take several round trips.
pub const PUBLISH_CHUNK: usize = 1000;

/// Most messages one poll hands out, whatever `max` asks.
pub const MAX_POLL: usize = 1000;

/// Most dead letters one replay step moves.
const REPLAY_CHUNK: usize = 1000;

/// Most partitions per topic.
const MAX_PARTITIONS: u32 = 1024;

/// Idle connections of their own kept for later blocking waits and replicated publishes.
const IDLE_BLOCKERS: usize = 64;

/// How many replicas must hold a publish before it counts as done (Redis `WAIT`), and how long
/// to wait for them (`BUS_REDIS_REPLICAS`, `BUS_REDIS_REPLICA_WAIT_MS`,
/// `BUS_REDIS_REPLICAS_AWAY`). With none (the default) a publish is done once the primary has it,
/// and a failover to a replica that had not yet copied it loses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaAcks {
    /// The cache's replicas; without `away`, every publish needs all of them.
    pub replicas: u32,
    /// Longest wait for them; fewer than [`ReplicaAcks::minimum`] by then makes the publish
    /// `Unavailable`.
    pub wait: Duration,
    /// How many of `replicas` may be away (a node being patched) while publishes go on
    /// (ADR 0022): then each waits for every replica attached and caught up, and needs
    /// `replicas - away` of them.
    pub away: u32,
}

impl ReplicaAcks {
    /// The fewest confirmations a publish is accepted with.
    pub fn minimum(&self) -> u32 {
        self.replicas.saturating_sub(self.away)
    }
}

/// Shortest and longest lease on a slot (and membership of a group): a consumer renews both at
/// every poll and, while it holds deliveries, every third of a lease ([`HEARTBEAT`]), so a
/// process that died loses them within [`LEASE_MAX`] whatever the visibility timeout.
const LEASE_MIN: Duration = Duration::from_secs(1);
const LEASE_MAX: Duration = Duration::from_secs(5);

/// The pseudo-consumer that holds the pending entries of consumers dropped from a group (not
/// seen for a lease period), until the owner of each slot takes them back at its next poll.
const ORPHANS: &str = "~orphans";

/// Longest single blocking wait, and the nap of a consumer with nothing it may read.
const SLICE_MAX: Duration = Duration::from_secs(1);
const IDLE_NAP: Duration = Duration::from_millis(200);

/// The partition (of `partitions`) a message with this key goes to: FNV-1a 64 of the key's bytes,
/// modulo the partition count (at least 1). Stable across processes, builds and platforms.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    let h = fnv1a(key.as_bytes());
    u32::try_from(h % u64::from(partitions.max(1))).unwrap_or(0)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Names of a topic's keys.
struct Keys {
    tag: String,
    partitions: u32,
}

impl Keys {
    fn new(topic: &str, partitions: u32) -> Self {
        Self {
            tag: format!("bus:{{{topic}}}"),
            partitions,
        }
    }

    fn seq(&self) -> String {
        format!("{}:seq", self.tag)
    }

    fn pin(&self) -> String {
        pin_key(&self.tag)
    }

    fn partition(&self, i: u32) -> String {
        format!("{}:p:{i}", self.tag)
    }

    fn retry(&self, group: &str) -> String {
        format!("{}:retry:{group}", self.tag)
    }

    fn dead(&self, group: &str) -> String {
        format!("{}:dlq:{group}", self.tag)
    }

    fn members(&self, group: &str) -> String {
        format!("{}:members:{group}", self.tag)
    }

    /// Number of slots a group reads: the partitions and its retry stream.
    fn slots(&self) -> u32 {
        self.partitions + 1
    }

    /// The stream of a slot.
    fn slot_stream(&self, group: &str, slot: u32) -> String {
        if slot < self.partitions {
            self.partition(slot)
        } else {
            self.retry(group)
        }
    }

    fn lease(&self, group: &str, slot: u32) -> String {
        format!("{}:lease:{group}:{}", self.tag, self.slot_name(slot))
    }

    fn slot_name(&self, slot: u32) -> String {
        if slot < self.partitions {
            slot.to_string()
        } else {
            "r".to_owned()
        }
    }

    /// The slot a delivery id names, and its stream id.
    fn parse_id<'a>(&self, id: &'a str) -> Option<(u32, &'a str)> {
        let (slot, stream_id) = id.split_once(':')?;
        let slot = if slot == "r" {
            self.partitions
        } else {
            slot.parse().ok().filter(|s| *s < self.partitions)?
        };
        Some((slot, stream_id))
    }
}

fn pin_key(tag: &str) -> String {
    format!("{tag}:partitions")
}

/// Appends the topic sequence and one entry per message.
/// KEYS: sequence, partition pin, then the partition streams used.
/// ARGV: max_len, partitions, n, then n × (index of the stream in KEYS, key, payload).
const PUBLISH: &str = r"
redis.call('SET', KEYS[2], ARGV[2], 'NX')
local n = tonumber(ARGV[3])
local s = redis.call('INCRBY', KEYS[1], n) - n
local a = 4
for _ = 1, n do
  s = s + 1
  redis.call('XADD', KEYS[tonumber(ARGV[a])], 'MAXLEN', '~', ARGV[1], '*',
    's', string.format('%d', s), 'k', ARGV[a + 1], 'p', ARGV[a + 2])
  a = a + 3
end
return n
";

/// Creates the group at `0` on every stream given (creating the streams), ignoring BUSYGROUP.
/// KEYS: the streams. ARGV: group.
const ENSURE: &str = r"
for i = 1, #KEYS do
  local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[i], ARGV[1], '0', 'MKSTREAM')
  if not ok then
    local msg = type(err) == 'table' and err.err or tostring(err)
    if not string.find(msg, 'BUSYGROUP', 1, true) then
      return redis.error_reply(msg)
    end
  end
end
return #KEYS
";

/// One poll step for one consumer: membership, leases, reclaim / dead-letter, read new entries.
/// KEYS: members, dead letters, then per slot i (0-based): stream, lease.
/// ARGV: consumer, group, lease_ms, visibility_ms, max, max_deliveries, dead letters' max_len,
/// first slot to try, `1` if this consumer holds no delivery (its own pending entries are then
/// lost answers or left from a previous life under the same name, and come back at once),
/// orphans' name, then the topic's groups this process ensured.
/// Returns {dead letters made, {stream, id to wait after, ...}, {slot, id, deliveries, s, k, p, ...},
/// entries trimmed}.
const STEP: &str = r"
local TRIM_CHUNK = 1000
local me, grp = ARGV[1], ARGV[2]
local lease_ms, vis = tonumber(ARGV[3]), tonumber(ARGV[4])
local room, maxd, maxlen = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local start = tonumber(ARGV[8])
local fresh, orphans = ARGV[9] == '1', ARGV[10]
local slots = (#KEYS - 2) / 2
local function int(x) return string.format('%d', x) end
local function stream(i) return KEYS[3 + 2 * i] end
local function lease(i) return KEYS[4 + 2 * i] end
local function fields(flat)
  local f = {}
  for j = 1, #flat, 2 do f[flat[j]] = flat[j + 1] end
  return f
end
local out = {}
local function push(i, id, n, f)
  out[#out + 1] = i
  out[#out + 1] = id
  out[#out + 1] = n
  out[#out + 1] = tonumber(f['s']) or 0
  out[#out + 1] = f['k'] or ''
  out[#out + 1] = f['p'] or ''
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Members: forget those not seen for a lease period (a live one renews at every poll and, while
-- it holds deliveries, by heartbeat): what they held goes to the orphans, which the owner of each
-- slot takes back at once below, instead of after the visibility timeout.
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now - lease_ms))
for _, c in ipairs(gone) do
  redis.call('ZREM', KEYS[1], c)
  for i = 0, slots - 1 do
    local ok, p = pcall(redis.call, 'XPENDING', stream(i), grp, '-', '+', 1000, c)
    while ok and #p > 0 do
      local ids = {}
      for _, e in ipairs(p) do ids[#ids + 1] = e[1] end
      -- JUSTID: the delivery count stays as it was.
      ids[#ids + 1] = 'JUSTID'
      redis.call('XCLAIM', stream(i), grp, orphans, 0, unpack(ids))
      ok, p = pcall(redis.call, 'XPENDING', stream(i), grp, '-', '+', 1000, c)
    end
    if ok then pcall(redis.call, 'XGROUP', 'DELCONSUMER', stream(i), grp, c) end
  end
end
redis.call('ZADD', KEYS[1], int(now), me)
redis.call('PEXPIRE', KEYS[1], int(lease_ms * 2))
local share = math.ceil(slots / redis.call('ZCARD', KEYS[1]))

-- Leases: keep up to the share, give back the rest, take free ones.
local held = {}
for i = 0, slots - 1 do
  if redis.call('GET', lease(i)) == me then held[#held + 1] = i end
end
while #held > share do
  redis.call('DEL', lease(table.remove(held)))
end
for _, i in ipairs(held) do redis.call('PEXPIRE', lease(i), int(lease_ms)) end
if #held < share then
  for j = 0, slots - 1 do
    if #held >= share then break end
    local i = (start + j) % slots
    if redis.call('SET', lease(i), me, 'NX', 'PX', int(lease_ms)) then held[#held + 1] = i end
  end
  table.sort(held)
end

-- Whether stream id a comes before b.
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return false end
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

-- Removes the entries of `key` before `floor` (every group has acked them): XTRIM MINID ~
-- (Redis 6.2, whole nodes, at most 10 000 entries a call), else counted with XRANGE, at most
-- TRIM_CHUNK a call, and cut exactly by MAXLEN. Returns how many went.
local function trim_below(key, floor)
  local ok, n = pcall(redis.call, 'XTRIM', key, 'MINID', '~', floor)
  if ok then return n end
  local es = redis.call('XRANGE', key, '-', floor, 'COUNT', TRIM_CHUNK)
  n = #es
  if n > 0 and es[n][1] == floor then n = n - 1 end
  if n == 0 then return 0 end
  return redis.call('XTRIM', key, 'MAXLEN', redis.call('XLEN', key) - n)
end

-- The group on each held slot (re-created if Redis lost it) and its last delivered id; and the
-- slot's stream trimmed before the oldest entry a group still needs: its oldest pending one,
-- else the one after its last delivered.
-- A partition (not the retry stream, which is its group's own) missing a group this process
-- ensured gets it back at 0, as `ensure_group` made it, and is not trimmed this time: Redis lost
-- the groups (a restart without persistence) and the others have not come back yet.
local known = {}
for j = 11, #ARGV do known[#known + 1] = ARGV[j] end
local last, trimmed = {}, 0
for _, i in ipairs(held) do
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream(i))
  local found, floor, present = nil, nil, {}
  if ok then
    for _, g in ipairs(groups) do
      local f = fields(g)
      present[f['name']] = true
      if f['name'] == grp then found = f['last-delivered-id'] end
      local need = f['last-delivered-id']
      if tonumber(f['pending']) > 0 then
        need = redis.call('XPENDING', stream(i), f['name'])[2]
      end
      if floor == nil or before(need, floor) then floor = need end
    end
  end
  if not found then
    redis.call('XGROUP', 'CREATE', stream(i), grp, '0', 'MKSTREAM')
    found = '0-0'
    floor = '0-0'
  end
  if i < slots - 1 then
    for _, g in ipairs(known) do
      if not present[g] and g ~= grp then
        pcall(redis.call, 'XGROUP', 'CREATE', stream(i), g, '0', 'MKSTREAM')
        floor = '0-0'
      end
    end
  end
  if floor and floor ~= '0-0' then
    trimmed = trimmed + trim_below(stream(i), floor)
  end
  last[i] = found
end

-- Up to `want` entries of `key` pending longer than the visibility timeout, oldest first: with
-- XPENDING's IDLE filter (Redis 6.2), else read in pages of its extended form (Azure Cache for
-- Redis runs 6.0), at most 64 pages of 256.
local function idle_pending(key, want)
  local ok, idle = pcall(redis.call, 'XPENDING', key, grp, 'IDLE', int(vis), '-', '+', int(want))
  if ok then return idle end
  local found, from = {}, '-'
  for _ = 1, 64 do
    local page = redis.call('XPENDING', key, grp, from, '+', 256)
    local first = (from ~= '-' and #page > 0 and page[1][1] == from) and 2 or 1
    for j = first, #page do
      if #found >= want then return found end
      if page[j][3] >= vis then found[#found + 1] = page[j] end
    end
    if #page < 256 then return found end
    from = page[#page][1]
  end
  return found
end

-- Entries to hand out again: the orphans', this consumer's own when it holds none, and any
-- pending longer than the visibility timeout. Claimed, or dead letters after max deliveries.
local dead = 0
for _, i in ipairs(held) do
  if room <= 0 then break end
  local pend, seen = {}, {}
  local function add(list)
    for _, e in ipairs(list) do
      if #pend < room and not seen[e[1]] then
        seen[e[1]] = true
        pend[#pend + 1] = e
      end
    end
  end
  add(redis.call('XPENDING', stream(i), grp, '-', '+', int(room), orphans))
  if fresh then add(redis.call('XPENDING', stream(i), grp, '-', '+', int(room), me)) end
  add(idle_pending(stream(i), room))
  local claim, counts = {}, {}
  for _, e in ipairs(pend) do
    local id, n = e[1], e[4]
    if n >= maxd then
      local m = redis.call('XRANGE', stream(i), id, id)
      if #m > 0 then
        local f = fields(m[1][2])
        local name = (i == slots - 1) and 'r' or int(i)
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'slot', name,
          'id', name .. ':' .. id, 'n', int(n), 's', f['s'] or '0', 'k', f['k'] or '',
          'p', f['p'] or '')
        dead = dead + 1
      end
      redis.call('XACK', stream(i), grp, id)
    else
      claim[#claim + 1] = id
      counts[id] = n
    end
  end
  if #claim > 0 then
    local got = redis.call('XCLAIM', stream(i), grp, me, 0, unpack(claim))
    for _, e in ipairs(got) do
      if e and e[1] and counts[e[1]] then
        push(i, e[1], counts[e[1]] + 1, fields(e[2]))
        room = room - 1
      end
    end
  end
end

-- Readable slots: held, and no other consumer has entries in hand there.
local heads = {}
for _, i in ipairs(held) do
  local sum = redis.call('XPENDING', stream(i), grp)
  local clear = true
  if type(sum[4]) == 'table' then
    for _, c in ipairs(sum[4]) do
      if c[1] ~= me then clear = false end
    end
  end
  if clear then
    heads[#heads + 1] = {slot = i, key = stream(i), last = last[i], buf = {}, pos = 1,
      done = false, take = 0}
  end
end

-- New entries, merged across slots by topic sequence.
local chunk = math.max(16, math.ceil(room / math.max(#heads, 1)))
local function head_seq(h)
  if h.pos > #h.buf and not h.done then
    -- From the last entry read on, itself left out (an exclusive start needs Redis 6.2).
    h.buf = redis.call('XRANGE', h.key, h.last, '+', 'COUNT', int(chunk + 1))
    if #h.buf > 0 and h.buf[1][1] == h.last then table.remove(h.buf, 1) end
    h.pos = 1
    if #h.buf < chunk then h.done = true end
    if #h.buf > 0 then h.last = h.buf[#h.buf][1] end
  end
  if h.pos > #h.buf then return nil end
  return tonumber(fields(h.buf[h.pos][2])['s']) or 0
end
while room > 0 do
  local best, best_s = nil, nil
  for _, h in ipairs(heads) do
    local s = head_seq(h)
    if s and (best == nil or s < best_s) then best, best_s = h, s end
  end
  if best == nil then break end
  best.take = best.take + 1
  best.pos = best.pos + 1
  room = room - 1
end
local wake = {}
for _, h in ipairs(heads) do
  if h.take > 0 then
    local r = redis.call('XREADGROUP', 'GROUP', grp, me, 'COUNT', int(h.take), 'STREAMS', h.key, '>')
    if r then
      for _, e in ipairs(r[1][2]) do push(h.slot, e[1], 1, fields(e[2])) end
    end
  end
  wake[#wake + 1] = h.key
  wake[#wake + 1] = h.last
end
return {dead, wake, out, trimmed}
";

/// Entries not yet delivered plus pending, over the given streams. Redis before 7.0 (Azure Cache
/// runs 6.0) does not report a group's lag: the entries after its last delivered one are counted
/// then, reading at most 10 001 entries over all the streams (a larger lag reads as about
/// 10 000, past every alert's threshold, and one call stays short).
/// KEYS: the group's streams. ARGV: group.
const LAG: &str = r"
local budget = 10001
local function after(key, last)
  if budget <= 0 then return 0 end
  local es = redis.call('XRANGE', key, last, '+', 'COUNT', budget)
  budget = budget - #es
  local n = #es
  if n > 0 and es[1][1] == last then n = n - 1 end
  return n
end
local total = 0
for i = 1, #KEYS do
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[i])
  if ok then
    local found = false
    for _, g in ipairs(groups) do
      local f = {}
      for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
      if f['name'] == ARGV[1] then
        found = true
        local lag = f['lag']
        if not lag then lag = after(KEYS[i], f['last-delivered-id']) end
        total = total + lag + f['pending']
      end
    end
    if not found then total = total + redis.call('XLEN', KEYS[i]) end
  end
end
return total
";

/// Moves up to `chunk` dead letters to the group's retry stream.
/// KEYS: dead letters, retry stream. ARGV: group, max_len, chunk.
const REPLAY: &str = r"
pcall(redis.call, 'XGROUP', 'CREATE', KEYS[2], ARGV[1], '0', 'MKSTREAM')
local es = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[3])
for _, e in ipairs(es) do
  local f = {}
  for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    's', f['s'] or '0', 'k', f['k'] or '', 'p', f['p'] or '')
  redis.call('XDEL', KEYS[1], e[1])
end
return #es
";

/// Gives back a consumer's leases and membership.
/// KEYS: members, then every lease. ARGV: consumer.
const LEAVE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
local n = 0
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
";

/// Keeps a consumer that holds deliveries a member of its group and renews its leases, so a
/// long batch does not look like a dead process. A consumer dropped already stays dropped (its
/// next poll joins again).
/// KEYS: members, then every lease. ARGV: consumer, lease_ms.
const HEARTBEAT: &str = r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])
redis.call('PEXPIRE', KEYS[1], string.format('%d', lease_ms * 2))
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], string.format('%d', lease_ms))
  end
end
return 1
";

struct Scripts {
    publish: Script,
    ensure: Script,
    step: Script,
    lag: Script,
    replay: Script,
    leave: Script,
    heartbeat: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            publish: Script::new(PUBLISH),
            ensure: Script::new(ENSURE),
            step: Script::new(STEP),
            lag: Script::new(LAG),
            replay: Script::new(REPLAY),
            leave: Script::new(LEAVE),
            heartbeat: Script::new(HEARTBEAT),
        }
    }
}

/// What one poll step found.
struct Step {
    /// (stream, id): wake when an entry after `id` is appended.
    wake: Vec<(String, String)>,
    deliveries: Vec<(u64, Delivery)>,
}

fn redis_error(what: &str, e: &RedisError) -> PortError {
    match e.kind() {
        redis::ErrorKind::TypeError => PortError::Corrupt(format!("redis {what}: {e}")),
        _ => PortError::Unavailable(format!("redis {what}: {e}")),
    }
}

fn timed_out(what: &str, after: Duration) -> PortError {
    PortError::Unavailable(format!("redis {what}: no answer within {after:?}"))
}

/// A publish that reached the primary but not its replicas in time: counted, and `Unavailable`.
fn unreplicated(messages: &[Message], why: &str) -> PortError {
    metrics::counter!("bus_unreplicated_total").increment(messages.len() as u64);
    PortError::Unavailable(format!("redis bus: {why}"))
}

/// Runs one Redis call bounded by `limit`; a failure, a replica's refusal or a timeout counts
/// in `redis_errors_total` under `what`, as the other Redis calls do (what the Redis errors
/// alert watches). Every call of the bus goes through here, its own connections' too.
pub(crate) async fn bounded<T>(
    what: &'static str,
    limit: Duration,
    call: impl Future<Output = RedisResult<T>>,
) -> PortResult<T> {
    let (kind, error) = match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => return Ok(v),
        // A replica's refusal (a demoted primary), on the shared connection or one of our own.
        Ok(Err(e)) if crate::conn::is_read_only(&e) => ("readonly", redis_error(what, &e)),
        Ok(Err(e)) => ("error", redis_error(what, &e)),
        Err(_) => ("timeout", timed_out(what, limit)),
    };
    metrics::counter!("redis_errors_total", "op" => what, "kind" => kind).increment(1);
    Err(error)
}

fn corrupt(what: &str) -> PortError {
    PortError::Corrupt(format!("redis bus: unexpected reply to {what}"))
}

fn int(v: &Value, what: &str) -> PortResult<i64> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt(what)),
        _ => Err(corrupt(what)),
    }
}

fn text(v: Value, what: &str) -> PortResult<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| corrupt(what)),
        Value::SimpleString(s) => Ok(s),
        Value::Int(n) => Ok(n.to_string()),
        _ => Err(corrupt(what)),
    }
}

fn bytes(v: Value, what: &str) -> PortResult<Vec<u8>> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        _ => Err(corrupt(what)),
    }
}

fn array(v: Value, what: &str) -> PortResult<Vec<Value>> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        _ => Err(corrupt(what)),
    }
}

/// Renews one consumer's membership and leases while it holds deliveries of one group.
struct Heartbeat {
    hands: Weak<Mutex<Hands>>,
    hand: (String, String),
    consumer: String,
    /// Members, then every lease of the group.
    keys: Vec<String>,
    lease: Duration,
    vis: Duration,
    script: Script,
}

impl Heartbeat {
    /// Beats every third of a lease until the consumer holds nothing (acked, or held longer
    /// than the visibility timeout) or the bus is gone. A failed beat is retried at the next,
    /// counted (`bus_heartbeat_failures_total{bus="redis"}`) and logged at warn, once per run of
    /// failures: beats failing for longer than a lease get a busy consumer dropped from its
    /// group and its batch handed to another.
    async fn run(self, mut conn: Watched) {
        let every = (self.lease / 3).max(Duration::from_millis(100));
        let mut failing = false;
        loop {
            tokio::time::sleep(every).await;
            let Some(hands) = self.hands.upgrade() else {
                return;
            };
            {
                let mut hands = lock(&hands);
                let Some(hand) = hands.get_mut(&self.hand) else {
                    return;
                };
                if !hand.holds(&self.consumer, self.vis) {
                    hand.beating.remove(&self.consumer);
                    return;
                }
            }
            let mut inv = self.script.prepare_invoke();
            for key in &self.keys {
                inv.key(key);
            }
            inv.arg(&self.consumer).arg(millis(self.lease));
            let beat: PortResult<i64> =
                bounded("heartbeat", CALL_TIMEOUT, inv.invoke_async(&mut conn)).await;
            match beat {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!(consumer = %self.consumer, "bus heartbeat works again");
                }
                Ok(_) => {}
                Err(error) => {
                    metrics::counter!("bus_heartbeat_failures_total", "bus" => "redis")
                        .increment(1);
                    if !failing {
                        failing = true;
                        tracing::warn!(%error, consumer = %self.consumer, topic = %self.hand.0,
                            group = %self.hand.1, lease = ?self.lease,
                            "bus heartbeat failed; failing for longer than the lease drops the \
                             consumer and its batch goes to another");
                    }
                }
            }
        }
    }
}

/// What this process's consumers of one topic and group hold.
#[derive(Default)]
struct Hand {
    /// Deliveries handed out and not acked yet: id → (consumer, when). One older than the
    /// visibility timeout no longer counts.
    held: HashMap<String, (String, Instant)>,
    /// Consumers with a heartbeat running.
    beating: std::collections::HashSet<String>,
}

impl Hand {
    /// Whether `consumer` holds a delivery handed out within `vis`.
    fn holds(&self, consumer: &str, vis: Duration) -> bool {
        self.held
            .values()
            .any(|(c, at)| c == consumer && at.elapsed() < vis)
    }
}

/// Per topic and group.
type Hands = HashMap<(String, String), Hand>;

/// The Streams bus. See the module docs for the design.
pub struct RedisBus {
    client: Client,
    /// Let go once it answers `READONLY`, so publishes reach the primary after a failover.
    conn: Watched,
    /// Idle connections for blocking waits (a wait occupies its connection).
    blockers: Mutex<Vec<MultiplexedConnection>>,
    opts: BusOptions,
    partitions: u32,
    max_len: u64,
    lease: Duration,
    /// Partition count per topic as pinned in Redis.
    pinned: Mutex<HashMap<String, u32>>,
    /// The groups this process ensured, per topic: a poll re-creates any Redis lost (a restart
    /// without persistence) before it trims what the groups it finds have acked.
    groups: Mutex<HashMap<String, BTreeSet<String>>>,
    scripts: Scripts,
    /// What this process's consumers hold; shared with their heartbeats.
    hands: Arc<Mutex<Hands>>,
    /// Replicas each publish waits for, if any.
    acks: Option<ReplicaAcks>,
    /// Publishes waiting for replicas at once, at most [`IDLE_BLOCKERS`].
    replicated: tokio::sync::Semaphore,
    /// The attached, caught-up replicas, with `acks.away`.
    followers: Option<Arc<Followers>>,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("opts", &self.opts)
            .field("partitions", &self.partitions)
            .field("max_len", &self.max_len)
            .field("lease", &self.lease)
            .field("acks", &self.acks)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code path panics while holding these locks; recover the data if one ever did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisBus {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port[/db]`). `partitions` streams
    /// per topic (`BUS_PARTITIONS`, clamped to 1..=1024), chosen by [`partition_of`] the message
    /// key; a topic already used with another count keeps the count it was created with.
    /// Fails with `Unavailable` if Redis does not answer within [`CALL_TIMEOUT`].
    pub async fn connect(url: &str, opts: BusOptions, partitions: u32) -> Result<Self, PortError> {
        Self::connect_with_ca(url, None, opts, partitions).await
    }

    /// Like [`RedisBus::connect`]; a `rediss://` URL trusts the CA certificates in `root_ca`
    /// (PEM) instead of Mozilla's roots.
    pub async fn connect_with_ca(
        url: &str,
        root_ca: Option<&[u8]>,
        opts: BusOptions,
        partitions: u32,
    ) -> Result<Self, PortError> {
        let (client, _) = crate::conn::single_client(url, root_ca).map_err(|e| match e {
            PortError::Unavailable(m) => PortError::Unavailable(format!("redis bus: {m}")),
            other => other,
        })?;
        // One plain attempt first: a refused password or certificate shows as itself rather
        // than as the connection manager's retries running out of time. It serves blocking
        // waits afterwards.
        let first = bounded(
            "connect",
            CALL_TIMEOUT,
            client.get_multiplexed_async_connection_with_config(
                &AsyncConnectionConfig::new()
                    .set_connection_timeout(CALL_TIMEOUT)
                    .set_tcp_settings(tcp_settings()),
            ),
        )
        .await?;
        // Keep-alive as the hot state's: a primary gone without a reset (a crashed host) is
        // left within seconds, not when the kernel gives up retransmitting (~15 minutes).
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(3)
            .set_max_delay(1000)
            .set_tcp_settings(tcp_settings());
        let conn = bounded(
            "connect",
            CALL_TIMEOUT,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await?;
        let lease = opts.visibility_timeout.clamp(LEASE_MIN, LEASE_MAX);
        // The series exists from the start, so increase() sees the first failure.
        metrics::counter!("bus_heartbeat_failures_total", "bus" => "redis").increment(0);
        let bus = Self {
            client,
            conn: Watched::new(conn, "bus"),
            blockers: Mutex::new(vec![first]),
            opts,
            partitions: partitions.clamp(1, MAX_PARTITIONS),
            max_len: DEFAULT_MAX_LEN,
            lease,
            pinned: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            scripts: Scripts::new(),
            hands: Arc::default(),
            acks: None,
            replicated: tokio::sync::Semaphore::new(IDLE_BLOCKERS),
            followers: None,
        };
        bus.healthcheck().await?;
        Ok(bus)
    }

    /// Sets the `MAXLEN ~` of the partition streams publishes append to (at least 1;
    /// `BUS_REDIS_MAX_LEN`): the bound of one a group stopped reading, or no group reads.
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    /// Makes every publish wait until `acks.replicas` replicas hold it (none: not at all); with
    /// `acks.away`, until every replica attached and caught up does, and at least
    /// `acks.minimum()`, read from `INFO replication` by a task of its own.
    pub fn with_replica_acks(mut self, acks: ReplicaAcks) -> Self {
        self.acks = (acks.replicas > 0).then_some(acks);
        self.followers = (acks.replicas > 0 && acks.away > 0).then(|| {
            let followers = Arc::new(Followers::new(acks.replicas));
            followers.start(self.conn.manager());
            followers
        });
        self
    }

    /// With `away` acknowledgements: reads the replicas now (at start, so a Redis that refuses
    /// `INFO` is an error then), and returns how many are attached and caught up.
    pub async fn follow_replicas(&self) -> PortResult<Option<u32>> {
        match &self.followers {
            None => Ok(None),
            Some(f) => {
                f.start(self.conn.manager());
                f.refresh(&mut self.conn.manager().clone()).await.map(Some)
            }
        }
    }

    /// With `away` acknowledgements: the replicas a publish waits for, those attached and caught
    /// up at the last read or fewer after a shortfall since (`None` before it, or without them).
    pub fn replicas_followed(&self) -> Option<u32> {
        self.followers.as_ref().and_then(|f| f.counted())
    }

    /// How many replicas a publish waits for now: all of `acks.replicas`, or with `acks.away`
    /// those attached and caught up, and at least the minimum; with the followed count it came
    /// from (`None` without `acks.away` or before a read).
    async fn replicas_to_wait_for(&self, acks: ReplicaAcks) -> (u32, Option<u32>) {
        let Some(followers) = &self.followers else {
            return (acks.replicas, None);
        };
        followers.start(self.conn.manager());
        let counted = match followers.counted() {
            Some(n) => Some(n),
            None => followers
                .refresh(&mut self.conn.manager().clone())
                .await
                .ok(),
        };
        // Never read: all of them, the durable side.
        let want = counted.map_or(acks.replicas, |n| n.max(acks.minimum()));
        (want, counted)
    }

    /// Entries currently retained in the topic's partition streams.
    pub async fn stream_len(&self, topic: &str) -> PortResult<u64> {
        let keys = Keys::new(topic, self.topic_partitions(topic).await?);
        let mut pipe = redis::pipe();
        for i in 0..keys.partitions {
            pipe.cmd("XLEN").arg(keys.partition(i));
        }
        let lens: Vec<u64> = bounded(
            "XLEN",
            CALL_TIMEOUT,
            pipe.query_async(&mut self.conn.clone()),
        )
        .await?;
        Ok(lens.iter().sum())
    }

    /// Runs `script` with every slot stream of `group` on `topic` as its keys and the group as
    /// its argument (creating the group, or summing its lag).
    async fn on_group_slots(
        &self,
        op: &'static str,
        script: &Script,
        topic: &str,
        group: &str,
    ) -> PortResult<i64> {
        let keys = Keys::new(topic, self.topic_partitions(topic).await?);
        let mut inv = script.prepare_invoke();
        for slot in 0..keys.slots() {
            inv.key(keys.slot_stream(group, slot));
        }
        inv.arg(group);
        let mut conn = self.conn.clone();
        bounded(op, CALL_TIMEOUT, inv.invoke_async(&mut conn)).await
    }

    /// The partition count of `topic`: pinned in Redis by its first user, cached here.
    async fn topic_partitions(&self, topic: &str) -> PortResult<u32> {
        if let Some(p) = lock(&self.pinned).get(topic) {
            return Ok(*p);
        }
        let key = pin_key(&Keys::new(topic, self.partitions).tag);
        let (stored,): (Option<String>,) = bounded(
            "pin partitions",
            CALL_TIMEOUT,
            redis::pipe()
                .cmd("SET")
                .arg(&key)
                .arg(self.partitions)
                .arg("NX")
                .ignore()
                .cmd("GET")
                .arg(&key)
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        let pinned = match stored.as_deref().map(str::parse::<u32>) {
            Some(Ok(p)) if (1..=MAX_PARTITIONS).contains(&p) => p,
            _ => {
                return Err(PortError::Corrupt(format!(
                    "{key} holds {stored:?}, not a partition count"
                )))
            }
        };
        if pinned != self.partitions {
            tracing::warn!(
                topic,
                configured = self.partitions,
                pinned,
                "topic was created with another partition count; using it"
            );
        }
        lock(&self.pinned).insert(topic.to_owned(), pinned);
        Ok(pinned)
    }

    /// Slot to start taking free leases from, different per consumer.
    fn start_slot(consumer: &str, slots: u32) -> u32 {
        u32::try_from(fnv1a(consumer.as_bytes()) % u64::from(slots.max(1))).unwrap_or(0)
    }

    async fn step(
        &self,
        topic: &str,
        keys: &Keys,
        group: &str,
        consumer: &str,
        max: usize,
        fresh: bool,
    ) -> PortResult<Step> {
        let mut inv = self.scripts.step.prepare_invoke();
        inv.key(keys.members(group)).key(keys.dead(group));
        for slot in 0..keys.slots() {
            inv.key(keys.slot_stream(group, slot))
                .key(keys.lease(group, slot));
        }
        inv.arg(consumer)
            .arg(group)
            .arg(millis(self.lease))
            .arg(millis(self.opts.visibility_timeout))
            .arg(max)
            .arg(self.opts.max_deliveries.max(1))
            .arg(DEAD_MAX_LEN)
            .arg(Self::start_slot(consumer, keys.slots()))
            .arg(if fresh { "1" } else { "0" })
            .arg(ORPHANS);
        for other in lock(&self.groups).get(topic).into_iter().flatten() {
            inv.arg(other);
        }
        let mut conn = self.conn.clone();
        let reply: Value = bounded("poll", CALL_TIMEOUT, inv.invoke_async(&mut conn)).await?;
        let mut parts = array(reply, "poll")?.into_iter();
        let (Some(dead), Some(wake), Some(out), Some(trimmed)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt("poll"));
        };
        let dead = u64::try_from(int(&dead, "poll")?).unwrap_or(0);
        let trimmed = u64::try_from(int(&trimmed, "poll")?).unwrap_or(0);
        if trimmed > 0 {
            metrics::counter!("bus_trimmed_total", "topic" => topic.to_owned()).increment(trimmed);
        }
        let mut wake_items = array(wake, "poll")?.into_iter();
        let mut wake = Vec::new();
        while let (Some(stream), Some(id)) = (wake_items.next(), wake_items.next()) {
            wake.push((text(stream, "poll")?, text(id, "poll")?));
        }
        let mut out = array(out, "poll")?.into_iter();
        let mut deliveries = Vec::new();
        while let Some(slot) = out.next() {
            let (Some(id), Some(n), Some(seq), Some(key), Some(payload)) =
                (out.next(), out.next(), out.next(), out.next(), out.next())
            else {
                return Err(corrupt("poll"));
            };
            let slot = u32::try_from(int(&slot, "poll")?).map_err(|_| corrupt("poll"))?;
            let seq = u64::try_from(int(&seq, "poll")?).unwrap_or(0);
            deliveries.push((
                seq,
                Delivery {
                    id: format!("{}:{}", keys.slot_name(slot), text(id, "poll")?),
                    key: text(key, "poll")?,
                    payload: bytes(payload, "poll")?.into(),
                    deliveries: u32::try_from(int(&n, "poll")?).unwrap_or(u32::MAX),
                },
            ));
        }
        if dead > 0 {
            tracing::warn!(topic, group, messages = dead, "moved to dead letters");
            metrics::counter!(
                "bus_dead_letters_total",
                "topic" => topic.to_owned(),
                "group" => group.to_owned()
            )
            .increment(dead);
        }
        Ok(Step { wake, deliveries })
    }

    /// Whether `consumer` holds no delivery of this process in `group` (none handed out within
    /// the visibility timeout and not acked since).
    fn holds_nothing(&self, topic: &str, group: &str, consumer: &str) -> bool {
        let mut hands = lock(&self.hands);
        let Some(hand) = hands.get_mut(&(topic.to_owned(), group.to_owned())) else {
            return true;
        };
        let vis = self.opts.visibility_timeout;
        hand.held.retain(|_, (_, at)| at.elapsed() < vis);
        !hand.holds(consumer, vis)
    }

    /// Notes `deliveries` as held by `consumer` and keeps it alive in `group` until it acks
    /// them: a heartbeat every third of a lease, for at most the visibility timeout.
    fn hold(&self, topic: &str, keys: &Keys, group: &str, consumer: &str, deliveries: &[Delivery]) {
        let now = Instant::now();
        let beating = {
            let mut hands = lock(&self.hands);
            let hand = hands
                .entry((topic.to_owned(), group.to_owned()))
                .or_default();
            for d in deliveries {
                hand.held.insert(d.id.clone(), (consumer.to_owned(), now));
            }
            !hand.beating.insert(consumer.to_owned())
        };
        if beating {
            return;
        }
        let mut beat_keys = vec![keys.members(group)];
        beat_keys.extend((0..keys.slots()).map(|slot| keys.lease(group, slot)));
        let beat = Heartbeat {
            hands: Arc::downgrade(&self.hands),
            hand: (topic.to_owned(), group.to_owned()),
            consumer: consumer.to_owned(),
            keys: beat_keys,
            lease: self.lease,
            vis: self.opts.visibility_timeout,
            script: self.scripts.heartbeat.clone(),
        };
        tokio::spawn(beat.run(self.conn.clone()));
    }

    /// Appends `messages` and waits until the replicas of [`Self::replicas_to_wait_for`] hold
    /// them (`WAIT` returns once all do, or at the timeout); done if `acks.minimum()` did.
    async fn publish_replicated(
        &self,
        keys: &Keys,
        messages: &[Message],
        acks: ReplicaAcks,
    ) -> PortResult<()> {
        let minimum = acks.minimum();
        // A minimum of none and no replica there (Standard while its replica is patched, or
        // after a publish it did not confirm).
        if self.replicas_to_wait_for(acks).await.0 == 0 {
            return self.append(keys, messages, &mut self.conn.clone()).await;
        }
        // At most IDLE_BLOCKERS at once: a replica that does not answer holds each publish for
        // the whole wait, which must not open a connection per request.
        let _permit = if minimum == 0 {
            // Nothing required: with every slot taken (by publishes waiting for a replica that
            // went away silently and is still counted), go on without waiting.
            match self.replicated.try_acquire() {
                Ok(permit) => permit,
                Err(_) => return self.append(keys, messages, &mut self.conn.clone()).await,
            }
        } else {
            let Ok(Ok(permit)) =
                tokio::time::timeout(acks.wait + CALL_TIMEOUT, self.replicated.acquire()).await
            else {
                // Local saturation, not the replicas: not counted as unreplicated.
                return Err(PortError::Unavailable(
                    "redis bus: too many publishes waiting for replicas".into(),
                ));
            };
            permit
        };
        // `WAIT` counts the writes of its own connection and blocks it: one of ours, not the
        // shared one (an append retried on a new one after all ran is a duplicate, which
        // consumers drop by event id).
        let ((), mut conn) = self
            .on_own_connection(|mut c| async move { self.append(keys, messages, &mut c).await })
            .await?;
        // Counted again after the wait for a slot: a replica may have gone meanwhile.
        let (want, followed) = self.replicas_to_wait_for(acks).await;
        if want == 0 {
            self.idle(conn);
            return Ok(());
        }
        let started = Instant::now();
        let reached = bounded(
            "wait for replicas",
            acks.wait + CALL_TIMEOUT,
            redis::cmd("WAIT")
                .arg(want)
                .arg(millis(acks.wait).max(1))
                .query_async::<i64>(&mut conn),
        )
        .await;
        metrics::histogram!("bus_replica_wait_seconds").record(started.elapsed().as_secs_f64());
        if let (Ok(n), Some(followers), Some(followed)) = (&reached, &self.followers, followed) {
            followers.waited(followed, u32::try_from(*n).unwrap_or(0));
        }
        match reached {
            Ok(n) if n >= i64::from(minimum) => {
                self.idle(conn);
                Ok(())
            }
            Ok(n) => {
                self.idle(conn);
                Err(unreplicated(
                    messages,
                    &format!(
                        "{n} of {want} replicas acknowledged within {:?} ({minimum} needed)",
                        acks.wait
                    ),
                ))
            }
            Err(e) if minimum == 0 => {
                // The append succeeded and nothing was required of the replicas.
                tracing::warn!(error = %e, "redis bus: WAIT failed; accepted without replicas");
                Ok(())
            }
            Err(e) => Err(unreplicated(messages, &e.to_string())),
        }
    }

    /// Appends `messages` to their partition streams on `conn`, [`PUBLISH_CHUNK`] a script.
    async fn append<C>(&self, keys: &Keys, messages: &[Message], conn: &mut C) -> PortResult<()>
    where
        C: redis::aio::ConnectionLike + Send,
    {
        for chunk in messages.chunks(PUBLISH_CHUNK) {
            let mut inv = self.scripts.publish.prepare_invoke();
            inv.key(keys.seq()).key(keys.pin());
            // Each partition stream used by this chunk once, in KEYS from index 3 (1-based).
            let mut index: HashMap<u32, usize> = HashMap::new();
            let mut slots = Vec::with_capacity(chunk.len());
            for m in chunk {
                let p = partition_of(&m.key, keys.partitions);
                let at = match index.get(&p) {
                    Some(at) => *at,
                    None => {
                        let at = index.len() + 3;
                        index.insert(p, at);
                        inv.key(keys.partition(p));
                        at
                    }
                };
                slots.push(at);
            }
            inv.arg(self.max_len).arg(keys.partitions).arg(chunk.len());
            for (m, at) in chunk.iter().zip(slots) {
                inv.arg(at).arg(m.key.as_str()).arg(m.payload.as_ref());
            }
            let _: i64 = bounded("publish", CALL_TIMEOUT, inv.invoke_async(conn)).await?;
            metrics::counter!("bus_published_total").increment(chunk.len() as u64);
        }
        Ok(())
    }

    /// Runs `call` on a connection of our own (for a blocking command): an idle one, and if
    /// that fails (it may have died with a Redis restart) once more on a new one; hands back the
    /// connection it succeeded on (`call` gets a handle to it), for [`RedisBus::idle`].
    async fn on_own_connection<T, F, Fut>(
        &self,
        mut call: F,
    ) -> PortResult<(T, MultiplexedConnection)>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: Future<Output = PortResult<T>>,
    {
        let pooled = lock(&self.blockers).pop();
        if let Some(conn) = pooled {
            match call(conn.clone()).await {
                Ok(v) => return Ok((v, conn)),
                Err(e) => tracing::debug!(error = %e, "idle redis connection failed; reconnecting"),
            }
        }
        let conn = self.blocker_new().await?;
        let v = call(conn.clone()).await?;
        Ok((v, conn))
    }

    /// A new connection of our own.
    async fn blocker_new(&self) -> PortResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_tcp_settings(tcp_settings());
        bounded(
            "connect",
            CALL_TIMEOUT,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
    }

    /// Keeps `conn` for later, up to [`IDLE_BLOCKERS`].
    fn idle(&self, conn: MultiplexedConnection) {
        let mut idle = lock(&self.blockers);
        if idle.len() < IDLE_BLOCKERS {
            idle.push(conn);
        }
    }

    /// Waits up to `slice` for an entry after the given ids in the given streams.
    async fn wait_for_new(&self, wake: &[(String, String)], slice: Duration) -> PortResult<()> {
        let block_ms = millis(slice).max(1);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS");
        for (stream, _) in wake {
            cmd.arg(stream);
        }
        for (_, id) in wake {
            cmd.arg(id);
        }
        let limit = slice + CALL_TIMEOUT;
        let (_, conn) = self
            .on_own_connection(|mut c| {
                let cmd = &cmd;
                async move { bounded("wait", limit, cmd.query_async::<Value>(&mut c)).await }
            })
            .await?;
        self.idle(conn);
        Ok(())
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()> {
        self.on_group_slots("ensure_group", &self.scripts.ensure, topic, group)
            .await?;
        lock(&self.groups)
            .entry(topic.to_owned())
            .or_default()
            .insert(group.to_owned());
        Ok(())
    }

    async fn publish(&self, topic: &str, messages: Vec<Message>) -> PortResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let keys = Keys::new(topic, self.topic_partitions(topic).await?);
        let Some(acks) = self.acks else {
            return self.append(&keys, &messages, &mut self.conn.clone()).await;
        };
        // One deadline for the whole publish (slot, append, wait), so a request's answer is bounded.
        let limit = acks.wait + 2 * CALL_TIMEOUT;
        tokio::time::timeout(limit, self.publish_replicated(&keys, &messages, acks))
            .await
            .unwrap_or_else(|_| {
                Err(PortError::Unavailable(format!(
                    "redis bus: a publish waiting for replicas took over {limit:?}"
                )))
            })
    }

    async fn receive(&self, request: PollRequest<'_>) -> PortResult<Vec<Delivery>> {
        let (topic, group, consumer) = (request.topic, request.group, request.consumer);
        let max = request.max.min(MAX_POLL);
        let keys = Keys::new(topic, self.topic_partitions(topic).await?);
        let until = Instant::now() + request.wait;
        let slice_max = (self.lease / 3).min(SLICE_MAX);
        loop {
            let fresh = self.holds_nothing(topic, group, consumer);
            let step = self.step(topic, &keys, group, consumer, max, fresh).await?;
            if !step.deliveries.is_empty() {
                let mut got = step.deliveries;
                // Stable: entries of one slot keep their stream order.
                got.sort_by_key(|(seq, _)| *seq);
                let got: Vec<Delivery> = got.into_iter().map(|(_, d)| d).collect();
                self.hold(topic, &keys, group, consumer, &got);
                return Ok(got);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(Vec::new());
            }
            let slice = (until - now).min(slice_max);
            if step.wake.is_empty() {
                // Nothing this consumer may read right now: look again soon.
                tokio::time::sleep(slice.min(IDLE_NAP)).await;
            } else {
                self.wait_for_new(&step.wake, slice).await?;
            }
        }
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys = Keys::new(topic, self.topic_partitions(topic).await?);
        let mut by_slot: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for id in ids {
            if let Some((slot, stream_id)) = keys.parse_id(id) {
                by_slot.entry(slot).or_default().push(stream_id);
            }
        }
        if by_slot.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (slot, stream_ids) in &by_slot {
            pipe.cmd("XACK")
                .arg(keys.slot_stream(group, *slot))
                .arg(group)
                .arg(stream_ids)
                .ignore();
        }
        bounded(
            "ack",
            CALL_TIMEOUT,
            pipe.query_async::<()>(&mut self.conn.clone()),
        )
        .await?;
        if let Some(hand) = lock(&self.hands).get_mut(&(topic.to_owned(), group.to_owned())) {
            for id in ids {
                hand.held.remove(id);
            }
        }
        Ok(())
    }

    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
        let n = self
            .on_group_slots("lag", &self.scripts.lag, topic, group)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn read_dead_letters(&self, request: DeadLetterRequest<'_>) -> PortResult<Vec<Delivery>> {
        let (topic, group, limit) = (request.topic, request.group, request.limit);
        let keys = Keys::new(topic, self.topic_partitions(topic).await?);
        let reply: redis::streams::StreamRangeReply = bounded(
            "dead_letters",
            CALL_TIMEOUT,
            redis::cmd("XRANGE")
                .arg(keys.dead(group))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut self.conn.clone()),
        )
        .await?;
        reply
            .ids
            .into_iter()
            .map(|mut entry| {
                let mut field = |name: &str| entry.map.remove(name).unwrap_or(Value::Nil);
                let id = text(field("id"), "dead_letters")?;
                let key = text(field("k"), "dead_letters")?;
                let payload = bytes(field("p"), "dead_letters")?;
                let n = int(&field("n"), "dead_letters")?;
                Ok(Delivery {
                    id,
                    key,
                    payload: payload.into(),
                    deliveries: u32::try_from(n).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// Gives back `consumer`'s slots of `group` and leaves its member list, so the other
    /// consumers take them over at their next poll instead of after a lease period
    /// (`LEASE_MAX`, 5 s, at most). Consumers call it when they stop
    /// (`liveops_module::consume::run_batches`); what it has not acked still comes back after
    /// the visibility timeout, and its heartbeats end.
    async fn leave(&self, topic: &str, group: &str, consumer: &str) -> PortResult<()> {
        let keys = Keys::new(topic, self.topic_partitions(topic).await?);
        let mut inv = self.scripts.leave.prepare_invoke();
        inv.key(keys.members(group));
        for slot in 0..keys.slots() {
            inv.key(keys.lease(group, slot));
        }
        inv.arg(consumer);
        let mut conn = self.conn.clone();
        let _: i64 = bounded("leave", CALL_TIMEOUT, inv.invoke_async(&mut conn)).await?;
        if let Some(hand) = lock(&self.hands).get_mut(&(topic.to_owned(), group.to_owned())) {
            // Its heartbeat stops at its next beat (which would find it gone from the members).
            hand.held.retain(|_, (c, _)| c != consumer);
        }
        Ok(())
    }

    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64> {
        let keys = Keys::new(topic, self.topic_partitions(topic).await?);
        drain_in_chunks(REPLAY_CHUNK as u64, || async {
            let mut inv = self.scripts.replay.prepare_invoke();
            inv.key(keys.dead(group))
                .key(keys.retry(group))
                .arg(group)
                .arg(DEAD_MAX_LEN)
                .arg(REPLAY_CHUNK);
            let mut conn = self.conn.clone();
            let n: i64 = bounded("replay", CALL_TIMEOUT, inv.invoke_async(&mut conn)).await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}

#[async_trait]
impl Health for RedisBus {
    async fn healthcheck(&self) -> PortResult<()> {
        let pong: String = bounded(
            "ping",
            CALL_TIMEOUT,
            redis::cmd("PING").query_async(&mut self.conn.clone()),
        )
        .await?;
        crate::conn::expect_pong(&pong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bus call that fails, is refused by a replica or times out counts in
    /// `redis_errors_total`, what the Redis errors alert watches, once.
    #[test]
    fn failed_and_timed_out_bus_calls_are_counted() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let short = Duration::from_millis(10);
        metrics::with_local_recorder(&recorder, || {
            rt.block_on(async {
                let down = RedisError::from((redis::ErrorKind::IoError, "down"));
                assert!(bounded::<()>("poll", short, async { Err(down) })
                    .await
                    .is_err());
                let stuck = std::future::pending::<RedisResult<()>>();
                assert!(bounded("publish", short, stuck).await.is_err());
                let replica = RedisError::from((redis::ErrorKind::ReadOnly, "replica"));
                assert!(bounded::<()>("ack", short, async { Err(replica) })
                    .await
                    .is_err());
                assert_eq!(bounded("ack", short, async { Ok(1) }).await.ok(), Some(1));
            })
        });
        let text = handle.render();
        let count = |labels: &str| {
            liveops_testkit::logs::sample(&text, &format!("redis_errors_total{{{labels}}}"))
        };
        assert_eq!(count("op=\"poll\",kind=\"error\""), Some(1.0), "{text}");
        assert_eq!(
            count("op=\"publish\",kind=\"timeout\""),
            Some(1.0),
            "{text}"
        );
        assert_eq!(count("op=\"ack\",kind=\"readonly\""), Some(1.0), "{text}");
        assert!(!text.contains("op=\"ack\",kind=\"error\""), "{text}");
    }

    #[test]
    fn partition_of_is_stable_and_in_range() {
        // FNV-1a 64 reference values: changing them would move players between partitions.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        for p in [1, 4, 8, 1024] {
            for key in ["alice", "bob", "player_42", ""] {
                assert!(partition_of(key, p) < p);
                assert_eq!(partition_of(key, p), partition_of(key, p));
            }
        }
        assert_eq!(partition_of("anything", 0), 0, "zero partitions means one");
    }

    #[test]
    fn delivery_ids_name_their_slot() {
        let keys = Keys::new("t", 4);
        assert_eq!(keys.parse_id("3:1-0"), Some((3, "1-0")));
        assert_eq!(keys.parse_id("r:5-1"), Some((4, "5-1")));
        assert_eq!(keys.parse_id("4:1-0"), None, "no partition 4 of 4");
        assert_eq!(keys.parse_id("garbage"), None);
        assert_eq!(keys.slot_stream("g", 4), "bus:{t}:retry:g");
        assert_eq!(keys.lease("g", 4), "bus:{t}:lease:g:r");
        assert_eq!(keys.partition(2), "bus:{t}:p:2");
    }
}
