//! A gateway over the in-memory adapters, with typed helpers so each test reads like a story.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use liveops_core::ports::{topics, Delivery};
use liveops_core::{now_ms, Bus, BusExt, Envelope, Keyring};
use liveops_gateway::{router, GatewayConfig, GatewayState, ItemResult};
use liveops_http::{Problem, SignatureCheck};
use liveops_memory::{MemoryBus, MemoryHotState};
pub use liveops_testkit::flaky::FlakyBus;
use liveops_testkit::served;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

pub const K1: &[u8] = b"k1-secret-0123456789abcdef0123456789";
pub const K2: &[u8] = b"k2-secret-fedcba9876543210fedcba9876";

pub struct TestApp {
    pub router: Router,
    pub bus: Arc<FlakyBus>,
    pub hot: Arc<MemoryHotState>,
    pub ring: Keyring,
}

/// An HTTP answer, body parsed as JSON (or `Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The value of header `name`, or `""` if absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type")
    }

    /// `Retry-After`, in seconds (panics if absent or not a number).
    #[track_caller]
    pub fn retry_after(&self) -> u64 {
        let v = self.header("retry-after");
        v.parse()
            .unwrap_or_else(|_| panic!("Retry-After {v:?}: {:?}", self.body))
    }

    /// The body read as the view `T` the route answers with (an [`liveops_gateway::EventAccepted`],
    /// a [`liveops_gateway::BatchAnswer`]).
    #[track_caller]
    pub fn view<T: DeserializeOwned>(&self) -> T {
        served::read(&self.body)
    }

    /// The body read as a [`Problem`], if it is one.
    pub fn try_problem(&self) -> Option<Problem> {
        <Problem as serde::Deserialize>::deserialize(&self.body).ok()
    }

    /// Asserts a Problem answer with `status`, and returns it.
    #[track_caller]
    pub fn problem(&self, status: u16) -> Problem {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        let problem = served::refusal(status, self.content_type(), &self.body);
        assert!(problem.kind.starts_with("/problems/"), "{problem:?}");
        problem
    }
}

/// What every result of a batch answer says, accepted or refused.
pub trait BatchItem {
    /// Position in the request.
    fn index(&self) -> usize;
    /// 202, or the refusal's status.
    fn status(&self) -> u16;
    /// The event id, if accepted.
    fn event_id(&self) -> Option<Uuid>;
    /// The refusal, if refused.
    fn error(&self) -> Option<&Problem>;
}

impl BatchItem for ItemResult {
    fn index(&self) -> usize {
        match self {
            ItemResult::Accepted(a) => a.index,
            ItemResult::Rejected(r) => r.index,
        }
    }

    fn status(&self) -> u16 {
        match self {
            ItemResult::Accepted(a) => a.status,
            ItemResult::Rejected(r) => r.status,
        }
    }

    fn event_id(&self) -> Option<Uuid> {
        match self {
            ItemResult::Accepted(a) => Some(a.event_id),
            ItemResult::Rejected(_) => None,
        }
    }

    fn error(&self) -> Option<&Problem> {
        match self {
            ItemResult::Accepted(_) => None,
            ItemResult::Rejected(r) => Some(&r.error),
        }
    }
}

pub fn spawn_app() -> TestApp {
    spawn_with(|_| {})
}

pub fn spawn_with(tune: impl FnOnce(&mut GatewayConfig)) -> TestApp {
    let ring = Keyring::new(vec![("k1".into(), K1.to_vec()), ("k2".into(), K2.to_vec())]).unwrap();
    let mut config = GatewayConfig {
        rate_limit_max: 1000,
        ..GatewayConfig::default()
    };
    tune(&mut config);
    let bus = Arc::new(FlakyBus::new(MemoryBus::default()));
    let hot = Arc::new(MemoryHotState::new());
    let signatures = SignatureCheck {
        keys: Arc::new(liveops_core::KeyStore::new(ring.clone())),
        tolerance_s: 300,
        accept_v1: true,
    };
    let state = GatewayState::new(config, signatures, bus.clone(), hot.clone());
    TestApp {
        router: router(state),
        bus,
        hot,
        ring,
    }
}

impl TestApp {
    /// The gateway started again on the same bus and keys, its in-memory hot state empty: the
    /// embedded default after a restart, which forgot every request it held and answered.
    pub fn restarted(&self) -> TestApp {
        let hot = Arc::new(MemoryHotState::new());
        let signatures = SignatureCheck {
            keys: Arc::new(liveops_core::KeyStore::new(self.ring.clone())),
            tolerance_s: 300,
            accept_v1: true,
        };
        let config = GatewayConfig {
            rate_limit_max: 1000,
            ..GatewayConfig::default()
        };
        let state = GatewayState::new(config, signatures, self.bus.clone(), hot.clone());
        TestApp {
            router: router(state),
            bus: self.bus.clone(),
            hot,
            ring: self.ring.clone(),
        }
    }
}

pub fn now_s() -> i64 {
    now_ms() / 1000
}

pub use liveops_testkit::fixtures::sample;

/// A boss kill by `player` worth `points`.
pub fn boss_kill(player: &str, points: u64) -> Value {
    json!({"type": "boss_kill", "playerId": player, "ts": now_s(),
           "payload": {"bossId": "dragon_lord", "tier": 5, "points": points}})
}

/// Waits, if needed, so the next few hundred milliseconds fall in one rate-limit second.
pub async fn fresh_second() {
    let into = now_ms().rem_euclid(1000);
    if into > 300 {
        tokio::time::sleep(Duration::from_millis((1000 - into + 5) as u64)).await;
    }
}

impl TestApp {
    /// Signature headers for a POST of `body` to `path` at `ts`, signed with `kid` (sent as
    /// `X-Key-Id` if given).
    pub fn sign(
        &self,
        path: &str,
        body: &[u8],
        ts: i64,
        kid: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("x-timestamp", ts.to_string()),
            (
                "x-signature",
                self.ring.sign_request(kid, ts, "POST", path, body).unwrap(),
            ),
        ];
        if let Some(kid) = kid {
            h.push(("x-key-id", kid.to_owned()));
        }
        h
    }

    pub async fn send(
        &self,
        path: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Answer {
        let mut req = Request::post(path).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        self.send_request(req.body(Body::from(body.into())).unwrap())
            .await
    }

    /// Sends a request as built, and reads the answer.
    pub async fn send_request(&self, req: Request<Body>) -> Answer {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes: Bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Sends `body` to `path`, correctly signed now with the primary key, plus `extra` headers.
    pub async fn send_signed(&self, path: &str, body: &[u8], extra: &[(&str, String)]) -> Answer {
        let mut headers = self.sign(path, body, now_s(), None);
        headers.extend(extra.iter().cloned());
        self.send(path, body.to_vec(), &headers).await
    }

    /// Sends the signed `body` to `path` under `Idempotency-Key` `k1` while publishes stall 6 s,
    /// and 5.2 s later (past the 5 s of a hold not extended) the same bytes under `k2`, with
    /// publishes no longer stalling: the first's answer, then the copy's.
    pub async fn send_slow_then_copy(&self, path: &str, body: &[u8]) -> (Answer, Answer) {
        let signed = self.sign(path, body, now_s(), None);
        let under = |key: &str| {
            let mut headers = signed.clone();
            headers.push(("idempotency-key", key.to_owned()));
            headers
        };
        let (first, copy) = (under("k1"), under("k2"));
        self.bus.stall_publish_ms.store(6000, Ordering::SeqCst);
        tokio::join!(self.send(path, body.to_vec(), &first), async {
            tokio::time::sleep(Duration::from_millis(5200)).await;
            self.bus.stall_publish_ms.store(0, Ordering::SeqCst);
            self.send(path, body.to_vec(), &copy).await
        })
    }

    pub async fn post_event(&self, event: &Value) -> Answer {
        self.send_signed("/events", &serde_json::to_vec(event).unwrap(), &[])
            .await
    }

    pub async fn post_event_with_key(&self, event: &Value, key: &str) -> Answer {
        self.send_signed(
            "/events",
            &serde_json::to_vec(event).unwrap(),
            &[("idempotency-key", key.to_owned())],
        )
        .await
    }

    pub async fn post_batch(&self, batch: &Value) -> Answer {
        self.send_signed("/events/batch", &serde_json::to_vec(batch).unwrap(), &[])
            .await
    }

    /// Every message published to `events.ingested` so far (read by a test-only group).
    pub async fn ingested(&self) -> Vec<(Delivery, Envelope)> {
        let bus = &self.bus;
        bus.ensure_group(topics::INGESTED, "test").await.unwrap();
        let got = bus
            .poll(
                topics::INGESTED,
                "test",
                "t",
                100_000,
                Duration::from_millis(1),
            )
            .await
            .unwrap();
        got.into_iter()
            .map(|d| {
                let env = Envelope::decode(&d.payload).unwrap();
                (d, env)
            })
            .collect()
    }
}
