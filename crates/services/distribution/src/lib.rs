//! The distribution service: pays campaign winners into the player inbox exactly once
//! ([`settle_ended`]: each winner's message and settlement mark in one transaction, a few
//! hundred winners per transaction), lets
//! players claim messages for signed receipts (the same receipts on every later claim), lets
//! operators send messages, and delivers campaign events to webhooks (signed, retried with
//! exponential backoff, dead-lettered after [`MAX_ATTEMPTS`] once `WEBHOOK_RETRY_SEC` old).
//! [`run_retention`] purges finished deliveries and long-expired messages.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use liveops_core::stores::{
    CampaignStore, DeliveryLog, DistributionRetention, InboxStore, OutcomeStore, RequestKeys,
    WebhookStore,
};
use liveops_http::{
    add_keyword, body_limit, operator_routes, routes, OpenApiRouter, OperatorAuth, SignatureCheck,
};
use liveops_module::{BuildError, ConfigError, Context, Definition, ModuleArgs, Service, Task};

mod deliver;
mod inbox;
mod retention;
mod settle;
pub mod target;
mod webhooks;

pub use deliver::{run_webhooks, signature, MAX_ATTEMPTS};
pub use inbox::{ClaimAnswer, InboxView, MessageView, Sent};
pub use retention::{purge, run_retention};
pub use settle::{run_placer, run_settler, settle_ended};
pub use webhooks::{AttemptView, DeliveryList, DeliveryView, RedeliveryView, WebhookView};

/// Largest request body on the distribution routes.
const BODY_LIMIT: usize = 256 * 1024;

/// Distribution's settings.
#[derive(Args, Clone, Debug)]
pub struct DistributionArgs {
    /// How long a campaign prize stays claimable in the inbox, days.
    #[arg(long, env = "INBOX_CLAIM_DAYS", default_value_t = 30)]
    pub inbox_claim_days: u32,
    /// How often ended campaigns are settled, milliseconds.
    #[arg(long, env = "SETTLE_TICK_MS", default_value_t = 1000)]
    pub settle_tick_ms: u64,
    /// TEST ONLY: a pause per winner settled, milliseconds, taken after each group (of 10
    /// winners while this is set), so a test can kill the process in the middle of a
    /// settlement. Leave at 0.
    #[arg(long, env = "SETTLE_DELAY_MS", default_value_t = 0, hide = true)]
    pub settle_delay_ms: u64,
    /// Let webhooks target private, loopback and link-local addresses (tests, closed networks).
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub webhook_allow_private: bool,
    /// How long a webhook receiver has to answer, milliseconds.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 5000)]
    pub webhook_timeout_ms: u64,
    /// The first retry's delay, milliseconds; each next one doubles (up to an hour).
    #[arg(long, env = "WEBHOOK_BACKOFF_MS", default_value_t = 1000)]
    pub webhook_backoff_ms: u64,
    /// How long a failing delivery is retried (hourly once the backoff reaches an hour) before
    /// it is dead-lettered, seconds; at least ten attempts are made whatever this is.
    #[arg(long, env = "WEBHOOK_RETRY_SEC", default_value_t = 86_400)]
    pub webhook_retry_sec: u64,
    /// Days a delivered or dead webhook delivery (its body and attempts) is kept after its last
    /// attempt, and a campaign event after it happened once none of its deliveries is left.
    #[arg(long, env = "WEBHOOK_RETENTION_DAYS", default_value_t = 30)]
    pub webhook_retention_days: u32,
    /// Days an inbox message, with its claims, is kept after it expired.
    #[arg(long, env = "INBOX_RETENTION_DAYS", default_value_t = 90)]
    pub inbox_retention_days: u32,
    /// Most active webhooks (1 to 1000): past it a create is refused (409) until one is
    /// deleted. Each campaign event is queued once per webhook subscribed to it.
    #[arg(long, env = "WEBHOOK_MAX", default_value_t = 100)]
    pub webhook_max: u32,
}

/// Distribution's settings, checked.
#[derive(Clone, Debug)]
pub struct DistributionConfig {
    /// How long a prize stays claimable.
    pub claim_window: Duration,
    /// How often settlement runs.
    pub settle_tick: Duration,
    /// Test only: a pause per winner settled, taken after each group.
    pub settle_delay: Duration,
    /// Whether webhooks may target private addresses.
    pub allow_private: bool,
    /// A receiver's time to answer.
    pub webhook_timeout: Duration,
    /// The first retry's delay.
    pub webhook_backoff: Duration,
    /// How long a failing delivery is retried.
    pub webhook_retry: Duration,
    /// How long finished deliveries are kept, and events once none of their deliveries is left.
    pub webhook_retention: Duration,
    /// How long an inbox message is kept after it expired.
    pub inbox_retention: Duration,
    /// Most active webhooks.
    pub max_webhooks: u32,
}

impl DistributionArgs {
    /// Checks the values.
    pub fn config(&self) -> Result<DistributionConfig, ConfigError> {
        let claim_days = ConfigError::within("INBOX_CLAIM_DAYS", self.inbox_claim_days, 1..=3650)?;
        let settle_tick = liveops_module::tick::period("SETTLE_TICK_MS", self.settle_tick_ms)?;
        if self.settle_delay_ms > 10_000 {
            return Err(ConfigError::new(
                "SETTLE_DELAY_MS",
                "must be at most 10000 (tests only)",
            ));
        }
        let timeout_ms =
            ConfigError::within("WEBHOOK_TIMEOUT_MS", self.webhook_timeout_ms, 100..=60_000)?;
        let backoff_ms = ConfigError::within(
            "WEBHOOK_BACKOFF_MS",
            self.webhook_backoff_ms,
            10..=3_600_000,
        )?;
        let retry_s =
            ConfigError::within("WEBHOOK_RETRY_SEC", self.webhook_retry_sec, 0..=604_800)?;
        let webhook_days = ConfigError::within(
            "WEBHOOK_RETENTION_DAYS",
            self.webhook_retention_days,
            1..=3650,
        )?;
        let inbox_days =
            ConfigError::within("INBOX_RETENTION_DAYS", self.inbox_retention_days, 1..=3650)?;
        let max_webhooks = ConfigError::within("WEBHOOK_MAX", self.webhook_max, 1..=1000)?;
        Ok(DistributionConfig {
            claim_window: days(claim_days),
            settle_tick,
            settle_delay: Duration::from_millis(self.settle_delay_ms),
            allow_private: self.webhook_allow_private,
            webhook_timeout: Duration::from_millis(timeout_ms),
            webhook_backoff: Duration::from_millis(backoff_ms),
            webhook_retry: Duration::from_secs(retry_s),
            webhook_retention: days(webhook_days),
            inbox_retention: days(inbox_days),
            max_webhooks,
        })
    }
}

/// `n` days.
fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

/// What distribution's handlers and tasks share.
#[derive(Clone)]
pub struct DistributionState {
    /// Settings.
    pub config: Arc<DistributionConfig>,
    /// Checks operators' bearer tokens.
    pub auth: OperatorAuth,
    /// Checks signed claims; signs receipts (server keys only).
    pub signatures: SignatureCheck,
    /// Campaigns (what to settle).
    pub campaigns: Arc<dyn CampaignStore>,
    /// Their outcomes (whom to pay).
    pub outcomes: Arc<dyn OutcomeStore>,
    /// The inbox.
    pub inbox: Arc<dyn InboxStore>,
    /// Webhooks and their delivery queue.
    pub webhooks: Arc<dyn WebhookStore>,
    /// Deliveries as operators see them, and redelivery.
    pub deliveries: Arc<dyn DeliveryLog>,
    /// The answers of sends and creates under an `Idempotency-Key`.
    pub requests: Arc<dyn RequestKeys>,
    /// Purges what is past its retention.
    pub retention: Arc<dyn DistributionRetention>,
}

liveops_http::from_state!(DistributionState {
    auth: OperatorAuth,
    signatures: SignatureCheck
});
liveops_module::from_context!(DistributionState(config: Arc<DistributionConfig>) {
    auth, signatures, campaigns, outcomes, inbox, webhooks, deliveries, requests, retention
});

/// Distribution's routes with their OpenAPI operations.
fn api() -> OpenApiRouter<DistributionState> {
    let routes = operator_routes(
        "distribution",
        "The player inbox, prize claims and webhooks",
    )
    .routes(routes!(inbox::get_inbox))
    .routes(routes!(inbox::claim_message))
    .routes(routes!(inbox::send_message))
    .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
    .routes(routes!(webhooks::delete_webhook))
    .routes(routes!(webhooks::list_deliveries))
    .routes(routes!(webhooks::redeliver));
    body_limit(routes, BODY_LIMIT)
}

/// Distribution's routes.
pub fn router(state: DistributionState) -> Router {
    api().split_for_parts().0.with_state(state)
}

/// Distribution's row in the module table: `--target distribution`, port 8087.
pub static MODULE: Definition<DistributionArgs> =
    Definition::new("distribution", 8087, &[], || {
        add_keyword(
            api().into_openapi(),
            "SendRequest",
            "oneOf",
            inbox::players_or_all(),
        )
    });

impl ModuleArgs for DistributionArgs {
    fn check(&self) -> Result<(), ConfigError> {
        self.config().map(drop)
    }

    async fn build(self, ctx: &Context) -> Result<Service, BuildError> {
        let config = self.config()?;
        if config.settle_delay > Duration::ZERO {
            tracing::warn!(
                delay_ms = config.settle_delay.as_millis() as u64,
                "SETTLE_DELAY_MS is set: settlement is slowed down (tests only)"
            );
        }
        let state = DistributionState::from_context(ctx, Arc::new(config)).await?;
        let settler = Task::over("settlement", state.clone(), run_settler);
        let placer = Task::over("inbox placing", state.clone(), run_placer);
        let hooks = Task::over("webhook deliveries", state.clone(), run_webhooks);
        let retention = Task::over("distribution retention", state.clone(), run_retention);
        Ok(Service::routes(router(state))
            .with_task(settler)
            .with_task(placer)
            .with_task(hooks)
            .with_task(retention))
    }
}
