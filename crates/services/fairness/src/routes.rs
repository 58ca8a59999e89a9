//! `GET /fairness/players/{id}` and `GET /fairness/flags`.

use axum::extract::State;
use liveops_core::stores::Flag;
use liveops_core::{now_ms, EventType};
use liveops_http::{rfc3339, Bounded, Json, PlayerPath, Problem, Query, Reader};
use liveops_http::{Authorized, Writers};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::FairnessState;
use liveops_http::responses::{OperatorInputFailures, ReadFailures, Unauthenticated};

/// Flags listed on a player's page.
const PLAYER_FLAGS: u32 = 100;
/// Default `limit` of `/fairness/flags`.
const DEFAULT_LIMIT: i64 = 100;

/// The query of `/fairness/flags`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FlagsQuery {
    /// How many flags, newest first (default 100).
    #[param(inline)]
    limit: Option<Bounded<1, 1000>>,
}

/// A player's standing with the fairness checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerFairness {
    /// The player.
    pub player_id: String,
    /// Blocked now (the gateway answers 403).
    pub blocked: bool,
    /// When the block ends (RFC 3339), if blocked.
    pub blocked_until: Option<String>,
    /// Strikes within the strike window.
    pub strikes: u32,
    /// The player's most recent flags, newest first.
    pub flags: Vec<PlayerFlag>,
}

/// One of a player's flagged events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerFlag {
    /// The event.
    pub event_id: Uuid,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// How far `ln(1 + value)` lies above its mean for the type, in standard deviations.
    pub z_score: f64,
    /// When flagged (RFC 3339).
    pub at: String,
}

/// Recent flags, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlagList {
    /// The flags.
    pub flags: Vec<FlagView>,
}

/// A flagged event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlagView {
    /// The event.
    pub event_id: Uuid,
    /// The player it concerns.
    pub player_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The value judged.
    pub value: f64,
    /// How far `ln(1 + value)` lies above its mean for the type, in standard deviations.
    pub z_score: f64,
    /// When flagged (RFC 3339).
    pub at: String,
}

impl From<Flag> for FlagView {
    fn from(f: Flag) -> Self {
        Self {
            event_id: f.event_id,
            player_id: f.player_id,
            event_type: f.event_type,
            value: f.value,
            z_score: f.z_score,
            at: rfc3339(f.at_ms),
        }
    }
}

/// A player's fairness standing: block, strikes and recent flags.
#[utoipa::path(
    get, path = "/fairness/players/{id}", tag = "fairness", security((), ("bearer" = [])),
    params(PlayerPath),
    responses(
        (status = 200, description = "The player's standing", body = PlayerFairness),
        ReadFailures,
        Unauthenticated,
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_player_fairness(
    State(state): State<FairnessState>,
    _reader: Reader,
    PlayerPath(player): PlayerPath,
) -> Result<Json<PlayerFairness>, Problem> {
    player_view(&state, player.as_str()).await.map(Json)
}

/// Until when `player` is blocked (unix ms), if they are, and their strikes within the strike
/// window at `now`.
async fn standing(
    state: &FairnessState,
    player: &str,
    now: i64,
) -> Result<(Option<i64>, u32), Problem> {
    let until = state.blocks.blocked_until(player).await?;
    let strikes = state
        .blocks
        .strikes(player, now, state.config.strike_window)
        .await?;
    Ok((until, strikes))
}

async fn player_view(state: &FairnessState, player: &str) -> Result<PlayerFairness, Problem> {
    let (until, strikes) = standing(state, player, now_ms()).await?;
    let flags = state.store.flags(Some(player), PLAYER_FLAGS).await?;
    Ok(PlayerFairness {
        player_id: player.to_owned(),
        blocked: until.is_some(),
        blocked_until: until.map(rfc3339),
        strikes,
        flags: flags
            .into_iter()
            .map(|f| PlayerFlag {
                event_id: f.event_id,
                event_type: f.event_type,
                z_score: f.z_score,
                at: rfc3339(f.at_ms),
            })
            .collect(),
    })
}

/// Recent flagged events across all players, newest first.
#[utoipa::path(
    get, path = "/fairness/flags", tag = "fairness", security((), ("bearer" = [])),
    params(FlagsQuery),
    responses(
        (status = 200, description = "Recent flags", body = FlagList),
        ReadFailures,
        Unauthenticated,
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn list_flags(
    State(state): State<FairnessState>,
    _reader: Reader,
    Query(query): Query<FlagsQuery>,
) -> Result<Json<FlagList>, Problem> {
    let limit = query.limit.map_or(DEFAULT_LIMIT, Bounded::get);
    let flags = state
        .store
        .flags(None, u32::try_from(limit).unwrap_or(u32::MAX))
        .await?;
    Ok(Json(FlagList {
        flags: flags.into_iter().map(FlagView::from).collect(),
    }))
}

/// Lifts a player's block and forgets their strikes at once; recorded in the audit log.
#[utoipa::path(
    delete, path = "/fairness/players/{id}/block", tag = "fairness", security(("bearer" = [])),
    params(PlayerPath),
    responses(
        (status = 200, description = "The player's standing after the unblock", body = PlayerFairness),
        OperatorInputFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email, player = %player.as_str()))]
pub(crate) async fn unblock_player(
    State(state): State<FairnessState>,
    op: Authorized<Writers>,
    PlayerPath(player): PlayerPath,
) -> Result<Json<PlayerFairness>, Problem> {
    let p = player.as_str();
    let now = now_ms();
    let (until, strikes) = standing(&state, p, now).await?;
    let before = serde_json::json!({
        "blocked": until.is_some(),
        "blockedUntil": until.map(rfc3339),
        "strikes": strikes,
    });
    let after = serde_json::json!({"blocked": false, "blockedUntil": null, "strikes": 0});
    let audit = op.audit(
        now,
        "player.unblock",
        p,
        Some(before.to_string()),
        Some(after.to_string()),
    );
    // Recorded first: an unblock the audit log cannot hold is not made (503, retried), so none
    // goes unrecorded; one recorded whose unblock then fails is recorded again by the retry.
    state.audit.record(&audit).await?;
    state.blocks.unblock(p, state.config.strike_keep()).await?;
    tracing::info!(was_blocked = until.is_some(), "player unblocked");
    player_view(&state, p).await.map(Json)
}
