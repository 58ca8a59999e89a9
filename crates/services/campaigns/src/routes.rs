//! The operators' campaign routes: create, list, read, change a draft, schedule, cancel.

use axum::extract::State;
use axum::response::Response;
use liveops_core::draw;
use liveops_core::now_ms;
use liveops_core::stores::{AuditEntry, Campaign, CampaignPage, CampaignState, KeyedOutcome};
use liveops_http::responses::{
    KeyReused, LookupFailures, OperatorInputFailures, OperatorLookupFailures, ReadFailures,
    TooLarge, Unauthenticated,
};
use liveops_http::{
    campaign_or_404, created, keyed, next_cursor, parse_cursor, replayed, Bounded, CreateKeyHeader,
    IdPath, Json, KeyedJson, Operator, Problem, Query,
};
use liveops_http::{Authorized, Readers, Writers};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::model::{
    audit_json, check, instant, CampaignChange, CampaignList, CampaignView, NewCampaign,
};
use crate::CampaignsState;

/// How often a change is retried when the scheduler moved the campaign meanwhile.
const RETRIES: usize = 3;

fn audit(op: &Operator, action: &str, before: Option<&Campaign>, after: &Campaign) -> AuditEntry {
    op.audit(
        after.updated_at_ms,
        action,
        &after.id,
        before.map(audit_json),
        Some(audit_json(after)),
    )
}

/// The campaign `id`, which must be a draft (the only state whose settings change).
async fn load_draft(state: &CampaignsState, id: &str) -> Result<Campaign, Problem> {
    let c = campaign_or_404(&*state.campaigns, id).await?;
    if c.state != CampaignState::Draft {
        return Err(Problem::conflict(
            "campaign-not-draft",
            format!(
                "campaign {} is {}; only drafts change",
                c.id,
                c.state.as_str()
            ),
        ));
    }
    Ok(c)
}

/// Writes `next` over `before`, stamped after both `now` and `before`, audited as `action` by
/// `op`; whether it was written (false: something changed the campaign meanwhile).
async fn replace(
    state: &CampaignsState,
    op: &Operator,
    action: &str,
    before: &Campaign,
    next: &mut Campaign,
    now: i64,
    announce: Option<&str>,
) -> Result<bool, Problem> {
    next.updated_at_ms = now.max(before.updated_at_ms + 1);
    let audit = audit(op, action, Some(before), next);
    let event = announce.map(|kind| crate::scheduler::event(kind, next, next.state, now));
    Ok(state
        .campaigns
        .update_campaign(before, next, &audit, event.as_ref())
        .await?)
}

/// Creates a draft campaign.
#[utoipa::path(
    post, path = "/campaigns", tag = "campaigns", security(("bearer" = [])),
    params(CreateKeyHeader),
    request_body = NewCampaign,
    responses(
        (status = 201, description = "The draft (or, again under its `Idempotency-Key`, the \
            draft created then, as it was: `Idempotent-Replayed: true`)", body = CampaignView,
            headers(("Idempotent-Replayed" = String, description = "`true`: the answer of an earlier request under the same key; nothing was created now"))),
        TooLarge,
        KeyReused,
        OperatorInputFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email))]
pub(crate) async fn create_campaign(
    State(state): State<CampaignsState>,
    op: Authorized<Writers>,
    req: KeyedJson<NewCampaign>,
) -> Result<Response, Problem> {
    let key = req.request_key(&op);
    if let Some(again) = replayed(&*state.requests, key.as_ref()).await? {
        return Ok(again);
    }
    let body = req.body;
    let now = now_ms();
    let c = Campaign {
        id: format!("cmp_{}", uuid::Uuid::now_v7().simple()),
        title: body.title.as_str().trim().to_owned(),
        description: body.description.into_inner(),
        starts_at_ms: instant("startsAt", &body.starts_at)?,
        ends_at_ms: instant("endsAt", &body.ends_at)?,
        min_level: body.eligibility.min_level,
        entry_limit: body.entry_limit,
        reward: body.reward,
        state: CampaignState::Draft,
        seed: None,
        commitment: None,
        created_by: op.email.clone(),
        created_at_ms: now,
        updated_at_ms: now,
    };
    check(&c, &state.config.calendar, &state.config.windows, now)?;
    let view = CampaignView::from(&c);
    let outcome = state
        .campaigns
        .create_campaign(
            keyed(key, &view)?.as_ref(),
            &c,
            &audit(&op, "campaign.create", None, &c),
        )
        .await?;
    if outcome == KeyedOutcome::Written {
        metrics::counter!("campaigns_total", "state" => "draft").increment(1);
        tracing::info!(campaign = %c.id, "campaign created");
    }
    created(outcome, &view)
}

/// The query of `GET /campaigns`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only campaigns in this state.
    #[param(inline)]
    state: Option<CampaignState>,
    /// How many, newest first (default 100).
    #[param(inline)]
    limit: Option<Bounded<1, 500>>,
    /// The `nextCursor` of the previous page: this page lists the campaigns after it.
    #[param(pattern = r"^-?[0-9]{1,18}:[A-Za-z0-9_.:-]{1,64}$", max_length = 84)]
    cursor: Option<String>,
}

/// Campaigns, newest created first, a page at a time (`cursor`).
#[utoipa::path(
    get, path = "/campaigns", tag = "campaigns", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, description = "Campaigns", body = CampaignList),
        ReadFailures,
        Unauthenticated,
    )
)]
pub(crate) async fn list_campaigns(
    State(state): State<CampaignsState>,
    _: Authorized<Readers>,
    Query(query): Query<ListQuery>,
) -> Result<Json<CampaignList>, Problem> {
    let limit = u32::try_from(query.limit.map_or(100, Bounded::get)).unwrap_or(100);
    let page = CampaignPage {
        state: query.state,
        limit,
        after: query.cursor.as_deref().map(parse_cursor).transpose()?,
    };
    let all = state.campaigns.campaigns(page).await?;
    Ok(Json(CampaignList {
        next_cursor: next_cursor(&all, limit as usize, Campaign::position),
        campaigns: all.iter().map(CampaignView::from).collect(),
    }))
}

/// One campaign.
#[utoipa::path(
    get, path = "/campaigns/{id}", tag = "campaigns", security(("bearer" = [])), params(IdPath),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        LookupFailures,
        Unauthenticated,
    )
)]
pub(crate) async fn get_campaign(
    State(state): State<CampaignsState>,
    _: Authorized<Readers>,
    IdPath(id): IdPath,
) -> Result<Json<CampaignView>, Problem> {
    Ok(Json(CampaignView::from(
        &campaign_or_404(&*state.campaigns, &id).await?,
    )))
}

/// Changes a draft.
#[utoipa::path(
    patch, path = "/campaigns/{id}", tag = "campaigns", security(("bearer" = [])), params(IdPath),
    request_body = CampaignChange,
    responses(
        (status = 200, description = "The draft after the change", body = CampaignView),
        (status = 409, description = "Not a draft any more, or changed meanwhile", body = Problem, content_type = "application/problem+json"),
        OperatorLookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email, campaign = %id))]
pub(crate) async fn update_campaign(
    State(state): State<CampaignsState>,
    op: Authorized<Writers>,
    IdPath(id): IdPath,
    Json(change): Json<CampaignChange>,
) -> Result<Json<CampaignView>, Problem> {
    let before = load_draft(&state, &id).await?;
    let now = now_ms();
    let mut next = before.clone();
    if let Some(t) = change.title {
        next.title = t.as_str().trim().to_owned();
    }
    if let Some(d) = change.description {
        next.description = d.into_inner();
    }
    if let Some(s) = change.starts_at {
        next.starts_at_ms = instant("startsAt", &s)?;
    }
    if let Some(e) = change.ends_at {
        next.ends_at_ms = instant("endsAt", &e)?;
    }
    if let Some(e) = change.eligibility {
        next.min_level = e.min_level;
    }
    if let Some(l) = change.entry_limit {
        next.entry_limit = l;
    }
    if let Some(r) = change.reward {
        next.reward = r;
    }
    check(&next, &state.config.calendar, &state.config.windows, now)?;
    if !replace(
        &state,
        &op,
        "campaign.update",
        &before,
        &mut next,
        now,
        None,
    )
    .await?
    {
        return Err(changed_meanwhile());
    }
    Ok(Json(CampaignView::from(&next)))
}

fn changed_meanwhile() -> Problem {
    Problem::conflict(
        "changed-meanwhile",
        "the campaign changed meanwhile: read it again and retry",
    )
}

/// Schedules a draft, checked again against the current settings: it is fixed from now on, a
/// 32-byte random seed is drawn for its draw and `commitment = hex(SHA-256(seed))` published; it
/// goes live at `startsAt`.
#[utoipa::path(
    post, path = "/campaigns/{id}/schedule", tag = "campaigns", security(("bearer" = [])),
    params(IdPath),
    responses(
        (status = 200, description = "Scheduled, with its commitment", body = CampaignView),
        (status = 409, description = "Not a draft, its end has passed, or it changed meanwhile", body = Problem, content_type = "application/problem+json"),
        OperatorLookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email, campaign = %id))]
pub(crate) async fn schedule_campaign(
    State(state): State<CampaignsState>,
    op: Authorized<Writers>,
    IdPath(id): IdPath,
) -> Result<Json<CampaignView>, Problem> {
    let before = load_draft(&state, &id).await?;
    let now = now_ms();
    if before.ends_at_ms <= now {
        return Err(Problem::conflict(
            "campaign-window-passed",
            "its end has passed: change endsAt first",
        ));
    }
    // The settings may have changed since the draft was written (`LB_WINDOWS`, the calendar):
    // a campaign scheduled against rules it no longer meets could never pay.
    check(&before, &state.config.calendar, &state.config.windows, now)?;
    // The operating system's generator (rand's thread RNG is a CSPRNG seeded from it).
    let seed: [u8; draw::SEED_LEN] = rand::random();
    let mut next = before.clone();
    next.state = CampaignState::Scheduled;
    next.commitment = Some(draw::commitment(&seed));
    next.seed = Some(hex::encode(seed));
    if !replace(
        &state,
        &op,
        "campaign.schedule",
        &before,
        &mut next,
        now,
        None,
    )
    .await?
    {
        return Err(changed_meanwhile());
    }
    metrics::counter!("campaigns_total", "state" => "scheduled").increment(1);
    tracing::info!(
        commitment = next.commitment.as_deref().unwrap_or_default(),
        "campaign scheduled"
    );
    Ok(Json(CampaignView::from(&next)))
}

/// Cancels a campaign that has not ended: it takes no more entries and pays nothing.
#[utoipa::path(
    post, path = "/campaigns/{id}/cancel", tag = "campaigns", security(("bearer" = [])),
    params(IdPath),
    responses(
        (status = 200, description = "Cancelled", body = CampaignView),
        (status = 409, description = "Already ended, settled or cancelled, its end has passed (`campaign-over`), or it changed meanwhile", body = Problem, content_type = "application/problem+json"),
        OperatorLookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(actor = %op.email, campaign = %id))]
pub(crate) async fn cancel_campaign(
    State(state): State<CampaignsState>,
    op: Authorized<Writers>,
    IdPath(id): IdPath,
) -> Result<Json<CampaignView>, Problem> {
    // The scheduler may move it between our read and our write: read again and retry.
    for _ in 0..RETRIES {
        let before = campaign_or_404(&*state.campaigns, &id).await?;
        if !matches!(
            before.state,
            CampaignState::Draft | CampaignState::Scheduled | CampaignState::Live
        ) {
            return Err(Problem::conflict(
                "campaign-over",
                format!("campaign {} is {}", before.id, before.state.as_str()),
            ));
        }
        let now = now_ms();
        // Past its end a scheduled or live campaign is over even before the scheduler's next
        // tick marks it ended: cancelling it then would void its draw or ranking. (A draft past
        // its end never ran, and may still be cancelled.)
        if before.state != CampaignState::Draft && before.ends_at_ms <= now {
            return Err(Problem::conflict(
                "campaign-over",
                format!("campaign {}: its end has passed", before.id),
            ));
        }
        let mut next = before.clone();
        next.state = CampaignState::Cancelled;
        // Webhook subscribers hear of it once it was published (scheduled: its commitment);
        // a draft nobody saw goes quietly.
        let announce = (before.state != CampaignState::Draft).then_some("campaign.cancelled");
        if replace(
            &state,
            &op,
            "campaign.cancel",
            &before,
            &mut next,
            now,
            announce,
        )
        .await?
        {
            metrics::counter!("campaigns_total", "state" => "cancelled").increment(1);
            tracing::info!("campaign cancelled");
            return Ok(Json(CampaignView::from(&next)));
        }
    }
    Err(changed_meanwhile())
}
