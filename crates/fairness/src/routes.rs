//! `GET /fairness/players/{id}` and `GET /fairness/flags`.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use liveops_core::ports::Flag;
use liveops_core::{now_ms, EventType, PlayerId, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::FairnessState;

/// Flags listed on a player's page.
const PLAYER_FLAGS: u32 = 100;
/// Default and largest `limit` of `/fairness/flags`.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// A player's standing with the fairness checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PlayerFairness {
    /// Who.
    pub(crate) player_id: String,
    /// Blocked now (the gateway answers 403).
    pub(crate) blocked: bool,
    /// When the block ends (RFC 3339), if blocked.
    pub(crate) blocked_until: Option<String>,
    /// Strikes within the strike window.
    pub(crate) strikes: u32,
    /// The player's most recent flags, newest first.
    pub(crate) flags: Vec<PlayerFlag>,
}

/// One of a player's flagged events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PlayerFlag {
    /// The event.
    pub(crate) event_id: Uuid,
    /// Its type.
    #[serde(rename = "type")]
    pub(crate) event_type: EventType,
    /// How far above the mean, in standard deviations.
    pub(crate) z_score: f64,
    /// When flagged (RFC 3339).
    pub(crate) at: String,
}

/// Recent flags, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub(crate) struct FlagList {
    /// The flags.
    pub(crate) flags: Vec<FlagView>,
}

/// A flagged event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FlagView {
    /// The event.
    pub(crate) event_id: Uuid,
    /// Whose.
    pub(crate) player_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub(crate) event_type: EventType,
    /// The value judged.
    pub(crate) value: f64,
    /// How far above the mean, in standard deviations.
    pub(crate) z_score: f64,
    /// When flagged (RFC 3339).
    pub(crate) at: String,
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

/// RFC 3339 text of a unix-millisecond instant.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// A player's fairness standing: block, strikes and recent flags.
#[utoipa::path(
    get,
    path = "/fairness/players/{id}",
    tag = "fairness",
    params(("id" = String, Path, description = "Player id, `^[A-Za-z0-9_]{3,50}$`")),
    responses(
        (status = 200, description = "The player's standing", body = PlayerFairness),
        (status = 400, description = "Invalid player id", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is down; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn player(
    State(state): State<FairnessState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<PlayerFairness>, Problem> {
    let Path(id) = id.map_err(|e| Problem::invalid("id", e.body_text()))?;
    let player = PlayerId::parse(&id).map_err(|reason| Problem::invalid("id", reason))?;
    let player = player.as_str();
    let now = now_ms();
    let until = state.hot.blocked_until(player).await?;
    let strikes = state
        .hot
        .strikes(player, now, state.config.strike_window)
        .await?;
    let flags = state.repo.flags(Some(player), PLAYER_FLAGS).await?;
    Ok(Json(PlayerFairness {
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
    }))
}

/// Recent flagged events across all players, newest first.
#[utoipa::path(
    get,
    path = "/fairness/flags",
    tag = "fairness",
    params(("limit" = Option<u32>, Query, description = "1..=1000, default 100")),
    responses(
        (status = 200, description = "Recent flags", body = FlagList),
        (status = 400, description = "Bad `limit`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The repository is down; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn flags(
    State(state): State<FairnessState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<FlagList>, Problem> {
    let Query(query) = query.map_err(|e| Problem::invalid("query", e.body_text()))?;
    let limit = parse_limit(query.get("limit").map(String::as_str))?;
    let flags = state.repo.flags(None, limit).await?;
    Ok(Json(FlagList {
        flags: flags.into_iter().map(FlagView::from).collect(),
    }))
}

/// `limit`: 1..=1000, 100 when absent.
fn parse_limit(raw: Option<&str>) -> Result<u32, Problem> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Problem::invalid(
            "limit",
            format!("must be an integer between 1 and {MAX_LIMIT}"),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(parse_limit(None), Ok(100));
        assert_eq!(parse_limit(Some("1")), Ok(1));
        assert_eq!(parse_limit(Some("1000")), Ok(1000));
        for bad in ["0", "1001", "-1", "x", "", "1.5"] {
            let p = parse_limit(Some(bad)).unwrap_err();
            assert_eq!(
                (p.status, p.field.as_deref()),
                (400, Some("limit")),
                "{bad}"
            );
        }
    }

    #[test]
    fn instants_render_as_rfc3339() {
        assert_eq!(rfc3339(1_638_360_000_500), "2021-12-01T12:00:00.500Z");
    }
}
