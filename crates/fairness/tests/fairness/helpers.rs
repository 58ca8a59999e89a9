//! A fairness service over real adapters, with helpers so each test reads like a story.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use liveops_core::event::{BossKillPayload, DropClaimedPayload};
use liveops_core::ports::{topics, Delivery, Message};
use liveops_core::{
    now_ms, Bus, Envelope, Event, Payload, PlayerId, PortError, PortResult, Repository,
};
use liveops_fairness::{router, run_consumer, FairnessConfig, FairnessState, GROUP};
use liveops_store::memory::bus::BusOptions;
use liveops_store::memory::{MemoryBus, MemoryHotState};
use liveops_store::sql::SqlRepository;
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use uuid::Uuid;

/// A real bus with injectable failures: the next `fail_publishes` publishes by fairness fail, and
/// every ack fails while `fail_acks` is set.
pub struct FlakyBus {
    pub inner: MemoryBus,
    pub fail_publishes: AtomicU32,
    pub fail_acks: AtomicBool,
}

#[async_trait]
impl Bus for FlakyBus {
    async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()> {
        self.inner.ensure_group(topic, group).await
    }
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> PortResult<()> {
        let failing = topic != topics::INGESTED
            && self
                .fail_publishes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if failing {
            return Err(PortError::Unavailable("injected publish failure".into()));
        }
        self.inner.publish(topic, messages).await
    }
    async fn poll(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> PortResult<Vec<Delivery>> {
        self.inner.poll(topic, group, consumer, max, wait).await
    }
    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()> {
        if self.fail_acks.load(Ordering::SeqCst) {
            return Err(PortError::Unavailable("injected ack failure".into()));
        }
        self.inner.ack(topic, group, ids).await
    }
    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
        self.inner.lag(topic, group).await
    }
    async fn dead_letters(
        &self,
        topic: &str,
        group: &str,
        limit: usize,
    ) -> PortResult<Vec<Delivery>> {
        self.inner.dead_letters(topic, group, limit).await
    }
    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64> {
        self.inner.replay_dead_letters(topic, group).await
    }
    async fn healthcheck(&self) -> PortResult<()> {
        self.inner.healthcheck().await
    }
}

pub struct TestApp {
    pub state: FairnessState,
    pub router: Router,
    pub bus: Arc<FlakyBus>,
    pub hot: Arc<MemoryHotState>,
    pub repo: Arc<SqlRepository>,
    _dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let repo = SqlRepository::connect(dir.path().join("liveops.db").to_str().unwrap())
        .await
        .unwrap();
    repo.migrate().await.unwrap();
    let repo = Arc::new(repo);
    let bus = Arc::new(FlakyBus {
        inner: MemoryBus::new(BusOptions {
            visibility_timeout: Duration::from_millis(300),
            max_deliveries: 10,
        }),
        fail_publishes: AtomicU32::new(0),
        fail_acks: AtomicBool::new(false),
    });
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
        hot: hot.clone(),
        repo: repo.clone(),
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
            .inner
            .poll(topic, "test", "t", 100_000, Duration::from_millis(1))
            .await
            .unwrap();
        let ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
        self.bus.inner.ack(topic, "test", &ids).await.unwrap();
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
