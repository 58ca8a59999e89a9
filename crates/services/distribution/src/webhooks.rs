//! `POST /webhooks`, `GET /webhooks`, `DELETE /webhooks/{id}`, `GET /webhooks/{id}/deliveries`,
//! `POST /webhooks/{id}/redeliver` (admins and operators).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use liveops_core::now_ms;
use liveops_core::stores::{
    Attempt, CappedOutcome, Delivery, DeliveryPage, DeliveryState, KeyedOutcome, Webhook,
};
use liveops_http::responses::{
    KeyReused, OperatorFailures, OperatorInputFailures, OperatorLookupFailures, TooLarge,
};
use liveops_http::{
    check_id, created, first_answer, id_schema, keyed, next_cursor, parse_cursor, replay_if_there,
    rfc3339, Bounded, CreateKeyHeader, IdPath, Json, KeyedJson, Problem, Query,
};
use liveops_http::{Authorized, Writers};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{target, DistributionState};

/// The events a webhook may subscribe to.
pub const KINDS: [&str; 5] = [
    "campaign.live",
    "campaign.ended",
    "draw.completed",
    "campaign.settled",
    "campaign.cancelled",
];

/// The body of `POST /webhooks`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWebhook {
    /// Where to post: http or https, a host and no user name or password; public addresses only
    /// unless `WEBHOOK_ALLOW_PRIVATE`.
    #[schema(
        format = "uri",
        max_length = 2048,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+([/?#]|$)"
    )]
    url: String,
    /// Events to receive (a repeat counts once).
    #[schema(schema_with = event_names)]
    events: Vec<String>,
    /// Signs every delivery (`X-LiveOps-Signature`); never shown again. No control characters.
    #[schema(
        min_length = 16,
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"
    )]
    secret: String,
}

/// The OpenAPI schema of [`NewWebhook::events`]: 1 to 5 names, each one of [`KINDS`].
fn event_names() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(KINDS)),
        )
        .min_items(Some(1))
        .max_items(Some(KINDS.len()))
        // utoipa does not carry the field's doc comment over to a `schema_with` schema.
        .description(Some("Events to receive (a repeat counts once)."))
        .build()
}

/// A webhook (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// Its id.
    pub id: String,
    /// Where it posts.
    pub url: String,
    /// What it receives.
    pub events: Vec<String>,
    /// Who created it.
    pub created_by: String,
    /// Created (RFC 3339).
    pub created_at: String,
}

impl From<&Webhook> for WebhookView {
    fn from(h: &Webhook) -> Self {
        Self {
            id: h.id.clone(),
            url: h.url.clone(),
            events: h.events.clone(),
            created_by: h.created_by.clone(),
            created_at: rfc3339(h.created_at_ms),
        }
    }
}

/// Every active webhook: at most `WEBHOOK_MAX` (more only if it was lowered since they were
/// created).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct WebhookList {
    /// Oldest first.
    webhooks: Vec<WebhookView>,
}

/// One attempt at a delivery.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    /// 1 for the first.
    pub attempt: u32,
    /// When (RFC 3339).
    pub at: String,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// What went wrong, if it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            attempt: a.attempt,
            at: rfc3339(a.at_ms),
            status: a.status,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

/// A delivery and its attempts.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// Its id (`X-LiveOps-Delivery`).
    pub delivery_id: String,
    /// The event's public id, the body's `id` (`evt_` and 32 hex digits; an event written by
    /// an earlier release keeps the `evt_<n>` it was sent with).
    pub event_id: String,
    /// The event's kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered` or `dead` (dead-lettered once failing for `WEBHOOK_RETRY_SEC`, a
    /// day by default, and at least 10 attempts).
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it is tried next (RFC 3339), while pending.
    pub next_attempt_at: Option<String>,
    /// Queued (RFC 3339).
    pub created_at: String,
    /// Each attempt, first first.
    pub tries: Vec<AttemptView>,
}

/// A webhook's deliveries.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    /// Which webhook.
    pub webhook_id: String,
    /// Newest first.
    pub deliveries: Vec<DeliveryView>,
    /// Where the next page starts (`?cursor=`), when this page is full: more may follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

fn delivery_view((d, attempts): (Delivery, Vec<Attempt>)) -> DeliveryView {
    DeliveryView {
        next_attempt_at: (d.state == DeliveryState::Pending).then(|| rfc3339(d.next_attempt_at_ms)),
        delivery_id: d.id,
        event_id: d.event_public_id,
        kind: d.kind,
        state: d.state.as_str().to_owned(),
        attempts: d.attempts,
        created_at: rfc3339(d.created_at_ms),
        tries: attempts.into_iter().map(AttemptView::from).collect(),
    }
}

/// Subscribes a URL to campaign events, unless `WEBHOOK_MAX` webhooks are active (409
/// `webhook-limit-reached`: delete one first).
#[utoipa::path(
    post, path = "/webhooks", tag = "distribution", security(("bearer" = [])),
    params(CreateKeyHeader),
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Subscribed (or, again under its `Idempotency-Key`, the \
            webhook created then: `Idempotent-Replayed: true`)", body = WebhookView,
            headers(("Idempotent-Replayed" = String, description = "`true`: the answer of an earlier request under the same key; nothing was created now"))),
        (status = 409, description = "`WEBHOOK_MAX` webhooks are active (`webhook-limit-reached`): \
            delete one before creating another", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Created under this `Idempotency-Key` before, and deleted since (`created-then-removed`)", body = Problem, content_type = "application/problem+json"),
        TooLarge,
        KeyReused,
        OperatorInputFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email))]
pub(crate) async fn create_webhook(
    State(state): State<DistributionState>,
    op: Authorized<Writers>,
    req: KeyedJson<NewWebhook>,
) -> Result<Response, Problem> {
    let key = req.request_key(&op);
    if let Some(first) = first_answer(&*state.requests, key.as_ref()).await? {
        return again_unless_deleted(&state, first).await;
    }
    let body = req.body;
    let url = target::parse_url(&body.url).map_err(|r| Problem::invalid("url", r))?;
    let events = event_kinds(&body.events)?;
    let n = body.secret.chars().count();
    if !(16..=256).contains(&n) || body.secret.chars().any(char::is_control) {
        return Err(Problem::invalid(
            "secret",
            "must be 16..=256 printable characters",
        ));
    }
    // Last: the only check that needs the network.
    target::resolve(&url, state.config.allow_private)
        .await
        .map_err(|r| Problem::invalid("url", r))?;
    let hook = Webhook {
        id: format!("whk_{}", uuid::Uuid::now_v7().simple()),
        url: url.to_string(),
        events,
        secret: body.secret,
        created_by: op.email.clone(),
        created_at_ms: now_ms(),
    };
    let view = WebhookView::from(&hook);
    let after = serde_json::to_string(&view).ok();
    let audit = op.audit(hook.created_at_ms, "webhook.create", &hook.id, None, after);
    let max = state.config.max_webhooks;
    let created_now = state
        .webhooks
        .create_webhook(keyed(key, &view)?.as_ref(), &hook, &audit, max)
        .await?;
    let CappedOutcome::Keyed(outcome) = created_now else {
        tracing::warn!(max, url = %hook.url, "webhook refused: WEBHOOK_MAX webhooks are active");
        return Err(Problem::conflict(
            "webhook-limit-reached",
            format!(
                "as many webhooks as WEBHOOK_MAX allows ({max}) are active: delete one \
                 (DELETE /webhooks/{{id}}) before creating another"
            ),
        ));
    };
    if let KeyedOutcome::Replayed(first) = outcome {
        return again_unless_deleted(&state, first).await;
    }
    if outcome == KeyedOutcome::Written {
        tracing::info!(webhook = %hook.id, url = %hook.url, "webhook created");
    }
    created(outcome, &view)
}

/// A webhook create's first answer again, unless its webhook was deleted since (410).
async fn again_unless_deleted(
    state: &DistributionState,
    first: String,
) -> Result<Response, Problem> {
    let id = serde_json::from_str::<WebhookView>(&first).map(|v| v.id);
    let hooks = state.webhooks.webhooks().await?;
    let there = id.is_ok_and(|id| hooks.iter().any(|h| h.id == id));
    replay_if_there(first, there, "the webhook was deleted")
}

/// The distinct event kinds `names` asks for: 1 to 4 names (a repeat counts in that bound, as the
/// document's `maxItems` does, and once in the answer), each one of [`KINDS`].
fn event_kinds(names: &[String]) -> Result<Vec<String>, Problem> {
    if names.len() > KINDS.len() {
        return Err(Problem::invalid(
            "events",
            format!("name at most {} events", KINDS.len()),
        ));
    }
    let mut events: Vec<String> = Vec::new();
    for (i, e) in names.iter().enumerate() {
        if !KINDS.contains(&e.as_str()) {
            return Err(Problem::invalid(
                &format!("events[{i}]"),
                format!("unknown event; use {}", KINDS.join(", ")),
            ));
        }
        if !events.contains(e) {
            events.push(e.clone());
        }
    }
    if events.is_empty() {
        return Err(Problem::invalid("events", "name at least one event"));
    }
    Ok(events)
}

/// Every active webhook, in one page: at most `WEBHOOK_MAX` of them, since a create past it is
/// refused (more only if the setting was lowered after they were created).
#[utoipa::path(
    get, path = "/webhooks", tag = "distribution", security(("bearer" = [])),
    responses(
        (status = 200, description = "The webhooks", body = WebhookList),
        OperatorFailures,
    )
)]
pub(crate) async fn list_webhooks(
    State(state): State<DistributionState>,
    _: Authorized<Writers>,
) -> Result<Json<WebhookList>, Problem> {
    let hooks = state.webhooks.webhooks().await?;
    Ok(Json(WebhookList {
        webhooks: hooks.iter().map(WebhookView::from).collect(),
    }))
}

/// Deletes a webhook; its pending deliveries are dead-lettered.
#[utoipa::path(
    delete, path = "/webhooks/{id}", tag = "distribution", security(("bearer" = [])),
    params(IdPath),
    responses(
        (status = 204, description = "Deleted"),
        OperatorLookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email, webhook = %id))]
pub(crate) async fn delete_webhook(
    State(state): State<DistributionState>,
    op: Authorized<Writers>,
    IdPath(id): IdPath,
) -> Result<StatusCode, Problem> {
    // The audit entry keeps what was deleted (its URL and events; never the secret).
    let hook = active_webhook(&state, &id).await?;
    let before = serde_json::to_string(&WebhookView::from(&hook)).ok();
    let audit = op.audit(now_ms(), "webhook.delete", &id, before, None);
    if state.webhooks.delete_webhook(&id, &audit).await? {
        tracing::info!("webhook deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_webhook(&id))
    }
}

/// The active webhook `id`; 404 if there is none (never made, or deleted). Webhooks are few
/// (at most `WEBHOOK_MAX`; `GET /webhooks` lists them all), so the active set is read whole.
async fn active_webhook(state: &DistributionState, id: &str) -> Result<Webhook, Problem> {
    let hooks = state.webhooks.webhooks().await?;
    hooks
        .into_iter()
        .find(|h| h.id == id)
        .ok_or_else(|| no_webhook(id))
}

fn no_webhook(id: &str) -> Problem {
    Problem::not_found(format!("no webhook {id:?}"))
}

/// The query of `GET /webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveriesQuery {
    /// Only deliveries in this state (`dead`: those to send again once the receiver is fixed).
    #[param(inline)]
    state: Option<StateFilter>,
    /// How many deliveries, newest first (default 100).
    #[param(inline)]
    limit: Option<Bounded<1, 500>>,
    /// The `nextCursor` of the previous page: this page lists the deliveries after it.
    #[param(pattern = r"^-?[0-9]{1,18}:[A-Za-z0-9_.:-]{1,64}$", max_length = 84)]
    cursor: Option<String>,
}

/// A delivery state, as `?state=` names it.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StateFilter {
    /// Waiting for its next attempt.
    Pending,
    /// Answered 2xx.
    Delivered,
    /// Given up after the last attempt.
    Dead,
}

impl From<StateFilter> for DeliveryState {
    fn from(s: StateFilter) -> Self {
        match s {
            StateFilter::Pending => Self::Pending,
            StateFilter::Delivered => Self::Delivered,
            StateFilter::Dead => Self::Dead,
        }
    }
}

/// A webhook's deliveries and every attempt at each; 404 once the webhook is deleted (the rows
/// stay in the store for the record).
#[utoipa::path(
    get, path = "/webhooks/{id}/deliveries", tag = "distribution", security(("bearer" = [])),
    params(IdPath, DeliveriesQuery),
    responses(
        (status = 200, description = "Deliveries, newest first", body = DeliveryList),
        OperatorLookupFailures,
    )
)]
pub(crate) async fn list_deliveries(
    State(state): State<DistributionState>,
    _: Authorized<Writers>,
    IdPath(id): IdPath,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<DeliveryList>, Problem> {
    let limit = u32::try_from(query.limit.map_or(100, Bounded::get)).unwrap_or(100);
    let page = DeliveryPage {
        state: query.state.map(DeliveryState::from),
        limit,
        after: query.cursor.as_deref().map(parse_cursor).transpose()?,
    };
    active_webhook(&state, &id).await?;
    let list = state.deliveries.deliveries(&id, page).await?;
    let next_cursor = next_cursor(&list, limit as usize, |(d, _)| (d.created_at_ms, &d.id));
    Ok(Json(DeliveryList {
        webhook_id: id,
        deliveries: list.into_iter().map(delivery_view).collect(),
        next_cursor,
    }))
}

/// Most deliveries one redelivery sends again.
const REDELIVER_MAX: usize = 500;

/// The body of `POST /webhooks/{id}/redeliver`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RedeliverRequest {
    /// The dead deliveries to send again (ids not dead, or of another webhook, are left as
    /// they are); absent: the webhook's oldest 500 dead deliveries.
    #[serde(default, deserialize_with = "a_list")]
    #[schema(schema_with = delivery_ids)]
    delivery_ids: Option<Vec<String>>,
}

/// A list that is present: `null` is refused like any other non-list, as the schema says.
fn a_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Vec::<String>::deserialize(d).map(Some)
}

/// The OpenAPI schema of [`RedeliverRequest::delivery_ids`]: 1 to 500 ids.
fn delivery_ids() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .description(Some(
            "The dead deliveries to send again (ids not dead, or of another webhook, are left \
             as they are); absent: the webhook's oldest 500 dead deliveries.",
        ))
        .items(id_schema())
        .min_items(Some(1))
        .max_items(Some(REDELIVER_MAX))
        .build()
}

/// What a redelivery set due again.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedeliveryView {
    /// Which webhook.
    pub webhook_id: String,
    /// The deliveries due now, oldest first.
    pub redelivered: Vec<String>,
    /// Whether dead deliveries of the webhook remain (ask again for the next 500).
    pub more: bool,
}

/// Sends dead deliveries again, due now, once the receiver is fixed: those named, or the
/// webhook's oldest 500. Each gets one more attempt; one that fails again is dead again once
/// it is `WEBHOOK_RETRY_SEC` old (at once, unless that setting was raised since it died).
#[utoipa::path(
    post, path = "/webhooks/{id}/redeliver", tag = "distribution", security(("bearer" = [])),
    params(IdPath),
    request_body = RedeliverRequest,
    responses(
        (status = 200, description = "The deliveries due again", body = RedeliveryView),
        TooLarge,
        OperatorLookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email, webhook = %id))]
pub(crate) async fn redeliver(
    State(state): State<DistributionState>,
    op: Authorized<Writers>,
    IdPath(id): IdPath,
    Json(body): Json<RedeliverRequest>,
) -> Result<Json<RedeliveryView>, Problem> {
    let ids = match body.delivery_ids {
        Some(ids) if ids.is_empty() || ids.len() > REDELIVER_MAX => {
            return Err(Problem::invalid(
                "deliveryIds",
                format!("must name 1..={REDELIVER_MAX} deliveries, or be left out"),
            ))
        }
        Some(ids) => ids,
        None => Vec::new(),
    };
    for (i, d) in ids.iter().enumerate() {
        check_id(&format!("deliveryIds[{i}]"), d)?;
    }
    let asked = serde_json::json!({ "deliveryIds": (!ids.is_empty()).then_some(&ids) });
    let audit = op.audit(
        now_ms(),
        "webhook.redeliver",
        &id,
        None,
        Some(asked.to_string()),
    );
    let limit = u32::try_from(REDELIVER_MAX).unwrap_or(u32::MAX);
    let done = state
        .deliveries
        .redeliver(&id, &ids, limit, audit.at_ms, &audit)
        .await?
        .ok_or_else(|| no_webhook(&id))?;
    tracing::info!(
        redelivered = done.ids.len(),
        more = done.more,
        "webhook deliveries due again"
    );
    metrics::counter!("webhook_redeliveries_total").increment(done.ids.len() as u64);
    Ok(Json(RedeliveryView {
        webhook_id: id,
        redelivered: done.ids,
        more: done.more,
    }))
}
