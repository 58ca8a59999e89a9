//! HTTP routes: `/leaderboard`, `/leaderboard/players/{id}`, `/leaderboard/history`,
//! `/leaderboard/history/periods`.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{SecondsFormat, TimeZone, Utc};
use liveops_core::ports::{Board, RankEntry, Snapshot};
use liveops_core::{now_ms, Period, PlayerId, PortError, Problem, Window};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::scores::is_live;
use crate::LeaderboardState;

/// Largest `limit` on `/leaderboard`.
const MAX_LIMIT: u64 = 1000;
/// Largest `around` on `/leaderboard/players/{id}`.
const MAX_AROUND: u64 = 50;
/// Default `around`.
const DEFAULT_AROUND: u64 = 5;
/// Default `limit` on `/leaderboard/history/periods`.
const DEFAULT_PERIODS: u64 = 100;
/// How many recent snapshots are searched for the latest final one.
const FINAL_SEARCH: u32 = 50;

/// The top of a board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderboardView {
    /// The window.
    pub window: Window,
    /// The period id (`2026-W47`).
    pub period: String,
    /// Period start (RFC 3339, inclusive).
    pub from: String,
    /// Period end (RFC 3339, exclusive).
    pub to: String,
    /// Ranked players, best first.
    pub entries: Vec<RankEntry>,
}

/// One player's standing on a board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerRankView {
    /// The window.
    pub window: Window,
    /// The period id.
    pub period: String,
    /// Who.
    pub player_id: String,
    /// 1-based position.
    pub rank: u64,
    /// Score in this period.
    pub score: i64,
    /// Up to `around` players above and below, in rank order, the player included.
    pub neighbours: Vec<RankEntry>,
}

/// An archived board (the hall of fame when final).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    /// The window.
    pub window: Window,
    /// The period id.
    pub period: String,
    /// Period start (RFC 3339, inclusive).
    pub from: String,
    /// Period end (RFC 3339, exclusive).
    pub to: String,
    /// When the snapshot was taken (RFC 3339).
    pub taken_at: String,
    /// Taken after the period ended.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The top entries at that time.
    pub entries: Vec<RankEntry>,
}

/// Periods of a window with an archived snapshot, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeriodsView {
    /// The window.
    pub window: Window,
    /// Period ids, newest first.
    pub periods: Vec<String>,
}

type Params = HashMap<String, String>;

fn query_problem(e: QueryRejection) -> Problem {
    Problem::invalid("query", format!("bad query string: {}", e.body_text()))
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `window`: one of the configured windows, default the first.
fn window(state: &LeaderboardState, q: &Params) -> Result<Window, Problem> {
    let configured = &state.config.windows;
    let names = || {
        configured
            .iter()
            .map(|w| w.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match q.get("window") {
        None => configured
            .first()
            .copied()
            .ok_or_else(|| Problem::invalid("window", "no window is configured")),
        Some(s) => Window::parse(s.trim())
            .filter(|w| configured.contains(w))
            .ok_or_else(|| Problem::invalid("window", format!("must be one of: {}", names()))),
    }
}

/// `period`: an id of `window`, default the current period.
fn period(
    state: &LeaderboardState,
    q: &Params,
    window: Window,
    now: i64,
) -> Result<Period, Problem> {
    let calendar = &state.config.calendar;
    match q.get("period") {
        None => Ok(calendar.period_at_ms(window, now)),
        Some(s) => calendar.parse_period(window, s.trim()).map_err(|_| {
            let example = calendar.period_at_ms(window, now).id;
            Problem::invalid(
                "period",
                format!("not a {window} period id (like {example:?})"),
            )
        }),
    }
}

/// An integer parameter within `range`, or `default` when absent.
fn int(
    q: &Params,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<u64, Problem> {
    match q.get(name) {
        None => Ok(default),
        Some(s) => s
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                Problem::invalid(
                    name,
                    format!(
                        "must be an integer between {} and {}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

fn not_found_board(board: &Board) -> Problem {
    Problem::not_found(format!(
        "no {} leaderboard for period {}",
        board.window, board.period
    ))
}

/// The top of a board: live for the current and previous period, else its archived snapshot.
#[utoipa::path(
    get,
    path = "/leaderboard",
    tag = "leaderboard",
    params(
        ("window" = Option<String>, Query, description = "daily | weekly | seasonal (configured ones); default the first configured"),
        ("limit" = Option<u64>, Query, description = "1..=1000; default LB_TOPN"),
        ("period" = Option<String>, Query, description = "Period id (`2026-11-21`, `2026-W47`, `season-4`); default the current one"),
    ),
    responses(
        (status = 200, description = "Ranked players", body = LeaderboardView),
        (status = 400, description = "Bad window, limit or period", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such board (not live, never archived)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_leaderboard(
    State(state): State<LeaderboardState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let now = now_ms();
    let window = window(&state, &q)?;
    let default_limit = state.config.top_n.clamp(1, MAX_LIMIT);
    let limit = int(&q, "limit", 1..=MAX_LIMIT, default_limit)?;
    let period = period(&state, &q, window, now)?;
    let board = Board {
        window,
        period: period.id.clone(),
    };
    let live = is_live(&state.config.calendar, &board, now);
    let generation = state.top_cache.generation();
    if live {
        ensure_loaded(&state)?;
        if let Some(body) = state.top_cache.get(window, &board.period, limit) {
            return Ok(json_body(body));
        }
    }
    let entries = if live {
        state.ranks.top(&board, 0, limit).await?
    } else {
        let snapshot = state
            .repo
            .snapshot(&board)
            .await?
            .ok_or_else(|| not_found_board(&board))?;
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        snapshot.entries.into_iter().take(take).collect()
    };
    let view = LeaderboardView {
        window,
        period: period.id,
        from: rfc3339(period.from),
        to: rfc3339(period.to),
        entries,
    };
    let body = Bytes::from(serde_json::to_vec(&view).map_err(|e| {
        Problem::from(PortError::Corrupt(format!(
            "cannot encode the leaderboard: {e}"
        )))
    })?);
    if live {
        state
            .top_cache
            .put(window, board.period, limit, generation, body.clone());
    }
    Ok(json_body(body))
}

/// A `200` with a JSON body already encoded.
fn json_body(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Live boards are rebuilt from the repository at start; until then they would look empty.
fn ensure_loaded(state: &LeaderboardState) -> Result<(), Problem> {
    if state.loaded.load(std::sync::atomic::Ordering::Acquire) {
        Ok(())
    } else {
        Err(Problem::unavailable(
            "the leaderboard is loading after a restart; retry shortly",
        ))
    }
}

/// A player's rank and score with neighbours above and below.
#[utoipa::path(
    get,
    path = "/leaderboard/players/{id}",
    tag = "leaderboard",
    params(
        ("id" = String, Path, description = "Player id, `^[A-Za-z0-9_]{3,50}$`"),
        ("window" = Option<String>, Query, description = "A configured window; default the first configured"),
        ("around" = Option<u64>, Query, description = "Neighbours above and below, 0..=50; default 5"),
        ("period" = Option<String>, Query, description = "Period id; default the current one"),
    ),
    responses(
        (status = 200, description = "The player's standing", body = PlayerRankView),
        (status = 400, description = "Bad player id, window, around or period", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The player is not ranked on this board", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(player))]
pub(crate) async fn get_player_rank(
    State(state): State<LeaderboardState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<PlayerRankView>, Problem> {
    let Path(raw) =
        path.map_err(|e| Problem::invalid("id", format!("bad path: {}", e.body_text())))?;
    let Query(q) = query.map_err(query_problem)?;
    let player = PlayerId::parse(&raw).map_err(|r| Problem::invalid("id", r))?;
    tracing::Span::current().record("player", player.as_str());
    let now = now_ms();
    let window = window(&state, &q)?;
    let around = int(&q, "around", 0..=MAX_AROUND, DEFAULT_AROUND)?;
    let period = period(&state, &q, window, now)?;
    let board = Board {
        window,
        period: period.id,
    };
    let not_ranked = || {
        Problem::not_found(format!(
            "player {} is not ranked on the {} board of {}",
            player.as_str(),
            board.window,
            board.period
        ))
    };

    let neighbours = if is_live(&state.config.calendar, &board, now) {
        ensure_loaded(&state)?;
        state
            .ranks
            .around(&board, player.as_str(), around)
            .await?
            .ok_or_else(not_ranked)?
    } else {
        let snapshot = state
            .repo
            .snapshot(&board)
            .await?
            .ok_or_else(|| not_found_board(&board))?;
        let i = snapshot
            .entries
            .iter()
            .position(|e| e.player_id == player.as_str())
            .ok_or_else(not_ranked)?;
        let n = usize::try_from(around).unwrap_or(usize::MAX);
        let end = i
            .saturating_add(n)
            .saturating_add(1)
            .min(snapshot.entries.len());
        snapshot.entries[i.saturating_sub(n)..end].to_vec()
    };
    let me = neighbours
        .iter()
        .find(|e| e.player_id == player.as_str())
        .cloned()
        .ok_or_else(|| {
            tracing::error!("rank store answered around() without the player");
            Problem::from(PortError::Corrupt("around() without the player".into()))
        })?;
    Ok(Json(PlayerRankView {
        window: board.window,
        period: board.period,
        player_id: me.player_id,
        rank: me.rank,
        score: me.score,
        neighbours,
    }))
}

fn history_view(state: &LeaderboardState, s: Snapshot) -> Result<HistoryView, Problem> {
    let period = state
        .config
        .calendar
        .parse_period(s.window, &s.period)
        .map_err(|e| {
            tracing::error!(%e, "stored snapshot has an unreadable period");
            Problem::from(PortError::Corrupt(e.to_string()))
        })?;
    let taken_at = Utc
        .timestamp_millis_opt(s.taken_at_ms)
        .single()
        .unwrap_or_default();
    Ok(HistoryView {
        window: s.window,
        period: s.period,
        from: rfc3339(period.from),
        to: rfc3339(period.to),
        taken_at: rfc3339(taken_at),
        is_final: s.is_final,
        entries: s.entries,
    })
}

/// An archived board; without `period`, the most recent final one (the latest hall of fame).
#[utoipa::path(
    get,
    path = "/leaderboard/history",
    tag = "leaderboard",
    params(
        ("window" = Option<String>, Query, description = "A configured window; default the first configured"),
        ("period" = Option<String>, Query, description = "Period id; default the latest with a final snapshot"),
    ),
    responses(
        (status = 200, description = "The archived snapshot", body = HistoryView),
        (status = 400, description = "Bad window or period", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No snapshot", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_history(
    State(state): State<LeaderboardState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<HistoryView>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let window = window(&state, &q)?;
    let snapshot = if q.contains_key("period") {
        let period = period(&state, &q, window, now_ms())?;
        let board = Board {
            window,
            period: period.id,
        };
        state.repo.snapshot(&board).await?.ok_or_else(|| {
            Problem::not_found(format!(
                "no snapshot of the {} board of {}",
                board.window, board.period
            ))
        })?
    } else {
        let mut latest = None;
        for period in state.repo.snapshot_periods(window, FINAL_SEARCH).await? {
            let board = Board { window, period };
            if let Some(s) = state.repo.snapshot(&board).await? {
                if s.is_final {
                    latest = Some(s);
                    break;
                }
            }
        }
        latest.ok_or_else(|| Problem::not_found(format!("no final {window} snapshot yet")))?
    };
    Ok(Json(history_view(&state, snapshot)?))
}

/// Periods of a window with an archived snapshot, newest first (the hall of fame index).
#[utoipa::path(
    get,
    path = "/leaderboard/history/periods",
    tag = "leaderboard",
    params(
        ("window" = Option<String>, Query, description = "A configured window; default the first configured"),
        ("limit" = Option<u64>, Query, description = "1..=1000; default 100"),
    ),
    responses(
        (status = 200, description = "Archived periods", body = PeriodsView),
        (status = 400, description = "Bad window or limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A backend is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_history_periods(
    State(state): State<LeaderboardState>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Json<PeriodsView>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let window = window(&state, &q)?;
    let limit = int(&q, "limit", 1..=MAX_LIMIT, DEFAULT_PERIODS)?;
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    let periods = state.repo.snapshot_periods(window, limit).await?;
    Ok(Json(PeriodsView { window, periods }))
}
