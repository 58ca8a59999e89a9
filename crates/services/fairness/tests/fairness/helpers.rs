//! A fairness service over real adapters, with helpers so each test reads like a story.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use liveops_core::ports::{topics, Blocklist, BusOptions, Delivery};
use liveops_core::stores::FairnessStore;
use liveops_core::{now_ms, Bus, BusExt, Envelope, PortError};
use liveops_fairness::{router, run_consumer, FairnessConfig, FairnessState, GROUP};
use liveops_http::Problem;
use liveops_memory::{MemoryBus, MemoryHotState};
use liveops_sql::SqliteRepository;
pub use liveops_testkit::flaky::FlakyBus;
use liveops_testkit::received::{self, envelope};
use liveops_testkit::served;
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The span strikes are counted over in these tests.
pub const WINDOW: Duration = Duration::from_secs(600);

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
    let repo = SqliteRepository::open_migrated(&dir.path().join("liveops.db"))
        .await
        .unwrap();
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
    envelope(player, received::kill(points), now_ms())
}

/// A claimed drop (no value to judge).
pub fn drop_claimed(player: &str) -> Envelope {
    envelope(player, received::drop("epic_sword_001"), now_ms())
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
    /// The warm-up, then three outlier boss kills by `player_cheat` (`points` and up), all
    /// processed: the three cheats, which block the player.
    pub async fn three_cheats(&self, points: u32) -> Vec<Envelope> {
        let mut events = warm_up();
        let cheats: Vec<_> = (0..3)
            .map(|i| boss_kill("player_cheat", points + i))
            .collect();
        events.extend(cheats.iter().cloned());
        self.ingest(&events).await;
        self.process().await;
        cheats
    }

    /// `cheat` judged flagged at `at_ms`, its verdict stored (as before a crash that came
    /// before its strike): processing it again strikes at that time.
    pub async fn flagged_before(&self, cheat: &Envelope, at_ms: i64) {
        let commit = liveops_core::stores::FairnessCommit {
            verdicts: vec![(cheat.event_id, true)],
            flags: vec![],
            stats: vec![],
            at_ms,
        };
        assert!(self.repo.commit_fairness(&commit).await.unwrap());
    }

    pub async fn ingest(&self, events: &[Envelope]) {
        let messages = events.iter().map(Envelope::to_message).collect();
        self.bus.publish(topics::INGESTED, messages).await.unwrap();
    }

    pub fn start(&self) -> Running {
        self.start_as("test-consumer")
    }

    /// Starts a consumer named `name` (another replica of the same group).
    pub fn start_as(&self, name: &str) -> Running {
        let mut state = self.state.clone();
        state.config = Arc::new(FairnessConfig {
            consumer_name: name.into(),
            ..(*self.state.config).clone()
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_consumer(state, stop.clone()));
        Running { stop, task }
    }

    /// Waits until the consumer has acked everything ingested.
    pub async fn settled(&self) {
        served::wait_acked(&*self.bus, topics::INGESTED, GROUP).await;
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

    /// The ids of what [`TestApp::drain`] takes from `topic`, in order.
    pub async fn drained_ids(&self, topic: &str) -> Vec<uuid::Uuid> {
        self.drain(topic)
            .await
            .iter()
            .map(|(_, e)| e.event_id)
            .collect()
    }

    /// The player's strikes within the last [`WINDOW`].
    pub async fn strikes(&self, player: &str) -> u32 {
        self.hot.strikes(player, now_ms(), WINDOW).await.unwrap()
    }

    /// When the player's block ends, if blocked.
    pub async fn blocked_until(&self, player: &str) -> Option<i64> {
        self.hot.blocked_until(player).await.unwrap()
    }

    pub async fn get(&self, uri: &str) -> served::Reply {
        served::get(&self.router, uri).await
    }

    /// `GET uri`, which must answer 200 `application/json` with a `T`.
    pub async fn ok<T: DeserializeOwned>(&self, uri: &str) -> T {
        served::get_view(&self.router, uri).await
    }

    /// `GET uri`, which must be refused with `status` and a problem saying so, returned.
    pub async fn refused(&self, uri: &str, status: u16) -> Problem {
        served::get_refused(&self.router, uri, status).await
    }
}
