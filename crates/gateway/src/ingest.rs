//! `POST /events`: one signed event.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use liveops_core::event::parse_event;
use liveops_core::ports::{topics, Message};
use liveops_core::{now_ms, Envelope, Event, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::guard::{dropped, ingested, read_body, screen, verify_signature};
use crate::idempotency::{admit, event_id, replay, settle_detached, Admission};
use crate::GatewayState;

/// The answer to an accepted event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventAccepted {
    /// The id the gateway gave the event (UUIDv7); every consumer dedupes on it.
    pub(crate) event_id: Uuid,
}

/// Wraps a validated event for the bus with its id and receive time.
pub(crate) fn envelope(event: Event, event_id: Uuid, received_at: i64) -> (Uuid, Message) {
    let key = event.player_id.as_str().to_owned();
    let env = Envelope {
        event_id,
        received_at,
        event,
    };
    let message = Message {
        id: event_id.to_string(),
        key,
        payload: Bytes::from(env.encode()),
    };
    (event_id, message)
}

/// Accepts one gameplay event.
#[utoipa::path(
    post,
    path = "/events",
    tag = "gateway",
    request_body(content = Event, description = "A gameplay event (see `sample_events/`)"),
    params(
        ("X-Timestamp" = i64, Header, description = "Unix seconds when the request was signed"),
        ("X-Signature" = String, Header, description = "`sha256=<hex HMAC-SHA256(key, \"<X-Timestamp>.<raw body>\")>`"),
        ("X-Key-Id" = Option<String>, Header, description = "Which key signed (rotation); the primary key if absent"),
        ("Idempotency-Key" = Option<String>, Header, description = "1..=255 visible ASCII; a repeat gets the first answer back with 208. Without it each signature is accepted once"),
    ),
    responses(
        (status = 202, description = "On the bus", body = EventAccepted),
        (status = 208, description = "Repeat of an Idempotency-Key: the first answer", body = EventAccepted),
        (status = 400, description = "Invalid event or header; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, bad, stale or replayed signature", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Player blocked by fairness checks", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same Idempotency-Key is still being processed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Player over the rate limit; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The bus or hot state is down; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(player = tracing::field::Empty, event_id = tracing::field::Empty))]
pub(crate) async fn post_event(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match ingest(&state, &headers, body).await {
        Ok(res) => res,
        Err(problem) => problem.into_response(),
    }
}

async fn ingest(
    state: &GatewayState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let now = now_ms();
    let now_s = now.div_euclid(1000);
    let body = read_body(body, state.config.max_body_bytes).await?;
    let signature = verify_signature(state, headers, &body, now_s)?;
    let event = parse_event(&body, &state.config.limits, now_s).map_err(|e| {
        dropped("invalid", 1);
        Problem::from(e)
    })?;
    tracing::Span::current().record("player", event.player_id.as_str());
    let event_id = event_id(headers, "events", &body, 0);
    let claim = match admit(state, "events", headers, &body, &signature).await? {
        Admission::Replay(answer) => return Ok(replay(answer)),
        Admission::Proceed(claim) => claim,
    };
    let body = match claim {
        None => answer(accept(state, event, event_id, now).await?),
        Some(claim) => {
            let state = state.clone();
            let work = async move {
                accept(&state, event, event_id, now)
                    .await
                    .map(|a| (answer(a), true))
            };
            settle_detached(claim, StatusCode::ACCEPTED, work).await?
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The JSON body of a 202.
fn answer(accepted: EventAccepted) -> String {
    serde_json::to_string(&accepted).unwrap_or_default()
}

/// Block check, rate check, publish.
async fn accept(
    state: &GatewayState,
    event: Event,
    event_id: Uuid,
    now: i64,
) -> Result<EventAccepted, Problem> {
    screen(state, event.player_id.as_str(), now).await?;
    let kind = event.kind().as_str();
    let (event_id, message) = envelope(event, event_id, now);
    if let Err(error) = state.bus.publish(topics::INGESTED, vec![message]).await {
        tracing::warn!(%error, "event could not be published");
        dropped("unavailable", 1);
        return Err(Problem::unavailable(
            "the event bus is unavailable; retry shortly",
        ));
    }
    ingested(kind);
    tracing::Span::current().record("event_id", tracing::field::display(event_id));
    Ok(EventAccepted { event_id })
}
