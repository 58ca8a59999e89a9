//! Request metrics, labelled by the module that owns the route: `http_requests_total` and
//! `http_request_duration_seconds` by `service`, `route` (the matched pattern), `method` and
//! `status`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

/// Counts and times every request a router answers, under `service`.
pub fn track<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    service: &'static str,
) -> Router<S> {
    router.route_layer(middleware::from_fn_with_state(service, record))
}

async fn record(State(service): State<&'static str>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let labels = [
        ("service", service.to_owned()),
        ("route", route),
        ("method", method),
        ("status", res.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    res
}

/// Counts a request no route matched (the 404 fallback), under the `ops` service.
pub fn count_unmatched(method: &str, status: u16) {
    metrics::counter!("http_requests_total", "service" => "ops", "route" => "unmatched",
        "method" => method.to_owned(), "status" => status.to_string())
    .increment(1);
}
