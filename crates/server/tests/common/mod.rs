//! Test helpers: start the real application on a random port with a fresh data directory, and
//! talk to it like a game client would.
#![allow(dead_code, missing_docs)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use liveops::{Application, RawConfig, Settings};
use liveops_core::Keyring;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The signing secret every test app uses.
pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
/// A second key for rotation tests, id `k2`.
pub const SECRET2: &str = "second-key-abcdefghijklmnopqrstuvwxyz";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub keyring: Keyring,
    pub stop: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Starts the whole product (`--target all`) with extra flags.
pub async fn spawn_app(extra: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = spawn_app_in(dir.path().to_path_buf(), extra).await;
    app._dir = Some(dir);
    app
}

pub async fn spawn_app_in(data_dir: PathBuf, extra: &[&str]) -> TestApp {
    let d = data_dir.to_str().expect("utf-8 path").to_owned();
    let keys = format!("k2={SECRET2}");
    let mut args = vec![
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--data-dir",
        &d,
        "--hmac-secret",
        SECRET,
        "--hmac-keys",
        &keys,
        "--log-level",
        "warn",
    ];
    args.extend_from_slice(extra);
    let raw = RawConfig::from_args(args).expect("args");
    let settings = Settings::resolve(raw).expect("settings");
    let keyring = settings.keyring.clone();
    let app = Application::build(settings).await.expect("build");
    let port = app.port();
    let stop = app.shutdown_token();
    let handle = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // Like a deployment, wait for readiness (boards rebuilt, backends reachable) before traffic.
    eventually(Duration::from_secs(30), "readyz", || async {
        let r = client.get(format!("{base}/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        keyring,
        stop,
        handle,
        data_dir,
        _dir: None,
    }
}

pub fn event(kind: &str, player: &str) -> Value {
    let payload = match kind {
        "progression" => json!({"deltaXp": 150, "activity": "quest_completion"}),
        "boss_kill" => json!({"bossId": "dragon_lord", "tier": 5, "points": 2500}),
        _ => json!({"dropId": "epic_sword_001", "weight": 0.05, "source": "raid_chest"}),
    };
    json!({"type": kind, "playerId": player, "ts": now(), "payload": payload})
}

pub fn xp(player: &str, delta: u64) -> Value {
    json!({"type": "progression", "playerId": player, "ts": now(), "payload": {"deltaXp": delta, "activity": "quest"}})
}

pub fn kill(player: &str, points: u64) -> Value {
    json!({"type": "boss_kill", "playerId": player, "ts": now(), "payload": {"bossId": "dragon_lord", "tier": 3, "points": points}})
}

/// A sample event from `shared/sample_events`, with `ts` set to now.
pub fn sample(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/sample_events")
        .join(format!("{name}.json"));
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: Value = serde_json::from_str(&raw).expect("sample json");
    v["ts"] = json!(now());
    v
}

pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    pub fn assert_problem(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.content_type, "application/problem+json",
            "body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status, "body: {}", self.body);
        assert!(
            self.body["type"].is_string() && self.body["title"].is_string(),
            "{}",
            self.body
        );
        self
    }
}

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        content_type,
        retry_after,
        body,
    }
}

impl TestApp {
    /// Posts raw bytes signed with the primary key at `ts`, with extra headers.
    pub async fn post_signed(
        &self,
        path: &str,
        body: &[u8],
        ts: i64,
        headers: &[(&str, &str)],
    ) -> Answer {
        let sig = self.keyring.sign_request(None, ts, body).expect("sign");
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("x-timestamp", ts.to_string())
            .header("x-signature", sig);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.body(body.to_vec()).send().await.expect("request")).await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.body(body).send().await.expect("request")).await
    }

    pub async fn send_event(&self, event: &Value) -> Answer {
        self.post_signed(
            "/events",
            &serde_json::to_vec(event).expect("json"),
            now(),
            &[],
        )
        .await
    }

    pub async fn send_event_with_key(&self, event: &Value, key: &str) -> Answer {
        self.post_signed(
            "/events",
            &serde_json::to_vec(event).expect("json"),
            now(),
            &[("idempotency-key", key)],
        )
        .await
    }

    pub async fn send_batch(&self, events: &[Value]) -> Answer {
        let body = serde_json::to_vec(&json!({ "events": events })).expect("json");
        self.post_signed("/events/batch", &body, now(), &[]).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        answer(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn progress(&self, player: &str) -> Value {
        let a = self.get(&format!("/players/{player}/progress")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    }

    pub async fn leaderboard(&self, window: &str) -> Value {
        let a = self
            .get(&format!("/leaderboard?window={window}&limit=1000"))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    }

    pub async fn score(&self, window: &str, player: &str) -> Option<i64> {
        let board = self.leaderboard(window).await;
        board["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["playerId"] == player)
            .and_then(|e| e["score"].as_i64())
    }

    pub async fn claim(&self, player: &str, reward: &str) -> Answer {
        let body =
            serde_json::to_vec(&json!({"playerId": player, "rewardId": reward})).expect("json");
        self.post_signed("/rewards/claim", &body, now(), &[]).await
    }

    /// Stops the app gracefully and returns how long it took.
    pub async fn shutdown(self) -> Duration {
        let start = Instant::now();
        self.stop.cancel();
        self.handle.await.expect("join").expect("clean stop");
        start.elapsed()
    }
}

/// Polls `check` until it returns Some, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
