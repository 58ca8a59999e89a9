//! A service's router called in-process, and its consumer waited on: what service tests share.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use liveops_core::ports::Bus;
use liveops_core::PortError;
use liveops_http::Problem;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// An answer: status, `content-type` (empty if none) and the body as JSON (`Null` if not JSON).
pub type Reply = (StatusCode, String, Value);

/// Sends `req` to `router` and reads the whole answer.
pub async fn call(router: &Router, req: Request<Body>) -> Reply {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, content_type, value)
}

/// A JSON `POST` of `body` to `uri` as the holder of the bearer `token`, under
/// `idempotency_key` if any: an operator's create.
pub fn bearer_post(
    uri: &str,
    token: &str,
    idempotency_key: Option<&str>,
    body: &Value,
) -> Request<Body> {
    let mut req = Request::post(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(key) = idempotency_key {
        req = req.header("idempotency-key", key);
    }
    req.body(Body::from(body.to_string())).unwrap()
}

/// `GET uri` on `router`.
pub async fn get(router: &Router, uri: &str) -> Reply {
    call(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// `GET uri` on `router`, which must answer 200 `application/json` with a `T`.
pub async fn get_view<T: DeserializeOwned>(router: &Router, uri: &str) -> T {
    let (status, content_type, body) = get(router, uri).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/json"),
        "{uri}: {body}"
    );
    read(&body)
}

/// `GET uri` on `router`, which must be refused with `status` and a problem saying so, returned.
pub async fn get_refused(router: &Router, uri: &str, status: u16) -> Problem {
    let reply = get(router, uri).await;
    assert_eq!(reply.0, status, "{uri}: {}", reply.2);
    problem(reply)
}

/// An answer's JSON `body` read as the view `T` the route serves (panics, showing the body, if
/// it is not one).
pub fn read<T: DeserializeOwned>(body: &Value) -> T {
    T::deserialize(body)
        .unwrap_or_else(|e| panic!("not a {}: {e}: {body}", std::any::type_name::<T>()))
}

/// The refusal an answer carries, checked to be an `application/problem+json` body whose own
/// status is the answer's.
pub fn problem((status, content_type, body): Reply) -> Problem {
    refusal(status.as_u16(), &content_type, &body)
}

/// The refusal in an answer of `status` with `content_type` and `body`, checked to be an
/// `application/problem+json` body whose own status is `status` (for clients with their own
/// answer type).
#[track_caller]
pub fn refusal(status: u16, content_type: &str, body: &Value) -> Problem {
    assert_eq!(content_type, "application/problem+json", "{status}: {body}");
    let problem: Problem = read(body);
    assert_eq!(problem.status, status, "{problem:?}");
    problem
}

/// Waits (10 s at most, else panics) until `group` has acked everything on `topic`.
pub async fn wait_acked(bus: &dyn Bus, topic: &str, group: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bus.lag(topic, group).await.unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{group} did not drain {topic}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a consumer (`run(stop)`) until `group` has acked everything on `topic`, then stops it;
/// it must end without an error.
pub async fn drain<F, Fut>(bus: &dyn Bus, topic: &str, group: &str, run: F)
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), PortError>> + Send + 'static,
{
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(stop.clone()));
    wait_acked(bus, topic, group).await;
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// A service's OpenAPI document as JSON, checked to describe every one of `paths`.
pub fn openapi_with_paths(doc: utoipa::openapi::OpenApi, paths: &[&str]) -> Value {
    let spec = serde_json::to_value(doc).unwrap();
    for path in paths {
        assert!(spec["paths"][path].is_object(), "{path}");
    }
    spec
}

/// The sum of the samples of metric `name` in Prometheus text `metrics` whose labels include
/// every one of `labels` (each written `key="value"`); 0 when none match.
pub fn metric_sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let set = match series.strip_prefix(name)? {
                "" => String::new(),
                rest => format!(",{}", rest.strip_prefix('{')?),
            };
            let matches = labels
                .iter()
                .all(|l| set.contains(&format!(",{l},")) || set.contains(&format!(",{l}}}")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::metric_sum;

    #[test]
    fn metric_sum_adds_the_samples_whose_labels_match() {
        let text = "# TYPE db_errors_total counter\n\
                    db_errors_total{backend=\"SQLite\",call=\"progress\",kind=\"timeout\"} 2\n\
                    db_errors_total{backend=\"SQLite\",call=\"progress_of\",kind=\"corrupt\"} 5\n\
                    db_errors_total{backend=\"MySQL\",call=\"progress\",kind=\"unavailable\"} 3\n\
                    db_errors_total_other 7\n\
                    bus_unreplicated_total 4\n";
        assert_eq!(metric_sum(text, "db_errors_total", &[]), 10.0);
        assert_eq!(
            metric_sum(text, "db_errors_total", &["call=\"progress\""]),
            5.0
        );
        let sqlite_progress = ["backend=\"SQLite\"", "call=\"progress\""];
        assert_eq!(metric_sum(text, "db_errors_total", &sqlite_progress), 2.0);
        assert_eq!(metric_sum(text, "bus_unreplicated_total", &[]), 4.0);
        assert_eq!(metric_sum(text, "bus_lag", &[]), 0.0);
    }
}
