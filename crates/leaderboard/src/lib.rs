//! The leaderboard service (ARCHITECTURE §3.4): daily, weekly and seasonal rankings from accepted
//! events, snapshots, and the hall of fame.
//!
//! Three tasks over the ports only: [`router`] serves `/leaderboard*`; [`run_consumer`] rebuilds
//! the rank store from the repository and then applies `events.accepted` exactly once per event
//! id (durable scores first, rank store second); [`run_snapshots`] archives boards on
//! `SNAPSHOT_CRON` and at every rollover.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use liveops_core::{Bus, Calendar, RankStore, Repository, Window};
use utoipa::OpenApi;

mod consumer;
mod routes;
mod scores;
mod snapshots;
mod top_cache;

pub use consumer::run_consumer;
pub use routes::{HistoryView, LeaderboardView, PeriodsView, PlayerRankView};
pub use snapshots::{parse_cron, run_snapshots};
pub use top_cache::TopCache;

/// The consumer group the leaderboard reads `events.accepted` with.
pub const GROUP: &str = "leaderboard";
/// The consumer name under which applied event ids are recorded in the repository.
pub const CONSUMER_ID: &str = "leaderboard";

/// Settings of the leaderboard service.
#[derive(Clone, Debug)]
pub struct LeaderboardConfig {
    /// Windows ranked (`LB_WINDOWS`); the first is the default of every route.
    pub windows: Vec<Window>,
    /// Default `limit` and size of snapshots (`LB_TOPN`, default 100).
    pub top_n: u64,
    /// Maps receive time to periods.
    pub calendar: Calendar,
    /// When to snapshot the current boards (`SNAPSHOT_CRON`, 5-field cron, default `*/5 * * * *`).
    pub snapshot_cron: String,
    /// Most events taken from the bus at once.
    pub batch_size: usize,
    /// This replica's consumer name within [`GROUP`].
    pub consumer_name: String,
}

/// What the handlers, the consumer and the snapshotter share.
#[derive(Clone)]
pub struct LeaderboardState {
    /// Settings.
    pub config: Arc<LeaderboardConfig>,
    /// The event bus.
    pub bus: Arc<dyn Bus>,
    /// Live boards (current and previous period of each window).
    pub ranks: Arc<dyn RankStore>,
    /// Durable state: scores, snapshots, processed event ids.
    pub repo: Arc<dyn Repository>,
    /// Set once the live boards are rebuilt from the repository; until then reads answer 503
    /// and the process is not ready, so nobody is shown an empty board after a restart.
    pub loaded: Arc<std::sync::atomic::AtomicBool>,
    /// Serialized top-N answers of live boards, dropped whenever this process changes one.
    pub top_cache: Arc<TopCache>,
}

/// The leaderboard routes, ready to be merged or served.
pub fn router(state: LeaderboardState) -> Router {
    Router::new()
        .route("/leaderboard", get(routes::get_leaderboard))
        .route("/leaderboard/players/{id}", get(routes::get_player_rank))
        .route("/leaderboard/history", get(routes::get_history))
        .route(
            "/leaderboard/history/periods",
            get(routes::get_history_periods),
        )
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        routes::get_leaderboard,
        routes::get_player_rank,
        routes::get_history,
        routes::get_history_periods
    ),
    components(schemas(
        LeaderboardView,
        PlayerRankView,
        HistoryView,
        PeriodsView,
        liveops_core::RankEntry,
        liveops_core::Window,
        liveops_core::Problem,
    )),
    tags((name = "leaderboard", description = "Rankings per window, snapshots and hall of fame"))
)]
struct ApiDoc;

/// The OpenAPI description of the leaderboard routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
