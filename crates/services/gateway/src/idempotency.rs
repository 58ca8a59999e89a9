//! `Idempotency-Key` handling and the replay guard for requests without one.
//!
//! With a key, the first request holds it and its answer is stored; repeats get that answer
//! back with `208`, and a repeat that arrives while the first is still running waits for it.
//! Without a key, each signature may be used once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use liveops_core::ports::{IdemState, Idempotency, StoredAnswer};
use liveops_http::{header, Problem, Signature, Signed};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::guard::dropped;
use crate::GatewayState;

/// How often a repeat polls for the first request's answer.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// How long a repeat waits for the first request before answering 409.
const WAIT_AT_MOST: Duration = Duration::from_secs(2);

/// The `Idempotency-Key` header, as documented on the ingest routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documents the header; `admit` reads it from the request
pub(crate) struct IdempotencyHeader {
    /// 1..=255 visible ASCII characters; a repeat gets the first answer back with 208. Without it
    /// each signature is accepted once.
    #[param(rename = "Idempotency-Key", pattern = "^[!-~]{1,255}$")]
    idempotency_key: Option<String>,
}

/// What to do with a request after the idempotency step.
pub(crate) enum Admission {
    /// Process it; finish the hold on the key (if there is one) with the outcome.
    Proceed(Option<KeyHold>),
    /// It was answered before: replay that answer.
    Replay(StoredAnswer),
}

/// The `Idempotency-Key` header, if sent: 1..=255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = raw.as_bytes();
    let visible = bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    if (1..=255).contains(&bytes.len()) && visible {
        // Visible ASCII is valid UTF-8.
        Ok(Some(header(headers, "idempotency-key").unwrap_or_default()))
    } else {
        dropped("invalid", 1);
        Err(Problem::invalid(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ))
    }
}

/// The id of item `index` of a request to `scope`: a fresh UUIDv7 without an `Idempotency-Key`.
/// With one, a UUIDv8 derived from the key and the body, so a retry that publishes again after an
/// unclear outcome (the bus took the event but the answer was lost in an outage) carries the same
/// id, and every consumer, which dedupes by event id, applies it once.
pub(crate) fn event_id(headers: &HeaderMap, scope: &str, body: &[u8], index: usize) -> uuid::Uuid {
    match headers.get("idempotency-key") {
        None => uuid::Uuid::now_v7(),
        Some(key) => {
            let mut h = Sha256::new();
            for part in [
                scope.as_bytes(),
                b"\0",
                key.as_bytes(),
                b"\0",
                &Sha256::digest(body)[..],
            ] {
                h.update(part);
            }
            h.update(index.to_be_bytes());
            let digest = h.finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Uuid::new_v8(bytes)
        }
    }
}

/// Hex SHA-256 of the raw body: a key reused with a different body is refused.
fn fingerprint(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Runs the idempotency step for a request to `scope` (one key space per route).
pub(crate) async fn admit(
    state: &GatewayState,
    scope: &str,
    headers: &HeaderMap,
    body: &[u8],
    signature: &Signature,
) -> Result<Admission, Problem> {
    let Some(key) = idempotency_key(headers)? else {
        let ttl = Duration::from_secs(2 * state.signatures.tolerance_s.max(1) as u64);
        if state.replay.first_use(&signature.0, ttl).await? {
            return Ok(Admission::Proceed(None));
        }
        dropped("unauthorized", 1);
        return Err(Problem::unauthorized(
            "replayed request: this signature was already used; send an Idempotency-Key header to retry safely",
        ));
    };
    let key = format!("gateway:{scope}:{key}");
    let print = fingerprint(body);
    let ttl = state.config.idempotency_ttl;
    // The in-flight hold lives briefly: if the request dies with its backend (and cannot release
    // the key), a retry may go through once the hold lapses instead of being refused for a day.
    let hold_ttl = ttl.min(IN_FLIGHT_TTL);
    let deadline = tokio::time::Instant::now() + WAIT_AT_MOST;
    loop {
        match state.idem.idem_begin(&key, &print, hold_ttl).await? {
            IdemState::Fresh => {
                return Ok(Admission::Proceed(Some(KeyHold {
                    idem: Arc::clone(&state.idem),
                    key,
                    ttl,
                    finished: false,
                })))
            }
            IdemState::Done(answer) => {
                dropped("duplicate", 1);
                return Ok(Admission::Replay(answer));
            }
            IdemState::Mismatch => {
                dropped("invalid", 1);
                return Err(Problem::new(
                    422,
                    "idempotency-key-reused",
                    "Idempotency-Key reused",
                    "this Idempotency-Key was already used with a different request body",
                )
                .with_field("Idempotency-Key"));
            }
            IdemState::InFlight if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL_EVERY).await;
            }
            IdemState::InFlight => {
                dropped("duplicate", 1);
                let mut p = Problem::conflict(
                    "in-progress",
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                );
                p.retry_after = Some(1);
                return Err(p);
            }
        }
    }
}

/// Runs the rest of a request that holds a key (`work`, yielding the answer body and whether to
/// store it) on its own task, so a client that goes away cannot interrupt it between publishing
/// and storing the answer; then stores the answer (status `status`) or releases the key.
pub(crate) async fn finish_detached<F>(
    hold: KeyHold,
    status: StatusCode,
    work: F,
) -> Result<String, Problem>
where
    F: Future<Output = Result<(String, bool), Problem>> + Send + 'static,
{
    let task = async move {
        let outcome = work.await;
        match &outcome {
            Ok((body, true)) => {
                hold.complete(StoredAnswer {
                    status: status.as_u16(),
                    body: body.clone(),
                })
                .await
            }
            _ => hold.release().await,
        }
        outcome.map(|(body, _)| body)
    };
    tokio::spawn(task.instrument(tracing::Span::current()))
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "ingestion task failed");
            Err(Problem::internal())
        })
}

/// Answers a signed request exactly once per Idempotency-Key (or signature): a repeat gets the
/// first answer; otherwise `work` runs (to the end even if the client goes away, when a key is
/// held) and its JSON body goes out with `status`. `work` also says whether it changed anything.
pub(crate) async fn respond_once<F>(
    state: &GatewayState,
    scope: &str,
    signed: &Signed,
    status: StatusCode,
    work: F,
) -> Result<Response, Problem>
where
    F: Future<Output = Result<(String, bool), Problem>> + Send + 'static,
{
    let body = match admit(
        state,
        scope,
        &signed.headers,
        &signed.body,
        &signed.signature,
    )
    .await?
    {
        Admission::Replay(answer) => return Ok(replay(answer)),
        Admission::Proceed(None) => work.await?.0,
        Admission::Proceed(Some(hold)) => finish_detached(hold, status, work).await?,
    };
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The `208` replay of a stored answer.
pub(crate) fn replay(answer: StoredAnswer) -> Response {
    let mut res = (StatusCode::ALREADY_REPORTED, answer.body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// How long an unanswered hold on an idempotency key lasts.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(30);

/// Ownership of a fresh idempotency key: finish it with [`KeyHold::complete`] or
/// [`KeyHold::release`]. A hold dropped unfinished (the client went away mid-request) is released
/// in the background so retries are not stuck behind it.
pub(crate) struct KeyHold {
    idem: Arc<dyn Idempotency>,
    key: String,
    ttl: Duration,
    finished: bool,
}

impl KeyHold {
    /// Stores the answer repeats will get.
    pub(crate) async fn complete(mut self, answer: StoredAnswer) {
        self.finished = true;
        if let Err(error) = self.idem.idem_complete(&self.key, answer, self.ttl).await {
            // The events are on the bus already: answering an error would invite a retry that
            // duplicates them. Repeats see the key in flight (409) until it expires.
            tracing::error!(%error, key = %self.key, "idempotent answer could not be stored");
        }
    }

    /// Gives the key up so a retry can go through.
    pub(crate) async fn release(mut self) {
        self.finished = true;
        if let Err(error) = self.idem.idem_release(&self.key).await {
            tracing::warn!(%error, key = %self.key, "idempotency key could not be released");
        }
    }
}

impl Drop for KeyHold {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let idem = Arc::clone(&self.idem);
            let key = std::mem::take(&mut self.key);
            rt.spawn(async move {
                if let Err(error) = idem.idem_release(&key).await {
                    tracing::warn!(%error, %key, "abandoned idempotency key could not be released");
                }
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with_key(v: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "idempotency-key",
            HeaderValue::from_bytes(v).expect("test header"),
        );
        h
    }

    #[test]
    fn keys_must_be_short_visible_ascii() {
        assert_eq!(idempotency_key(&HeaderMap::new()), Ok(None));
        assert_eq!(idempotency_key(&with_key(b"abc-123")), Ok(Some("abc-123")));
        assert_eq!(
            idempotency_key(&with_key(&[b'k'; 255])).map(|k| k.map(str::len)),
            Ok(Some(255))
        );
        for bad in [&b""[..], &[b'k'; 256][..], b"a b", "é".as_bytes()] {
            let p = idempotency_key(&with_key(bad)).unwrap_err();
            assert_eq!(p.status, 400);
            assert_eq!(p.field.as_deref(), Some("Idempotency-Key"));
        }
    }

    #[test]
    fn keyed_requests_get_a_stable_event_id_per_key_body_and_item() {
        let mut keyed = HeaderMap::new();
        keyed.insert("idempotency-key", HeaderValue::from_static("k1"));
        let a = event_id(&keyed, "events", b"{}", 0);
        assert_eq!(a, event_id(&keyed, "events", b"{}", 0));
        assert_eq!(a.get_version_num(), 8);
        assert_ne!(a, event_id(&keyed, "events", b"{ }", 0));
        assert_ne!(a, event_id(&keyed, "events", b"{}", 1));
        assert_ne!(a, event_id(&keyed, "events.batch", b"{}", 0));
        let plain = HeaderMap::new();
        let b = event_id(&plain, "events", b"{}", 0);
        assert_eq!(b.get_version_num(), 7);
        assert_ne!(b, event_id(&plain, "events", b"{}", 0));
    }

    #[test]
    fn fingerprint_is_hex_sha256() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
