//! The ports services see (ARCHITECTURE §2). Adapters live in `liveops-store`; only the binary
//! picks which one backs each port.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event::EventType;
use crate::scoring::Welford;
use crate::signing::Receipt;
use crate::window::Window;

/// Why a port call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The backend cannot be reached or refused the operation for now; callers answer 503 and retry.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back; a bug or corruption, never the caller's input.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Result of a port call.
pub type PortResult<T> = Result<T, PortError>;

/// Bus topics.
pub mod topics {
    /// Events the gateway accepted, before fairness.
    pub const INGESTED: &str = "events.ingested";
    /// Events fairness let through.
    pub const ACCEPTED: &str = "events.accepted";
    /// Events fairness quarantined.
    pub const FLAGGED: &str = "events.flagged";
}

/// One message to publish: `key` (the player id) keeps a player's events in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Stable id (the event id), so buses with duplicate detection drop a re-published copy.
    pub id: String,
    /// Partition key.
    pub key: String,
    /// Encoded body (an [`crate::event::Envelope`]).
    pub payload: Bytes,
}

/// One message handed to a consumer; ack it by `id` once its effect is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Opaque id to ack with.
    pub id: String,
    /// Partition key.
    pub key: String,
    /// Encoded body.
    pub payload: Bytes,
    /// How many times it has been handed out, this time included.
    pub deliveries: u32,
}

/// Topics with consumer groups, at-least-once delivery, ack, redelivery after a visibility
/// timeout, and a dead letter after too many deliveries.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Creates `group` on `topic` if missing, starting from the oldest retained message.
    async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()>;
    /// Appends messages; when this returns `Ok`, they survive a crash.
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> PortResult<()>;
    /// Takes up to `max` messages for `consumer` in `group`, waiting up to `wait` for one.
    /// Unacked messages come back after the visibility timeout; after too many deliveries they
    /// go to the group's dead letters instead.
    async fn poll(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> PortResult<Vec<Delivery>>;
    /// Marks deliveries done.
    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()>;
    /// Messages the group has not acked yet (new plus in flight).
    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64>;
    /// The group's dead letters, oldest first.
    async fn dead_letters(
        &self,
        topic: &str,
        group: &str,
        limit: usize,
    ) -> PortResult<Vec<Delivery>>;
    /// Puts the group's dead letters back for delivery; returns how many.
    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64>;
    /// Is the backend reachable.
    async fn healthcheck(&self) -> PortResult<()>;
}

/// One leaderboard: a window and one of its periods.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Board {
    /// The window.
    pub window: Window,
    /// The period id (`2026-W47`).
    pub period: String,
}

/// A ranked player. Order: score descending, then player id descending (as Redis does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RankEntry {
    /// 1-based position.
    pub rank: u64,
    /// Who.
    pub player_id: String,
    /// Score in this period.
    pub score: i64,
}

/// A score change on one board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreDelta {
    /// The board.
    pub board: Board,
    /// Who.
    pub player_id: String,
    /// Points added.
    pub delta: i64,
}

/// Per-board sorted scores.
#[async_trait]
pub trait RankStore: Send + Sync {
    /// Applies a batch of score changes.
    async fn incr(&self, deltas: &[ScoreDelta]) -> PortResult<()>;
    /// Replaces a board with the given scores (used to rebuild from the repository).
    async fn load(&self, board: &Board, scores: Vec<(String, i64)>) -> PortResult<()>;
    /// Entries at positions `offset+1 ..= offset+limit`.
    async fn top(&self, board: &Board, offset: u64, limit: u64) -> PortResult<Vec<RankEntry>>;
    /// A player's entry, if ranked.
    async fn rank(&self, board: &Board, player_id: &str) -> PortResult<Option<RankEntry>>;
    /// A player's entry with up to `n` neighbours above and `n` below, in rank order.
    async fn around(
        &self,
        board: &Board,
        player_id: &str,
        n: u64,
    ) -> PortResult<Option<Vec<RankEntry>>>;
    /// Number of ranked players.
    async fn size(&self, board: &Board) -> PortResult<u64>;
    /// Forgets a board (after its final snapshot).
    async fn drop_board(&self, board: &Board) -> PortResult<()>;
    /// Boards currently held.
    async fn boards(&self) -> PortResult<Vec<Board>>;
    /// Is the backend reachable.
    async fn healthcheck(&self) -> PortResult<()>;
}

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
    /// First time: the caller now owns the key and must `complete` or `release` it.
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

/// Short-lived shared state: idempotency, rate windows, blocks, strikes, replay guard, cache.
#[async_trait]
pub trait HotState: Send + Sync {
    /// Claims `key` for a request whose body hashes to `fingerprint`, or reports its state.
    async fn idem_begin(
        &self,
        key: &str,
        fingerprint: &str,
        ttl: Duration,
    ) -> PortResult<IdemState>;
    /// Records the answer for a key claimed with `Fresh`.
    async fn idem_complete(&self, key: &str, answer: StoredAnswer, ttl: Duration)
        -> PortResult<()>;
    /// Gives up a key claimed with `Fresh` (the request failed and may be retried).
    async fn idem_release(&self, key: &str) -> PortResult<()>;
    /// Remembers a request signature for `ttl`; returns `false` if it was already seen (a replay).
    async fn first_use(&self, signature: &str, ttl: Duration) -> PortResult<bool>;
    /// Counts `n` events for `player` in the current one-second window against `max`.
    /// A refused hit is not counted.
    async fn rate_hit(&self, player: &str, n: u32, max: u32) -> PortResult<RateDecision>;
    /// Blocks `player` until unix milliseconds `until_ms`.
    async fn block(&self, player: &str, until_ms: i64) -> PortResult<()>;
    /// When the player's block ends (unix ms), if blocked now.
    async fn blocked_until(&self, player: &str) -> PortResult<Option<i64>>;
    /// Records a strike at `at_ms`; returns the strikes within the last `window`.
    async fn add_strike(&self, player: &str, at_ms: i64, window: Duration) -> PortResult<u32>;
    /// Strikes within the last `window` before `now_ms`.
    async fn strikes(&self, player: &str, now_ms: i64, window: Duration) -> PortResult<u32>;
    /// Reads a cached value.
    async fn cache_get(&self, key: &str) -> PortResult<Option<Bytes>>;
    /// Caches a value for `ttl`.
    async fn cache_put(&self, key: &str, value: Bytes, ttl: Duration) -> PortResult<()>;
    /// Drops a cached value.
    async fn cache_del(&self, key: &str) -> PortResult<()>;
    /// Is the backend reachable.
    async fn healthcheck(&self) -> PortResult<()>;
}

/// A reward waiting to be claimed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingReward {
    /// Stable id (`level:4:7` for reaching level 7 in season 4, `drop:<eventId>`).
    pub reward_id: String,
    /// The item granted on claim.
    pub item: String,
    /// Why it was earned (`level_up`, or the drop's source).
    pub source: String,
    /// Whether claiming adds `item` to the inventory (drops are already there).
    #[serde(skip)]
    pub adds_to_inventory: bool,
}

/// An inventory line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InventoryItem {
    /// The item.
    pub item: String,
    /// How many.
    pub quantity: u64,
}

/// A player's state in one season plus everything season-independent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerProgress {
    /// XP earned this season.
    pub xp: u64,
    /// Last change, unix ms (0 if never).
    pub updated_at_ms: i64,
    /// Items owned, sorted by item.
    pub inventory: Vec<InventoryItem>,
    /// Rewards earned and not claimed, oldest first.
    pub pending: Vec<PendingReward>,
}

/// XP gained by a player in a season.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XpGain {
    /// Who.
    pub player_id: String,
    /// Which season.
    pub season: i64,
    /// How much.
    pub xp: u64,
    /// When (unix ms).
    pub at_ms: i64,
}

/// Items added to a player's inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemGrant {
    /// Who.
    pub player_id: String,
    /// What.
    pub item: String,
    /// How many.
    pub quantity: u64,
}

/// Everything one progression batch changes, written atomically with its event ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressCommit {
    /// Events applied (recorded as processed).
    pub event_ids: Vec<Uuid>,
    /// XP to add.
    pub xp: Vec<XpGain>,
    /// Items to add.
    pub items: Vec<ItemGrant>,
    /// Rewards earned (ignored if the same reward id already exists).
    pub rewards: Vec<(String, PendingReward)>,
}

/// Outcome of claiming a reward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Claimed now; here is the new receipt.
    Issued(Receipt),
    /// Claimed before; here is the receipt issued then.
    AlreadyClaimed(Receipt),
    /// The player has no such reward.
    NotEarned,
}

/// A quarantined event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flag {
    /// The event.
    pub event_id: Uuid,
    /// Whose.
    pub player_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The value judged.
    pub value: f64,
    /// How far above the mean, in standard deviations.
    pub z_score: f64,
    /// When flagged, unix ms.
    pub at_ms: i64,
}

/// Everything one fairness batch changes, written atomically.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FairnessCommit {
    /// Decisions taken: event id → flagged.
    pub verdicts: Vec<(Uuid, bool)>,
    /// Flags raised.
    pub flags: Vec<Flag>,
    /// Updated statistics per event type.
    pub stats: Vec<(EventType, Welford)>,
}

/// A leaderboard archived at a point in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Which board.
    pub window: Window,
    /// Which period.
    pub period: String,
    /// When taken, unix ms.
    pub taken_at_ms: i64,
    /// Taken after the period ended (the hall of fame).
    pub is_final: bool,
    /// The top entries.
    pub entries: Vec<RankEntry>,
}

/// Durable state.
#[async_trait]
pub trait Repository: Send + Sync {
    /// Applies pending schema migrations.
    async fn migrate(&self) -> PortResult<()>;
    /// Is the backend reachable.
    async fn healthcheck(&self) -> PortResult<()>;

    /// Of `ids`, those `consumer` has already applied.
    async fn processed(&self, consumer: &str, ids: &[Uuid]) -> PortResult<HashSet<Uuid>>;

    /// A player's progress in `season`.
    async fn progress(&self, player_id: &str, season: i64) -> PortResult<PlayerProgress>;
    /// XP of several players in `season` (absent players have 0).
    async fn xp_of(&self, players: &[(String, i64)]) -> PortResult<Vec<u64>>;
    /// Applies a progression batch and records its event ids for `consumer`, atomically;
    /// fails without effect if any id was already recorded.
    async fn commit_progress(&self, consumer: &str, commit: &ProgressCommit) -> PortResult<()>;
    /// Claims a pending reward with the receipt to issue if it is claimable.
    async fn claim_reward(
        &self,
        player_id: &str,
        reward_id: &str,
        receipt: Receipt,
    ) -> PortResult<Claim>;

    /// Applies leaderboard score changes and records their event ids for `consumer`, atomically.
    async fn commit_scores(
        &self,
        consumer: &str,
        event_ids: &[Uuid],
        deltas: &[ScoreDelta],
    ) -> PortResult<()>;
    /// Every score on a board, in no particular order (callers rank them; sorting a million rows
    /// in the database would double a restart's rebuild).
    async fn board_scores(&self, board: &Board) -> PortResult<Vec<(String, i64)>>;
    /// Boards that have scores, for rebuilding.
    async fn boards(&self) -> PortResult<Vec<Board>>;
    /// Stores a snapshot (replacing an older one of the same board).
    async fn save_snapshot(&self, snapshot: &Snapshot) -> PortResult<()>;
    /// The snapshot of a board.
    async fn snapshot(&self, board: &Board) -> PortResult<Option<Snapshot>>;
    /// Periods of `window` with a snapshot, newest first.
    async fn snapshot_periods(&self, window: Window, limit: u32) -> PortResult<Vec<String>>;

    /// Running statistics per event type.
    async fn fairness_stats(&self) -> PortResult<Vec<(EventType, Welford)>>;
    /// Earlier verdicts (flagged?) for any of `ids` already judged.
    async fn verdicts(&self, ids: &[Uuid]) -> PortResult<Vec<(Uuid, bool)>>;
    /// Stores a fairness batch atomically.
    async fn commit_fairness(&self, commit: &FairnessCommit) -> PortResult<()>;
    /// Recent flags, newest first, optionally for one player.
    async fn flags(&self, player_id: Option<&str>, limit: u32) -> PortResult<Vec<Flag>>;
}
