//! HTTP routes: `/leaderboard`, `/leaderboard/players/{id}`, `/leaderboard/history`,
//! `/leaderboard/history/periods`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use liveops_core::ports::{Board, RankEntry};
use liveops_core::stores::Snapshot;
use liveops_core::{now_ms, Period, PortError, Window};
use liveops_http::{rfc3339, Bounded, Json, PlayerPath, Problem, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::scores::is_live;
use crate::LeaderboardState;
use liveops_http::responses::{LookupFailures, ReadFailures};

/// Largest `limit` on `/leaderboard`.
const MAX_LIMIT: u64 = 1000;
/// Default `around`.
const DEFAULT_AROUND: i64 = 5;
/// Default `limit` on `/leaderboard/history/periods`.
const DEFAULT_PERIODS: i64 = 100;

/// A page size: 1..=1000.
type Limit = Bounded<1, 1000>;

/// The query of `GET /leaderboard`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TopQuery {
    /// A configured window; default the first configured.
    #[param(value_type = Option<Window>, inline)]
    window: Option<String>,
    /// How many entries (default `LB_TOPN`).
    #[param(inline)]
    limit: Option<Limit>,
    /// Period id (`2026-11-21`, `2026-W47`, `season-4`); default the current one.
    period: Option<String>,
}

/// The query of `GET /leaderboard/players/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RankQuery {
    /// A configured window; default the first configured.
    #[param(value_type = Option<Window>, inline)]
    window: Option<String>,
    /// Neighbours above and below (default 5).
    #[param(inline)]
    around: Option<Bounded<0, 50>>,
    /// Period id; default the current one.
    period: Option<String>,
}

/// The query of `GET /leaderboard/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// A configured window; default the first configured.
    #[param(value_type = Option<Window>, inline)]
    window: Option<String>,
    /// Period id; default the latest with a final snapshot.
    period: Option<String>,
}

/// The query of `GET /leaderboard/history/periods`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PeriodsQuery {
    /// A configured window; default the first configured.
    #[param(value_type = Option<Window>, inline)]
    window: Option<String>,
    /// How many periods (default 100).
    #[param(inline)]
    limit: Option<Limit>,
}
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
    /// Whether the entries are the period's final snapshot (not a live board or a running one).
    #[serde(rename = "final")]
    pub is_final: bool,
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
    /// The player.
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

/// `window`: one of the configured windows, default the first.
fn window(state: &LeaderboardState, q: Option<&str>) -> Result<Window, Problem> {
    let configured = &state.config.windows;
    let names = || {
        configured
            .iter()
            .map(|w| w.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match q {
        None => configured
            .first()
            .copied()
            .ok_or_else(|| Problem::invalid("window", "no window is configured")),
        Some(s) => Window::parse(s)
            .filter(|w| configured.contains(w))
            .ok_or_else(|| Problem::invalid("window", format!("must be one of: {}", names()))),
    }
}

/// `period`: an id of `window`, default the current period.
fn period(
    state: &LeaderboardState,
    q: Option<&str>,
    window: Window,
    now: i64,
) -> Result<Period, Problem> {
    let calendar = &state.config.calendar;
    match q {
        None => Ok(calendar.period_at_ms(window, now)),
        Some(s) => calendar.parse_period(window, s).map_err(|e| {
            if e.well_formed {
                return Problem::not_found(format!("there is no {window} period {s}"));
            }
            let example = calendar.period_at_ms(window, now).id;
            Problem::invalid(
                "period",
                format!("not a {window} period id (like {example:?})"),
            )
        }),
    }
}

/// The board of `window` and `period` as a query names them (defaults: the first configured
/// window, its period at `now`), and that period.
fn board(
    state: &LeaderboardState,
    q_window: Option<&str>,
    q_period: Option<&str>,
    now: i64,
) -> Result<(Board, Period), Problem> {
    let window = window(state, q_window)?;
    let period = period(state, q_period, window, now)?;
    let board = Board {
        window,
        period: period.id.clone(),
    };
    Ok((board, period))
}

/// The archived snapshot of `board`; 404 if there is none.
async fn archived(state: &LeaderboardState, board: &Board) -> Result<Snapshot, Problem> {
    state.snapshots.snapshot(board).await?.ok_or_else(|| {
        Problem::not_found(format!(
            "no {} leaderboard for period {}",
            board.window, board.period
        ))
    })
}

/// The top of a board: live for the current and previous period, else its archived snapshot
/// (`final` says whether that is the period's final ranking).
#[utoipa::path(
    get, path = "/leaderboard", tag = "leaderboard", params(TopQuery),
    responses(
        (status = 200, description = "Ranked players", body = LeaderboardView),
        LookupFailures,
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_leaderboard(
    State(state): State<LeaderboardState>,
    Query(q): Query<TopQuery>,
) -> Result<Response, Problem> {
    let now = now_ms();
    let (board, period) = board(&state, q.window.as_deref(), q.period.as_deref(), now)?;
    let window = board.window;
    let default_limit = state.config.top_n.clamp(1, MAX_LIMIT);
    let limit = q
        .limit
        .map_or(default_limit, |l| u64::try_from(l.get()).unwrap_or(1));
    let live = is_live(&state.config.calendar, &board, now);
    let generation = state.top_cache.generation();
    if live {
        ensure_loaded(&state)?;
        if let Some(body) = state.top_cache.get(window, &board.period, limit) {
            return Ok(json_body(body));
        }
    }
    let (entries, is_final) = if live {
        (state.ranks.top(&board, 0, limit).await?, false)
    } else {
        let snapshot = archived(&state, &board).await?;
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        let entries = snapshot.entries.into_iter().take(take).collect();
        (entries, snapshot.is_final)
    };
    let view = LeaderboardView {
        window,
        period: period.id,
        from: rfc3339(period.from.timestamp_millis()),
        to: rfc3339(period.to.timestamp_millis()),
        is_final,
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
    get, path = "/leaderboard/players/{id}", tag = "leaderboard", params(PlayerPath, RankQuery),
    responses(
        (status = 200, description = "The player's standing", body = PlayerRankView),
        LookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(player))]
pub(crate) async fn get_player_rank(
    State(state): State<LeaderboardState>,
    PlayerPath(player): PlayerPath,
    Query(q): Query<RankQuery>,
) -> Result<Json<PlayerRankView>, Problem> {
    tracing::Span::current().record("player", player.as_str());
    let now = now_ms();
    let (board, _) = board(&state, q.window.as_deref(), q.period.as_deref(), now)?;
    let around = q.around.map_or(DEFAULT_AROUND, Bounded::get);
    let around = u64::try_from(around).unwrap_or(0);
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
        let snapshot = archived(&state, &board).await?;
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
    Ok(HistoryView {
        window: s.window,
        period: s.period,
        from: rfc3339(period.from.timestamp_millis()),
        to: rfc3339(period.to.timestamp_millis()),
        taken_at: rfc3339(s.taken_at_ms),
        is_final: s.is_final,
        entries: s.entries,
    })
}

/// An archived board; without `period`, the most recent final one (the latest hall of fame).
#[utoipa::path(
    get, path = "/leaderboard/history", tag = "leaderboard", params(HistoryQuery),
    responses(
        (status = 200, description = "The archived snapshot", body = HistoryView),
        LookupFailures,
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_history(
    State(state): State<LeaderboardState>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryView>, Problem> {
    let snapshot = if q.period.is_some() {
        let (board, _) = board(&state, q.window.as_deref(), q.period.as_deref(), now_ms())?;
        state.snapshots.snapshot(&board).await?.ok_or_else(|| {
            Problem::not_found(format!(
                "no snapshot of the {} board of {}",
                board.window, board.period
            ))
        })?
    } else {
        let window = window(&state, q.window.as_deref())?;
        let mut latest = None;
        for period in state
            .snapshots
            .snapshot_periods(window, FINAL_SEARCH)
            .await?
        {
            let board = Board { window, period };
            if let Some(s) = state.snapshots.snapshot(&board).await? {
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
    get, path = "/leaderboard/history/periods", tag = "leaderboard", params(PeriodsQuery),
    responses(
        (status = 200, description = "Archived periods", body = PeriodsView),
        ReadFailures,
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn get_history_periods(
    State(state): State<LeaderboardState>,
    Query(q): Query<PeriodsQuery>,
) -> Result<Json<PeriodsView>, Problem> {
    let window = window(&state, q.window.as_deref())?;
    let limit = q.limit.map_or(DEFAULT_PERIODS, Bounded::get);
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    let periods = state.snapshots.snapshot_periods(window, limit).await?;
    Ok(Json(PeriodsView { window, periods }))
}
