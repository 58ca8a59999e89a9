//! `GET /players/{id}/campaigns`: the live campaigns a player may enter (their level is high
//! enough), each with whether they entered in its current slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
/// request costs, and on what a process keeps; past it the newest are answered and a warning
/// logged.
const LIVE_PAGES: usize = 20;
/// How long the live campaigns read are served again to players' lists: a campaign that went
/// live, was cancelled or ended shows so in them at most this late (one past its end is never
/// listed: its end is compared with the time of each request).
pub const LIVE_FRESH: Duration = Duration::from_secs(1);

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

/// The live campaigns last read, per process, served again for [`LIVE_FRESH`]: every player's
/// list used to read them all (a live campaign's fields no longer change, but its state does).
/// One request reads them at a time; the others wait for it and serve what it read.
#[derive(Default)]
pub struct LiveCampaigns {
    /// The list and when its read began.
    kept: Mutex<Option<(Instant, Arc<Vec<Campaign>>)>>,
    /// Held while the list is read.
    reading: tokio::sync::Mutex<()>,
}

impl LiveCampaigns {
    /// The list kept, if its read began within [`LIVE_FRESH`] of `now`.
    fn fresh(&self, now: Instant) -> Option<Arc<Vec<Campaign>>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, list) = kept.as_ref()?;
        (now.saturating_duration_since(*at) < LIVE_FRESH).then(|| list.clone())
    }

    /// Every live campaign ([`live_campaigns`]), as read at most [`LIVE_FRESH`] ago.
    async fn read(&self, store: &dyn CampaignStore) -> PortResult<Arc<Vec<Campaign>>> {
        if let Some(list) = self.fresh(Instant::now()) {
            return Ok(list);
        }
        let _reading = self.reading.lock().await;
        // Read by another request while this one waited.
        if let Some(list) = self.fresh(Instant::now()) {
            return Ok(list);
        }
        let began = Instant::now();
        let list = Arc::new(live_campaigns(store).await?);
        *self.kept.lock().unwrap_or_else(PoisonError::into_inner) = Some((began, list.clone()));
        Ok(list)
    }
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
    #[schema(value_type = u64, minimum = 1, maximum = 4_294_967_295_i64)]
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
    let mut live: Vec<Campaign> = state
        .live
        .read(&*state.campaigns)
        .await?
        .iter()
        // Still live until the scheduler's next tick moves it, but past its end: not enterable.
        .filter(|c| c.min_level <= level && c.ends_at_ms > now)
        .cloned()
        .collect();
    live.sort_by_key(|c| (c.ends_at_ms, c.id.clone()));
    let ids: Vec<String> = live.iter().map(|c| c.id.clone()).collect();
    // The current slot of each campaign is one of these (a campaign's entries are all in slots
    // of its own limit): one row per campaign entered, whatever its number of entries.
    let slots = [EntryLimit::Once.slot(now), EntryLimit::Daily.slot(now)];
    let mine: HashMap<String, _> = state
        .entries
        .entries_summary(player.as_str(), &ids, &slots)
        .await?
        .into_iter()
        .map(|s| (s.campaign_id.clone(), s))
        .collect();
    Ok(Json(PlayerCampaigns {
        player_id: PlayerId::as_str(&player).to_owned(),
        level,
        campaigns: live
            .into_iter()
            .map(|c| {
                let mine = mine.get(&c.id);
                PlayerCampaign {
                    entered: mine.is_some_and(|m| m.in_slots),
                    entered_at: mine.map(|m| rfc3339(m.last_entered_at_ms)),
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
