//! Answering each signed request once: by its signature, and by its `Idempotency-Key` too if it
//! has one (ADR 0017).
//!
//! The first request holds the key and its answer is stored; repeats get that answer back with
//! `208` and `Idempotent-Replayed: true`, and a repeat that arrives while the first is still
//! running waits for it. The signature is held with or without a key, for as long as it could be
//! accepted: a byte-identical repeat (a client retry, or someone replaying what they saw, under
//! any `Idempotency-Key`, which is not signed) is the same request, answered the same, never a
//! second effect and never a 401.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use liveops_core::ports::{IdemState, StoredAnswer};
use liveops_http::{idempotency_key, Problem, Signature, Signed, IDEMPOTENCY_KEY, REPLAYED};
use liveops_module::hold::Hold;
use sha2::{Digest, Sha256};

use crate::guard::{dropped, hot_state_failed};
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
    /// 1..=255 visible ASCII characters, unique across every client of the deployment (a
    /// UUID): keys are not scoped by signing key, so a retry re-signed with a rotated key still
    /// finds its first answer. A repeat gets that answer back with 208. The signature counts
    /// too: the same signed request again, under any key, gets it with 208.
    #[param(rename = "Idempotency-Key", pattern = "^[!-~]{1,255}$")]
    idempotency_key: Option<String>,
}

/// What to do with a request after the idempotency step.
pub(crate) enum Admission {
    /// Process it; finish the hold on its keys (its signature, and its `Idempotency-Key` if
    /// sent) with the outcome: dropped unfinished (the client went away), it is released.
    Proceed(Hold),
    /// It was answered before: send that answer again.
    Replay(StoredAnswer),
}

/// The ids of the items of one request to `scope`: UUIDv8s derived from its body (what the
/// signature covers, which nobody changes without the signing key) and the item's index. Every
/// copy of a request carries the same ids: a retry after an unclear outcome (the bus took the
/// event but the answer was lost), re-signed or not, and a copy someone captured and sent again
/// under an `Idempotency-Key` of their own or none (the key is not signed) after the gateway
/// forgot the first one; every consumer, which dedupes by event id, applies each once. Two
/// requests with byte-identical bodies are one request (an event's body holds its `ts`; equal
/// events that must both count differ by `messageId`: ADR 0017). The body is hashed once per
/// request, not once per item.
pub(crate) struct EventIds(Sha256);

impl EventIds {
    /// The ids of the request with `body` to `scope`.
    pub(crate) fn new(scope: &str, body: &[u8]) -> Self {
        let mut h = Sha256::new();
        for part in [scope.as_bytes(), b"\0", &Sha256::digest(body)[..]] {
            h.update(part);
        }
        Self(h)
    }

    /// The ids a release before 2026-12-07 gave the request with these `headers`, `signature`
    /// and `body` (from its `Idempotency-Key` as sent, else its signature): a batch it answered
    /// is answered again with them for a day (`IDEMP_TTL`).
    pub(crate) fn of_release_before(
        headers: &HeaderMap,
        signature: &Signature,
        scope: &str,
        body: &[u8],
    ) -> Self {
        let identity = match headers.get(IDEMPOTENCY_KEY) {
            Some(key) => key.as_bytes().to_vec(),
            None => format!("signature {}", signature.0).into_bytes(),
        };
        let mut h = Sha256::new();
        for part in [
            scope.as_bytes(),
            b"\0",
            &identity,
            b"\0",
            &Sha256::digest(body)[..],
        ] {
            h.update(part);
        }
        Self(h)
    }

    /// The id of item `index`, whose own `ts` (from the body, so as stable as the rest) leads
    /// the id: consumers' per-event rows are inserted in time order, as with UUIDv7, instead of
    /// at random places in their b-trees.
    pub(crate) fn of(&self, index: usize, ts_s: i64) -> uuid::Uuid {
        let mut h = self.0.clone();
        h.update(index.to_be_bytes());
        v8_at(ts_s, &h.finalize())
    }
}

/// The id of an event that carries the client's `messageId`: a UUIDv8 of the player and that
/// id, whatever request brought it, so consumers apply it once however often it is resent
/// within `EVENT_RETENTION` (they forget it after that: ADR 0017).
pub(crate) fn message_event_id(player: &str, message_id: &str) -> uuid::Uuid {
    let mut h = Sha256::new();
    for part in [b"message".as_slice(), b"\0", player.as_bytes(), b"\0"] {
        h.update(part);
    }
    h.update(message_id.as_bytes());
    v8(&h.finalize())
}

/// A UUIDv8 laid out as a UUIDv7: 48 bits of unix milliseconds (`ts_s` × 1000, clamped to the
/// field), then the first 10 bytes of a digest.
fn v8_at(ts_s: i64, digest: &[u8]) -> uuid::Uuid {
    let ms = u64::try_from(ts_s.saturating_mul(1000))
        .unwrap_or(0)
        .min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&digest[..10]);
    uuid::Uuid::new_v8(bytes)
}

/// A UUIDv8 from the first 16 bytes of a digest.
fn v8(digest: &[u8]) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes)
}

/// Hex SHA-256 of the raw body: a key reused with a different body is refused.
fn fingerprint(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Runs the idempotency step for a request to `scope` (one key space per route). The signature
/// is always held, and the `Idempotency-Key` too when sent: the key lets a client's re-signed
/// retry get the first answer, and the signature stops a captured request from being sent again
/// under a new key of the sender's choosing (the key is not signed).
pub(crate) async fn admit(
    state: &GatewayState,
    scope: &str,
    request: (&HeaderMap, &[u8], &Signature),
    events: u64,
) -> Result<Admission, Problem> {
    let (headers, body, signature) = request;
    // A signature is accepted while its timestamp is within the tolerance of server time:
    // remembered twice that long, it is remembered for as long as it could come back.
    let mut keys = vec![(
        format!("gateway-signed:{scope}:{}", signature.0),
        Duration::from_secs(2 * state.signatures.tolerance_s.max(1) as u64 + 1),
    )];
    let key = idempotency_key(headers).inspect_err(|_| dropped("invalid", events))?;
    if let Some(key) = key {
        keys.push((
            format!("gateway:{scope}:{key}"),
            state.config.idempotency_ttl,
        ));
    }
    let print = fingerprint(body);
    let mut hold = Hold::new(Arc::clone(&state.idem), print.clone());
    let first_taken = tokio::time::Instant::now();
    for (key, ttl) in keys {
        match take(state, &key, &print, ttl, events).await {
            Ok(None) => hold.add(key, ttl),
            Ok(Some(answer)) => {
                // A retry under a new signature: that signature gets the same answer too.
                hold.complete(answer.clone()).await;
                return Ok(Admission::Replay(answer));
            }
            Err(problem) => {
                hold.release().await;
                return Err(problem);
            }
        }
    }
    // One task extends all of a request's keys, started only once the request goes ahead.
    hold.extend_every(EXTEND_EVERY, IN_FLIGHT_TTL, first_taken);
    Ok(Admission::Proceed(hold))
}

/// Takes `key` for a request with body fingerprint `print`: `None` when it is fresh (now held
/// for a short while), the first answer when it was answered before. A request refused or
/// answered again here drops its `events` (`dropped_events_total`, each counted).
async fn take(
    state: &GatewayState,
    key: &str,
    print: &str,
    ttl: Duration,
    events: u64,
) -> Result<Option<StoredAnswer>, Problem> {
    // The in-flight hold lives briefly unless extended: if the request dies with its backend (and
    // cannot release the key), a retry may go through once the hold lapses instead of being
    // refused for a day. While the request lives its hold is extended (`Hold::extend_every`).
    let hold_ttl = ttl.min(IN_FLIGHT_TTL);
    let deadline = tokio::time::Instant::now() + WAIT_AT_MOST;
    loop {
        let begun = state.idem.idem_begin(key, print, hold_ttl).await;
        match begun.map_err(|e| hot_state_failed(e, events))? {
            IdemState::Fresh => return Ok(None),
            IdemState::Done(answer) => {
                dropped("duplicate", events);
                return Ok(Some(answer));
            }
            IdemState::Mismatch => {
                dropped("invalid", events);
                return Err(Problem::key_reused());
            }
            IdemState::InFlight if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(POLL_EVERY).await;
            }
            IdemState::InFlight => {
                dropped("duplicate", events);
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

/// What a request's work yields: the answer's body, and what to store for repeats (`None`: it
/// changed nothing, so a repeat is judged afresh).
pub(crate) type Worked = (String, Option<String>);

/// Runs the rest of a request that holds a key (`work`) on its own task, so a client that goes
/// away cannot interrupt it between publishing and storing the answer; then stores the answer
/// (status `status`) or releases the key.
pub(crate) async fn finish_detached<F>(
    hold: Hold,
    status: StatusCode,
    work: F,
) -> Result<String, Problem>
where
    F: Future<Output = Result<Worked, Problem>> + Send + 'static,
{
    let task = async move {
        let outcome = work.await;
        match outcome {
            Ok((body, Some(stored))) => {
                // The events are on the bus already: an answer that cannot be stored is logged,
                // not answered as an error that would invite a retry that duplicates them.
                // Repeats see the key in flight (409) until it lapses.
                hold.complete(StoredAnswer {
                    status: status.as_u16(),
                    body: stored,
                })
                .await;
                Ok(body)
            }
            other => {
                hold.release().await;
                other.map(|(body, _)| body)
            }
        }
    };
    liveops_http::uninterrupted(task).await
}

/// Answers a signed request exactly once per Idempotency-Key (or signature): a repeat gets the
/// first answer (what was stored, through `expand`, which gets the repeat itself); otherwise
/// `work` runs (to the end even if the client goes away) and its JSON body goes out with
/// `status`. `scope` is the route's key space; a repeat or refusal here drops the request's
/// `events`.
pub(crate) async fn respond_once<F>(
    state: &GatewayState,
    (scope, events): (&str, u64),
    signed: &Signed,
    status: StatusCode,
    work: F,
    expand: fn(&Signed, String) -> String,
) -> Result<Response, Problem>
where
    F: Future<Output = Result<Worked, Problem>> + Send + 'static,
{
    let request = (&signed.headers, &signed.body[..], &signed.signature);
    let body = match admit(state, scope, request, events).await? {
        Admission::Replay(answer) => {
            return Ok(replay(StoredAnswer {
                body: expand(signed, answer.body),
                ..answer
            }))
        }
        Admission::Proceed(hold) => finish_detached(hold, status, work).await?,
    };
    Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A stored answer sent again: `208` with `Idempotent-Replayed: true`.
pub(crate) fn replay(answer: StoredAnswer) -> Response {
    let mut res = (StatusCode::ALREADY_REPORTED, answer.body).into_response();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    res
}

/// How long an unanswered hold on an idempotency key lasts past its last extension: the key of a
/// request whose gateway died (`kill -9`) is refused 409 that long. Short, so clients of a
/// restarted deployment are not kept waiting (at 30 s, those of a split deployment waited half a
/// minute: docs/BENCHMARKS.md). A live request extends its holds every [`EXTEND_EVERY`] until
/// its answer is stored: a hold that lapsed under a slow request (a publish waiting for Redis
/// replicas) let the same signed request under another key (or none), whose event ids differ,
/// be applied a second time.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(5);

/// How often a running request extends the holds on its keys, each time to [`IN_FLIGHT_TTL`]
/// from then: an extension may take 3 s before the hold lapses (a Redis call, 2 s by default).
const EXTEND_EVERY: Duration = Duration::from_secs(2);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event_id(scope: &str, body: &[u8], index: usize, ts_s: i64) -> uuid::Uuid {
        EventIds::new(scope, body).of(index, ts_s)
    }

    /// The UUIDv8 of `prefix` (the hashed input before the body), `body` and item `i` at `ts`.
    fn by_formula(prefix: &[u8], body: &[u8], i: usize, ts: i64) -> uuid::Uuid {
        let mut input = prefix.to_vec();
        input.extend_from_slice(&Sha256::digest(body));
        input.extend_from_slice(&i.to_be_bytes());
        let digest = Sha256::digest(&input);
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&(ts * 1000).to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&digest[..10]);
        uuid::Uuid::new_v8(bytes)
    }

    #[test]
    fn event_ids_keep_their_formula() {
        // SHA-256(scope, 0, SHA-256(body), index as 8 bytes big-endian), its first 10 bytes
        // after the event's time: ids must not change between releases, or a request retried
        // across an upgrade would be applied twice. The release before hashed the request's
        // identity too (its key, else its signature), still used to answer its batches again.
        let sig = Signature("sha256=ab".into());
        let body = br#"[{"ts":1800000000},{"ts":1800000001}]"#;
        let ids = EventIds::new("events.batch", body);
        let before = EventIds::of_release_before(&HeaderMap::new(), &sig, "events.batch", body);
        for (i, ts) in [(0usize, 1_800_000_000i64), (1, 1_800_000_001)] {
            assert_eq!(
                ids.of(i, ts),
                by_formula(b"events.batch\0", body, i, ts),
                "{i}"
            );
            let old = by_formula(b"events.batch\0signature sha256=ab\0", body, i, ts);
            assert_eq!(before.of(i, ts), old, "item {i}, release before");
        }
    }

    #[test]
    fn requests_get_a_stable_event_id_per_body_and_item() {
        let a = event_id("events", b"{}", 0, 0);
        assert_eq!(a, event_id("events", b"{}", 0, 0));
        assert_eq!(a.get_version_num(), 8);
        assert_ne!(a, event_id("events", b"{ }", 0, 0));
        assert_ne!(a, event_id("events", b"{}", 1, 0));
        assert_ne!(a, event_id("events.batch", b"{}", 0, 0));
    }

    #[test]
    fn event_ids_follow_the_events_time() {
        let at = |ts| event_id("events", b"{}", 0, ts);
        let (a, b) = (at(1_800_000_000), at(1_800_000_001));
        assert!(a < b, "{a} {b}");
        assert_eq!(a.get_version_num(), 8);
        assert_eq!(&a.as_bytes()[..6], &1_800_000_000_000u64.to_be_bytes()[2..]);
        // Out-of-range times are clamped, not wrapped.
        assert_eq!(&at(-5).as_bytes()[..6], &[0; 6]);
        assert_eq!(&at(i64::MAX).as_bytes()[..6], &[0xff; 6]);
    }

    #[test]
    fn message_ids_name_one_event_per_player() {
        let a = message_event_id("player_1", "m-1");
        assert_eq!(a, message_event_id("player_1", "m-1"));
        assert_ne!(a, message_event_id("player_1", "m-2"));
        assert_ne!(a, message_event_id("player_2", "m-1"));
    }

    #[test]
    fn fingerprint_is_hex_sha256() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
