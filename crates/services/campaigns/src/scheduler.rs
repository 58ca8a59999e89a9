//! The scheduler: every tick, campaigns whose time has come move `scheduled → live` at
//! `startsAt` and `live → ended` at `endsAt` (`scheduled → ended` if both passed unseen), each by a conditional update that writes the
//! webhook event (`campaign.live`, `campaign.ended`) in the same transaction. Any number of
//! replicas may run it: the update matches for one of them; a crash before the commit leaves the
//! campaign where it was for the next tick.

use std::sync::Arc;
use std::time::Duration;

use liveops_core::stores::{Campaign, CampaignEvent, CampaignState, CampaignStore};
use liveops_core::{now_ms, PortError, PortResult};
use liveops_http::rfc3339;
use liveops_module::tick::every_tick;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Most campaigns moved per tick.
const BATCH: u32 = 100;

/// Runs the scheduler every `tick` until `stop`.
pub async fn run_scheduler(
    store: Arc<dyn CampaignStore>,
    tick: Duration,
    stop: CancellationToken,
) -> Result<(), PortError> {
    let failing = "campaign scheduler cannot reach the repository";
    let store = store.as_ref();
    every_tick(tick, stop, failing, move || step(store, now_ms())).await
}

/// The event written when a campaign moves to `state`.
pub(crate) fn event(kind: &str, c: &Campaign, state: CampaignState, at_ms: i64) -> CampaignEvent {
    CampaignEvent {
        kind: kind.to_owned(),
        campaign_id: c.id.clone(),
        at_ms,
        data: json!({
            "campaignId": c.id,
            "title": c.title,
            "state": state,
            "startsAt": rfc3339(c.starts_at_ms),
            "endsAt": rfc3339(c.ends_at_ms),
            "commitment": c.commitment,
        })
        .to_string(),
    }
}

/// One tick at `now_ms`: moves every due campaign one state on; returns how many this call
/// moved (others may have been moved by another replica).
pub async fn step(store: &dyn CampaignStore, now_ms: i64) -> PortResult<usize> {
    let mut moved = 0;
    for c in store.due(now_ms, BATCH).await? {
        let (to, kind) = match c.state {
            // Its end passed too (the scheduler did not run in between): it never was live.
            CampaignState::Scheduled if c.ends_at_ms <= now_ms => {
                (CampaignState::Ended, "campaign.ended")
            }
            CampaignState::Scheduled => (CampaignState::Live, "campaign.live"),
            CampaignState::Live => (CampaignState::Ended, "campaign.ended"),
            _ => continue,
        };
        let e = event(kind, &c, to, now_ms);
        if store.advance(&c.id, c.state, to, Some(&e)).await? {
            moved += 1;
            metrics::counter!("campaigns_total", "state" => to.as_str()).increment(1);
            tracing::info!(campaign = %c.id, from = c.state.as_str(), to = to.as_str(), "campaign moved");
        }
    }
    Ok(moved)
}
