//! Deciding winners once a campaign ended: every tick, each ended campaign without an outcome
//! on the first page (newest created) and on the next page past it
//! ([`liveops_module::tick::Rotation`]) gets one. Draws run `liveops-draw-v1` over the entrants with the seed committed to at
//! scheduling; rank rewards rank every entrant by their durable score on the leaderboard window's
//! board of the campaign's period, read at the first tick `LB_SETTLE_SEC` after the campaign
//! ended. The first outcome recorded stands, whichever replica records it; while one replica
//! decides a campaign it holds `participation:decide:<id>` in the hot state (shared on Redis), so
//! the others pass it over instead of each reading every entrant (a million: seconds and over
//! 100 MB each). The hold is extended every 10 s while the replica decides and given back when
//! it is done, or, should deciding be cancelled (the replica shutting down), in the background
//! at once; a replica that dies deciding lets its hold lapse within [`DECIDE_HOLD`].

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use liveops_core::draw::{self, ALGORITHM};
use liveops_core::ports::{rank_entries, Board, IdemState};
use liveops_core::stores::{Award, Campaign, CampaignEvent, Outcome, Reward, Tier};
use liveops_core::{now_ms, PortError, PortResult, Window};
use liveops_http::rfc3339;
use liveops_module::hold::Hold;
use liveops_module::tick::{each_ended, every_tick, Rotation};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::ParticipationState;

/// The algorithm of rank results.
pub const RANK_ALGORITHM: &str = "liveops-rank-v1";
/// Most ended campaigns looked at per tick (a page; the next tick takes the next page).
const BATCH: u32 = 100;
/// How long a decide hold lasts unless extended: how late a campaign whose decider died is
/// decided by another replica.
pub const DECIDE_HOLD: Duration = Duration::from_secs(30);
/// How often a replica deciding a campaign extends its hold.
const EXTEND_EVERY: Duration = Duration::from_secs(10);

/// Runs the decider every tick until `stop`.
pub async fn run_decider(
    state: ParticipationState,
    stop: CancellationToken,
) -> Result<(), PortError> {
    let (tick, state, rotation) = (state.config.tick, &state, &Rotation::default());
    every_tick(tick, stop, "cannot decide ended campaigns", move || {
        decide_ended(state, rotation, now_ms())
    })
    .await
}

/// Decides each ended campaign of the page `rotation` is at that has no outcome yet and can be
/// decided at `now_ms`; returns how many this call recorded. One that cannot be decided is passed
/// over ([`each_ended`]).
pub async fn decide_ended(
    state: &ParticipationState,
    rotation: &Rotation,
    now_ms: i64,
) -> PortResult<usize> {
    let failing = "cannot decide a campaign";
    each_ended(
        &*state.campaigns,
        BATCH,
        rotation,
        failing,
        |c| async move { decide(state, &c, now_ms).await },
    )
    .await
}

/// The hot-state key a replica deciding `campaign_id` holds.
pub fn decide_key(campaign_id: &str) -> String {
    format!("participation:decide:{campaign_id}")
}

/// Decides one ended campaign if it has no outcome, no other replica is deciding it, and it can
/// be decided at `now_ms`; true if this call recorded its outcome. The hold is given back at the
/// end either way, and in the background if this call is dropped before; without a hot state
/// answering, it decides unheld (the first outcome stands).
async fn decide(state: &ParticipationState, c: &Campaign, now_ms: i64) -> PortResult<bool> {
    if state.outcomes.decided(&c.id).await? {
        return Ok(false);
    }
    // This call's own holder: only it extends and gives back the hold it took.
    let mut hold = Hold::new(
        Arc::clone(&state.holds),
        Uuid::now_v7().simple().to_string(),
    );
    let key = decide_key(&c.id);
    match state
        .holds
        .idem_begin(&key, hold.print(), DECIDE_HOLD)
        .await
    {
        Ok(IdemState::Fresh) => hold.add(key, DECIDE_HOLD),
        Ok(_) => {
            metrics::counter!("campaign_decides_passed_total").increment(1);
            tracing::debug!(campaign = %c.id, "another replica is deciding it");
            return Ok(false);
        }
        Err(error) => {
            tracing::warn!(%error, campaign = %c.id, "deciding without a hold");
            return decide_held(state, c, now_ms).await;
        }
    }
    hold.extend_every(EXTEND_EVERY, DECIDE_HOLD, Instant::now());
    let decided = decide_held(state, c, now_ms).await;
    hold.release().await;
    decided
}

/// [`decide`] once its hold is taken.
async fn decide_held(state: &ParticipationState, c: &Campaign, now_ms: i64) -> PortResult<bool> {
    let (outcome, late) = match &c.reward {
        Reward::Draw { winners, item } => {
            (draw_outcome(state, c, *winners, item, now_ms).await?, false)
        }
        Reward::Rank { window, tiers } => {
            match rank_outcome(state, c, *window, tiers, now_ms).await? {
                Some(ranked) => ranked,
                None => return Ok(false),
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
    // Another replica's outcome may stand (the same, for a draw): it counted and logged it.
    if !state
        .outcomes
        .record_outcome(&outcome, Some(&event))
        .await?
    {
        return Ok(false);
    }
    if outcome.algorithm == ALGORITHM {
        metrics::counter!("draws_total").increment(1);
    } else {
        let read = if late { "late" } else { "on_time" };
        metrics::counter!("campaign_rankings_total", "read" => read).increment(1);
    }
    tracing::info!(
        campaign = %c.id,
        algorithm = %outcome.algorithm,
        entrants = outcome.entrants.len(),
        winners = outcome.awards.len(),
        "winners decided"
    );
    Ok(true)
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

/// A rank campaign's outcome once `LB_SETTLE_SEC` past its end: its entrants ranked by their
/// scores on the board (as the board ranks, ties by player id descending), each tier's item to
/// the ranks it covers; true if read late enough that scores after its end count.
async fn rank_outcome(
    state: &ParticipationState,
    c: &Campaign,
    window: Window,
    tiers: &[Tier],
    now_ms: i64,
) -> PortResult<Option<(Outcome, bool)>> {
    // Read once the events received before the end had time to arrive.
    let settle = i64::try_from(state.config.settle.as_millis()).unwrap_or(i64::MAX);
    let settled_at = c.ends_at_ms.saturating_add(settle);
    if now_ms < settled_at {
        return Ok(None);
    }
    let period = state.config.calendar.period_at_ms(window, c.starts_at_ms);
    let board = Board {
        window,
        period: period.id.clone(),
    };
    let entrants = state.entries.entrants(&c.id).await?;
    let scores = state.scores.scores_of(&board, &entrants).await?;
    let last = tiers.iter().map(|t| t.to_rank).max().unwrap_or(0);
    let mut awards = Vec::new();
    for e in rank_entries(scores, u64::from(last)) {
        let Ok(rank) = u32::try_from(e.rank) else {
            break;
        };
        if let Some(t) = tiers
            .iter()
            .find(|t| (t.from_rank..=t.to_rank).contains(&rank))
        {
            awards.push(Award {
                player_id: e.player_id,
                item: t.item.clone(),
                rank,
            });
        }
    }
    // Scores received after the period's end go to the next period's board: read late, a
    // campaign that ends with its period ranks the same; one that ends before counts what its
    // entrants scored since (a decider that was down at its settle time).
    let tick = i64::try_from(state.config.tick.as_millis()).unwrap_or(i64::MAX);
    let late_by = now_ms - settled_at;
    let late = late_by > tick.saturating_mul(2).saturating_add(1000)
        && c.ends_at_ms < period.to.timestamp_millis();
    let mut source = format!(
        "{window} {} scores of the entrants, read {}",
        period.id,
        rfc3339(now_ms)
    );
    if late {
        let _ = write!(
            source,
            " ({} s after its settle time: scores received since its end count)",
            late_by / 1000
        );
        tracing::warn!(campaign = %c.id, %source, "rank campaign ranked late");
    }
    let outcome = Outcome {
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
    };
    Ok(Some((outcome, late)))
}
