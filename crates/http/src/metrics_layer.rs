//! Request metrics, labelled by the module that owns the route: `http_requests_total` and
//! `http_request_duration_seconds` by `service`, `route` (the matched pattern), `method` and
//! `status`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::Problem;

/// Counts and times every request a router answers, under `service`; a handler that panics is
/// answered 500 (a problem) and counted as such, so the 5xx alerts see it.
pub fn track<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    service: &'static str,
) -> Router<S> {
    router
        .route_layer(catch_panics())
        .route_layer(middleware::from_fn_with_state(service, record))
}

/// What a handler that panicked is answered: a 500 problem, logged; the process goes on.
pub type PanicAnswer = fn(Box<dyn std::any::Any + Send + 'static>) -> Response;

/// The layer that answers a panicking handler with a 500 problem (see [`PanicAnswer`]).
pub fn catch_panics() -> CatchPanicLayer<PanicAnswer> {
    CatchPanicLayer::custom(|_| {
        tracing::error!("a request handler panicked");
        Problem::internal().into_response()
    })
}

/// The `method` label: the standard methods by name, any other as `other` (a client may send
/// any token as a method; each would be a series of its own, kept for the process's life).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

async fn record(State(service): State<&'static str>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(req.method());
    let res = next.run(req).await;
    let labels = [
        ("service", service.to_owned()),
        ("route", route),
        ("method", method.to_owned()),
        ("status", res.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    res
}

/// Counts a request answered by a fallback, under the `ops` service: no route matched (404,
/// `route` "unmatched"), or the route takes another method (405, `route` its pattern).
pub fn count_unmatched(route: &str, method: &Method, status: u16) {
    count_under("ops", route, method, status);
}

/// Counts a request this process forwarded to the module that owns `route` (its pattern),
/// under the `forward` service: the owner's answer, or this process's 503 when the owner could
/// not be reached or too many requests were on their way; the 5xx alerts see those.
pub fn count_forwarded(route: &str, method: &Method, status: u16) {
    count_under("forward", route, method, status);
}

/// Counts one request answered outside a tracked router, under `service`.
fn count_under(service: &'static str, route: &str, method: &Method, status: u16) {
    metrics::counter!("http_requests_total", "service" => service, "route" => route.to_owned(),
        "method" => method_label(method), "status" => status.to_string())
    .increment(1);
}
