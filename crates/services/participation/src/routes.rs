//! `POST /campaigns/{id}/entries` (signed), `GET /campaigns/{id}/entrants` (a page at a time).
//!
//! An entry is `201` the first time, and `200` with the same entry when the very same signed
//! request comes again (a game server's retry). Another request for a player who already entered
//! in the current slot (the campaign, or the UTC day for `daily`) is `409 entry-limit-reached`.

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use liveops_core::stores::{Campaign, CampaignState, Entered, Entry};
use liveops_core::{PlayerId, Turns};
use liveops_http::responses::{LookupFailures, SignedLookupFailures};
use liveops_http::{
    campaign_or_404, check_id, parse_json, rfc3339, Bounded, IdPath, Json, Problem, Query,
    SignatureHeaders, Signed,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;
use utoipa::{IntoParams, ToSchema};

use crate::ParticipationState;

/// Whole entrant lists a process reads at once (`GET .../draw` with its list, or not drawn yet):
/// a million entrants are tens of megabytes read, sorted and written out per request, and anyone
/// may ask, so the memory they take is bounded by this many lists.
const WHOLE_LISTS: usize = 2;
/// How long a request waits for a turn before it is answered 503 (`Retry-After`).
const WHOLE_LIST_WAIT: Duration = Duration::from_secs(10);
/// The turns at reading whole lists, per process.
static WHOLE_LIST_TURNS: LazyLock<Turns> =
    LazyLock::new(|| Turns::new(WHOLE_LISTS, WHOLE_LIST_WAIT));

/// Entrants on a page of `GET /campaigns/{id}/entrants` unless `limit` says otherwise.
const DEFAULT_PAGE: i64 = 1000;
/// Most entrants on a page of `GET /campaigns/{id}/entrants`.
pub(crate) const MAX_PAGE: i64 = 10_000;
/// The `limit` of `GET /campaigns/{id}/entrants`: 1 to [`MAX_PAGE`].
type PageLimit = Bounded<1, MAX_PAGE>;

/// A turn at reading a whole list, per process; 503 after waiting [`WHOLE_LIST_WAIT`].
pub(crate) async fn whole_list_turn() -> Result<OwnedSemaphorePermit, Problem> {
    take_turn(&WHOLE_LIST_TURNS).await
}

/// A turn at reading a whole list from `turns`; 503 past their wait.
async fn take_turn(turns: &Turns) -> Result<OwnedSemaphorePermit, Problem> {
    turns.take().await.ok_or_else(|| {
        metrics::counter!("participation_list_reads_refused_total").increment(1);
        let mut p = Problem::unavailable(format!(
            "{WHOLE_LISTS} entrant lists are being read; retry shortly"
        ));
        p.retry_after = Some(5);
        p
    })
}

/// The body of `POST /campaigns/{id}/entries`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryRequest {
    /// Who enters.
    #[schema(pattern = "^[A-Za-z0-9_]{3,50}$", min_length = 3, max_length = 50)]
    pub player_id: String,
    /// Optional: the campaign of the path, so a first-scheme (`sha256=`) signature covers it too
    /// (a `v2=` signature covers the path already); with `sha256=`, a player entering two
    /// campaigns within one second needs it: the two bodies would be equal.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$", min_length = 1, max_length = 64)]
    pub campaign_id: Option<String>,
}

/// An entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    /// Its id.
    pub entry_id: String,
    /// Which campaign.
    pub campaign_id: String,
    /// Who entered.
    pub player_id: String,
    /// The slot it counts in: `once`, or the UTC day.
    pub slot: String,
    /// When (RFC 3339).
    pub entered_at: String,
}

impl From<Entry> for EntryView {
    fn from(e: Entry) -> Self {
        Self {
            entry_id: e.entry_id,
            campaign_id: e.campaign_id,
            player_id: e.player_id,
            slot: e.slot,
            entered_at: rfc3339(e.entered_at_ms),
        }
    }
}

/// A page of who entered a campaign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntrantList {
    /// Which campaign.
    pub campaign_id: String,
    /// How many distinct players entered, on every page together.
    pub count: u64,
    /// This page of the distinct players, sorted by bytes (the draw's `entrants` order).
    pub entrants: Vec<String>,
    /// The `cursor` of the next page (the last entrant of this one); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The query of `GET /campaigns/{id}/entrants`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EntrantsQuery {
    /// How many entrants, sorted by bytes (default 1000).
    #[param(inline)]
    limit: Option<PageLimit>,
    /// The `nextCursor` of the previous page: this page starts after this player id.
    #[param(value_type = Option<String>, pattern = "^[A-Za-z0-9_]{3,50}$")]
    #[param(min_length = 3, max_length = 50)]
    cursor: Option<PlayerId>,
}

fn not_live(id: &str, state: Option<CampaignState>) -> Problem {
    let state = state.map_or("unknown", CampaignState::as_str);
    Problem::conflict(
        "campaign-not-live",
        format!("campaign {id} is {state}: it takes entries only while live"),
    )
}

/// Enters a player into a live campaign, signed like events.
#[utoipa::path(
    post, path = "/campaigns/{id}/entries", tag = "participation", params(IdPath, SignatureHeaders),
    request_body = EntryRequest,
    responses(
        (status = 201, description = "Entered", body = EntryView),
        (status = 200, description = "The same signed request again: the entry it made", body = EntryView),
        (status = 409, description = "Not live (`campaign-not-live`), the player's level is too low (`not-eligible`), they entered in this slot already (`entry-limit-reached`), the campaign holds its `CAMPAIGN_MAX_ENTRANTS` players and this one is not among them (`campaign-full`), or this signed request made an entry in another campaign (`signed-request-reused`)", body = Problem, content_type = "application/problem+json"),
        SignedLookupFailures,
    )
)]
#[tracing::instrument(skip_all, fields(campaign = %id, player))]
pub(crate) async fn enter_campaign(
    State(state): State<ParticipationState>,
    IdPath(id): IdPath,
    signed: Signed,
) -> Result<(StatusCode, Json<EntryView>), Problem> {
    let body: EntryRequest = parse_json(&signed.body)?;
    // Malformed is 400 as the document says; only a well-formed other campaign is a mismatch.
    let player = PlayerId::parse(&body.player_id).map_err(|r| Problem::invalid("playerId", r))?;
    if let Some(c) = &body.campaign_id {
        check_id("campaignId", c)?;
    }
    if body.campaign_id.as_ref().is_some_and(|c| *c != id) {
        return Err(Problem::path_mismatch(
            "campaignId",
            "must be the campaign of the path",
        ));
    }
    tracing::Span::current().record("player", player.as_str());
    let sig = signed.signature.0;
    let now = signed.at_ms;

    if let Some(answer) = entered_before(&state, &sig, &id).await? {
        return Ok(answer);
    }
    let campaign = campaign_or_404(&*state.campaigns, &id).await?;
    if campaign.state != CampaignState::Live {
        return Err(not_live(&id, Some(campaign.state)));
    }
    // Live until the scheduler's next tick moves it, which may come late; a live campaign's
    // times no longer change, so this holds in the store's transaction too.
    if now >= campaign.ends_at_ms || now < campaign.starts_at_ms {
        return Err(Problem::conflict(
            "campaign-not-live",
            format!(
                "campaign {id} runs from {} to {}: it takes entries only then",
                rfc3339(campaign.starts_at_ms),
                rfc3339(campaign.ends_at_ms)
            ),
        ));
    }
    let cfg = &state.config;
    let season = cfg.calendar.season_at_ms(now);
    let level = cfg
        .curve
        .level(state.xp.season_xp(player.as_str(), season).await?);
    if level < campaign.min_level {
        return Err(Problem::conflict(
            "not-eligible",
            format!(
                "player {} is level {level}; this campaign needs level {}",
                player.as_str(),
                campaign.min_level
            ),
        ));
    }
    room_for(&state, &campaign, player.as_str()).await?;
    let entry = Entry {
        entry_id: format!("ent_{}", uuid::Uuid::now_v7().simple()),
        campaign_id: id.clone(),
        player_id: player.as_str().to_owned(),
        slot: campaign.entry_limit.slot(now),
        entered_at_ms: now,
        request_sig: sig.clone(),
    };
    let entered = match state.entries.enter(&entry, cfg.max_entrants).await {
        Ok(entered) => entered,
        // The signature's own entry written meanwhile (the same request sent to two campaigns
        // at once) clashes on the request's unique key: answered as if it came first.
        Err(error) => return entered_before(&state, &sig, &id).await?.ok_or(error.into()),
    };
    match entered {
        Entered::Created(e) => {
            metrics::counter!("entries_total").increment(1);
            tracing::info!(entry = %e.entry_id, "player entered");
            Ok((StatusCode::CREATED, Json(EntryView::from(e))))
        }
        Entered::Existing(e) if e.request_sig == sig => {
            Ok((StatusCode::OK, Json(EntryView::from(e))))
        }
        Entered::Existing(e) => Err(Problem::conflict(
            "entry-limit-reached",
            match campaign.entry_limit {
                liveops_core::stores::EntryLimit::Once => {
                    format!(
                        "player entered this campaign already (entry {})",
                        e.entry_id
                    )
                }
                liveops_core::stores::EntryLimit::Daily => {
                    format!("player entered today already (entry {})", e.entry_id)
                }
            },
        )),
        Entered::NotLive(s) => Err(not_live(&id, s)),
        Entered::Full => Err(campaign_full(&id, cfg.max_entrants)),
    }
}

/// Whether `campaign` takes `player`, as far as its entrant count as committed says (one key
/// read): 409 `campaign-full` for a player not in it yet once it holds `CAMPAIGN_MAX_ENTRANTS`
/// players, before any write. The entry's transaction decides exactly (`EntryStore::enter`):
/// this spares a full campaign the write transactions of the players it refuses.
async fn room_for(
    state: &ParticipationState,
    campaign: &Campaign,
    player: &str,
) -> Result<(), Problem> {
    let max = state.config.max_entrants;
    if state.entries.entrant_count(&campaign.id).await? < max {
        return Ok(());
    }
    let ids = std::slice::from_ref(&campaign.id);
    if !state.entries.entries_of(player, ids).await?.is_empty() {
        return Ok(());
    }
    Err(campaign_full(&campaign.id, max))
}

/// 409 `campaign-full`: campaign `id` holds its `max` players, and this one is not among them.
fn campaign_full(id: &str, max: u64) -> Problem {
    metrics::counter!("campaign_entries_refused_total", "reason" => "full").increment(1);
    Problem::conflict(
        "campaign-full",
        format!(
            "campaign {id} holds its {max} players (CAMPAIGN_MAX_ENTRANTS): it takes no new one"
        ),
    )
}

/// A signature makes one entry: the very same request again (a retry) gets it back (200); sent
/// to another campaign, it is refused as a reuse (409: the signature is good, so not a 401);
/// `None` if it made no entry yet.
async fn entered_before(
    state: &ParticipationState,
    sig: &str,
    campaign_id: &str,
) -> Result<Option<(StatusCode, Json<EntryView>)>, Problem> {
    match state.entries.entry_by_request(sig).await? {
        Some(e) if e.campaign_id == campaign_id => Ok(Some((StatusCode::OK, Json(e.into())))),
        Some(_) => Err(Problem::conflict(
            "signed-request-reused",
            "this signed request was already used for another campaign; sign a new one (a v2= signature covers the campaign's path; with sha256=, put `campaignId` in the body)",
        )),
        None => Ok(None),
    }
}

/// A page of the distinct players who entered a campaign, sorted by bytes, after `cursor`.
#[utoipa::path(
    get, path = "/campaigns/{id}/entrants", tag = "participation", params(IdPath, EntrantsQuery),
    responses(
        (status = 200, description = "A page of the entrants", body = EntrantList),
        LookupFailures,
    )
)]
pub(crate) async fn list_entrants(
    State(state): State<ParticipationState>,
    IdPath(id): IdPath,
    Query(query): Query<EntrantsQuery>,
) -> Result<Json<EntrantList>, Problem> {
    let campaign = campaign_or_404(&*state.campaigns, &id).await?;
    let limit = usize::try_from(query.limit.map_or(DEFAULT_PAGE, Bounded::get)).unwrap_or(1000);
    let after = query.cursor.as_ref().map(PlayerId::as_str);
    // One more than the page: whether another page follows.
    let read = u32::try_from(limit + 1).unwrap_or(u32::MAX);
    let (mut entrants, count) = tokio::try_join!(
        async {
            let page = state.entries.entrants_page(&id, after, read).await;
            page.map_err(Problem::from)
        },
        async {
            let count = state.entries.entrant_count(&campaign.id).await;
            count.map_err(Problem::from)
        },
    )?;
    let next_cursor = (entrants.len() > limit)
        .then(|| {
            entrants.truncate(limit);
            entrants.last().cloned()
        })
        .flatten();
    Ok(Json(EntrantList {
        campaign_id: id,
        count,
        entrants,
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past its turns a list read waits, then is answered 503 with a retry hint; a turn given
    /// back is taken.
    #[tokio::test]
    async fn whole_lists_take_turns() {
        let turns = Turns::new(WHOLE_LISTS, Duration::from_millis(50));
        let first = take_turn(&turns).await;
        let second = take_turn(&turns).await;
        assert!(first.is_ok() && second.is_ok());
        let Err(busy) = take_turn(&turns).await else {
            panic!("a third list read at once");
        };
        assert_eq!((busy.status, busy.retry_after), (503, Some(5)));
        drop(first);
        assert!(take_turn(&turns).await.is_ok());
    }
}
