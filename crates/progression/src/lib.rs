//! The progression service (ARCHITECTURE §3.3): XP, levels, inventory and pending rewards from
//! accepted events, and signed reward receipts.
//!
//! Two halves over the ports only: [`router`] serves `/players/{id}/progress`, `/rewards/claim`
//! and `/receipts/verify`; [`run_consumer`] applies `events.accepted` exactly once per event id.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use liveops_core::{Bus, Calendar, HotState, Keyring, LevelCurve, Repository};
use utoipa::OpenApi;

mod apply;
mod cache;
mod consumer;
mod routes;

pub use consumer::run_consumer;
pub use routes::{ClaimRequest, ProgressView};

/// The consumer group progression reads `events.accepted` with.
pub const GROUP: &str = "progression";
/// The consumer name under which applied event ids are recorded in the repository.
pub const CONSUMER_ID: &str = "progression";

/// Settings of the progression service.
#[derive(Clone, Debug)]
pub struct ProgressionConfig {
    /// Keys that sign claim requests and receipts.
    pub keyring: Keyring,
    /// How far `X-Timestamp` may be from server time, in seconds (300).
    pub signature_tolerance_s: i64,
    /// XP needed per level.
    pub curve: LevelCurve,
    /// Maps receive time to seasons.
    pub calendar: Calendar,
    /// Most events taken from the bus at once.
    pub batch_size: usize,
    /// This replica's consumer name within [`GROUP`].
    pub consumer_name: String,
}

/// What the handlers and the consumer share.
#[derive(Clone)]
pub struct ProgressionState {
    /// Settings.
    pub config: Arc<ProgressionConfig>,
    /// The event bus.
    pub bus: Arc<dyn Bus>,
    /// Short-lived state (the progress cache).
    pub hot: Arc<dyn HotState>,
    /// Durable state.
    pub repo: Arc<dyn Repository>,
}

/// The progression routes, ready to be merged or served.
pub fn router(state: ProgressionState) -> Router {
    Router::new()
        .route("/players/{id}/progress", get(routes::get_progress))
        .route("/rewards/claim", post(routes::claim_reward))
        .route("/receipts/verify", post(routes::verify_receipt))
        .layer(DefaultBodyLimit::max(routes::BODY_LIMIT))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(routes::get_progress, routes::claim_reward, routes::verify_receipt),
    components(schemas(
        ProgressView,
        ClaimRequest,
        liveops_core::Receipt,
        liveops_core::Verification,
        liveops_core::Problem,
        liveops_core::ports::InventoryItem,
        liveops_core::ports::PendingReward,
    )),
    tags((name = "progression", description = "XP, levels, inventory, rewards and receipts"))
)]
struct ApiDoc;

/// The OpenAPI description of the progression routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
