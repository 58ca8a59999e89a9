//! Progression's storage: XP per season, inventory, pending rewards and issued receipts.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ports::{Health, PortResult};
use crate::signing::Receipt;

/// Most pending rewards a [`PlayerProgress`] lists: the oldest ones (the rest are read a page at
/// a time with [`ProgressStore::pending_rewards`]).
pub const PROGRESS_PENDING_LIMIT: usize = 100;

/// Most inventory lines a [`PlayerProgress`] lists: the first by item (the rest are read a page
/// at a time with [`ProgressStore::inventory`]).
pub const PROGRESS_INVENTORY_LIMIT: usize = 100;

/// Most rows [`PlayerProgress::pending_count`] and [`PlayerProgress::inventory_count`] count: a
/// count of this many means this many or more (a player's rows grow with client input, and a
/// read must not walk all of them).
pub const PROGRESS_COUNT_LIMIT: u64 = 10_000;

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

/// A pending reward with its place in the player's list, which orders the rewards oldest first
/// and which a page cursor names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedReward {
    /// Increases with each reward written (of any player); a page continues above the last one.
    pub position: i64,
    /// The reward.
    pub reward: PendingReward,
}

/// An inventory line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InventoryItem {
    /// The item.
    pub item: String,
    /// How many are owned.
    pub quantity: u64,
}

/// A player's state in one season plus everything season-independent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerProgress {
    /// XP earned this season.
    pub xp: u64,
    /// Last change, unix ms (0 if never).
    pub updated_at_ms: i64,
    /// Items owned, sorted by item: the first [`PROGRESS_INVENTORY_LIMIT`].
    pub inventory: Vec<InventoryItem>,
    /// How many inventory lines the player has, listed in [`PlayerProgress::inventory`] or not,
    /// counted up to [`PROGRESS_COUNT_LIMIT`] (which then means at least that many).
    #[serde(default)]
    pub inventory_count: u64,
    /// Rewards earned and not claimed, oldest first: at most [`PROGRESS_PENDING_LIMIT`], of any
    /// season.
    pub pending: Vec<PendingReward>,
    /// How many rewards are pending, of any season, listed in [`PlayerProgress::pending`] or not,
    /// counted up to [`PROGRESS_COUNT_LIMIT`] (which then means at least that many).
    #[serde(default)]
    pub pending_count: u64,
    /// Read from a replica that may be behind the primary: fine to show, not to cache as the
    /// player's current state.
    #[serde(default)]
    pub from_replica: bool,
}

/// XP gained by a player in a season.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XpGain {
    /// The player gaining it.
    pub player_id: String,
    /// The season it counts for.
    pub season: i64,
    /// How much XP.
    pub xp: u64,
    /// When it was earned (unix ms).
    pub at_ms: i64,
}

/// Items added to a player's inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemGrant {
    /// The player receiving them.
    pub player_id: String,
    /// The item.
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
    /// The XP each `(player, season)` had when the batch was planned: its level-up rewards
    /// are right only if no other batch of those players committed since.
    pub xp_before: Vec<((String, i64), u64)>,
}

/// Outcome of claiming a reward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RewardClaim {
    /// Claimed now; here is the new receipt.
    Issued(Receipt),
    /// Claimed before; here is the receipt issued then.
    AlreadyClaimed(Receipt),
    /// The player has no such reward.
    NotEarned,
}

/// Progression's durable state.
#[async_trait]
pub trait ProgressStore: Health {
    /// A player's progress in `season`, for display: may come from a read replica a few
    /// seconds behind.
    async fn progress(&self, player_id: &str, season: i64) -> PortResult<PlayerProgress>;
    /// A player's progress in `season` as last committed (a claim must see the rewards just
    /// earned); the same as [`ProgressStore::progress`] where there is no replica.
    async fn progress_latest(&self, player_id: &str, season: i64) -> PortResult<PlayerProgress> {
        self.progress(player_id, season).await
    }
    /// A player's reward `reward_id` while it waits to be claimed, as last committed: what a
    /// claim signs its receipt for, without reading every pending reward of the player.
    async fn pending_reward(
        &self,
        player_id: &str,
        reward_id: &str,
    ) -> PortResult<Option<PendingReward>>;
    /// At most `limit` of a player's pending rewards, oldest first, from the one above position
    /// `after` (from the first without it); may come from a read replica a few seconds behind.
    async fn pending_rewards(
        &self,
        player_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> PortResult<Vec<ListedReward>>;
    /// At most `limit` of a player's inventory lines, sorted by item (by bytes), from the first
    /// item after `after` (from the first without it); may come from a read replica a few
    /// seconds behind.
    async fn inventory(
        &self,
        player_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> PortResult<Vec<InventoryItem>>;
    /// XP of several players in `season` (absent players have 0).
    async fn xp_of(&self, players: &[(String, i64)]) -> PortResult<Vec<u64>>;
    /// Applies a progression batch and records its event ids for `consumer`, atomically;
    /// fails without effect if any id was already recorded, and is `false` without effect if
    /// any XP in [`ProgressCommit::xp_before`] has changed since (plan the batch again).
    async fn commit_progress(&self, consumer: &str, commit: &ProgressCommit) -> PortResult<bool>;
    /// Claims a pending reward with the receipt to issue if it is claimable.
    async fn claim_reward(
        &self,
        player_id: &str,
        reward_id: &str,
        receipt: Receipt,
    ) -> PortResult<RewardClaim>;
}
