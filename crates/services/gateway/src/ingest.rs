//! `POST /events`: one signed event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use liveops_core::event::parse_event;
use liveops_core::ports::{topics, Message};
use liveops_core::{Envelope, Event};
use liveops_http::{Problem, SignatureHeaders, Signed};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::guard::{dropped, ingested, refused, screen};
use crate::idempotency::{admit, event_id, finish_detached, replay, Admission, IdempotencyHeader};
use crate::GatewayState;
use liveops_http::responses::{
    BadRequest, Conflict, Forbidden, KeyReused, TooLarge, TooManyRequests, Unauthorized,
    Unavailable,
};

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
    params(SignatureHeaders, IdempotencyHeader),
    responses(
        (status = 202, description = "On the bus", body = EventAccepted),
        (status = 208, description = "Repeat of an Idempotency-Key: the first answer", body = EventAccepted),
        BadRequest,
        Unauthorized,
        Forbidden,
        Conflict,
        TooLarge,
        KeyReused,
        TooManyRequests,
        Unavailable,
    )
)]
#[tracing::instrument(skip_all, fields(player = tracing::field::Empty, event_id = tracing::field::Empty))]
pub(crate) async fn post_event(
    State(state): State<GatewayState>,
    signed: Result<Signed, Problem>,
) -> Response {
    match ingest(&state, signed).await {
        Ok(res) => res,
        Err(problem) => problem.into_response(),
    }
}

async fn ingest(
    state: &GatewayState,
    signed: Result<Signed, Problem>,
) -> Result<Response, Problem> {
    let Signed {
        body,
        signature,
        headers,
        at_ms: now,
    } = signed.inspect_err(refused)?;
    let headers = &headers;
    let now_s = now.div_euclid(1000);
    let event = parse_event(&body, &state.config.limits, now_s).map_err(|e| {
        dropped("invalid", 1);
        Problem::from(e)
    })?;
    tracing::Span::current().record("player", event.player_id.as_str());
    let event_id = event_id(headers, "events", &body, 0);
    let hold = match admit(state, "events", headers, &body, &signature).await? {
        Admission::Replay(answer) => return Ok(replay(answer)),
        Admission::Proceed(hold) => hold,
    };
    let body = match hold {
        None => answer(accept(state, event, event_id, now).await?),
        Some(hold) => {
            let state = state.clone();
            let work = async move {
                accept(&state, event, event_id, now)
                    .await
                    .map(|a| (answer(a), true))
            };
            finish_detached(hold, StatusCode::ACCEPTED, work).await?
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
    if let Some(Err(problem)) = screen(state, event.player_id.as_str(), 1, now).await?.pop() {
        return Err(problem);
    }
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
