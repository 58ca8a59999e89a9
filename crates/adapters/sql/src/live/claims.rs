//! Inbox claims on SQL. A claim is one statement, `INSERT … SELECT … FROM inbox_messages WHERE`
//! the message is the player's and live: messages never change, so the message needs no lock
//! and the claims of one message by many players (a message to all) run side by side. The
//! claims' key (message, player) keeps a claim the player made before, which is read back and
//! answered as already claimed: one set of receipts.
//!
//! Where writers take turns (SQLite), the claims of a broadcast that wait for the one writer
//! are written in groups ([`super::groups`]).

use liveops_core::stores::{ClaimOutcome, InboxClaim};
use liveops_core::{PortResult, Receipt};

use super::groups::{GroupWrite, InTransaction};
use super::{from_json, request_sig_clash, sql_impl, to_json, with_tail};
use crate::dialect::{db_error, Text};
use crate::repository::within;

/// A claim row: message, player, time, receipts, request signature.
pub(super) type ClaimRow = (Text, Text, i64, Text, Text);

/// The claim a row holds.
pub(super) fn claim_of(
    (message_id, player_id, at, receipts, sig): ClaimRow,
) -> PortResult<InboxClaim> {
    Ok(InboxClaim {
        message_id: message_id.0,
        player_id: player_id.0,
        claimed_at_ms: at,
        receipts: from_json::<Vec<Receipt>>("claim receipts", &receipts.0)?,
        request_sig: sig.0,
    })
}

/// `SELECT` of a claim row, with `$tail` after the table.
macro_rules! select_claims {
    ($tail:literal) => {
        concat!(
            "SELECT message_id, player_id, claimed_at, receipts, request_sig FROM inbox_claims",
            $tail
        )
    };
}

const SELECT_CLAIM: &str = select_claims!(" WHERE message_id = ? AND player_id = ?");

/// Writes a claim if its message is there for the player and not expired.
const INSERT_CLAIM: &str = "INSERT INTO inbox_claims (message_id, player_id, claimed_at, \
     receipts, request_sig) SELECT ?, ?, ?, ?, ? FROM inbox_messages WHERE message_id = ? \
     AND (player_id = ? OR player_id IS NULL) AND expires_at > ?";

sql_impl! {
    pub(crate) async fn claim(&self, claim: &InboxClaim, now_ms: i64) -> PortResult<ClaimOutcome> {
        let receipts = to_json("claim receipts", &claim.receipts)?;
        if DB::GROUP_WRITES {
            let write = GroupWrite::Claim {
                claim: claim.clone(),
                receipts,
                now_ms,
            };
            return within::<DB, _>("claim", self.in_group(write)).await?.claimed();
        }
        within::<DB, _>("claim", async {
            let (mut tx, _turn) = self.begin_write().await?;
            let outcome = Self::claim_on(&mut tx, claim, &receipts, now_ms).await;
            match outcome.map_err(db_error::<DB>)? {
                Ok(outcome) => {
                    tx.commit().await.map_err(db_error::<DB>)?;
                    Ok(outcome)
                }
                // The request's signature taken; on PostgreSQL also the same claim committed by
                // another request meanwhile, when its signature's key is met before the claims'
                // key: answered from that claim, if there is one.
                Err(clash) => {
                    Self::rolled_back(tx, ()).await?;
                    match self.claim_of(&claim.player_id, &claim.message_id).await? {
                        Some(stored) => Ok(ClaimOutcome::AlreadyClaimed(stored)),
                        None => Err(clash),
                    }
                }
            }
        })
        .await
    }

    /// Writes `claim` on `conn` (a write transaction's), or says why it was not: claimed before
    /// by the player (that claim), not found, or expired. The outer error ends the transaction;
    /// the inner one is this claim's alone (its request's signature already claimed another
    /// message: a conflicting write, retried by the handler).
    pub(super) async fn claim_on(
        conn: &mut DB::Connection,
        claim: &InboxClaim,
        receipts: &str,
        now_ms: i64,
    ) -> InTransaction<ClaimOutcome> {
        let skip = DB::skip_taken("message_id, player_id");
        let sql = with_tail::<DB>(INSERT_CLAIM, skip.as_deref().unwrap_or_default());
        let insert = sqlx::query(&sql)
            .bind(claim.message_id.as_str())
            .bind(claim.player_id.as_str())
            .bind(claim.claimed_at_ms)
            .bind(receipts)
            .bind(claim.request_sig.as_str())
            .bind(claim.message_id.as_str())
            .bind(claim.player_id.as_str())
            .bind(now_ms);
        match insert.execute(&mut *conn).await {
            // Written by this call: the same signed request sent twice (identical claims when
            // the message has no attachments) is claimed, and counted, once.
            Ok(done) if DB::rows_affected(&done) > 0 => {
                return Ok(Ok(ClaimOutcome::Claimed(claim.clone())))
            }
            Ok(_) => {}
            // MySQL, without the clause: a taken key fails the insert alone.
            Err(sqlx::Error::Database(e)) if skip.is_none() && e.is_unique_violation() => {}
            // The request's signature on another message's claim.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Ok(Err(db_error::<DB>(sqlx::Error::Database(e))))
            }
            Err(e) => return Err(e),
        }
        // The claim the player made before (also before the message expired), or one another
        // request of theirs wrote meanwhile (read committed: each statement sees what is
        // committed when it runs).
        let sql = DB::placeholders(SELECT_CLAIM);
        let kept: Option<ClaimRow> = sqlx::query_as(&sql)
            .bind(claim.message_id.as_str())
            .bind(claim.player_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = kept {
            return Ok(claim_of(row).map(ClaimOutcome::AlreadyClaimed));
        }
        // No claim: why (the rare path).
        let sql = DB::placeholders(
            "SELECT expires_at FROM inbox_messages WHERE message_id = ? \
             AND (player_id = ? OR player_id IS NULL)",
        );
        let message: Option<(i64,)> = sqlx::query_as(&sql)
            .bind(claim.message_id.as_str())
            .bind(claim.player_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(match message {
            None => Ok(ClaimOutcome::NotFound),
            Some((expires_at,)) if expires_at <= now_ms => Ok(ClaimOutcome::Expired(expires_at)),
            // There and live, yet not claimed: the insert met this request's signature on
            // another message's claim (on MySQL, a taken key fails the insert alone).
            Some(_) => Err(request_sig_clash::<DB>("claimed")),
        })
    }

    pub(crate) async fn claim_by_request(
        &self,
        request_sig: &str,
    ) -> PortResult<Option<InboxClaim>> {
        let sql = DB::placeholders(select_claims!(" WHERE request_sig = ?"));
        self.optional_row("claim_by_request", sqlx::query_as(&sql).bind(request_sig), claim_of).await
    }

    pub(crate) async fn claim_of(
        &self,
        player_id: &str,
        message_id: &str,
    ) -> PortResult<Option<InboxClaim>> {
        let sql = DB::placeholders(SELECT_CLAIM);
        let query = sqlx::query_as(&sql).bind(message_id).bind(player_id);
        self.optional_row("claim_of", query, claim_of).await
    }
}
