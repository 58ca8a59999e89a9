//! Inbox claims on SQL. A claim is one statement, `INSERT … SELECT … FROM inbox_messages WHERE`
//! the message is the player's and live: messages never change, so the message needs no lock
//! and the claims of one message by many players (a message to all) run side by side. The
//! claims' key (message, player) keeps a claim the player made before, which is read back and
//! answered as already claimed: one set of receipts.
//!
//! Where writers take turns ([`crate::Dialect::GROUP_CLAIMS`], SQLite), every claim of a
//! broadcast queues for the one writer, and each commit syncs the log. So the claims that wait
//! are written together: each caller queues its claim, then waits for its answer or the turn,
//! whichever comes first; whoever gets the turn writes the queued claims (up to 512) in one
//! transaction (a task of its own, so a caller that goes away takes no other's answer with it),
//! commits once, answers each and gives the turn back. A caller is answered as soon as its
//! group is committed, and other writers queue for the turn between groups. A claim that fails alone (a
//! request's signature already on another claim) fails only its caller, as a failed statement
//! is undone alone; any other error fails the group, nothing of it written, and every caller
//! gets it (503, to retry).

use std::sync::{Mutex, MutexGuard};

use liveops_core::stores::{ClaimOutcome, InboxClaim};
use liveops_core::{PortError, PortResult, Receipt};
use tokio::sync::{oneshot, OwnedMutexGuard};

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

/// Most claims one group writes; more waiting go in the next group, at the next turn.
const GROUP_MOST: usize = 512;

/// Claims waiting for the write turn, where writers take turns.
#[derive(Debug, Default)]
pub(crate) struct ClaimQueue(Mutex<Vec<Waiting>>);

/// A queued claim and where its answer goes.
#[derive(Debug)]
struct Waiting {
    claim: InboxClaim,
    receipts: String,
    now_ms: i64,
    answer: oneshot::Sender<PortResult<ClaimOutcome>>,
}

impl ClaimQueue {
    fn lock(&self) -> MutexGuard<'_, Vec<Waiting>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next group: the oldest waiting claims whose callers still wait for the answer (one
    /// that went away is dropped unwritten, as a transaction it had begun would be).
    fn next_group(&self) -> Vec<Waiting> {
        let mut queue = self.lock();
        queue.retain(|w| !w.answer.is_closed());
        let n = queue.len().min(GROUP_MOST);
        queue.drain(..n).collect()
    }
}

/// A claim's outcome, or why the transaction it ran in cannot go on.
type InTransaction = Result<PortResult<ClaimOutcome>, sqlx::Error>;

sql_impl! {
    pub(crate) async fn claim(&self, claim: &InboxClaim, now_ms: i64) -> PortResult<ClaimOutcome> {
        let receipts = to_json("claim receipts", &claim.receipts)?;
        if DB::GROUP_CLAIMS {
            return within::<DB, _>("claim", self.claim_in_group(claim, receipts, now_ms)).await;
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

    /// Queues `claim` and waits for its answer or for the write turn, whichever comes first;
    /// with the turn, writes the claims waiting (this one among them, unless a group before
    /// took it) in a task of its own, and waits again.
    async fn claim_in_group(
        &self,
        claim: &InboxClaim,
        receipts: String,
        now_ms: i64,
    ) -> PortResult<ClaimOutcome> {
        let (answer, mut answered) = oneshot::channel();
        self.claims.lock().push(Waiting {
            claim: claim.clone(),
            receipts,
            now_ms,
            answer,
        });
        loop {
            tokio::select! {
                biased;
                answer = &mut answered => {
                    return answer.unwrap_or_else(|_| {
                        Err(PortError::Unavailable(format!(
                            "{}: claim: the group it was queued in stopped",
                            DB::NAME
                        )))
                    });
                }
                turn = self.write_turn() => {
                    let group = self.claims.next_group();
                    if !group.is_empty() {
                        let repo = self.clone();
                        tokio::spawn(async move { repo.write_and_answer(group, turn).await });
                    }
                }
            }
        }
    }

    /// Writes `group` in one transaction under the write turn, answers each of its claims, and
    /// gives the turn back (to the next writer, often a caller with claims queued meanwhile).
    async fn write_and_answer(self, group: Vec<Waiting>, turn: Option<OwnedMutexGuard<()>>) {
        metrics::histogram!("db_write_group_claims", "backend" => DB::NAME)
            .record(group.len() as f64);
        match self.write_group(&group).await {
            Ok(outcomes) => {
                for (waiting, outcome) in group.into_iter().zip(outcomes) {
                    let _gone = waiting.answer.send(outcome);
                }
            }
            Err(error) => {
                tracing::warn!(%error, claims = group.len(), "a group of claims was not written");
                for waiting in group {
                    let _gone = waiting.answer.send(Err(error.clone()));
                }
            }
        }
        // After the answers: a caller that gets the turn next finds its own answered.
        drop(turn);
    }

    /// Writes `group` in one transaction: each claim's outcome, given once it is committed.
    async fn write_group(&self, group: &[Waiting]) -> PortResult<Vec<PortResult<ClaimOutcome>>> {
        let mut tx = self.begin(DB::BEGIN_WRITE).await?;
        let mut outcomes = Vec::with_capacity(group.len());
        for w in group {
            let outcome = Self::claim_on(&mut tx, &w.claim, &w.receipts, w.now_ms).await;
            outcomes.push(outcome.map_err(db_error::<DB>)?);
        }
        tx.commit().await.map_err(db_error::<DB>)?;
        Ok(outcomes)
    }

    /// Writes `claim` on `conn` (a write transaction's), or says why it was not: claimed before
    /// by the player (that claim), not found, or expired. The outer error ends the transaction;
    /// the inner one is this claim's alone (its request's signature already claimed another
    /// message: a conflicting write, retried by the handler).
    async fn claim_on(
        conn: &mut DB::Connection,
        claim: &InboxClaim,
        receipts: &str,
        now_ms: i64,
    ) -> InTransaction {
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
