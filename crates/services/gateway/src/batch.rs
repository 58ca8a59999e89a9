//! `POST /events/batch`: up to 500 events under one signature, with a result per event.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use liveops_core::event::validate_event;
use liveops_core::Event;
use liveops_http::{Problem, SignatureHeaders, Signed, IDEMPOTENCY_KEY};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::guard::{dropped, hot_state_failed, refused, screen_all};
use crate::idempotency::{message_event_id, respond_once, EventIds, IdempotencyHeader};
use crate::ingest::{envelope, publish};
use crate::{GatewayConfig, GatewayState};
use liveops_http::responses::IdempotentFailures;

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchAnswer {
    /// Events on the bus.
    pub accepted: usize,
    /// Events refused.
    pub rejected: usize,
    /// One result per event, in request order.
    pub results: Vec<ItemResult>,
}

/// The outcome for one event of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ItemResult {
    /// Accepted (status 202).
    Accepted(ItemAccepted),
    /// Refused (status 400, 403 or 429).
    Rejected(ItemRejected),
}

/// An accepted event of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemAccepted {
    /// Position in the request.
    pub index: usize,
    /// Always 202.
    pub status: u16,
    /// The id the gateway gave the event.
    pub event_id: Uuid,
}

/// A refused event of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ItemRejected {
    /// Position in the request.
    pub index: usize,
    /// 400, 403 or 429.
    pub status: u16,
    /// Why it was refused.
    pub error: Problem,
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
    post, path = "/events/batch", tag = "gateway",
    request_body(content = BatchBody, description = "`{\"events\": [...]}` or a bare array; 1..=500 events, at most 1 MiB, one signature over the whole body"),
    params(SignatureHeaders, IdempotencyHeader),
    responses(
        (status = 200, description = "A result per event", body = BatchAnswer),
        (status = 208, description = "The same request again (same Idempotency-Key, or without one the same signed request): the first answer, nothing done twice", body = BatchAnswer,
            headers(("Idempotent-Replayed" = String, description = "`true`: this is the stored answer of the first request"))),
        IdempotentFailures,
    )
)]
#[tracing::instrument(skip_all, fields(events = tracing::field::Empty, accepted = tracing::field::Empty))]
pub(crate) async fn post_batch(
    State(state): State<GatewayState>,
    signed: Result<Signed, Problem>,
) -> Result<Response, Problem> {
    let signed = signed.inspect_err(refused)?;
    let now = signed.at_ms;
    let items = parse_batch(&signed.body).inspect_err(|_| dropped("invalid", 1))?;
    let max = state.config.max_batch_events;
    if items.len() > max {
        dropped("too_large", items.len() as u64);
        return Err(too_many(items.len(), max));
    }
    tracing::Span::current().record("events", items.len());
    let request = EventIds::new("events.batch", &signed.body);
    let ids: Vec<Uuid> = items
        .iter()
        .enumerate()
        .map(|(i, item)| request.of(i, item["ts"].as_i64().unwrap_or(0)))
        .collect();
    let events = items.len() as u64;
    let work = {
        let state = state.clone();
        async move {
            let answer = accept_batch(&state, &items, &ids, now).await?;
            Ok(worked(&answer))
        }
    };
    respond_once(
        &state,
        ("events.batch", events),
        &signed,
        StatusCode::OK,
        work,
        expand,
    )
    .await
}

/// The JSON body of a batch answer, and what repeats get: nothing if nothing was accepted (a
/// retry may as well be judged afresh); else only the counts and the refused results
/// (remembered for every signed batch, and for a day under its key: a whole answer is up to 500
/// results), see [`expand`].
fn worked(answer: &BatchAnswer) -> (String, Option<String>) {
    tracing::Span::current().record("accepted", answer.accepted);
    let body = serde_json::to_string(answer).unwrap_or_default();
    if answer.accepted == 0 {
        return (body, None);
    }
    let refused: Vec<&ItemResult> = answer
        .results
        .iter()
        .filter(|r| matches!(r, ItemResult::Rejected(_)))
        .collect();
    let compact = CompactAnswer {
        accepted: answer.accepted,
        refused,
        ids: IDS_OF_BODY,
    };
    (
        body,
        Some(serde_json::to_string(&compact).unwrap_or_default()),
    )
}

/// What a compact answer's `ids` says when its ids follow from the body alone.
const IDS_OF_BODY: &str = "body";

/// What a signed batch leaves for its repeats.
#[derive(Serialize)]
struct CompactAnswer<'a> {
    accepted: usize,
    refused: Vec<&'a ItemResult>,
    /// [`IDS_OF_BODY`]: the ids follow from the body (a release before 2026-12-07 stored the
    /// `Idempotency-Key` they followed from as `key` instead, or nothing for the signature).
    ids: &'static str,
}

/// The first answer again for a repeat of a batch, rebuilt from the compact form and the
/// repeat, whose body is the first request's (its fingerprint matched): each accepted item's id
/// follows from the body, as it did the first time. A batch answered by the release before has
/// the ids it gave then: from the first request's key as stored, or without one from the
/// signature (a repeat under another key is the same signed request). A whole answer (stored by
/// earlier versions) is given as it is.
fn expand(signed: &Signed, stored: String) -> String {
    let Ok(compact) = serde_json::from_str::<Value>(&stored) else {
        return stored;
    };
    if compact.get("results").is_some() {
        return stored;
    }
    let Ok(items) = parse_batch(&signed.body) else {
        return stored;
    };
    let request = if compact["ids"] == IDS_OF_BODY {
        EventIds::new("events.batch", &signed.body)
    } else {
        let mut first = HeaderMap::new();
        if let Some(key) = compact["key"].as_str().and_then(|k| k.parse().ok()) {
            first.insert(IDEMPOTENCY_KEY, key);
        }
        EventIds::of_release_before(&first, &signed.signature, "events.batch", &signed.body)
    };
    let mut results: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = match (item["playerId"].as_str(), item["messageId"].as_str()) {
                (Some(player), Some(m)) => message_event_id(player, m),
                _ => request.of(i, item["ts"].as_i64().unwrap_or(0)),
            };
            serde_json::to_value(ItemAccepted {
                index: i,
                status: StatusCode::ACCEPTED.as_u16(),
                event_id: id,
            })
            .unwrap_or_default()
        })
        .collect();
    for r in compact["refused"].as_array().into_iter().flatten() {
        if let Some(slot) = r["index"]
            .as_u64()
            .and_then(|i| results.get_mut(i as usize))
        {
            *slot = r.clone();
        }
    }
    let accepted = compact["accepted"].as_u64().unwrap_or_default();
    serde_json::json!({
        "accepted": accepted,
        "rejected": (results.len() as u64).saturating_sub(accepted),
        "results": results,
    })
    .to_string()
}

/// The batch's events as raw JSON: `{"events": [...]}` or `[...]`, at least one.
fn parse_batch(body: &[u8]) -> Result<Vec<Value>, Problem> {
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
    Ok(items)
}

/// 413 for a batch of `n` events, over the `max` one may hold.
fn too_many(n: usize, max: usize) -> Problem {
    Problem::new(
        413,
        "payload-too-large",
        "Payload too large",
        format!("a batch holds at most {max} events; this one has {n}"),
    )
    .with_field("events")
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

    let events_of = |player: &String| by_player.get(player).map(Vec::as_slice).unwrap_or_default();
    let screened: Vec<(&str, usize)> = players
        .iter()
        .map(|p| (p.as_str(), events_of(p).len()))
        .collect();
    let verdicts = match screen_all(state, &screened, now).await {
        Ok(verdicts) => verdicts,
        Err(error) => {
            // The whole batch is refused: every valid event, none of them counted yet.
            let waiting: usize = screened.iter().map(|&(_, n)| n).sum();
            return Err(hot_state_failed(error, waiting as u64));
        }
    };
    let mut admitted: Vec<usize> = Vec::new();
    for (player, verdicts) in players.iter().zip(verdicts) {
        for (&i, verdict) in events_of(player).iter().zip(verdicts) {
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
        let id = match &event.message_id {
            Some(m) => message_event_id(event.player_id.as_str(), m),
            None => ids[i],
        };
        let (event_id, message) = envelope(event, id, now);
        messages.push(message);
        results[i] = Some(ItemResult::Accepted(ItemAccepted {
            index: i,
            status: StatusCode::ACCEPTED.as_u16(),
            event_id,
        }));
    }
    if !messages.is_empty() {
        publish(state, messages, kinds).await?;
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
        assert_eq!(parse_batch(br#"{"events":[1,2]}"#).unwrap().len(), 2);
        assert_eq!(parse_batch(b"[1]").unwrap().len(), 1);
    }

    #[test]
    fn bad_batches_name_the_problem() {
        let cases: [(&[u8], u16, &str); 5] = [
            (b"{", 400, "body"),
            (b"7", 400, "body"),
            (br#"{"events":[],"x":1}"#, 400, "x"),
            (br#"{"events":{}}"#, 400, "events"),
            (br#"{"events":[]}"#, 400, "events"),
        ];
        for (body, status, field) in cases {
            let p = parse_batch(body).unwrap_err();
            assert_eq!(
                (p.status, p.field.as_deref()),
                (status, Some(field)),
                "{p:?}"
            );
        }
        let p = too_many(3, 2);
        assert_eq!((p.status, p.field.as_deref()), (413, Some("events")));
    }
}
