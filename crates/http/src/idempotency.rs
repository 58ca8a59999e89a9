//! The `Idempotency-Key` request header (IETF draft-ietf-httpapi-idempotency-key-header), read
//! the same way on every route that takes one, and the keyed operator creates built on it: the
//! body with its key and digest ([`KeyedJson`]), the header's document ([`CreateKeyHeader`]) and
//! the answers to a first request and its retries ([`replayed`], [`created`]).

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use liveops_core::stores::{Keyed, KeyedOutcome, RequestKey, RequestKeys};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::extract::{parse_json, read_limited};
use crate::{Operator, Problem};

/// The header's name, as axum stores it.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header on a repeat's answer (`true`), as Stripe sends it.
pub const REPLAYED: &str = "idempotent-replayed";

/// The `Idempotency-Key` header if sent: once, 1..=255 visible ASCII characters (the pattern
/// `^[!-~]{1,255}$` the routes document); anything else is a 400 problem naming the header.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let mut all = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(raw) = all.next() else {
        return Ok(None);
    };
    let bytes = raw.as_bytes();
    let visible = bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    match raw.to_str() {
        Ok(key) if all.next().is_none() && (1..=255).contains(&bytes.len()) && visible => {
            Ok(Some(key))
        }
        _ => Err(Problem::invalid(
            "Idempotency-Key",
            "must be sent once, 1 to 255 visible ASCII characters",
        )),
    }
}

/// An operator create's JSON body with its `Idempotency-Key`, if sent, and what tells a retry
/// from another request: the route and the body as sent ([`KeyedJson::digest`]).
#[derive(Clone, Debug)]
pub struct KeyedJson<T> {
    /// The `Idempotency-Key`, if sent.
    pub key: Option<String>,
    /// The method and path (`POST /webhooks`).
    pub route: String,
    /// The body.
    pub body: T,
    /// The body as sent, digested only for a keyed request.
    raw: bytes::Bytes,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for KeyedJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let key = idempotency_key(req.headers())?.map(str::to_owned);
        let route = format!("{} {}", req.method(), req.uri().path());
        let raw = read_limited(req).await?;
        let body = parse_json(&raw)?;
        Ok(Self {
            key,
            route,
            body,
            raw,
        })
    }
}

impl<T> KeyedJson<T> {
    /// Hex SHA-256 of the route and the body as a JSON value (spacing and key order do not
    /// count; a map's keys come out sorted), telling a retry from another request.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.route.as_bytes());
        hash.update(b"\n");
        match serde_json::from_slice::<serde_json::Value>(&self.raw) {
            Ok(value) => hash.update(value.to_string().as_bytes()),
            // A body the typed read took but a JSON value cannot hold (a number out of range).
            Err(_) => hash.update(&self.raw),
        }
        hex::encode(hash.finalize())
    }

    /// The request's key as `op`'s (keys are each sender's own), if one was sent.
    pub fn request_key(&self, op: &Operator) -> Option<RequestKey> {
        self.key.as_ref().map(|key| RequestKey {
            operator_id: op.id.clone(),
            key: key.clone(),
            route: self.route.clone(),
            request_hash: self.digest(),
        })
    }
}

/// The `Idempotency-Key` header of an operator create.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documents the header; `KeyedJson` reads it from the request
pub struct CreateKeyHeader {
    /// 1..=255 visible ASCII characters, the sender's own: the same request again under it
    /// gets the first answer (201, `Idempotent-Replayed: true`) and nothing is done twice;
    /// another request under it is refused (422). Kept as long as `EVENT_RETENTION`.
    #[param(rename = "Idempotency-Key", pattern = "^[!-~]{1,255}$")]
    idempotency_key: Option<String>,
}

/// The answer to a retry found before any work (`key` used before), or `None` for a request to
/// carry out. A retry is answered even where the request would no longer pass its checks.
pub async fn replayed(
    keys: &dyn RequestKeys,
    key: Option<&RequestKey>,
) -> Result<Option<Response>, Problem> {
    Ok(first_answer(keys, key).await?.map(replay))
}

/// The body of the first answer under `key` (a 422 problem if another request used it), or
/// `None` for a request to carry out: for a route whose answer names what may be gone since.
pub async fn first_answer(
    keys: &dyn RequestKeys,
    key: Option<&RequestKey>,
) -> Result<Option<String>, Problem> {
    let Some(key) = key else { return Ok(None) };
    match keys.answered(key).await? {
        None | Some(KeyedOutcome::Written) => Ok(None),
        Some(KeyedOutcome::Replayed(body)) => Ok(Some(body)),
        Some(KeyedOutcome::KeyReused) => Err(Problem::key_reused()),
    }
}

/// `fresh` (the 201 body of a create) with `key`, ready for the store: what a retry gets.
pub fn keyed<T: Serialize>(key: Option<RequestKey>, fresh: &T) -> Result<Option<Keyed>, Problem> {
    key.map(|key| {
        let answer = serde_json::to_string(fresh).map_err(|e| {
            tracing::error!(%e, "an answer that does not serialize");
            Problem::internal()
        })?;
        Ok(Keyed { key, answer })
    })
    .transpose()
}

/// The answer to a create the store carried out or refused: 201 with `fresh` if written now,
/// the first answer again if its key was used before by the same request, 422 if by another.
pub fn created<T: Serialize>(outcome: KeyedOutcome, fresh: &T) -> Result<Response, Problem> {
    match outcome {
        KeyedOutcome::Written => Ok((StatusCode::CREATED, axum::Json(fresh)).into_response()),
        KeyedOutcome::Replayed(body) => Ok(replay(body)),
        KeyedOutcome::KeyReused => Err(Problem::key_reused()),
    }
}

/// A first answer again if what it created is still there (`there`), else a 410 problem
/// (`created-then-removed`) saying what became of it (`removed`).
pub fn replay_if_there(first: String, there: bool, removed: &str) -> Result<Response, Problem> {
    if there {
        Ok(replay(first))
    } else {
        Err(Problem::gone(
            "created-then-removed",
            format!("{removed} since it was created under this Idempotency-Key"),
        ))
    }
}

/// A stored 201 body again, marked `Idempotent-Replayed: true`.
pub fn replay(body: String) -> Response {
    metrics::counter!("operator_requests_replayed_total").increment(1);
    tracing::info!("a keyed request repeated: its first answer again");
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (
            HeaderName::from_static(REPLAYED),
            HeaderValue::from_static("true"),
        ),
    ];
    (StatusCode::CREATED, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::extract::{FromRequest, Request};
    use axum::http::{HeaderMap, HeaderValue};

    use super::{idempotency_key, KeyedJson, IDEMPOTENCY_KEY};

    /// `body` POSTed to `path` under `key` (if any), read as a keyed body of JSON values.
    async fn keyed(
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> Result<KeyedJson<serde_json::Value>, crate::Problem> {
        let mut req = Request::post(path);
        if let Some(key) = key {
            req = req.header(IDEMPOTENCY_KEY, key);
        }
        let req = req
            .body(axum::body::Body::from(body.to_owned()))
            .expect("a request");
        KeyedJson::from_request(req, &()).await
    }

    #[tokio::test]
    async fn a_digest_names_the_route_and_the_json_not_its_spelling() {
        let first = keyed("/webhooks", Some("k1"), r#"{"a":1,"b":[1,2]}"#)
            .await
            .expect("read");
        assert_eq!(first.key.as_deref(), Some("k1"));
        let respelled = keyed("/webhooks", None, "{ \"b\" : [1, 2],\n \"a\": 1 }").await;
        assert_eq!(respelled.expect("read").digest(), first.digest());
        let other_body = keyed("/webhooks", None, r#"{"a":2,"b":[1,2]}"#).await;
        assert_ne!(other_body.expect("read").digest(), first.digest());
        let other_route = keyed("/campaigns", None, r#"{"a":1,"b":[1,2]}"#).await;
        assert_ne!(other_route.expect("read").digest(), first.digest());
        let bad_key = keyed("/webhooks", Some("two words"), "{}")
            .await
            .expect_err("refused");
        assert_eq!(bad_key.status, 400);
    }

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                IDEMPOTENCY_KEY,
                HeaderValue::from_bytes(v).expect("a header value"),
            );
        }
        h
    }

    #[test]
    fn a_key_is_sent_once_in_visible_ascii() {
        assert_eq!(idempotency_key(&HeaderMap::new()).ok(), Some(None));
        assert_eq!(
            idempotency_key(&with(&[b"retry-1"])).ok(),
            Some(Some("retry-1"))
        );
        let longest = "k".repeat(255);
        assert!(idempotency_key(&with(&[longest.as_bytes()])).is_ok());
        let too_long = "k".repeat(256);
        let refused: [&[&[u8]]; 5] = [
            &[b""],
            &[b"two words"],
            &[too_long.as_bytes()],
            &[b"caf\xc3\xa9"],
            &[b"a", b"b"],
        ];
        for values in refused {
            let p = idempotency_key(&with(values)).expect_err("refused");
            assert_eq!(p.status, 400, "{values:?}");
            assert_eq!(p.field.as_deref(), Some("Idempotency-Key"));
        }
    }
}
