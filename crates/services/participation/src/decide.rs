//! Deciding winners once a campaign ended: every tick, each ended campaign without an outcome
//! gets one. Draws run `liveops-draw-v1` over the entrants with the seed committed to at
//! scheduling; rank rewards read the leaderboard window's snapshot of the campaign's period,
//! once one taken `LB_SETTLE_SEC` after the campaign ended exists (or the period's final one),
//! and rank the entrants in its order. The first outcome recorded stands, whichever replica records it.

use std::collections::HashSet;
use std::time::Duration;

use liveops_core::draw::{self, ALGORITHM};
use liveops_core::ports::Board;
use liveops_core::stores::{Award, Campaign, CampaignEvent, CampaignState, Outcome, Reward, Tier};
use liveops_core::{now_ms, PortError, PortResult, Window};
use liveops_http::rfc3339;
use liveops_module::tick::every_tick;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::ParticipationState;

/// The algorithm of rank results.
pub const RANK_ALGORITHM: &str = "liveops-rank-v1";
/// How long after its end a rank campaign waits for a snapshot taken after it; then it is
/// decided on the latest snapshot of its period (or none).
pub const RANK_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Most ended campaigns looked at per tick.
const BATCH: u32 = 100;

/// Runs the decider every tick until `stop`.
pub async fn run_decider(
    state: ParticipationState,
    stop: CancellationToken,
) -> Result<(), PortError> {
    let (tick, state) = (state.config.tick, &state);
    every_tick(tick, stop, "cannot decide ended campaigns", move || {
        decide_ended(state, now_ms())
    })
    .await
}

/// Decides every ended campaign that has no outcome yet and can be decided at `now_ms`;
/// returns how many this call recorded.
pub async fn decide_ended(state: &ParticipationState, now_ms: i64) -> PortResult<usize> {
    let mut decided = 0;
    for c in state
        .campaigns
        .campaigns(Some(CampaignState::Ended), BATCH)
        .await?
    {
        if state.outcomes.outcome(&c.id).await?.is_some() {
            continue;
        }
        let outcome = match &c.reward {
            Reward::Draw { winners, item } => {
                draw_outcome(state, &c, *winners, item, now_ms).await?
            }
            Reward::Rank { window, tiers } => {
                match rank_outcome(state, &c, *window, tiers, now_ms).await? {
                    Some(o) => o,
                    None => continue,
                }
            }
        };
        let event = CampaignEvent {
            kind: "draw.completed".into(),
            campaign_id: c.id.clone(),
            at_ms: now_ms,
            data: json!({
                "campaignId": c.id,
                "algorithm": outcome.algorithm,
                "commitment": outcome.commitment,
                "entrantsHash": outcome.entrants_hash,
                "entrantCount": outcome.entrants.len(),
                "seed": outcome.seed,
                "source": outcome.source,
                "winners": outcome.awards,
            })
            .to_string(),
        };
        let stored = state
            .outcomes
            .record_outcome(&outcome, Some(&event))
            .await?;
        if stored == outcome {
            decided += 1;
            if outcome.algorithm == ALGORITHM {
                metrics::counter!("draws_total").increment(1);
            }
            tracing::info!(
                campaign = %c.id,
                algorithm = %outcome.algorithm,
                entrants = outcome.entrants.len(),
                winners = outcome.awards.len(),
                "winners decided"
            );
        }
    }
    Ok(decided)
}

async fn draw_outcome(
    state: &ParticipationState,
    c: &Campaign,
    winners: u32,
    item: &str,
    now_ms: i64,
) -> PortResult<Outcome> {
    let seed_hex = c
        .seed
        .as_deref()
        .ok_or_else(|| PortError::Corrupt(format!("campaign {} ended without a seed", c.id)))?;
    let seed = hex::decode(seed_hex)
        .map_err(|e| PortError::Corrupt(format!("campaign {} seed: {e}", c.id)))?;
    let entrants = state.entries.entrants(&c.id).await?;
    let picked = draw::draw(&seed, &entrants, winners as usize);
    Ok(Outcome {
        campaign_id: c.id.clone(),
        algorithm: ALGORITHM.into(),
        entrants_hash: draw::entrants_hash(&entrants),
        entrants,
        seed: Some(seed_hex.to_owned()),
        commitment: c.commitment.clone(),
        winner_count: Some(winners),
        source: None,
        awards: picked
            .into_iter()
            .enumerate()
            .map(|(i, player_id)| Award {
                player_id,
                item: item.to_owned(),
                rank: i as u32 + 1,
            })
            .collect(),
        decided_at_ms: now_ms,
    })
}

async fn rank_outcome(
    state: &ParticipationState,
    c: &Campaign,
    window: Window,
    tiers: &[Tier],
    now_ms: i64,
) -> PortResult<Option<Outcome>> {
    let period = state.config.calendar.period_at_ms(window, c.starts_at_ms);
    let snapshot = state
        .scores
        .snapshot(&Board {
            window,
            period: period.id.clone(),
        })
        .await?;
    // Taken once the events received before the end had time to arrive.
    let settle = i64::try_from(state.config.settle.as_millis()).unwrap_or(i64::MAX);
    let fresh = snapshot
        .as_ref()
        .is_some_and(|s| s.is_final || s.taken_at_ms >= c.ends_at_ms.saturating_add(settle));
    let waited = now_ms - c.ends_at_ms > i64::try_from(RANK_WAIT.as_millis()).unwrap_or(i64::MAX);
    if !fresh && !waited {
        return Ok(None);
    }
    let entrants = state.entries.entrants(&c.id).await?;
    let entered: HashSet<&str> = entrants.iter().map(String::as_str).collect();
    let mut awards = Vec::new();
    let ranked = snapshot
        .iter()
        .flat_map(|s| s.entries.iter())
        .filter(|e| entered.contains(e.player_id.as_str()));
    for (i, e) in ranked.enumerate() {
        let rank = i as u32 + 1;
        if let Some(t) = tiers
            .iter()
            .find(|t| (t.from_rank..=t.to_rank).contains(&rank))
        {
            awards.push(Award {
                player_id: e.player_id.clone(),
                item: t.item.clone(),
                rank,
            });
        }
    }
    let source = match &snapshot {
        Some(s) => format!(
            "{window} {} snapshot taken {}{}",
            period.id,
            rfc3339(s.taken_at_ms),
            if fresh {
                ""
            } else {
                " (none taken after the campaign ended)"
            }
        ),
        None => format!("{window} {}: no snapshot", period.id),
    };
    if !fresh {
        tracing::warn!(campaign = %c.id, %source, "ranking without a snapshot taken after the end");
    }
    Ok(Some(Outcome {
        campaign_id: c.id.clone(),
        algorithm: RANK_ALGORITHM.into(),
        entrants_hash: draw::entrants_hash(&entrants),
        entrants,
        seed: None,
        commitment: None,
        winner_count: None,
        source: Some(source),
        awards,
        decided_at_ms: now_ms,
    }))
}
