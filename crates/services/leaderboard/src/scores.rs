//! Pure leaderboard arithmetic: which boards an event scores on, and ranking a board's scores.

use std::collections::BTreeMap;

use liveops_core::ports::{Board, ScoreDelta};
use liveops_core::{Calendar, Envelope, Period, Window};

/// The score changes of a batch, one per (board, player), plus how many events scored per window.
pub(crate) fn deltas<'a>(
    events: impl IntoIterator<Item = &'a Envelope>,
    windows: &[Window],
    calendar: &Calendar,
) -> (Vec<ScoreDelta>, BTreeMap<Window, u64>) {
    let mut sums: BTreeMap<(Board, String), i64> = BTreeMap::new();
    let mut updates: BTreeMap<Window, u64> = BTreeMap::new();
    for env in events {
        let score = env.event.score();
        if score == 0 {
            continue;
        }
        for &window in windows {
            let board = Board {
                window,
                period: calendar.period_at_ms(window, env.received_at).id,
            };
            let sum = sums
                .entry((board, env.event.player_id.as_str().to_owned()))
                .or_default();
            *sum = sum.saturating_add(score);
            *updates.entry(window).or_default() += 1;
        }
    }
    let deltas = sums
        .into_iter()
        .map(|((board, player_id), delta)| ScoreDelta {
            board,
            player_id,
            delta,
        })
        .collect();
    (deltas, updates)
}

/// The periods of `window` the rank store holds at `now_ms`: the current one and the one before.
pub(crate) fn live_periods(calendar: &Calendar, window: Window, now_ms: i64) -> (Period, Period) {
    let current = calendar.period_at_ms(window, now_ms);
    let previous = calendar.previous(&current);
    (current, previous)
}

/// The boards the rank store holds at `now_ms`: each of `windows`' previous and current period.
pub(crate) fn live_boards(calendar: &Calendar, windows: &[Window], now_ms: i64) -> Vec<Board> {
    windows
        .iter()
        .flat_map(|&window| {
            let (current, previous) = live_periods(calendar, window, now_ms);
            [previous, current].map(|period| Board {
                window,
                period: period.id,
            })
        })
        .collect()
}

/// Whether the rank store holds `board` at `now_ms`.
pub(crate) fn is_live(calendar: &Calendar, board: &Board, now_ms: i64) -> bool {
    let (current, previous) = live_periods(calendar, board.window, now_ms);
    board.period == current.id || board.period == previous.id
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use liveops_testkit::received::{drop, envelope as env, kill, xp};

    use super::*;

    // 2026-11-21T12:00:00Z (a Saturday, ISO week 47, season 4).
    const T: i64 = 1_795_262_400_000;

    #[test]
    fn scores_in_every_window_and_sums_per_player() {
        let cal = Calendar::default();
        let events = vec![
            env("player_1", kill(100), T),
            env("player_1", xp(50), T + 1),
            env("player_2", kill(0), T),
            env("player_2", drop("sword"), T),
            // Next day: a different daily board, the same week.
            env("player_1", kill(7), T + 86_400_000),
        ];
        let (deltas, updates) = deltas(&events, &Window::ALL, &cal);
        let find = |w: Window, p: &str| {
            deltas
                .iter()
                .find(|d| d.board.window == w && d.board.period == p)
                .map(|d| (d.player_id.as_str(), d.delta))
        };
        assert_eq!(find(Window::Daily, "2026-11-21"), Some(("player_1", 150)));
        assert_eq!(find(Window::Daily, "2026-11-22"), Some(("player_1", 7)));
        assert_eq!(find(Window::Weekly, "2026-W47"), Some(("player_1", 157)));
        assert_eq!(find(Window::Seasonal, "season-4"), Some(("player_1", 157)));
        assert_eq!(deltas.len(), 4);
        assert!(deltas.iter().all(|d| d.player_id == "player_1"));
        assert_eq!(updates[&Window::Daily], 3);
        assert_eq!(updates[&Window::Weekly], 3);

        let (only_daily, _) = deltas_for(&events, &[Window::Daily]);
        assert!(only_daily.iter().all(|d| d.board.window == Window::Daily));
    }

    fn deltas_for(
        events: &[Envelope],
        windows: &[Window],
    ) -> (Vec<ScoreDelta>, BTreeMap<Window, u64>) {
        deltas(events, windows, &Calendar::default())
    }

    #[test]
    fn live_boards_are_the_current_and_previous_period() {
        let cal = Calendar::default();
        let board = |p: &str| Board {
            window: Window::Daily,
            period: p.into(),
        };
        assert!(is_live(&cal, &board("2026-11-21"), T));
        assert!(is_live(&cal, &board("2026-11-20"), T));
        assert!(!is_live(&cal, &board("2026-11-19"), T));
        assert!(!is_live(&cal, &board("2026-11-22"), T));
    }
}
