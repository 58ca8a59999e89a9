//! The leaderboard as players see it: events go on the bus, the consumer ranks them, the routes
//! answer. Real adapters: the in-memory bus and rank store and the SQLite repository.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use liveops_core::ports::{topics, Board, BusOptions, Message};
use liveops_core::stores::Snapshot;
use liveops_core::{now_ms, Bus, Calendar, Envelope, RankEntry, Window};
use liveops_leaderboard::{router, run_consumer, LeaderboardConfig, LeaderboardState, GROUP};
use liveops_memory::{MemoryBus, MemoryRankStore};
use liveops_sql::SqliteRepository;
use liveops_testkit::received::{self, envelope};
use liveops_testkit::served;
use serde_json::{json, Value};

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
        batch_size: 64,
        consumer_name: "test-1".into(),
    }
}

async fn spawn_app() -> TestApp {
    spawn_app_with(vec![Window::Daily, Window::Weekly, Window::Seasonal]).await
}

async fn spawn_app_with(windows: Vec<Window>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("liveops.db");
    let repo = SqliteRepository::connect(db.to_str().unwrap())
        .await
        .unwrap();
    repo.migrate().await.unwrap();
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
        let messages = events
            .iter()
            .map(|e| Message {
                id: e.event_id.to_string(),
                key: e.event.player_id.to_string(),
                payload: e.encode().into(),
            })
            .collect();
        self.bus.publish(topics::ACCEPTED, messages).await.unwrap();
    }

    /// Runs the consumer (rebuild included) until everything published is acked.
    async fn drain(&self) {
        let run = |stop| run_consumer(self.state.clone(), stop);
        served::drain(&*self.bus, topics::ACCEPTED, GROUP, run).await;
    }

    async fn get(&self, uri: &str) -> served::Reply {
        served::get(&self.router, uri).await
    }

    async fn ok(&self, uri: &str) -> Value {
        let (status, _, body) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body
    }
}

fn period(window: Window, at: i64) -> String {
    Calendar::default().period_at_ms(window, at).id
}

fn ranking(body: &Value) -> Vec<(u64, &str, i64)> {
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["rank"].as_u64().unwrap(),
                e["playerId"].as_str().unwrap(),
                e["score"].as_i64().unwrap(),
            )
        })
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
        let body = app
            .ok(&format!("/leaderboard?window={window}&period={p}"))
            .await;
        assert_eq!(body["window"], window.as_str());
        assert_eq!(body["period"], p);
        assert!(body["from"].as_str().unwrap().ends_with('Z'));
        assert!(body["to"].as_str().unwrap() > body["from"].as_str().unwrap());
        assert_eq!(
            ranking(&body),
            [(1, "player_1", 2650)],
            "{window}: a drop scores nothing"
        );
    }
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
    let body = app
        .ok(&format!("/leaderboard?window=daily&period={p}&limit=3"))
        .await;
    assert_eq!(
        ranking(&body),
        [(1, "bob", 900), (2, "alice", 350), (3, "carol", 300)]
    );
    // The first configured window is the default, and so is LB_TOPN.
    let body = app.ok(&format!("/leaderboard?period={p}")).await;
    assert_eq!(body["window"], "daily");
    assert_eq!(ranking(&body).len(), 4);
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
    let body = app
        .ok(&format!(
            "/leaderboard/players/player_06?window=weekly&period={p}&around=2"
        ))
        .await;
    assert_eq!(body["playerId"], "player_06");
    assert_eq!(body["rank"], 6);
    assert_eq!(body["score"], 600);
    assert_eq!(body["period"], p);
    let names: Vec<_> = body["neighbours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["playerId"].as_str().unwrap().to_owned())
        .collect();
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
    let body = app
        .ok(&format!(
            "/leaderboard/players/player_11?window=weekly&period={p}"
        ))
        .await;
    assert_eq!(body["rank"], 1);
    assert_eq!(body["neighbours"].as_array().unwrap().len(), 6);

    let (status, ctype, _) = app
        .get(&format!(
            "/leaderboard/players/player_99?window=weekly&period={p}"
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ctype, "application/problem+json");
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
    let body = app
        .ok(&format!("/leaderboard?window=seasonal&period={p}"))
        .await;
    assert_eq!(ranking(&body), [(1, "player_1", 1000), (2, "player_2", 10)]);
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
        let before = app.ok(&uri).await;
        let after = again.ok(&uri).await;
        assert_eq!(ranking(&before), ranking(&after), "{window}");
        assert_eq!(ranking(&after).len(), 7);
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
    let (status, _, _) = app.get("/leaderboard/history?window=daily").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no final snapshot yet");

    app.state
        .store
        .save_snapshot(&Snapshot {
            window: board.window,
            period: board.period.clone(),
            taken_at_ms: 1_767_657_600_000,
            is_final: true,
            entries: entries.clone(),
        })
        .await
        .unwrap();
    let body = app
        .ok("/leaderboard?window=daily&period=2026-01-05&limit=2")
        .await;
    assert_eq!(ranking(&body).len(), 2);
    assert_eq!(body["from"], "2026-01-05T00:00:00Z");
    assert_eq!(body["to"], "2026-01-06T00:00:00Z");

    let body = app.ok("/leaderboard/history?window=daily").await;
    assert_eq!(body["period"], "2026-01-05");
    assert_eq!(body["final"], true);
    assert_eq!(body["takenAt"], "2026-01-06T00:00:00Z");
    assert_eq!(ranking(&body).len(), 5);
    let body = app
        .ok("/leaderboard/history?window=daily&period=2026-01-05")
        .await;
    assert_eq!(body["entries"][0]["playerId"], "player_1");
    let body = app.ok("/leaderboard/history/periods?window=daily").await;
    assert_eq!(body, json!({"window": "daily", "periods": ["2026-01-05"]}));

    let body = app
        .ok("/leaderboard/players/player_3?window=daily&period=2026-01-05&around=1")
        .await;
    assert_eq!(body["rank"], 3);
    assert_eq!(body["neighbours"].as_array().unwrap().len(), 3);

    for uri in [
        "/leaderboard?window=daily&period=2020-01-01",
        "/leaderboard/history?window=daily&period=2020-01-01",
        "/leaderboard/history?window=weekly",
    ] {
        let (status, ctype, body) = app.get(uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(ctype, "application/problem+json");
        assert_eq!(body["status"], 404);
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
        let (status, ctype, body) = app.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(ctype, "application/problem+json", "{uri}");
        assert_eq!(body["field"], field, "{uri}");
    }
    // Limits at the edges are fine.
    app.ok("/leaderboard?limit=1000").await;
    app.ok("/leaderboard/history/periods").await;
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
    let schemas = &spec["components"]["schemas"];
    assert!(schemas["HistoryView"]["properties"]["final"].is_object());
    assert!(schemas["LeaderboardView"]["properties"]["entries"].is_object());
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
    let (status, _, _) = app
        .get(&format!(
            "/leaderboard?window=daily&period={}",
            board.period
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
