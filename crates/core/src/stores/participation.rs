//! Participation's storage: campaign entries, and each campaign's outcome (its draw or ranking).
//! Also the one read participation makes of progression's data: a player's XP.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ports::{Health, PortResult};
use crate::stores::{CampaignEvent, CampaignState};

/// A player's entry into a campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Stable id (`ent_<uuid>`).
    pub entry_id: String,
    /// Which campaign.
    pub campaign_id: String,
    /// Who entered.
    pub player_id: String,
    /// The slot the entry limit counts in: `once`, or the UTC day (`2026-12-02`).
    pub slot: String,
    /// When, unix ms.
    pub entered_at_ms: i64,
    /// The signature of the request that made it (a retry of that request gets it back).
    pub request_sig: String,
}

/// What entering did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entered {
    /// A new entry.
    Created(Entry),
    /// The player already has an entry in this slot: this one.
    Existing(Entry),
    /// The campaign is not live (its state, or `None` if there is no such campaign).
    NotLive(Option<CampaignState>),
    /// The campaign holds its `max_entrants` players and this one is not among them: nothing
    /// written.
    Full,
}

/// Campaign entries.
#[async_trait]
pub trait EntryStore: Health {
    /// Adds `entry` if the campaign is live, the player has no entry in its slot, and the player
    /// is among its entrants already or it holds fewer than `max_entrants` players; in one
    /// transaction that holds the campaign's row, so no entry lands after the campaign ended and
    /// no number of entries at once takes a campaign past `max_entrants` players.
    async fn enter(&self, entry: &Entry, max_entrants: u64) -> PortResult<Entered>;
    /// The entry the request with this signature made, in any campaign (a signature makes one
    /// entry at most: a retry gets it back, a replay elsewhere is refused).
    async fn entry_by_request(&self, request_sig: &str) -> PortResult<Option<Entry>>;
    /// The distinct players who entered, sorted by bytes.
    async fn entrants(&self, campaign_id: &str) -> PortResult<Vec<String>>;
    /// A page of [`Self::entrants`]: up to `limit`, from the first after `after` (by bytes) on.
    async fn entrants_page(
        &self,
        campaign_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> PortResult<Vec<String>>;
    /// How many distinct players entered: counted as each player's first entry in the campaign
    /// is written, so reading it does not read the entries.
    async fn entrant_count(&self, campaign_id: &str) -> PortResult<u64>;
    /// A player's entries in any of `campaign_ids`.
    async fn entries_of(&self, player_id: &str, campaign_ids: &[String]) -> PortResult<Vec<Entry>>;
    /// A player's entries in each of `campaign_ids` they entered, summed up: one per campaign,
    /// in no order, whatever the number of entries (a player's campaign list).
    async fn entries_summary(
        &self,
        player_id: &str,
        campaign_ids: &[String],
        slots: &[String],
    ) -> PortResult<Vec<EntriesSummary>> {
        let mut summed = std::collections::HashMap::<String, EntriesSummary>::new();
        for e in self.entries_of(player_id, campaign_ids).await? {
            let in_slots = slots.contains(&e.slot);
            let s = summed
                .entry(e.campaign_id.clone())
                .or_insert_with(|| EntriesSummary {
                    campaign_id: e.campaign_id,
                    last_entered_at_ms: e.entered_at_ms,
                    in_slots,
                });
            s.last_entered_at_ms = s.last_entered_at_ms.max(e.entered_at_ms);
            s.in_slots |= in_slots;
        }
        Ok(summed.into_values().collect())
    }
}

/// A player's entries in one campaign, summed up ([`EntryStore::entries_summary`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntriesSummary {
    /// Which campaign.
    pub campaign_id: String,
    /// When they last entered it, unix ms.
    pub last_entered_at_ms: i64,
    /// Whether one of their entries in it is in one of the slots asked about.
    pub in_slots: bool,
}

/// One player's prize.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Award {
    /// The winning player.
    pub player_id: String,
    /// The item they win.
    pub item: String,
    /// Their rank among the entrants (rank campaigns), or their draw position (1 = drawn first).
    pub rank: u32,
}

/// How a campaign's winners were decided, fixed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Which campaign.
    pub campaign_id: String,
    /// `liveops-draw-v1`, or `liveops-rank-v1` for rank campaigns.
    pub algorithm: String,
    /// The distinct entrants, sorted by bytes.
    pub entrants: Vec<String>,
    /// `hex(SHA-256(entrants joined by "\n"))`.
    pub entrants_hash: String,
    /// The draw's seed, hex (draws only).
    pub seed: Option<String>,
    /// The seed's commitment (draws only).
    pub commitment: Option<String>,
    /// How many winners were asked for (draws only).
    pub winner_count: Option<u32>,
    /// For ranks: the board read and when (`weekly 2026-W49 scores of the entrants, read
    /// 2026-12-06T10:01:00Z`, and whether that was late).
    pub source: Option<String>,
    /// The prizes, in order.
    pub awards: Vec<Award>,
    /// When decided, unix ms.
    pub decided_at_ms: i64,
}

impl Outcome {
    /// The outcome split in its summary and its entrants.
    pub fn into_summary(self) -> (OutcomeSummary, Vec<String>) {
        let summary = OutcomeSummary {
            algorithm: self.algorithm,
            entrants_hash: self.entrants_hash,
            seed: self.seed,
            commitment: self.commitment,
            winner_count: self.winner_count,
            awards: self.awards,
        };
        (summary, self.entrants)
    }
}

/// An [`Outcome`] without its entrants (a million of them fill one large row): what a draw
/// published without its list reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeSummary {
    /// `liveops-draw-v1`, or `liveops-rank-v1` for rank campaigns.
    pub algorithm: String,
    /// `hex(SHA-256(entrants joined by "\n"))`.
    pub entrants_hash: String,
    /// The draw's seed, hex (draws only).
    pub seed: Option<String>,
    /// The seed's commitment (draws only).
    pub commitment: Option<String>,
    /// How many winners were asked for (draws only).
    pub winner_count: Option<u32>,
    /// The prizes, in order.
    pub awards: Vec<Award>,
}

/// Campaign outcomes: one per campaign, the first recorded stands.
#[async_trait]
pub trait OutcomeStore: Health {
    /// Records `outcome` unless the campaign has one, with `event` in the outbox if it was new;
    /// whether it was (the outcome that stands is not read back: it holds every entrant).
    async fn record_outcome(
        &self,
        outcome: &Outcome,
        event: Option<&CampaignEvent>,
    ) -> PortResult<bool>;
    /// The campaign's outcome, if decided.
    async fn outcome(&self, campaign_id: &str) -> PortResult<Option<Outcome>>;
    /// The campaign's outcome without its entrants, if decided.
    async fn outcome_summary(&self, campaign_id: &str) -> PortResult<Option<OutcomeSummary>>;
    /// Whether the campaign has an outcome, without reading it (it holds every entrant).
    async fn decided(&self, campaign_id: &str) -> PortResult<bool>;
}

/// A player's XP, as progression keeps it: what eligibility reads.
#[async_trait]
pub trait PlayerXp: Health {
    /// XP of `player_id` in `season` (0 if none).
    async fn season_xp(&self, player_id: &str, season: i64) -> PortResult<u64>;
}
