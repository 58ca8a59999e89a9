//! HTTP routes: `/players/{id}/progress`, `/players/{id}/rewards` and
//! `/players/{id}/inventory` (a page at a time), `/rewards/claim`, `/receipts/verify`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use liveops_core::event::is_label;
use liveops_core::stores::{
    InventoryItem, ListedReward, PendingReward, RewardClaim, PROGRESS_COUNT_LIMIT,
    PROGRESS_INVENTORY_LIMIT, PROGRESS_PENDING_LIMIT,
};
use liveops_core::{now_ms, PlayerId, Receipt, Verification};
use liveops_http::{
    next_cursor, parse_cursor, rfc3339_or_never, Bounded, Json, PlayerPath, Problem, Query,
    SignatureHeaders, Signed, Throttled,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::apply::item_of_level_reward;
use crate::cache::{self, CACHE_TTL};
use crate::ProgressionState;
use liveops_http::responses::{BadRequest, Conflict, ReadFailures, SignedFailures, TooLarge};

/// Largest accepted body on `POST /rewards/claim` and `POST /receipts/verify`.
pub(crate) const BODY_LIMIT: usize = 16 * 1024;
/// Pending rewards or inventory lines on a page of `GET /players/{id}/rewards` or
/// `GET /players/{id}/inventory` unless `limit` says otherwise.
const DEFAULT_PAGE: i64 = 100;
/// Most pending rewards or inventory lines on a page of `GET /players/{id}/rewards` or
/// `GET /players/{id}/inventory`.
const MAX_PAGE: i64 = 1000;
/// The `limit` of `GET /players/{id}/rewards` and `GET /players/{id}/inventory`: 1 to
/// [`MAX_PAGE`].
type PageLimit = Bounded<1, MAX_PAGE>;
// The view's documentation (its OpenAPI descriptions and bounds, README, ARCHITECTURE) says 100
// rewards, 100 inventory lines and counts up to 10000.
const _: () = assert!(PROGRESS_PENDING_LIMIT == 100 && PROGRESS_INVENTORY_LIMIT == 100);
const _: () = assert!(PROGRESS_COUNT_LIMIT == 10_000);

/// The query of `/players/{id}/progress`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProgressQuery {
    /// Season number; default the current season.
    #[param(inline)]
    season: Option<Bounded<-100_000, 100_000>>,
}

/// A player's progression in one season, plus the first inventory lines and the oldest rewards
/// of every season, and how many of each there are (counted up to 10000).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressView {
    /// The player it concerns.
    pub player_id: String,
    /// Which season.
    pub season: i64,
    /// XP earned in the season.
    pub xp: u64,
    /// Level reached in the season (1 with no XP).
    #[schema(value_type = u64, minimum = 1, maximum = 4_294_967_295_i64)]
    pub level: u32,
    /// The first 100 items owned, sorted by item (`GET /players/{id}/inventory` pages through
    /// all of them).
    pub inventory: Vec<InventoryItem>,
    /// How many items (inventory lines) the player owns, listed or not, counted up to 10000:
    /// 10000 means 10000 or more.
    #[schema(maximum = 10000)]
    pub inventory_count: u64,
    /// The oldest 100 rewards earned and not claimed yet, of every season, oldest first
    /// (`GET /players/{id}/rewards` pages through all of them).
    pub pending_rewards: Vec<PendingReward>,
    /// How many rewards are earned and not claimed yet, of every season, listed or not, counted
    /// up to 10000: 10000 means 10000 or more.
    #[schema(maximum = 10000)]
    pub pending_count: u64,
    /// When the player's XP in this season last changed (RFC 3339), or null if it never did;
    /// drops and claims change the inventory and rewards without moving it.
    pub updated_at: Option<String>,
}

/// The query of `GET /players/{id}/rewards`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RewardsQuery {
    /// How many pending rewards, oldest first (default 100).
    #[param(inline)]
    limit: Option<PageLimit>,
    /// The `nextCursor` of the previous page: this page starts after the reward it names.
    #[param(pattern = r"^-?[0-9]{1,18}:[A-Za-z0-9_.:-]{1,64}$", max_length = 84)]
    cursor: Option<String>,
}

/// A page of a player's pending rewards, of every season, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RewardPage {
    /// The player it concerns.
    pub player_id: String,
    /// This page of the rewards earned and not claimed yet, oldest first.
    pub rewards: Vec<PendingReward>,
    /// The `cursor` of the next page (it names this page's last reward); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// The query of `GET /players/{id}/inventory`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct InventoryQuery {
    /// How many inventory lines, sorted by item (default 100).
    #[param(inline)]
    limit: Option<PageLimit>,
    /// The `nextCursor` of the previous page (the item it ended with): this page starts after it.
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,64}$", min_length = 1, max_length = 64)]
    cursor: Option<String>,
}

/// A page of a player's inventory, sorted by item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryPage {
    /// The player it concerns.
    pub player_id: String,
    /// This page of the items owned, sorted by item.
    pub inventory: Vec<InventoryItem>,
    /// The `cursor` of the next page (this page's last item); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// The body of `POST /rewards/claim`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimRequest {
    /// The player claiming.
    #[schema(pattern = "^[A-Za-z0-9_]{3,50}$")]
    pub player_id: String,
    /// A pending reward id (`level:4:7`, `drop:<eventId>`).
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub reward_id: String,
}

fn json_bytes(body: Bytes) -> Response {
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A player's XP, level, first inventory lines and oldest pending rewards.
///
/// `inventory` lists the first 100 items owned, sorted by item, and `inventoryCount` how many
/// there are; `GET /players/{id}/inventory` pages through every one of them. `pendingRewards`
/// lists the oldest 100 rewards waiting to be claimed, of every season; `pendingCount` is how
/// many there are, and `GET /players/{id}/rewards` pages through every one of them. Both counts
/// stop at 10000: 10000 means 10000 or more.
#[utoipa::path(
    get, path = "/players/{id}/progress", tag = "progression", params(PlayerPath, ProgressQuery),
    responses(
        (status = 200, description = "The player's progress (zeros for an unknown player)", body = ProgressView),
        ReadFailures,
    )
)]
#[tracing::instrument(skip_all, fields(player))]
pub(crate) async fn get_progress(
    State(state): State<ProgressionState>,
    PlayerPath(player): PlayerPath,
    Query(query): Query<ProgressQuery>,
) -> Result<Response, Problem> {
    tracing::Span::current().record("player", player.as_str());
    let season = query.season.map_or_else(
        || state.config.calendar.season_at_ms(now_ms()),
        Bounded::get,
    );

    let cached = match cache::view_key(state.cache.as_ref(), player.as_str(), season).await {
        Ok(key) => state.cache.cache_get(&key).await.map(|hit| (key, hit)),
        Err(error) => Err(error),
    };
    let key = match cached {
        Ok((_, Some(cached))) => return Ok(json_bytes(cached)),
        Ok((key, None)) => Some(key),
        Err(error) => {
            static LOG: Throttled = Throttled::new(10_000);
            if let Some(left_out) = LOG.admit() {
                tracing::warn!(%error, left_out, "progress cache unavailable");
            }
            None
        }
    };

    let progress = state.store.progress(player.as_str(), season).await?;
    let view = ProgressView {
        player_id: player.as_str().to_owned(),
        season,
        xp: progress.xp,
        level: state.config.curve.level(progress.xp),
        inventory: progress.inventory,
        inventory_count: progress.inventory_count,
        pending_rewards: progress.pending,
        pending_count: progress.pending_count,
        updated_at: rfc3339_or_never(progress.updated_at_ms),
    };
    let body = Bytes::from(serde_json::to_vec(&view).map_err(|error| {
        tracing::error!(%error, "cannot encode progress");
        Problem::internal()
    })?);
    // A view read on a replica may predate the latest change: cached, it would hide that change
    // for the whole TTL even once the replica caught up.
    if let Some(key) = key.filter(|_| !progress.from_replica) {
        if let Err(error) = state.cache.cache_put(&key, body.clone(), CACHE_TTL).await {
            static LOG: Throttled = Throttled::new(10_000);
            if let Some(left_out) = LOG.admit() {
                tracing::warn!(%error, left_out, "cannot cache progress");
            }
        }
    }
    Ok(json_bytes(body))
}

/// What a cursor names of a listed reward: its position and id (an id a cursor cannot carry,
/// never written by progression, is replaced: the position alone says where the next page
/// starts).
fn cursor_key(listed: &ListedReward) -> (i64, &str) {
    let id = listed.reward.reward_id.as_str();
    (listed.position, if is_label(id) { id } else { "reward" })
}

/// A page of a player's pending rewards, of every season, oldest first, after `cursor`.
#[utoipa::path(
    get, path = "/players/{id}/rewards", tag = "progression", params(PlayerPath, RewardsQuery),
    responses(
        (status = 200, description = "A page of the player's pending rewards (none for an unknown player)", body = RewardPage),
        ReadFailures,
    )
)]
#[tracing::instrument(skip_all, fields(player))]
pub(crate) async fn list_rewards(
    State(state): State<ProgressionState>,
    PlayerPath(player): PlayerPath,
    Query(query): Query<RewardsQuery>,
) -> Result<Json<RewardPage>, Problem> {
    tracing::Span::current().record("player", player.as_str());
    let limit = usize::try_from(query.limit.map_or(DEFAULT_PAGE, Bounded::get)).unwrap_or(100);
    let after = match query.cursor.as_deref() {
        Some(cursor) => Some(parse_cursor(cursor)?.0),
        None => None,
    };
    // One more than the page: whether another page follows.
    let read = u32::try_from(limit + 1).unwrap_or(u32::MAX);
    let mut listed = state
        .store
        .pending_rewards(player.as_str(), after, read)
        .await?;
    let more = listed.len() > limit;
    listed.truncate(limit);
    let next_cursor = more
        .then(|| next_cursor(&listed, limit, cursor_key))
        .flatten();
    Ok(Json(RewardPage {
        player_id: player.as_str().to_owned(),
        rewards: listed.into_iter().map(|l| l.reward).collect(),
        next_cursor,
    }))
}

/// A page of a player's inventory, sorted by item, after the item `cursor` names.
#[utoipa::path(
    get, path = "/players/{id}/inventory", tag = "progression", params(PlayerPath, InventoryQuery),
    responses(
        (status = 200, description = "A page of the player's inventory (none for an unknown player)", body = InventoryPage),
        ReadFailures,
    )
)]
#[tracing::instrument(skip_all, fields(player))]
pub(crate) async fn list_inventory(
    State(state): State<ProgressionState>,
    PlayerPath(player): PlayerPath,
    Query(query): Query<InventoryQuery>,
) -> Result<Json<InventoryPage>, Problem> {
    tracing::Span::current().record("player", player.as_str());
    let limit = usize::try_from(query.limit.map_or(DEFAULT_PAGE, Bounded::get)).unwrap_or(100);
    let after = match query.cursor.as_deref() {
        Some(cursor) if is_label(cursor) => Some(cursor),
        Some(_) => {
            return Err(Problem::invalid(
                "cursor",
                "must be a nextCursor of an earlier page",
            ))
        }
        None => None,
    };
    // One more than the page: whether another page follows.
    let read = u32::try_from(limit + 1).unwrap_or(u32::MAX);
    let mut inventory = state.store.inventory(player.as_str(), after, read).await?;
    let more = inventory.len() > limit;
    inventory.truncate(limit);
    let next_cursor = match inventory.last().filter(|_| more) {
        // Every item progression writes is a label (a `dropId`, `level_<n>_chest`), which a
        // cursor carries as it is; one that is not was written by something else, and no cursor
        // could continue after it.
        Some(last) if !is_label(&last.item) => {
            tracing::error!(item = ?last.item, "an inventory item no cursor can name");
            return Err(Problem::internal());
        }
        Some(last) => Some(last.item.clone()),
        None => None,
    };
    Ok(Json(InventoryPage {
        player_id: player.as_str().to_owned(),
        inventory,
        next_cursor,
    }))
}

/// Reads `{playerId, rewardId}`, naming the offending field.
fn parse_claim(body: &[u8]) -> Result<(PlayerId, String), Problem> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::invalid("body", format!("not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| Problem::invalid("body", "must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "playerId" | "rewardId"))
    {
        return Err(Problem::invalid(k, "unknown field"));
    }
    let player = obj
        .get("playerId")
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::invalid("playerId", "required string"))?;
    let player = PlayerId::parse(player).map_err(|r| Problem::invalid("playerId", r))?;
    let reward = obj
        .get("rewardId")
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::invalid("rewardId", "required string"))?;
    if !is_label(reward) {
        return Err(Problem::invalid(
            "rewardId",
            "must be 1..=64 characters of [A-Za-z0-9_.:-]",
        ));
    }
    Ok((player, reward.to_owned()))
}

/// Claims a pending reward and returns its signed receipt; claiming again returns the same one.
#[utoipa::path(
    post, path = "/rewards/claim", tag = "progression",
    request_body = ClaimRequest,
    params(SignatureHeaders),
    responses(
        (status = 200, description = "The receipt (the first one, if claimed before)", body = Receipt),
        Conflict,
        SignedFailures,
    )
)]
#[tracing::instrument(skip_all, fields(player, reward))]
pub(crate) async fn claim_reward(
    State(state): State<ProgressionState>,
    signed: Signed,
) -> Result<Json<Receipt>, Problem> {
    let now = signed.at_ms;
    let (player, reward_id) = parse_claim(&signed.body)?;
    let span = tracing::Span::current();
    span.record("player", player.as_str());
    span.record("reward", reward_id.as_str());

    // The one reward, as last committed: not every pending reward of the player.
    let pending = state
        .store
        .pending_reward(player.as_str(), &reward_id)
        .await?;
    let item = match pending {
        Some(r) => r.item,
        // Not pending: claimed before (the repository returns that receipt) or never earned.
        // A level reward's item follows from its id; a drop's is only known while pending.
        None => item_of_level_reward(&reward_id).unwrap_or_default(),
    };
    let receipt_id = Uuid::now_v7().to_string();
    let timestamp = now.div_euclid(1000);
    let sig = state.signatures.keys.receipt_keys().sign_receipt(
        &receipt_id,
        player.as_str(),
        &item,
        timestamp,
    );
    let receipt = Receipt {
        receipt_id,
        player_id: player.as_str().to_owned(),
        item,
        timestamp,
        sig,
    };

    // The claim and the dropping of the cached view it makes stale are not parted by a client
    // that goes away (a view listing a claimed reward as pending would be served until it
    // lapses).
    liveops_http::uninterrupted(async move {
        claimed(&state, player.as_str(), &reward_id, receipt).await
    })
    .await
}

/// Claims `reward_id` for `player` with `receipt`, and drops the player's cached view.
async fn claimed(
    state: &ProgressionState,
    player: &str,
    reward_id: &str,
    receipt: Receipt,
) -> Result<Json<Receipt>, Problem> {
    match state.store.claim_reward(player, reward_id, receipt).await? {
        RewardClaim::Issued(r) => {
            metrics::counter!("rewards_claimed_total").increment(1);
            cache::invalidate(state.cache.as_ref(), player).await;
            tracing::info!(receipt = %r.receipt_id, item = %r.item, "reward claimed");
            Ok(Json(r))
        }
        RewardClaim::AlreadyClaimed(r) => {
            // The first claim may have committed yet failed before its own drop (a commit that
            // timed out, a crash): a view listing the reward as pending goes now.
            cache::invalidate(state.cache.as_ref(), player).await;
            Ok(Json(r))
        }
        RewardClaim::NotEarned => Err(Problem::conflict(
            "reward-not-earned",
            format!("player {player} has no reward {reward_id:?} to claim"),
        )),
    }
}

/// Checks a receipt's signature: any tampered field makes it invalid.
#[utoipa::path(
    post, path = "/receipts/verify", tag = "progression",
    request_body = Receipt,
    responses(
        (status = 200, description = "Whether the receipt is authentic", body = Verification),
        BadRequest,
        TooLarge,
    )
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn verify_receipt(
    State(state): State<ProgressionState>,
    Json(receipt): Json<Receipt>,
) -> Result<Json<Verification>, Problem> {
    Ok(Json(
        state
            .signatures
            .keys
            .receipt_keys()
            .verify_receipt(&receipt),
    ))
}
