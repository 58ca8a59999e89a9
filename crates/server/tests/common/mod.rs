//! Test helpers: start the real application on a random port with a fresh data directory, and
//! talk to it like a game client would.
#![allow(dead_code, missing_docs)]

pub mod campaign;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use liveops::config::parse_args;
use liveops::{Application, Settings, Table};
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
    let app = start(Table::standard(), data_dir, extra).await;
    // Like a deployment, wait for readiness (boards rebuilt, backends reachable) before traffic.
    wait_ready(&app.base).await;
    app
}

/// Starts the modules of `table` the flags select, without waiting for readiness.
pub async fn start(table: Table, data_dir: PathBuf, extra: &[&str]) -> TestApp {
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
    let (raw, matches) = parse_args(&table, args).expect("args");
    let settings = Settings::resolve(&table, raw, matches).expect("settings");
    let keyring = settings.keyring.clone();
    let app = Application::build(settings).await.expect("build");
    let port = app.port();
    let stop = app.shutdown_token();
    let handle = tokio::spawn(app.run_until_stopped());
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

/// Where each service answers: the same base for the all-in-one process, four for a split deployment.
#[derive(Clone, Debug)]
pub struct Urls {
    pub gateway: String,
    pub fairness: String,
    pub progression: String,
    pub leaderboard: String,
    /// An operator's bearer token for the fairness reads, once operators exist.
    pub operator: Option<String>,
}

impl Urls {
    pub fn all(base: &str) -> Self {
        Self {
            gateway: base.to_owned(),
            fairness: base.to_owned(),
            progression: base.to_owned(),
            leaderboard: base.to_owned(),
            operator: None,
        }
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

async fn post_signed_to(
    client: &reqwest::Client,
    ring: &Keyring,
    url: &str,
    body: &Value,
) -> (u16, Value) {
    let body = serde_json::to_vec(body).expect("json");
    let ts = now();
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-timestamp", ts.to_string())
        .header(
            "x-signature",
            ring.sign_request(None, ts, &body).expect("sign"),
        )
        .body(body)
        .send()
        .await
        .expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The product's story, told through its HTTP contract, whatever the deployment shape: events
/// flow to progression and every leaderboard window, a reward is claimed once with a valid receipt,
/// a cheater is quarantined and then blocked at the gateway. `tag` keeps players unique per run.
pub async fn play_scenario(urls: &Urls, ring: &Keyring, tag: &str) {
    let client = reqwest::Client::new();
    let wait = Duration::from_secs(30);
    let p = |name: &str| format!("{name}_{tag}");
    // Events, single and batched.
    let (s, b) = post_signed_to(
        &client,
        ring,
        &format!("{}/events", urls.gateway),
        &kill(&p("hero"), 2500),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = post_signed_to(
        &client,
        ring,
        &format!("{}/events", urls.gateway),
        &xp(&p("hero"), 1200),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let drop = json!({"type": "drop_claimed", "playerId": p("looter"), "ts": now(), "payload": {"dropId": "epic_sword_001", "weight": 0.05, "source": "raid_chest"}});
    let (s, b) = post_signed_to(
        &client,
        ring,
        &format!("{}/events/batch", urls.gateway),
        &json!({"events": [drop, xp(&p("sidekick"), 300)]}),
    )
    .await;
    assert_eq!((s, b["accepted"].clone()), (200, json!(2)), "{b}");

    // Progression and leaderboards catch up.
    let hero = eventually(wait, "hero progress", || async {
        let (_, v) = get_json(
            &client,
            &format!("{}/players/{}/progress", urls.progression, p("hero")),
        )
        .await?;
        (v["xp"] == 1200).then_some(v)
    })
    .await;
    assert_eq!(hero["level"], 2);
    for window in ["daily", "weekly", "seasonal"] {
        let me = eventually(wait, "hero ranked", || async {
            let (s, v) = get_json(
                &client,
                &format!(
                    "{}/leaderboard/players/{}?window={window}&around=1",
                    urls.leaderboard,
                    p("hero")
                ),
            )
            .await?;
            (s == 200 && v["score"] == 3700).then_some(v)
        })
        .await;
        assert!(me["rank"].as_u64().is_some_and(|r| r >= 1), "{me}");
    }

    // A reward claimed once, with a receipt that verifies and resists tampering.
    let reward = hero["pendingRewards"][0]["rewardId"]
        .as_str()
        .expect("level-up reward")
        .to_owned();
    let claim = json!({"playerId": p("hero"), "rewardId": reward});
    let (s, receipt) = post_signed_to(
        &client,
        ring,
        &format!("{}/rewards/claim", urls.progression),
        &claim,
    )
    .await;
    assert_eq!(s, 200, "{receipt}");
    let (s, again) = post_signed_to(
        &client,
        ring,
        &format!("{}/rewards/claim", urls.progression),
        &claim,
    )
    .await;
    assert_eq!((s, &again), (200, &receipt));
    let verify = |r: Value| {
        let client = client.clone();
        let url = format!("{}/receipts/verify", urls.progression);
        async move {
            client
                .post(url)
                .json(&r)
                .send()
                .await
                .expect("verify")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    assert_eq!(verify(receipt.clone()).await["valid"], true);
    let mut forged = receipt.clone();
    forged["item"] = json!("crown");
    assert_eq!(verify(forged).await["valid"], false);

    // Fairness: after a warm-up, absurd scores are quarantined and the cheater is blocked.
    let warm: Vec<Value> = (0..60)
        .map(|i| kill(&p(&format!("n{i}")), 900 + (i % 7) * 40))
        .collect();
    let (s, b) = post_signed_to(
        &client,
        ring,
        &format!("{}/events/batch", urls.gateway),
        &json!({ "events": warm }),
    )
    .await;
    assert_eq!((s, b["accepted"].clone()), (200, json!(60)), "{b}");
    eventually(wait, "warm-up applied", || async {
        let (s, _) = get_json(
            &client,
            &format!(
                "{}/leaderboard/players/{}?window=daily",
                urls.leaderboard,
                p("n59")
            ),
        )
        .await?;
        (s == 200).then_some(())
    })
    .await;
    for i in 0..3 {
        let (s, b) = post_signed_to(
            &client,
            ring,
            &format!("{}/events", urls.gateway),
            &kill(&p("cheat"), 1_000_000 - i),
        )
        .await;
        assert_eq!(s, 202, "{b}");
    }
    let f = eventually(wait, "cheater blocked", || async {
        let mut req = client.get(format!("{}/fairness/players/{}", urls.fairness, p("cheat")));
        if let Some(token) = &urls.operator {
            req = req.bearer_auth(token);
        }
        let v: Value = req.send().await.ok()?.json().await.ok()?;
        (v["blocked"] == true).then_some(v)
    })
    .await;
    assert_eq!(f["flags"].as_array().map(Vec::len), Some(3), "{f}");
    let (s, b) = post_signed_to(
        &client,
        ring,
        &format!("{}/events", urls.gateway),
        &kill(&p("cheat"), 10),
    )
    .await;
    assert_eq!(s, 403, "the gateway sees the block: {b}");
    let (s, _) = get_json(
        &client,
        &format!(
            "{}/leaderboard/players/{}?window=daily",
            urls.leaderboard,
            p("cheat")
        ),
    )
    .await
    .expect("get");
    assert_eq!(s, 404, "quarantined events never reach the leaderboard");
}

/// The `liveops` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_liveops");

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until `base/readyz` answers 200.
pub async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    eventually(
        Duration::from_secs(60),
        &format!("{base}/readyz"),
        || async {
            let r = client.get(format!("{base}/readyz")).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
}

/// Child processes killed when the test ends, however it ends, plus clean-up steps.
#[derive(Default)]
pub struct Fleet(pub Vec<std::process::Child>, pub Vec<Box<dyn FnMut()>>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        for f in &mut self.1 {
            f();
        }
    }
}
