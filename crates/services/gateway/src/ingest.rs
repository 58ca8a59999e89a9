//! `POST /events`: one signed event.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use liveops_core::event::{event_json, validate_event};
use liveops_core::ports::{topics, Message};
use liveops_core::{Envelope, Event};
use liveops_http::{Problem, SignatureHeaders, Signed, Throttled};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::guard::{dropped, hot_state_failed, ingested, refused, screen};
use crate::idempotency::{message_event_id, respond_once, EventIds, IdempotencyHeader};
use crate::GatewayState;
use liveops_http::responses::{Forbidden, IdempotentFailures, TooManyRequests};

/// The answer to an accepted event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventAccepted {
    /// The id the gateway gave the event; every consumer dedupes on it. Derived from the
    /// `messageId` if the event has one, else from the request (its key or signature).
    pub event_id: Uuid,
}

/// Wraps a validated event for the bus with its id, receive time and, when traces are
/// exported, the trace context of the request that brought it.
pub(crate) fn envelope(event: Event, event_id: Uuid, received_at: i64) -> (Uuid, Message) {
    let env = Envelope {
        event_id,
        received_at,
        event,
        traceparent: liveops_module::trace::current_traceparent(),
    };
    (event_id, env.to_message())
}

/// Publishes accepted events' `messages` in one bus call and counts each ingested by its kind
/// (`kinds`, in the same order); if the bus fails, all of them are counted dropped and refused
/// (503). The call's time, answered or failed, is `bus_publish_seconds{bus}`.
pub(crate) async fn publish(
    state: &GatewayState,
    messages: Vec<Message>,
    kinds: impl IntoIterator<Item = &'static str>,
) -> Result<(), Problem> {
    let n = messages.len() as u64;
    let start = std::time::Instant::now();
    let published = state.bus.publish(topics::INGESTED, messages).await;
    metrics::histogram!("bus_publish_seconds", "bus" => state.config.bus)
        .record(start.elapsed().as_secs_f64());
    if let Err(error) = published {
        static LOG: Throttled = Throttled::new(10_000);
        if let Some(left_out) = LOG.admit() {
            tracing::warn!(%error, events = n, left_out, "event could not be published");
        }
        dropped("unavailable", n);
        return Err(Problem::unavailable(
            "the event bus is unavailable; retry shortly",
        ));
    }
    kinds.into_iter().for_each(ingested);
    Ok(())
}

/// Accepts one gameplay event.
#[utoipa::path(
    post, path = "/events", tag = "gateway",
    request_body(content = Event, description = "A gameplay event (see `sample_events/`)"),
    params(SignatureHeaders, IdempotencyHeader),
    responses(
        (status = 202, description = "On the bus", body = EventAccepted),
        (status = 208, description = "The same request again (same Idempotency-Key, or without one the same signed request): the first answer, nothing done twice", body = EventAccepted,
            headers(("Idempotent-Replayed" = String, description = "`true`: this is the stored answer of the first request"))),
        Forbidden,
        TooManyRequests,
        IdempotentFailures,
    )
)]
#[tracing::instrument(skip_all, fields(player = tracing::field::Empty, event_id = tracing::field::Empty))]
pub(crate) async fn post_event(
    State(state): State<GatewayState>,
    signed: Result<Signed, Problem>,
) -> Result<Response, Problem> {
    let signed = signed.inspect_err(refused)?;
    let now = signed.at_ms;
    let value = event_json(&signed.body).map_err(|e| {
        dropped("invalid", 1);
        Problem::from(e)
    })?;
    let ids = EventIds::new("events", &signed.body);
    // Checked as the work of the request, after its repeat was looked for: a repeat of an
    // accepted event gets the first answer even where the event would fail a check now (its
    // `ts` aged past the limit since).
    let work = {
        let state = state.clone();
        async move {
            let event = validate_event(&value, "", &state.config.limits, now.div_euclid(1000))
                .map_err(|e| {
                    dropped("invalid", 1);
                    Problem::from(e)
                })?;
            tracing::Span::current().record("player", event.player_id.as_str());
            let event_id = match &event.message_id {
                Some(m) => message_event_id(event.player_id.as_str(), m),
                None => ids.of(0, event.ts),
            };
            let body = answer(accept(&state, event, event_id, now).await?);
            Ok((body.clone(), Some(body)))
        }
    };
    respond_once(
        &state,
        ("events", 1),
        &signed,
        StatusCode::ACCEPTED,
        work,
        |_, stored| stored,
    )
    .await
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
    let verdicts = screen(state, event.player_id.as_str(), 1, now)
        .await
        .map_err(|e| hot_state_failed(e, 1))?;
    if let Some(Err(problem)) = verdicts.into_iter().next() {
        return Err(problem);
    }
    let kind = event.kind().as_str();
    let (event_id, message) = envelope(event, event_id, now);
    publish(state, vec![message], [kind]).await?;
    tracing::Span::current().record("event_id", tracing::field::display(event_id));
    Ok(EventAccepted { event_id })
}
