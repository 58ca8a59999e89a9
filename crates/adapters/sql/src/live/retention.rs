//! Retention of distribution's rows on SQL: finished webhook deliveries with their attempts, the
//! outbox events none of whose deliveries is left, and long-expired inbox messages with their
//! claims. Each purge reads a bounded step along an index (migration 0015), deletes it in a
//! write transaction of its own, and lets the writers in before the next step.

use std::collections::HashMap;

use liveops_core::stores::{DeliveryState, PurgeRound};
use liveops_core::PortResult;

use super::sql_impl;
use crate::dialect::{db_error, Text};
use crate::repository::{purge_step, within, Purge, PURGE_STEP};
use crate::statement::Statement;

/// Deliveries per step: a dead one has at least ten attempts, so a step deletes a few
/// thousand rows (the bodies, up to a megabyte each, are freed, not rewritten).
const DELIVERY_STEP: usize = 200;

/// Outbox events, and inbox messages, per step (within every backend's bound on parameters).
const ROW_STEP: usize = 400;

/// Claims deleted per step at most (a purge's step): a message to every player may have
/// millions.
const CLAIM_STEP: i64 = PURGE_STEP;

/// Reads the next [`CLAIM_STEP`] claims of a message after a player: the last player and how
/// many (along the claims' key, message then player).
const CLAIM_STEP_SQL: &str = concat!(
    "SELECT MAX(player_id), COUNT(*) FROM (SELECT player_id FROM inbox_claims \
     WHERE message_id = ? AND player_id > ? ORDER BY player_id LIMIT ",
    purge_step!(),
    ") AS step"
);

/// `n` as a bound `LIMIT`.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The ids of `page` in runs whose claims, as `claims` counts them, add up to at most
/// [`CLAIM_STEP`] (a message with more has had its claims deleted a step at a time: none left).
fn by_claims<'a>(page: &'a [String], claims: &HashMap<String, i64>) -> Vec<&'a [String]> {
    let mut runs = Vec::new();
    let (mut start, mut sum) = (0, 0i64);
    for (i, id) in page.iter().enumerate() {
        let n = claims
            .get(id)
            .copied()
            .filter(|n| *n <= CLAIM_STEP)
            .unwrap_or(0);
        if i > start && sum + n > CLAIM_STEP {
            runs.push(&page[start..i]);
            (start, sum) = (i, 0);
        }
        sum += n;
    }
    if start < page.len() {
        runs.push(&page[start..]);
    }
    runs
}

sql_impl! {
    /// Deletes the finished webhook deliveries, with their attempts, past retention at
    /// `before_ms`; how many went, none when another process is walking them or `round` is
    /// spared the walk (`SqlRepository::purge_alone`).
    pub(crate) async fn purge_deliveries(
        &self,
        before_ms: i64,
        round: PurgeRound,
    ) -> PortResult<u64> {
        let purge = Purge::of("webhook_deliveries", round).before(before_ms);
        self.purge_rows_alone(purge, self.walk_deliveries(before_ms)).await
    }

    /// [`Self::purge_deliveries`]'s walk.
    async fn walk_deliveries(&self, before_ms: i64) -> PortResult<u64> {
        // Along `webhook_deliveries_due (state, next_attempt_at)`: a finished delivery's
        // `next_attempt_at` is the end of its last attempt's lease (or, ended by its webhook's
        // deletion, when it would have been tried next), and a redelivery moves it on.
        let sql = DB::placeholders(
            "SELECT id FROM webhook_deliveries WHERE state = ? AND next_attempt_at < ? \
             ORDER BY next_attempt_at LIMIT ?",
        );
        let mut purged = 0;
        for state in [DeliveryState::Delivered, DeliveryState::Dead] {
            loop {
                let read = sqlx::query_as(&sql)
                    .bind(state.as_str())
                    .bind(before_ms)
                    .bind(limit(DELIVERY_STEP));
                let ids: Vec<(Text,)> =
                    within::<DB, _>("purge_deliveries", self.rows(read, Ok)).await?;
                let ids: Vec<String> = ids.into_iter().map(|(id,)| id.0).collect();
                if ids.is_empty() {
                    break;
                }
                let gone = self.delete_deliveries(state, before_ms, &ids).await?;
                purged += gone;
                if ids.len() < DELIVERY_STEP || gone == 0 {
                    break;
                }
                // Let the writers in between steps.
                tokio::task::yield_now().await;
            }
        }
        Ok(purged)
    }

    /// Deletes the deliveries `ids` still in `state` and finished before `before_ms` (a
    /// redelivery since the read set one pending: it stays, with its attempts), with their
    /// attempts, in one write transaction; how many deliveries went.
    async fn delete_deliveries(
        &self,
        state: DeliveryState,
        before_ms: i64,
        ids: &[String],
    ) -> PortResult<u64> {
        within::<DB, _>("purge_deliveries", async {
            let (mut tx, _turn) = self.begin_write().await?;
            // Held against a redelivery until commit.
            let mut qb = Statement::<DB>::new("SELECT id FROM webhook_deliveries WHERE state = ");
            qb.bind(state.as_str())
                .push(" AND next_attempt_at < ")
                .bind(before_ms)
                .push(" AND id")
                .in_list(ids.iter().map(String::as_str))
                .push(" ORDER BY id")
                .push(DB::LOCK_ROWS);
            let (sql, args) = qb.finish()?;
            let held: Vec<(Text,)> = sqlx::query_as_with(&sql, args)
                .persistent(false)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            if held.is_empty() {
                return Self::rolled_back(tx, 0).await;
            }
            let held: Vec<&str> = held.iter().map(|(id,)| id.0.as_str()).collect();
            let mut qb = Statement::<DB>::new("DELETE FROM webhook_attempts WHERE delivery_id");
            qb.in_list(held.iter().copied());
            let (sql, args) = qb.finish()?;
            Self::run(&mut tx, sqlx::query_with(&sql, args).persistent(false)).await?;
            let mut qb = Statement::<DB>::new("DELETE FROM webhook_deliveries WHERE id");
            qb.in_list(held.iter().copied());
            let (sql, args) = qb.finish()?;
            let done = Self::run(&mut tx, sqlx::query_with(&sql, args).persistent(false)).await?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(DB::rows_affected(&done))
        })
        .await
    }

    /// Deletes the outbox events past retention at `before_ms` none of whose deliveries is
    /// left; how many went, none when another process is walking them or `round` is spared
    /// the walk.
    pub(crate) async fn purge_events(
        &self,
        before_ms: i64,
        round: PurgeRound,
    ) -> PortResult<u64> {
        let purge = Purge::of("campaign_events", round).before(before_ms);
        self.purge_rows_alone(purge, self.walk_events(before_ms)).await
    }

    /// [`Self::purge_events`]'s walk.
    async fn walk_events(&self, before_ms: i64) -> PortResult<u64> {
        // Along `campaign_events_dispatched (dispatched, at_ms, id)`, past the last one read
        // (the first page past the smallest key, below every event's): an event whose
        // deliveries are not all gone stays, and is passed over. The first bound repeats the
        // second's, so the index is read from there on.
        let next = DB::placeholders(
            "SELECT id, at_ms FROM campaign_events WHERE dispatched = 1 AND at_ms < ? \
             AND at_ms >= ? AND (at_ms > ? OR (at_ms = ? AND id > ?)) ORDER BY at_ms, id LIMIT ?",
        );
        let mut purged = 0;
        let (mut at, mut id) = (i64::MIN, i64::MIN);
        loop {
            let read = sqlx::query_as(&next)
                .bind(before_ms)
                .bind(at)
                .bind(at)
                .bind(at)
                .bind(id)
                .bind(limit(ROW_STEP));
            let page: Vec<(i64, i64)> = within::<DB, _>("purge_events", self.rows(read, Ok)).await?;
            let Some(&(last_id, last_at)) = page.last() else {
                return Ok(purged);
            };
            // By key: an event read dispatched and old stays so. Its deliveries are found by
            // `webhook_deliveries_by_event`; one queued since the read (never for an event
            // already dispatched) keeps it.
            let mut qb = Statement::<DB>::new("DELETE FROM campaign_events WHERE id");
            qb.in_list(page.iter().map(|(id, _)| *id)).push(
                " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                 WHERE d.event_id = campaign_events.id)",
            );
            let (sql, args) = qb.finish()?;
            purged += self
                .write_in_turn("purge_events", sqlx::query_with(&sql, args).persistent(false))
                .await?;
            if page.len() < ROW_STEP {
                return Ok(purged);
            }
            (at, id) = (last_at, last_id);
            tokio::task::yield_now().await;
        }
    }

    /// Deletes the inbox messages expired before `before_ms`, with their claims; how many went,
    /// none when another process is walking them or `round` is spared the walk.
    pub(crate) async fn purge_messages(
        &self,
        before_ms: i64,
        round: PurgeRound,
    ) -> PortResult<u64> {
        let purge = Purge::of("inbox_messages", round).before(before_ms);
        self.purge_rows_alone(purge, self.walk_messages(before_ms)).await
    }

    /// [`Self::purge_messages`]'s walk.
    async fn walk_messages(&self, before_ms: i64) -> PortResult<u64> {
        // Along `inbox_messages_by_expiry (expires_at)`. A message takes no claim once expired
        // (a claim's insert checks it is live), so none is added behind the purge.
        let expired = DB::placeholders(
            "SELECT message_id FROM inbox_messages WHERE expires_at < ? \
             ORDER BY expires_at LIMIT ?",
        );
        let mut purged = 0;
        loop {
            let read = sqlx::query_as(&expired)
                .bind(before_ms)
                .bind(limit(ROW_STEP));
            let page: Vec<(Text,)> = within::<DB, _>("purge_messages", self.rows(read, Ok)).await?;
            let page: Vec<String> = page.into_iter().map(|(id,)| id.0).collect();
            if page.is_empty() {
                return Ok(purged);
            }
            // How many claims each has (along the claims' key): a message to every player
            // has its claims deleted a step at a time first.
            let counted: Vec<(Text, i64)> = within::<DB, _>("purge_messages", async {
                let mut qb = Statement::<DB>::new(
                    "SELECT message_id, COUNT(*) FROM inbox_claims WHERE message_id",
                );
                qb.in_list(page.iter().map(String::as_str))
                    .push(" GROUP BY message_id");
                let (sql, args) = qb.finish()?;
                sqlx::query_as_with(&sql, args)
                    .persistent(false)
                    .fetch_all(self.pool())
                    .await
                    .map_err(db_error::<DB>)
            })
            .await?;
            let claims: HashMap<String, i64> = counted.into_iter().map(|(m, n)| (m.0, n)).collect();
            for (message, n) in &claims {
                if *n > CLAIM_STEP {
                    self.purge_claims_of(message).await?;
                }
            }
            for run in by_claims(&page, &claims) {
                purged += self.delete_messages(run, before_ms).await?;
            }
            if page.len() < ROW_STEP {
                return Ok(purged);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Deletes the messages `ids` expired before `before_ms`, with their claims, in one write
    /// transaction; how many messages went.
    async fn delete_messages(&self, ids: &[String], before_ms: i64) -> PortResult<u64> {
        within::<DB, _>("purge_messages", async {
            let (mut tx, _turn) = self.begin_write().await?;
            let mut qb = Statement::<DB>::new("DELETE FROM inbox_claims WHERE message_id");
            qb.in_list(ids.iter().map(String::as_str));
            let (sql, args) = qb.finish()?;
            Self::run(&mut tx, sqlx::query_with(&sql, args).persistent(false)).await?;
            let mut qb = Statement::<DB>::new("DELETE FROM inbox_messages WHERE expires_at < ");
            qb.bind(before_ms)
                .push(" AND message_id")
                .in_list(ids.iter().map(String::as_str));
            let (sql, args) = qb.finish()?;
            let done = Self::run(&mut tx, sqlx::query_with(&sql, args).persistent(false)).await?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(DB::rows_affected(&done))
        })
        .await
    }

    /// Deletes the claims of one (expired) message, [`CLAIM_STEP`] at a time along its players.
    async fn purge_claims_of(&self, message_id: &str) -> PortResult<()> {
        let step = DB::placeholders(CLAIM_STEP_SQL);
        let delete = DB::placeholders(
            "DELETE FROM inbox_claims WHERE message_id = ? AND player_id > ? AND player_id <= ?",
        );
        let mut after = String::new();
        loop {
            let read = sqlx::query_as(&step).bind(message_id).bind(after.as_str());
            let (end, n): (Option<Text>, i64) = within::<DB, _>("purge_messages", async {
                read.fetch_one(self.pool()).await.map_err(db_error::<DB>)
            })
            .await?;
            let Some(end) = end else {
                return Ok(());
            };
            let q = sqlx::query(&delete)
                .bind(message_id)
                .bind(after.as_str())
                .bind(end.0.as_str());
            self.write_in_turn("purge_messages", q).await?;
            if n < CLAIM_STEP {
                return Ok(());
            }
            after = end.0;
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_deleted_in_runs_of_a_few_thousand_claims() {
        let page: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
        let claims: HashMap<String, i64> = [("m0", 1500), ("m1", 400), ("m2", 200), ("m4", 9_000)]
            .into_iter()
            .map(|(m, n)| (m.to_owned(), n))
            .collect();
        let runs: Vec<Vec<&str>> = by_claims(&page, &claims)
            .into_iter()
            .map(|r| r.iter().map(String::as_str).collect())
            .collect();
        // m4's claims went a step at a time before: none are left to count.
        let want = [vec!["m0", "m1"], vec!["m2", "m3", "m4", "m5"]];
        assert_eq!(runs, want);
        let full: HashMap<String, i64> =
            [("m0".to_owned(), 1), ("m1".to_owned(), CLAIM_STEP)].into();
        assert_eq!(
            by_claims(&page[..3], &full).len(),
            2,
            "m0 alone, then m1 and m2"
        );
        assert!(by_claims(&[], &claims).is_empty());
    }
}
