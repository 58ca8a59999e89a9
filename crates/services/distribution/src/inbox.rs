//! `GET /players/{id}/inbox`, `POST /players/{id}/inbox/{messageId}/claim` (signed) and
//! `POST /inbox/messages` (operators).
//!
//! A claim answers one receipt per attachment, in the format of `POST /rewards/claim` (signed
//! with the server's primary key, so `POST /receipts/verify` checks it); every later claim of
//! the message answers the same receipts.

use axum::extract::State;
use axum::response::Response;
use liveops_core::event::is_label;
use liveops_core::stores::{ClaimOutcome, InboxClaim, InboxMessage, InboxPage, KeyedOutcome};
use liveops_core::{now_ms, PlayerId, Receipt};
use liveops_http::responses::{
    KeyReused, OperatorInputFailures, ReadFailures, SignedLookupFailures, TooLarge,
};
use liveops_http::{
    check_id, created, keyed, next_inbox_cursor, parse_inbox_cursor, parse_json, replayed, rfc3339,
    Bounded, CreateKeyHeader, Json, KeyedJson, PlayerPath, Problem, Query, SignatureHeaders,
    Signed, Text, Title,
};
use liveops_http::{Authorized, Writers};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::DistributionState;

/// An item a message grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// The item.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub item: String,
}

/// A message in a player's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    /// Its id.
    pub message_id: String,
    /// The campaign that paid it, if any.
    pub campaign_id: Option<String>,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Items granted on claim.
    pub attachments: Vec<Attachment>,
    /// Sent (RFC 3339).
    pub created_at: String,
    /// Claimable until (RFC 3339).
    pub expires_at: String,
    /// Claimed (RFC 3339), if it was.
    pub claimed_at: Option<String>,
}

/// A player's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboxView {
    /// Whose.
    pub player_id: String,
    /// Newest (last written) first: a message written late is listed above messages created
    /// after it, so `createdAt` need not descend.
    pub messages: Vec<MessageView>,
    /// Where the next page starts (`?cursor=`), when this page is full: more may follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// The body of a claim: the player of the path (so the signature covers who claims).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimBody {
    /// The player of the path.
    #[schema(pattern = "^[A-Za-z0-9_]{3,50}$", min_length = 3, max_length = 50)]
    pub player_id: String,
    /// Optional: the message of the path, so a first-scheme (`sha256=`) signature covers it too
    /// (a `v2=` signature covers the path already); with `sha256=`, claiming two messages within
    /// one second needs it: the two bodies would be equal.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$", min_length = 1, max_length = 64)]
    pub message_id: Option<String>,
}

/// A claimed message's receipts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimAnswer {
    /// The message.
    pub message_id: String,
    /// Who claimed it.
    pub player_id: String,
    /// When it was claimed (RFC 3339).
    pub claimed_at: String,
    /// One receipt per attachment, verifiable by `POST /receipts/verify`.
    pub receipts: Vec<Receipt>,
}

impl From<InboxClaim> for ClaimAnswer {
    fn from(c: InboxClaim) -> Self {
        Self {
            message_id: c.message_id,
            player_id: c.player_id,
            claimed_at: rfc3339(c.claimed_at_ms),
            receipts: c.receipts,
        }
    }
}

/// The query of `GET /players/{id}/inbox`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InboxQuery {
    /// How many messages, newest (last written) first (default 100).
    #[param(inline)]
    limit: Option<Bounded<1, 500>>,
    /// Also the messages past their expiry (default false: those can no longer be claimed, and
    /// would crowd out the ones that can).
    expired: Option<bool>,
    /// The `nextCursor` of the previous page: this page lists the messages below it.
    #[param(pattern = r"^p?-?[0-9]{1,18}:[A-Za-z0-9_.:-]{1,64}$", max_length = 85)]
    cursor: Option<String>,
}

fn view(m: InboxMessage, claimed_at: Option<i64>) -> MessageView {
    MessageView {
        message_id: m.message_id,
        campaign_id: m.campaign_id,
        title: m.title,
        body: m.body,
        attachments: m
            .attachments
            .into_iter()
            .map(|item| Attachment { item })
            .collect(),
        created_at: rfc3339(m.created_at_ms),
        expires_at: rfc3339(m.expires_at_ms),
        claimed_at: claimed_at.map(rfc3339),
    }
}

/// A player's inbox: their messages and everyone's that have not expired (all with
/// `expired=true`), newest (last written) first, a page at a time (`cursor`).
#[utoipa::path(
    get, path = "/players/{id}/inbox", tag = "distribution", params(PlayerPath, InboxQuery),
    responses(
        (status = 200, description = "The messages", body = InboxView),
        ReadFailures,
    )
)]
pub(crate) async fn get_inbox(
    State(state): State<DistributionState>,
    PlayerPath(player): PlayerPath,
    Query(query): Query<InboxQuery>,
) -> Result<Json<InboxView>, Problem> {
    let limit = u32::try_from(query.limit.map_or(100, Bounded::get)).unwrap_or(100);
    let page = InboxPage {
        limit,
        live_at_ms: (!query.expired.unwrap_or(false)).then(now_ms),
        below: query
            .cursor
            .as_deref()
            .map(parse_inbox_cursor)
            .transpose()?,
    };
    let messages = state.inbox.inbox(player.as_str(), page).await?;
    let next_cursor = next_inbox_cursor(&messages, limit as usize, |l| {
        (l.position, l.message.message_id.as_str())
    });
    Ok(Json(InboxView {
        player_id: player.as_str().to_owned(),
        messages: messages
            .into_iter()
            .map(|l| view(l.message, l.claim.map(|c| c.claimed_at_ms)))
            .collect(),
        next_cursor,
    }))
}

liveops_http::id_path! {
    /// The `{messageId}` of `POST /players/{id}/inbox/{messageId}/claim`.
    pub(crate) MessageIdPath = "messageId", "The message"
}

/// A signature claims one message: the same request again gets its receipts back; sent for
/// another message, it is refused as a reuse (409: the signature is good, so not a 401);
/// `None` if it claimed nothing yet.
async fn claimed_before(
    state: &DistributionState,
    sig: &str,
    player: &PlayerId,
    message_id: &str,
) -> Result<Option<Json<ClaimAnswer>>, Problem> {
    match state.inbox.claim_by_request(sig).await? {
        Some(c) if c.message_id == message_id && c.player_id == player.as_str() => {
            Ok(Some(Json(ClaimAnswer::from(c))))
        }
        Some(_) => Err(Problem::conflict(
            "signed-request-reused",
            "this signed request was already used for another message; sign a new one (a v2= signature covers the message's path; with sha256=, put `messageId` in the body)",
        )),
        None => Ok(None),
    }
}

/// Claims a message: one receipt per attachment; claiming again answers the same receipts.
#[utoipa::path(
    post, path = "/players/{id}/inbox/{messageId}/claim", tag = "distribution",
    params(
        PlayerPath,
        MessageIdPath,
        SignatureHeaders,
    ),
    request_body = ClaimBody,
    responses(
        (status = 200, description = "The receipts (the first claim's, if claimed before)", body = ClaimAnswer),
        (status = 409, description = "This signed request claimed another message (`signed-request-reused`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Expired before it was claimed", body = Problem, content_type = "application/problem+json"),
        SignedLookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(player = %player, message = %message_id))]
pub(crate) async fn claim_message(
    State(state): State<DistributionState>,
    PlayerPath(player): PlayerPath,
    MessageIdPath(message_id): MessageIdPath,
    signed: Signed,
) -> Result<Json<ClaimAnswer>, Problem> {
    let body: ClaimBody = parse_json(&signed.body)?;
    // Malformed is 400 as the document says; only a well-formed other id is a mismatch.
    PlayerId::parse(&body.player_id).map_err(|r| Problem::invalid("playerId", r))?;
    if let Some(m) = &body.message_id {
        check_id("messageId", m)?;
    }
    if body.player_id != player.as_str() {
        return Err(Problem::path_mismatch(
            "playerId",
            "must be the player of the path",
        ));
    }
    if body.message_id.as_ref().is_some_and(|m| *m != message_id) {
        return Err(Problem::path_mismatch(
            "messageId",
            "must be the message of the path",
        ));
    }
    let sig = signed.signature.0;
    if let Some(answer) = claimed_before(&state, &sig, &player, &message_id).await? {
        return Ok(answer);
    }
    let message = state
        .inbox
        .message(player.as_str(), &message_id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no message {message_id:?} in this inbox")))?;
    let keys = state.signatures.keys.receipt_keys();
    let timestamp = signed.at_ms.div_euclid(1000);
    let receipts = message
        .attachments
        .iter()
        .map(|item| {
            let receipt_id = uuid::Uuid::now_v7().to_string();
            let sig = keys.sign_receipt(&receipt_id, player.as_str(), item, timestamp);
            Receipt {
                receipt_id,
                player_id: player.as_str().to_owned(),
                item: item.clone(),
                timestamp,
                sig,
            }
        })
        .collect();
    let claim = InboxClaim {
        message_id: message_id.clone(),
        player_id: player.as_str().to_owned(),
        claimed_at_ms: signed.at_ms,
        receipts,
        request_sig: sig,
    };
    let outcome = match state.inbox.claim(&claim, now_ms()).await {
        Ok(outcome) => outcome,
        // The signature's own claim written meanwhile (the same request sent for two messages
        // at once) clashes on the request's unique key: answered as if it came first.
        Err(error) => {
            let before = claimed_before(&state, &claim.request_sig, &player, &message_id).await?;
            return before.ok_or(error.into());
        }
    };
    match outcome {
        ClaimOutcome::Claimed(c) => {
            metrics::counter!("inbox_claims_total").increment(1);
            tracing::info!(receipts = c.receipts.len(), "message claimed");
            Ok(Json(ClaimAnswer::from(c)))
        }
        ClaimOutcome::AlreadyClaimed(c) => Ok(Json(ClaimAnswer::from(c))),
        ClaimOutcome::NotFound => Err(Problem::not_found(format!(
            "no message {message_id:?} in this inbox"
        ))),
        ClaimOutcome::Expired(at) => Err(Problem::gone(
            "message-expired",
            format!("the message expired at {}", rfc3339(at)),
        )),
    }
}

/// The body of `POST /inbox/messages`: to some players, or to all.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendRequest {
    /// The players (1..=1000), unless `all`.
    #[schema(value_type = Option<Vec<PlayerId>>, min_items = 1, max_items = 1000)]
    pub players: Option<Vec<String>>,
    /// Every player (one message everyone's inbox shows), instead of `players`.
    pub all: Option<bool>,
    /// Title.
    #[schema(inline)]
    pub title: Title,
    /// Body: at most 4000 characters.
    #[serde(default)]
    #[schema(inline)]
    pub body: Text<4000, false>,
    /// Items granted on claim (up to 10).
    #[serde(default)]
    #[schema(max_items = 10)]
    pub attachments: Vec<Attachment>,
    /// Claimable until (RFC 3339), in the future, within a year (a retry under the first send's
    /// `Idempotency-Key` is answered even once it has passed).
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// What was sent.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    /// The messages written (one for `all`).
    pub message_ids: Vec<String>,
}

/// `recipients`' rule as JSON Schema, for `SendRequest`'s `oneOf`: a list of `players` with `all`
/// absent, false or null, or `all: true` with `players` absent or null.
pub(crate) fn players_or_all() -> serde_json::Value {
    serde_json::json!([
        {
            "required": ["players"],
            "properties": { "players": { "type": "array" }, "all": { "enum": [false, null] } }
        },
        {
            "required": ["all"],
            "properties": { "all": { "const": true }, "players": { "type": "null" } }
        }
    ])
}

fn recipients(req: &SendRequest) -> Result<Vec<Option<String>>, Problem> {
    match (&req.players, req.all) {
        (Some(_), Some(true)) | (None, None | Some(false)) => Err(Problem::invalid(
            "players",
            "give either players (1..=1000 ids) or all: true",
        )),
        (None, Some(true)) => Ok(vec![None]),
        (Some(list), _) => {
            if list.is_empty() || list.len() > 1000 {
                return Err(Problem::invalid("players", "must list 1..=1000 players"));
            }
            let mut out: Vec<Option<String>> = Vec::with_capacity(list.len());
            for (i, p) in list.iter().enumerate() {
                PlayerId::parse(p).map_err(|r| Problem::invalid(&format!("players[{i}]"), r))?;
                if !out.iter().any(|o| o.as_deref() == Some(p)) {
                    out.push(Some(p.clone()));
                }
            }
            Ok(out)
        }
    }
}

/// Sends a message to some players' inboxes, or to every player's.
#[utoipa::path(
    post, path = "/inbox/messages", tag = "distribution", security(("bearer" = [])),
    params(CreateKeyHeader),
    request_body = SendRequest,
    responses(
        (status = 201, description = "Sent (or, again under its `Idempotency-Key`, sent before: \
            the same ids, with `Idempotent-Replayed: true`)", body = Sent,
            headers(("Idempotent-Replayed" = String, description = "`true`: the messages of an earlier send under the same key; nothing was sent now"))),
        TooLarge,
        KeyReused,
        OperatorInputFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email))]
pub(crate) async fn send_message(
    State(state): State<DistributionState>,
    op: Authorized<Writers>,
    req: KeyedJson<SendRequest>,
) -> Result<Response, Problem> {
    // A retry that comes after the first send's expiry still gets its answer.
    let key = req.request_key(&op);
    if let Some(again) = replayed(&*state.requests, key.as_ref()).await? {
        return Ok(again);
    }
    let req = req.body;
    let to = recipients(&req)?;
    let title = req.title.as_str().trim();
    if req.attachments.len() > 10 {
        return Err(Problem::invalid("attachments", "at most 10"));
    }
    if let Some(i) = req.attachments.iter().position(|a| !is_label(&a.item)) {
        return Err(Problem::invalid(
            &format!("attachments[{i}].item"),
            "must be 1..=64 characters of [A-Za-z0-9_.:-]",
        ));
    }
    let now = now_ms();
    let expires = chrono::DateTime::parse_from_rfc3339(&req.expires_at)
        .map(|t| t.timestamp_millis())
        .map_err(|e| Problem::invalid("expiresAt", format!("must be an RFC 3339 instant: {e}")))?;
    if expires <= now || expires - now > 366 * 86_400_000 {
        return Err(Problem::invalid(
            "expiresAt",
            "must be in the future, within a year",
        ));
    }
    let messages: Vec<InboxMessage> = to
        .into_iter()
        .map(|player_id| InboxMessage {
            message_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            player_id,
            campaign_id: None,
            title: title.to_owned(),
            body: req.body.as_str().to_owned(),
            attachments: req.attachments.iter().map(|a| a.item.clone()).collect(),
            created_at_ms: now,
            expires_at_ms: expires,
        })
        .collect();
    let sent = Sent {
        message_ids: messages.iter().map(|m| m.message_id.clone()).collect(),
    };
    let target = if req.all == Some(true) {
        "all".into()
    } else {
        format!("{} players", sent.message_ids.len())
    };
    // What the send asked for, and who got what: each message with its player.
    let after = serde_json::json!({
        "title": title,
        "body": req.body.as_str(),
        "attachments": req.attachments,
        "expiresAt": rfc3339(expires),
        "messages": messages
            .iter()
            .map(|m| serde_json::json!({"messageId": m.message_id, "playerId": m.player_id}))
            .collect::<Vec<_>>(),
    });
    let audit = op.audit(now, "inbox.send", target, None, Some(after.to_string()));
    let outcome = state
        .inbox
        .send_messages(keyed(key, &sent)?.as_ref(), &messages, &audit)
        .await?;
    if outcome == KeyedOutcome::Written {
        tracing::info!(messages = sent.message_ids.len(), "inbox messages sent");
    }
    created(outcome, &sent)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::{players_or_all, recipients, SendRequest};

    /// Whether `body` meets `branch`, for the keywords `players_or_all` uses.
    fn meets(branch: &Value, body: &Value) -> bool {
        let required = branch["required"].as_array().into_iter().flatten();
        let present = required
            .into_iter()
            .all(|k| body.get(k.as_str().unwrap_or("")).is_some());
        let properties = branch["properties"].as_object().into_iter().flatten();
        present
            && properties
                .into_iter()
                .all(|(key, rule)| match body.get(key) {
                    None => true,
                    Some(v) => match (rule.get("type"), rule.get("enum"), rule.get("const")) {
                        (Some(t), _, _) => {
                            t == "array" && v.is_array() || t == "null" && v.is_null()
                        }
                        (_, Some(Value::Array(allowed)), _) => allowed.contains(v),
                        (_, _, Some(c)) => c == v,
                        _ => panic!("a keyword the rule does not use: {rule}"),
                    },
                })
    }

    #[test]
    fn the_documented_rule_accepts_exactly_what_recipients_accepts() {
        let rule = players_or_all();
        let branches = rule.as_array().expect("a oneOf list");
        let players = [None, Some(Value::Null), Some(json!(["player_1"]))];
        let all = [
            None,
            Some(Value::Null),
            Some(json!(false)),
            Some(json!(true)),
        ];
        for p in &players {
            for a in &all {
                let mut body = json!({"title": "t", "expiresAt": "2030-01-01T00:00:00Z"});
                if let Some(p) = p {
                    body["players"] = p.clone();
                }
                if let Some(a) = a {
                    body["all"] = a.clone();
                }
                let matched = branches.iter().filter(|b| meets(b, &body)).count();
                let req: SendRequest = serde_json::from_value(body.clone()).expect("parses");
                assert_eq!(
                    matched == 1,
                    recipients(&req).is_ok(),
                    "{body}: {matched} branches"
                );
            }
        }
    }
}
