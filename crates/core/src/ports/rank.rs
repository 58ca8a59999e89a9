//! Live leaderboards: per-board sorted scores.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Health, PortResult};
use crate::window::Window;

/// One leaderboard: a window and one of its periods.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Board {
    /// The window.
    pub window: Window,
    /// The period id (`2026-W47`).
    pub period: String,
}

/// A ranked player. Order: score descending, then player id descending (as Redis does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RankEntry {
    /// 1-based position.
    #[schema(minimum = 1)]
    pub rank: u64,
    /// The ranked player.
    pub player_id: String,
    /// Score in this period.
    pub score: i64,
}

/// The first `limit` of a board's scores ranked in the rank store's order (score descending,
/// then player id descending): snapshots and rank campaigns rank as the live board does.
pub fn rank_entries(mut scores: Vec<(String, i64)>, limit: u64) -> Vec<RankEntry> {
    scores.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    scores
        .into_iter()
        .zip(1u64..)
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|((player_id, score), rank)| RankEntry {
            rank,
            player_id,
            score,
        })
        .collect()
}

/// A score change on one board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreDelta {
    /// The board.
    pub board: Board,
    /// The player whose score changes.
    pub player_id: String,
    /// Points added.
    pub delta: i64,
}

/// A player's score on one board as the repository holds it after a commit. Scores only grow
/// (points are never negative), so of two totals the larger is the newer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreTotal {
    /// The board.
    pub board: Board,
    /// The player.
    pub player_id: String,
    /// Their score on the board.
    pub total: i64,
}

/// Per-board sorted scores.
#[async_trait]
pub trait RankStore: Health {
    /// Raises each player's score on its board to `total` unless it is already as high (adding
    /// the player if absent). Totals only grow, so raising is order-free and repeatable: replicas
    /// that apply commits or reload a board from the repository concurrently, in any order or
    /// twice, leave each score at the newest total (ADR 0020).
    async fn raise(&self, totals: &[ScoreTotal]) -> PortResult<()>;
    /// Entries at positions `offset+1 ..= offset+limit`.
    async fn top(&self, board: &Board, offset: u64, limit: u64) -> PortResult<Vec<RankEntry>>;
    /// A player's entry, if ranked.
    async fn rank(&self, board: &Board, player_id: &str) -> PortResult<Option<RankEntry>>;
    /// A player's entry with up to `n` neighbours above and `n` below, in rank order.
    async fn around(
        &self,
        board: &Board,
        player_id: &str,
        n: u64,
    ) -> PortResult<Option<Vec<RankEntry>>>;
    /// Number of ranked players.
    async fn size(&self, board: &Board) -> PortResult<u64>;
    /// Forgets a board (after its final snapshot).
    async fn drop_board(&self, board: &Board) -> PortResult<()>;
    /// Boards currently held.
    async fn boards(&self) -> PortResult<Vec<Board>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_like_the_rank_store() {
        let scores = vec![
            ("alice".to_owned(), 10),
            ("bob".to_owned(), 30),
            ("carol".to_owned(), 10),
            ("dave".to_owned(), 5),
        ];
        let top = rank_entries(scores, 3);
        let order: Vec<_> = top
            .iter()
            .map(|e| (e.rank, e.player_id.as_str(), e.score))
            .collect();
        assert_eq!(order, [(1, "bob", 30), (2, "carol", 10), (3, "alice", 10)]);
    }
}
