//! The leaderboard's storage: durable scores per board ([`ScoreStore`]) and archived snapshots
//! ([`SnapshotStore`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ports::{Board, Health, PortResult, RankEntry, ScoreDelta, ScoreTotal};
use crate::stores::PurgeRound;
use crate::window::Window;

/// A leaderboard archived at a point in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Which board's window.
    pub window: Window,
    /// Which period.
    pub period: String,
    /// When taken, unix ms.
    pub taken_at_ms: i64,
    /// Taken after the period ended (the hall of fame).
    pub is_final: bool,
    /// The top entries.
    pub entries: Vec<RankEntry>,
}

/// Durable scores per board.
#[async_trait]
pub trait ScoreStore: Health {
    /// Applies leaderboard score changes and records their event ids for `consumer`, atomically;
    /// the totals they leave, one per (board, player) changed, for the rank store.
    async fn commit_scores(
        &self,
        consumer: &str,
        event_ids: &[Uuid],
        deltas: &[ScoreDelta],
    ) -> PortResult<Vec<ScoreTotal>>;
    /// How many players have a score on a board (a rank store holding fewer lost some).
    async fn board_size(&self, board: &Board) -> PortResult<u64>;
    /// Every score on a board, in no particular order (callers rank them; sorting a million rows
    /// in the database would double a restart's rebuild).
    async fn board_scores(&self, board: &Board) -> PortResult<Vec<(String, i64)>>;
    /// The best `limit` scores on a board in the rank store's order (score descending, then
    /// player id descending by bytes), reading no more rows than that (snapshots).
    async fn top_scores(&self, board: &Board, limit: u64) -> PortResult<Vec<(String, i64)>>;
    /// The scores of those of `players` who have one on a board, in no particular order (a rank
    /// campaign ranks its entrants without reading the whole board).
    async fn scores_of(&self, board: &Board, players: &[String]) -> PortResult<Vec<(String, i64)>>;
    /// Boards that have scores, for rebuilding.
    async fn boards(&self) -> PortResult<Vec<Board>>;
    /// Deletes the scores of `window`'s boards whose period id sorts before `before` (day and
    /// week ids sort as their periods do), the period running at `cutoff_ms`, a bounded step at
    /// a time; how many rows went (none when `round` is spared the walk by an earlier one that
    /// kept the boards as long, `round`'s time less `cutoff_ms`: [`PurgeRound`]).
    async fn purge_scores(
        &self,
        window: Window,
        before: &str,
        cutoff_ms: i64,
        round: PurgeRound,
    ) -> PortResult<u64>;
}

/// Archived snapshots of boards (running ones and the hall of fame).
#[async_trait]
pub trait SnapshotStore: Health {
    /// Stores a snapshot, replacing the board's one unless that is final; a final one is replaced
    /// only by a final one taken later (read later, so it holds at least the same scores: the
    /// hall of fame taken again after late scores, or by the replica that read last).
    async fn save_snapshot(&self, snapshot: &Snapshot) -> PortResult<()>;
    /// The snapshot of a board.
    async fn snapshot(&self, board: &Board) -> PortResult<Option<Snapshot>>;
    /// Periods of `window` with a snapshot, the latest period first (not the latest taken).
    async fn snapshot_periods(&self, window: Window, limit: u32) -> PortResult<Vec<String>>;
}
