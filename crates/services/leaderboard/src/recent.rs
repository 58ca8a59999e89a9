//! The totals this replica raised lately, raised again at each reconcile pass: a rank store that
//! failed over to a replica which had not received the last writes (Redis replicates
//! asynchronously) gets them back within a pass or two, instead of at each player's next event.
//! Bounded: past [`MAX_NOTED`] (board, player) pairs a pass, further totals are not noted (and
//! counted), so a busy game degrades to the old behaviour for those players, not to more load.

use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex};

use liveops_core::ports::{Board, ScoreTotal};

/// (board, player) pairs noted per pass: about 15 MB of memory per generation.
const MAX_NOTED: usize = 200_000;

/// Per board, per player, the highest total raised.
type Noted = HashMap<Board, HashMap<String, i64>>;

/// Two passes' worth of raised totals.
#[derive(Debug, Default)]
pub struct Recent {
    passes: Mutex<Passes>,
}

#[derive(Debug, Default)]
struct Passes {
    /// Raised since the last pass.
    current: Noted,
    /// How many pairs `current` holds.
    count: usize,
    /// Raised in the pass before: a failover during the last pass's own raise lost those too.
    previous: Arc<Noted>,
}

impl Recent {
    /// Notes totals the rank store acknowledged; returns how many did not fit this pass.
    pub fn note(&self, totals: &[ScoreTotal]) -> usize {
        let mut p = self.passes.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0;
        for t in totals {
            let Passes { current, count, .. } = &mut *p;
            let players = current.entry(t.board.clone()).or_default();
            match players.get_mut(&t.player_id) {
                Some(held) => *held = (*held).max(t.total),
                None if *count < MAX_NOTED => {
                    players.insert(t.player_id.clone(), t.total);
                    *count += 1;
                }
                None => dropped += 1,
            }
        }
        dropped
    }

    /// What to raise again now: this pass's totals and the last one's (a player may appear in
    /// both; raising keeps the higher). Starts a new pass.
    pub fn take(&self) -> Vec<ScoreTotal> {
        let (current, previous) = {
            let mut p = self.passes.lock().unwrap_or_else(|e| e.into_inner());
            p.count = 0;
            let current = Arc::new(mem::take(&mut p.current));
            let previous = mem::replace(&mut p.previous, current.clone());
            (current, previous)
        };
        [current, previous]
            .iter()
            .flat_map(|noted| noted.iter())
            .flat_map(|(board, players)| {
                players.iter().map(|(player_id, total)| ScoreTotal {
                    board: board.clone(),
                    player_id: player_id.clone(),
                    total: *total,
                })
            })
            .collect()
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

    /// The highest total per player, sorted by player.
    fn highest(totals: Vec<ScoreTotal>) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = Vec::new();
        let mut totals: Vec<(String, i64)> =
            totals.into_iter().map(|t| (t.player_id, t.total)).collect();
        totals.sort();
        for (p, t) in totals {
            match out.last_mut() {
                Some((q, held)) if *q == p => *held = (*held).max(t),
                _ => out.push((p, t)),
            }
        }
        out
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
        assert_eq!(highest(recent.take()), [("a".into(), 9), ("b".into(), 3)]);
        recent.note(&[total("d1", "b", 4)]);
        assert_eq!(
            highest(recent.take()),
            [("a".into(), 9), ("b".into(), 4)],
            "the pass before too"
        );
        assert_eq!(highest(recent.take()), [("b".into(), 4)]);
        assert!(recent.take().is_empty());
    }

    #[test]
    fn past_the_bound_totals_are_not_noted_and_counted() {
        let recent = Recent::default();
        let many: Vec<ScoreTotal> = (0..MAX_NOTED)
            .map(|i| total("d1", &format!("p{i}"), 1))
            .collect();
        assert_eq!(recent.note(&many), 0);
        assert_eq!(recent.note(&[total("d2", "q", 2), total("d2", "r", 2)]), 2);
        // A player already noted still gets their newer total.
        assert_eq!(recent.note(&[total("d1", "p7", 5)]), 0);
        let again = highest(recent.take());
        assert_eq!(again.len(), MAX_NOTED);
        assert!(again.contains(&("p7".into(), 5)));
        // A new pass has room again.
        assert_eq!(recent.note(&[total("d2", "q", 2)]), 0);
    }
}
