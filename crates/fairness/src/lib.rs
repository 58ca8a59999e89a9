//! The fairness service (ARCHITECTURE §3.2): screens ingested events for score anomalies.
//!
//! Per event type it keeps a running mean and variance (Welford) of the points an event carries.
//! After a warm-up, an event more than `anomaly_z` standard deviations above the mean is flagged:
//! quarantined on `events.flagged` instead of forwarded to `events.accepted`, and a strike for its
//! player; enough strikes within the window block the player, and the gateway then refuses them.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use liveops_core::{Bus, HotState, Repository};
use utoipa::OpenApi;

mod consumer;
mod judge;
mod routes;

pub use consumer::run_consumer;

/// The consumer group fairness reads `events.ingested` with.
pub const GROUP: &str = "fairness";

/// Fairness settings, fixed at start-up.
#[derive(Clone, Debug)]
pub struct FairnessConfig {
    /// z-score above which an event is flagged (`ANOMALY_Z`, 3.5).
    pub anomaly_z: f64,
    /// Samples per event type before anything is flagged (50).
    pub warmup: u64,
    /// Strikes within `strike_window` that block a player (3).
    pub strikes_to_block: u32,
    /// How far back strikes count (10 min).
    pub strike_window: Duration,
    /// How long a block lasts (`BLOCK_SEC`, 60 s).
    pub block: Duration,
    /// Most events taken from the bus at once.
    pub batch_size: usize,
    /// This consumer's name in the group (unique per replica, e.g. hostname-pid).
    pub consumer_name: String,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        Self {
            anomaly_z: 3.5,
            warmup: 50,
            strikes_to_block: 3,
            strike_window: Duration::from_secs(600),
            block: Duration::from_secs(60),
            batch_size: 256,
            consumer_name: format!("fairness-{}", std::process::id()),
        }
    }
}

/// What the fairness routes and consumer see: settings and ports.
#[derive(Clone)]
pub struct FairnessState {
    /// Settings.
    pub config: Arc<FairnessConfig>,
    /// Where events come from and go to.
    pub bus: Arc<dyn Bus>,
    /// Strikes and blocks.
    pub hot: Arc<dyn HotState>,
    /// Verdicts, flags and statistics.
    pub repo: Arc<dyn Repository>,
}

/// The fairness routes: `GET /fairness/players/{id}` and `GET /fairness/flags`.
pub fn router(state: FairnessState) -> Router {
    Router::new()
        .route("/fairness/players/{id}", get(routes::player))
        .route("/fairness/flags", get(routes::flags))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(routes::player, routes::flags),
    components(schemas(
        routes::PlayerFairness,
        routes::PlayerFlag,
        routes::FlagList,
        routes::FlagView,
        liveops_core::EventType,
        liveops_core::Problem,
    )),
    tags((name = "fairness", description = "Anomaly flags, strikes and blocks"))
)]
struct ApiDoc;

/// The OpenAPI description of the fairness routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
