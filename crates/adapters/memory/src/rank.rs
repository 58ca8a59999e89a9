//! `RankStore` in process: one [`RankTree`] per board, each behind its own lock, with the top of
//! each board cached as a shared slice.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use liveops_core::ports::{Board, Health, PortError, PortResult, RankEntry, RankStore, ScoreTotal};

use super::ranktree::{ranks_before, RankTree, RankTreeError};

/// How many entries of each board's top are cached.
pub const TOP_CACHE_LEN: usize = 1000;
/// Loads bigger than this are built on the blocking pool, off the async workers.
const BLOCKING_LOAD: usize = 20_000;

/// The in-process `RankStore`: the embedded default.
///
/// Locking: the map of boards is locked only to find or add a board; each board has its own
/// `RwLock`, so writes to one board never wait for another and reads of a board run together.
/// `top` within the first [`TOP_CACHE_LEN`] positions is served from a cached slice, dropped
/// only by changes that can move it (a change wholly below the cached top leaves it valid).
#[derive(Debug, Default)]
pub struct MemoryRankStore {
    boards: RwLock<HashMap<Board, Arc<BoardState>>>,
}

#[derive(Debug, Default)]
struct BoardState {
    tree: RwLock<RankTree>,
    /// The first `TOP_CACHE_LEN` entries (all of them if the board is smaller), or nothing.
    top: RwLock<Option<Arc<Vec<RankEntry>>>>,
}

fn corrupt(board: &Board) -> PortError {
    PortError::Corrupt(format!(
        "board {}/{} was left inconsistent by a panic; the next raise starts it over",
        board.window, board.period
    ))
}

fn full(err: RankTreeError) -> PortError {
    PortError::Unavailable(err.to_string())
}

fn entries(first_rank: u64, items: Vec<(&str, i64)>) -> Vec<RankEntry> {
    items
        .into_iter()
        .zip(first_rank..)
        .map(|((player, score), rank)| RankEntry {
            rank,
            player_id: player.to_owned(),
            score,
        })
        .collect()
}

impl BoardState {
    fn read(&self, board: &Board) -> PortResult<RwLockReadGuard<'_, RankTree>> {
        self.tree.read().map_err(|_| corrupt(board))
    }

    /// The tree to change; one a panic left inconsistent starts over empty (the leaderboard's
    /// reconcile then finds the board short and raises it from the repository again).
    fn write(&self) -> RwLockWriteGuard<'_, RankTree> {
        self.tree.write().unwrap_or_else(|poisoned| {
            let mut tree = poisoned.into_inner();
            *tree = RankTree::default();
            self.tree.clear_poison();
            self.set_top(None);
            tree
        })
    }

    fn cached_top(&self) -> Option<Arc<Vec<RankEntry>>> {
        self.top
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_top(&self, top: Option<Arc<Vec<RankEntry>>>) {
        *self.top.write().unwrap_or_else(PoisonError::into_inner) = top;
    }

    /// The cached top, built under the tree's read lock if missing (so no writer can slip in
    /// between building and caching it: writers drop the cache under the write lock).
    fn top(&self, board: &Board) -> PortResult<Arc<Vec<RankEntry>>> {
        if let Some(top) = self.cached_top() {
            return Ok(top);
        }
        let tree = self.read(board)?;
        let top = Arc::new(entries(1, tree.range(0, TOP_CACHE_LEN as u64)));
        self.set_top(Some(top.clone()));
        drop(tree);
        Ok(top)
    }

    /// Raises this board's scores to `totals` under one write lock; a board still empty takes
    /// a large set whole, built off the lock (a rebuild after a restart).
    async fn raise(&self, totals: Vec<(String, i64)>) -> PortResult<()> {
        if totals.len() > BLOCKING_LOAD && self.write().is_empty() {
            // A player listed twice keeps the highest total, as a raise one by one would.
            let built = tokio::task::spawn_blocking(move || {
                let mut highest: HashMap<String, i64> = HashMap::with_capacity(totals.len());
                for (player, total) in totals {
                    let held = highest.entry(player).or_insert(total);
                    *held = (*held).max(total);
                }
                RankTree::from_scores(highest)
            })
            .await
            .map_err(|e| PortError::Unavailable(format!("building the board failed: {e}")))?
            .map_err(full)?;
            let mut tree = self.write();
            if tree.is_empty() {
                *tree = built;
                self.set_top(None);
                return Ok(());
            }
            // Raised meanwhile: merge instead.
            let merged: Vec<(String, i64)> = built
                .range(0, built.len() as u64)
                .into_iter()
                .map(|(p, s)| (p.to_owned(), s))
                .collect();
            drop(tree);
            return self.raise_each(&merged);
        }
        self.raise_each(&totals)
    }

    fn raise_each(&self, totals: &[(String, i64)]) -> PortResult<()> {
        let mut tree = self.write();
        let mut cache = self.cached_top();
        let mut dropped = false;
        let mut result = Ok(());
        for (player, total) in totals {
            let old = match tree.raise(player, *total) {
                Ok(old) => old,
                Err(err) => {
                    result = Err(full(err));
                    break;
                }
            };
            let new = old.map_or(*total, |old| old.max(*total));
            if let Some(top) = &cache {
                if Some(new) != old && moves_top(top, player, old, new) {
                    cache = None;
                    dropped = true;
                }
            }
        }
        if dropped {
            self.set_top(None);
        }
        drop(tree);
        result
    }
}

/// Can a player's change from `old` (absent if new) to `new` change the cached top?
fn moves_top(top: &[RankEntry], player: &str, old: Option<i64>, new: i64) -> bool {
    // A board smaller than the cache is cached whole: every change shows.
    let Some(last) = top.get(TOP_CACHE_LEN - 1) else {
        return true;
    };
    let within = |score: i64| !ranks_before(last.score, &last.player_id, score, player);
    within(new) || old.is_some_and(within)
}

impl MemoryRankStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn board(&self, board: &Board) -> Option<Arc<BoardState>> {
        self.boards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(board)
            .cloned()
    }

    fn board_or_new(&self, board: &Board) -> Arc<BoardState> {
        if let Some(state) = self.board(board) {
            return state;
        }
        self.boards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(board.clone())
            .or_default()
            .clone()
    }
}

#[async_trait]
impl RankStore for MemoryRankStore {
    async fn raise(&self, totals: &[ScoreTotal]) -> PortResult<()> {
        // Group by board, keeping each board's totals in order.
        let mut by_board: Vec<(&Board, Vec<(String, i64)>)> = Vec::new();
        for t in totals {
            let total = (t.player_id.clone(), t.total);
            match by_board.iter_mut().find(|(b, _)| **b == t.board) {
                Some((_, ts)) => ts.push(total),
                None => by_board.push((&t.board, vec![total])),
            }
        }
        for (board, ts) in by_board {
            self.board_or_new(board).raise(ts).await?;
        }
        Ok(())
    }

    async fn top(&self, board: &Board, offset: u64, limit: u64) -> PortResult<Vec<RankEntry>> {
        let Some(state) = self.board(board) else {
            return Ok(Vec::new());
        };
        if offset.saturating_add(limit) <= TOP_CACHE_LEN as u64 {
            let top = state.top(board)?;
            let start = (offset as usize).min(top.len());
            let end = (offset.saturating_add(limit) as usize).min(top.len());
            return Ok(top[start..end].to_vec());
        }
        let tree = state.read(board)?;
        let items = tree.range(offset, limit);
        Ok(entries(offset.saturating_add(1), items))
    }

    async fn rank(&self, board: &Board, player_id: &str) -> PortResult<Option<RankEntry>> {
        let Some(state) = self.board(board) else {
            return Ok(None);
        };
        let tree = state.read(board)?;
        Ok(tree.entry(player_id).map(|(rank, score)| RankEntry {
            rank,
            player_id: player_id.to_owned(),
            score,
        }))
    }

    async fn around(
        &self,
        board: &Board,
        player_id: &str,
        n: u64,
    ) -> PortResult<Option<Vec<RankEntry>>> {
        let Some(state) = self.board(board) else {
            return Ok(None);
        };
        let tree = state.read(board)?;
        Ok(tree
            .around(player_id, n)
            .map(|(first, items)| entries(first, items)))
    }

    async fn size(&self, board: &Board) -> PortResult<u64> {
        let Some(state) = self.board(board) else {
            return Ok(0);
        };
        let tree = state.read(board)?;
        Ok(tree.len() as u64)
    }

    async fn drop_board(&self, board: &Board) -> PortResult<()> {
        let removed = self
            .boards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(board);
        // Free a big tree outside the map lock.
        drop(removed);
        Ok(())
    }

    async fn boards(&self) -> PortResult<Vec<Board>> {
        let mut boards: Vec<Board> = self
            .boards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        boards.sort();
        Ok(boards)
    }
}

#[async_trait]
impl Health for MemoryRankStore {
    async fn healthcheck(&self) -> PortResult<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use liveops_core::Window;

    use liveops_testkit::fixtures::score_total as total;

    fn board(period: &str) -> Board {
        liveops_testkit::fixtures::board(Window::Daily, period)
    }

    fn cached(store: &MemoryRankStore, b: &Board) -> bool {
        store.board(b).unwrap().cached_top().is_some()
    }

    #[tokio::test]
    async fn top_cache_survives_changes_below_it_only() {
        let store = MemoryRankStore::new();
        let b = board("cache");
        let scores: Vec<ScoreTotal> = (0..2000)
            .map(|i| total(&b, &format!("p{i:04}"), i))
            .collect();
        store.raise(&scores).await.unwrap();
        let top = store.top(&b, 0, 10).await.unwrap();
        assert_eq!(top[0].player_id, "p1999");
        assert!(cached(&store, &b));

        // Rank 1000 holds p1000 (score 1000). A change wholly below it keeps the cache.
        store.raise(&[total(&b, "p0005", 15)]).await.unwrap();
        store.raise(&[total(&b, "new", 3)]).await.unwrap();
        assert!(cached(&store, &b));
        // A player entering the top drops it, and the next read sees the change.
        store.raise(&[total(&b, "p0001", 5000)]).await.unwrap();
        assert!(!cached(&store, &b));
        let top = store.top(&b, 0, 1).await.unwrap();
        assert_eq!(top[0].player_id, "p0001");
        // So does a change of the last cached player.
        store.top(&b, 0, 1).await.unwrap();
        let last = store.top(&b, 999, 1).await.unwrap();
        store
            .raise(&[total(&b, &last[0].player_id, last[0].score + 1)])
            .await
            .unwrap();
        assert!(!cached(&store, &b));
        // A total no higher than the score changes nothing, and keeps the cache.
        store.top(&b, 0, 1).await.unwrap();
        store
            .raise(&[total(&b, "p1999", 1999), total(&b, "p1998", 5)])
            .await
            .unwrap();
        assert!(cached(&store, &b));
        assert_eq!(store.rank(&b, "p1998").await.unwrap().unwrap().score, 1998);
        // Whatever happened, cached and uncached reads agree.
        let via_cache = store.top(&b, 0, 1000).await.unwrap();
        let direct = store.top(&b, 0, 1001).await.unwrap();
        assert_eq!(&direct[..1000], &via_cache[..]);
        assert_eq!(direct[1000].rank, 1001);
    }

    #[tokio::test]
    async fn small_board_cache_is_dropped_by_any_change() {
        let store = MemoryRankStore::new();
        let b = board("small");
        store.raise(&[total(&b, "a", 1)]).await.unwrap();
        assert_eq!(store.top(&b, 0, 5).await.unwrap().len(), 1);
        store.raise(&[total(&b, "b", 0)]).await.unwrap();
        assert_eq!(store.top(&b, 0, 5).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_big_raise_into_an_empty_board_is_built_on_the_blocking_pool() {
        let store = MemoryRankStore::new();
        let b = board("big");
        let n = BLOCKING_LOAD as i64 + 10;
        let mut totals: Vec<ScoreTotal> = (0..n).map(|i| total(&b, &format!("p{i}"), i)).collect();
        totals.push(total(&b, "p3", 1));
        store.raise(&totals).await.unwrap();
        assert_eq!(store.size(&b).await.unwrap(), n as u64);
        let p3 = store.rank(&b, "p3").await.unwrap().unwrap().score;
        assert_eq!(p3, 3, "a player listed twice keeps the highest total");
        let e = store.rank(&b, "p0").await.unwrap().unwrap();
        assert_eq!(e.rank, n as u64);
        // Into a board that holds players, it merges: nobody goes down.
        store.raise(&[total(&b, "p5", 1_000_000)]).await.unwrap();
        let lower: Vec<ScoreTotal> = (0..n).map(|i| total(&b, &format!("p{i}"), i / 2)).collect();
        store.raise(&lower).await.unwrap();
        assert_eq!(store.rank(&b, "p5").await.unwrap().unwrap().rank, 1);
        assert_eq!(store.rank(&b, "p0").await.unwrap().unwrap().rank, n as u64);
    }

    #[tokio::test]
    async fn a_poisoned_board_reports_corrupt_until_raised_again() {
        let store = Arc::new(MemoryRankStore::new());
        let b = board("poison");
        store.raise(&[total(&b, "a", 1)]).await.unwrap();
        let state = store.board(&b).unwrap();
        let poisoner = state.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.tree.write().unwrap();
            panic!("poison the board");
        })
        .join();
        assert!(matches!(
            store.rank(&b, "a").await,
            Err(PortError::Corrupt(_))
        ));
        // Raising starts the board over: what it held must be raised again (the reconcile
        // finds it short).
        store.raise(&[total(&b, "b", 2)]).await.unwrap();
        assert_eq!(store.rank(&b, "b").await.unwrap().unwrap().score, 2);
        assert_eq!(store.size(&b).await.unwrap(), 1);
    }
}
