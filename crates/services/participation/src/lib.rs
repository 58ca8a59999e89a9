//! The participation service: players enter live campaigns (signed requests from game servers,
//! eligibility from the player's level), and when a campaign ends its winners are decided once:
//! drawn by `liveops-draw-v1` (anyone can re-run it from what `GET /campaigns/{id}/draw`
//! publishes) or ranked by their scores on the leaderboard window's board of the campaign's period.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use liveops_core::ports::Idempotency;
use liveops_core::stores::{CampaignStore, EntryStore, OutcomeStore, PlayerXp, ScoreStore};
use liveops_core::{Calendar, LevelCurve};
use liveops_http::{
    body_limit, close_variants, routes, service_routes, OpenApiRouter, SignatureCheck,
};
use liveops_module::{BuildError, ConfigError, Context, Definition, ModuleArgs, Service, Task};

mod closed;
mod decide;
mod draws;
mod routes;

pub use closed::ClosedCampaigns;
pub use decide::{decide_ended, decide_key, run_decider, DECIDE_HOLD};
pub use routes::{EntrantList, EntryRequest, EntryView};

/// Largest request body on `POST /campaigns/{id}/entries`.
const BODY_LIMIT: usize = 4 * 1024;

/// Participation's settings.
#[derive(Args, Clone, Debug)]
pub struct ParticipationArgs {
    /// How often ended campaigns are looked at for a draw or ranking, milliseconds.
    #[arg(long, env = "DRAW_TICK_MS", default_value_t = 1000)]
    pub draw_tick_ms: u64,
    /// Most players one campaign takes (1 to 10 000 000); past it a new player's entry is 409
    /// `campaign-full`. Deciding a draw holds every entrant (about 120–135 heap bytes each):
    /// size the participation pods for it.
    #[arg(long, env = "CAMPAIGN_MAX_ENTRANTS", default_value_t = 1_000_000)]
    pub campaign_max_entrants: u64,
}

impl ParticipationArgs {
    /// The decider's period, checked.
    pub fn tick(&self) -> Result<Duration, ConfigError> {
        liveops_module::tick::period("DRAW_TICK_MS", self.draw_tick_ms)
    }

    /// The entrant cap, checked.
    pub fn max_entrants(&self) -> Result<u64, ConfigError> {
        ConfigError::within(
            "CAMPAIGN_MAX_ENTRANTS",
            self.campaign_max_entrants,
            1..=10_000_000,
        )
    }
}

/// Participation's settings, checked.
#[derive(Clone, Debug)]
pub struct ParticipationConfig {
    /// Seasons and periods.
    pub calendar: Calendar,
    /// XP per level.
    pub curve: LevelCurve,
    /// How often ended campaigns are decided.
    pub tick: Duration,
    /// How long after its end a rank campaign's scores are read (`LB_SETTLE_SEC`): events
    /// received before the end and still on their way count.
    pub settle: Duration,
    /// Most players one campaign takes (`CAMPAIGN_MAX_ENTRANTS`).
    pub max_entrants: u64,
}

/// What participation's handlers and decider share.
#[derive(Clone)]
pub struct ParticipationState {
    /// Settings.
    pub config: Arc<ParticipationConfig>,
    /// Keys and clock tolerance for signed entries.
    pub signatures: SignatureCheck,
    /// Campaigns (read, and their seeds).
    pub campaigns: Arc<dyn CampaignStore>,
    /// Entries.
    pub entries: Arc<dyn EntryStore>,
    /// Draws and rankings.
    pub outcomes: Arc<dyn OutcomeStore>,
    /// Players' XP (eligibility).
    pub xp: Arc<dyn PlayerXp>,
    /// Leaderboard scores (rank rewards).
    pub scores: Arc<dyn ScoreStore>,
    /// Holds taken while deciding a campaign, so one replica reads its entrants at a time.
    pub holds: Arc<dyn Idempotency>,
    /// What is kept of campaigns' draws (decided draws' answers, undecided ones' for a while).
    pub closed: Arc<ClosedCampaigns>,
}

liveops_http::from_state!(ParticipationState {
    signatures: SignatureCheck
});
liveops_module::from_context!(ParticipationState(
    config: Arc<ParticipationConfig>,
    closed: Arc<ClosedCampaigns>,
) {
    signatures, campaigns, entries, outcomes, xp, scores, holds
});

/// Participation's routes with their OpenAPI operations; only entries take a body.
fn api() -> OpenApiRouter<ParticipationState> {
    let entries = service_routes("participation", "Campaign entries and provably fair draws")
        .routes(routes!(routes::enter_campaign));
    body_limit(entries, BODY_LIMIT)
        .routes(routes!(routes::list_entrants))
        .routes(routes!(draws::get_draw))
}

/// Participation's routes.
pub fn router(state: ParticipationState) -> Router {
    api().split_for_parts().0.with_state(state)
}

/// Participation's row in the module table: `--target participation`, port 8086.
pub static MODULE: Definition<ParticipationArgs> =
    Definition::new("participation", 8086, &[], || {
        close_variants(api().into_openapi(), "Reward")
    });

impl ModuleArgs for ParticipationArgs {
    fn check(&self) -> Result<(), ConfigError> {
        self.tick()?;
        self.max_entrants().map(drop)
    }

    async fn build(self, ctx: &Context) -> Result<Service, BuildError> {
        let config = ParticipationConfig {
            calendar: ctx.shared.calendar.clone(),
            curve: ctx.shared.level_curve.clone(),
            tick: self.tick()?,
            settle: ctx.shared.settle,
            max_entrants: self.max_entrants()?,
        };
        let closed = Arc::default();
        let state = ParticipationState::from_context(ctx, Arc::new(config), closed).await?;
        let decider = Task::over("campaign decider", state.clone(), run_decider);
        Ok(Service::routes(router(state)).with_task(decider))
    }
}
