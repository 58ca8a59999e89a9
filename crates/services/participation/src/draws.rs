//! `GET /campaigns/{id}/draw`: the draw as published, with its entrants list or without it
//! (`?entrants=false`, for a verifier paging through `GET /campaigns/{id}/entrants`). A decided
//! draw's answer is kept ([`ClosedCampaigns`]) and served again as it is, an undecided one's for
//! [`OPEN_COUNT_FRESH`](crate::closed::OPEN_COUNT_FRESH); reading the whole list takes a turn
//! ([`whole_list_turn`]), and a reader that waited for one serves what another wrote meanwhile.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use liveops_core::draw::{EntrantsHash, PublishedDraw, ALGORITHM};
use liveops_core::stores::{OutcomeSummary, Reward};
use liveops_http::responses::LookupFailures;
use liveops_http::{campaign_or_404, IdPath, Problem, Query};
use serde::Deserialize;
use std::time::Instant;
use utoipa::IntoParams;

use crate::routes::{whole_list_turn, MAX_PAGE};
use crate::{ClosedCampaigns, ParticipationState};

/// The query of `GET /campaigns/{id}/draw`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DrawQuery {
    /// `false`: without the entrants list (`GET /campaigns/{id}/entrants` pages through it);
    /// default `true`.
    entrants: Option<bool>,
}

/// A draw campaign's draw: the commitment from scheduling on; the entrants so far, their count
/// and hash; the seed and the winners once drawn. Re-run it with `liveops verify-draw`.
#[utoipa::path(
    get, path = "/campaigns/{id}/draw", tag = "participation", params(IdPath, DrawQuery),
    responses(
        (status = 200, description = "The draw (seed and winners once drawn)", body = PublishedDraw),
        (status = 409, description = "A rank campaign, or a draft (no commitment yet)", body = Problem, content_type = "application/problem+json"),
        LookupFailures,
    )
)]
pub(crate) async fn get_draw(
    State(state): State<ParticipationState>,
    IdPath(id): IdPath,
    Query(query): Query<DrawQuery>,
) -> Result<Response, Problem> {
    let campaign = campaign_or_404(&*state.campaigns, &id).await?;
    let Reward::Draw { winners, .. } = &campaign.reward else {
        return Err(Problem::conflict(
            "not-a-draw",
            "a rank campaign: its winners come from the leaderboard",
        ));
    };
    let Some(commitment) = campaign.commitment.clone() else {
        return Err(Problem::conflict(
            "not-scheduled",
            "a draft has no commitment yet: schedule it first",
        ));
    };
    let with_list = query.entrants.unwrap_or(true);
    if let Some(json) = state.closed.draw(&id, with_list, Instant::now()) {
        return Ok(answer(json));
    }
    let committed = Committed {
        commitment,
        winner_count: *winners,
    };
    if with_list {
        // The list and its JSON are both in memory until written out: under a turn.
        let _turn = whole_list_turn().await?;
        if let Some(json) = state.closed.kept_draw(&id, with_list, Instant::now()) {
            return Ok(answer(json));
        }
        let (draw, decided) = match state.outcomes.outcome(&id).await? {
            Some(o) => {
                let (summary, entrants) = o.into_summary();
                let count = entrants.len() as u64;
                (committed.decided(summary, count, Some(entrants)), true)
            }
            None => (committed.listed(state.entries.entrants(&id).await?), false),
        };
        return written(&state.closed, &id, with_list, &draw, decided);
    }
    match state.outcomes.outcome_summary(&id).await? {
        // Entries end before the draw: the entrants counted now are those drawn from.
        Some(summary) => {
            let count = state.entries.entrant_count(&id).await?;
            let draw = committed.decided(summary, count, None);
            written(&state.closed, &id, with_list, &draw, true)
        }
        None => {
            // Not drawn yet: the hash of the entrants so far is of every one of them, read a
            // page at a time (one page in memory), under a turn all the same.
            let _turn = whole_list_turn().await?;
            if let Some(json) = state.closed.kept_draw(&id, with_list, Instant::now()) {
                return Ok(answer(json));
            }
            let draw = committed.hashed(hashed_pages(&state, &id).await?);
            written(&state.closed, &id, with_list, &draw, false)
        }
    }
}

/// What a draw campaign committed to when scheduled: its seed's commitment, its winner count.
struct Committed {
    commitment: String,
    winner_count: u32,
}

impl Committed {
    /// The draw so far over `entrants` (distinct, sorted by bytes), listed.
    fn listed(self, entrants: Vec<String>) -> PublishedDraw {
        let mut draw = self.hashed(EntrantsHash::of(&entrants));
        draw.entrants = Some(entrants);
        draw
    }

    /// The draw so far over the entrants `hash` took, without them.
    fn hashed(self, hash: EntrantsHash) -> PublishedDraw {
        PublishedDraw {
            algorithm: ALGORITHM.into(),
            commitment: self.commitment,
            entrant_count: Some(hash.count()),
            entrants_hash: hash.finish(),
            entrants: None,
            seed: None,
            winner_count: Some(self.winner_count),
            winners: None,
        }
    }

    /// The draw as decided (`summary`), over `count` entrants, listed if `entrants` are given.
    fn decided(
        self,
        summary: OutcomeSummary,
        count: u64,
        entrants: Option<Vec<String>>,
    ) -> PublishedDraw {
        PublishedDraw {
            algorithm: summary.algorithm,
            commitment: summary.commitment.unwrap_or(self.commitment),
            entrants_hash: summary.entrants_hash,
            entrant_count: Some(count),
            entrants,
            seed: summary.seed,
            winner_count: summary.winner_count,
            winners: Some(summary.awards.into_iter().map(|a| a.player_id).collect()),
        }
    }
}

/// The hash and count of the campaign's entrants, read page by page.
async fn hashed_pages(state: &ParticipationState, id: &str) -> Result<EntrantsHash, Problem> {
    let mut hash = EntrantsHash::default();
    let page_size = u32::try_from(MAX_PAGE).unwrap_or(u32::MAX);
    let mut after: Option<String> = None;
    loop {
        let page = state
            .entries
            .entrants_page(id, after.as_deref(), page_size)
            .await?;
        hash.extend(&page);
        match page.last() {
            Some(last) if page.len() == page_size as usize => after = Some(last.clone()),
            _ => return Ok(hash),
        }
    }
}

/// `draw` written out as JSON, kept in `closed` (for a while if not `decided`).
fn written(
    closed: &ClosedCampaigns,
    id: &str,
    with_list: bool,
    draw: &PublishedDraw,
    decided: bool,
) -> Result<Response, Problem> {
    let json = Bytes::from(serde_json::to_vec(draw).map_err(|e| {
        tracing::error!(error = %e, campaign = %id, "cannot write a draw out");
        Problem::internal()
    })?);
    if decided {
        closed.keep_draw(id, with_list, json.clone());
    } else {
        closed.keep_open_draw(id, with_list, json.clone(), Instant::now());
    }
    Ok(answer(json))
}

/// A JSON answer of `json`.
fn answer(json: Bytes) -> Response {
    ([(CONTENT_TYPE, "application/json")], json).into_response()
}

#[cfg(test)]
mod tests {
    use liveops_core::draw;

    use super::*;

    #[test]
    fn a_listed_draw_is_the_hashed_one_with_its_list() {
        let entrants = draw::entrants(["b", "a", "c"]);
        let committed = || Committed {
            commitment: "c0".into(),
            winner_count: 2,
        };
        let listed = committed().listed(entrants.clone());
        assert_eq!(listed.entrants_hash, draw::entrants_hash(&entrants));
        assert_eq!(listed.entrant_count, Some(3));
        let hashed = committed().hashed(EntrantsHash::of(&entrants));
        assert_eq!(
            PublishedDraw {
                entrants: Some(entrants),
                ..hashed
            },
            listed
        );
    }
}
