//! Settlement: every ended campaign with an outcome pays each winner into their inbox, then
//! moves to `settled`. Winners are paid in groups of [`GROUP`], each one transaction writing
//! their messages and settlement marks (campaign, player), so a crash at any point and a re-run
//! (here or on another replica) never writes a second message; the move to `settled` is the conditional update every state
//! change is, with the `campaign.settled` event. A tick takes the newest-created page of ended
//! campaigns and the next page past it ([`liveops_module::tick::Rotation`]), so with more than a
//! page ended the older ones are settled a page per tick.

use liveops_core::stores::{
    Award, Campaign, CampaignEvent, CampaignState, InboxMessage, OutcomeSummary,
};
use liveops_core::{now_ms, PortError, PortResult};
use liveops_module::tick::{each_ended, every_tick, Rotation};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::DistributionState;

/// Most ended campaigns looked at per tick (a page; the next tick takes the next page).
const BATCH: u32 = 100;

/// Winners paid per transaction: one commit and one take of the inbox's position counter for a
/// few hundred messages (10 000 winners: 50 transactions, not 10 000), each well within every
/// backend's statement bounds, and the counter held for a group's few statements.
const GROUP: usize = 200;

/// Winners per transaction while the test-only `SETTLE_DELAY_MS` is set: a settlement of a
/// hundred winners then spans several commits, for a test to kill the process between two.
const DELAYED_GROUP: usize = 10;

/// Runs settlement every tick until `stop`.
pub async fn run_settler(
    state: DistributionState,
    stop: CancellationToken,
) -> Result<(), PortError> {
    let (tick, state, rotation) = (state.config.settle_tick, &state, &Rotation::default());
    every_tick(tick, stop, "cannot settle ended campaigns", move || {
        settle_ended(state, rotation)
    })
    .await
}

/// Places, every settlement tick until `stop`, the messages a process of the release before
/// positions wrote during a rolling upgrade (ADR 0025), so that the inbox lists them: a page of
/// 200 a tick, in a task of its own so that a long settlement round does not hold them back.
pub async fn run_placer(
    state: DistributionState,
    stop: CancellationToken,
) -> Result<(), PortError> {
    let (tick, state) = (state.config.settle_tick, &state);
    every_tick(
        tick,
        stop,
        "cannot place inbox messages",
        move || async move {
            let placed = state.inbox.place_messages(200).await?;
            if placed > 0 {
                metrics::counter!("inbox_messages_placed_total").increment(placed);
                tracing::info!(placed, "inbox messages written without a position placed");
            }
            Ok(placed)
        },
    )
    .await
}

fn message(
    c: &Campaign,
    outcome: &OutcomeSummary,
    award: &Award,
    now: i64,
    claim_ms: i64,
) -> InboxMessage {
    let body = if outcome.seed.is_some() {
        format!(
            "You were drawn as a winner of {}. Claim your {} before it expires.",
            c.title, award.item
        )
    } else {
        format!(
            "You placed #{} in {}. Claim your {} before it expires.",
            award.rank, c.title, award.item
        )
    };
    InboxMessage {
        message_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        player_id: Some(award.player_id.clone()),
        campaign_id: Some(c.id.clone()),
        title: c.title.chars().take(200).collect(),
        body,
        attachments: vec![award.item.clone()],
        created_at_ms: now,
        expires_at_ms: now.saturating_add(claim_ms),
    }
}

/// Settles each ended campaign of the page `rotation` is at that has an outcome; returns how
/// many this call moved to `settled`. One that cannot be settled is passed over ([`each_ended`]).
pub async fn settle_ended(state: &DistributionState, rotation: &Rotation) -> PortResult<usize> {
    let claim_ms = i64::try_from(state.config.claim_window.as_millis()).unwrap_or(i64::MAX);
    let failing = "cannot settle a campaign";
    each_ended(
        &*state.campaigns,
        BATCH,
        rotation,
        failing,
        |c| async move { settle(state, &c, claim_ms).await },
    )
    .await
}

/// Pays each winner of campaign `c` into their inbox and moves it to `settled`, if it has an
/// outcome; true if this call moved it.
async fn settle(state: &DistributionState, c: &Campaign, claim_ms: i64) -> PortResult<bool> {
    // Without its entrants: a big draw's list (megabytes) is not needed to pay its winners.
    let Some(outcome) = state.outcomes.outcome_summary(&c.id).await? else {
        return Ok(false);
    };
    let delay = state.config.settle_delay;
    let group = if delay.is_zero() {
        GROUP
    } else {
        DELAYED_GROUP
    };
    let mut written = 0u64;
    for awards in outcome.awards.chunks(group) {
        let now = now_ms();
        let messages: Vec<InboxMessage> = awards
            .iter()
            .map(|award| message(c, &outcome, award, now, claim_ms))
            .collect();
        written += state.inbox.settle(&c.id, &messages).await?;
        if !delay.is_zero() {
            tokio::time::sleep(delay * u32::try_from(awards.len()).unwrap_or(u32::MAX)).await;
        }
    }
    let event = CampaignEvent {
        kind: "campaign.settled".into(),
        campaign_id: c.id.clone(),
        at_ms: now_ms(),
        data: json!({
            "campaignId": c.id,
            "title": c.title,
            "state": CampaignState::Settled,
            "winners": outcome.awards.len(),
        })
        .to_string(),
    };
    let moved = state.campaigns.advance(
        &c.id,
        CampaignState::Ended,
        CampaignState::Settled,
        Some(&event),
    );
    if !moved.await? {
        return Ok(false);
    }
    metrics::counter!("campaigns_total", "state" => "settled").increment(1);
    tracing::info!(
        campaign = %c.id,
        winners = outcome.awards.len(),
        written,
        "campaign settled"
    );
    Ok(true)
}
