//! Snapshots: the top of each current board on `SNAPSHOT_CRON`, and a final one of each period
//! that ends (the hall of fame), taken `LB_SETTLE_SEC` after the end so that events received
//! before it and still in the pipeline count. The clock is a parameter, so tests can move time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use croner::Cron;
use liveops_core::ports::{rank_entries, Board, RankEntry, ScoreTotal};
use liveops_core::stores::Snapshot;
use liveops_core::{now_ms, utc_ms, Calendar, Period, PortError, Window};
use liveops_module::tick::{naming, Failures};
use tokio_util::sync::CancellationToken;

use crate::scores::live_periods;
use crate::{LeaderboardConfig, LeaderboardState};

/// Ended boards whose scores changed after their final snapshot was due (events held up longer
/// than `LB_SETTLE_SEC`, by a consumer outage across the end), for the snapshotter to take
/// their final snapshot again once no late score came for a while: the hall of fame follows
/// the durable scores. Process memory only: what a crash loses, the next start finds by
/// comparing the recently ended boards with their final snapshots.
#[derive(Debug)]
pub struct LateBoards {
    /// Per board, when a late score last came.
    noted: Mutex<BTreeMap<Board, Instant>>,
    /// How long a board must go without late scores before it is taken again: a backlog
    /// draining after an outage retakes each board once, not once a tick.
    quiet: Duration,
}

/// Boards are noted from this long before their final snapshot is due: a commit that races the
/// snapshot, or clocks a little apart, still takes it again.
const LATE_MARGIN_MS: i64 = 10_000;

impl Default for LateBoards {
    fn default() -> Self {
        Self::with_quiet(Duration::from_secs(5))
    }
}

impl LateBoards {
    /// Boards retaken once they have gone `quiet` without late scores.
    pub fn with_quiet(quiet: Duration) -> Self {
        Self {
            noted: Mutex::default(),
            quiet,
        }
    }

    /// Notes the boards among `totals` (just committed at `now_ms`) whose final snapshot is
    /// due or nearly, counting the totals past due in `leaderboard_late_scores_total`.
    pub(crate) fn note(&self, config: &LeaderboardConfig, totals: &[ScoreTotal], now_ms: i64) {
        let mut per_board = BTreeMap::<&Board, u64>::new();
        for t in totals {
            *per_board.entry(&t.board).or_default() += 1;
        }
        self.note_counted(config, per_board, now_ms);
    }

    /// Notes those of `boards` whose final snapshot is due by `now_ms` or nearly (a commit that
    /// failed may have landed all the same); nothing is counted.
    pub(crate) fn note_boards<'a>(
        &self,
        config: &LeaderboardConfig,
        boards: impl IntoIterator<Item = &'a Board>,
        now_ms: i64,
    ) {
        let uncounted = boards.into_iter().map(|b| (b, 0)).collect();
        self.note_counted(config, uncounted, now_ms);
    }

    /// Notes those of `boards` due or nearly, counting each one's `scores` if past due: one
    /// period id parsed per board of a batch, not per score.
    fn note_counted(&self, config: &LeaderboardConfig, boards: BTreeMap<&Board, u64>, now_ms: i64) {
        let mut late = Vec::new();
        for (board, scores) in boards {
            let Some(due) = final_due(config, board) else {
                continue;
            };
            if due <= now_ms && scores > 0 {
                tracing::warn!(window = %board.window, period = %board.period, scores,
                    "scores committed after the final snapshot was due; it will be taken again");
                metrics::counter!("leaderboard_late_scores_total", "window" => board.window.as_str())
                    .increment(scores);
            }
            if due - LATE_MARGIN_MS <= now_ms {
                late.push(board);
            }
        }
        if late.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        for board in late {
            noted.insert(board.clone(), now);
        }
    }

    /// The boards that have gone quiet, no longer noted.
    fn take_quiet(&self) -> Vec<Board> {
        let mut quiet = Vec::new();
        let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        noted.retain(|board, at| {
            let gone_quiet = at.elapsed() >= self.quiet;
            if gone_quiet {
                quiet.push(board.clone());
            }
            !gone_quiet
        });
        quiet
    }
}

/// When the final snapshot of `board` is due (unix ms): its period's end plus the settle time.
fn final_due(config: &LeaderboardConfig, board: &Board) -> Option<i64> {
    let period = config
        .calendar
        .parse_period(board.window, &board.period)
        .ok()?;
    Some(settled(config, period.to))
}

/// When a ranking that ended at `end` has settled (unix ms).
fn settled(config: &LeaderboardConfig, end: DateTime<Utc>) -> i64 {
    let settle = i64::try_from(config.settle.as_millis()).unwrap_or(i64::MAX);
    end.timestamp_millis().saturating_add(settle)
}

/// How often the clock is checked for a rollover.
const TICK: Duration = Duration::from_secs(1);

/// The most ended periods of a window owed a final snapshot at once, the latest first: at start
/// (every process may have been down across several rollovers) and at a rollover after a sleep.
const FINALS_LOOKBACK: usize = 32;

/// Parses a cron expression: 5 fields (`*/5 * * * *`) or 6 with seconds first; the error says what is wrong.
pub fn parse_cron(s: &str) -> Result<(), String> {
    cron(s).map(|_| ())
}

fn cron(s: &str) -> Result<Cron, String> {
    Cron::new(s.trim())
        .with_seconds_optional()
        .parse()
        .map_err(|e| e.to_string())
}

/// The longest time between two of `cron`'s next 16 occurrences after `from`: how long its
/// snapshots may go without one (weekdays only: the weekend).
fn longest_gap(cron: &Cron, from: DateTime<Utc>) -> Duration {
    let mut longest = Duration::ZERO;
    let mut at = from;
    for _ in 0..16 {
        let Ok(next) = cron.find_next_occurrence(&at, false) else {
            break;
        };
        if at != from {
            longest = longest.max((next - at).to_std().unwrap_or_default());
        }
        at = next;
    }
    longest
}

/// A window whose period changed between two checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rollover {
    /// The window.
    pub window: Window,
    /// The period now running.
    pub current: Period,
    /// Ids of the periods that ended, oldest first, whose final snapshots are due: from the one
    /// seen at the last check (the process may have slept through several periods) to the one
    /// just before `current`, at most [`FINALS_LOOKBACK`].
    pub ended: Vec<String>,
}

/// Which windows rolled over since `last` (window → period id at the last check). Windows never
/// checked before are not rollovers, nor a period before the one seen last (the clock stepped
/// back: that period is not over, and the one seen last is still live).
pub(crate) fn rollovers(
    calendar: &Calendar,
    windows: &[Window],
    now_ms: i64,
    last: &BTreeMap<Window, String>,
) -> Vec<Rollover> {
    windows
        .iter()
        .filter_map(|&window| {
            let (current, previous) = live_periods(calendar, window, now_ms);
            match last.get(&window) {
                Some(id) if *id != current.id && !later_than(calendar, window, id, &current) => {
                    // Back from the one just ended to the one seen last.
                    let (mut period, mut ended) = (previous, Vec::new());
                    loop {
                        let before = calendar.previous(&period);
                        let seen = period.id == *id;
                        ended.push(period.id);
                        if seen || ended.len() == FINALS_LOOKBACK {
                            break;
                        }
                        period = before;
                    }
                    ended.reverse();
                    Some(Rollover {
                        window,
                        current,
                        ended,
                    })
                }
                _ => None,
            }
        })
        .collect()
}

/// Whether the period `id` of `window` starts after `current` (a clock stepped back sees a
/// period again that had ended). An id that cannot be read is not later.
fn later_than(calendar: &Calendar, window: Window, id: &str, current: &Period) -> bool {
    calendar
        .parse_period(window, id)
        .is_ok_and(|period| period.from > current.from)
}

/// The snapshot schedule and what is still due.
pub(crate) struct Snapshotter {
    state: LeaderboardState,
    cron: Option<Cron>,
    next_cron: Option<DateTime<Utc>>,
    /// Period id of each window at the last check.
    last: BTreeMap<Window, String>,
    /// Final snapshots owed, each with when it is due (unix ms: its period's end plus the
    /// settle time), not yet written (retried every tick).
    finals_due: BTreeMap<Board, i64>,
    /// Windows whose archived boards still have to leave the rank store.
    sweep_due: BTreeSet<Window>,
    /// When [`Snapshotter::start`] ran (unix ms): a final snapshot due before it and missing
    /// was not taken in time (`leaderboard_finals_recovered_total`).
    started_ms: i64,
    /// Failing final snapshots, archived boards that cannot be dropped, and failing
    /// `SNAPSHOT_CRON` snapshots, each a background task of its own (counted, logged once a
    /// run, alerted on).
    finals: Failures,
    sweeps: Failures,
    running: Option<Failures>,
}

impl Snapshotter {
    pub(crate) fn new(state: LeaderboardState) -> Self {
        let cron = match cron(&state.config.snapshot_cron) {
            Ok(c) => Some(c),
            Err(error) => {
                tracing::error!(cron = %state.config.snapshot_cron, %error,
                    "bad SNAPSHOT_CRON; only rollover snapshots will be taken");
                None
            }
        };
        let running = cron.as_ref().map(|c| {
            let every = longest_gap(c, Utc::now()).max(TICK);
            Failures::new("cannot take SNAPSHOT_CRON leaderboard snapshots", every)
        });
        Self {
            state,
            cron,
            running,
            finals: Failures::new("cannot take final leaderboard snapshots", TICK),
            sweeps: Failures::new("cannot drop archived boards from the rank store", TICK),
            next_cron: None,
            last: BTreeMap::new(),
            finals_due: BTreeMap::new(),
            sweep_due: BTreeSet::new(),
            started_ms: i64::MIN,
        }
    }

    /// First check: remembers the current periods, owes the final snapshot of each of the last
    /// [`FINALS_LOOKBACK`] ended periods of every window (taken only where it is missing, or
    /// the scores moved since: no process may have run at a rollover, or one noted late scores
    /// and stopped), and a sweep of every window (boards that ended meanwhile).
    pub(crate) async fn start(&mut self, now_ms: i64) {
        let cfg = self.state.config.clone();
        self.started_ms = now_ms;
        for &window in &cfg.windows {
            let (current, mut ended) = live_periods(&cfg.calendar, window, now_ms);
            self.last.insert(window, current.id);
            for _ in 0..FINALS_LOOKBACK {
                let before = cfg.calendar.previous(&ended);
                let due = settled(&cfg, ended.to);
                let board = Board {
                    window,
                    period: ended.id,
                };
                self.finals_due.insert(board, due);
                ended = before;
            }
            self.sweep_due.insert(window);
            // The series exists from the start, so a dashboard's increase() sees the first one.
            metrics::counter!("leaderboard_finals_recovered_total", "window" => window.as_str())
                .increment(0);
        }
        self.next_cron = self.next_after(now_ms);
        self.write_finals_due(now_ms).await;
    }

    /// One check at `now_ms`: rollovers, due final snapshots (again for boards with late
    /// scores), and the cron snapshot.
    pub(crate) async fn tick(&mut self, now_ms: i64) {
        let cfg = self.state.config.clone();
        for board in self.state.late.take_quiet() {
            // One not due yet by this clock is owed by its rollover anyway.
            if final_due(&cfg, &board).is_some_and(|due| due <= now_ms) {
                self.finals_due.insert(board, now_ms);
            }
        }
        for r in rollovers(&cfg.calendar, &cfg.windows, now_ms, &self.last) {
            tracing::info!(window = %r.window, ended = ?r.ended, current = %r.current.id,
                "period rolled over");
            // Every period that ended did so by the start of the current one.
            let due = settled(&cfg, r.current.from);
            self.last.insert(r.window, r.current.id);
            for period in r.ended {
                let board = Board {
                    window: r.window,
                    period,
                };
                self.finals_due.insert(board, due);
            }
            self.sweep_due.insert(r.window);
        }
        self.write_finals_due(now_ms).await;

        if self.next_cron.is_some_and(|next| utc_ms(now_ms) >= next) {
            let mut failed = None;
            for &window in &cfg.windows {
                let current = cfg.calendar.period_at_ms(window, now_ms);
                if let Err(error) = self.live_snapshot(window, current.id, now_ms).await {
                    tracing::debug!(%window, %error, "snapshot failed");
                    failed.get_or_insert(naming(window.as_str(), error));
                }
            }
            if let Some(running) = &mut self.running {
                running.note(failed.map_or(Ok(()), Err));
            }
            self.next_cron = self.next_after(now_ms);
        }
    }

    fn next_after(&self, now_ms: i64) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        match cron.find_next_occurrence(&utc_ms(now_ms), false) {
            Ok(next) => Some(next),
            Err(error) => {
                tracing::error!(%error, "SNAPSHOT_CRON has no next occurrence");
                None
            }
        }
    }

    /// Writes the final snapshots due by `now_ms`, then drops archived boards from the rank
    /// store. While the repository is unavailable the rest wait for the next tick. Each is a
    /// round of its task ([`Failures`]): it fails with its first error, naming the board.
    async fn write_finals_due(&mut self, now_ms: i64) {
        let owed = std::mem::take(&mut self.finals_due);
        let mut away = false;
        let mut failed = None;
        for (board, due) in owed {
            if crate::retention::past_retention(&self.state, &board, now_ms) {
                // Its scores are going (LB_SCORES_RETENTION_DAYS): its snapshot stays as it is.
                tracing::debug!(window = %board.window, period = %board.period,
                    "no final snapshot past the scores' retention");
                continue;
            }
            if due > now_ms || away {
                self.finals_due.insert(board, due);
                continue;
            }
            match self.final_snapshot(&board, now_ms).await {
                Ok(Final::Taken { again: false }) if due < self.started_ms => {
                    tracing::warn!(window = %board.window, period = %board.period,
                        "final snapshot was missing (no process ran when it was due); taken now");
                    metrics::counter!("leaderboard_finals_recovered_total",
                        "window" => board.window.as_str())
                    .increment(1);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(window = %board.window, period = %board.period, %error,
                        "final snapshot failed; will retry");
                    away = matches!(error, PortError::Unavailable(_));
                    let named = format!("{} {}", board.window, board.period);
                    failed.get_or_insert(naming(&named, error));
                    self.finals_due.insert(board, due);
                }
            }
        }
        self.finals.note(failed.map_or(Ok(()), Err));
        let mut failed = None;
        for window in std::mem::take(&mut self.sweep_due) {
            if let Err(error) = self.sweep(window, now_ms).await {
                tracing::debug!(%window, %error, "cannot drop archived boards; will retry");
                failed.get_or_insert(naming(window.as_str(), error));
                self.sweep_due.insert(window);
            }
        }
        self.sweeps.note(failed.map_or(Ok(()), Err));
    }

    /// The final snapshot of an ended period: its top read from the repository (authoritative
    /// even while the rank store is being rebuilt), saved unless the board's final snapshot
    /// holds it already. An empty board leaves nothing to archive.
    async fn final_snapshot(&self, board: &Board, now_ms: i64) -> Result<Final, PortError> {
        let top_n = self.state.config.top_n;
        let scores = self.state.store.top_scores(board, top_n).await?;
        if scores.is_empty() {
            tracing::debug!(window = %board.window, period = %board.period,
                "nothing to archive");
            return Ok(Final::Empty);
        }
        let entries = rank_entries(scores, top_n);
        let again = match self.state.snapshots.snapshot(board).await? {
            Some(s) if s.is_final && s.entries == entries => return Ok(Final::Kept),
            Some(s) => s.is_final,
            None => false,
        };
        self.save(board, entries, now_ms, true).await?;
        Ok(Final::Taken { again })
    }

    /// A running snapshot of a current board, from the rank store.
    async fn live_snapshot(
        &self,
        window: Window,
        period: String,
        now_ms: i64,
    ) -> Result<(), PortError> {
        let board = Board { window, period };
        let entries = self
            .state
            .ranks
            .top(&board, 0, self.state.config.top_n)
            .await?;
        if entries.is_empty() {
            return Ok(());
        }
        self.save(&board, entries, now_ms, false).await
    }

    async fn save(
        &self,
        board: &Board,
        entries: Vec<RankEntry>,
        now_ms: i64,
        is_final: bool,
    ) -> Result<(), PortError> {
        let players = entries.len();
        self.state
            .snapshots
            .save_snapshot(&Snapshot {
                window: board.window,
                period: board.period.clone(),
                taken_at_ms: now_ms,
                is_final,
                entries,
            })
            .await?;
        metrics::counter!("leaderboard_snapshots_total",
            "window" => board.window.as_str(), "final" => if is_final { "true" } else { "false" })
        .increment(1);
        tracing::info!(window = %board.window, period = %board.period, players, is_final,
            "snapshot saved");
        Ok(())
    }

    /// Drops boards of `window` older than the previous period from the rank store (none later
    /// than the current one: the clock may have stepped back).
    async fn sweep(&self, window: Window, now_ms: i64) -> Result<(), PortError> {
        let calendar = &self.state.config.calendar;
        let (current, previous) = live_periods(calendar, window, now_ms);
        for board in self.state.ranks.boards().await? {
            if board.window == window
                && board.period != current.id
                && board.period != previous.id
                && !later_than(calendar, window, &board.period, &current)
            {
                self.state.ranks.drop_board(&board).await?;
                tracing::info!(%window, period = %board.period, "archived board dropped");
            }
        }
        Ok(())
    }
}

/// What [`Snapshotter::final_snapshot`] did.
#[derive(Debug)]
enum Final {
    /// The board has no scores: nothing to archive.
    Empty,
    /// The board's final snapshot already holds its top.
    Kept,
    /// Saved; `again` if it replaced a final snapshot that no longer held the top (late scores).
    Taken { again: bool },
}

/// Snapshots on `SNAPSHOT_CRON`, and a final one (the hall of fame) `LB_SETTLE_SEC` after every
/// window rollover, until `shutdown`.
#[tracing::instrument(skip_all)]
pub async fn run_snapshots(
    state: LeaderboardState,
    shutdown: CancellationToken,
) -> Result<(), PortError> {
    let mut snapshotter = Snapshotter::new(state);
    snapshotter.start(now_ms()).await;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => snapshotter.tick(now_ms()).await,
        }
    }
    tracing::info!("snapshots stopped");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
pub(crate) mod tests {
    use std::sync::Arc;

    use liveops_core::ports::{BusOptions, ScoreDelta};
    use liveops_memory::{MemoryBus, MemoryRankStore};
    use liveops_sql::SqliteRepository;
    use liveops_testkit::received::{envelope, kill};
    use uuid::Uuid;

    use super::*;
    use crate::LeaderboardConfig;

    // 2026-11-21T23:59:59Z, the last second of a Saturday in ISO week 47.
    const T: i64 = 1_795_305_599_000;

    #[test]
    fn cron_expressions_are_checked() {
        assert_eq!(parse_cron("*/5 * * * *"), Ok(()));
        assert_eq!(parse_cron("@hourly"), Ok(()));
        assert!(parse_cron("*/5 * * *").is_err());
        // An optional leading seconds field (6 fields) is accepted.
        assert_eq!(parse_cron("0 */5 * * * *"), Ok(()));
        assert!(parse_cron("0 0 */5 * * * * *").is_err());
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("").is_err());
    }

    /// A clock stepped back across midnight sees the day before again: that is no rollover (the
    /// day seen last is still the live one), and the day after, it rolls over once, as usual.
    #[test]
    fn a_clock_stepped_back_is_no_rollover() {
        let cal = Calendar::default();
        let windows = [Window::Daily, Window::Weekly];
        let after_midnight = T + 1000;
        let last: BTreeMap<_, _> = windows
            .iter()
            .map(|&w| (w, cal.period_at_ms(w, after_midnight).id))
            .collect();
        assert!(
            rollovers(&cal, &windows, T, &last).is_empty(),
            "stepped back"
        );
        assert!(rollovers(&cal, &windows, T - 86_400_000, &last).is_empty());
        // A day later (a Monday): Sunday ended, and ISO week 47 with it.
        let r = rollovers(&cal, &windows, after_midnight + 86_400_000, &last);
        let ended: Vec<_> = r.iter().map(|r| (r.window, r.ended.clone())).collect();
        assert_eq!(
            ended,
            [
                (Window::Daily, vec!["2026-11-22".to_owned()]),
                (Window::Weekly, vec!["2026-W47".to_owned()])
            ]
        );
    }

    #[test]
    fn a_day_change_rolls_the_daily_window_only() {
        let cal = Calendar::default();
        let windows = [Window::Daily, Window::Weekly];
        let mut last = BTreeMap::new();
        assert!(
            rollovers(&cal, &windows, T, &last).is_empty(),
            "first check"
        );
        for w in windows {
            last.insert(w, cal.period_at_ms(w, T).id);
        }
        assert!(rollovers(&cal, &windows, T + 500, &last).is_empty());
        let r = rollovers(&cal, &windows, T + 1000, &last);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].window, Window::Daily);
        assert_eq!(r[0].ended, ["2026-11-21"]);
        assert_eq!(r[0].current.id, "2026-11-22");
        // Asleep through two whole days: every ended day is owed, and the week ended too.
        let r = rollovers(&cal, &windows, T + 2 * 86_400_000 + 1000, &last);
        let ended: Vec<_> = r.iter().map(|r| (r.window, r.ended.clone())).collect();
        assert_eq!(
            ended,
            [
                (
                    Window::Daily,
                    vec![
                        "2026-11-21".into(),
                        "2026-11-22".into(),
                        "2026-11-23".into()
                    ]
                ),
                (Window::Weekly, vec!["2026-W47".into()])
            ]
        );
    }

    /// A loaded leaderboard of daily and weekly boards (top 3, settled at once) over a SQLite
    /// repository in `dir`, its late boards retaken as soon as noted.
    pub(crate) async fn state(dir: &tempfile::TempDir) -> LeaderboardState {
        let repo = SqliteRepository::open_migrated(&dir.path().join("db"))
            .await
            .unwrap();
        let state = LeaderboardState::new(
            LeaderboardConfig {
                windows: vec![Window::Daily, Window::Weekly],
                top_n: 3,
                calendar: Calendar::default(),
                snapshot_cron: "*/5 * * * *".into(),
                reconcile_every: std::time::Duration::from_secs(60),
                scores_retention: std::time::Duration::from_secs(400 * 86_400),
                settle: std::time::Duration::ZERO,
                batch_size: 16,
                consumer_name: "test".into(),
            },
            Arc::new(MemoryBus::new(BusOptions::default())),
            Arc::new(MemoryRankStore::new()),
            Arc::new(repo),
        );
        state
            .loaded
            .store(true, std::sync::atomic::Ordering::Release);
        LeaderboardState {
            late: Arc::new(LateBoards::with_quiet(Duration::ZERO)),
            ..state
        }
    }

    /// Scores as the consumer records them: durable first, then the rank store.
    async fn score(state: &LeaderboardState, at_ms: i64, scores: &[(&str, i64)]) {
        let mut deltas = Vec::new();
        for &window in &state.config.windows {
            for (player, delta) in scores {
                deltas.push(ScoreDelta {
                    board: board(window, at_ms),
                    player_id: (*player).to_owned(),
                    delta: *delta,
                });
            }
        }
        let ids: Vec<Uuid> = scores.iter().map(|_| Uuid::now_v7()).collect();
        let totals = state
            .store
            .commit_scores(crate::CONSUMER_ID, &ids, &deltas)
            .await
            .unwrap();
        state.ranks.raise(&totals).await.unwrap();
    }

    fn board(window: Window, at_ms: i64) -> Board {
        Board {
            window,
            period: Calendar::default().period_at_ms(window, at_ms).id,
        }
    }

    /// The stored snapshot of `window`'s board at `at_ms`, if any.
    async fn stored(state: &LeaderboardState, window: Window, at_ms: i64) -> Option<Snapshot> {
        state
            .snapshots
            .snapshot(&board(window, at_ms))
            .await
            .unwrap()
    }

    fn players(s: &Snapshot) -> Vec<(u64, &str, i64)> {
        s.entries
            .iter()
            .map(|e| (e.rank, e.player_id.as_str(), e.score))
            .collect()
    }

    #[tokio::test]
    async fn a_rollover_archives_the_ended_period_and_drops_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir).await;
        let day1 = T - 86_400_000;
        score(&state, day1, &[("old_timer", 5)]).await;
        score(
            &state,
            T,
            &[("alice", 10), ("bob", 30), ("carol", 20), ("dave", 1)],
        )
        .await;

        let mut s = Snapshotter::new(state.clone());
        s.start(T).await;
        // Catching up at start: the previous day had no final snapshot.
        let prev = stored(&state, Window::Daily, day1).await.unwrap();
        assert!(prev.is_final);
        assert_eq!(players(&prev), [(1, "old_timer", 5)]);
        assert!(stored(&state, Window::Daily, T).await.is_none());

        // The day ends (T is its last second); the week goes on.
        s.tick(T + 1_000).await;
        let fame = stored(&state, Window::Daily, T).await.unwrap();
        assert!(fame.is_final);
        assert_eq!(fame.taken_at_ms, T + 1_000);
        assert_eq!(
            players(&fame),
            [(1, "bob", 30), (2, "carol", 20), (3, "alice", 10)]
        );
        // Midnight is also a `*/5` occurrence: the running week gets a running snapshot.
        let week = stored(&state, Window::Weekly, T).await.unwrap();
        assert!(!week.is_final);
        // Kept live: the current and the previous day; the one before is gone.
        let held = state.ranks.boards().await.unwrap();
        assert!(held.contains(&board(Window::Daily, T)));
        assert!(!held.contains(&board(Window::Daily, day1)));
        assert!(held.contains(&board(Window::Weekly, T)));

        // Another day: the week ends too, and T's day leaves the rank store.
        s.tick(T + 86_401_000).await;
        let week = stored(&state, Window::Weekly, T).await.unwrap();
        assert!(week.is_final);
        assert_eq!(players(&week)[0], (1, "bob", 30));
        let held = state.ranks.boards().await.unwrap();
        assert!(!held.contains(&board(Window::Daily, T)));
        assert!(
            held.contains(&board(Window::Weekly, T)),
            "previous week stays live"
        );

        // The hall of fame index.
        let periods = state
            .snapshots
            .snapshot_periods(Window::Daily, 10)
            .await
            .unwrap();
        assert!(periods.contains(&board(Window::Daily, T).period));
    }

    /// Snapshots over a repository that can be "down": while it is, every save fails.
    struct Down {
        inner: Arc<dyn liveops_core::stores::SnapshotStore>,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl liveops_core::Health for Down {
        async fn healthcheck(&self) -> Result<(), PortError> {
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl liveops_core::stores::SnapshotStore for Down {
        async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), PortError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(PortError::Unavailable("database down".into()));
            }
            self.inner.save_snapshot(snapshot).await
        }
        async fn snapshot(&self, board: &Board) -> Result<Option<Snapshot>, PortError> {
            self.inner.snapshot(board).await
        }
        async fn snapshot_periods(
            &self,
            window: Window,
            limit: u32,
        ) -> Result<Vec<String>, PortError> {
            self.inner.snapshot_periods(window, limit).await
        }
    }

    /// While the database is down, a final snapshot owed is retried every tick: each failing
    /// tick is counted as a background round of its task, and logged once (with the board and
    /// the task as a field), not once a tick; its recovery once.
    #[tokio::test]
    async fn failing_final_snapshots_are_counted_and_logged_once_a_run() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _metrics = metrics::set_default_local_recorder(&recorder);
        let logs = liveops_testkit::logs::Captured::start();
        let task = "cannot take final leaderboard snapshots";
        let failures = || {
            let series = format!("background_round_failures_total{{task=\"{task}\"}}");
            liveops_testkit::logs::sample(&handle.render(), &series)
        };
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir).await;
        let snapshots = Arc::new(Down {
            inner: state.snapshots.clone(),
            down: false.into(),
        });
        let state = LeaderboardState {
            snapshots: snapshots.clone(),
            ..state
        };
        score(&state, T, &[("alice", 10)]).await;
        let mut s = Snapshotter::new(state.clone());
        assert_eq!(failures(), Some(0.0), "counted from 0 at start");
        s.start(T).await;

        // The day ends while the database is down: three ticks, three failures, one line.
        snapshots
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for tick in 1..=3 {
            s.tick(T + tick * 1_000).await;
        }
        assert_eq!(failures(), Some(3.0));
        let warned: Vec<_> = logs
            .lines()
            .into_iter()
            .filter(|l| l["task"] == task && l["level"] == "WARN")
            .collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        let error = warned[0]["error"].as_str().unwrap_or_default();
        assert!(error.contains(&board(Window::Daily, T).period), "{error}");

        // Back up: taken at the next tick, the recovery logged once.
        snapshots
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        s.tick(T + 4_000).await;
        assert!(stored(&state, Window::Daily, T).await.unwrap().is_final);
        assert_eq!(failures(), Some(3.0));
        let recovered = logs.line(&format!("{task}: recovered")).expect("logged");
        assert_eq!(recovered["task"], task);
    }

    #[tokio::test]
    async fn a_start_after_downtime_across_two_rollovers_takes_every_missing_final() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir).await;
        let day2 = T + 86_400_000;
        // Day D ran until 22:05 (a running snapshot then); its last two hours were scored too.
        score(&state, T - 2 * 3_600_000, &[("alice", 10), ("bob", 5)]).await;
        let mut s = Snapshotter::new(state.clone());
        s.start(T - 7_199_000).await;
        s.tick(T - 6_899_000).await;
        let running = stored(&state, Window::Daily, T).await.unwrap();
        assert!(!running.is_final);
        score(&state, T, &[("bob", 20), ("carol", 1)]).await;
        score(&state, day2, &[("dave", 7)]).await;
        // Every process was down from D 22:00 to D+2 00:30.
        let mut s = Snapshotter::new(state.clone());
        s.start(day2 + 1_801_000).await;
        s.tick(day2 + 1_802_000).await;
        let fame = stored(&state, Window::Daily, T).await.unwrap();
        assert!(fame.is_final);
        assert_eq!(
            players(&fame),
            [(1, "bob", 25), (2, "alice", 10), (3, "carol", 1)]
        );
        let next = stored(&state, Window::Daily, day2).await.unwrap();
        assert!(next.is_final);
        assert_eq!(players(&next), [(1, "dave", 7)]);
        // And D's board has left the rank store (D+1's is the previous day now).
        let held = state.ranks.boards().await.unwrap();
        assert!(!held.contains(&board(Window::Daily, T)), "{held:?}");
        assert!(held.contains(&board(Window::Daily, day2)));
    }

    #[tokio::test]
    async fn the_cron_takes_running_snapshots_of_the_current_boards() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir).await;
        // 2026-11-21T12:01:00Z: the next */5 is 12:05.
        let noon = T - 11 * 3_600_000 - 58 * 60_000 - 59_000;
        score(&state, noon, &[("alice", 10), ("bob", 30)]).await;
        let mut s = Snapshotter::new(state.clone());
        s.start(noon).await;
        s.tick(noon + 60_000).await;
        assert!(stored(&state, Window::Daily, noon).await.is_none());
        s.tick(noon + 4 * 60_000).await;
        let snap = stored(&state, Window::Daily, noon).await.unwrap();
        assert!(!snap.is_final);
        assert_eq!(snap.taken_at_ms, noon + 4 * 60_000);
        assert_eq!(players(&snap), [(1, "bob", 30), (2, "alice", 10)]);

        // More points, and the next occurrence takes them.
        score(&state, noon, &[("alice", 100)]).await;
        s.tick(noon + 6 * 60_000).await;
        let snap = stored(&state, Window::Daily, noon).await.unwrap();
        assert_eq!(snap.taken_at_ms, noon + 4 * 60_000, "not due yet");
        s.tick(noon + 9 * 60_000).await;
        let snap = stored(&state, Window::Daily, noon).await.unwrap();
        assert_eq!(players(&snap)[0], (1, "alice", 110));
        let weekly = stored(&state, Window::Weekly, noon).await.unwrap();
        assert!(!weekly.is_final);
    }

    /// A leaderboard whose final snapshots are taken 60 s after their period ends, with
    /// `scores` at `T`, and its snapshotter started at `started`.
    async fn settling(
        dir: &tempfile::TempDir,
        scores: &[(&str, i64)],
        started: i64,
    ) -> (LeaderboardState, Snapshotter) {
        let mut state = state(dir).await;
        let mut config = (*state.config).clone();
        config.settle = Duration::from_secs(60);
        state.config = Arc::new(config);
        score(&state, T, scores).await;
        let mut s = Snapshotter::new(state.clone());
        s.start(started).await;
        (state, s)
    }

    #[tokio::test]
    async fn the_final_snapshot_waits_for_events_still_on_their_way() {
        let dir = tempfile::tempdir().unwrap();
        let (state, mut s) = settling(&dir, &[("alice", 10)], T).await;
        // The day ends (T is its last second): its final snapshot is due 60 s later.
        s.tick(T + 1_000).await;
        assert!(stored(&state, Window::Daily, T).await.is_none());
        // An event received in the day's last second reaches the consumer 30 s later.
        score(&state, T, &[("bob", 20)]).await;
        s.tick(T + 31_000).await;
        assert!(stored(&state, Window::Daily, T).await.is_none());
        s.tick(T + 61_000).await;
        let fame = stored(&state, Window::Daily, T).await.unwrap();
        assert!(fame.is_final);
        assert_eq!(players(&fame), [(1, "bob", 20), (2, "alice", 10)]);

        // A process started within the settle time owes the final snapshot, due as before.
        let dir = tempfile::tempdir().unwrap();
        let (state, mut s) = settling(&dir, &[("carol", 5)], T + 10_000).await;
        assert!(stored(&state, Window::Daily, T).await.is_none());
        s.tick(T + 61_000).await;
        assert!(stored(&state, Window::Daily, T).await.unwrap().is_final);
    }

    #[tokio::test]
    async fn scores_committed_after_the_final_snapshot_take_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let (state, mut s) = settling(&dir, &[("alice", 10)], T).await;
        s.tick(T + 61_000).await;
        let first = stored(&state, Window::Daily, T).await.unwrap();
        assert_eq!(players(&first), [(1, "alice", 10)]);

        // The consumer was down across the end: an event received in the day's last second is
        // committed after the final snapshot.
        let late = envelope("bob", kill(25), T);
        let totals = crate::consumer::commit_batch(&state, &[late], || T + 61_500)
            .await
            .unwrap();
        assert_eq!(totals.len(), 2, "the day's board and the week's");
        s.tick(T + 62_000).await;
        let fame = stored(&state, Window::Daily, T).await.unwrap();
        assert!(fame.is_final);
        assert_eq!(fame.taken_at_ms, T + 62_000);
        assert_eq!(players(&fame), [(1, "bob", 25), (2, "alice", 10)]);
        // The week has not ended: its board is live, and no final snapshot is taken for it.
        assert!(stored(&state, Window::Weekly, T)
            .await
            .is_none_or(|w| !w.is_final));

        // Nothing late since: the next check leaves the hall of fame as it is.
        s.tick(T + 63_000).await;
        assert_eq!(stored(&state, Window::Daily, T).await.unwrap(), fame);
    }

    #[test]
    fn a_board_is_taken_again_once_its_late_scores_stop() {
        let late = LateBoards::with_quiet(Duration::from_millis(500));
        let config = LeaderboardConfig {
            windows: vec![Window::Daily],
            top_n: 3,
            calendar: Calendar::default(),
            snapshot_cron: "*/5 * * * *".into(),
            reconcile_every: Duration::from_secs(60),
            scores_retention: Duration::from_secs(400 * 86_400),
            settle: Duration::from_secs(60),
            batch_size: 16,
            consumer_name: "test".into(),
        };
        let ended = board(Window::Daily, T);
        let live = board(Window::Daily, T + 86_400_000);
        // At T + 55 s the day's final snapshot is nearly due (60 s after its end): noted; the
        // next day's board is not.
        late.note_boards(&config, [&ended, &live], T + 55_000);
        assert!(late.take_quiet().is_empty(), "still getting late scores");
        std::thread::sleep(Duration::from_millis(600));
        late.note_boards(&config, [&live], T + 56_000);
        assert_eq!(late.take_quiet(), [ended]);
        assert!(late.take_quiet().is_empty());
    }

    #[tokio::test]
    async fn a_restart_retakes_a_final_snapshot_only_if_the_scores_moved() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir).await;
        score(&state, T, &[("alice", 10)]).await;
        let mut s = Snapshotter::new(state.clone());
        s.start(T).await;
        s.tick(T + 1_000).await;
        let first = stored(&state, Window::Daily, T).await.unwrap();
        // Nothing changed: a restart leaves it as it is.
        Snapshotter::new(state.clone()).start(T + 2_000).await;
        assert_eq!(stored(&state, Window::Daily, T).await.unwrap(), first);
        // Late points landed, and the process that noted them stopped before taking it again:
        // the next start does.
        score(&state, T, &[("alice", 5)]).await;
        Snapshotter::new(state.clone()).start(T + 3_000).await;
        let again = stored(&state, Window::Daily, T).await.unwrap();
        assert!(again.is_final);
        assert_eq!(again.taken_at_ms, T + 3_000);
        assert_eq!(players(&again), [(1, "alice", 15)]);
    }
}
