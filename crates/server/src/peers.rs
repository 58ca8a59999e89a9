//! Routes owned by modules this process does not run, forwarded to the process that runs them.
//!
//! A load balancer routes by path prefix, and some public routes sit under another module's
//! prefix (`/campaigns/{id}/entries` is participation's under campaigns' `/campaigns`,
//! `/players/{id}/inbox` distribution's under progression's `/players`). With
//! `PEER_URL_TEMPLATE` set, a request no route of this process matched, whose path is a route
//! of another module of the table (its OpenAPI paths), is sent on to that module's address:
//! method, path, query, headers and body unchanged, so the owner checks signatures and
//! credentials itself, and its answer comes back as it is. Bodies stream through both ways
//! (a draw's answer lists every entrant: tens of megabytes), and at most [`IN_FLIGHT`]
//! requests are forwarded at once, so a crowd on these routes costs this process little memory.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use liveops_http::{caused_by, count_forwarded, BodyTimedOut, Problem};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::modules::{Table, Target};

/// Largest body forwarded (the owners' own limits are lower: a batch of events is 1 MiB).
const BODY_LIMIT: usize = 2 << 20;
/// How long a forwarded request may take until the owner's answer starts (the Application
/// Gateway's request timeout is 30 s).
const TIMEOUT: Duration = Duration::from_secs(25);
/// Requests forwarded at once by one process; more are answered 503 (retry shortly).
pub const IN_FLIGHT: usize = 256;
/// Longest an answer holds its slot while it streams to the client: a client that stops
/// reading (the server then stops taking the answer's body) gives the slot back after this,
/// so a few hundred such connections cannot take every slot.
const STREAM_HOLD: Duration = Duration::from_secs(60);

/// The module owning a route, where it answers, and the route's pattern (the metrics' label).
#[derive(Clone, Debug)]
struct Owner {
    module: &'static str,
    base: String,
    route: String,
}

/// Where the routes of the modules this process does not run are answered.
#[derive(Clone, Debug)]
pub struct Peers {
    routes: matchit::Router<Owner>,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

/// Headers that belong to one connection, not to the request (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::HOST,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    header::CONTENT_LENGTH,
];

impl Peers {
    /// The routes of every module of `table` that `target` does not run, each at the address
    /// `template` gives its module (`{module}` and `{port}`, its default port, replaced).
    pub fn new(table: &Table, target: &Target, template: &str, args: &clap::ArgMatches) -> Self {
        let mut routes = matchit::Router::new();
        for m in table.modules().iter().filter(|m| !target.runs(m.name())) {
            let base = template
                .replace("{module}", m.name())
                .replace("{port}", &m.port().to_string());
            for path in m.openapi(args).paths.paths.keys() {
                let owner = Owner {
                    module: m.name(),
                    base: base.clone(),
                    route: path.clone(),
                };
                // A path two modules claim stays with the first (none does today).
                let _ = routes.insert(path.clone(), owner);
            }
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            routes,
            client,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// Answers `req` through the module that owns its route; `req` back when no module does.
    pub async fn forward(&self, req: Request) -> Result<Response, Request> {
        let Ok(found) = self.routes.at(req.uri().path()) else {
            return Err(req);
        };
        let owner = found.value.clone();
        let method = req.method().clone();
        let answer = self.send(&owner, req).await;
        count_forwarded(&owner.route, &method, answer.status().as_u16());
        Ok(answer)
    }

    /// The owner's answer to `req`, its body streamed back as it comes.
    async fn send(&self, owner: &Owner, req: Request) -> Response {
        let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            metrics::counter!("http_forwards_refused_total").increment(1);
            return Problem::unavailable(format!(
                "more than {IN_FLIGHT} requests are on their way to the {} service; retry shortly",
                owner.module
            ))
            .into_response();
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
            return Problem::too_large(BODY_LIMIT).into_response();
        }
        let target = format!(
            "{}{}",
            owner.base.trim_end_matches('/'),
            req.uri()
                .path_and_query()
                .map_or(req.uri().path(), |p| p.as_str())
        );
        let method = req.method().clone();
        let headers = forwardable(req.headers());
        let body = Limited::new(req.into_body(), BODY_LIMIT).into_data_stream();
        let sent = self
            .client
            .request(method, &target)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body))
            .send();
        let res = match tokio::time::timeout(TIMEOUT, sent).await {
            Ok(Ok(res)) => res,
            Ok(Err(error)) if caused_by::<LengthLimitError>(&error as &(dyn Error + 'static)) => {
                return Problem::too_large(BODY_LIMIT).into_response()
            }
            // The client's body stopped (the edge answers 408): not the owner's failure.
            Ok(Err(error)) if caused_by::<BodyTimedOut>(&error as &(dyn Error + 'static)) => {
                return BodyTimedOut::problem("the request body did not arrive in time")
                    .into_response()
            }
            Ok(Err(error)) => return unreachable_owner(owner.module, &error.to_string()),
            Err(_) => {
                return unreachable_owner(owner.module, &format!("no answer within {TIMEOUT:?}"))
            }
        };
        let (status, headers) = (res.status(), forwardable(res.headers()));
        // The slot is held until the answer's last byte has gone to the client, or at most
        // STREAM_HOLD.
        let held = Held::at_most(slot, STREAM_HOLD);
        let stream = futures_util::StreamExt::map(res.bytes_stream(), move |chunk| {
            let _held = &held;
            chunk
        });
        let mut out = Response::new(Body::from_stream(stream));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }
}

/// A forwarding slot held by an answer's stream: given back when the stream ends or is
/// dropped, or after a time, whichever comes first.
struct Held(Arc<Slot>);

/// What [`Held`] shares with its timer.
struct Slot {
    /// The slot, until given back.
    permit: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
    /// Wakes the timer when the stream goes first.
    ended: Notify,
}

impl Slot {
    /// Drops the slot, if it is still there.
    fn give_back(&self) {
        let mut permit = self
            .permit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        permit.take();
    }
}

impl Held {
    /// Holds `slot` for at most `max`.
    fn at_most(slot: OwnedSemaphorePermit, max: Duration) -> Self {
        let shared = Arc::new(Slot {
            permit: std::sync::Mutex::new(Some(slot)),
            ended: Notify::new(),
        });
        let timer = Arc::clone(&shared);
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(max) => {}
                () = timer.ended.notified() => {}
            }
            timer.give_back();
        });
        Self(shared)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.give_back();
        self.0.ended.notify_one();
    }
}

/// `headers` less those of one connection.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for h in &HOP_BY_HOP {
        out.remove(h);
    }
    out
}

/// 503 for a route whose owner did not answer: nothing was done that the client can count on.
fn unreachable_owner(owner: &str, error: &str) -> Response {
    tracing::warn!(%error, owner, "a forwarded request did not reach its module");
    let mut p = Problem::unavailable(format!(
        "the {owner} service that answers this route cannot be reached; retry shortly"
    ));
    p.retry_after = Some(5);
    p.into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// A held slot comes back when its stream goes, or after its longest hold if it never does
    /// (a client that stopped reading).
    #[tokio::test]
    async fn a_slot_comes_back_when_its_stream_ends_or_after_its_longest_hold() {
        let slots = Arc::new(Semaphore::new(1));
        let held = Held::at_most(slots.clone().try_acquire_owned().unwrap(), STREAM_HOLD);
        assert_eq!(slots.available_permits(), 0);
        drop(held);
        assert_eq!(slots.available_permits(), 1, "given back with the stream");

        let short = Duration::from_millis(100);
        let stalled = Held::at_most(slots.clone().try_acquire_owned().unwrap(), short);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(slots.available_permits(), 0, "held while it may stream");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            slots.available_permits(),
            1,
            "given back, the stream still there"
        );
        drop(stalled);
        assert_eq!(slots.available_permits(), 1);
    }
}
