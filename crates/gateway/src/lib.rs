//! The gateway service (ARCHITECTURE §3.1): `POST /events` and `POST /events/batch`.
//!
//! Every request goes through the same pipeline: body size limit → HMAC signature → validation →
//! idempotency (or the replay guard) → block check → rate limit → publish to
//! [`topics::INGESTED`](liveops_core::ports::topics::INGESTED). The answer is `202` only once the
//! bus accepted the event.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use liveops_core::{Bus, HotState, Keyring, Limits};
use utoipa::OpenApi;

mod batch;
mod guard;
mod idempotency;
mod ingest;

/// Gateway settings, fixed at start-up.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Keys that may sign requests (`X-Key-Id` picks one; the first is the default).
    pub keyring: Keyring,
    /// Bounds applied to every event field.
    pub limits: Limits,
    /// How far `X-Timestamp` may be from server time, in seconds (default 300).
    pub signature_tolerance_s: i64,
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
}

impl GatewayConfig {
    /// The documented defaults (ARCHITECTURE §4) around `keyring`.
    pub fn with_defaults(keyring: Keyring) -> Self {
        Self {
            keyring,
            limits: Limits::default(),
            signature_tolerance_s: 300,
            rate_limit_max: 100,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 1024 * 1024,
            max_batch_events: 500,
        }
    }
}

/// What every gateway handler sees: its settings and the ports it uses.
#[derive(Clone)]
pub struct GatewayState {
    /// Settings.
    pub config: Arc<GatewayConfig>,
    /// Where accepted events go.
    pub bus: Arc<dyn Bus>,
    /// Idempotency keys, replay guard, blocks and rate windows.
    pub hot: Arc<dyn HotState>,
}

/// The gateway's routes: `POST /events` and `POST /events/batch`.
pub fn router(state: GatewayState) -> Router {
    Router::new()
        .route("/events", post(ingest::post_event))
        .route("/events/batch", post(batch::post_batch))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(ingest::post_event, batch::post_batch),
    components(schemas(
        ingest::EventAccepted,
        batch::BatchBody,
        batch::BatchAnswer,
        batch::ItemResult,
        batch::ItemAccepted,
        batch::ItemRejected,
        liveops_core::Event,
        liveops_core::Problem,
    )),
    tags((name = "gateway", description = "Event ingestion"))
)]
struct ApiDoc;

/// The OpenAPI description of the gateway's routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
