//! The ceiling: a bare axum server that does only what no ingest path can skip (parse the JSON
//! body and check the HMAC signature) and answers in the product's shapes. The same generator
//! measures it in the same run, so every product figure can be read as a fraction of it.
//!
//! For the read benchmark it serves pre-rendered leaderboard answers: the floor of an HTTP read
//! whose answer is already a cached slice.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use liveops_core::{now_ms, Keyring, SignedRequest};
use liveops_http::Problem;
use serde_json::{json, Value};
use uuid::Uuid;

/// What the ceiling's handlers share.
struct Ceiling {
    keyring: Keyring,
    tolerance_s: i64,
    top100: Bytes,
}

/// The ceiling's routes: `POST /events`, `POST /events/batch`, `GET /leaderboard`,
/// `GET /leaderboard/players/{id}`, `POST /players/{id}/inbox/{messageId}/claim`,
/// `POST /campaigns/{id}/entries`.
pub fn router(keyring: Keyring, tolerance_s: i64) -> Router {
    let entries: Vec<Value> = (1..=100u64)
        .map(|rank| json!({"rank": rank, "playerId": format!("bench_{rank}"), "score": 1_000_000 - rank}))
        .collect();
    let top100 = json!({
        "window": "daily", "period": "2026-01-01",
        "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
        "entries": entries,
    });
    let state = Arc::new(Ceiling {
        keyring,
        tolerance_s,
        top100: Bytes::from(serde_json::to_vec(&top100).unwrap_or_default()),
    });
    Router::new()
        .route("/events", post(single))
        .route("/events/batch", post(batch))
        .route("/leaderboard", get(top))
        .route("/leaderboard/players/{id}", get(rank))
        .route("/players/{id}/inbox/{message}/claim", post(claim))
        .route("/campaigns/{id}/entries", post(enter))
        .with_state(state)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

/// The two checks: signature (of a `POST` to `path`), then JSON.
fn check(c: &Ceiling, headers: &HeaderMap, path: &str, body: &[u8]) -> Result<Value, Problem> {
    let request = SignedRequest {
        key_id: header_str(headers, "x-key-id"),
        timestamp: header_str(headers, "x-timestamp"),
        signature: header_str(headers, "x-signature"),
        method: "POST",
        path,
        body,
    };
    c.keyring
        .verify_request(&request, now_ms().div_euclid(1000), c.tolerance_s, true)
        .map_err(|e| Problem::unauthorized(e.to_string()))?;
    serde_json::from_slice(body).map_err(|e| Problem::invalid("body", e.to_string()))
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn single(State(c): State<Arc<Ceiling>>, headers: HeaderMap, body: Bytes) -> Response {
    match check(&c, &headers, "/events", &body) {
        Ok(_) => json_response(
            StatusCode::ACCEPTED,
            serde_json::to_vec(&json!({"eventId": Uuid::now_v7()})).unwrap_or_default(),
        ),
        Err(p) => p.into_response(),
    }
}

async fn batch(State(c): State<Arc<Ceiling>>, headers: HeaderMap, body: Bytes) -> Response {
    let doc = match check(&c, &headers, "/events/batch", &body) {
        Ok(doc) => doc,
        Err(p) => return p.into_response(),
    };
    let n = doc
        .get("events")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let results: Vec<Value> = (0..n)
        .map(|index| json!({"index": index, "status": 202, "eventId": Uuid::now_v7()}))
        .collect();
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&json!({"accepted": n, "rejected": 0, "results": results}))
            .unwrap_or_default(),
    )
}

/// A claim: the signature (over the request's own path) and the JSON checked, a fixed answer.
async fn claim(
    State(c): State<Arc<Ceiling>>,
    Path((player, message)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = json!({"messageId": message, "playerId": player, "receipts": []});
    signed_answer(&c, &headers, &uri, &body, StatusCode::OK, &answer)
}

/// An entry: the signature (over the request's own path) and the JSON checked, a fixed answer.
async fn enter(
    State(c): State<Arc<Ceiling>>,
    Path(campaign): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = json!({"entryId": "ent_bench", "campaignId": campaign});
    signed_answer(&c, &headers, &uri, &body, StatusCode::CREATED, &answer)
}

/// `answer` with `status` once the request's signature (over its own path) and JSON check out.
fn signed_answer(
    c: &Ceiling,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    status: StatusCode,
    answer: &Value,
) -> Response {
    match check(c, headers, uri.path(), body) {
        Ok(_) => json_response(status, serde_json::to_vec(answer).unwrap_or_default()),
        Err(p) => p.into_response(),
    }
}

async fn top(State(c): State<Arc<Ceiling>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        c.top100.clone(),
    )
        .into_response()
}

async fn rank(Path(id): Path<String>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&json!({
            "window": "daily", "period": "2026-01-01", "playerId": id, "rank": 1, "score": 1,
            "neighbours": [{"rank": 1, "playerId": id, "score": 1}],
        }))
        .unwrap_or_default(),
    )
}
