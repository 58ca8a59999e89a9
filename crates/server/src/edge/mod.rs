//! What every request passes before its route: a bound on the requests one process serves at once
//! (`HTTP_MAX_IN_FLIGHT`, more answered 503) and a deadline on its body (`HTTP_BODY_TIMEOUT`,
//! answered 408). With the head's own deadline (`HTTP_HEADER_TIMEOUT`, set on each connection
//! by the server loop), a client that sends slowly, or stops half-way, holds neither memory nor
//! a request slot for long.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, CONNECTION};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::{Frame, SizeHint};
use liveops_http::{BodyTimedOut, Problem};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::config::http::HttpLimits;

mod document;
pub use document::document;

/// The operations routes, served whatever the load: probes and scrapes must see a busy process
/// as alive and ready, and say why it is busy.
const UNBOUNDED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// `router` with the in-flight bound and the body deadline of `limits`.
pub fn guard(router: Router, limits: &HttpLimits) -> Router {
    let slots = Arc::new(Semaphore::new(limits.max_in_flight));
    router
        .layer(from_fn_with_state(limits.body_timeout, body_deadline))
        .layer(from_fn_with_state(slots, in_flight))
}

/// Counts a request refused before its route, by `reason`.
fn refused(reason: &'static str) {
    metrics::counter!("http_requests_refused_total", "reason" => reason).increment(1);
}

/// Serves the request in one of the process's slots, or answers 503 (`Retry-After: 1`) when
/// every slot is taken.
async fn in_flight(State(slots): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    if UNBOUNDED.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let Ok(_slot) = slots.try_acquire() else {
        refused("busy");
        return Problem::unavailable("too many requests in progress on this server; retry shortly")
            .into_response();
    };
    next.run(req).await
}

/// Gives the request's body until `timeout` after its head to arrive: when it does not, whatever
/// the route answered (it saw the body fail) is replaced by 408, and the connection is closed.
async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    // A body known to be empty (most GETs, probes) has nothing to wait for.
    if hyper::body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::new(Deadline {
            body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            expired: expired.clone(),
        })
    });
    let res = next.run(req).await;
    if !expired.load(Ordering::Acquire) {
        return res;
    }
    refused("body_timeout");
    let ms = timeout.as_millis();
    let detail = format!("the request body did not arrive within {ms} ms");
    let mut res = BodyTimedOut::problem(detail).into_response();
    let close = HeaderValue::from_static("close");
    res.headers_mut().insert(CONNECTION, close);
    res
}

/// A request body that fails once its deadline passes before it has all arrived.
struct Deadline {
    body: Body,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.expired.store(true, Ordering::Release);
        Poll::Ready(Some(Err(BodyTimedOut.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use axum::routing::post;
    use tower::ServiceExt;

    fn limits(max_in_flight: usize) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_millis(200),
            max_in_flight,
        }
    }

    /// A route that reads the whole body and answers how long it was.
    fn app(max_in_flight: usize) -> Router {
        let read = |body: Bytes| async move { body.len().to_string() };
        guard(
            Router::new().route("/read", post(read)),
            &limits(max_in_flight),
        )
    }

    #[tokio::test]
    async fn a_body_that_stops_half_way_is_answered_408_at_its_deadline() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.send(Ok(Bytes::from_static(b"half"))).await.unwrap();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let req = Request::post("/read")
            .body(Body::from_stream(stream))
            .unwrap();
        let started = std::time::Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(5), app(16).oneshot(req))
            .await
            .expect("answered at the deadline")
            .unwrap();
        assert_eq!(res.status(), 408);
        assert_eq!(res.headers()[CONNECTION], "close");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(tx);
        // A whole body in time is served as usual.
        let req = Request::post("/read").body(Body::from("whole")).unwrap();
        let res = app(16).oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
    }

    #[tokio::test]
    async fn past_the_bound_requests_are_answered_503_but_probes_are_not() {
        let release = Arc::new(tokio::sync::Notify::new());
        let entered = Arc::new(tokio::sync::Notify::new());
        let (wait, enter) = (release.clone(), entered.clone());
        let slow = move || async move {
            enter.notify_one();
            wait.notified().await;
            "done"
        };
        let app = guard(
            Router::new()
                .route("/slow", axum::routing::get(slow))
                .route("/healthz", axum::routing::get(|| async { "ok" })),
            &limits(1),
        );
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        let first = tokio::spawn(app.clone().oneshot(get("/slow")));
        entered.notified().await;
        let res = app.clone().oneshot(get("/slow")).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let probe = app.clone().oneshot(get("/healthz")).await.unwrap();
        assert_eq!(probe.status(), 200);
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), 200);
        // The slot is free again.
        let again = tokio::spawn(app.clone().oneshot(get("/slow")));
        entered.notified().await;
        release.notify_one();
        assert_eq!(again.await.unwrap().unwrap().status(), 200);
    }
}
