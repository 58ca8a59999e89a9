//! Campaigns and the outbox of their events on SQL. Every state change is a conditional
//! `UPDATE .. WHERE id = ? AND state = ?`: whichever replica's statement matches first moves the
//! campaign, the others match nothing.

use liveops_core::stores::{
    AuditEntry, Campaign, CampaignEvent, CampaignPage, CampaignState, EntryLimit, Keyed,
    KeyedOutcome, Reward,
};
use liveops_core::{PortError, PortResult};

use liveops_core::sealing::{Sealer, Stored};

use super::sealed::{opened_or_passed_over, sealed, seed_row};
use super::{from_json, sql_impl, to_json};
use crate::dialect::{to_i64, Text};
use crate::repository::within;

/// A campaign row, in [`select_campaigns`]'s column order.
pub(crate) type CampaignRow = (
    Text,
    Text,
    Text,
    i64,
    i64,
    i64,
    Text,
    Text,
    Text,
    Option<Text>,
    Option<Text>,
    Text,
    i64,
    i64,
    Option<Text>,
);

/// `SELECT` of a campaign row, with `$tail` after the table.
macro_rules! select_campaigns {
    ($tail:literal) => {
        concat!(
            "SELECT id, title, description, starts_at, ends_at, min_level, entry_limit, reward, \
             state, seed, commitment, created_by, created_at, updated_at, seed_key FROM campaigns",
            $tail
        )
    };
}

pub(crate) fn parse_state(s: &str) -> PortResult<CampaignState> {
    CampaignState::parse(s).ok_or_else(|| PortError::Corrupt(format!("unknown state {s:?}")))
}

/// A campaign row read back, its seed opened with `sealer`.
fn campaign_of(sealer: &Sealer, row: CampaignRow) -> PortResult<Campaign> {
    let (
        id,
        title,
        description,
        starts_at_ms,
        ends_at_ms,
        min_level,
        limit,
        reward,
        state,
        seed,
        commitment,
        created_by,
        created_at_ms,
        updated_at_ms,
        seed_key,
    ) = row;
    // A seed that does not open (its key gone) is read as none, so the campaign is still
    // listed, scheduled and cancelled, and only its draw fails; an update keeps the stored one.
    let seed = seed.and_then(|seed| {
        opened_or_passed_over(sealer, "campaigns", &seed_row(&id.0), seed, seed_key)
    });
    Ok(Campaign {
        id: id.0,
        title: title.0,
        description: description.0,
        starts_at_ms,
        ends_at_ms,
        min_level: u32::try_from(min_level).unwrap_or(u32::MAX),
        entry_limit: EntryLimit::parse(&limit.0)
            .ok_or_else(|| PortError::Corrupt(format!("unknown entry limit {:?}", limit.0)))?,
        reward: from_json::<Reward>("campaign reward", &reward.0)?,
        state: parse_state(&state.0)?,
        seed,
        commitment: commitment.map(String::from),
        created_by: created_by.0,
        created_at_ms,
        updated_at_ms,
    })
}

/// The campaigns whose time has come, up to a number, in start order: the scheduled ones whose
/// start has come (along `campaigns_by_state (state, starts_at)`, 0003) and the live ones whose
/// end has (along `campaigns_by_end (state, ends_at)`, 0018), each half read on its own (an `OR`
/// of both may be read as a scan of every campaign ever created). Bind the time and the number
/// for each half, then the number.
pub const DUE_CAMPAIGNS: &str = concat!(
    "SELECT * FROM (SELECT * FROM (",
    select_campaigns!(
        " WHERE state = 'scheduled' AND starts_at <= ? ORDER BY starts_at, id LIMIT ?"
    ),
    ") AS to_start UNION ALL SELECT * FROM (",
    select_campaigns!(" WHERE state = 'live' AND ends_at <= ? ORDER BY starts_at, id LIMIT ?"),
    ") AS to_end) AS due ORDER BY starts_at, id LIMIT ?"
);

/// The SQL that writes an outbox event; bind campaign, kind, time, data and public id.
pub(crate) const INSERT_EVENT: &str =
    "INSERT INTO campaign_events (campaign_id, kind, at_ms, data, dispatched, public_id) \
     VALUES (?, ?, ?, ?, 0, ?)";

/// A new outbox event's public id, the `id` of its webhook deliveries: `evt_` and 32 hex
/// digits of a random 128-bit value, unique across databases and restores (the row's key is
/// given again after a restore, and collides between deployments).
pub(crate) fn new_event_id() -> String {
    format!("evt_{:032x}", rand::random::<u128>())
}

sql_impl! {
    /// Binds a campaign's columns from `title` to `state` in table order (`reward` is its
    /// reward as JSON): the part of a row that both an insert and an update write.
    fn bind_editable<'q>(
        query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
        c: &'q Campaign,
        reward: &'q str,
    ) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>> {
        query
            .bind(c.title.as_str())
            .bind(c.description.as_str())
            .bind(c.starts_at_ms)
            .bind(c.ends_at_ms)
            .bind(i64::from(c.min_level))
            .bind(c.entry_limit.as_str())
            .bind(reward)
            .bind(c.state.as_str())
    }

    /// `c`'s seed as its row stores it.
    fn stored_seed(&self, c: &Campaign) -> PortResult<Option<Stored>> {
        c.seed
            .as_deref()
            .map(|seed| sealed(&self.sealer.load(), &seed_row(&c.id), seed))
            .transpose()
    }

    pub(crate) async fn create_campaign(
        &self,
        keyed: Option<&Keyed>,
        c: &Campaign,
        audit: &AuditEntry,
    ) -> PortResult<KeyedOutcome> {
        let reward = to_json("campaign reward", &c.reward)?;
        let sql = DB::placeholders(
            "INSERT INTO campaigns (id, title, description, starts_at, ends_at, min_level, \
             entry_limit, reward, state, seed, commitment, seed_key, created_by, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        let seed = self.stored_seed(c)?;
        let insert = sqlx::query(&sql).bind(c.id.as_str());
        let insert = Self::bind_editable(insert, c, &reward)
            .bind(seed.as_ref().map(|s| s.text.as_str()))
            .bind(c.commitment.as_deref())
            .bind(seed.as_ref().and_then(|s| s.key_id.as_deref()))
            .bind(c.created_by.as_str())
            .bind(c.created_at_ms)
            .bind(c.updated_at_ms);
        self.run_keyed("create_campaign", keyed, insert, audit).await
    }

    pub(crate) async fn campaign(&self, id: &str) -> PortResult<Option<Campaign>> {
        let sql = DB::placeholders(select_campaigns!(" WHERE id = ?"));
        let sealer = self.sealer.load();
        let of = |row| campaign_of(&sealer, row);
        self.optional_row("campaign", sqlx::query_as(&sql).bind(id), of)
            .await
    }

    pub(crate) async fn campaigns(&self, page: CampaignPage<'_>) -> PortResult<Vec<Campaign>> {
        // The listing's order, continued after the last campaign of the previous page (the
        // first bound repeats the second's so that the index on the creation time, or on the
        // state and creation time of migration 0009, is read from the cursor on).
        let sql = DB::placeholders(match (page.state.is_some(), page.after.is_some()) {
            (false, false) => select_campaigns!(" ORDER BY created_at DESC, id DESC LIMIT ?"),
            (true, false) => {
                select_campaigns!(" WHERE state = ? ORDER BY created_at DESC, id DESC LIMIT ?")
            }
            (false, true) => select_campaigns!(
                " WHERE created_at <= ? AND (created_at < ? OR (created_at = ? AND id < ?)) \
                 ORDER BY created_at DESC, id DESC LIMIT ?"
            ),
            (true, true) => select_campaigns!(
                " WHERE state = ? AND created_at <= ? AND (created_at < ? OR \
                 (created_at = ? AND id < ?)) ORDER BY created_at DESC, id DESC LIMIT ?"
            ),
        });
        let mut query = sqlx::query_as(&sql);
        if let Some(state) = page.state {
            query = query.bind(state.as_str());
        }
        if let Some((at_ms, id)) = page.after {
            query = query.bind(at_ms).bind(at_ms).bind(at_ms).bind(id);
        }
        let query = query.bind(i64::from(page.limit));
        let sealer = self.sealer.load();
        self.all_rows("campaigns", query, |row| campaign_of(&sealer, row))
            .await
    }

    pub(crate) async fn update_campaign(
        &self,
        before: &Campaign,
        next: &Campaign,
        audit: &AuditEntry,
        event: Option<&CampaignEvent>,
    ) -> PortResult<bool> {
        let reward = to_json("campaign reward", &next.reward)?;
        let seed = self.stored_seed(next)?;
        within::<DB, _>("update_campaign", async {
            let (mut tx, _turn) = self.begin_write().await?;
            // The time is read once this write's turn came: a change checked before its end
            // but written after it (cancelling a campaign whose entries closed) matches nothing.
            let sql = DB::placeholders(
                "UPDATE campaigns SET title = ?, description = ?, starts_at = ?, ends_at = ?, \
                 min_level = ?, entry_limit = ?, reward = ?, state = ?, \
                 seed = COALESCE(?, seed), commitment = ?, \
                 seed_key = CASE WHEN ? IS NULL THEN seed_key ELSE ? END, updated_at = ? \
                 WHERE id = ? AND state = ? AND updated_at = ? AND (state = ? OR ends_at > ?)",
            );
            // A seed, once set, stays: `next` has none only when the stored one did not open.
            let (text, key) = match &seed {
                Some(s) => (Some(s.text.as_str()), s.key_id.as_deref()),
                None => (None, None),
            };
            let update = Self::bind_editable(sqlx::query(&sql), next, &reward)
                .bind(text)
                .bind(next.commitment.as_deref())
                .bind(text)
                .bind(key)
                .bind(next.updated_at_ms)
                .bind(before.id.as_str())
                .bind(before.state.as_str())
                .bind(before.updated_at_ms)
                .bind(CampaignState::Draft.as_str())
                .bind(liveops_core::now_ms());
            if !Self::changed_one(&mut tx, update).await? {
                return Self::rolled_back(tx, false).await;
            }
            Self::audited(&mut tx, audit).await?;
            Self::commit_with_event(tx, event).await?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn advance(
        &self,
        id: &str,
        from: CampaignState,
        to: CampaignState,
        event: Option<&CampaignEvent>,
    ) -> PortResult<bool> {
        within::<DB, _>("advance", async {
            let (mut tx, _turn) = self.begin_write().await?;
            let sql = DB::placeholders(
                "UPDATE campaigns SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
            );
            let update = sqlx::query(&sql)
                .bind(to.as_str())
                .bind(liveops_core::now_ms())
                .bind(id)
                .bind(from.as_str());
            if !Self::changed_one(&mut tx, update).await? {
                return Self::rolled_back(tx, false).await;
            }
            Self::commit_with_event(tx, event).await?;
            Ok(true)
        })
        .await
    }

    /// Writes the outbox event, if any, in `tx`, then commits it.
    pub(crate) async fn commit_with_event(
        mut tx: sqlx::Transaction<'static, DB>,
        event: Option<&CampaignEvent>,
    ) -> PortResult<()> {
        if let Some(e) = event {
            let sql = DB::placeholders(INSERT_EVENT);
            let insert = sqlx::query(&sql)
                .bind(e.campaign_id.as_str())
                .bind(e.kind.as_str())
                .bind(e.at_ms)
                .bind(e.data.as_str())
                .bind(new_event_id());
            Self::run(&mut tx, insert).await?;
        }
        tx.commit().await.map_err(crate::dialect::db_error::<DB>)
    }

    pub(crate) async fn due(&self, now_ms: i64, limit: u32) -> PortResult<Vec<Campaign>> {
        let sql = DB::placeholders(DUE_CAMPAIGNS);
        let limit = to_i64(u64::from(limit));
        let query = sqlx::query_as(&sql)
            .bind(now_ms)
            .bind(limit)
            .bind(now_ms)
            .bind(limit)
            .bind(limit);
        let sealer = self.sealer.load();
        self.all_rows("due", query, |row| campaign_of(&sealer, row))
            .await
    }
}
