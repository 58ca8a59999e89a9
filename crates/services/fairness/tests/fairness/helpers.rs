//! A fairness service over real adapters, with helpers so each test reads like a story.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use liveops_core::event::{BossKillPayload, DropClaimedPayload};
use liveops_core::ports::{topics, BusOptions, Delivery, Message};
use liveops_core::{now_ms, Bus, Envelope, Event, Payload, PlayerId, PortError};
use liveops_fairness::{router, run_consumer, FairnessConfig, FairnessState, GROUP};
use liveops_memory::{MemoryBus, MemoryHotState};
use liveops_sql::SqliteRepository;
pub use liveops_testkit::flaky::FlakyBus;
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use uuid::Uuid;

pub struct TestApp {
    pub state: FairnessState,
    pub router: Router,
    pub bus: Arc<FlakyBus>,
    pub hot: Arc<MemoryHotState>,
    pub repo: Arc<SqliteRepository>,
    _dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let repo = SqliteRepository::connect(dir.path().join("liveops.db").to_str().unwrap())
        .await
        .unwrap();
    repo.migrate().await.unwrap();
    let repo = Arc::new(repo);
    let bus = Arc::new(FlakyBus::new(MemoryBus::new(BusOptions {
        visibility_timeout: Duration::from_millis(300),
        max_deliveries: 10,
    })));
    bus.ensure_group(topics::INGESTED, GROUP).await.unwrap();
    for topic in [topics::ACCEPTED, topics::FLAGGED] {
        bus.ensure_group(topic, "test").await.unwrap();
    }
    let hot = Arc::new(MemoryHotState::new());
    let state = FairnessState {
        config: Arc::new(FairnessConfig {
            batch_size: 16,
            consumer_name: "test-consumer".into(),
            ..FairnessConfig::default()
        }),
        bus: bus.clone(),
        blocks: hot.clone(),
        store: repo.clone(),
        auth: liveops_http::OperatorAuth {
            sessions: repo.clone(),
        },
        audit: repo.clone(),
    };
    TestApp {
        router: router(state.clone()),
        state,
        bus,
        hot,
        repo,
        _dir: dir,
    }
}

/// A boss kill by `player` worth `points`, as the gateway would put it on the bus.
pub fn boss_kill(player: &str, points: u32) -> Envelope {
    Envelope {
        event_id: Uuid::now_v7(),
        received_at: now_ms(),
        event: Event {
            player_id: PlayerId::parse(player).unwrap(),
            ts: now_ms() / 1000,
            payload: Payload::BossKill(BossKillPayload {
                boss_id: "dragon_lord".into(),
                tier: 5,
                points,
            }),
        },
    }
}

/// A claimed drop (no value to judge).
pub fn drop_claimed(player: &str) -> Envelope {
    Envelope {
        event: Event {
            payload: Payload::DropClaimed(DropClaimedPayload {
                drop_id: "epic_sword_001".into(),
                weight: 0.05,
                source: "raid_chest".into(),
            }),
            ..boss_kill(player, 0).event
        },
        ..boss_kill(player, 0)
    }
}

/// 60 ordinary boss kills (100..=109 points) by ten players.
pub fn warm_up() -> Vec<Envelope> {
    (0..60u32)
        .map(|i| boss_kill(&format!("player_{}", i % 10), 100 + i % 10))
        .collect()
}

/// A running consumer.
pub struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), PortError>>,
}

impl Running {
    pub async fn stop(self) {
        self.stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        assert_eq!(ended.expect("consumer stops promptly").unwrap(), Ok(()));
    }
}

impl TestApp {
    pub async fn ingest(&self, events: &[Envelope]) {
        let messages = events
            .iter()
            .map(|e| Message {
                id: e.event_id.to_string(),
                key: e.event.player_id.as_str().to_owned(),
                payload: Bytes::from(e.encode()),
            })
            .collect();
        self.bus.publish(topics::INGESTED, messages).await.unwrap();
    }

    pub fn start(&self) -> Running {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_consumer(self.state.clone(), stop.clone()));
        Running { stop, task }
    }

    /// Waits until the consumer has acked everything ingested.
    pub async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.bus.lag(topics::INGESTED, GROUP).await.unwrap() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "consumer did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs a consumer until everything ingested so far is handled.
    pub async fn process(&self) {
        let running = self.start();
        self.settled().await;
        running.stop().await;
    }

    /// New messages on `topic` since the last call.
    pub async fn drain(&self, topic: &str) -> Vec<(Delivery, Envelope)> {
        let got = self
            .bus
            .inner()
            .poll(topic, "test", "t", 100_000, Duration::from_millis(1))
            .await
            .unwrap();
        let ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
        self.bus.inner().ack(topic, "test", &ids).await.unwrap();
        got.into_iter()
            .map(|d| {
                let env = Envelope::decode(&d.payload).unwrap();
                (d, env)
            })
            .collect()
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, String, Value) {
        let res = self
            .router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, ct, body)
    }
}
