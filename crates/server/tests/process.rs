//! The real `liveops` binary as a process: crash safety (`kill -9`), SIGTERM, start-up errors, CLI.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    free_port, kill, serve_command, signed_post, spawn_serve, succeed, wait_ready, xp, Client,
    Urls, BIN, NO_RATE_LIMIT, SECRET,
};
use liveops_core::Keyring;
use serde_json::Value;
use tokio::sync::Mutex;

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "could not signal liveops");
}

async fn post(
    client: &reqwest::Client,
    ring: &Keyring,
    base: &str,
    ev: &Value,
    key: &str,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    // Equal events in one second are told apart by their messageId, as a client tells them.
    let mut ev = ev.clone();
    ev["messageId"] = Value::from(key);
    let body = serde_json::to_vec(&ev).expect("json");
    signed_post(client, ring, None, format!("{base}/events"), body)
        .header("idempotency-key", key)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status())
}

/// What the clients know per player: XP of events that got 202, and of at most one event whose
/// answer was lost in the crash (it may or may not have been accepted).
#[derive(Default, Clone, Copy, Debug)]
struct Ledger {
    acked_xp: u64,
    acked_points: u64,
    unknown_xp: u64,
    unknown_points: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_nothing_that_got_202_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_serve(dir.path(), port, &NO_RATE_LIMIT);
    wait_ready(&base).await;

    let ring = Keyring::single(SECRET).expect("key");
    let ledger: Arc<Mutex<HashMap<String, Ledger>>> = Arc::default();
    let players = 16;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for p in 0..players {
        let (ring, base, ledger, stop) = (ring.clone(), base.clone(), ledger.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let player = format!("player_crash_{p}");
            // One event at a time per player, so at most one answer per player is lost in the crash.
            for i in 0..10_000u64 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let (ev, x, pts) = if i % 3 == 0 {
                    let pts = 100 + (i % 5) * 10;
                    (kill(&player, pts), 0, pts)
                } else {
                    let x = 10 + i % 7;
                    (xp(&player, x), x, 0)
                };
                let outcome = post(&client, &ring, &base, &ev, &format!("{player}-{i}")).await;
                let mut l = ledger.lock().await;
                let e = l.entry(player.clone()).or_default();
                match outcome {
                    Ok(s) if s == 202 => {
                        e.acked_xp += x;
                        e.acked_points += pts;
                    }
                    Ok(s) => panic!("unexpected status {s}"),
                    Err(_) => {
                        e.unknown_xp = x;
                        e.unknown_points = pts;
                        break;
                    }
                }
            }
        }));
    }
    // Let the stream run, then crash the process mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("kill -9"); // SIGKILL
    let _ = child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let ledger = ledger.lock().await.clone();
    let total: u64 = ledger.values().map(|l| l.acked_xp + l.acked_points).sum();
    assert!(total > 0, "some events were accepted before the crash");

    // Restart on the same data directory; every 202'd event must show exactly once.
    let mut child = spawn_serve(dir.path(), port, &[]);
    wait_ready(&base).await;
    let game = Client::new(Urls::all(&base), &ring);
    let deadline = Instant::now() + Duration::from_secs(60);
    for (player, l) in &ledger {
        loop {
            let (got_xp, got_score) = game.counted(player).await;
            let xp_ok = got_xp == l.acked_xp || got_xp == l.acked_xp + l.unknown_xp;
            let expected_score = l.acked_xp + l.acked_points;
            let score_ok = got_score == expected_score
                || got_score == expected_score + l.unknown_xp + l.unknown_points;
            if xp_ok && score_ok {
                // The lost answer, if accepted, must be counted in both or neither.
                let xp_extra = got_xp - l.acked_xp;
                let score_extra = got_score - expected_score;
                assert!(xp_extra <= l.unknown_xp && score_extra <= l.unknown_xp + l.unknown_points);
                break;
            }
            assert!(
                got_xp <= l.acked_xp + l.unknown_xp,
                "{player}: xp {got_xp} counts events twice ({l:?})"
            );
            assert!(
                got_score <= expected_score + l.unknown_xp + l.unknown_points,
                "{player}: score {got_score} counts events twice ({l:?})"
            );
            assert!(
                Instant::now() < deadline,
                "{player}: xp {got_xp} score {got_score} never reached {l:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Stable: nothing is applied a second time after catching up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (player, l) in &ledger {
        let (got_xp, _) = game.counted(player).await;
        assert!(got_xp <= l.acked_xp + l.unknown_xp, "{player} recounted");
    }
    sigterm(&child);
    let _ = child.wait();
}

#[tokio::test]
async fn sigterm_drains_and_exits_within_ten_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_serve(dir.path(), port, &[]);
    wait_ready(&base).await;
    let ring = Keyring::single(SECRET).expect("key");
    let client = reqwest::Client::new();
    assert_eq!(
        post(&client, &ring, &base, &kill("player_term", 5), "term-1")
            .await
            .expect("post"),
        202
    );
    let start = Instant::now();
    sigterm(&child);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "did not exit within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_bad_secret_stops_start_up_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["serve", "--env", "prod", "--data-dir"])
        .arg(dir.path())
        .env_remove("HMAC_SECRET")
        .env_remove("HMAC_SECRET_FILE")
        .env_remove("HMAC_KEYS")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("HMAC_SECRET"), "{err}");

    let out = Command::new(BIN)
        .args(["serve", "--env", "prod", "--data-dir"])
        .arg(dir.path())
        .env("HMAC_SECRET", "too-short")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("HMAC_SECRET") && err.contains("32 bytes"),
        "{err}"
    );
    assert!(!err.contains("too-short"), "secrets are never printed");
}

#[tokio::test]
async fn cli_sends_sample_events_with_the_dev_secret_and_verifies_receipts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // Dev mode, no secret: serve generates one in DATA_DIR and `send` finds it there.
    let mut child = serve_command(dir.path(), port)
        .env_remove("HMAC_SECRET")
        .env_remove("HMAC_SECRET_FILE")
        .env_remove("HMAC_KEYS")
        .spawn()
        .expect("spawn");
    wait_ready(&base).await;
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/sample_events");
    // A base URL pasted with its trailing slash still posts to /events.
    let out = Command::new(BIN)
        .args(["send", "--url", &format!("{base}/"), "--data-dir"])
        .arg(dir.path())
        .arg(samples.join("boss_kill.json"))
        .arg(samples.join("progression.json"))
        .arg(samples.join("drop_claimed.json"))
        .env_remove("HMAC_SECRET")
        .output()
        .expect("send");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches(" 202 ").count(), 3, "{text}");

    // A retry under one `--idempotency-key` sends the same body when it passes the `ts` the
    // first run printed: the repeat is answered (208), not refused as another body. (An event
    // not sent above: the same signed bytes within a second would be a repeat anyway.)
    let event = dir.path().join("boss_kill_keyed.json");
    let sample = std::fs::read_to_string(samples.join("boss_kill.json")).expect("sample");
    std::fs::write(&event, sample.replace("player_67890", "player_keyed")).expect("write");
    let send_keyed = |ts: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["send", "--url", &base, "--idempotency-key", "retry-me"])
            .arg("--data-dir")
            .arg(dir.path())
            .arg(&event)
            .env_remove("HMAC_SECRET");
        if let Some(ts) = ts {
            cmd.args(["--ts", ts]);
        }
        cmd.output().expect("send")
    };
    let first = send_keyed(None);
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(out.contains(" 202 "), "{out} {err}");
    let ts = err
        .split("--ts ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the hint names the ts to retry with");
    let retry = send_keyed(Some(ts));
    assert!(
        String::from_utf8_lossy(&retry.stdout).contains(" 208 "),
        "{}",
        String::from_utf8_lossy(&retry.stdout)
    );
    assert!(retry.stderr.is_empty(), "no hint once --ts is given");

    // Claim the drop reward and check its receipt with the CLI.
    let client = reqwest::Client::new();
    let secret = std::fs::read_to_string(dir.path().join("dev-hmac-secret")).expect("dev secret");
    let ring = Keyring::single(secret.trim()).expect("ring");
    let game = Client::new(Urls::all(&base), &ring);
    let reward = common::eventually(Duration::from_secs(15), "drop reward", || {
        game.pending_reward("player_abcde")
    })
    .await;
    let body =
        serde_json::to_vec(&serde_json::json!({"playerId": "player_abcde", "rewardId": reward}))
            .expect("json");
    let receipt: Value = signed_post(&client, &ring, None, format!("{base}/rewards/claim"), body)
        .send()
        .await
        .expect("claim")
        .json()
        .await
        .expect("json");
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, serde_json::to_vec(&receipt).expect("json")).expect("write");
    let out = succeed(
        Command::new(BIN)
            .args(["verify-receipt", "--data-dir"])
            .arg(dir.path())
            .arg(&file)
            .env_remove("HMAC_SECRET"),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"valid\":true"));
    let mut forged = receipt.clone();
    forged["item"] = Value::from("crown");
    std::fs::write(&file, serde_json::to_vec(&forged).expect("json")).expect("write");
    let out = Command::new(BIN)
        .args(["verify-receipt", "--data-dir"])
        .arg(dir.path())
        .arg(&file)
        .env_remove("HMAC_SECRET")
        .output()
        .expect("verify");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"valid\":false"));

    succeed(
        Command::new(BIN)
            .args(["migrate", "--data-dir"])
            .arg(dir.path())
            .arg("--log-level")
            .arg("error")
            .env_remove("HMAC_SECRET"),
    );
    sigterm(&child);
    let _ = child.wait();
}

/// A bus file in `dir` whose progression group on `events.accepted` holds one dead letter per
/// payload (each delivered once and never acked, with one delivery allowed).
async fn dead_lettered(dir: &Path, payloads: &[String]) {
    use liveops_core::ports::BusOptions;
    use liveops_core::ports::{topics, Message};
    use liveops_core::{Bus, BusExt};
    use liveops_sqlite_bus::SqliteBus;

    let opts = BusOptions {
        visibility_timeout: Duration::from_millis(200),
        max_deliveries: 1,
    };
    let bus = SqliteBus::open(dir.join("bus.db"), opts)
        .await
        .expect("bus");
    bus.ensure_group(topics::ACCEPTED, "progression")
        .await
        .expect("group");
    let messages = payloads.iter().enumerate().map(|(i, p)| Message {
        id: format!("poison-{i}"),
        key: format!("player_poison_{i}"),
        payload: bytes::Bytes::from(p.clone()),
    });
    bus.publish(topics::ACCEPTED, messages.collect())
        .await
        .expect("publish");
    // Delivered once and never acked: with max_deliveries 1 they are dead-lettered on the next
    // poll.
    let poll = || async {
        let wait = Duration::from_millis(100);
        let polled = bus.poll(topics::ACCEPTED, "progression", "t", 10, wait);
        polled.await.expect("poll").len()
    };
    assert_eq!(poll().await, payloads.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(poll().await, 0);
}

/// `liveops dead-letters` with `args` on the bus in `dir`.
fn dead_letters_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("dead-letters")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(["--hmac-secret", SECRET, "--log-level", "error"])
        .output()
        .expect("run")
}

#[tokio::test]
async fn dead_letters_can_be_listed_and_replayed_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let received = chrono::Utc::now().timestamp_millis();
    let poison = format!(r#"{{"poison":true,"receivedAt":{received}}}"#);
    dead_lettered(dir.path(), &[poison]).await;

    let run = |args: &[&str]| dead_letters_cli(dir.path(), args);
    let out = run(&["--group", "progression"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains("player_poison_0") && listed.contains("\"poison\":true"),
        "{listed}"
    );
    // A replay takes them all: a limit with it is refused, not ignored.
    let out = run(&["--group", "progression", "--replay", "--limit", "1"]);
    assert!(!out.status.success(), "--replay with --limit");
    let out = run(&["--group", "progression", "--replay"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"replayed\":1"));
    assert!(
        run(&["--group", "progression"]).stdout.is_empty(),
        "nothing left after the replay"
    );
    assert!(
        !run(&["--group", "nobody"]).status.success(),
        "unknown groups are refused"
    );
    // Pointed at a directory without a bus: refused, and no empty bus is left there.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["dead-letters", "--group", "progression", "--data-dir"])
        .arg(elsewhere.path())
        .args(["--hmac-secret", SECRET, "--log-level", "error"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no bus file"),
        "{err}"
    );
    assert!(!elsewhere.path().join("bus.db").exists());
}

/// A replay of dead letters received more than `EVENT_RETENTION` ago, or of unknown age, is
/// refused with what and how old, and nothing is replayed; `--force` replays them all.
#[tokio::test]
async fn a_replay_of_dead_letters_past_retention_needs_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    let received = |ms: i64| format!(r#"{{"poison":true,"receivedAt":{ms}}}"#);
    let payloads = [
        received(now - 9 * day),
        received(now - day),
        "{}".to_owned(),
    ];
    dead_lettered(dir.path(), &payloads).await;

    let replay = ["--group", "progression", "--replay"];
    let out = dead_letters_cli(dir.path(), &replay);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "replayed past retention: {err}");
    assert!(
        err.contains("1 of 3 received more than EVENT_RETENTION ago (the oldest 9d 0h ago)")
            && err.contains("1 of 3 whose age cannot be told")
            && err.contains("EVENT_RETENTION (7d)")
            && err.contains("--force"),
        "{err}"
    );
    let listed = dead_letters_cli(dir.path(), &["--group", "progression"]).stdout;
    assert_eq!(String::from_utf8_lossy(&listed).lines().count(), 3);
    // Within a longer retention only the one of unknown age is in the way.
    let out = dead_letters_cli(
        dir.path(),
        &[&replay[..], &["--event-retention", "10d"]].concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !err.contains("received more than"),
        "{err}"
    );
    // --force only goes with --replay.
    assert!(
        !dead_letters_cli(dir.path(), &["--group", "progression", "--force"])
            .status
            .success()
    );
    let out = dead_letters_cli(dir.path(), &[&replay[..], &["--force"]].concat());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"replayed\":3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `operators create` and `operators set-password` on the embedded store, beside a running
/// server: the new password signs in, the old one no longer does, and the sessions opened with
/// it are closed; an unknown email and a short password are refused with their exit codes.
#[tokio::test]
async fn an_operator_s_password_is_set_from_the_cli() {
    use std::io::Write as _;
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("tempdir");
    let run_in = |data: &std::path::Path, args: &[&str], stdin: &str| {
        let mut child = Command::new(BIN)
            .arg("operators")
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .args(["--hmac-secret", SECRET, "--log-level", "error"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        child.wait_with_output().expect("wait")
    };
    let run = |args: &[&str], stdin: &str| run_in(dir.path(), args, stdin);
    let email = "lead@example.com";
    let made = run(
        &["create", "--email", email, "--role", "admin"],
        "first password 1\n",
    );
    assert!(made.status.success(), "{made:?}");
    let said = String::from_utf8_lossy(&made.stderr);
    assert!(said.contains("no repository was at"), "{said}");
    // Where there is no repository (another DATA_DIR), no password is set and none is made.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let set = ["set-password", "--email", email];
    let refused = run_in(elsewhere.path(), &set, "second password 2\n");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("no repository at"), "{said}");
    assert!(!elsewhere.path().join("liveops.db").exists());
    let port = free_port();
    let mut child = spawn_serve(dir.path(), port, &[]);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let http = reqwest::Client::new();
    let login = |password: &'static str| {
        let req = http
            .post(format!("{base}/auth/login"))
            .json(&serde_json::json!({"email": email, "password": password}));
        async move {
            let r = req.send().await.expect("login");
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("json");
            (status, body["token"].as_str().map(str::to_owned))
        }
    };
    let me = |token: String| {
        let req = http.get(format!("{base}/auth/me")).bearer_auth(token);
        async move { req.send().await.expect("me").status().as_u16() }
    };
    let (status, token) = login("first password 1").await;
    assert_eq!(status, 200);
    let token = token.expect("a token");
    assert_eq!(me(token.clone()).await, 200);

    let set = run(&["set-password", "--email", email], "second password 2\n");
    assert!(set.status.success(), "{set:?}");
    let shown: Value = serde_json::from_slice(&set.stdout).expect("the operator, as JSON");
    assert_eq!(shown["email"], email);
    assert_eq!(me(token).await, 401, "the old session is closed");
    assert_eq!(login("first password 1").await.0, 401);
    assert_eq!(login("second password 2").await.0, 200);

    let unknown = run(
        &["set-password", "--email", "nobody@example.com"],
        "third password 3\n",
    );
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    let short = run(&["set-password", "--email", email], "short\n");
    assert_eq!(short.status.code(), Some(2), "{short:?}");
    assert_eq!(login("second password 2").await.0, 200, "unchanged");
    sigterm(&child);
    let _ = child.wait();
}
