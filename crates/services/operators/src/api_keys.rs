//! `POST /api-keys`, `GET /api-keys`, `DELETE /api-keys/{keyId}` (admins only). A key's secret
//! is shown once, in the answer that creates it; every process that checks signatures picks up
//! new and revoked keys within a second or two (`liveops_module::keys`).

use axum::extract::State;
use axum::response::Response;
use liveops_core::now_ms;
use liveops_core::stores::{ApiKeyInfo, CappedOutcome, KeyedOutcome};
use liveops_http::responses::{
    KeyReused, OperatorFailures, OperatorInputFailures, OperatorLookupFailures, TooLarge,
};
use liveops_http::{
    created, first_answer, keyed, replay_if_there, rfc3339, CreateKeyHeader, Json, KeyedJson,
    Operator, Problem,
};
use liveops_http::{Admins, Authorized};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::OperatorsState;

/// The body of `POST /api-keys`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewApiKey {
    /// What the key is for (`game server eu-west`): no control characters, no white space at
    /// either end.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]([^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?$"
    )]
    name: String,
}

/// A new key: sign requests with `X-Key-Id: <keyId>` and the secret as the HMAC key. The
/// secret is never shown again.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    /// The `X-Key-Id` to send.
    pub key_id: String,
    /// The HMAC key: 64 hex characters, used as text.
    pub secret: String,
    /// What it is for.
    pub name: String,
    /// Created (RFC 3339).
    pub created_at: String,
}

/// A key as listed (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    /// Its `X-Key-Id`.
    pub key_id: String,
    /// What it is for.
    pub name: String,
    /// Who created it.
    pub created_by: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
    /// Whether it signs requests now.
    pub active: bool,
}

impl From<ApiKeyInfo> for ApiKeyView {
    fn from(k: ApiKeyInfo) -> Self {
        Self {
            active: k.revoked_at_ms.is_none(),
            key_id: k.key_id,
            name: k.name,
            created_by: k.created_by,
            created_at: rfc3339(k.created_at_ms),
            revoked_at: k.revoked_at_ms.map(rfc3339),
        }
    }
}

/// Every active key (at most `API_KEY_MAX`) and the `API_KEY_MAX` most recently revoked.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ApiKeyList {
    /// Newest first.
    keys: Vec<ApiKeyView>,
}

fn audit_json(k: &ApiKeyInfo) -> String {
    serde_json::to_string(&ApiKeyView::from(k.clone())).unwrap_or_default()
}

/// Creates an API key for a game server, unless `API_KEY_MAX` keys are active (409
/// `api-key-limit-reached`: revoke one first).
#[utoipa::path(
    post, path = "/api-keys", tag = "operators", security(("bearer" = [])),
    params(CreateKeyHeader),
    request_body = NewApiKey,
    responses(
        (status = 201, description = "The key, with its secret: shown this once, and again only \
            to a retry under the same `Idempotency-Key` (`Idempotent-Replayed: true`)", body = CreatedApiKey,
            headers(("Idempotent-Replayed" = String, description = "`true`: the answer of an earlier request under the same key; nothing was created now"))),
        (status = 409, description = "`API_KEY_MAX` keys are active (`api-key-limit-reached`): \
            revoke one before creating another", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Created under this `Idempotency-Key` before, and revoked since (`created-then-removed`)", body = Problem, content_type = "application/problem+json"),
        TooLarge,
        KeyReused,
        OperatorInputFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email))]
pub(crate) async fn create_api_key(
    State(state): State<OperatorsState>,
    op: Authorized<Admins>,
    req: KeyedJson<NewApiKey>,
) -> Result<Response, Problem> {
    let request = req.request_key(&op);
    if let Some(first) = first_answer(&*state.requests, request.as_ref()).await? {
        return again_unless_revoked(&state, &op, first).await;
    }
    // What the pattern in the OpenAPI says.
    let name = req.body.name;
    let edge = |c: Option<char>| c.is_none_or(char::is_whitespace);
    if name.chars().count() > 100
        || name.chars().any(char::is_control)
        || edge(name.chars().next())
        || edge(name.chars().next_back())
    {
        return Err(Problem::invalid(
            "name",
            "must be 1..=100 characters, no control characters, no white space at either end",
        ));
    }
    let now = now_ms();
    let key = ApiKeyInfo {
        key_id: format!("ak_{}", hex::encode(rand::random::<[u8; 8]>())),
        name,
        created_by: op.email.clone(),
        created_at_ms: now,
        revoked_at_ms: None,
    };
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let audit = op.audit(
        now,
        "api_key.create",
        &key.key_id,
        None,
        Some(audit_json(&key)),
    );
    let answer = CreatedApiKey {
        key_id: key.key_id.clone(),
        secret: secret.clone(),
        name: key.name.clone(),
        created_at: rfc3339(now),
    };
    let max = state.config.max_api_keys;
    let created_now = state
        .keys
        .create_api_key(
            keyed(request, &answer)?.as_ref(),
            &key,
            &secret,
            &audit,
            max,
        )
        .await?;
    let CappedOutcome::Keyed(outcome) = created_now else {
        tracing::warn!(max, "API key refused: API_KEY_MAX keys are active");
        return Err(Problem::conflict(
            "api-key-limit-reached",
            format!(
                "as many API keys as API_KEY_MAX allows ({max}) are active: revoke one \
                 (DELETE /api-keys/{{keyId}}) before creating another"
            ),
        ));
    };
    if let KeyedOutcome::Replayed(first) = outcome {
        return again_unless_revoked(&state, &op, first).await;
    }
    if outcome == KeyedOutcome::Written {
        tracing::info!(key_id = %key.key_id, "API key created");
    }
    created(outcome, &answer)
}

/// An API key create's first answer again, its secret included, unless the key was revoked
/// since (410; its secret signs nothing). Showing a secret again is audited (`api_key.reveal`).
async fn again_unless_revoked(
    state: &OperatorsState,
    op: &Operator,
    first: String,
) -> Result<Response, Problem> {
    let id = serde_json::from_str::<CreatedApiKey>(&first).map(|k| k.key_id);
    let keys = state.keys.api_keys(0).await?;
    let active = id.ok().filter(|id| {
        keys.iter()
            .any(|k| k.key_id == *id && k.revoked_at_ms.is_none())
    });
    if let Some(id) = &active {
        state
            .audit
            .record(&op.audit(now_ms(), "api_key.reveal", id, None, None))
            .await?;
    }
    replay_if_there(first, active.is_some(), "the API key was revoked")
}

/// The API keys, without secrets, in one page: every active key (at most `API_KEY_MAX`, since
/// a create past it is refused; more only if the setting was lowered after they were created)
/// and the `API_KEY_MAX` most recently revoked (the audit log keeps every revocation).
#[utoipa::path(
    get, path = "/api-keys", tag = "operators", security(("bearer" = [])),
    responses(
        (status = 200, description = "The active keys and the most recently revoked, newest \
            first", body = ApiKeyList),
        OperatorFailures,
    )
)]
pub(crate) async fn list_api_keys(
    State(state): State<OperatorsState>,
    _: Authorized<Admins>,
) -> Result<Json<ApiKeyList>, Problem> {
    let keys = state.keys.api_keys(state.config.max_api_keys).await?;
    Ok(Json(ApiKeyList {
        keys: keys.into_iter().map(ApiKeyView::from).collect(),
    }))
}

liveops_http::id_path! {
    /// The `{keyId}` of `DELETE /api-keys/{keyId}`.
    pub(crate) KeyIdPath = "keyId", "The key's id"
}

/// Revokes a key: every process refuses its signatures within a few seconds.
#[utoipa::path(
    delete, path = "/api-keys/{keyId}", tag = "operators", security(("bearer" = [])),
    params(KeyIdPath),
    responses(
        (status = 200, description = "The key, revoked", body = ApiKeyView),
        OperatorLookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email, key_id = %key_id))]
pub(crate) async fn revoke_api_key(
    State(state): State<OperatorsState>,
    op: Authorized<Admins>,
    KeyIdPath(key_id): KeyIdPath,
) -> Result<Json<ApiKeyView>, Problem> {
    let before = state
        .keys
        .api_keys(0)
        .await?
        .into_iter()
        .find(|k| k.key_id == key_id && k.revoked_at_ms.is_none())
        .ok_or_else(|| Problem::not_found(format!("no active API key {key_id:?}")))?;
    let now = now_ms();
    let after = ApiKeyInfo {
        revoked_at_ms: Some(now),
        ..before.clone()
    };
    let audit = op.audit(
        now,
        "api_key.revoke",
        &key_id,
        Some(audit_json(&before)),
        Some(audit_json(&after)),
    );
    let revoked = state
        .keys
        .revoke_api_key(&key_id, &audit)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no active API key {key_id:?}")))?;
    tracing::info!("API key revoked");
    Ok(Json(ApiKeyView::from(revoked)))
}
