//! `POST /operators`, `GET /operators`, `PATCH /operators/{id}` and `GET /audit` (admins only).

use axum::extract::State;
use axum::http::StatusCode;
use liveops_core::stores::{
    AuditEntry, ListedAudit, OperatorRecord, OperatorStore, OperatorUpdate, Role,
};
use liveops_core::{now_ms, PortResult};
use liveops_http::responses::{OperatorFailures, OperatorInputFailures, OperatorLookupFailures};
use liveops_http::{next_cursor, parse_cursor, rfc3339, Bounded, IdPath, Json, Problem, Query};
use liveops_http::{Admins, Authorized};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::email::Email;
use crate::password::{Hashing, PasswordError};
use crate::{create_operator, CreateError, OperatorsState};

/// An operator, as answered (never the password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorView {
    /// Their id.
    pub id: String,
    /// Their email.
    pub email: String,
    /// Their role.
    pub role: Role,
    /// Whether they are disabled.
    pub disabled: bool,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

impl From<&OperatorRecord> for OperatorView {
    fn from(op: &OperatorRecord) -> Self {
        Self {
            id: op.id.clone(),
            email: op.email.clone(),
            role: op.role,
            disabled: op.disabled,
            created_at: rfc3339(op.created_at_ms),
            updated_at: rfc3339(op.updated_at_ms),
        }
    }
}

/// The hash of a new password given as `field`, in a turn of `hashing`; 400 naming it if it
/// cannot be one, 503 if no turn came in time.
pub(crate) async fn new_hash(
    hashing: &Hashing,
    password: String,
    field: &str,
) -> Result<String, Problem> {
    hashing.hash(password).await.map_err(|e| match e {
        PasswordError::Busy(busy) => busy.into(),
        e => Problem::invalid(field, e.to_string()),
    })
}

/// An operator as the audit log records it.
pub(crate) fn audit_json(op: &OperatorRecord) -> String {
    serde_json::to_string(&OperatorView::from(op)).unwrap_or_default()
}

/// Writes `after` over `before` as `actor`'s `action`, stamped after both `now` and `before`'s
/// last change and audited with both; what the store made of it.
pub(crate) async fn write_operator(
    store: &dyn OperatorStore,
    actor: &str,
    action: &str,
    before: &OperatorRecord,
    after: &mut OperatorRecord,
    now: i64,
) -> PortResult<OperatorUpdate> {
    after.updated_at_ms = now.max(before.updated_at_ms + 1);
    let audit = AuditEntry {
        at_ms: after.updated_at_ms,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: before.id.clone(),
        before: Some(audit_json(before)),
        after: Some(audit_json(after)),
    };
    store.update_operator(before, after, &audit).await
}

/// Every operator.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OperatorsList {
    /// Oldest first.
    pub operators: Vec<OperatorView>,
}

/// The body of `POST /operators`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOperator {
    /// Their email (their login).
    email: Email,
    /// Their password.
    #[schema(min_length = 12, max_length = 256)]
    password: String,
    /// Their role.
    role: Role,
}

/// The body of `PATCH /operators/{id}`: what to change.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperatorChange {
    /// A new role.
    role: Option<Role>,
    /// Disable (closes their sessions) or enable.
    disabled: Option<bool>,
    /// A new password (closes their sessions), for an operator who lost theirs.
    #[schema(min_length = 12, max_length = 256)]
    password: Option<String>,
}

/// One change in the audit log.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    /// When (RFC 3339).
    pub at: String,
    /// Who: an operator's email, `bootstrap` or `cli`.
    pub actor: String,
    /// What (`operator.create`, `api_key.revoke`, `campaign.schedule`, `player.unblock`).
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// The target before, if it existed.
    pub before: Option<Value>,
    /// The target after, if it still exists.
    pub after: Option<Value>,
}

/// A page of the audit log.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    /// Newest first by the number each entry got when written; a change that commits late
    /// can be numbered below entries already listed, so a reader that stops at the first entry
    /// it has seen may miss it: only a walk to the end lists every entry.
    pub entries: Vec<AuditView>,
    /// Where the next page starts (`?cursor=`), when this page is full or reached its size:
    /// more may follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// The query of `GET /audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// How many entries at most, newest first (default 100); a page also ends once its entries
    /// hold 4 MiB of `before` and `after`.
    #[param(inline)]
    limit: Option<Bounded<1, 1000>>,
    /// The `nextCursor` of the previous page: this page starts below the entry it names.
    #[param(pattern = r"^-?[0-9]{1,18}:[A-Za-z0-9_.:-]{1,64}$", max_length = 84)]
    cursor: Option<String>,
}

/// Most bytes of `before` and `after` one page of the audit log carries (one entry at least):
/// an `inbox.send` entry names up to 1000 recipients (~130 KB), so 1000 of them in one answer
/// were over 100 MB read, parsed and held at once.
const AUDIT_PAGE_BYTES: usize = 4 << 20;
/// Entries read at a time while a page of the audit log fills.
const AUDIT_CHUNK: usize = 50;

/// Up to `limit` entries below `before`, read a chunk at a time, until they hold
/// [`AUDIT_PAGE_BYTES`]; and whether more may follow.
async fn audit_page(
    state: &OperatorsState,
    mut before: Option<i64>,
    limit: usize,
) -> Result<(Vec<ListedAudit>, bool), Problem> {
    let (mut page, mut bytes) = (Vec::new(), 0usize);
    loop {
        let want = (limit - page.len()).min(AUDIT_CHUNK);
        let chunk = state
            .audit
            .audit(before, u32::try_from(want).unwrap_or(50))
            .await?;
        let short = chunk.len() < want;
        for listed in chunk {
            if bytes >= AUDIT_PAGE_BYTES {
                return Ok((page, true));
            }
            let e = &listed.entry;
            bytes +=
                e.before.as_ref().map_or(0, String::len) + e.after.as_ref().map_or(0, String::len);
            before = Some(listed.position);
            page.push(listed);
        }
        if short {
            return Ok((page, false));
        }
        if page.len() >= limit {
            return Ok((page, true));
        }
    }
}

/// Adds an operator.
#[utoipa::path(
    post, path = "/operators", tag = "operators", security(("bearer" = [])),
    request_body = NewOperator,
    responses(
        (status = 201, description = "Created", body = OperatorView),
        (status = 409, description = "The email is taken", body = Problem, content_type = "application/problem+json"),
        OperatorInputFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email))]
pub(crate) async fn add_operator(
    State(state): State<OperatorsState>,
    op: Authorized<Admins>,
    Json(body): Json<NewOperator>,
) -> Result<(StatusCode, Json<OperatorView>), Problem> {
    body.email.normalized()?;
    crate::password::check(&body.password)
        .map_err(|e| Problem::invalid("password", e.to_string()))?;
    match create_operator(
        state.operators.as_ref(),
        &state.hashing,
        body.email.as_str(),
        body.password,
        body.role,
        &op.email,
    )
    .await
    {
        Ok(Some(created)) => {
            tracing::info!(operator = %created.id, role = created.role.as_str(), "operator created");
            Ok((StatusCode::CREATED, Json(OperatorView::from(&created))))
        }
        Ok(None) => Err(Problem::conflict(
            "email-taken",
            "an operator has this email",
        )),
        Err(CreateError::Invalid(reason)) => Err(Problem::invalid("password", reason)),
        Err(CreateError::Port(e)) => Err(e.into()),
    }
}

/// Every operator.
#[utoipa::path(
    get, path = "/operators", tag = "operators", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every operator, oldest first", body = OperatorsList),
        OperatorFailures,
    )
)]
pub(crate) async fn list_operators(
    State(state): State<OperatorsState>,
    _: Authorized<Admins>,
) -> Result<Json<OperatorsList>, Problem> {
    let all = state.operators.operators().await?;
    Ok(Json(OperatorsList {
        operators: all.iter().map(OperatorView::from).collect(),
    }))
}

/// Changes an operator's role or disables them (closing their sessions at once). The last
/// enabled admin cannot be demoted or disabled.
#[utoipa::path(
    patch, path = "/operators/{id}", tag = "operators", security(("bearer" = [])), params(IdPath),
    request_body = OperatorChange,
    responses(
        (status = 200, description = "The operator after the change", body = OperatorView),
        (status = 409, description = "It would leave no enabled admin, or it changed meanwhile", body = Problem, content_type = "application/problem+json"),
        OperatorLookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email, operator = %id))]
pub(crate) async fn update_operator(
    State(state): State<OperatorsState>,
    op: Authorized<Admins>,
    IdPath(id): IdPath,
    Json(change): Json<OperatorChange>,
) -> Result<Json<OperatorView>, Problem> {
    let before = state
        .operators
        .operator(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no operator {id:?}")))?;
    let mut after = before.clone();
    after.role = change.role.unwrap_or(before.role);
    after.disabled = change.disabled.unwrap_or(before.disabled);
    if let Some(password) = change.password {
        after.password_hash = new_hash(&state.hashing, password, "password").await?;
    }
    let action = if after.password_hash == before.password_hash {
        "operator.update"
    } else {
        "operator.password_reset"
    };
    let store = state.operators.as_ref();
    match write_operator(store, &op.email, action, &before, &mut after, now_ms()).await? {
        OperatorUpdate::Updated => {}
        OperatorUpdate::LastAdmin => {
            return Err(Problem::conflict(
                "last-admin",
                "this is the last enabled admin: make another admin first",
            ))
        }
        OperatorUpdate::ChangedMeanwhile => {
            return Err(Problem::conflict(
                "changed-meanwhile",
                "the operator changed meanwhile: read it again and retry",
            ))
        }
    }
    tracing::info!(
        role = after.role.as_str(),
        disabled = after.disabled,
        "operator changed"
    );
    Ok(Json(OperatorView::from(&after)))
}

/// The audit log: every change, who made it, when, before and after.
#[utoipa::path(
    get, path = "/audit", tag = "operators", security(("bearer" = [])), params(AuditQuery),
    responses(
        (status = 200, description = "The latest changes, newest first", body = AuditList),
        OperatorInputFailures,
    )
)]
pub(crate) async fn list_audit_entries(
    State(state): State<OperatorsState>,
    _: Authorized<Admins>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditList>, Problem> {
    let limit = usize::try_from(query.limit.map_or(100, Bounded::get)).unwrap_or(100);
    let before = match query.cursor.as_deref() {
        Some(cursor) => Some(parse_cursor(cursor)?.0),
        None => None,
    };
    let (page, more) = audit_page(&state, before, limit).await?;
    let next_cursor = more
        .then(|| next_cursor(&page, 1, |l| (l.position, "audit")))
        .flatten();
    let parse = |s: Option<String>| s.map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s)));
    Ok(Json(AuditList {
        entries: page
            .into_iter()
            .map(|ListedAudit { entry: e, .. }| AuditView {
                at: rfc3339(e.at_ms),
                actor: e.actor,
                action: e.action,
                target: e.target,
                before: parse(e.before),
                after: parse(e.after),
            })
            .collect(),
        next_cursor,
    }))
}
