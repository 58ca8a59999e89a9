//! The leaderboard as players see it: events go on the bus, the consumer ranks them, the routes
//! answer. Real adapters: the in-memory bus and rank store and the SQLite repository.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use liveops_core::ports::{
    rank_entries, topics, Board, BusOptions, Health, ScoreDelta, ScoreTotal,
};
use liveops_core::stores::{ScoreStore, Snapshot};
use liveops_core::{
    now_ms, Bus, Calendar, Envelope, PortError, PortResult, RankEntry, RankStore, Window,
};
use liveops_http::Problem;
use liveops_leaderboard::{
    router, run_consumer, run_reconcile, run_snapshots, HistoryView, LeaderboardConfig,
    LeaderboardState, LeaderboardView, PeriodsView, PlayerRankView, GROUP,
};
use liveops_memory::{MemoryBus, MemoryRankStore};
use liveops_sql::SqliteRepository;
use liveops_testkit::received::{self, envelope};
use liveops_testkit::served;
use serde::de::DeserializeOwned;
use uuid::Uuid;

struct TestApp {
    state: LeaderboardState,
    router: Router,
    bus: Arc<MemoryBus>,
    _dir: tempfile::TempDir,
}

fn config(windows: Vec<Window>) -> LeaderboardConfig {
    LeaderboardConfig {
        windows,
        top_n: 100,
        calendar: Calendar::default(),
        snapshot_cron: "*/5 * * * *".into(),
        reconcile_every: std::time::Duration::from_secs(60),
        scores_retention: std::time::Duration::from_secs(400 * 86_400),
        settle: std::time::Duration::ZERO,
        batch_size: 64,
        consumer_name: "test-1".into(),
    }
}

async fn spawn_app() -> TestApp {
    spawn_app_with(vec![Window::Daily, Window::Weekly, Window::Seasonal]).await
}

async fn spawn_app_with(windows: Vec<Window>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let repo = SqliteRepository::open_migrated(&dir.path().join("liveops.db"))
        .await
        .unwrap();
    let bus = Arc::new(MemoryBus::new(BusOptions::default()));
    bus.ensure_group(topics::ACCEPTED, GROUP).await.unwrap();
    let state = LeaderboardState::new(
        config(windows),
        bus.clone(),
        Arc::new(MemoryRankStore::new()),
        Arc::new(repo),
    );
    state
        .loaded
        .store(true, std::sync::atomic::Ordering::Release);
    TestApp {
        router: router(state.clone()),
        state,
        bus,
        _dir: dir,
    }
}

fn kill(player: &str, points: u32, at: i64) -> Envelope {
    envelope(player, received::kill(points), at)
}

fn xp(player: &str, delta: u32, at: i64) -> Envelope {
    envelope(player, received::xp(delta), at)
}

impl TestApp {
    async fn publish(&self, events: &[Envelope]) {
        let messages = events.iter().map(Envelope::to_message).collect();
        self.bus.publish(topics::ACCEPTED, messages).await.unwrap();
    }

    /// Runs the consumer (rebuild included) until everything published is acked.
    async fn drain(&self) {
        let run = |stop| run_consumer(self.state.clone(), stop);
        served::drain(&*self.bus, topics::ACCEPTED, GROUP, run).await;
    }

    /// `GET uri`, which must answer 200 `application/json` with a `T`.
    async fn ok<T: DeserializeOwned>(&self, uri: &str) -> T {
        served::get_view(&self.router, uri).await
    }

    /// `GET uri`, which must be refused with `status` and a problem, returned.
    async fn refused(&self, uri: &str, status: StatusCode) -> Problem {
        served::get_refused(&self.router, uri, status.as_u16()).await
    }
}

fn period(window: Window, at: i64) -> String {
    Calendar::default().period_at_ms(window, at).id
}

/// Rank, player and score of each entry.
fn ranking(entries: &[RankEntry]) -> Vec<(u64, &str, i64)> {
    entries
        .iter()
        .map(|e| (e.rank, e.player_id.as_str(), e.score))
        .collect()
}

#[tokio::test]
async fn scores_count_in_every_window() {
    let app = spawn_app().await;
    let now = now_ms();
    app.publish(&[
        kill("player_1", 2500, now),
        xp("player_1", 150, now),
        envelope("player_2", received::drop("sword"), now),
    ])
    .await;
    app.drain().await;
    for window in Window::ALL {
        let p = period(window, now);
        let board: LeaderboardView = app
            .ok(&format!("/leaderboard?window={window}&period={p}"))
            .await;
        assert_eq!(board.window, window);
        assert_eq!(board.period, p);
        assert!(board.from.ends_with('Z'));
        assert!(board.to > board.from);
        assert_eq!(
            ranking(&board.entries),
            [(1, "player_1", 2650)],
            "{window}: a drop scores nothing"
        );
    }
}

/// The repository, except that the first `commit_scores` answers an error after committing
/// (the answer lost with the connection, as a database can lose it) unless `lost` is set
/// already; it counts the boards read whole, the score rows read and the boards counted.
struct LostAnswer {
    repo: Arc<dyn ScoreStore>,
    lost: std::sync::atomic::AtomicBool,
    board_reads: std::sync::atomic::AtomicU32,
    rows_read: std::sync::atomic::AtomicUsize,
    /// Every board whose players were counted, in order.
    counted: std::sync::Mutex<Vec<Board>>,
}

impl LostAnswer {
    /// Over `repo`; `lost` set, every commit answers as it should.
    fn over(repo: Arc<dyn ScoreStore>, lost: bool) -> Arc<Self> {
        Arc::new(Self {
            repo,
            lost: lost.into(),
            board_reads: Default::default(),
            rows_read: Default::default(),
            counted: Default::default(),
        })
    }

    /// Counts `rows` as read.
    fn read(&self, rows: PortResult<Vec<(String, i64)>>) -> PortResult<Vec<(String, i64)>> {
        let n = rows.as_ref().map_or(0, Vec::len);
        self.rows_read
            .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        rows
    }
}

#[async_trait::async_trait]
impl Health for LostAnswer {
    async fn healthcheck(&self) -> PortResult<()> {
        self.repo.healthcheck().await
    }
}

#[async_trait::async_trait]
impl ScoreStore for LostAnswer {
    async fn commit_scores(
        &self,
        consumer: &str,
        event_ids: &[Uuid],
        deltas: &[ScoreDelta],
    ) -> PortResult<Vec<ScoreTotal>> {
        let totals = self.repo.commit_scores(consumer, event_ids, deltas).await?;
        if self.lost.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Ok(totals)
        } else {
            Err(PortError::Unavailable(
                "the commit's answer was lost".into(),
            ))
        }
    }
    async fn board_scores(&self, board: &Board) -> PortResult<Vec<(String, i64)>> {
        self.board_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.read(self.repo.board_scores(board).await)
    }
    async fn top_scores(&self, board: &Board, limit: u64) -> PortResult<Vec<(String, i64)>> {
        self.read(self.repo.top_scores(board, limit).await)
    }
    async fn board_size(&self, board: &Board) -> PortResult<u64> {
        self.counted.lock().unwrap().push(board.clone());
        self.repo.board_size(board).await
    }
    async fn scores_of(&self, board: &Board, players: &[String]) -> PortResult<Vec<(String, i64)>> {
        self.read(self.repo.scores_of(board, players).await)
    }
    async fn boards(&self) -> PortResult<Vec<Board>> {
        self.repo.boards().await
    }
    async fn purge_scores(
        &self,
        window: Window,
        before: &str,
        cutoff_ms: i64,
        round: liveops_core::stores::PurgeRound,
    ) -> PortResult<u64> {
        self.repo
            .purge_scores(window, before, cutoff_ms, round)
            .await
    }
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_still_reaches_the_ranks() {
    let mut app = spawn_app_with(vec![Window::Daily]).await;
    app.state.store = LostAnswer::over(app.state.store.clone(), false);
    app.router = router(app.state.clone());
    let now = now_ms();
    app.publish(&[kill("player_lost", 700, now)]).await;
    // The consumer starts (an empty board), its first commit lands but answers an error, and the
    // retry finds the event applied: the board is read again from the repository.
    app.drain().await;
    let p = period(Window::Daily, now);
    let board: LeaderboardView = app
        .ok(&format!("/leaderboard?window=daily&period={p}"))
        .await;
    assert_eq!(ranking(&board.entries), [(1, "player_lost", 700)]);
}

/// A batch committed but not raised yet when a reconcile pass counts the board (its raise
/// follows its commit) is no loss: the board is not read whole again.
#[tokio::test]
async fn a_commit_not_raised_yet_is_not_taken_for_a_lost_board() {
    let (mut app, board) = daily_board_with(&[("first", 500), ("second", 300)]).await;
    let store = LostAnswer::over(app.state.store.clone(), true);
    app.state.store = store.clone();
    let delta = ScoreDelta {
        board: board.clone(),
        player_id: "third".into(),
        delta: 100,
    };
    let totals = store
        .commit_scores("leaderboard", &[Uuid::now_v7()], &[delta])
        .await
        .unwrap();
    // Its raise, 300 ms after the commit: passes run every 50 ms meanwhile.
    let ranks = app.state.ranks.clone();
    let raise = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        ranks.raise(&totals).await.unwrap();
    });
    let started = std::time::Instant::now();
    let ranks = app.state.ranks.clone();
    reconcile_until(app.state.clone(), "passes past the raise", || async {
        // Until the first pass that saw the board short has looked again (2 s later).
        ranks.size(&board).await.unwrap() == 3
            && started.elapsed() > std::time::Duration::from_millis(2_600)
    })
    .await;
    raise.await.unwrap();
    assert_eq!(
        store.board_reads.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the board was read whole again"
    );
}

/// The final snapshot of a large ended board reads only its top: 3 rows of 10 000, ranked as
/// the whole board ranks (ties by player id, descending), and served as final.
#[tokio::test]
async fn a_final_snapshot_reads_only_the_top_of_the_board() {
    let mut app = spawn_app_with(vec![Window::Daily]).await;
    let mut config = (*app.state.config).clone();
    config.top_n = 3;
    app.state.config = Arc::new(config);
    let repo = app.state.store.clone();
    // Two days ago: ended and settled, no longer live.
    let board = Board {
        window: Window::Daily,
        period: period(Window::Daily, now_ms() - 2 * 86_400_000),
    };
    // 10 000 players over 1 000 scores: ten share the best one.
    let deltas: Vec<ScoreDelta> = (0..10_000)
        .map(|i| ScoreDelta {
            board: board.clone(),
            player_id: format!("player_{i:05}"),
            delta: 1 + i % 1000,
        })
        .collect();
    let ids: Vec<Uuid> = deltas.iter().map(|_| Uuid::now_v7()).collect();
    repo.commit_scores("leaderboard", &ids, &deltas)
        .await
        .unwrap();
    let expected = rank_entries(repo.board_scores(&board).await.unwrap(), 3);
    assert_eq!(
        ranking(&expected),
        [
            (1, "player_09999", 1000),
            (2, "player_08999", 1000),
            (3, "player_07999", 1000)
        ]
    );
    let store = LostAnswer::over(repo, true);
    app.state.store = store.clone();
    app.router = router(app.state.clone());

    let stop = tokio_util::sync::CancellationToken::new();
    let snapshots = tokio::spawn(run_snapshots(app.state.clone(), stop.clone()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let fame = loop {
        if let Some(s) = app.state.snapshots.snapshot(&board).await.unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no final snapshot");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    stop.cancel();
    snapshots.await.unwrap().unwrap();
    assert!(fame.is_final);
    assert_eq!(fame.entries, expected);
    let rows = store.rows_read.load(std::sync::atomic::Ordering::SeqCst);
    assert!(rows <= 3, "{rows} score rows read for a top 3");
    let view: LeaderboardView = app
        .ok(&format!(
            "/leaderboard?window=daily&period={}",
            board.period
        ))
        .await;
    assert!(view.is_final);
    assert_eq!(view.entries, expected);
}

/// Runs the reconcile over `state`, a pass every 50 ms, until `done` (10 s at most, else fails
/// naming `what`).
async fn reconcile_until<F, Fut>(state: LeaderboardState, what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let reconciling = Reconciling::start(state);
    reconciling.until(what, done).await;
    reconciling.stop().await;
}

/// The reconcile running over a state, a pass every 50 ms.
struct Reconciling {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), PortError>>,
}

impl Reconciling {
    fn start(mut state: LeaderboardState) -> Self {
        let mut config = (*state.config).clone();
        config.reconcile_every = std::time::Duration::from_millis(50);
        state.config = Arc::new(config);
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(run_reconcile(state, stop.clone()));
        Self { stop, task }
    }

    /// Waits until `done` (10 s at most, else fails naming `what`).
    async fn until<F, Fut>(&self, what: &str, done: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done().await {
            assert!(std::time::Instant::now() < deadline, "not done: {what}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A previous period's board takes only late events: the reconcile counts it in the repository
/// every tenth pass, not every pass, while the rank store holds that many players; emptied (a
/// Redis restarted), it is counted again at once and raised.
#[tokio::test]
async fn an_ended_board_is_counted_every_tenth_pass_and_when_the_rank_store_falls_short() {
    let (mut app, today) = daily_board_with(&[("first", 500)]).await;
    let yesterday = Board {
        window: Window::Daily,
        period: period(Window::Daily, now_ms() - 86_400_000),
    };
    let late = ScoreDelta {
        board: yesterday.clone(),
        player_id: "late".into(),
        delta: 200,
    };
    let totals = app
        .state
        .store
        .commit_scores("leaderboard", &[Uuid::now_v7()], &[late])
        .await
        .unwrap();
    app.state.ranks.raise(&totals).await.unwrap();
    let store = LostAnswer::over(app.state.store.clone(), true);
    app.state.store = store.clone();
    let counts = |board: &Board| {
        store
            .counted
            .lock()
            .unwrap()
            .iter()
            .filter(|b| *b == board)
            .count()
    };
    let reconciling = Reconciling::start(app.state.clone());
    reconciling
        .until("five passes", || async { counts(&today) >= 5 })
        .await;
    assert_eq!(counts(&yesterday), 1, "the ended board was counted again");
    // Counted again every tenth pass (a rank store that lost a few late players is raised).
    reconciling
        .until("twelve passes", || async { counts(&today) >= 12 })
        .await;
    assert_eq!(
        counts(&yesterday),
        2,
        "the ended board was not counted again"
    );
    app.state.ranks.drop_board(&yesterday).await.unwrap();
    let ranks = app.state.ranks.clone();
    reconciling
        .until("the emptied board raised again", || async {
            ranks.size(&yesterday).await.unwrap() == 1
        })
        .await;
    reconciling.stop().await;
    assert_eq!(counts(&yesterday), 3);
}

/// A daily leaderboard with one boss kill per `(player, points)` applied, and today's board.
async fn daily_board_with(kills: &[(&str, u32)]) -> (TestApp, Board) {
    let app = spawn_app_with(vec![Window::Daily]).await;
    let now = now_ms();
    let events: Vec<Envelope> = kills
        .iter()
        .map(|(p, points)| kill(p, *points, now))
        .collect();
    app.publish(&events).await;
    app.drain().await;
    let board = Board {
        window: Window::Daily,
        period: period(Window::Daily, now),
    };
    (app, board)
}

#[tokio::test]
async fn a_board_lost_with_the_rank_store_is_raised_again_without_a_restart() {
    let (app, board) = daily_board_with(&[("kept", 500), ("also_kept", 300)]).await;
    // Redis restarted empty: the board is gone, the repository still has it.
    app.state.ranks.drop_board(&board).await.unwrap();
    assert_eq!(app.state.ranks.size(&board).await.unwrap(), 0);
    let ranks = app.state.ranks.clone();
    reconcile_until(app.state.clone(), "the board raised again", || async {
        ranks.size(&board).await.unwrap() >= 2
    })
    .await;
    let uri = format!("/leaderboard?window=daily&period={}", board.period);
    let view: LeaderboardView = app.ok(&uri).await;
    assert_eq!(
        ranking(&view.entries),
        [(1, "kept", 500), (2, "also_kept", 300)]
    );
}

#[tokio::test]
async fn scores_a_failover_lost_are_raised_again_within_a_reconcile_pass() {
    let (app, board) = daily_board_with(&[("steady", 500), ("climber", 100)]).await;
    let now = now_ms();
    // The replica, in step with the primary so far.
    let replica = Arc::new(MemoryRankStore::new());
    let synced: Vec<ScoreTotal> = app
        .state
        .ranks
        .top(&board, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| ScoreTotal {
            board: board.clone(),
            player_id: e.player_id,
            total: e.score,
        })
        .collect();
    replica.raise(&synced).await.unwrap();
    // The primary acknowledges a last write the replica never receives, then fails over to
    // it: the same players, so the counts agree and only the raised totals tell.
    app.publish(&[kill("climber", 900, now)]).await;
    app.drain().await;
    let failed_over = LeaderboardState {
        ranks: replica.clone(),
        top_cache: Arc::default(),
        ..app.state.clone()
    };
    assert_eq!(
        replica
            .rank(&board, "climber")
            .await
            .unwrap()
            .unwrap()
            .score,
        100
    );
    reconcile_until(failed_over, "the lost total raised again", || async {
        replica
            .rank(&board, "climber")
            .await
            .unwrap()
            .unwrap()
            .score
            >= 1000
    })
    .await;
    let top = replica.top(&board, 0, 10).await.unwrap();
    let ranked: Vec<(&str, i64)> = top
        .iter()
        .map(|e| (e.player_id.as_str(), e.score))
        .collect();
    assert_eq!(ranked, [("climber", 1000), ("steady", 500)]);
}

#[tokio::test]
async fn the_top_is_ordered_and_limited() {
    let app = spawn_app().await;
    let now = now_ms();
    app.publish(&[
        kill("alice", 300, now),
        kill("bob", 900, now),
        kill("carol", 300, now),
        kill("dave", 100, now),
        kill("alice", 50, now),
    ])
    .await;
    app.drain().await;
    let p = period(Window::Daily, now);
    let board: LeaderboardView = app
        .ok(&format!("/leaderboard?window=daily&period={p}&limit=3"))
        .await;
    assert_eq!(
        ranking(&board.entries),
        [(1, "bob", 900), (2, "alice", 350), (3, "carol", 300)]
    );
    // The first configured window is the default, and so is LB_TOPN.
    let board: LeaderboardView = app.ok(&format!("/leaderboard?period={p}")).await;
    assert_eq!(board.window, Window::Daily);
    assert_eq!(board.entries.len(), 4);
}

#[tokio::test]
async fn a_player_sees_neighbours_around_them() {
    let app = spawn_app().await;
    let now = now_ms();
    let events: Vec<_> = (1..=11)
        .map(|i| kill(&format!("player_{i:02}"), i * 100, now))
        .collect();
    app.publish(&events).await;
    app.drain().await;
    let p = period(Window::Weekly, now);
    let me: PlayerRankView = app
        .ok(&format!(
            "/leaderboard/players/player_06?window=weekly&period={p}&around=2"
        ))
        .await;
    assert_eq!(me.player_id, "player_06");
    assert_eq!(me.rank, 6);
    assert_eq!(me.score, 600);
    assert_eq!(me.period, p);
    let names: Vec<_> = me.neighbours.iter().map(|e| e.player_id.as_str()).collect();
    assert_eq!(
        names,
        [
            "player_08",
            "player_07",
            "player_06",
            "player_05",
            "player_04"
        ]
    );
    // At the top there is nobody above; the default is 5 each side.
    let top: PlayerRankView = app
        .ok(&format!(
            "/leaderboard/players/player_11?window=weekly&period={p}"
        ))
        .await;
    assert_eq!(top.rank, 1);
    assert_eq!(top.neighbours.len(), 6);

    app.refused(
        &format!("/leaderboard/players/player_99?window=weekly&period={p}"),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn a_redelivered_event_counts_once() {
    let app = spawn_app().await;
    let now = now_ms();
    let e = kill("player_1", 1000, now);
    app.publish(&[e.clone(), e.clone(), kill("player_2", 10, now)])
        .await;
    app.drain().await;
    app.publish(std::slice::from_ref(&e)).await;
    app.drain().await;
    let p = period(Window::Seasonal, now);
    let board: LeaderboardView = app
        .ok(&format!("/leaderboard?window=seasonal&period={p}"))
        .await;
    assert_eq!(
        ranking(&board.entries),
        [(1, "player_1", 1000), (2, "player_2", 10)]
    );
    let board = Board {
        window: Window::Seasonal,
        period: p,
    };
    let stored = app.state.store.board_scores(&board).await.unwrap();
    assert!(stored.contains(&("player_1".to_owned(), 1000)));
}

#[tokio::test]
async fn a_restart_rebuilds_the_same_ranks_from_the_repository() {
    let app = spawn_app().await;
    let now = now_ms();
    let events: Vec<_> = (1..=20)
        .map(|i| kill(&format!("player_{:02}", i % 7), i * 37, now))
        .collect();
    app.publish(&events).await;
    app.drain().await;

    // A fresh process: same repository and bus, an empty rank store.
    let restarted = LeaderboardState {
        ranks: Arc::new(MemoryRankStore::new()),
        top_cache: Arc::default(),
        ..app.state.clone()
    };
    let again = TestApp {
        router: router(restarted.clone()),
        state: restarted,
        bus: app.bus.clone(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let p = period(Window::Daily, now);
    let board = Board {
        window: Window::Daily,
        period: p.clone(),
    };
    assert_eq!(again.state.ranks.size(&board).await.unwrap(), 0);
    again.drain().await;
    for window in Window::ALL {
        let uri = format!(
            "/leaderboard?window={window}&period={}",
            period(window, now)
        );
        let before: LeaderboardView = app.ok(&uri).await;
        let after: LeaderboardView = again.ok(&uri).await;
        assert_eq!(
            ranking(&before.entries),
            ranking(&after.entries),
            "{window}"
        );
        assert_eq!(after.entries.len(), 7);
    }
    // And it keeps counting from there.
    again.publish(&[kill("player_00", 1, now)]).await;
    again.drain().await;
    let rank = again.state.ranks.rank(&board, "player_00").await.unwrap();
    let stored: i64 = app
        .state
        .store
        .board_scores(&board)
        .await
        .unwrap()
        .into_iter()
        .find(|(p, _)| p == "player_00")
        .unwrap()
        .1;
    assert_eq!(rank.unwrap().score, stored);
}

#[tokio::test]
async fn past_periods_are_served_from_their_snapshot() {
    let app = spawn_app().await;
    let board = Board {
        window: Window::Daily,
        period: "2026-01-05".into(),
    };
    let entries: Vec<RankEntry> = (1..=5)
        .map(|i| RankEntry {
            rank: i,
            player_id: format!("player_{i}"),
            score: 100 - i as i64,
        })
        .collect();
    // No final snapshot yet.
    app.refused("/leaderboard/history?window=daily", StatusCode::NOT_FOUND)
        .await;

    app.state
        .snapshots
        .save_snapshot(&Snapshot {
            window: board.window,
            period: board.period.clone(),
            taken_at_ms: 1_767_657_600_000,
            is_final: true,
            entries: entries.clone(),
        })
        .await
        .unwrap();
    let board: LeaderboardView = app
        .ok("/leaderboard?window=daily&period=2026-01-05&limit=2")
        .await;
    assert!(board.is_final);
    assert_eq!(board.entries.len(), 2);
    assert_eq!(board.from, "2026-01-05T00:00:00Z");
    assert_eq!(board.to, "2026-01-06T00:00:00Z");

    let history: HistoryView = app.ok("/leaderboard/history?window=daily").await;
    assert_eq!(history.period, "2026-01-05");
    assert!(history.is_final);
    assert_eq!(history.taken_at, "2026-01-06T00:00:00Z");
    assert_eq!(history.entries.len(), 5);
    let history: HistoryView = app
        .ok("/leaderboard/history?window=daily&period=2026-01-05")
        .await;
    assert_eq!(history.entries[0].player_id, "player_1");
    let periods: PeriodsView = app.ok("/leaderboard/history/periods?window=daily").await;
    assert_eq!(
        periods,
        PeriodsView {
            window: Window::Daily,
            periods: vec!["2026-01-05".into()],
        }
    );

    let me: PlayerRankView = app
        .ok("/leaderboard/players/player_3?window=daily&period=2026-01-05&around=1")
        .await;
    assert_eq!(me.rank, 3);
    assert_eq!(me.neighbours.len(), 3);

    // A day whose only snapshot was taken while it ran is served as such, not as its result.
    app.state
        .snapshots
        .save_snapshot(&Snapshot {
            window: Window::Daily,
            period: "2026-01-04".into(),
            taken_at_ms: 1_767_549_600_000,
            is_final: false,
            entries,
        })
        .await
        .unwrap();
    let running: LeaderboardView = app.ok("/leaderboard?window=daily&period=2026-01-04").await;
    assert!(!running.is_final);
    assert_eq!(running.entries.len(), 5);

    for uri in [
        "/leaderboard?window=daily&period=2020-01-01",
        "/leaderboard/history?window=daily&period=2020-01-01",
        "/leaderboard/history?window=weekly",
    ] {
        let problem = app.refused(uri, StatusCode::NOT_FOUND).await;
        assert_eq!(problem.status, 404, "{uri}");
    }
}

#[tokio::test]
async fn bad_query_parameters_are_400_problems_naming_them() {
    let app = spawn_app_with(vec![Window::Daily, Window::Weekly]).await;
    let cases = [
        ("/leaderboard?window=hourly", "window"),
        ("/leaderboard?window=seasonal", "window"),
        ("/leaderboard?limit=0", "limit"),
        ("/leaderboard?limit=1001", "limit"),
        ("/leaderboard?limit=ten", "limit"),
        ("/leaderboard?limit=-1", "limit"),
        ("/leaderboard?window=daily&period=2026-13-01", "period"),
        ("/leaderboard?window=weekly&period=2026-11-21", "period"),
        ("/leaderboard/players/player_1?around=51", "around"),
        ("/leaderboard/players/player_1?around=x", "around"),
        ("/leaderboard/players/p1", "id"),
        ("/leaderboard/players/bad%20id", "id"),
        ("/leaderboard/history?window=monthly", "window"),
        (
            "/leaderboard/history?window=daily&period=yesterday",
            "period",
        ),
        ("/leaderboard/history/periods?limit=0", "limit"),
    ];
    for (uri, field) in cases {
        let problem = app.refused(uri, StatusCode::BAD_REQUEST).await;
        assert_eq!(problem.field.as_deref(), Some(field), "{uri}");
    }
    // Limits at the edges are fine.
    let _: LeaderboardView = app.ok("/leaderboard?limit=1000").await;
    let _: PeriodsView = app.ok("/leaderboard/history/periods").await;
}

#[tokio::test]
async fn the_openapi_lists_every_route() {
    let spec = served::openapi_with_paths(
        liveops_leaderboard::MODULE.default_openapi().unwrap(),
        &[
            "/leaderboard",
            "/leaderboard/players/{id}",
            "/leaderboard/history",
            "/leaderboard/history/periods",
        ],
    );
    // The document itself, as JSON: the member names are what is checked.
    let schemas = &spec["components"]["schemas"];
    assert!(schemas["HistoryView"]["properties"]["final"].is_object());
    assert!(schemas["LeaderboardView"]["properties"]["entries"].is_object());
    assert!(schemas["LeaderboardView"]["properties"]["final"].is_object());
}

#[tokio::test]
async fn late_events_of_archived_periods_are_stored_without_reviving_the_board() {
    let app = spawn_app().await;
    let old = now_ms() - 3 * 86_400_000;
    app.publish(&[kill("player_1", 40, old)]).await;
    app.drain().await;
    let board = Board {
        window: Window::Daily,
        period: period(Window::Daily, old),
    };
    assert_eq!(
        app.state.store.board_scores(&board).await.unwrap(),
        [("player_1".to_owned(), 40)]
    );
    assert!(!app.state.ranks.boards().await.unwrap().contains(&board));
    app.refused(
        &format!("/leaderboard?window=daily&period={}", board.period),
        StatusCode::NOT_FOUND,
    )
    .await;
}
