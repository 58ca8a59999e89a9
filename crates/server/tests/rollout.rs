//! A rolling update as the real binary lives it: SIGTERM arrives while clients send a steady
//! stream of events. For `SHUTDOWN_DELAY` the process answers every request (no connection is
//! refused) while `/readyz` says 503, so the load balancer stops sending; then it closes its port,
//! finishes what is in flight (a request still uploading its body gets its 202), drains its
//! consumers and exits cleanly. After a restart every event that got a 202 is counted exactly once.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    eventually, free_port, now, spawn_serve, wait_ready, xp, xp_now, NO_RATE_LIMIT, SECRET,
};
use liveops_core::Keyring;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DELAY: Duration = Duration::from_secs(3);
const PLAYERS: usize = 8;
const SENDERS: usize = 4;

fn start(data_dir: &Path, port: u16, extra: &[&str]) -> Child {
    spawn_serve(data_dir, port, &[&NO_RATE_LIMIT[..], extra].concat())
}

fn signed(ring: &Keyring, player: &str) -> (Vec<u8>, String, String) {
    // Each body unique: the gateway refuses a signed request seen before (a replay).
    let mut event = xp(player, 7);
    event["payload"]["activity"] = format!("quest_{:08x}", rand::random::<u32>()).into();
    let body = serde_json::to_vec(&event).expect("json");
    let ts = now().to_string();
    let sig = ring
        .sign_request(None, ts.parse().expect("ts"), "POST", "/events", &body)
        .expect("sign");
    (body, ts, sig)
}

/// One request as a client saw it.
#[derive(Debug)]
struct Sent {
    at: Instant,
    player: String,
    outcome: Result<u16, String>,
}

/// A client posting events as fast as it is answered until `stop`.
async fn sender(id: usize, base: String, stop: Arc<AtomicBool>, log: Arc<Mutex<Vec<Sent>>>) {
    let ring = Keyring::single(SECRET).expect("key");
    let client = reqwest::Client::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let player = format!("player_roll_{}", (id + i * SENDERS) % PLAYERS);
        i += 1;
        let (body, ts, sig) = signed(&ring, &player);
        let at = Instant::now();
        let outcome = client
            .post(format!("{base}/events"))
            .header("content-type", "application/json")
            .header("x-timestamp", ts)
            .header("x-signature", sig)
            .body(body)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"));
        log.lock().expect("log").push(Sent {
            at,
            player,
            outcome,
        });
    }
}

/// Starts a request whose body is still uploading: headers and half the body now, the rest
/// when `finish` is called.
struct SlowUpload {
    stream: tokio::net::TcpStream,
    rest: Vec<u8>,
}

impl SlowUpload {
    async fn start(port: u16, player: &str) -> Self {
        let ring = Keyring::single(SECRET).expect("key");
        let (body, ts, sig) = signed(&ring, player);
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let head = format!(
            "POST /events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             x-timestamp: {ts}\r\nx-signature: {sig}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let half = body.len() / 2;
        stream.write_all(head.as_bytes()).await.expect("head");
        stream.write_all(&body[..half]).await.expect("half");
        Self {
            stream,
            rest: body[half..].to_vec(),
        }
    }

    /// Sends the rest of the body; the status line of the answer.
    async fn finish(mut self) -> String {
        self.stream.write_all(&self.rest).await.expect("rest");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stream.read_to_end(&mut answer))
            .await;
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_keeps_serving_for_the_delay_then_drains_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let delay = DELAY.as_secs().to_string();
    let mut child = start(dir.path(), port, &["--shutdown-delay", &delay]);
    wait_ready(&base).await;

    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let senders: Vec<_> = (0..SENDERS)
        .map(|id| tokio::spawn(sender(id, base.clone(), stop.clone(), log.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;

    let term = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success());

    // During the delay: readiness is off at once (give the signal a moment to land), every
    // request is still answered.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let probe = reqwest::Client::new();
    let mut readiness = Vec::new();
    let mut slow = None;
    while term.elapsed() < DELAY - Duration::from_millis(300) {
        let r = probe.get(format!("{base}/readyz")).send().await;
        readiness.push((term.elapsed(), r.map(|r| r.status().as_u16()).ok()));
        if slow.is_none() && term.elapsed() > DELAY - Duration::from_millis(900) {
            slow = Some(SlowUpload::start(port, "player_roll_slow").await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The load balancer has stopped sending by now.
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.expect("sender");
    }
    // The port closes when the delay ends; the upload still in flight is answered.
    tokio::time::sleep(DELAY.saturating_sub(term.elapsed()) + Duration::from_millis(500)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the port is closed once the delay is over"
    );
    let slow_status = slow.expect("slow upload started").finish().await;
    assert!(
        slow_status.starts_with("HTTP/1.1 202"),
        "the request in flight when the port closed was answered: {slow_status:?}"
    );
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            term.elapsed() < DELAY + Duration::from_secs(12),
            "did not exit within SHUTDOWN_DELAY + grace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");

    assert!(readiness.len() >= 10, "{readiness:?}");
    for (at, status) in &readiness {
        assert_eq!(
            *status,
            Some(503),
            "readyz at {at:?} after SIGTERM: {readiness:?}"
        );
    }
    let log = std::mem::take(&mut *log.lock().expect("log"));
    let after: Vec<&Sent> = log.iter().filter(|s| s.at >= term).collect();
    assert!(
        after.len() > 20,
        "requests kept coming during the delay ({})",
        after.len()
    );
    for s in &log {
        assert_eq!(
            s.outcome,
            Ok(202),
            "{} at {:?} after SIGTERM",
            s.player,
            s.at.checked_duration_since(term)
        );
    }

    // Restart: every accepted event counted once.
    let mut expected: HashMap<String, u64> = HashMap::new();
    for s in &log {
        *expected.entry(s.player.clone()).or_default() += 7;
    }
    *expected.entry("player_roll_slow".into()).or_default() += 7;
    let mut child = start(dir.path(), port, &[]);
    wait_ready(&base).await;
    for (player, xp) in &expected {
        eventually(Duration::from_secs(30), player, || async {
            let got = xp_now(&probe, &base, player).await.unwrap_or_default();
            assert!(
                got <= *xp,
                "{player}: {got} XP counts an event twice (want {xp})"
            );
            (got == *xp).then_some(())
        })
        .await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
