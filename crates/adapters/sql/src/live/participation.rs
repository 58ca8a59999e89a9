//! Entries, outcomes and the XP read on SQL. An entry is added in a transaction that holds the
//! campaign's row, shared, or alone when the campaign's cap must be read exactly
//! ([`super::entrants`]): the scheduler's `UPDATE` to `ended` waits for it (and an entry after
//! that sees the new state), so every entry that got 201 is in the draw. Where writers take
//! turns (SQLite), the entries that wait for the one writer are written in groups
//! ([`super::groups`]).

use liveops_core::stores::{
    Award, CampaignEvent, CampaignState, Entered, EntriesSummary, Entry, Outcome, OutcomeSummary,
};
use liveops_core::{PortError, PortResult};

use super::campaigns::parse_state;
use super::entrants::{CampaignHold, Room};
use super::groups::{GroupWrite, InTransaction};
use super::{from_json, request_sig_clash, sql_impl, to_json, with_tail};
use crate::dialect::{db_error, to_u64, Text};
use crate::repository::{within, within_bulk};

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

/// The player's entry in a slot of a campaign.
const SELECT_SLOT: &str = select_entries!(" WHERE campaign_id = ? AND player_id = ? AND slot = ?");

fn entry_of(
    (entry_id, campaign_id, player_id, slot, entered_at_ms, sig): EntryRow,
) -> PortResult<Entry> {
    Ok(Entry {
        entry_id: entry_id.0,
        campaign_id: campaign_id.0,
        player_id: player_id.0,
        slot: slot.0,
        entered_at_ms,
        request_sig: sig.0,
    })
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

/// Whether a campaign has an outcome, without reading it.
const DECIDED: &str = "SELECT campaign_id FROM campaign_outcomes WHERE campaign_id = ?";

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

/// An outcome's row without its entrants, in [`SELECT_SUMMARY`]'s order.
type SummaryRow = (Text, Text, Option<Text>, Option<Text>, Option<i64>, Text);

const SELECT_SUMMARY: &str = "SELECT algorithm, entrants_hash, seed, commitment, winner_count, \
     awards FROM campaign_outcomes WHERE campaign_id = ?";

fn summary_of(row: SummaryRow) -> PortResult<OutcomeSummary> {
    let (algorithm, hash, seed, commitment, winners, awards) = row;
    Ok(OutcomeSummary {
        algorithm: algorithm.0,
        entrants_hash: hash.0,
        seed: seed.map(String::from),
        commitment: commitment.map(String::from),
        winner_count: winners.map(|w| u32::try_from(w).unwrap_or(u32::MAX)),
        awards: from_json::<Vec<Award>>("outcome awards", &awards.0)?,
    })
}

sql_impl! {
    pub(crate) async fn enter(&self, entry: &Entry, max_entrants: u64) -> PortResult<Entered> {
        within::<DB, _>("enter", async {
            // With the campaign's row shared first; alone if a new player's stripe is full.
            for hold in [CampaignHold::Shared, CampaignHold::Alone] {
                let write = GroupWrite::Enter {
                    entry: entry.clone(),
                    max_entrants,
                    hold,
                };
                if let Some(entered) = self.write_once(write).await?.entered()? {
                    return Ok(entered);
                }
            }
            Err(PortError::Corrupt(format!(
                "{}: an entry written with its campaign held alone was not answered",
                DB::NAME
            )))
        })
        .await
    }

    /// The player's entry in this entry's slot, as an answer, if there is one.
    pub(super) async fn kept_entry(
        conn: &mut DB::Connection,
        entry: &Entry,
    ) -> Result<Option<PortResult<Entered>>, sqlx::Error> {
        let sql = DB::placeholders(SELECT_SLOT);
        let kept: Option<EntryRow> = sqlx::query_as(&sql)
            .bind(entry.campaign_id.as_str())
            .bind(entry.player_id.as_str())
            .bind(entry.slot.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(kept.map(|row| entry_of(row).map(Entered::Existing)))
    }

    /// Writes `entry` on `conn` (a write transaction's) if its campaign is live, the player has
    /// no entry in its slot, and the campaign has room for them (`max_entrants`), reading the
    /// campaign's row as `hold` says (alone wherever writers take turns; the scheduler's `UPDATE`
    /// to `ended` waits for it either way); or says why not: the entry already there, the
    /// campaign not live, or full. `None`: written with the row shared, its player could not be
    /// counted so; roll back and write it again with the row held alone. The outer error ends
    /// the transaction; the inner one is this entry's alone: its request's signature already
    /// made another entry (a conflicting write, retried by the handler), or a row unreadable.
    pub(super) async fn enter_on(
        conn: &mut DB::Connection,
        entry: &Entry,
        max_entrants: u64,
        hold: CampaignHold,
    ) -> InTransaction<Option<Entered>> {
        let alone = hold == CampaignHold::Alone || DB::GROUP_WRITES;
        let lock = if alone { DB::LOCK_ROWS } else { DB::LOCK_SHARED };
        let sql = with_tail::<DB>("SELECT state FROM campaigns WHERE id = ?", lock);
        let state: Option<(Text,)> = sqlx::query_as(&sql)
            .bind(entry.campaign_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        let state = match state.map(|(s,)| parse_state(&s.0)).transpose() {
            Ok(state) => state,
            Err(corrupt) => return Ok(Err(corrupt)),
        };
        if state != Some(CampaignState::Live) {
            return Ok(Ok(Some(Entered::NotLive(state))));
        }
        // Alone, the campaign's entries and count hold still: a new player is refused once it
        // is full, before anything is written.
        let room = if alone {
            Some(Self::room_on(conn, entry, max_entrants).await?)
        } else {
            None
        };
        if matches!(room, Some(Room::Full)) {
            return Ok(Ok(Some(Entered::Full)));
        }
        let skip = DB::skip_taken("campaign_id, player_id, slot");
        let sql = with_tail::<DB>(
            "INSERT INTO campaign_entries \
             (entry_id, campaign_id, player_id, slot, entered_at, request_sig) \
             VALUES (?, ?, ?, ?, ?, ?)",
            skip.as_deref().unwrap_or_default(),
        );
        let insert = sqlx::query(&sql)
            .bind(entry.entry_id.as_str())
            .bind(entry.campaign_id.as_str())
            .bind(entry.player_id.as_str())
            .bind(entry.slot.as_str())
            .bind(entry.entered_at_ms)
            .bind(entry.request_sig.as_str());
        match Self::insert_once(conn, insert, skip.is_some()).await? {
            Ok(true) => {
                match room {
                    Some(Room::Free(stripes)) => {
                        Self::add_entrant(conn, entry, &stripes, max_entrants).await?;
                    }
                    Some(Room::Among | Room::Full) => {}
                    None if Self::count_in_share(conn, entry, max_entrants).await? => {}
                    None => return Ok(Ok(None)),
                }
                return Ok(Ok(Some(Entered::Created(entry.clone()))));
            }
            Ok(false) => {}
            Err(clash) => return Ok(Err(clash)),
        }
        // Not there, yet not written: the insert met this request's signature on another
        // entry (on MySQL, a taken key fails the insert alone).
        Ok(Self::kept_entry(conn, entry)
            .await?
            .unwrap_or_else(|| Err(request_sig_clash::<DB>("entered")))
            .map(Some))
    }

    pub(crate) async fn entry_by_request(&self, request_sig: &str) -> PortResult<Option<Entry>> {
        let sql = DB::placeholders(select_entries!(" WHERE request_sig = ?"));
        self.optional_row("entry_by_request", sqlx::query_as(&sql).bind(request_sig), entry_of).await
    }

    pub(crate) async fn entrants(&self, campaign_id: &str) -> PortResult<Vec<String>> {
        let sql =
            DB::placeholders("SELECT DISTINCT player_id FROM campaign_entries WHERE campaign_id = ?");
        let query = sqlx::query_as(&sql).bind(campaign_id);
        let rows = self.rows(query, |(p,): (Text,)| Ok(p.0));
        let players = within_bulk::<DB, _>("entrants", rows).await?;
        // Sorted here, by bytes, whatever the database's collation.
        Ok(liveops_core::draw::entrants(players))
    }

    pub(crate) async fn entrants_page(
        &self,
        campaign_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> PortResult<Vec<String>> {
        // Read from the cursor on along the unique key (campaign_id, player_id, slot), whose
        // order is by bytes in every backend (collation "C", utf8mb4_bin, BINARY); every id is
        // after the empty one. (The placeholders are all in the tail.)
        let sql = format!(
            "SELECT DISTINCT player_id FROM {}{}",
            DB::ENTRIES_IN_KEY_ORDER,
            DB::placeholders(" WHERE campaign_id = ? AND player_id > ? ORDER BY player_id LIMIT ?"),
        );
        let query = sqlx::query_as(&sql)
            .bind(campaign_id)
            .bind(after.unwrap_or_default())
            .bind(i64::from(limit));
        self.all_rows("entrants_page", query, |(p,): (Text,)| Ok(p.0)).await
    }

    pub(crate) async fn entrant_count(&self, campaign_id: &str) -> PortResult<u64> {
        // The campaign's stripes (at most 16 rows), summed here.
        let sql = DB::placeholders(
            "SELECT entrants FROM campaign_entrant_counts WHERE campaign_id = ?",
        );
        let query = sqlx::query_as(&sql).bind(campaign_id);
        let stripes = self.all_rows("entrant_count", query, |(n,): (i64,)| Ok(n)).await?;
        Ok(to_u64(stripes.into_iter().sum()))
    }

    pub(crate) async fn entries_of(
        &self,
        player_id: &str,
        campaign_ids: &[String],
    ) -> PortResult<Vec<Entry>> {
        within::<DB, _>("entries_of", async {
            let rows: Vec<EntryRow> = self
                .select_chunked(campaign_ids, DB::MAX_BIND - 1, |qb, chunk| {
                    qb.push(select_entries!(" WHERE player_id = "))
                        .bind(player_id.to_owned())
                        .push(" AND campaign_id")
                        .in_list(chunk.iter().map(String::as_str))
                        .push(" ORDER BY entered_at");
                })
                .await?;
            rows.into_iter().map(entry_of).collect()
        })
        .await
    }

    pub(crate) async fn entries_summary(
        &self,
        player_id: &str,
        campaign_ids: &[String],
        slots: &[String],
    ) -> PortResult<Vec<EntriesSummary>> {
        // Along campaign_entries_by_player (player_id, campaign_id): the player's entries in
        // these campaigns, one row back per campaign.
        let per_chunk = DB::MAX_BIND.saturating_sub(1 + slots.len()).max(1);
        within::<DB, _>("entries_summary", async {
            let rows: Vec<(Text, i64, Option<i64>)> = self
                .select_chunked(campaign_ids, per_chunk, |qb, chunk| {
                    qb.push("SELECT campaign_id, MAX(entered_at), MAX(CASE WHEN ");
                    if slots.is_empty() {
                        qb.push("1 = 0");
                    } else {
                        qb.push("slot").in_list(slots.iter().cloned());
                    }
                    qb.push(" THEN entered_at END) FROM campaign_entries WHERE player_id = ")
                        .bind(player_id.to_owned())
                        .push(" AND campaign_id")
                        .in_list(chunk.iter().map(String::as_str))
                        .push(" GROUP BY campaign_id");
                })
                .await?;
            Ok(rows
                .into_iter()
                .map(|(campaign_id, last, in_slots)| EntriesSummary {
                    campaign_id: campaign_id.0,
                    last_entered_at_ms: last,
                    in_slots: in_slots.is_some(),
                })
                .collect())
        })
        .await
    }

    pub(crate) async fn record_outcome(
        &self,
        outcome: &Outcome,
        event: Option<&CampaignEvent>,
    ) -> PortResult<bool> {
        let entrants = to_json("outcome entrants", &outcome.entrants)?;
        let awards = to_json("outcome awards", &outcome.awards)?;
        within_bulk::<DB, _>("record_outcome", async {
            let (mut tx, _turn) = self.begin_write().await?;
            let campaign_id = outcome.campaign_id.as_str();
            // The campaign's row, locked: replicas deciding the same campaign take turns here.
            let sql = with_tail::<DB>("SELECT id FROM campaigns WHERE id = ?", DB::LOCK_ROWS);
            let _: Option<(Text,)> =
                Self::optional_on(&mut tx, sqlx::query_as(&sql).bind(campaign_id)).await?;
            let sql = DB::placeholders(DECIDED);
            let existing: Option<(Text,)> =
                Self::optional_on(&mut tx, sqlx::query_as(&sql).bind(campaign_id)).await?;
            if existing.is_some() {
                return Self::rolled_back(tx, false).await;
            }
            let sql = DB::placeholders(
                "INSERT INTO campaign_outcomes (campaign_id, algorithm, entrants, entrants_hash, \
                 seed, commitment, winner_count, source, awards, decided_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            );
            let insert = sqlx::query(&sql)
                .bind(campaign_id)
                .bind(outcome.algorithm.as_str())
                .bind(entrants.as_str())
                .bind(outcome.entrants_hash.as_str())
                .bind(outcome.seed.as_deref())
                .bind(outcome.commitment.as_deref())
                .bind(outcome.winner_count.map(i64::from))
                .bind(outcome.source.as_deref())
                .bind(awards.as_str())
                .bind(outcome.decided_at_ms);
            Self::run(&mut tx, insert).await?;
            Self::commit_with_event(tx, event).await?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn outcome(&self, campaign_id: &str) -> PortResult<Option<Outcome>> {
        let sql = DB::placeholders(SELECT_OUTCOME);
        within_bulk::<DB, _>("outcome", async {
            let row: Option<OutcomeRow> = sqlx::query_as(&sql)
                .bind(campaign_id)
                .fetch_optional(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            row.map(|row| outcome_of(campaign_id, row)).transpose()
        })
        .await
    }

    pub(crate) async fn outcome_summary(
        &self,
        campaign_id: &str,
    ) -> PortResult<Option<OutcomeSummary>> {
        let sql = DB::placeholders(SELECT_SUMMARY);
        let query = sqlx::query_as(&sql).bind(campaign_id);
        self.optional_row("outcome_summary", query, summary_of).await
    }

    pub(crate) async fn decided(&self, campaign_id: &str) -> PortResult<bool> {
        let sql = DB::placeholders(DECIDED);
        let query = sqlx::query_as(&sql).bind(campaign_id);
        let row = self.optional_row("decided", query, |(id,): (Text,)| Ok(id)).await?;
        Ok(row.is_some())
    }

    pub(crate) async fn season_xp(&self, player_id: &str, season: i64) -> PortResult<u64> {
        let sql = DB::placeholders("SELECT xp FROM player_xp WHERE player_id = ? AND season = ?");
        let query = sqlx::query_as(&sql).bind(player_id).bind(season);
        let xp = self.optional_row("season_xp", query, |(xp,): (i64,)| Ok(to_u64(xp))).await?;
        Ok(xp.unwrap_or(0))
    }
}
