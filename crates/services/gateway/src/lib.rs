//! The gateway service (ARCHITECTURE §3.1): `POST /events` and `POST /events/batch`.
//!
//! Every request goes through the same pipeline: body size limit → HMAC signature → validation →
//! idempotency (by `Idempotency-Key`, else by signature) → block check → rate limit → publish to
//! [`topics::INGESTED`](liveops_core::ports::topics::INGESTED). The answer is `202` only once the
//! bus accepted the event.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use liveops_core::ports::{Blocklist, Idempotency, RateLimiter};
use liveops_core::{Bus, Limits};
use liveops_http::{body_limit, routes, service_routes, OpenApiRouter, SignatureCheck};
use liveops_module::{BuildError, ConfigError, Context, Definition, ModuleArgs, Service};

mod batch;
mod guard;
mod idempotency;
mod ingest;

pub use batch::{BatchAnswer, ItemAccepted, ItemRejected, ItemResult};
pub use ingest::EventAccepted;

/// The gateway's settings, as flags and environment variables.
#[derive(Args, Clone, Debug)]
pub struct GatewayArgs {
    /// Events per second per player before 429.
    #[arg(long, env = "RATE_LIMIT_MAX", default_value_t = 100)]
    pub rate_limit_max: u32,
    /// How long an Idempotency-Key is remembered, seconds.
    #[arg(long, env = "IDEMP_TTL", default_value_t = 86_400)]
    pub idemp_ttl: u64,
}

impl GatewayArgs {
    /// Checks the values and turns them into the gateway's settings.
    pub fn config(&self) -> Result<GatewayConfig, ConfigError> {
        let rate_limit_max = ConfigError::at_least("RATE_LIMIT_MAX", self.rate_limit_max, 1)?;
        if self.idemp_ttl == 0 {
            return Err(ConfigError::new("IDEMP_TTL", "must be at least 1 second"));
        }
        Ok(GatewayConfig {
            rate_limit_max,
            idempotency_ttl: Duration::from_secs(self.idemp_ttl),
            ..GatewayConfig::default()
        })
    }
}

/// Gateway settings, fixed at start-up.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Bounds applied to every event field.
    pub limits: Limits,
    /// Events per second accepted per player (`RATE_LIMIT_MAX`).
    pub rate_limit_max: u32,
    /// How long an `Idempotency-Key` and its answer are remembered (`IDEMP_TTL`).
    pub idempotency_ttl: Duration,
    /// Largest `POST /events` body, in bytes (64 KiB).
    pub max_body_bytes: usize,
    /// Largest `POST /events/batch` body, in bytes (1 MiB).
    pub max_batch_body_bytes: usize,
    /// Most events in one batch (500).
    pub max_batch_events: usize,
    /// The bus's kind (`BUS_KIND`), the `bus` label of `bus_publish_seconds`.
    pub bus: &'static str,
}

impl Default for GatewayConfig {
    /// The documented defaults (ARCHITECTURE §4).
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            rate_limit_max: 100,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 1024 * 1024,
            max_batch_events: 500,
            bus: "other",
        }
    }
}

/// What every gateway handler sees: its settings and the ports it uses.
#[derive(Clone)]
pub struct GatewayState {
    /// Settings.
    pub config: Arc<GatewayConfig>,
    /// Keys and clock tolerance for request signatures.
    pub signatures: SignatureCheck,
    /// Where accepted events go.
    pub bus: Arc<dyn Bus>,
    /// Holds and answers of requests, by `Idempotency-Key` or by signature.
    pub idem: Arc<dyn Idempotency>,
    /// Per-player rate windows.
    pub rates: Arc<dyn RateLimiter>,
    /// Players blocked by fairness.
    pub blocks: Arc<dyn Blocklist>,
}

impl GatewayState {
    /// A gateway over one hot-state adapter serving every concern (the embedded default and tests).
    pub fn new<H>(
        config: GatewayConfig,
        signatures: SignatureCheck,
        bus: Arc<dyn Bus>,
        hot: Arc<H>,
    ) -> Self
    where
        H: Idempotency + RateLimiter + Blocklist + 'static,
    {
        Self {
            config: Arc::new(config),
            signatures,
            bus,
            idem: hot.clone(),
            rates: hot.clone(),
            blocks: hot,
        }
    }
}

liveops_http::from_state!(GatewayState {
    signatures: SignatureCheck
});
liveops_module::from_context!(GatewayState(config: Arc<GatewayConfig>) {
    signatures, bus, idem, rates, blocks
});

/// The gateway's routes with their OpenAPI operations: `POST /events` and `POST /events/batch`,
/// each under its body limit from `config` (the limits are not part of the document).
fn api(config: &GatewayConfig) -> OpenApiRouter<GatewayState> {
    let events = OpenApiRouter::new().routes(routes!(ingest::post_event));
    let batch = OpenApiRouter::new().routes(routes!(batch::post_batch));
    service_routes("gateway", "Event ingestion")
        .merge(body_limit(events, config.max_body_bytes))
        .merge(body_limit(batch, config.max_batch_body_bytes))
}

/// The gateway's routes.
pub fn router(state: GatewayState) -> Router {
    let routes = api(&state.config);
    routes.split_for_parts().0.with_state(state)
}

/// The gateway's row in the module table: `--target gateway`, port 8080.
pub static MODULE: Definition<GatewayArgs> = Definition::new("gateway", 8080, &[], || {
    api(&GatewayConfig::default()).into_openapi()
});

impl ModuleArgs for GatewayArgs {
    fn check(&self) -> Result<(), ConfigError> {
        self.config().map(drop)
    }

    async fn build(self, ctx: &Context) -> Result<Service, BuildError> {
        let mut config = self.config()?;
        config.limits = config.limits.within_retention(ctx.shared.event_retention);
        config.bus = ctx.shared.bus;
        let state = GatewayState::from_context(ctx, Arc::new(config)).await?;
        Ok(Service::routes(router(state)))
    }
}
