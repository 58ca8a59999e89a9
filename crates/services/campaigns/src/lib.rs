//! The campaigns service: the live events operators run. A campaign is written as a draft,
//! scheduled (which fixes it and commits to its draw's seed), goes live at `startsAt` and ends at
//! `endsAt`, moved by [`run_scheduler`]; participation then decides its winners and distribution
//! pays them (`ended → settled`). Operators may cancel it before it ends.
//!
//! Every state change is a conditional update in the repository, so it happens once however
//! many replicas' schedulers try it and whenever they crash.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use liveops_core::event_schema::window_of;
use liveops_core::stores::{CampaignStore, EntryStore, PlayerXp, RequestKeys};
use liveops_core::{Calendar, LevelCurve, Window};
use liveops_http::{
    body_limit, close_variants, operator_routes, routes, OpenApiRouter, OperatorAuth,
};
use liveops_module::{
    BuildError, ConfigError, Context, Definition, ModuleArgs, Service, SharedArgs, Task,
};
use utoipa::openapi::{OpenApi, RefOr, Schema};

mod model;
mod players;
mod routes;
mod scheduler;

pub use model::{CampaignChange, CampaignList, CampaignView, Eligibility, NewCampaign};
pub use players::{LiveCampaigns, PlayerCampaign, PlayerCampaigns, LIVE_FRESH};
pub use scheduler::{run_scheduler, step};

/// Largest request body on the campaign routes.
const BODY_LIMIT: usize = 64 * 1024;

/// The campaigns service's settings.
#[derive(Args, Clone, Debug)]
pub struct CampaignsArgs {
    /// How often the scheduler looks for campaigns to start or end, milliseconds.
    #[arg(long, env = "CAMPAIGN_TICK_MS", default_value_t = 1000)]
    pub campaign_tick_ms: u64,
}

impl CampaignsArgs {
    /// The scheduler's period, checked.
    pub fn tick(&self) -> Result<Duration, ConfigError> {
        liveops_module::tick::period("CAMPAIGN_TICK_MS", self.campaign_tick_ms)
    }
}

/// The campaigns service's settings, checked.
#[derive(Clone, Debug)]
pub struct CampaignsConfig {
    /// Seasons and periods (rank campaigns lie within one period).
    pub calendar: Calendar,
    /// Leaderboard windows ranked (`LB_WINDOWS`): the only ones a rank campaign may use.
    pub windows: Vec<Window>,
    /// XP per level (who may enter).
    pub curve: LevelCurve,
    /// How often the scheduler runs.
    pub tick: Duration,
}

/// What the campaign handlers and the scheduler share.
#[derive(Clone)]
pub struct CampaignsState {
    /// Settings.
    pub config: Arc<CampaignsConfig>,
    /// Checks operators' bearer tokens.
    pub auth: OperatorAuth,
    /// Campaigns and their states.
    pub campaigns: Arc<dyn CampaignStore>,
    /// Entries (whether a player entered).
    pub entries: Arc<dyn EntryStore>,
    /// Players' XP (who may enter).
    pub xp: Arc<dyn PlayerXp>,
    /// The answers of creates under an `Idempotency-Key`.
    pub requests: Arc<dyn RequestKeys>,
    /// The live campaigns read last, for players' lists.
    pub live: Arc<LiveCampaigns>,
}

liveops_http::from_state!(CampaignsState { auth: OperatorAuth });
liveops_module::from_context!(CampaignsState(
    config: Arc<CampaignsConfig>,
    live: Arc<LiveCampaigns>,
) {
    auth, campaigns, entries, xp, requests
});

/// The campaign routes with their OpenAPI operations.
fn api() -> OpenApiRouter<CampaignsState> {
    let routes = operator_routes(
        "campaigns",
        "Live events: create, schedule, go live, end, cancel",
    )
    .routes(routes!(routes::create_campaign, routes::list_campaigns))
    .routes(routes!(routes::get_campaign, routes::update_campaign))
    .routes(routes!(routes::schedule_campaign))
    .routes(routes!(routes::cancel_campaign))
    .routes(routes!(players::list_player_campaigns));
    body_limit(routes, BODY_LIMIT)
}

/// The campaign routes.
pub fn router(state: CampaignsState) -> Router {
    api().split_for_parts().0.with_state(state)
}

/// `doc` with a rank reward's `window` limited to the ranked `windows`, as the server checks it.
fn ranked_only(mut doc: OpenApi, windows: &[Window]) -> OpenApi {
    let reward = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("Reward"));
    if let Some(RefOr::T(Schema::OneOf(variants))) = reward {
        for variant in &mut variants.items {
            if let RefOr::T(Schema::Object(object)) = variant {
                if let Some(window) = object.properties.get_mut("window") {
                    *window = window_of(windows)
                        .description(Some("A leaderboard window that is ranked (`LB_WINDOWS`)"))
                        .into();
                }
            }
        }
    }
    doc
}

/// The campaigns service's row in the module table: `--target campaigns`, port 8085.
pub static MODULE: Definition<CampaignsArgs> = Definition::new("campaigns", 8085, &[], || {
    close_variants(api().into_openapi(), "Reward")
});

impl ModuleArgs for CampaignsArgs {
    fn check(&self) -> Result<(), ConfigError> {
        self.tick().map(drop)
    }

    fn openapi(&self, doc: OpenApi, shared: &SharedArgs) -> OpenApi {
        ranked_only(doc, &shared.windows().unwrap_or_default())
    }

    async fn build(self, ctx: &Context) -> Result<Service, BuildError> {
        let tick = self.tick()?;
        let config = CampaignsConfig {
            calendar: ctx.shared.calendar.clone(),
            windows: ctx.shared.windows.clone(),
            curve: ctx.shared.level_curve.clone(),
            tick,
        };
        let state = CampaignsState::from_context(ctx, Arc::new(config), Arc::default()).await?;
        let campaigns = state.campaigns.clone();
        let scheduler = Task::new("campaign scheduler", move |stop| {
            run_scheduler(campaigns, tick, stop)
        });
        Ok(Service::routes(router(state)).with_task(scheduler))
    }
}
