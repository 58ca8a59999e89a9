//! `POST /events/batch`: up to 500 events under one signature, with a result per event.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use liveops_core::event::validate_event;
use liveops_core::ports::topics;
use liveops_core::Event;
use liveops_http::{Problem, SignatureHeaders, Signed};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::guard::{dropped, ingested, refused, screen};
use crate::idempotency::{admit, event_id, finish_detached, replay, Admission, IdempotencyHeader};
use crate::ingest::envelope;
use crate::{GatewayConfig, GatewayState};
use liveops_http::responses::{
    BadRequest, Conflict, KeyReused, TooLarge, Unauthorized, Unavailable,
};

/// A batch of events: `{"events": [...]}` or a bare array. Only documents the shape: batches are
/// read as raw JSON so each event is judged on its own, with a result per event.
pub(crate) struct BatchBody;

impl utoipa::PartialSchema for BatchBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        liveops_core::event_schema::batch_schema(GatewayConfig::default().max_batch_events)
    }
}

impl ToSchema for BatchBody {}

/// The answer to a batch: how many events were accepted, and a result for each.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct BatchAnswer {
    /// Events on the bus.
    pub(crate) accepted: usize,
    /// Events refused.
    pub(crate) rejected: usize,
    /// One result per event, in request order.
    pub(crate) results: Vec<ItemResult>,
}

/// The outcome for one event of a batch.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ItemResult {
    /// Accepted (status 202).
    Accepted(ItemAccepted),
    /// Refused (status 400, 403 or 429).
    Rejected(ItemRejected),
}

/// An accepted event of a batch.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ItemAccepted {
    /// Position in the request.
    pub(crate) index: usize,
    /// Always 202.
    pub(crate) status: u16,
    /// The id the gateway gave the event.
    pub(crate) event_id: Uuid,
}

/// A refused event of a batch.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct ItemRejected {
    /// Position in the request.
    pub(crate) index: usize,
    /// 400, 403 or 429.
    pub(crate) status: u16,
    /// Why.
    pub(crate) error: Problem,
}

impl ItemResult {
    fn rejected(index: usize, error: Problem) -> Self {
        Self::Rejected(ItemRejected {
            index,
            status: error.status,
            error,
        })
    }
}

/// Accepts a batch of gameplay events signed as one request.
#[utoipa::path(
    post,
    path = "/events/batch",
    tag = "gateway",
    request_body(content = BatchBody, description = "`{\"events\": [...]}` or a bare array; 1..=500 events, at most 1 MiB, one signature over the whole body"),
    params(SignatureHeaders, IdempotencyHeader),
    responses(
        (status = 200, description = "A result per event", body = BatchAnswer),
        (status = 208, description = "Repeat of an Idempotency-Key: the first answer", body = BatchAnswer),
        BadRequest,
        Unauthorized,
        Conflict,
        TooLarge,
        KeyReused,
        Unavailable,
    )
)]
#[tracing::instrument(skip_all, fields(events = tracing::field::Empty, accepted = tracing::field::Empty))]
pub(crate) async fn post_batch(
    State(state): State<GatewayState>,
    signed: Result<Signed, Problem>,
) -> Response {
    match ingest_batch(&state, signed).await {
        Ok(res) => res,
        Err(problem) => problem.into_response(),
    }
}

async fn ingest_batch(
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
    let items = parse_batch(&body, state.config.max_batch_events).inspect_err(|_| {
        dropped("invalid", 1);
    })?;
    tracing::Span::current().record("events", items.len());
    let ids: Vec<Uuid> = (0..items.len())
        .map(|i| event_id(headers, "events.batch", &body, i))
        .collect();
    let hold = match admit(state, "events.batch", headers, &body, &signature).await? {
        Admission::Replay(answer) => return Ok(replay(answer)),
        Admission::Proceed(hold) => hold,
    };
    let body = match hold {
        None => answer(accept_batch(state, &items, &ids, now).await?).0,
        Some(hold) => {
            let state = state.clone();
            // A batch that changed nothing is not stored: a retry may as well be judged afresh.
            let work = async move { accept_batch(&state, &items, &ids, now).await.map(answer) };
            finish_detached(hold, StatusCode::OK, work).await?
        }
    };
    Ok((
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// The JSON body of a batch answer, and whether anything was accepted.
fn answer(answer: BatchAnswer) -> (String, bool) {
    tracing::Span::current().record("accepted", answer.accepted);
    let stored = answer.accepted > 0;
    (serde_json::to_string(&answer).unwrap_or_default(), stored)
}

/// The batch's events as raw JSON: `{"events": [...]}` or `[...]`, 1..=`max` of them.
fn parse_batch(body: &[u8], max: usize) -> Result<Vec<Value>, Problem> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::invalid("body", format!("not valid JSON: {e}")))?;
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(mut obj) => {
            if let Some(k) = obj.keys().find(|k| k.as_str() != "events") {
                return Err(Problem::invalid(k, "unknown field"));
            }
            match obj.remove("events") {
                Some(Value::Array(items)) => items,
                Some(_) => return Err(Problem::invalid("events", "must be an array of events")),
                None => return Err(Problem::invalid("events", "required array of events")),
            }
        }
        _ => {
            return Err(Problem::invalid(
                "body",
                "must be {\"events\": [...]} or an array of events",
            ))
        }
    };
    if items.is_empty() {
        return Err(Problem::invalid("events", "must hold at least one event"));
    }
    if items.len() > max {
        return Err(Problem::new(
            413,
            "payload-too-large",
            "Payload too large",
            format!(
                "a batch holds at most {max} events; this one has {}",
                items.len()
            ),
        )
        .with_field("events"));
    }
    Ok(items)
}

/// Validates each event, checks blocks and rates per player, and publishes every accepted event
/// in one bus call.
async fn accept_batch(
    state: &GatewayState,
    items: &[Value],
    ids: &[Uuid],
    now: i64,
) -> Result<BatchAnswer, Problem> {
    let cfg = &state.config;
    let now_s = now.div_euclid(1000);
    let mut results: Vec<Option<ItemResult>> = vec![None; items.len()];
    let mut valid: Vec<Option<Event>> = vec![None; items.len()];
    // Player → indexes of their valid events, players in first-seen order.
    let mut players: Vec<String> = Vec::new();
    let mut by_player: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        match validate_event(item, &format!("events[{i}]."), &cfg.limits, now_s) {
            Ok(event) => {
                let player = event.player_id.as_str();
                match by_player.get_mut(player) {
                    Some(ids) => ids.push(i),
                    None => {
                        players.push(player.to_owned());
                        by_player.insert(player.to_owned(), vec![i]);
                    }
                }
                valid[i] = Some(event);
            }
            Err(e) => {
                dropped("invalid", 1);
                results[i] = Some(ItemResult::rejected(i, Problem::from(e)));
            }
        }
    }

    let mut admitted: Vec<usize> = Vec::new();
    for player in &players {
        let ids = by_player.get(player).map(Vec::as_slice).unwrap_or_default();
        let verdicts = screen(state, player, ids.len(), now).await?;
        for (&i, verdict) in ids.iter().zip(verdicts) {
            match verdict {
                Ok(()) => admitted.push(i),
                Err(problem) => results[i] = Some(ItemResult::rejected(i, problem)),
            }
        }
    }
    admitted.sort_unstable();

    let mut messages = Vec::with_capacity(admitted.len());
    let mut kinds = Vec::with_capacity(admitted.len());
    for &i in &admitted {
        let Some(event) = valid[i].take() else {
            continue;
        };
        kinds.push(event.kind().as_str());
        let (event_id, message) = envelope(event, ids[i], now);
        messages.push(message);
        results[i] = Some(ItemResult::Accepted(ItemAccepted {
            index: i,
            status: StatusCode::ACCEPTED.as_u16(),
            event_id,
        }));
    }
    if !messages.is_empty() {
        let n = messages.len() as u64;
        if let Err(error) = state.bus.publish(topics::INGESTED, messages).await {
            tracing::warn!(%error, events = n, "batch could not be published");
            dropped("unavailable", n);
            return Err(Problem::unavailable(
                "the event bus is unavailable; retry shortly",
            ));
        }
        kinds.into_iter().for_each(ingested);
    }

    let accepted = admitted.len();
    let results: Vec<ItemResult> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.unwrap_or_else(|| ItemResult::rejected(i, Problem::internal())))
        .collect();
    Ok(BatchAnswer {
        accepted,
        rejected: results.len() - accepted,
        results,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batches_come_wrapped_or_bare() {
        assert_eq!(parse_batch(br#"{"events":[1,2]}"#, 500).unwrap().len(), 2);
        assert_eq!(parse_batch(b"[1]", 500).unwrap().len(), 1);
    }

    #[test]
    fn bad_batches_name_the_problem() {
        let cases: [(&[u8], u16, &str); 6] = [
            (b"{", 400, "body"),
            (b"7", 400, "body"),
            (br#"{"events":[],"x":1}"#, 400, "x"),
            (br#"{"events":{}}"#, 400, "events"),
            (br#"{"events":[]}"#, 400, "events"),
            (b"[1,2,3]", 413, "events"),
        ];
        for (body, status, field) in cases {
            let p = parse_batch(body, 2).unwrap_err();
            assert_eq!(
                (p.status, p.field.as_deref()),
                (status, Some(field)),
                "{p:?}"
            );
        }
    }
}
