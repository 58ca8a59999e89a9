//! The fairness service (ARCHITECTURE §3.2): screens ingested events for score anomalies.
//!
//! Per event type it keeps a running mean and variance (Welford) of `ln(1 + points)` an event
//! carries. After a warm-up, an event more than `anomaly_z` standard deviations above that mean
//! is flagged (the log scale keeps long-tailed honest rewards unflagged: ADR 0018):
//! quarantined on `events.flagged` instead of forwarded to `events.accepted`, and a strike for its
//! player; enough strikes within the window block the player, and the gateway then refuses them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use liveops_core::ports::{topics, Blocklist};
use liveops_core::stores::{AuditLog, FairnessStore};
use liveops_core::Bus;
use liveops_http::{operator_routes, routes, OpenApiRouter, OperatorAuth};
use liveops_module::{
    BuildError, ConfigError, Context, Definition, Group, ModuleArgs, Service, Task,
};

mod consumer;
mod judge;
mod routes;

pub use consumer::run_consumer;
pub use routes::{FlagList, FlagView, PlayerFairness, PlayerFlag};

/// The consumer group fairness reads `events.ingested` with.
pub const GROUP: &str = "fairness";
/// What fairness consumes: [`topics::INGESTED`] as [`GROUP`].
pub const READS: Group = Group::new(topics::INGESTED, GROUP);

/// Fewest samples of a type before flagging: with fewer the spread is not known yet (the floor
/// stands in), so ordinary values would be flagged, never learned, and their players blocked.
pub const MIN_WARMUP: u64 = 20;

/// Fairness settings, as flags and environment variables.
#[derive(Args, Clone, Debug)]
pub struct FairnessArgs {
    /// z-score above which an event is flagged.
    #[arg(long, env = "ANOMALY_Z", default_value_t = 3.5)]
    pub anomaly_z: f64,
    /// Samples per event type before anomaly detection starts (at least 20).
    #[arg(long, env = "ANOMALY_WARMUP", default_value_t = 50)]
    pub anomaly_warmup: u64,
    /// Strikes within STRIKE_WINDOW_SEC that block a player.
    #[arg(long, env = "STRIKES_TO_BLOCK", default_value_t = 3)]
    pub strikes_to_block: u32,
    /// Window in which strikes add up, seconds.
    #[arg(long, env = "STRIKE_WINDOW_SEC", default_value_t = 600)]
    pub strike_window_sec: u64,
    /// How long a block lasts, seconds.
    #[arg(long, env = "BLOCK_SEC", default_value_t = 60)]
    pub block_sec: u64,
}

impl FairnessArgs {
    /// Checks the values and turns them into settings for the consumer `consumer_name`.
    pub fn config(
        &self,
        consumer_name: &str,
        batch_size: usize,
    ) -> Result<FairnessConfig, ConfigError> {
        if !(self.anomaly_z.is_finite() && self.anomaly_z > 0.0) {
            return Err(ConfigError::new("ANOMALY_Z", "must be a positive number"));
        }
        let warmup = ConfigError::at_least("ANOMALY_WARMUP", self.anomaly_warmup, MIN_WARMUP)?;
        let block_sec = ConfigError::at_least("BLOCK_SEC", self.block_sec, 1)?;
        // The hot state keeps at most MAX_STRIKES a player: a higher limit would never block.
        let most = u32::try_from(liveops_core::ports::hot::MAX_STRIKES).unwrap_or(u32::MAX);
        let strikes_to_block =
            ConfigError::within("STRIKES_TO_BLOCK", self.strikes_to_block, 1..=most)?;
        let strike_window_sec =
            ConfigError::at_least("STRIKE_WINDOW_SEC", self.strike_window_sec, 1)?;
        Ok(FairnessConfig {
            anomaly_z: self.anomaly_z,
            warmup,
            strikes_to_block,
            strike_window: Duration::from_secs(strike_window_sec),
            block: Duration::from_secs(block_sec),
            batch_size,
            consumer_name: consumer_name.to_owned(),
        })
    }
}

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

impl FairnessConfig {
    /// How long a player's strikes are kept after the latest, and an unblock's forgetting
    /// lasts: a window and a block, so a strike redelivered that late still finds the others
    /// of its window while the block they make would run, and does not undo an unblock.
    pub fn strike_keep(&self) -> Duration {
        self.strike_window.saturating_add(self.block)
    }
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
    pub blocks: Arc<dyn Blocklist>,
    /// Verdicts, flags and statistics.
    pub store: Arc<dyn FairnessStore>,
    /// Checks operators' bearer tokens (the reads need one once operators exist).
    pub auth: OperatorAuth,
    /// Where unblocks are recorded.
    pub audit: Arc<dyn AuditLog>,
}

liveops_http::from_state!(FairnessState { auth: OperatorAuth });
liveops_module::from_context!(FairnessState(config: Arc<FairnessConfig>) {
    bus, blocks, store, auth, audit
});

/// The fairness routes with their OpenAPI operations: `GET /fairness/players/{id}`,
/// `GET /fairness/flags` (any operator once operators exist) and
/// `DELETE /fairness/players/{id}/block` (admins and operators, audited).
fn api() -> OpenApiRouter<FairnessState> {
    operator_routes("fairness", "Anomaly flags, strikes and blocks")
        .routes(routes!(routes::get_player_fairness))
        .routes(routes!(routes::unblock_player))
        .routes(routes!(routes::list_flags))
}

/// The fairness routes.
pub fn router(state: FairnessState) -> Router {
    api().split_for_parts().0.with_state(state)
}

/// Fairness's row in the module table: `--target fairness`, port 8081.
pub static MODULE: Definition<FairnessArgs> =
    Definition::new("fairness", 8081, &[READS], || api().into_openapi());

impl ModuleArgs for FairnessArgs {
    fn check(&self) -> Result<(), ConfigError> {
        self.config("check", 1).map(drop)
    }

    async fn build(self, ctx: &Context) -> Result<Service, BuildError> {
        let shared = &ctx.shared;
        let config = self.config(&shared.consumer_name, shared.batch_size)?;
        let state = FairnessState::from_context(ctx, Arc::new(config)).await?;
        let consumer = Task::over("fairness consumer", state.clone(), run_consumer);
        Ok(Service::routes(router(state)).with_task(consumer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(anomaly_warmup: u64) -> FairnessArgs {
        FairnessArgs {
            anomaly_z: 3.5,
            anomaly_warmup,
            strikes_to_block: 3,
            strike_window_sec: 600,
            block_sec: 60,
        }
    }

    #[test]
    fn a_warm_up_too_short_to_know_the_spread_is_refused() {
        let var = |w| args(w).config("f", 10).err().map(|e| e.var);
        assert_eq!(var(0), Some("ANOMALY_WARMUP"));
        assert_eq!(var(MIN_WARMUP - 1), Some("ANOMALY_WARMUP"));
        assert_eq!(var(MIN_WARMUP), None);
        assert_eq!(var(50), None);
    }
}
