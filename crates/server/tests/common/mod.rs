//! Test helpers: start the real application on a random port with a fresh data directory, and
//! talk to it like a game client would.
#![allow(dead_code, missing_docs)]

pub mod campaign;
pub mod load;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use liveops::config::parse_args;
use liveops::{Application, Settings, Table};
use liveops_core::{Keyring, Receipt};
use liveops_gateway::BatchAnswer;
use liveops_http::Problem;
use liveops_leaderboard::LeaderboardView;
use liveops_progression::ProgressView;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub mod client;
pub use client::Client;

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
    let keys = format!("k2={SECRET2}");
    let mut args = vec!["--hmac-secret", SECRET, "--hmac-keys", &keys];
    args.extend_from_slice(extra);
    start_keyed(table, data_dir, &args).await
}

/// Starts the whole product with the signing keys `extra` names (and any other flags), ready.
pub async fn spawn_app_keyed(data_dir: PathBuf, extra: &[&str]) -> TestApp {
    let app = start_keyed(Table::standard(), data_dir, extra).await;
    wait_ready(&app.base).await;
    app
}

/// Starts the modules of `table` with exactly the flags given plus a port and a data directory.
pub async fn start_keyed(table: Table, data_dir: PathBuf, extra: &[&str]) -> TestApp {
    let d = data_dir.to_str().expect("utf-8 path").to_owned();
    let mut args = vec![
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--data-dir",
        &d,
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
    /// Asserts a 429 problem whose `Retry-After` is a whole number of seconds from 1 to 60.
    pub fn assert_retry_later(&self) {
        self.assert_problem(429);
        let retry: u64 = self
            .retry_after
            .as_deref()
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }

    /// The body read as `T`, the view type the server wrote (panics, showing the body, if it is
    /// not one).
    pub fn json<T: DeserializeOwned>(&self) -> T {
        campaign::read(&self.body)
    }

    /// The body read as `T`, or `None` if it is not one (an answer still on its way).
    pub fn try_json<T: DeserializeOwned>(&self) -> Option<T> {
        T::deserialize(&self.body).ok()
    }

    /// Asserts a `status` refusal written as `application/problem+json` (a type, a title and
    /// the same status in the body); the refusal.
    pub fn assert_problem(&self, status: u16) -> Problem {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        liveops_testkit::served::refusal(status, &self.content_type, &self.body)
    }
}

/// Reads a response into an [`Answer`].
pub async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status();
    let header = |name: &str| {
        let value = res.headers().get(name)?;
        value.to_str().ok().map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
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
        self.try_post_signed(path, body, ts, headers)
            .await
            .expect("request")
    }

    /// [`Self::post_signed`], giving back the client's error (a connection the server closed
    /// while the body was still being written) instead of panicking.
    pub async fn try_post_signed(
        &self,
        path: &str,
        body: &[u8],
        ts: i64,
        headers: &[(&str, &str)],
    ) -> Result<Answer, reqwest::Error> {
        let sig = self
            .keyring
            .sign_request(None, ts, "POST", path, body)
            .expect("sign");
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .header("x-timestamp", ts.to_string())
            .header("x-signature", sig);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Ok(answer(req.body(body.to_vec()).send().await?).await)
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
        self.try_get(path).await.expect("request")
    }

    /// A GET whose transport error is the caller's to judge (after a 413 the server closed the
    /// connection, and the pooled one may be dead).
    pub async fn try_get(&self, path: &str) -> Result<Answer, reqwest::Error> {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await?;
        Ok(answer(res).await)
    }

    /// The player's progression this season (asserts a 200).
    pub async fn progress(&self, player: &str) -> ProgressView {
        let a = self.get(&format!("/players/{player}/progress")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()
    }

    /// The current `window` board's top 1000 (asserts a 200).
    pub async fn leaderboard(&self, window: &str) -> LeaderboardView {
        let a = self
            .get(&format!("/leaderboard?window={window}&limit=1000"))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()
    }

    /// The player's score on the current `window` board, if they are in its top 1000.
    pub async fn score(&self, window: &str, player: &str) -> Option<i64> {
        let board = self.leaderboard(window).await;
        board
            .entries
            .into_iter()
            .find(|e| e.player_id == player)
            .map(|e| e.score)
    }

    pub async fn claim(&self, player: &str, reward: &str) -> Answer {
        let body =
            serde_json::to_vec(&json!({"playerId": player, "rewardId": reward})).expect("json");
        self.post_signed("/rewards/claim", &body, now(), &[]).await
    }

    /// The text of `/metrics` (empty if it is not text).
    pub async fn metrics(&self) -> String {
        let a = self.get("/metrics").await;
        a.body.as_str().unwrap_or_default().to_owned()
    }

    /// Asks `/receipts/verify` about `receipt` (unsigned, as anyone may).
    pub async fn verify_receipt(&self, receipt: &impl serde::Serialize) -> Answer {
        let body = serde_json::to_vec(receipt).expect("json");
        self.post_raw("/receipts/verify", body, &[]).await
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

    /// The split deployment: `bases` of gateway, fairness, progression and leaderboard, in that
    /// order (more may follow).
    pub fn split(bases: &[String]) -> Self {
        Self {
            gateway: bases[0].clone(),
            fairness: bases[1].clone(),
            progression: bases[2].clone(),
            leaderboard: bases[3].clone(),
            operator: None,
        }
    }
}

/// The `field` of each item of the JSON array `list` that has it as a string.
pub fn strings_of<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"));
    items.iter().filter_map(|i| i[field].as_str()).collect()
}

/// The player's XP this season as progression at `base` shows it now (`None`: no answer).
pub async fn xp_now(client: &reqwest::Client, base: &str, player: &str) -> Option<u64> {
    let p: ProgressView = client
        .get(format!("{base}/players/{player}/progress"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(p.xp)
}

/// The product's story, told through its HTTP contract, whatever the deployment shape: events
/// flow to progression and every leaderboard window, a reward is claimed once with a valid receipt,
/// a cheater is quarantined and then blocked at the gateway. `tag` keeps players unique per run.
pub async fn play_scenario(urls: &Urls, ring: &Keyring, tag: &str) {
    let game = Client::new(urls.clone(), ring);
    let wait = Duration::from_secs(30);
    let p = |name: &str| format!("{name}_{tag}");
    // Events, single and batched.
    let (s, b) = game.send(&kill(&p("hero"), 2500)).await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = game.send(&xp(&p("hero"), 1200)).await;
    assert_eq!(s, 202, "{b}");
    let drop = json!({"type": "drop_claimed", "playerId": p("looter"), "ts": now(), "payload": {"dropId": "epic_sword_001", "weight": 0.05, "source": "raid_chest"}});
    let (s, b) = game.send_batch(&[drop, xp(&p("sidekick"), 300)]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(campaign::read::<BatchAnswer>(&b).accepted, 2, "{b}");

    // Progression and leaderboards catch up.
    let hero = eventually(wait, "hero progress", || async {
        game.progress(&p("hero")).await.filter(|v| v.xp == 1200)
    })
    .await;
    assert_eq!(hero.level, 2);
    for window in ["daily", "weekly", "seasonal"] {
        let me = eventually(wait, "hero ranked", || async {
            game.rank(&p("hero"), window, 1)
                .await
                .1
                .filter(|v| v.score == 3700)
        })
        .await;
        assert!(me.rank >= 1, "{me:?}");
    }

    // A reward claimed once, with a receipt that verifies and resists tampering.
    let reward = &hero
        .pending_rewards
        .first()
        .expect("level-up reward")
        .reward_id;
    let (s, receipt) = game.claim(&p("hero"), reward).await;
    assert_eq!(s, 200, "{receipt}");
    let receipt: Receipt = campaign::read(&receipt);
    let (s, again) = game.claim(&p("hero"), reward).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(campaign::read::<Receipt>(&again), receipt);
    assert!(game.verify(&receipt).await);
    let forged = Receipt {
        item: "crown".into(),
        ..receipt.clone()
    };
    assert!(!game.verify(&forged).await);

    // Fairness: after a warm-up, absurd scores are quarantined and the cheater is blocked.
    let warm: Vec<Value> = (0..60)
        .map(|i| kill(&p(&format!("n{i}")), 900 + (i % 7) * 40))
        .collect();
    let (s, b) = game.send_batch(&warm).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(campaign::read::<BatchAnswer>(&b).accepted, 60, "{b}");
    eventually(wait, "warm-up applied", || async {
        (game.rank(&p("n59"), "daily", 0).await.0 == 200).then_some(())
    })
    .await;
    for i in 0..3 {
        let (s, b) = game.send(&kill(&p("cheat"), 1_000_000 - i)).await;
        assert_eq!(s, 202, "{b}");
    }
    let f = eventually(wait, "cheater blocked", || async {
        game.fairness(&p("cheat")).await.filter(|v| v.blocked)
    })
    .await;
    assert_eq!(f.flags.len(), 3, "{f:?}");
    let (s, b) = game.send(&kill(&p("cheat"), 10)).await;
    assert_eq!(s, 403, "the gateway sees the block: {b}");
    let (s, _) = game.rank(&p("cheat"), "daily", 0).await;
    assert_eq!(s, 404, "quarantined events never reach the leaderboard");
}

/// A new empty database `name` on the server of `admin_url` (PostgreSQL or MySQL), dropped
/// first if it exists; its URL.
pub fn fresh_database(admin_url: &str, name: &str) -> String {
    let (base, _) = admin_url.rsplit_once('/').expect("url with a database");
    if admin_url.starts_with("postgres") {
        succeed(Command::new("psql").arg(admin_url).args([
            "-qc",
            &format!("DROP DATABASE IF EXISTS {name}"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ]));
    } else {
        let u = url_parts(admin_url);
        succeed(
            Command::new("mariadb")
                .args(["--no-defaults", "-h", &u.0, "-P", &u.1, "-u", &u.2])
                .arg(format!("-p{}", u.3))
                .arg("-e")
                .arg(format!(
                    "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
                )),
        );
    }
    format!("{base}/{name}")
}

/// (host, port, user, password) of `mysql://user:password@host:port/db`.
fn url_parts(url: &str) -> (String, String, String, String) {
    let rest = url.split("://").nth(1).expect("scheme");
    let (creds, hostpart) = rest.split_once('@').expect("credentials");
    let (user, pass) = creds.split_once(':').expect("user:password");
    let host = hostpart.split('/').next().expect("host");
    let (h, p) = host.split_once(':').expect("host:port");
    (h.into(), p.into(), user.into(), pass.into())
}

pub use liveops_testkit::succeed;

/// The `liveops` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_liveops");

/// The `v2=` signature of a POST of `body` to `target` (a URL, or a path) at `ts` with `ring`'s
/// key `kid`: it covers the path, as a game server's does.
pub fn sign_post(ring: &Keyring, kid: Option<&str>, ts: i64, target: &str, body: &[u8]) -> String {
    let path =
        reqwest::Url::parse(target).map_or_else(|_| target.to_owned(), |u| u.path().to_owned());
    ring.sign_request(kid, ts, "POST", &path, body)
        .expect("sign")
}

/// A POST of the JSON `body` to `url`, signed now with `ring`'s key `kid` (its primary if
/// `None`) the way a game server signs; the caller adds headers, then sends it.
pub fn signed_post(
    client: &reqwest::Client,
    ring: &Keyring,
    kid: Option<&str>,
    url: impl reqwest::IntoUrl,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let url = url.into_url().expect("url");
    let ts = now();
    let sig = sign_post(ring, kid, ts, url.as_str(), &body);
    let req = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-timestamp", ts.to_string())
        .header("x-signature", sig);
    match kid {
        Some(kid) => req.header("x-key-id", kid),
        None => req,
    }
    .body(body)
}

/// A `liveops serve` command on 127.0.0.1:`port` over `data_dir`, its output discarded: the
/// caller adds the secret, flags and environment it wants, then spawns it.
pub fn serve_command(data_dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The keys the spawned processes seal secrets at rest with (`SECRETS_KEYS_FILE`).
pub const SEALING_KEYS: &str = "t1=sealing-key-material-0123456789abcdef\n";

/// Writes [`SEALING_KEYS`] into `dir` (made if missing) unless there already; the file's path.
/// Written whole under another name, then renamed: processes started earlier may be reading it.
pub fn sealing_keys_in(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("data directory");
    let path = dir.join("secrets-keys");
    if std::fs::read_to_string(&path).is_ok_and(|t| t == SEALING_KEYS) {
        return path;
    }
    let part = dir.join(format!("secrets-keys.{}", std::process::id()));
    std::fs::write(&part, SEALING_KEYS).expect("sealing keys");
    std::fs::rename(&part, &path).expect("sealing keys in place");
    path
}

/// `liveops serve` as a child process: the test secret, secrets sealed at rest, warn logs,
/// then the `extra` flags.
pub fn spawn_serve(data_dir: &Path, port: u16, extra: &[&str]) -> Child {
    serve_command(data_dir, port)
        .args(["--hmac-secret", SECRET, "--log-level", "warn"])
        .arg("--secrets-keys-file")
        .arg(sealing_keys_in(data_dir))
        .args(extra)
        .spawn()
        .expect("spawn liveops")
}

/// One process (`liveops serve --target <target>`) of a split deployment on 127.0.0.1:`port`,
/// over the database `db` and the Redis `redis`, its state under `data/<target>`, warn logs on
/// stderr: the caller adds its bus and settings, then spawns it.
pub fn split_process(data: &Path, target: &str, port: u16, db: &str, redis: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("LIVEOPS_TARGET", target)
        .env("PORT", port.to_string())
        .env("BIND", "127.0.0.1")
        .env("DATA_DIR", data.join(target))
        .env("HMAC_SECRET", SECRET)
        .env("SECRETS_KEYS_FILE", sealing_keys_in(data))
        .env("DB_URL", db)
        .env("REDIS_URL", redis)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// The flag that lifts the per-player rate limit, for tests that send fast on purpose.
pub const NO_RATE_LIMIT: [&str; 2] = ["--rate-limit-max", "100000"];

/// A free TCP port on loopback, handed to one test process only. The port is free when asked
/// but bound later by the server a test starts, and the kernel may hand the same free port to
/// another test process meanwhile (nextest runs each test in its own): a marker file per port,
/// created once, keeps it to the first. A marker older than ten minutes is from an earlier run.
pub fn free_port() -> u16 {
    let dir = std::env::temp_dir().join("liveops-test-ports");
    std::fs::create_dir_all(&dir).expect("port markers");
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let marker = dir.join(port.to_string());
        let stale = std::fs::metadata(&marker)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if stale {
            let _ = std::fs::remove_file(&marker);
        }
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker);
        if created.is_ok() {
            return port;
        }
    }
}

/// A fresh Redis database `db` on the server of `LIVEOPS_TEST_REDIS_URL`, flushed; its URL.
pub fn redis_db(db: u32) -> String {
    let url = std::env::var("LIVEOPS_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "LIVEOPS_TEST_REDIS_URL is not set: start the servers with scripts/services.sh start"
        )
    });
    let rest = url.trim_start_matches("redis://");
    let host = rest.split('/').next().expect("host");
    let (h, p) = host.split_once(':').expect("host:port");
    let ok = Command::new("redis-cli")
        .args(["-h", h, "-p", p, "-n", &db.to_string(), "FLUSHDB"])
        .status()
        .expect("redis-cli")
        .success();
    assert!(ok, "cannot flush redis db {db}");
    format!("redis://{host}/{db}")
}

/// Polls `ready` every 100 ms until it holds; fails the test if that takes longer than `within`.
pub fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
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
