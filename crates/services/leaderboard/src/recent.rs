//! The totals this replica raised lately, raised again at each reconcile pass: a rank store that
//! failed over to a replica which had not received the last writes (Redis replicates
//! asynchronously) gets them back within a pass, instead of at each player's next event.

use std::collections::{BTreeSet, HashMap};
use std::mem;
use std::sync::Mutex;

use liveops_core::ports::{Board, ScoreTotal};

/// Players noted per pass before a board is raised whole from the repository instead: bounds
/// the memory of a replica under a load spike.
const MAX_NOTED: usize = 200_000;

/// Two passes' worth of raised totals, the highest per (board, player).
#[derive(Debug, Default)]
pub struct Recent {
    passes: Mutex<Passes>,
}

#[derive(Debug, Default)]
struct Passes {
    /// Raised since the last pass.
    current: HashMap<(Board, String), i64>,
    /// Raised in the pass before: a failover during the last pass's own raise lost those too.
    previous: HashMap<(Board, String), i64>,
    /// Boards with more players than [`MAX_NOTED`] raised since the last pass.
    whole: BTreeSet<Board>,
}

/// What a reconcile pass raises again.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Again {
    /// Totals raised in this pass and the one before.
    pub totals: Vec<ScoreTotal>,
    /// Boards to raise whole from the repository.
    pub boards: BTreeSet<Board>,
}

impl Recent {
    /// Notes totals the rank store acknowledged.
    pub fn note(&self, totals: &[ScoreTotal]) {
        let mut p = self.passes.lock().unwrap_or_else(|e| e.into_inner());
        for t in totals {
            if p.whole.contains(&t.board) {
                continue;
            }
            if p.current.len() >= MAX_NOTED {
                let board = t.board.clone();
                p.current.retain(|(b, _), _| *b != board);
                p.whole.insert(board);
                continue;
            }
            let held = p
                .current
                .entry((t.board.clone(), t.player_id.clone()))
                .or_insert(t.total);
            *held = (*held).max(t.total);
        }
    }

    /// What to raise again now (this pass's totals and the last one's), starting a new pass.
    pub fn take(&self) -> Again {
        let mut p = self.passes.lock().unwrap_or_else(|e| e.into_inner());
        let current = mem::take(&mut p.current);
        let mut all = mem::replace(&mut p.previous, current.clone());
        for (k, v) in current {
            let held = all.entry(k).or_insert(v);
            *held = (*held).max(v);
        }
        Again {
            totals: all
                .into_iter()
                .map(|((board, player_id), total)| ScoreTotal {
                    board,
                    player_id,
                    total,
                })
                .collect(),
            boards: mem::take(&mut p.whole),
        }
    }
}

#[cfg(test)]
mod tests {
    use liveops_core::ports::{Board, ScoreTotal};
    use liveops_core::Window;

    use super::{Recent, MAX_NOTED};

    fn total(period: &str, player: &str, total: i64) -> ScoreTotal {
        ScoreTotal {
            board: Board {
                window: Window::Daily,
                period: period.into(),
            },
            player_id: player.into(),
            total,
        }
    }

    fn sorted(mut totals: Vec<ScoreTotal>) -> Vec<(String, i64)> {
        totals.sort_by(|a, b| a.player_id.cmp(&b.player_id));
        totals.into_iter().map(|t| (t.player_id, t.total)).collect()
    }

    #[test]
    fn a_total_is_raised_again_at_the_next_two_passes_then_forgotten() {
        let recent = Recent::default();
        recent.note(&[
            total("d1", "a", 5),
            total("d1", "a", 9),
            total("d1", "b", 3),
        ]);
        recent.note(&[total("d1", "a", 7)]);
        let first = recent.take();
        assert_eq!(sorted(first.totals), [("a".into(), 9), ("b".into(), 3)]);
        recent.note(&[total("d1", "b", 4)]);
        assert_eq!(
            sorted(recent.take().totals),
            [("a".into(), 9), ("b".into(), 4)],
            "the pass before too"
        );
        assert_eq!(sorted(recent.take().totals), [("b".into(), 4)]);
        assert!(recent.take().totals.is_empty());
    }

    #[test]
    fn a_board_past_the_bound_is_raised_whole() {
        let recent = Recent::default();
        let many: Vec<ScoreTotal> = (0..=MAX_NOTED)
            .map(|i| total("d1", &format!("p{i}"), 1))
            .collect();
        recent.note(&many);
        recent.note(&[total("d2", "q", 2)]);
        let again = recent.take();
        assert_eq!(sorted(again.totals), [("q".into(), 2)]);
        let boards: Vec<&str> = again.boards.iter().map(|b| b.period.as_str()).collect();
        assert_eq!(boards, ["d1"]);
        assert!(recent.take().boards.is_empty());
    }
}
