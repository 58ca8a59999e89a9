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
use crate::dialect::Text;
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
        let write = GroupWrite::Claim {
            claim: claim.clone(),
            receipts: to_json("claim receipts", &claim.receipts)?,
            now_ms,
        };
        within::<DB, _>("claim", self.write_once(write)).await?.claimed()
    }

    /// The claim the player made of this message, as an answer, if there is one.
    pub(super) async fn kept_claim(
        conn: &mut DB::Connection,
        claim: &InboxClaim,
    ) -> Result<Option<PortResult<ClaimOutcome>>, sqlx::Error> {
        let sql = DB::placeholders(SELECT_CLAIM);
        let kept: Option<ClaimRow> = sqlx::query_as(&sql)
            .bind(claim.message_id.as_str())
            .bind(claim.player_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(kept.map(|row| claim_of(row).map(ClaimOutcome::AlreadyClaimed)))
    }

    /// Writes `claim` on `conn` (a write transaction's), or says why it was not: claimed before
    /// by the player (that claim), not found, or expired. The outer error ends the transaction;
    /// the inner one is this claim's alone: its request's signature already claimed another
    /// message (a conflicting write, retried by the handler), or its row unreadable.
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
        match Self::insert_once(conn, insert, skip.is_some()).await? {
            Ok(true) => return Ok(Ok(ClaimOutcome::Claimed(claim.clone()))),
            Ok(false) => {}
            Err(clash) => return Ok(Err(clash)),
        }
        // The claim the player made before (also before the message expired), or one another
        // request of theirs wrote meanwhile (read committed: each statement sees what is
        // committed when it runs).
        if let Some(kept) = Self::kept_claim(conn, claim).await? {
            return Ok(kept);
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
