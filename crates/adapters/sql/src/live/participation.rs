//! Entries, outcomes and the XP read on SQL. An entry is added in a transaction that holds the
//! campaign's row shared: the scheduler's `UPDATE` to `ended` waits for it (and an entry after
//! that sees the new state), so every entry that got 201 is in the draw.

use liveops_core::stores::{Award, CampaignEvent, CampaignState, Entered, Entry, Outcome};
use liveops_core::PortResult;

use super::campaigns::parse_state;
use super::{from_json, sql_impl, to_json};
use crate::dialect::{db_error, to_u64, Text};
use crate::repository::within;
use crate::statement::Statement;

/// An entry row: id, campaign, player, slot, time, request signature.
type EntryRow = (Text, Text, Text, Text, i64, Text);

/// `SELECT` of an entry row, with `$tail` after the table.
macro_rules! select_entries {
    ($tail:literal) => {
        concat!(
            "SELECT entry_id, campaign_id, player_id, slot, entered_at, request_sig \
             FROM campaign_entries",
            $tail
        )
    };
}

fn entry_of((entry_id, campaign_id, player_id, slot, entered_at_ms, sig): EntryRow) -> Entry {
    Entry {
        entry_id: entry_id.0,
        campaign_id: campaign_id.0,
        player_id: player_id.0,
        slot: slot.0,
        entered_at_ms,
        request_sig: sig.0,
    }
}

/// An outcome row, in [`SELECT_OUTCOME`]'s order.
type OutcomeRow = (
    Text,
    Text,
    Text,
    Option<Text>,
    Option<Text>,
    Option<i64>,
    Option<Text>,
    Text,
    i64,
);

const SELECT_OUTCOME: &str = "SELECT algorithm, entrants, entrants_hash, seed, commitment, \
     winner_count, source, awards, decided_at FROM campaign_outcomes WHERE campaign_id = ?";

fn outcome_of(campaign_id: &str, row: OutcomeRow) -> PortResult<Outcome> {
    let (algorithm, entrants, hash, seed, commitment, winners, source, awards, decided_at_ms) = row;
    Ok(Outcome {
        campaign_id: campaign_id.to_owned(),
        algorithm: algorithm.0,
        entrants: from_json("outcome entrants", &entrants.0)?,
        entrants_hash: hash.0,
        seed: seed.map(String::from),
        commitment: commitment.map(String::from),
        winner_count: winners.map(|w| u32::try_from(w).unwrap_or(u32::MAX)),
        source: source.map(String::from),
        awards: from_json::<Vec<Award>>("outcome awards", &awards.0)?,
        decided_at_ms,
    })
}

sql_impl! {
    pub(crate) async fn enter(&self, entry: &Entry) -> PortResult<Entered> {
        within::<DB, _>(async {
            let (mut tx, _turn) = self.begin_write().await?;
            let sql = format!(
                "{}{}",
                DB::placeholders("SELECT state FROM campaigns WHERE id = ?"),
                DB::LOCK_SHARED
            );
            let state: Option<(Text,)> = sqlx::query_as(&sql)
                .bind(entry.campaign_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            let state = state.map(|(s,)| parse_state(&s.0)).transpose()?;
            if state != Some(CampaignState::Live) {
                tx.rollback().await.map_err(db_error::<DB>)?;
                return Ok(Entered::NotLive(state));
            }
            let sql = format!(
                "{}{}",
                DB::placeholders(
                    "INSERT INTO campaign_entries \
                     (entry_id, campaign_id, player_id, slot, entered_at, request_sig) \
                     VALUES (?, ?, ?, ?, ?, ?)"
                ),
                DB::keep_existing("campaign_id, player_id, slot", "entry_id")
            );
            sqlx::query(&sql)
                .bind(entry.entry_id.as_str())
                .bind(entry.campaign_id.as_str())
                .bind(entry.player_id.as_str())
                .bind(entry.slot.as_str())
                .bind(entry.entered_at_ms)
                .bind(entry.request_sig.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            let sql = DB::placeholders(select_entries!(
                " WHERE campaign_id = ? AND player_id = ? AND slot = ?"
            ));
            let row: EntryRow = sqlx::query_as(&sql)
                .bind(entry.campaign_id.as_str())
                .bind(entry.player_id.as_str())
                .bind(entry.slot.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            tx.commit().await.map_err(db_error::<DB>)?;
            let stored = entry_of(row);
            Ok(if stored.entry_id == entry.entry_id {
                Entered::Created(stored)
            } else {
                Entered::Existing(stored)
            })
        })
        .await
    }

    pub(crate) async fn entry_by_request(&self, request_sig: &str) -> PortResult<Option<Entry>> {
        within::<DB, _>(async {
            let sql = DB::placeholders(select_entries!(" WHERE request_sig = ?"));
            let row: Option<EntryRow> = sqlx::query_as(&sql)
                .bind(request_sig)
                .fetch_optional(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            Ok(row.map(entry_of))
        })
        .await
    }

    pub(crate) async fn entrants(&self, campaign_id: &str) -> PortResult<Vec<String>> {
        within::<DB, _>(async {
            let sql = DB::placeholders(
                "SELECT DISTINCT player_id FROM campaign_entries WHERE campaign_id = ?",
            );
            let rows: Vec<(Text,)> = sqlx::query_as(&sql)
                .bind(campaign_id)
                .fetch_all(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            // Sorted here, by bytes, whatever the database's collation.
            Ok(liveops_core::draw::entrants(rows.into_iter().map(|(p,)| p.0)))
        })
        .await
    }

    pub(crate) async fn entries_of(
        &self,
        player_id: &str,
        campaign_ids: &[String],
    ) -> PortResult<Vec<Entry>> {
        within::<DB, _>(async {
            let mut out = Vec::new();
            for chunk in campaign_ids.chunks(DB::MAX_BIND - 1) {
                let mut qb = Statement::<DB>::new(select_entries!(" WHERE player_id = "));
                qb.bind(player_id).push(" AND campaign_id");
                qb.in_list(chunk.iter().map(String::as_str));
                qb.push(" ORDER BY entered_at");
                let (sql, args) = qb.finish()?;
                let rows: Vec<EntryRow> = sqlx::query_as_with(&sql, args)
                    .persistent(false)
                    .fetch_all(self.pool())
                    .await
                    .map_err(db_error::<DB>)?;
                out.extend(rows.into_iter().map(entry_of));
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn record_outcome(
        &self,
        outcome: &Outcome,
        event: Option<&CampaignEvent>,
    ) -> PortResult<Outcome> {
        let entrants = to_json("outcome entrants", &outcome.entrants)?;
        let awards = to_json("outcome awards", &outcome.awards)?;
        within::<DB, _>(async {
            let (mut tx, _turn) = self.begin_write().await?;
            // The campaign's row, locked: replicas deciding the same campaign take turns here.
            let sql = format!(
                "{}{}",
                DB::placeholders("SELECT id FROM campaigns WHERE id = ?"),
                DB::LOCK_ROWS
            );
            let _: Option<(Text,)> = sqlx::query_as(&sql)
                .bind(outcome.campaign_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            let sql = DB::placeholders(SELECT_OUTCOME);
            let existing: Option<OutcomeRow> = sqlx::query_as(&sql)
                .bind(outcome.campaign_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            if let Some(row) = existing {
                tx.rollback().await.map_err(db_error::<DB>)?;
                return outcome_of(&outcome.campaign_id, row);
            }
            let sql = DB::placeholders(
                "INSERT INTO campaign_outcomes (campaign_id, algorithm, entrants, entrants_hash, \
                 seed, commitment, winner_count, source, awards, decided_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            );
            sqlx::query(&sql)
                .bind(outcome.campaign_id.as_str())
                .bind(outcome.algorithm.as_str())
                .bind(entrants.as_str())
                .bind(outcome.entrants_hash.as_str())
                .bind(outcome.seed.as_deref())
                .bind(outcome.commitment.as_deref())
                .bind(outcome.winner_count.map(i64::from))
                .bind(outcome.source.as_deref())
                .bind(awards.as_str())
                .bind(outcome.decided_at_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            if let Some(e) = event {
                Self::insert_event(&mut tx, e).await?;
            }
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(outcome.clone())
        })
        .await
    }

    pub(crate) async fn outcome(&self, campaign_id: &str) -> PortResult<Option<Outcome>> {
        within::<DB, _>(async {
            let sql = DB::placeholders(SELECT_OUTCOME);
            let row: Option<OutcomeRow> = sqlx::query_as(&sql)
                .bind(campaign_id)
                .fetch_optional(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            row.map(|r| outcome_of(campaign_id, r)).transpose()
        })
        .await
    }

    pub(crate) async fn season_xp(&self, player_id: &str, season: i64) -> PortResult<u64> {
        within::<DB, _>(async {
            let sql =
                DB::placeholders("SELECT xp FROM player_xp WHERE player_id = ? AND season = ?");
            let row: Option<(i64,)> = sqlx::query_as(&sql)
                .bind(player_id)
                .bind(season)
                .fetch_optional(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            Ok(row.map_or(0, |(xp,)| to_u64(xp)))
        })
        .await
    }
}
