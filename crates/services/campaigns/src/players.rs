//! `GET /players/{id}/campaigns`: the live campaigns a player may enter (their level is high
//! enough), each with whether they entered in its current slot.

use axum::extract::State;
use liveops_core::stores::{
    Campaign, CampaignPage, CampaignState, CampaignStore, EntryLimit, Reward,
};
use liveops_core::{now_ms, PlayerId, PortResult};
use liveops_http::responses::ReadFailures;
use liveops_http::{rfc3339, Json, PlayerPath, Problem, Throttled};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::CampaignsState;

/// Live campaigns read per query (all of them are read, a page at a time).
const LIVE_PAGE: u32 = 500;
/// Most pages read for one answer (10 000 live campaigns): a bound on what one unauthenticated
/// request costs; past it the newest are answered and a warning logged.
const LIVE_PAGES: usize = 20;

/// Every live campaign, newest created first, up to [`LIVE_PAGES`] pages.
async fn live_campaigns(store: &dyn CampaignStore) -> PortResult<Vec<Campaign>> {
    let mut all: Vec<Campaign> = Vec::new();
    for _ in 0..LIVE_PAGES {
        let page = CampaignPage {
            state: Some(CampaignState::Live),
            limit: LIVE_PAGE,
            after: all.last().map(Campaign::position),
        };
        let read = store.campaigns(page).await?;
        let full = read.len() >= LIVE_PAGE as usize;
        all.extend(read);
        if !full {
            return Ok(all);
        }
    }
    static LOG: Throttled = Throttled::new(60_000);
    if let Some(left_out) = LOG.admit() {
        tracing::warn!(
            read = all.len(),
            left_out,
            "more live campaigns than one player's list reads; the oldest are left out"
        );
    }
    Ok(all)
}

/// A live campaign as a player sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerCampaign {
    /// Its id (enter with `POST /campaigns/{id}/entries`).
    pub campaign_id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// When it went live (RFC 3339).
    pub starts_at: String,
    /// When it ends (RFC 3339).
    pub ends_at: String,
    /// How often a player may enter.
    pub entry_limit: EntryLimit,
    /// What it pays.
    pub reward: Reward,
    /// Whether the player entered in the current slot (the campaign, or today for `daily`).
    pub entered: bool,
    /// When they last entered (RFC 3339), if ever.
    pub entered_at: Option<String>,
}

/// The live campaigns a player may enter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerCampaigns {
    /// Whose.
    pub player_id: String,
    /// Their level this season.
    pub level: u32,
    /// Live campaigns they are eligible for, ending soonest first.
    pub campaigns: Vec<PlayerCampaign>,
}

/// The live campaigns a player may enter, with whether they have.
#[utoipa::path(
    get, path = "/players/{id}/campaigns", tag = "campaigns", params(PlayerPath),
    responses(
        (status = 200, description = "Live campaigns the player is eligible for", body = PlayerCampaigns),
        ReadFailures,
    )
)]
#[tracing::instrument(skip_all, fields(player = %player.as_str()))]
pub(crate) async fn list_player_campaigns(
    State(state): State<CampaignsState>,
    PlayerPath(player): PlayerPath,
) -> Result<Json<PlayerCampaigns>, Problem> {
    let now = now_ms();
    let cfg = &state.config;
    let season = cfg.calendar.season_at_ms(now);
    let level = cfg
        .curve
        .level(state.xp.season_xp(player.as_str(), season).await?);
    let mut live: Vec<_> = live_campaigns(&*state.campaigns)
        .await?
        .into_iter()
        // Still live until the scheduler's next tick moves it, but past its end: not enterable.
        .filter(|c| c.min_level <= level && c.ends_at_ms > now)
        .collect();
    live.sort_by_key(|c| (c.ends_at_ms, c.id.clone()));
    let ids: Vec<String> = live.iter().map(|c| c.id.clone()).collect();
    let entries = state.entries.entries_of(player.as_str(), &ids).await?;
    Ok(Json(PlayerCampaigns {
        player_id: PlayerId::as_str(&player).to_owned(),
        level,
        campaigns: live
            .into_iter()
            .map(|c| {
                let mine: Vec<_> = entries.iter().filter(|e| e.campaign_id == c.id).collect();
                let current = c.entry_limit.slot(now);
                PlayerCampaign {
                    entered: mine.iter().any(|e| e.slot == current),
                    entered_at: mine.iter().map(|e| e.entered_at_ms).max().map(rfc3339),
                    campaign_id: c.id,
                    title: c.title,
                    description: c.description,
                    starts_at: rfc3339(c.starts_at_ms),
                    ends_at: rfc3339(c.ends_at_ms),
                    entry_limit: c.entry_limit,
                    reward: c.reward,
                }
            })
            .collect(),
    }))
}
