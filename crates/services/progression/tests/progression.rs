//! Progression as a player sees it: events go on the bus, the consumer applies them, the routes
//! answer. Real adapters: the in-memory bus, hot state and the SQLite repository.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use liveops_core::ports::BusOptions;
use liveops_core::ports::{topics, Message};
use liveops_core::{now_ms, Bus, Calendar, Envelope, Keyring, LevelCurve};
use liveops_http::SignatureCheck;
use liveops_memory::{MemoryBus, MemoryHotState};
use liveops_progression::{router, run_consumer, ProgressionConfig, ProgressionState, GROUP};
use liveops_sql::SqliteRepository;
use liveops_testkit::received::{self, envelope};
use liveops_testkit::served;
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

struct TestApp {
    state: ProgressionState,
    router: Router,
    bus: Arc<MemoryBus>,
    keyring: Keyring,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("liveops.db");
    let repo = SqliteRepository::connect(db.to_str().unwrap())
        .await
        .unwrap();
    repo.migrate().await.unwrap();
    let bus = Arc::new(MemoryBus::new(BusOptions::default()));
    bus.ensure_group(topics::ACCEPTED, GROUP).await.unwrap();
    let keyring = Keyring::single(SECRET).unwrap();
    let repo = Arc::new(repo);
    let state = ProgressionState {
        config: Arc::new(ProgressionConfig {
            curve: LevelCurve::default(),
            calendar: Calendar::default(),
            batch_size: 256,
            consumer_name: "test-1".into(),
        }),
        signatures: SignatureCheck {
            keys: Arc::new(liveops_core::KeyStore::new(keyring.clone())),
            tolerance_s: 300,
        },
        bus: bus.clone(),
        cache: Arc::new(MemoryHotState::new()),
        store: repo.clone(),
        processed: repo,
    };
    TestApp {
        router: router(state.clone()),
        state,
        bus,
        keyring,
        _dir: dir,
    }
}

fn xp(player: &str, delta: u32) -> Envelope {
    envelope(player, received::xp(delta), now_ms())
}

fn drop(player: &str, item: &str) -> Envelope {
    envelope(player, received::drop(item), now_ms())
}

impl TestApp {
    async fn publish(&self, events: &[Envelope]) {
        self.publish_raw(events.iter().map(|e| e.encode()).collect())
            .await;
    }

    async fn publish_raw(&self, payloads: Vec<Vec<u8>>) {
        let messages = payloads
            .into_iter()
            .map(|p| Message {
                id: uuid::Uuid::now_v7().to_string(),
                key: "k".into(),
                payload: p.into(),
            })
            .collect();
        self.bus.publish(topics::ACCEPTED, messages).await.unwrap();
    }

    /// Runs the consumer until everything published is acked.
    async fn drain(&self) {
        let run = |stop| run_consumer(self.state.clone(), stop);
        served::drain(&*self.bus, topics::ACCEPTED, GROUP, run).await;
    }

    async fn call(&self, req: Request<Body>) -> served::Reply {
        served::call(&self.router, req).await
    }

    async fn get(&self, uri: &str) -> served::Reply {
        served::get(&self.router, uri).await
    }

    async fn progress(&self, player: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.get(&format!("/players/{player}/progress")).await;
        (s, v)
    }

    /// Gives `player` `delta` XP (enough for a level) and answers the id of the first reward
    /// it made pending.
    async fn earn_reward(&self, player: &str, delta: u32) -> String {
        self.publish(&[xp(player, delta)]).await;
        self.drain().await;
        let (_, body) = self.progress(player).await;
        reward_ids(&body).remove(0)
    }

    /// Asserts `player` holds one `item` and nothing else, and has no reward left to claim.
    async fn assert_claimed_only(&self, player: &str, item: &str) {
        let (_, body) = self.progress(player).await;
        assert_eq!(body["inventory"], json!([{"item": item, "quantity": 1}]));
        assert_eq!(body["pendingRewards"], json!([]));
    }

    async fn claim_raw(&self, body: Vec<u8>, sign: bool) -> (StatusCode, String, Value) {
        let ts = now_ms() / 1000;
        let mut req = Request::post("/rewards/claim").header("content-type", "application/json");
        if sign {
            let sig = self.keyring.sign_request(None, ts, &body).unwrap();
            req = req
                .header("X-Timestamp", ts.to_string())
                .header("X-Signature", sig);
        }
        self.call(req.body(Body::from(body)).unwrap()).await
    }

    async fn claim(&self, player: &str, reward: &str) -> (StatusCode, Value) {
        let body = json!({"playerId": player, "rewardId": reward}).to_string();
        let (s, _, v) = self.claim_raw(body.into_bytes(), true).await;
        (s, v)
    }

    async fn verify(&self, receipt: &Value) -> (StatusCode, Value) {
        let (s, _, v) = self
            .call(
                Request::post("/receipts/verify")
                    .header("content-type", "application/json")
                    .body(Body::from(receipt.to_string()))
                    .unwrap(),
            )
            .await;
        (s, v)
    }
}

fn reward_ids(progress: &Value) -> Vec<String> {
    progress["pendingRewards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rewardId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_unknown_player_starts_at_level_one() {
    let app = spawn_app().await;
    let (status, body) = app.progress("nobody_yet").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["playerId"], "nobody_yet");
    assert_eq!(body["xp"], 0);
    assert_eq!(body["level"], 1);
    assert_eq!(body["inventory"], json!([]));
    assert_eq!(body["pendingRewards"], json!([]));
    assert_eq!(body["updatedAt"], Value::Null);
    let season = Calendar::default().season_at(chrono::Utc::now());
    assert_eq!(body["season"], season);
}

#[tokio::test]
async fn xp_adds_up_and_a_level_up_leaves_a_pending_reward() {
    let app = spawn_app().await;
    app.publish(&[xp("player_1", 400), xp("player_1", 700), xp("player_2", 50)])
        .await;
    app.drain().await;

    let (status, body) = app.progress("player_1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["xp"], 1100);
    assert_eq!(body["level"], 2);
    assert!(body["updatedAt"].as_str().unwrap().ends_with('Z'));
    let season = body["season"].as_i64().unwrap();
    assert_eq!(
        body["pendingRewards"],
        json!([{"rewardId": format!("level:{season}:2"), "item": "level_2_chest", "source": "level_up"}])
    );

    let (_, other) = app.progress("player_2").await;
    assert_eq!(other["xp"], 50);
    assert_eq!(other["level"], 1);
    assert_eq!(other["pendingRewards"], json!([]));

    // More XP in a later batch invalidates the cached view and crosses two levels at once.
    app.publish(&[xp("player_1", 2000)]).await;
    app.drain().await;
    let (_, body) = app.progress("player_1").await;
    assert_eq!(body["xp"], 3100);
    assert_eq!(body["level"], 4);
    assert_eq!(
        reward_ids(&body),
        [
            format!("level:{season}:2"),
            format!("level:{season}:3"),
            format!("level:{season}:4")
        ]
    );
}

#[tokio::test]
async fn a_drop_goes_to_the_inventory_and_waits_for_its_receipt() {
    let app = spawn_app().await;
    let d = drop("player_3", "epic_sword_001");
    app.publish(std::slice::from_ref(&d)).await;
    app.drain().await;
    let (_, body) = app.progress("player_3").await;
    assert_eq!(
        body["inventory"],
        json!([{"item": "epic_sword_001", "quantity": 1}])
    );
    assert_eq!(
        body["pendingRewards"],
        json!([{"rewardId": format!("drop:{}", d.event_id), "item": "epic_sword_001", "source": "raid_chest"}])
    );
    assert_eq!(body["xp"], 0);

    // Claiming the drop issues its receipt without adding a second sword.
    let (status, receipt) = app.claim("player_3", &format!("drop:{}", d.event_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(receipt["item"], "epic_sword_001");
    app.assert_claimed_only("player_3", "epic_sword_001").await;
}

#[tokio::test]
async fn a_claim_issues_a_receipt_that_verifies_and_claiming_again_returns_it() {
    let app = spawn_app().await;
    let reward = app.earn_reward("player_4", 1500).await;

    let (status, receipt) = app.claim("player_4", &reward).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["playerId"], "player_4");
    assert_eq!(receipt["item"], "level_2_chest");
    assert!(Uuid::parse_str(receipt["receiptId"].as_str().unwrap()).is_ok());
    let ts = receipt["timestamp"].as_i64().unwrap();
    assert!((now_ms() / 1000 - ts).abs() < 5);

    let (status, verdict) = app.verify(&receipt).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["valid"], true, "{verdict}");

    let (status, again) = app.claim("player_4", &reward).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, receipt, "the same receipt, not a new one");

    // The level chest went to the inventory and the reward is no longer pending.
    app.assert_claimed_only("player_4", "level_2_chest").await;
}

#[tokio::test]
async fn claiming_what_was_not_earned_is_a_conflict() {
    let app = spawn_app().await;
    app.publish(&[xp("player_5", 10)]).await;
    app.drain().await;
    for reward in [
        "level:1:2",
        "drop:0190f1d2-0000-7000-8000-000000000000",
        "nothing",
    ] {
        let (status, _, body) = app
            .claim_raw(
                json!({"playerId": "player_5", "rewardId": reward})
                    .to_string()
                    .into_bytes(),
                true,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{reward}: {body}");
        assert_eq!(body["status"], 409);
    }
    // Another player's reward is not yours.
    let reward = app.earn_reward("player_6", 1000).await;
    let (status, _) = app.claim("player_5", &reward).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn unsigned_or_badly_signed_claims_are_refused() {
    let app = spawn_app().await;
    let body = json!({"playerId": "player_7", "rewardId": "level:1:2"}).to_string();
    let (status, ctype, problem) = app.claim_raw(body.clone().into_bytes(), false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(problem["status"], 401);

    let ts = now_ms() / 1000;
    let sig = app.keyring.sign_request(None, ts, body.as_bytes()).unwrap();
    let req = Request::post("/rewards/claim")
        .header("X-Timestamp", ts.to_string())
        .header("X-Signature", sig)
        .body(Body::from(body.replace("player_7", "player_8")))
        .unwrap();
    let (status, _, _) = app.call(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Stale timestamp.
    let old = ts - 3600;
    let sig = app
        .keyring
        .sign_request(None, old, body.as_bytes())
        .unwrap();
    let req = Request::post("/rewards/claim")
        .header("X-Timestamp", old.to_string())
        .header("X-Signature", sig)
        .body(Body::from(body))
        .unwrap();
    let (status, _, _) = app.call(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_claims_name_the_field_and_big_bodies_are_refused() {
    let app = spawn_app().await;
    let cases: [(&str, &str); 6] = [
        (r#"{"rewardId":"level:1:2"}"#, "playerId"),
        (r#"{"playerId":"p1","rewardId":"level:1:2"}"#, "playerId"),
        (r#"{"playerId":"player_9"}"#, "rewardId"),
        (r#"{"playerId":"player_9","rewardId":"a b"}"#, "rewardId"),
        (
            r#"{"playerId":"player_9","rewardId":"x","extra":1}"#,
            "extra",
        ),
        (r#"{"playerId":"#, "body"),
    ];
    for (body, field) in cases {
        let (status, ctype, problem) = app.claim_raw(body.as_bytes().to_vec(), true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(ctype, "application/problem+json");
        assert_eq!(problem["field"], field, "{body}");
    }
    let big = format!(
        r#"{{"playerId":"player_9","rewardId":"x","pad":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    let (status, ctype, _) = app.claim_raw(big.into_bytes(), true).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(ctype, "application/problem+json");
}

#[tokio::test]
async fn a_tampered_receipt_does_not_verify() {
    let app = spawn_app().await;
    let reward = app.earn_reward("player_10", 1000).await;
    let (_, receipt) = app.claim("player_10", &reward).await;
    assert_eq!(app.verify(&receipt).await.1["valid"], true);

    let tampered = [
        ("receiptId", json!(Uuid::now_v7().to_string())),
        ("playerId", json!("player_11")),
        ("item", json!("level_99_chest")),
        (
            "timestamp",
            json!(receipt["timestamp"].as_i64().unwrap() + 1),
        ),
        ("sig", json!("00".repeat(32))),
    ];
    for (field, value) in tampered {
        let mut t = receipt.clone();
        t[field] = value;
        let (status, verdict) = app.verify(&t).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(verdict["valid"], false, "tampered {field}");
        assert!(verdict["reason"].is_string());
    }

    for bad in [
        json!({"receiptId": "x"}),
        json!([1]),
        json!({"receiptId": "x", "playerId": "p", "item": "i", "timestamp": "now", "sig": "00"}),
    ] {
        let (status, problem) = app.verify(&bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(problem["status"], 400);
    }
}

#[tokio::test]
async fn a_redelivered_event_counts_once() {
    let app = spawn_app().await;
    let e = xp("player_12", 600);
    let d = drop("player_12", "gem");
    // Twice in one batch, then again in a later batch.
    app.publish(&[e.clone(), e.clone(), d.clone()]).await;
    app.drain().await;
    app.publish(&[e.clone(), d.clone()]).await;
    app.drain().await;
    let (_, body) = app.progress("player_12").await;
    assert_eq!(body["xp"], 600);
    assert_eq!(body["inventory"], json!([{"item": "gem", "quantity": 1}]));
    assert_eq!(reward_ids(&body).len(), 1);

    // The next event still counts, from the right starting point.
    app.publish(&[xp("player_12", 600), e]).await;
    app.drain().await;
    let (_, body) = app.progress("player_12").await;
    assert_eq!(body["xp"], 1200);
    assert_eq!(body["level"], 2);
    assert_eq!(reward_ids(&body).len(), 2);
}

#[tokio::test]
async fn corrupt_messages_are_dropped_and_the_rest_applied() {
    let app = spawn_app().await;
    app.publish_raw(vec![b"not json".to_vec(), xp("player_13", 5).encode()])
        .await;
    app.drain().await;
    assert_eq!(app.bus.lag(topics::ACCEPTED, GROUP).await.unwrap(), 0);
    assert_eq!(app.progress("player_13").await.1["xp"], 5);
}

#[tokio::test]
async fn boss_kills_do_not_change_progression_and_seasons_are_separate() {
    let app = spawn_app().await;
    app.publish(&[envelope("player_14", received::kill(5000), now_ms())])
        .await;
    app.drain().await;
    let (status, body) = app.progress("player_14").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["xp"], 0);

    // XP of a past season is seen with ?season=.
    let mut old = xp("player_14", 1000);
    old.received_at -= 200 * 86_400_000;
    app.publish(&[old]).await;
    app.drain().await;
    let cal = Calendar::default();
    let past = cal.season_at(chrono::Utc::now() - chrono::Duration::days(200));
    let (_, _, body) = app
        .get(&format!("/players/player_14/progress?season={past}"))
        .await;
    assert_eq!(body["season"], past);
    assert_eq!(body["xp"], 1000);
    assert_eq!(body["level"], 2);
    assert_eq!(app.progress("player_14").await.1["xp"], 0);
}

#[tokio::test]
async fn bad_player_ids_and_seasons_are_400_problems() {
    let app = spawn_app().await;
    for uri in [
        "/players/ab/progress",
        "/players/bad%20id/progress",
        "/players/player_1/progress?season=x",
        "/players/player_1/progress?season=99999999999",
    ] {
        let (status, ctype, body) = app.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(ctype, "application/problem+json");
        assert!(body["field"].is_string(), "{uri}: {body}");
    }
}

#[tokio::test]
async fn the_openapi_lists_every_route() {
    let spec = served::openapi_with_paths(
        liveops_progression::MODULE.default_openapi().unwrap(),
        &[
            "/players/{id}/progress",
            "/rewards/claim",
            "/receipts/verify",
        ],
    );
    let schemas = &spec["components"]["schemas"];
    assert!(schemas["ProgressView"]["properties"]["pendingRewards"].is_object());
    let reward = &schemas["PendingReward"]["properties"];
    assert!(reward["rewardId"].is_object());
    assert!(reward.get("addsToInventory").is_none() && reward.get("adds_to_inventory").is_none());
    assert!(schemas["Receipt"]["properties"]["sig"].is_object());
}

#[tokio::test]
async fn a_repository_commit_refuses_an_already_applied_event() {
    // The contract the consumer's retry relies on.
    let app = spawn_app().await;
    let e = xp("player_15", 100);
    app.publish(std::slice::from_ref(&e)).await;
    app.drain().await;
    let commit = liveops_core::stores::ProgressCommit {
        event_ids: vec![e.event_id],
        xp: vec![liveops_core::stores::XpGain {
            player_id: "player_15".into(),
            season: 1,
            xp: 100,
            at_ms: 0,
        }],
        ..Default::default()
    };
    assert!(app
        .state
        .store
        .commit_progress(liveops_progression::CONSUMER_ID, &commit)
        .await
        .is_err());
}
