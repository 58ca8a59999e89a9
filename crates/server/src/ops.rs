//! The operations routes every process serves: `/healthz`, `/readyz` (every opened adapter's
//! health plus every module's own readiness), `/metrics` and `/openapi.json`, and the answers
//! for unknown routes and methods.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, CONNECTION};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use liveops_http::responses::Unavailable;
use liveops_http::{count_unmatched, Problem};
use liveops_module::{Ports, Readiness};
use serde_json::json;
use utoipa::OpenApi;

use crate::peers::Peers;
use crate::supervisor::Draining;

/// What `/readyz` asks.
#[derive(Clone)]
pub struct Checks {
    /// The adapters this process opened.
    pub ports: Arc<Ports>,
    /// Each running module's own readiness.
    pub modules: Vec<Readiness>,
    /// Where this process runs and on which bus (`{"cloud": …, "bus": …}`), shown by `/readyz`.
    pub runs_on: serde_json::Value,
    /// Set once the process is shutting down.
    pub draining: Draining,
}

/// Operations routes, documented in the OpenAPI spec.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "LiveOps",
        description = "Backend for live online games: events, fairness, progression, leaderboards, rewards."
    ),
    paths(healthz, readyz, metrics_text)
)]
struct OpsDoc;

/// The operations routes' part of the OpenAPI document, with the product's title.
pub fn openapi() -> utoipa::openapi::OpenApi {
    OpsDoc::openapi()
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: every backend this process uses answers and every module is warmed up.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "ready"),
    Unavailable,
))]
async fn readyz(State(checks): State<Checks>) -> Response {
    if checks.draining.is_draining() {
        metrics::gauge!("liveops_ready").set(0.0);
        return Problem::unavailable("not ready: shutting down").into_response();
    }
    let results = checks.ports.check().await;
    let mut failing: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    let only_warming = failing.is_empty();
    failing.extend(checks.modules.iter().filter_map(|ready| ready()));
    // The last answer, so alerts can see readiness flapping between scrapes of probes.
    metrics::gauge!("liveops_ready").set(if failing.is_empty() { 1.0 } else { 0.0 });
    if failing.is_empty() {
        // A degraded but working adapter (a read replica set aside) says how.
        let notes = checks.ports.notes();
        let map: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(n, _)| match notes.iter().find(|(m, _)| m == n) {
                Some((_, note)) => (n.to_string(), json!(format!("ok; {note}"))),
                None => (n.to_string(), json!("ok")),
            })
            .collect();
        return Json(json!({"status": "ready", "checks": map, "runs_on": checks.runs_on}))
            .into_response();
    }
    if only_warming {
        // Expected for a few seconds after every start: not worth a warning per probe.
        tracing::info!(failing = ?failing, "not ready yet");
    } else {
        tracing::warn!(failing = ?failing, "not ready");
    }
    Problem::unavailable(format!("not ready: {}", failing.join("; "))).into_response()
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
async fn metrics_text() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::metrics().render(),
    )
        .into_response()
}

async fn not_found(req: Request) -> Problem {
    count_unmatched("unmatched", req.method(), 404);
    Problem::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> Problem {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |m| m.as_str());
    count_unmatched(route, req.method(), 405);
    Problem::method_not_allowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.uri().path()
    ))
}

/// The operations routes, serving `spec` as `/openapi.json`.
pub fn router(checks: Checks, spec: utoipa::openapi::OpenApi) -> Router {
    let spec = Arc::new(spec);
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move { Json(spec.as_ref().clone()) }
            }),
        )
        .with_state(checks);
    liveops_http::track(routes, "ops")
}

/// While the process is shutting down, asks every client to close its connection after the
/// answer, so keep-alive clients reconnect to a replica that stays.
pub async fn close_when_draining(
    State(draining): State<Draining>,
    req: Request,
    next: Next,
) -> Response {
    let mut res = next.run(req).await;
    if draining.is_draining() {
        res.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Marks a request forwarded to a peer, which never forwards it again (a template naming this
/// process itself would otherwise send it round until it timed out).
const FORWARDED: &str = "x-liveops-forwarded";

/// Adds the 404 and 405 problem answers to the finished router; with `peers`, a request for a
/// route of a module this process does not run is answered by that module (see [`Peers`]).
pub fn fallbacks(app: Router, peers: Option<Arc<Peers>>) -> Router {
    app.fallback(move |mut req: Request| {
        let peers = peers.clone();
        async move {
            let peers = peers.filter(|_| !req.headers().contains_key(FORWARDED));
            let Some(peers) = peers else {
                return not_found(req).await.into_response();
            };
            req.headers_mut()
                .insert(FORWARDED, HeaderValue::from_static("1"));
            match peers.forward(req).await {
                Ok(answer) => answer,
                Err(req) => not_found(req).await.into_response(),
            }
        }
    })
    .method_not_allowed_fallback(method_not_allowed)
}
