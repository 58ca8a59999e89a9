//! Campaigns' storage: the campaigns, their states, and the outbox of their events (what the
//! webhooks deliver).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ports::{Health, PortResult};
use crate::stores::{AuditEntry, Keyed, KeyedOutcome};
use crate::window::Window;

/// Where a campaign is in its life: `draft → scheduled → live → ended → settled`, or `cancelled`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CampaignState {
    /// Being written; may be changed.
    Draft,
    /// Fixed and committed to a seed; goes live at `startsAt`.
    Scheduled,
    /// Taking entries until `endsAt`.
    Live,
    /// Closed; winners are being decided and paid.
    Ended,
    /// Every winner has their inbox message.
    Settled,
    /// Stopped by an operator before it ended.
    Cancelled,
}

impl CampaignState {
    /// Every state.
    pub const ALL: [CampaignState; 6] = [
        Self::Draft,
        Self::Scheduled,
        Self::Live,
        Self::Ended,
        Self::Settled,
        Self::Cancelled,
    ];

    /// Its name (`live`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Live => "live",
            Self::Ended => "ended",
            Self::Settled => "settled",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state called `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// How often a player may enter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryLimit {
    /// Once for the whole campaign.
    Once,
    /// Once per UTC day.
    Daily,
}

impl EntryLimit {
    /// Its name (`once`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Once => "once",
            Self::Daily => "daily",
        }
    }

    /// The limit called `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Once, Self::Daily]
            .into_iter()
            .find(|l| l.as_str() == s)
    }

    /// The slot an entry at `at_ms` counts in: `once`, or its UTC day (`2026-12-02`).
    pub fn slot(self, at_ms: i64) -> String {
        match self {
            Self::Once => "once".into(),
            Self::Daily => chrono::DateTime::from_timestamp_millis(at_ms)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
        }
    }
}

/// A band of ranks rewarded with one item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tier {
    /// First rank of the band (1 is the top).
    #[serde(deserialize_with = "crate::event::whole")]
    #[schema(minimum = 1, maximum = 1000)]
    pub from_rank: u32,
    /// Last rank of the band, inclusive.
    #[serde(deserialize_with = "crate::event::whole")]
    #[schema(minimum = 1, maximum = 1000)]
    pub to_rank: u32,
    /// The item each player in the band receives.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub item: String,
}

/// What a campaign pays, and to whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Reward {
    /// `winners` entrants drawn by `liveops-draw-v1` each receive `item`.
    Draw {
        /// How many winners.
        #[serde(deserialize_with = "crate::event::whole")]
        #[schema(minimum = 1, maximum = 10000)]
        winners: u32,
        /// The item each winner receives.
        #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
        item: String,
    },
    /// Entrants ranked among themselves by their score on the leaderboard `window` in the
    /// campaign's period, read `LB_SETTLE_SEC` after its end (equal scores by player id
    /// descending, as the board orders them), receive their tier's item. The score is the
    /// period's: what an entrant scored in it before the campaign began counts, and, for a
    /// campaign that ends before its period, what they scored in the `LB_SETTLE_SEC` after.
    Rank {
        /// The leaderboard window.
        window: Window,
        /// Rewarded bands of ranks (among entrants), not overlapping.
        #[schema(min_items = 1, max_items = 20)]
        tiers: Vec<Tier>,
    },
}

/// Which page of the campaigns to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CampaignPage<'a> {
    /// Only the campaigns in this state; `None`: all.
    pub state: Option<CampaignState>,
    /// Most campaigns.
    pub limit: u32,
    /// Only the campaigns after this one in the listing (its creation time and id: the last of
    /// the previous page); `None`: from the newest.
    pub after: Option<(i64, &'a str)>,
}

impl CampaignPage<'_> {
    /// The first `limit` campaigns in `state` (all with `None`).
    pub fn first(state: Option<CampaignState>, limit: u32) -> Self {
        Self {
            state,
            limit,
            after: None,
        }
    }
}

/// A campaign as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Campaign {
    /// Stable id (`cmp_<uuid>`).
    pub id: String,
    /// Shown to players.
    pub title: String,
    /// Shown to players.
    pub description: String,
    /// Goes live, unix ms.
    pub starts_at_ms: i64,
    /// Ends, unix ms.
    pub ends_at_ms: i64,
    /// Lowest level (in the current season) that may enter.
    pub min_level: u32,
    /// How often a player may enter.
    pub entry_limit: EntryLimit,
    /// What it pays.
    pub reward: Reward,
    /// Where it is in its life.
    pub state: CampaignState,
    /// The draw's seed, hex (secret until drawn), fixed at scheduling.
    pub seed: Option<String>,
    /// `hex(SHA-256(seed))`, published at scheduling.
    pub commitment: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last changed, unix ms (the version a change is made against).
    pub updated_at_ms: i64,
}

impl Campaign {
    /// Its place in the listing (creation time, id): where the page after it starts.
    pub fn position(&self) -> (i64, &str) {
        (self.created_at_ms, &self.id)
    }
}

/// Something that happened to a campaign, kept in an outbox the webhooks deliver from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignEvent {
    /// `campaign.live`, `campaign.ended`, `draw.completed`, `campaign.settled`,
    /// `campaign.cancelled`.
    pub kind: String,
    /// Which campaign.
    pub campaign_id: String,
    /// When, unix ms.
    pub at_ms: i64,
    /// The event's `data`, JSON.
    pub data: String,
}

/// Campaigns and their states. State changes are conditional updates in the repository, so a
/// change happens once however many replicas try it, crashes included.
#[async_trait]
pub trait CampaignStore: Health {
    /// Adds a campaign, once per key if `keyed`.
    async fn create_campaign(
        &self,
        keyed: Option<&Keyed>,
        campaign: &Campaign,
        audit: &AuditEntry,
    ) -> PortResult<KeyedOutcome>;
    /// The campaign with this id.
    async fn campaign(&self, id: &str) -> PortResult<Option<Campaign>>;
    /// A page of campaigns, newest created first (ties by id, descending).
    async fn campaigns(&self, page: CampaignPage<'_>) -> PortResult<Vec<Campaign>>;
    /// Replaces `before` by `next` if nobody changed it since (same state and `updated_at_ms`)
    /// and, unless a draft, it has not ended by the time of the write, with `audit` and `event`
    /// (to the outbox) in the same transaction. `false`: changed meanwhile or ended, nothing
    /// written.
    async fn update_campaign(
        &self,
        before: &Campaign,
        next: &Campaign,
        audit: &AuditEntry,
        event: Option<&CampaignEvent>,
    ) -> PortResult<bool>;
    /// Moves a campaign from `from` to `to` (`UPDATE .. WHERE id = ? AND state = from`) and
    /// writes `event` to the outbox in the same transaction. `false`: not in `from` (another
    /// replica moved it first), nothing written.
    async fn advance(
        &self,
        id: &str,
        from: CampaignState,
        to: CampaignState,
        event: Option<&CampaignEvent>,
    ) -> PortResult<bool>;
    /// Campaigns whose time has come: scheduled ones that should be live and live ones that
    /// should have ended at `now_ms`.
    async fn due(&self, now_ms: i64, limit: u32) -> PortResult<Vec<Campaign>>;
}
