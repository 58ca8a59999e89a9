//! Progression as a player sees it: events go on the bus, the consumer applies them, the routes
//! answer. Real adapters: the in-memory bus, hot state and the SQLite repository.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use liveops_core::ports::BusOptions;
use liveops_core::ports::{topics, Message};
use liveops_core::stores::RewardClaim;
use liveops_core::{
    now_ms, Bus, BusExt, Calendar, Envelope, Keyring, LevelCurve, Receipt, Verification,
};
use liveops_http::{Problem, SignatureCheck};
use liveops_memory::{MemoryBus, MemoryHotState};
use liveops_progression::{
    router, run_consumer, ClaimRequest, InventoryPage, ProgressView, ProgressionConfig,
    ProgressionState, RewardPage, GROUP,
};
use liveops_sql::SqliteRepository;
use liveops_testkit::received::{self, envelope};
use liveops_testkit::served;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

struct TestApp {
    state: ProgressionState,
    router: Router,
    bus: Arc<MemoryBus>,
    repo: Arc<SqliteRepository>,
    keyring: Keyring,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> TestApp {
    spawn_app_on(BusOptions::default()).await
}

/// The app over an in-memory bus with `options`.
async fn spawn_app_on(options: BusOptions) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let repo = SqliteRepository::open_migrated(&dir.path().join("liveops.db"))
        .await
        .unwrap();
    let bus = Arc::new(MemoryBus::new(options));
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
            accept_v1: true,
        },
        bus: bus.clone(),
        cache: Arc::new(MemoryHotState::new()),
        store: repo.clone(),
        processed: repo.clone(),
    };
    TestApp {
        router: router(state.clone()),
        state,
        bus,
        repo,
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

/// A 2xx answer read as a `T`, or else the problem it was refused with (checked to be an
/// `application/problem+json` body whose status is the answer's).
fn typed<T: DeserializeOwned>(reply: served::Reply) -> Result<T, Problem> {
    if reply.0.is_success() {
        Ok(served::read(&reply.2))
    } else {
        Err(served::problem(reply))
    }
}

/// Item and quantity of each inventory line.
fn inventory(progress: &ProgressView) -> Vec<(&str, u64)> {
    progress
        .inventory
        .iter()
        .map(|i| (i.item.as_str(), i.quantity))
        .collect()
}

/// Id, item and source of each pending reward.
fn rewards(progress: &ProgressView) -> Vec<(&str, &str, &str)> {
    progress
        .pending_rewards
        .iter()
        .map(|r| (r.reward_id.as_str(), r.item.as_str(), r.source.as_str()))
        .collect()
}

fn reward_ids(progress: &ProgressView) -> Vec<String> {
    progress
        .pending_rewards
        .iter()
        .map(|r| r.reward_id.clone())
        .collect()
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

    async fn call<T: DeserializeOwned>(&self, req: Request<Body>) -> Result<T, Problem> {
        typed(served::call(&self.router, req).await)
    }

    async fn get<T: DeserializeOwned>(&self, uri: &str) -> Result<T, Problem> {
        typed(served::get(&self.router, uri).await)
    }

    /// Commits `commit` to the store as the consumer does: whether it was applied.
    async fn commit(
        &self,
        commit: &liveops_core::stores::ProgressCommit,
    ) -> liveops_core::PortResult<bool> {
        let store = &self.state.store;
        store
            .commit_progress(liveops_progression::CONSUMER_ID, commit)
            .await
    }

    /// The player's progress in the current season (the route must answer 200).
    async fn progress(&self, player: &str) -> ProgressView {
        let uri = format!("/players/{player}/progress");
        self.get(&uri)
            .await
            .unwrap_or_else(|p| panic!("{uri}: {p:?}"))
    }

    /// Gives `player` `delta` XP (enough for a level) and answers the id of the first reward
    /// it made pending.
    async fn earn_reward(&self, player: &str, delta: u32) -> String {
        self.publish(&[xp(player, delta)]).await;
        self.drain().await;
        reward_ids(&self.progress(player).await).remove(0)
    }

    /// Gives `player` a drop of `item` and answers the id of the reward it made pending.
    async fn earn_drop(&self, player: &str, item: &str) -> String {
        let d = drop(player, item);
        self.publish(std::slice::from_ref(&d)).await;
        self.drain().await;
        format!("drop:{}", d.event_id)
    }

    /// Asserts `player` holds one `item` and nothing else, and has no reward left to claim.
    async fn assert_claimed_only(&self, player: &str, item: &str) {
        let progress = self.progress(player).await;
        assert_eq!(inventory(&progress), [(item, 1)]);
        assert_eq!(rewards(&progress), []);
    }

    async fn claim_raw(&self, body: Vec<u8>, sign: bool) -> Result<Receipt, Problem> {
        let ts = now_ms() / 1000;
        let mut req = Request::post("/rewards/claim").header("content-type", "application/json");
        if sign {
            let sig = self
                .keyring
                .sign_request(None, ts, "POST", "/rewards/claim", &body)
                .unwrap();
            req = req
                .header("X-Timestamp", ts.to_string())
                .header("X-Signature", sig);
        }
        self.call(req.body(Body::from(body)).unwrap()).await
    }

    /// Posts `sent` to `/rewards/claim` (without a content type), signed at `ts` over `signed`.
    async fn claim_signed_over(
        &self,
        ts: i64,
        signed: &str,
        sent: String,
    ) -> Result<Receipt, Problem> {
        let sig = self
            .keyring
            .sign_request(None, ts, "POST", "/rewards/claim", signed.as_bytes())
            .unwrap();
        let req = Request::post("/rewards/claim")
            .header("X-Timestamp", ts.to_string())
            .header("X-Signature", sig)
            .body(Body::from(sent))
            .unwrap();
        self.call(req).await
    }

    /// Claims `reward` for `player`, signed: the receipt, or the refusal.
    async fn claim(&self, player: &str, reward: &str) -> Result<Receipt, Problem> {
        let body = serde_json::to_vec(&ClaimRequest {
            player_id: player.into(),
            reward_id: reward.into(),
        })
        .unwrap();
        self.claim_raw(body, true).await
    }

    /// Asks whether `receipt` (a [`Receipt`] or any JSON) verifies.
    async fn verify(&self, receipt: &impl Serialize) -> Result<Verification, Problem> {
        self.call(
            Request::post("/receipts/verify")
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(receipt).unwrap()))
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn an_unknown_player_starts_at_level_one() {
    let app = spawn_app().await;
    let progress = app.progress("nobody_yet").await;
    assert_eq!(progress.player_id, "nobody_yet");
    assert_eq!(progress.xp, 0);
    assert_eq!(progress.level, 1);
    assert_eq!(inventory(&progress), []);
    assert_eq!(rewards(&progress), []);
    assert_eq!(progress.updated_at, None);
    let season = Calendar::default().season_at(chrono::Utc::now());
    assert_eq!(progress.season, season);
}

#[tokio::test]
async fn xp_adds_up_and_a_level_up_leaves_a_pending_reward() {
    let app = spawn_app().await;
    app.publish(&[xp("player_1", 400), xp("player_1", 700), xp("player_2", 50)])
        .await;
    app.drain().await;

    let progress = app.progress("player_1").await;
    assert_eq!(progress.xp, 1100);
    assert_eq!(progress.level, 2);
    assert!(progress.updated_at.as_ref().unwrap().ends_with('Z'));
    let season = progress.season;
    assert_eq!(
        rewards(&progress),
        [(
            format!("level:{season}:2").as_str(),
            "level_2_chest",
            "level_up"
        )]
    );

    // Wire format: a pending reward carries exactly these members (whether claiming adds to the
    // inventory stays on the server).
    let (_, _, raw) = served::get(&app.router, "/players/player_1/progress").await;
    assert_eq!(
        raw["pendingRewards"],
        json!([{"rewardId": format!("level:{season}:2"), "item": "level_2_chest", "source": "level_up"}])
    );

    let other = app.progress("player_2").await;
    assert_eq!(other.xp, 50);
    assert_eq!(other.level, 1);
    assert_eq!(rewards(&other), []);

    // More XP in a later batch invalidates the cached view and crosses two levels at once.
    app.publish(&[xp("player_1", 2000)]).await;
    app.drain().await;
    let progress = app.progress("player_1").await;
    assert_eq!(progress.xp, 3100);
    assert_eq!(progress.level, 4);
    assert_eq!(
        reward_ids(&progress),
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
    let reward = app.earn_drop("player_3", "epic_sword_001").await;
    let progress = app.progress("player_3").await;
    assert_eq!(inventory(&progress), [("epic_sword_001", 1)]);
    assert_eq!(
        rewards(&progress),
        [(reward.as_str(), "epic_sword_001", "raid_chest")]
    );
    assert_eq!(progress.xp, 0);

    // Claiming the drop issues its receipt without adding a second sword.
    let receipt = app.claim("player_3", &reward).await.expect("claimed");
    assert_eq!(receipt.item, "epic_sword_001");
    app.assert_claimed_only("player_3", "epic_sword_001").await;
}

/// A repository whose whole-progress reads fail (a player with a very long list of pending
/// rewards on a slow database): claims must not need them.
struct NoWholeReads(Arc<SqliteRepository>);

#[async_trait::async_trait]
impl liveops_core::Health for NoWholeReads {
    async fn healthcheck(&self) -> liveops_core::PortResult<()> {
        self.0.healthcheck().await
    }
}

#[async_trait::async_trait]
impl liveops_core::stores::ProgressStore for NoWholeReads {
    async fn progress(
        &self,
        _: &str,
        _: i64,
    ) -> liveops_core::PortResult<liveops_core::stores::PlayerProgress> {
        Err(liveops_core::PortError::Unavailable("whole read".into()))
    }
    async fn pending_reward(
        &self,
        player_id: &str,
        reward_id: &str,
    ) -> liveops_core::PortResult<Option<liveops_core::stores::PendingReward>> {
        self.0.pending_reward(player_id, reward_id).await
    }
    async fn pending_rewards(
        &self,
        player_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> liveops_core::PortResult<Vec<liveops_core::stores::ListedReward>> {
        self.0.pending_rewards(player_id, after, limit).await
    }
    async fn inventory(
        &self,
        player_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> liveops_core::PortResult<Vec<liveops_core::stores::InventoryItem>> {
        self.0.inventory(player_id, after, limit).await
    }
    async fn xp_of(&self, players: &[(String, i64)]) -> liveops_core::PortResult<Vec<u64>> {
        self.0.xp_of(players).await
    }
    async fn commit_progress(
        &self,
        consumer: &str,
        commit: &liveops_core::stores::ProgressCommit,
    ) -> liveops_core::PortResult<bool> {
        self.0.commit_progress(consumer, commit).await
    }
    async fn claim_reward(
        &self,
        player_id: &str,
        reward_id: &str,
        receipt: Receipt,
    ) -> liveops_core::PortResult<RewardClaim> {
        self.0.claim_reward(player_id, reward_id, receipt).await
    }
}

/// A claim reads the one reward it signs for, not the player's whole progress: it succeeds
/// (a drop, whose item only its pending row knows) while whole reads fail.
#[tokio::test]
async fn a_claim_reads_only_its_reward() {
    let app = spawn_app().await;
    let reward = app.earn_drop("player_7", "epic_sword_001").await;
    let mut narrow = app.state.clone();
    narrow.store = Arc::new(NoWholeReads(app.repo.clone()));
    let app = TestApp {
        router: router(narrow.clone()),
        state: narrow,
        ..app
    };
    let receipt = app.claim("player_7", &reward).await.expect("claimed");
    assert_eq!(receipt.item, "epic_sword_001");
    assert_eq!(
        app.claim("player_7", &reward).await.expect("again"),
        receipt
    );
}

/// A view cache whose writes take a while (a slow hot state): a view is dropped by writing
/// the player's new version.
struct SlowWrites(Arc<dyn liveops_core::ports::ViewCache>);

#[async_trait::async_trait]
impl liveops_core::Health for SlowWrites {
    async fn healthcheck(&self) -> liveops_core::PortResult<()> {
        self.0.healthcheck().await
    }
}

#[async_trait::async_trait]
impl liveops_core::ports::ViewCache for SlowWrites {
    async fn cache_get(&self, key: &str) -> liveops_core::PortResult<Option<bytes::Bytes>> {
        self.0.cache_get(key).await
    }
    async fn cache_put(
        &self,
        key: &str,
        value: bytes::Bytes,
        ttl: std::time::Duration,
    ) -> liveops_core::PortResult<()> {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        self.0.cache_put(key, value, ttl).await
    }
    async fn cache_del(&self, key: &str) -> liveops_core::PortResult<()> {
        self.0.cache_del(key).await
    }
}

/// A player whose client goes away after the claim committed, while the cached view is being
/// dropped, is not shown the reward as pending afterwards: the drop still happens.
#[tokio::test]
async fn a_claim_given_up_after_its_commit_still_drops_the_cached_view() {
    let app = spawn_app().await;
    let reward = app.earn_drop("player_8", "epic_sword_001").await;
    assert_eq!(
        reward_ids(&app.progress("player_8").await),
        std::slice::from_ref(&reward)
    );
    let mut slow = app.state.clone();
    slow.cache = Arc::new(SlowWrites(app.state.cache.clone()));
    let app = TestApp {
        router: router(slow.clone()),
        state: slow,
        ..app
    };
    let wait = std::time::Duration::from_millis(100);
    let given_up = tokio::time::timeout(wait, app.claim("player_8", &reward)).await;
    assert!(given_up.is_err(), "the claim still dropped the view");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    app.assert_claimed_only("player_8", "epic_sword_001").await;
}

#[tokio::test]
async fn a_claim_issues_a_receipt_that_verifies_and_claiming_again_returns_it() {
    let app = spawn_app().await;
    let reward = app.earn_reward("player_4", 1500).await;

    let receipt = app.claim("player_4", &reward).await.expect("claimed");
    assert_eq!(receipt.player_id, "player_4");
    assert_eq!(receipt.item, "level_2_chest");
    assert!(Uuid::parse_str(&receipt.receipt_id).is_ok());
    assert!((now_ms() / 1000 - receipt.timestamp).abs() < 5);

    let verdict = app.verify(&receipt).await.expect("verified");
    assert!(verdict.valid, "{verdict:?}");

    let again = app.claim("player_4", &reward).await.expect("claimed again");
    assert_eq!(again, receipt, "the same receipt, not a new one");

    // The level chest went to the inventory and the reward is no longer pending.
    app.assert_claimed_only("player_4", "level_2_chest").await;
}

/// The first claim committed but its answer (and its drop of the cached view) was lost: a
/// commit that timed out yet went through, or a crash. The retry gets the first receipt, and the
/// progress view stops listing the reward as pending then, not when the cache expires.
#[tokio::test]
async fn a_claim_retried_after_a_lost_answer_gets_the_first_receipt_and_a_fresh_view() {
    let app = spawn_app().await;
    let reward = app.earn_reward("player_8", 1500).await;
    let (id, ts) = (Uuid::now_v7().to_string(), now_ms() / 1000);
    let first = Receipt {
        sig: app
            .keyring
            .sign_receipt(&id, "player_8", "level_2_chest", ts),
        receipt_id: id,
        player_id: "player_8".into(),
        item: "level_2_chest".into(),
        timestamp: ts,
    };
    let stored = app
        .state
        .store
        .claim_reward("player_8", &reward, first.clone());
    assert!(matches!(stored.await.unwrap(), RewardClaim::Issued(_)));
    // The view cached before the claim still lists the reward.
    assert_eq!(
        reward_ids(&app.progress("player_8").await),
        std::slice::from_ref(&reward)
    );

    assert_eq!(
        app.claim("player_8", &reward).await.expect("claimed"),
        first
    );
    app.assert_claimed_only("player_8", "level_2_chest").await;
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
        let problem = app.claim("player_5", reward).await.unwrap_err();
        assert_eq!(problem.status, 409, "{reward}: {problem:?}");
    }
    // Another player's reward is not yours.
    let reward = app.earn_reward("player_6", 1000).await;
    let problem = app.claim("player_5", &reward).await.unwrap_err();
    assert_eq!(problem.status, 409);
}

#[tokio::test]
async fn unsigned_or_badly_signed_claims_are_refused() {
    let app = spawn_app().await;
    let body = json!({"playerId": "player_7", "rewardId": "level:1:2"}).to_string();
    let problem = app
        .claim_raw(body.clone().into_bytes(), false)
        .await
        .unwrap_err();
    assert_eq!(problem.status, 401);

    let ts = now_ms() / 1000;
    let swapped = body.replace("player_7", "player_8");
    let problem = app.claim_signed_over(ts, &body, swapped).await.unwrap_err();
    assert_eq!(problem.status, 401);

    // Stale timestamp.
    let problem = app
        .claim_signed_over(ts - 3600, &body, body.clone())
        .await
        .unwrap_err();
    assert_eq!(problem.status, 401);
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
        let problem = app
            .claim_raw(body.as_bytes().to_vec(), true)
            .await
            .unwrap_err();
        assert_eq!(problem.status, 400, "{body}");
        assert_eq!(problem.field.as_deref(), Some(field), "{body}");
    }
    let big = format!(
        r#"{{"playerId":"player_9","rewardId":"x","pad":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    let problem = app.claim_raw(big.into_bytes(), true).await.unwrap_err();
    assert_eq!(
        problem.status,
        StatusCode::PAYLOAD_TOO_LARGE.as_u16(),
        "{problem:?}"
    );
}

#[tokio::test]
async fn a_tampered_receipt_does_not_verify() {
    let app = spawn_app().await;
    let reward = app.earn_reward("player_10", 1000).await;
    let receipt = app.claim("player_10", &reward).await.expect("claimed");
    assert!(app.verify(&receipt).await.expect("verified").valid);

    let tampered = [
        (
            "receiptId",
            Receipt {
                receipt_id: Uuid::now_v7().to_string(),
                ..receipt.clone()
            },
        ),
        (
            "playerId",
            Receipt {
                player_id: "player_11".into(),
                ..receipt.clone()
            },
        ),
        (
            "item",
            Receipt {
                item: "level_99_chest".into(),
                ..receipt.clone()
            },
        ),
        (
            "timestamp",
            Receipt {
                timestamp: receipt.timestamp + 1,
                ..receipt.clone()
            },
        ),
        (
            "sig",
            Receipt {
                sig: "00".repeat(32),
                ..receipt.clone()
            },
        ),
    ];
    for (field, t) in tampered {
        let verdict = app.verify(&t).await.expect("judged");
        assert!(!verdict.valid, "tampered {field}");
        assert!(!verdict.reason.is_empty(), "tampered {field}");
    }

    for bad in [
        json!({"receiptId": "x"}),
        json!([1]),
        json!({"receiptId": "x", "playerId": "p", "item": "i", "timestamp": "now", "sig": "00"}),
    ] {
        let problem = app.verify(&bad).await.unwrap_err();
        assert_eq!(problem.status, 400, "{bad}");
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
    let progress = app.progress("player_12").await;
    assert_eq!(progress.xp, 600);
    assert_eq!(inventory(&progress), [("gem", 1)]);
    assert_eq!(progress.pending_rewards.len(), 1);

    // The next event still counts, from the right starting point.
    app.publish(&[xp("player_12", 600), e]).await;
    app.drain().await;
    let progress = app.progress("player_12").await;
    assert_eq!(progress.xp, 1200);
    assert_eq!(progress.level, 2);
    assert_eq!(progress.pending_rewards.len(), 2);
}

/// A message this release cannot read (a newer release's event during a rolling upgrade, or a
/// corrupt one) is not acked: handed out again until the bus dead-letters it, from where it can
/// be replayed; the rest of its batch is applied.
#[tokio::test]
async fn undecodable_messages_go_to_the_dead_letters_and_the_rest_is_applied() {
    let app = spawn_app_on(BusOptions {
        visibility_timeout: std::time::Duration::from_millis(50),
        max_deliveries: 2,
    })
    .await;
    app.publish_raw(vec![b"not json".to_vec(), xp("player_13", 5).encode()])
        .await;
    app.drain().await;
    assert_eq!(app.bus.lag(topics::ACCEPTED, GROUP).await.unwrap(), 0);
    assert_eq!(app.progress("player_13").await.xp, 5);
    let dead = app.bus.dead_letters(topics::ACCEPTED, GROUP, 10).await;
    let dead: Vec<_> = dead.unwrap().into_iter().map(|d| d.payload).collect();
    assert_eq!(dead, [b"not json".as_slice()]);
}

#[tokio::test]
async fn boss_kills_do_not_change_progression_and_seasons_are_separate() {
    let app = spawn_app().await;
    app.publish(&[envelope("player_14", received::kill(5000), now_ms())])
        .await;
    app.drain().await;
    assert_eq!(app.progress("player_14").await.xp, 0);

    // XP of a past season is seen with ?season=.
    let mut old = xp("player_14", 1000);
    old.received_at -= 200 * 86_400_000;
    app.publish(&[old]).await;
    app.drain().await;
    let cal = Calendar::default();
    let past = cal.season_at(chrono::Utc::now() - chrono::Duration::days(200));
    let progress: ProgressView = app
        .get(&format!("/players/player_14/progress?season={past}"))
        .await
        .expect("the past season's progress");
    assert_eq!(progress.season, past);
    assert_eq!(progress.xp, 1000);
    assert_eq!(progress.level, 2);
    assert_eq!(app.progress("player_14").await.xp, 0);
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
        let problem = app.get::<ProgressView>(uri).await.unwrap_err();
        assert_eq!(problem.status, 400, "{uri}");
        assert!(problem.field.is_some(), "{uri}: {problem:?}");
    }
}

#[tokio::test]
async fn the_openapi_lists_every_route() {
    let spec = served::openapi_with_paths(
        liveops_progression::MODULE.default_openapi().unwrap(),
        &[
            "/players/{id}/progress",
            "/players/{id}/rewards",
            "/players/{id}/inventory",
            "/rewards/claim",
            "/receipts/verify",
        ],
    );
    // The document itself, as JSON: member names (and one that must be absent) are checked.
    let schemas = &spec["components"]["schemas"];
    let view_members = &schemas["ProgressView"]["properties"];
    assert!(view_members["pendingRewards"].is_object());
    // The counts are bounded, and say so.
    let most = json!(liveops_core::stores::PROGRESS_COUNT_LIMIT);
    for count in ["pendingCount", "inventoryCount"] {
        assert_eq!(view_members[count]["maximum"], most, "{count}");
        let said = view_members[count]["description"].as_str().unwrap();
        assert!(
            said.contains("10000 means 10000 or more"),
            "{count}: {said}"
        );
    }
    // The view says how many rewards and items it lists at most.
    let view = &spec["paths"]["/players/{id}/progress"]["get"];
    let limit = liveops_core::stores::PROGRESS_PENDING_LIMIT;
    let items = liveops_core::stores::PROGRESS_INVENTORY_LIMIT;
    for said in [
        format!("oldest {limit} rewards"),
        format!("first {items} items"),
    ] {
        assert!(
            view["description"].as_str().unwrap().contains(&said),
            "{said}: {view}"
        );
    }
    // The pages: their members, and the bounds of their queries.
    for (path, schema, listed, cursor) in [
        (
            "/players/{id}/rewards",
            "RewardPage",
            "rewards",
            liveops_http::CURSOR_PATTERN,
        ),
        (
            "/players/{id}/inventory",
            "InventoryPage",
            "inventory",
            liveops_core::event::LABEL_PATTERN,
        ),
    ] {
        let page = &schemas[schema]["properties"];
        for member in ["playerId", listed, "nextCursor"] {
            assert!(page[member].is_object(), "{schema}: {member}");
        }
        let params = spec["paths"][path]["get"]["parameters"].as_array().unwrap();
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{path}: no {name}"))["schema"]
                .clone()
        };
        let limit = param("limit");
        assert_eq!(
            (&limit["minimum"], &limit["maximum"]),
            (&json!(1), &json!(1000)),
            "{path}"
        );
        assert_eq!(param("cursor")["pattern"], json!(cursor), "{path}");
    }
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
    assert!(app.commit(&commit).await.is_err());
}

/// A player's drops, `n` of them in one batch: their reward ids in the order earned.
async fn hoard(app: &TestApp, player: &str, n: usize) -> Vec<String> {
    let drops: Vec<Envelope> = (0..n).map(|i| drop(player, &format!("gem_{i}"))).collect();
    app.publish(&drops).await;
    app.drain().await;
    drops
        .iter()
        .map(|d| format!("drop:{}", d.event_id))
        .collect()
}

/// A page of one of a player's paged routes, `GET /players/{id}/{ROUTE}`, as the walks read it.
trait Paged: DeserializeOwned {
    /// What the walks keep of each line.
    type Line;
    /// The route's last segment, which is also the name of its page's list of lines.
    const ROUTE: &'static str;
    /// The player the page concerns, its lines and its `nextCursor`.
    fn split(self) -> (String, Vec<Self::Line>, Option<String>);
}

impl Paged for RewardPage {
    type Line = String;
    const ROUTE: &'static str = "rewards";
    fn split(self) -> (String, Vec<String>, Option<String>) {
        let ids = self.rewards.into_iter().map(|r| r.reward_id).collect();
        (self.player_id, ids, self.next_cursor)
    }
}

impl Paged for InventoryPage {
    type Line = (String, u64);
    const ROUTE: &'static str = "inventory";
    fn split(self) -> (String, Vec<(String, u64)>, Option<String>) {
        let lines = self.inventory.into_iter().map(|i| (i.item, i.quantity));
        (self.player_id, lines.collect(), self.next_cursor)
    }
}

/// Every line of `player` through the paged route of `P`, `query` on each page, following
/// `nextCursor` until it is absent; and how many pages that took.
async fn walk_pages<P: Paged>(app: &TestApp, player: &str, query: &str) -> (Vec<P::Line>, usize) {
    let (mut walked, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let mut uri = format!("/players/{player}/{}?{query}", P::ROUTE);
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let page: P = app
            .get(&uri)
            .await
            .unwrap_or_else(|p| panic!("{uri}: {p:?}"));
        let (of, lines, next) = page.split();
        assert_eq!(of, player);
        pages += 1;
        walked.extend(lines);
        match next {
            Some(next) => cursor = Some(next),
            None => return (walked, pages),
        }
    }
}

/// Every pending reward of `player` through `GET /players/{id}/rewards`; see [`walk_pages`].
async fn walk(app: &TestApp, player: &str, query: &str) -> (Vec<String>, usize) {
    walk_pages::<RewardPage>(app, player, query).await
}

/// Every inventory line of `player` through `GET /players/{id}/inventory`; see [`walk_pages`].
async fn walk_inventory(app: &TestApp, player: &str, query: &str) -> (Vec<(String, u64)>, usize) {
    walk_pages::<InventoryPage>(app, player, query).await
}

/// Asserts the default page of `player`'s 130 lines on the route of `P` holds 100 of them and
/// that the 30 after its `nextCursor` are the last page (one without `nextCursor`): answers
/// that cursor and the last page's lines as served.
async fn two_pages<P: Paged>(app: &TestApp, player: &str) -> (String, serde_json::Value) {
    // The default page is 100; exactly as many as are left is the last page.
    let (route, lines) = (format!("/players/{player}/{}", P::ROUTE), P::ROUTE);
    let (_, _, raw) = served::get(&app.router, &route).await;
    assert_eq!(raw[lines].as_array().map(Vec::len), Some(100));
    let cursor = raw["nextCursor"].as_str().unwrap().to_owned();
    let uri = format!("{route}?limit=30&cursor={cursor}");
    let (_, _, raw) = served::get(&app.router, &uri).await;
    assert_eq!(raw[lines].as_array().map(Vec::len), Some(30));
    assert!(
        raw.get("nextCursor").is_none(),
        "absent on the last page: {raw}"
    );
    (cursor, raw[lines].clone())
}

/// Asserts that walking the 130 lines of `player` with a limit of 7, the default, 130 and 1000
/// takes 19, 2, 1 and 1 pages and reaches `all`, each line once, in `order`.
async fn assert_walks<P: Paged>(app: &TestApp, player: &str, all: &[P::Line], order: &str)
where
    P::Line: PartialEq + std::fmt::Debug,
{
    for (query, pages) in [
        ("limit=7", 19),
        ("", 2),
        ("limit=130", 1),
        ("limit=1000", 1),
    ] {
        let (walked, took) = walk_pages::<P>(app, player, query).await;
        assert_eq!(walked, all, "{query:?}: each once, {order}");
        assert_eq!(took, pages, "{query:?}");
    }
}

/// Asserts that on `player`'s paged route of `P` a limit out of 1..=1000 or not a number, each
/// `(query, field)` of `bad`, a player id too short and an unknown `page` parameter are 400
/// problems (all but the last naming their field), and that the limit's bounds and each query
/// of `fine` are served.
async fn assert_page_queries<P: Paged + std::fmt::Debug>(
    app: &TestApp,
    player: &str,
    bad: &[(&str, &str)],
    fine: &[String],
) {
    let route = format!("/players/{player}/{}", P::ROUTE);
    let limits = ["limit=0", "limit=1001", "limit=-1", "limit=ten"].map(|q| (q, "limit"));
    let bad = limits
        .iter()
        .chain(bad)
        .map(|(query, field)| (format!("{route}?{query}"), *field));
    let bad_player = (format!("/players/ab/{}", P::ROUTE), "id");
    for (uri, field) in bad.chain([bad_player]) {
        let problem = app.get::<P>(&uri).await.unwrap_err();
        assert_eq!(problem.status, 400, "{uri}");
        assert_eq!(problem.field.as_deref(), Some(field), "{uri}: {problem:?}");
    }
    let problem = app.get::<P>(&format!("{route}?page=2")).await.unwrap_err();
    assert_eq!(problem.status, 400);
    let bounds = ["limit=1", "limit=1000"].map(String::from);
    for query in bounds.iter().chain(fine) {
        let uri = format!("{route}?{query}");
        app.get::<P>(&uri).await.expect("in range");
    }
}

/// A player who never claims: the view lists the oldest 100 rewards and counts them all, and
/// the paged route walks every one exactly once, oldest first.
#[tokio::test]
async fn a_player_who_never_claims_sees_the_oldest_rewards_and_pages_through_all() {
    let app = spawn_app().await;
    let earned = hoard(&app, "hoarder_1", 130).await;
    let progress = app.progress("hoarder_1").await;
    assert_eq!(reward_ids(&progress), earned[..100]);
    assert_eq!(progress.pending_count, 130);
    assert_eq!(progress.inventory.len(), 100, "the first 100 items");
    assert_eq!(progress.inventory_count, 130);
    let (_, _, raw) = served::get(&app.router, "/players/hoarder_1/progress").await;
    assert_eq!(raw["pendingCount"], json!(130));
    assert_eq!(raw["inventoryCount"], json!(130));

    let (_, last) = two_pages::<RewardPage>(&app, "hoarder_1").await;
    assert_eq!(last[29]["rewardId"], json!(earned[129]));
    assert!(last[0].get("addsToInventory").is_none());

    assert_walks::<RewardPage>(&app, "hoarder_1", &earned, "oldest first").await;

    // A claim takes the reward off the view, its count and the pages, even past the first 100.
    for reward in [&earned[3], &earned[120]] {
        app.claim("hoarder_1", reward).await.expect("claimed");
    }
    let left: Vec<String> = earned
        .iter()
        .filter(|r| *r != &earned[3] && *r != &earned[120])
        .cloned()
        .collect();
    let progress = app.progress("hoarder_1").await;
    assert_eq!(reward_ids(&progress), left[..100]);
    assert_eq!(progress.pending_count, 128);
    assert_eq!(walk(&app, "hoarder_1", "limit=50").await.0, left);

    // An unknown player: no rewards, no next page.
    assert_eq!(walk(&app, "nobody_yet", "").await, (vec![], 1));
    assert_eq!(app.progress("nobody_yet").await.pending_count, 0);
}

#[tokio::test]
async fn bad_reward_pages_are_400_problems() {
    let app = spawn_app().await;
    hoard(&app, "hoarder_2", 3).await;
    let bad = [
        ("cursor=", "cursor"),
        ("cursor=12", "cursor"),
        ("cursor=x:drop", "cursor"),
        ("cursor=1:a%2Fb", "cursor"),
        ("cursor=1234567890123456789:a", "cursor"),
    ];
    assert_page_queries::<RewardPage>(&app, "hoarder_2", &bad, &[]).await;
}

/// A player whose drops each name a new item: the view lists the first 100 items by item and
/// counts them all, and the paged route walks every line exactly once, sorted by item.
#[tokio::test]
async fn a_player_with_many_items_sees_the_first_and_pages_through_all() {
    let app = spawn_app().await;
    hoard(&app, "collector_1", 130).await;
    // One more of an item already owned: a quantity, not a line.
    app.publish(&[drop("collector_1", "gem_7")]).await;
    app.drain().await;
    let mut owned: Vec<(String, u64)> = (0..130)
        .map(|i| (format!("gem_{i}"), if i == 7 { 2 } else { 1 }))
        .collect();
    owned.sort();
    let progress = app.progress("collector_1").await;
    let listed: Vec<(String, u64)> = inventory(&progress)
        .into_iter()
        .map(|(i, q)| (i.to_owned(), q))
        .collect();
    assert_eq!(listed, owned[..100], "the first 100, sorted by item");
    assert_eq!(progress.inventory_count, 130);

    let (cursor, last) = two_pages::<InventoryPage>(&app, "collector_1").await;
    assert_eq!(cursor, owned[99].0, "the last item of the page");
    assert_eq!(last[29], json!({"item": owned[129].0, "quantity": 1}));

    assert_walks::<InventoryPage>(&app, "collector_1", &owned, "sorted by item").await;
    // A cursor is an item, owned or not: the page starts after it.
    let page: InventoryPage = app
        .get("/players/collector_1/inventory?limit=2&cursor=gem_12a")
        .await
        .unwrap();
    let after: Vec<&str> = page.inventory.iter().map(|i| i.item.as_str()).collect();
    let i = owned
        .iter()
        .position(|(item, _)| item.as_str() > "gem_12a")
        .unwrap();
    assert_eq!(after, [owned[i].0.as_str(), owned[i + 1].0.as_str()]);

    // An unknown player: no items, no next page.
    assert_eq!(walk_inventory(&app, "nobody_yet", "").await, (vec![], 1));
    assert_eq!(app.progress("nobody_yet").await.inventory_count, 0);
}

/// Past [`PROGRESS_COUNT_LIMIT`](liveops_core::stores::PROGRESS_COUNT_LIMIT) items and pending
/// rewards, the view's counts stop there (10000 means 10000 or more) and its lists stay at 100;
/// the pages still reach every line.
#[tokio::test]
async fn counts_stop_at_their_limit() {
    let app = spawn_app().await;
    let most = liveops_core::stores::PROGRESS_COUNT_LIMIT;
    let n = usize::try_from(most).unwrap() + 25;
    let player = "collector_2";
    let commit = liveops_core::stores::ProgressCommit {
        event_ids: vec![Uuid::now_v7()],
        items: (0..n)
            .map(|i| liveops_core::stores::ItemGrant {
                player_id: player.into(),
                item: format!("item_{i:05}"),
                quantity: 1,
            })
            .collect(),
        rewards: (0..n)
            .map(|i| {
                let reward = liveops_core::stores::PendingReward {
                    reward_id: format!("drop:{i:05}"),
                    item: format!("item_{i:05}"),
                    source: "raid_chest".into(),
                    adds_to_inventory: false,
                };
                (player.to_owned(), reward)
            })
            .collect(),
        ..Default::default()
    };
    assert!(app.commit(&commit).await.unwrap());
    let (_, _, raw) = served::get(&app.router, &format!("/players/{player}/progress")).await;
    assert_eq!(raw["inventoryCount"], json!(most));
    assert_eq!(raw["pendingCount"], json!(most));
    assert_eq!(raw["inventory"].as_array().map(Vec::len), Some(100));
    assert_eq!(raw["pendingRewards"].as_array().map(Vec::len), Some(100));
    let (walked, pages) = walk_inventory(&app, player, "limit=1000").await;
    assert_eq!((walked.len(), pages), (n, n.div_ceil(1000)));
    assert_eq!(walk(&app, player, "limit=1000").await.0.len(), n);
}

#[tokio::test]
async fn bad_inventory_pages_are_400_problems() {
    let app = spawn_app().await;
    hoard(&app, "collector_3", 3).await;
    let long = format!("cursor={}", "a".repeat(65));
    let bad = [
        ("cursor=", "cursor"),
        ("cursor=a%2Fb", "cursor"),
        ("cursor=gem%200", "cursor"),
        (&long, "cursor"),
    ];
    // A cursor of 64 characters is fine.
    let fine = [format!("cursor={}", "z".repeat(64))];
    assert_page_queries::<InventoryPage>(&app, "collector_3", &bad, &fine).await;
}
