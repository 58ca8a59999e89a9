//! Writes that wait for the write turn go in groups, where writers take turns
//! ([`crate::Dialect::GROUP_WRITES`], SQLite). When a campaign goes live or a gift goes to
//! every player, many players enter or claim at once; each write queued for the one writer, and
//! each commit synced the log. So the waiting writes are written together: each caller queues
//! its write, then waits for its answer or the turn, whichever comes first; whoever gets the
//! turn writes the queued writes (up to 512) in one transaction (a task of its own, so a caller
//! that goes away takes no other's answer with it), commits once, answers each and gives the
//! turn back. A caller is answered as soon as its group is committed, never before, and other
//! writers queue for the turn between groups.
//!
//! A write that fails alone (its request's signature already on another claim or entry) fails
//! only its caller, as a failed statement is undone alone; any other error fails the group,
//! nothing of it written, and every caller gets it (503, to retry).

use std::sync::{Mutex, MutexGuard};

use liveops_core::stores::{ClaimOutcome, Entered, Entry, InboxClaim};
use liveops_core::{PortError, PortResult};
use tokio::sync::{oneshot, OwnedMutexGuard};

use super::entrants::CampaignHold;
use super::sql_impl;
use crate::dialect::db_error;

/// Most writes one group holds; more waiting go in the next group, at the next turn.
const GROUP_MOST: usize = 512;

/// A write's outcome, or why the transaction it ran in cannot go on (the outer error).
pub(super) type InTransaction<T> = Result<PortResult<T>, sqlx::Error>;

/// A write that may go in a group.
#[derive(Debug)]
pub(super) enum GroupWrite {
    /// An inbox claim (its receipts as the column's JSON) as of `now_ms`.
    Claim {
        claim: InboxClaim,
        receipts: String,
        now_ms: i64,
    },
    /// A campaign entry, refused to a new player once the campaign holds `max_entrants`,
    /// written with the campaign's row held as `hold` says.
    Enter {
        entry: Entry,
        max_entrants: u64,
        hold: CampaignHold,
    },
}

/// What a [`GroupWrite`] came to.
#[derive(Debug)]
pub(super) enum Written {
    /// A claim's outcome.
    Claim(ClaimOutcome),
    /// An entry's outcome.
    Enter(Entered),
    /// An entry written with its campaign's row shared whose player could not be counted so
    /// (their stripe of the count at its share of the cap): rolled back, to be written again
    /// with the row held alone. Never the outcome of a group's write.
    EnterAlone,
}

impl Written {
    /// The claim's outcome.
    pub(super) fn claimed(self) -> PortResult<ClaimOutcome> {
        match self {
            Self::Claim(outcome) => Ok(outcome),
            Self::Enter(_) | Self::EnterAlone => Err(mismatched()),
        }
    }

    /// The entry's outcome; `None`: to be written again with its campaign's row held alone.
    pub(super) fn entered(self) -> PortResult<Option<Entered>> {
        match self {
            Self::Enter(outcome) => Ok(Some(outcome)),
            Self::EnterAlone => Ok(None),
            Self::Claim(_) => Err(mismatched()),
        }
    }
}

fn mismatched() -> PortError {
    PortError::Corrupt("a grouped write was answered for another kind of write".into())
}

/// Writes waiting for the write turn.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue(Mutex<Vec<Waiting>>);

/// A queued write and where its answer goes.
#[derive(Debug)]
struct Waiting {
    write: GroupWrite,
    answer: oneshot::Sender<PortResult<Written>>,
}

impl WriteQueue {
    fn lock(&self) -> MutexGuard<'_, Vec<Waiting>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next group: the oldest waiting writes whose callers still wait for the answer (one
    /// that went away is dropped unwritten, as a transaction it had begun would be).
    fn next_group(&self) -> Vec<Waiting> {
        let mut queue = self.lock();
        queue.retain(|w| !w.answer.is_closed());
        let n = queue.len().min(GROUP_MOST);
        queue.drain(..n).collect()
    }
}

sql_impl! {
    /// Runs `insert` on `conn`, an insert of a claim or entry ending with
    /// [`crate::Dialect::skip_taken`] of its key (`skipping`: the clause was there): whether it
    /// wrote; the inner error is this write's alone (its request's signature on another row: a
    /// conflicting write), the outer one ends the transaction.
    pub(super) async fn insert_once<'q>(
        conn: &mut DB::Connection,
        insert: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
        skipping: bool,
    ) -> InTransaction<bool> {
        match insert.execute(&mut *conn).await {
            // Written by this call: the same signed request sent twice (identical writes) is
            // answered, and counted, as new once.
            Ok(done) => Ok(Ok(DB::rows_affected(&done) > 0)),
            // MySQL, without the clause: a taken key fails the insert alone.
            Err(sqlx::Error::Database(e)) if !skipping && e.is_unique_violation() => Ok(Ok(false)),
            // The request's signature on another row.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Ok(Err(db_error::<DB>(sqlx::Error::Database(e))))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `write` once: in a group where writers take turns, else in a transaction of its
    /// own. There, on PostgreSQL, a claim or entry committed meanwhile by a concurrent request
    /// can fail this insert on the signature's key before its own key is seen: the write is
    /// then answered from the row kept, if there is one, after the rollback.
    pub(super) async fn write_once(&self, write: GroupWrite) -> PortResult<Written> {
        if DB::GROUP_WRITES {
            return self.in_group(write).await;
        }
        let (mut tx, _turn) = self.begin_write().await?;
        match Self::write_on(&mut tx, &write).await.map_err(db_error::<DB>)? {
            Ok(Written::EnterAlone) => Self::rolled_back(tx, Written::EnterAlone).await,
            Ok(written) => {
                tx.commit().await.map_err(db_error::<DB>)?;
                Ok(written)
            }
            Err(PortError::Unavailable(clash)) => {
                Self::rolled_back(tx, ()).await?;
                let mut conn = self.pool().acquire().await.map_err(db_error::<DB>)?;
                let kept = Self::kept_on(&mut conn, &write).await;
                kept.map_err(db_error::<DB>)?
                    .unwrap_or(Err(PortError::Unavailable(clash)))
            }
            Err(other) => Err(other),
        }
    }

    /// Writes `write` on `conn` (a write transaction's).
    async fn write_on(conn: &mut DB::Connection, write: &GroupWrite) -> InTransaction<Written> {
        Ok(match write {
            GroupWrite::Claim { claim, receipts, now_ms } => {
                Self::claim_on(conn, claim, receipts, *now_ms).await?.map(Written::Claim)
            }
            GroupWrite::Enter { entry, max_entrants, hold } => {
                let entered = Self::enter_on(conn, entry, *max_entrants, *hold).await?;
                entered.map(|e| e.map_or(Written::EnterAlone, Written::Enter))
            }
        })
    }

    /// The claim or entry the player already has where `write` would go, as an answer.
    async fn kept_on(
        conn: &mut DB::Connection,
        write: &GroupWrite,
    ) -> Result<Option<PortResult<Written>>, sqlx::Error> {
        Ok(match write {
            GroupWrite::Claim { claim, .. } => {
                Self::kept_claim(conn, claim).await?.map(|k| k.map(Written::Claim))
            }
            GroupWrite::Enter { entry, .. } => {
                Self::kept_entry(conn, entry).await?.map(|k| k.map(Written::Enter))
            }
        })
    }

    /// Queues `write` and waits for its answer or for the write turn, whichever comes first;
    /// with the turn, writes the queued writes (this one among them, unless a group before
    /// took it) in a task of its own, and waits again.
    async fn in_group(&self, write: GroupWrite) -> PortResult<Written> {
        let (answer, mut answered) = oneshot::channel();
        self.groups.lock().push(Waiting { write, answer });
        loop {
            tokio::select! {
                biased;
                answer = &mut answered => {
                    return answer.unwrap_or_else(|_| {
                        Err(PortError::Unavailable(format!(
                            "{}: the group a write was queued in stopped",
                            DB::NAME
                        )))
                    });
                }
                turn = self.write_turn() => {
                    let group = self.groups.next_group();
                    if !group.is_empty() {
                        let repo = self.clone();
                        tokio::spawn(async move { repo.write_and_answer(group, turn).await });
                    }
                }
            }
        }
    }

    /// Writes `group` in one transaction under the write turn, answers each of its writes, and
    /// gives the turn back (to the next writer, often a caller with writes queued meanwhile).
    async fn write_and_answer(self, group: Vec<Waiting>, turn: Option<OwnedMutexGuard<()>>) {
        metrics::histogram!("db_write_group_writes", "backend" => DB::NAME)
            .record(group.len() as f64);
        match self.write_group(&group).await {
            Ok(outcomes) => {
                for (waiting, outcome) in group.into_iter().zip(outcomes) {
                    let _gone = waiting.answer.send(outcome);
                }
            }
            Err(error) => {
                tracing::warn!(%error, writes = group.len(), "a group of writes was not written");
                for waiting in group {
                    let _gone = waiting.answer.send(Err(error.clone()));
                }
            }
        }
        // After the answers: a caller that gets the turn next finds its own answered.
        drop(turn);
    }

    /// Writes `group` in one transaction: each write's outcome, given once it is committed.
    async fn write_group(&self, group: &[Waiting]) -> PortResult<Vec<PortResult<Written>>> {
        let mut tx = self.begin(DB::BEGIN_WRITE).await?;
        let mut outcomes = Vec::with_capacity(group.len());
        for w in group {
            outcomes.push(Self::write_on(&mut tx, &w.write).await.map_err(db_error::<DB>)?);
        }
        tx.commit().await.map_err(db_error::<DB>)?;
        Ok(outcomes)
    }
}
