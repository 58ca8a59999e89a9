//! The progression service (ARCHITECTURE §3.3): XP, levels, inventory and pending rewards from
//! accepted events, and signed reward receipts.
//!
//! Two halves over the ports only: [`router`] serves `/players/{id}/progress`,
//! `/players/{id}/rewards`, `/players/{id}/inventory`, `/rewards/claim` and `/receipts/verify`;
//! [`run_consumer`] applies `events.accepted` exactly once per event id.

use std::sync::Arc;

use axum::Router;
use clap::Args;
use liveops_core::ports::{topics, ViewCache};
use liveops_core::stores::{ProcessedEvents, ProgressStore};
use liveops_core::{Bus, Calendar, LevelCurve};
use liveops_http::{body_limit, routes, service_routes, OpenApiRouter, SignatureCheck};
use liveops_module::{BuildError, Context, Definition, Group, ModuleArgs, Service, Task};

mod apply;
mod cache;
mod consumer;
mod routes;

pub use consumer::run_consumer;
pub use routes::{ClaimRequest, InventoryPage, ProgressView, RewardPage};

/// The consumer group progression reads `events.accepted` with.
pub const GROUP: &str = "progression";
/// What progression consumes: [`topics::ACCEPTED`] as [`GROUP`].
pub const READS: Group = Group::new(topics::ACCEPTED, GROUP);
/// The consumer name under which applied event ids are recorded in the repository.
pub const CONSUMER_ID: &str = "progression";

/// Progression's own settings: none (`LEVEL_CURVE` is shared, participation reads it too).
#[derive(Args, Clone, Debug)]
pub struct ProgressionArgs {}

/// Settings of the progression service.
#[derive(Clone, Debug)]
pub struct ProgressionConfig {
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
    /// Keys that check claim requests and sign receipts.
    pub signatures: SignatureCheck,
    /// The event bus.
    pub bus: Arc<dyn Bus>,
    /// Cached progress views.
    pub cache: Arc<dyn ViewCache>,
    /// XP, inventory, rewards and receipts.
    pub store: Arc<dyn ProgressStore>,
    /// Event ids already applied.
    pub processed: Arc<dyn ProcessedEvents>,
}

liveops_http::from_state!(ProgressionState {
    signatures: SignatureCheck
});
liveops_module::from_context!(ProgressionState(config: Arc<ProgressionConfig>) {
    signatures, bus, cache, store, processed
});

/// The progression routes with their OpenAPI operations.
fn api() -> OpenApiRouter<ProgressionState> {
    let routes = service_routes("progression", "XP, levels, inventory, rewards and receipts")
        .routes(routes!(routes::get_progress))
        .routes(routes!(routes::list_rewards))
        .routes(routes!(routes::list_inventory))
        .routes(routes!(routes::claim_reward))
        .routes(routes!(routes::verify_receipt));
    body_limit(routes, routes::BODY_LIMIT)
}

/// The progression routes, ready to be merged or served.
pub fn router(state: ProgressionState) -> Router {
    api().split_for_parts().0.with_state(state)
}

/// Progression's row in the module table: `--target progression`, port 8083.
pub static MODULE: Definition<ProgressionArgs> =
    Definition::new("progression", 8083, &[READS], || api().into_openapi());

impl ModuleArgs for ProgressionArgs {
    async fn build(self, ctx: &Context) -> Result<Service, BuildError> {
        let shared = &ctx.shared;
        let config = ProgressionConfig {
            curve: shared.level_curve.clone(),
            calendar: shared.calendar.clone(),
            batch_size: shared.batch_size,
            consumer_name: shared.consumer_name.clone(),
        };
        let state = ProgressionState::from_context(ctx, Arc::new(config)).await?;
        let consumer = Task::over("progression consumer", state.clone(), run_consumer);
        Ok(Service::routes(router(state)).with_task(consumer))
    }
}
