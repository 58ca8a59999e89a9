//! Retention of ended boards' scores: the daily and weekly boards whose period ended more than
//! `LB_SCORES_RETENTION_DAYS` ago leave the repository (their snapshots, the hall of fame, stay);
//! seasons keep their scores. The clock is a parameter, so tests can move time.

use std::time::Duration;

use liveops_core::ports::Board;
use liveops_core::stores::PurgeRound;
use liveops_core::time;
use liveops_core::{now_ms, PortError, Window};
use liveops_module::tick::every_tick_after;
use tokio_util::sync::CancellationToken;

use crate::LeaderboardState;

/// The windows whose ended boards' scores are purged.
const PURGED: [Window; 2] = [Window::Daily, Window::Weekly];

/// How long after start the first purge runs, and the time between purges.
const FIRST: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(3600);

/// The period id of `window` before which boards are purged at `now_ms`: the one running
/// `LB_SCORES_RETENTION_DAYS` ago (every earlier one ended before then), and that time.
fn cutoff(state: &LeaderboardState, window: Window, now_ms: i64) -> (String, i64) {
    let then = time::cutoff(now_ms, state.config.scores_retention);
    (state.config.calendar.period_at_ms(window, then).id, then)
}

/// Whether `board`'s scores are purged by `now_ms` or within a day: its final snapshot is no
/// longer taken (a purge under way on another replica would leave only part of its top).
pub(crate) fn past_retention(state: &LeaderboardState, board: &Board, now_ms: i64) -> bool {
    const DAY_MS: i64 = 86_400_000;
    PURGED.contains(&board.window)
        && board.period < cutoff(state, board.window, now_ms.saturating_add(DAY_MS)).0
}

/// Purges the scores of the boards ended `LB_SCORES_RETENTION_DAYS` before `now_ms`, counted in
/// `leaderboard_scores_purged_total`; how many rows went. A window whose boards a process
/// keeping them as long walked less than an hour before `now_ms` is not walked again
/// ([`PurgeRound`]): a process with another `LB_SCORES_RETENTION_DAYS` (a change rolling out)
/// walks them.
pub(crate) async fn purge(state: &LeaderboardState, now_ms: i64) -> Result<u64, PortError> {
    let round = PurgeRound {
        at_ms: now_ms,
        every: EVERY,
    };
    let mut purged = 0;
    for window in PURGED {
        let (before, then) = cutoff(state, window, now_ms);
        let rows = state
            .store
            .purge_scores(window, &before, then, round)
            .await?;
        metrics::counter!("leaderboard_scores_purged_total", "window" => window.as_str())
            .increment(rows);
        if rows > 0 {
            tracing::info!(%window, before = %before, rows, "scores of ended boards purged");
        }
        purged += rows;
    }
    Ok(purged)
}

/// Purges the scores of long-ended daily and weekly boards a minute after start and hourly
/// after, until `shutdown`; a failed purge is counted and logged as every background round is,
/// and tried again at the next.
pub async fn run_retention(
    state: LeaderboardState,
    shutdown: CancellationToken,
) -> Result<(), PortError> {
    for window in PURGED {
        metrics::counter!("leaderboard_scores_purged_total", "window" => window.as_str())
            .increment(0);
    }
    let failing = "purging the scores of ended boards";
    every_tick_after(FIRST, EVERY, shutdown, failing, || purge(&state, now_ms())).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::sync::Arc;

    use liveops_core::ports::ScoreDelta;
    use uuid::Uuid;

    use super::*;

    // 2026-11-21T12:00:00Z, a Saturday in ISO week 47 of 2026, season 4.
    const NOW: i64 = 1_795_262_400_000;
    const DAY: i64 = 86_400_000;

    /// `state` keeping the scores `days` days.
    fn kept(state: &LeaderboardState, days: u64) -> LeaderboardState {
        let mut config = (*state.config).clone();
        config.scores_retention = Duration::from_secs(days * 86_400);
        LeaderboardState {
            config: Arc::new(config),
            ..state.clone()
        }
    }

    #[tokio::test]
    async fn a_process_keeping_scores_for_another_span_is_not_spared_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::snapshots::tests::state(&dir).await;
        // Two pods on one database while `LB_SCORES_RETENTION_DAYS` changes from 40 to 30.
        let (forty, thirty) = (kept(&state, 40), kept(&state, 30));
        let board = Board {
            window: Window::Daily,
            period: state
                .config
                .calendar
                .period_at_ms(Window::Daily, NOW - 35 * DAY)
                .id,
        };
        let delta = ScoreDelta {
            board: board.clone(),
            player_id: "player_1".into(),
            delta: 5,
        };
        state
            .store
            .commit_scores(crate::CONSUMER_ID, &[Uuid::now_v7()], &[delta])
            .await
            .unwrap();

        assert_eq!(purge(&forty, NOW).await.unwrap(), 0, "kept 40 days");
        // A minute on, the pod keeping them 30 days walks the boards the walk before left.
        assert_eq!(purge(&thirty, NOW + 60_000).await.unwrap(), 1);
        assert_eq!(state.store.board_size(&board).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn scores_of_boards_ended_before_the_retention_go_and_the_rest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let state = kept(&crate::snapshots::tests::state(&dir).await, 40);
        let cal = &state.config.calendar;
        let board = |window, at_ms| Board {
            window,
            period: cal.period_at_ms(window, at_ms).id,
        };
        // Kept 40 days: the cutoff is Monday 2026-10-12, in week 42.
        let boards = [
            board(Window::Daily, NOW - 41 * DAY),
            board(Window::Daily, NOW - 39 * DAY),
            board(Window::Weekly, NOW - 55 * DAY),
            board(Window::Weekly, NOW - 40 * DAY),
            board(Window::Seasonal, NOW - 60 * DAY),
        ];
        let deltas: Vec<ScoreDelta> = boards
            .iter()
            .map(|b| ScoreDelta {
                board: b.clone(),
                player_id: "player_1".into(),
                delta: 5,
            })
            .collect();
        let ids: Vec<Uuid> = deltas.iter().map(|_| Uuid::now_v7()).collect();
        state
            .store
            .commit_scores(crate::CONSUMER_ID, &ids, &deltas)
            .await
            .unwrap();

        assert_eq!(purge(&state, NOW).await.unwrap(), 2);
        let mut sizes = Vec::new();
        for b in &boards {
            sizes.push(state.store.board_size(b).await.unwrap());
        }
        // The day before the cutoff and week 39 go; the day after it, week 42 (ended 33 days
        // ago) and the season stay.
        assert_eq!(sizes, [0, 1, 0, 1, 1]);
        // An hour on, nothing is left to purge.
        assert_eq!(purge(&state, NOW + 3_600_000).await.unwrap(), 0);
        // No final is taken of a board purged already or within the day: the cutoff's day (kept
        // now, purged tomorrow) is past, the day after it is not; the season never is.
        let past: Vec<bool> = [
            board(Window::Daily, NOW - 41 * DAY),
            board(Window::Daily, NOW - 40 * DAY),
            board(Window::Daily, NOW - 39 * DAY),
            board(Window::Weekly, NOW - 55 * DAY),
            board(Window::Weekly, NOW - 40 * DAY),
            board(Window::Seasonal, NOW - 400 * DAY),
        ]
        .iter()
        .map(|b| past_retention(&state, b, NOW))
        .collect();
        assert_eq!(past, [true, true, false, true, false, false]);
    }
}
