//! Backups of the embedded files, as an operator lives them: a backup taken while players play,
//! a crash, a restore into a new directory, and a server started from it that has everything
//! acknowledged before the backup, once, and nothing sent after it. An event sent while a backup
//! opens its snapshots, in both copies or in neither. Then the scheduled backup, and a restore
//! that refuses what it must refuse, a running process's files among them.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    free_port, now, signed_post, spawn_serve, wait_ready, xp, xp_now, BIN, NO_RATE_LIMIT, SECRET,
};
use liveops_core::Keyring;
use serde_json::Value;
use tokio::sync::Mutex;

fn start(data_dir: &Path, port: u16, extra: &[&str]) -> Child {
    spawn_serve(data_dir, port, &[&NO_RATE_LIMIT[..], extra].concat())
}

/// Runs a `liveops` command to its end: (success, stdout, stderr).
fn liveops(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--hmac-secret", SECRET, "--log-level", "warn"])
        .output()
        .expect("run liveops");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `liveops backup` of `data` into `backups`, with `extra` flags.
fn backup(data: &Path, backups: &Path, extra: &[&str]) -> (bool, String, String) {
    let args = ["backup", "--data-dir", path_str(data)];
    liveops(&[&args[..], &["--backup-dir", path_str(backups)], extra].concat())
}

/// `liveops restore` of the set at `set` into `data`.
fn restore(set: &Path, data: &Path) -> (bool, String, String) {
    let args = ["restore", "--from", path_str(set)];
    liveops(&[&args[..], &["--data-dir", path_str(data)]].concat())
}

/// `liveops migrate`, then `liveops backup` into the default `BACKUP_DIR`, on `data`: the
/// backup's report and its set.
fn migrated_and_backed_up(data: &Path) -> (Value, PathBuf) {
    let (ok, _, err) = liveops(&["migrate", "--data-dir", path_str(data)]);
    assert!(ok, "{err}");
    let (ok, out, err) = liveops(&["backup", "--data-dir", path_str(data)]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(out.trim()).expect("report");
    let set = PathBuf::from(report["path"].as_str().expect("path"));
    (report, set)
}

/// [`start`] on a free port; the server and its base URL once it is ready.
async fn serve_ready(data_dir: &Path, extra: &[&str]) -> (Child, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = start(data_dir, port, extra);
    wait_ready(&base).await;
    (server, base)
}

/// One event a client sent: its XP, when it was sent and when (if ever) it got its 202.
#[derive(Clone, Copy, Debug)]
struct Sent {
    xp: u64,
    sent: Instant,
    acked: Option<Instant>,
}

type Ledger = Arc<Mutex<HashMap<String, Vec<Sent>>>>;

/// One client per player, one event at a time, until `stop`.
fn play(
    base: &str,
    players: &[String],
    ledger: &Ledger,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ring = Keyring::single(SECRET).expect("key");
    players
        .iter()
        .map(|player| {
            let (ring, base, ledger, stop, player) = (
                ring.clone(),
                base.to_owned(),
                ledger.clone(),
                stop.clone(),
                player.clone(),
            );
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let gain = 10 + i % 7;
                    // Equal events in one second are told apart by their messageId, as a client
                    // tells them (the same signed body is one request, whatever its key).
                    let mut event = xp(&player, gain);
                    event["messageId"] = format!("{player}-{i}").into();
                    let body = serde_json::to_vec(&event).expect("json");
                    let sent = Instant::now();
                    let answer = signed_post(&client, &ring, None, format!("{base}/events"), body)
                        .header("idempotency-key", format!("{player}-{i}"))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    let acked = match answer {
                        Ok(r) if r.status() == 202 => Some(Instant::now()),
                        Ok(r) => panic!("{player}: unexpected status {}", r.status()),
                        Err(_) => None, // the crash: this answer is lost
                    };
                    ledger
                        .lock()
                        .await
                        .entry(player.clone())
                        .or_default()
                        .push(Sent {
                            xp: gain,
                            sent,
                            acked,
                        });
                    if acked.is_none() {
                        break;
                    }
                    i += 1;
                }
            })
        })
        .collect()
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.expect("get");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_traffic_restores_what_was_acknowledged_before_it_once_and_nothing_sent_after_it(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let (mut server, base) = serve_ready(&data, &["--backup-every", "0"]).await;

    // Players play; a backup is taken while they do; they play on.
    let ledger: Ledger = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let early: Vec<String> = (0..12).map(|i| format!("player_early_{i}")).collect();
    let mut clients = play(&base, &early, &ledger, &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let backup_started = Instant::now();
    let (ok, out, err) = backup(&data, &backups, &[]);
    let backup_ended = Instant::now();
    assert!(ok, "liveops backup failed: {err}");
    let report: Value = serde_json::from_str(out.trim()).expect("backup report");
    let roles = common::strings_of(&report["files"], "role");
    assert_eq!(
        roles,
        ["bus", "repository"],
        "the set lists the bus, then the repository: {report}"
    );
    let set = PathBuf::from(report["path"].as_str().expect("set path"));

    // Players who only start after the backup, and more play from everyone; then a crash.
    let late: Vec<String> = (0..4).map(|i| format!("player_late_{i}")).collect();
    clients.extend(play(&base, &late, &ledger, &stop));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.kill().expect("kill -9");
    let _ = server.wait();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let ledger = ledger.lock().await.clone();
    let before = ledger
        .values()
        .flatten()
        .filter(|e| e.acked.is_some_and(|a| a < backup_started))
        .count();
    let after = ledger
        .values()
        .flatten()
        .filter(|e| e.sent > backup_ended && e.acked.is_some())
        .count();
    eprintln!("{before} events acknowledged before the backup, {after} after it");
    assert!(
        before > 100 && after > 100,
        "enough traffic on both sides of the backup"
    );

    // Restore into a new directory (an existing one is refused), start from it.
    let restored = dir.path().join("restored");
    let (ok, _, err) = restore(&set, &data);
    assert!(
        !ok && err.contains("exists already"),
        "restore over live data must be refused: {err}"
    );
    let (ok, out, err) = restore(&set, &restored);
    assert!(ok, "liveops restore failed: {err}");
    assert!(
        out.contains(&report["name"].as_str().expect("name").to_owned()),
        "{out}"
    );
    let (mut server, base) = serve_ready(&restored, &["--backup-every", "0"]).await;

    // Per player, the restored XP and score are the sum of one prefix of the player's events
    // (every event is an XP event, scored as its XP): at least every event acknowledged before the
    // backup started, at most those sent before it ended (no event twice, none from after the
    // backup), and the same prefix for both (no event in one and not the other).
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut checked = 0;
    for (player, events) in &ledger {
        let prefix_sums: Vec<u64> = std::iter::once(0)
            .chain(events.iter().scan(0, |sum, e| {
                *sum += e.xp;
                Some(*sum)
            }))
            .collect();
        let must = events
            .iter()
            .take_while(|e| e.acked.is_some_and(|a| a < backup_started))
            .count();
        let may = events.iter().take_while(|e| e.sent < backup_ended).count();
        let allowed = &prefix_sums[must..=may];
        loop {
            let (_, progress) = get(&client, &format!("{base}/players/{player}/progress")).await;
            let (status, rank) = get(
                &client,
                &format!("{base}/leaderboard/players/{player}?window=daily"),
            )
            .await;
            let got_xp = progress["xp"].as_u64().unwrap_or_default();
            let got_score = if status == 200 {
                rank["score"].as_u64().unwrap_or_default()
            } else {
                0
            };
            assert!(
                got_xp <= allowed[allowed.len() - 1] && got_score <= allowed[allowed.len() - 1],
                "{player}: xp {got_xp} / score {got_score} counts events twice or from after the backup (allowed {allowed:?})"
            );
            if allowed.contains(&got_xp) && got_score == got_xp {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{player}: xp {got_xp} / score {got_score} never agreed on a prefix holding what was acknowledged before the backup ({allowed:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if player.starts_with("player_late_") {
            assert_eq!(must, 0);
        } else {
            assert!(
                must > 0,
                "{player} had events acknowledged before the backup"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, early.len() + late.len());
    // Players who started after the backup are not there at all.
    for player in &late {
        let (status, _) = get(
            &client,
            &format!("{base}/leaderboard/players/{player}?window=daily"),
        )
        .await;
        let (_, progress) = get(&client, &format!("{base}/players/{player}/progress")).await;
        assert_eq!(
            (status, progress["xp"].as_u64()),
            (404, Some(0)),
            "{player}"
        );
    }
    server.kill().expect("stop");
    let _ = server.wait();
}

/// The settings `liveops backup --data-dir data` runs with.
fn settings_of(data: &Path) -> liveops::Settings {
    let table = liveops::Table::standard();
    let args = ["--data-dir", path_str(data), "--hmac-secret", SECRET];
    let (raw, matches) = liveops::config::parse_args(&table, args).expect("args");
    liveops::Settings::resolve(&table, raw, matches).expect("settings")
}

/// What [`late_repository_snapshot`] does once: tells the test the bus's snapshot is open (the
/// first sender), then waits at most 20 s for it to say go on (the second).
type Between = (
    tokio::sync::mpsc::UnboundedSender<()>,
    std::sync::mpsc::Receiver<()>,
);

static BETWEEN: std::sync::Mutex<Option<Between>> = std::sync::Mutex::new(None);

/// The repository's snapshot, opened only once the test has done what it does [`BETWEEN`] the
/// bus's snapshot and the repository's.
fn late_repository_snapshot(
    path: &Path,
) -> liveops_core::PortResult<liveops_sqlite_file::Snapshot> {
    let between = BETWEEN.lock().expect("hook").take();
    if let Some((opened, go_on)) = between {
        let _ = opened.send(());
        let _ = go_on.recv_timeout(Duration::from_secs(20));
    }
    liveops_sql::SqliteRepository::file_snapshot(path)
}

/// Sends one XP event for `player`; the answer's status.
async fn send_xp(base: String, player: &'static str, gain: u64, id: &'static str) -> u16 {
    let ring = Keyring::single(SECRET).expect("key");
    let mut event = xp(player, gain);
    event["messageId"] = id.into();
    let body = serde_json::to_vec(&event).expect("json");
    let client = reqwest::Client::new();
    let answer = signed_post(&client, &ring, None, format!("{base}/events"), body)
        .send()
        .await
        .expect("post");
    answer.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_sent_while_a_backup_opens_its_snapshots_is_in_both_copies_or_in_neither() {
    const PLAYER: &str = "player_instant";
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    // Progression applies what fairness accepts; the leaderboard's group only queues it.
    let partial = [
        "--backup-every",
        "0",
        "--target",
        "gateway,fairness,progression",
    ];
    let (mut server, base) = serve_ready(&data, &partial).await;
    let client = reqwest::Client::new();
    assert_eq!(send_xp(base.clone(), PLAYER, 100, "before").await, 202);
    common::eventually(
        Duration::from_secs(30),
        "the first event applied",
        || async { (xp_now(&client, &base, PLAYER).await == Some(100)).then_some(()) },
    )
    .await;

    // A backup (from this process, as `liveops backup` takes one) that stops between its bus
    // snapshot and its repository snapshot while an event is sent and progression gets 3 s to
    // apply it.
    let mut files = liveops::wiring::backup::local_files(&settings_of(&data));
    for f in files.iter_mut().filter(|f| f.role == "repository") {
        f.snapshot = late_repository_snapshot;
    }
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let (go_on, go_on_rx) = std::sync::mpsc::channel();
    *BETWEEN.lock().expect("hook") = Some((opened_tx, go_on_rx));
    let backups_dir = backups.clone();
    let backup = tokio::spawn(async move {
        liveops::backup::Backups::of(files, backups_dir, 8)
            .run_once()
            .await
    });
    tokio::time::timeout(Duration::from_secs(30), opened.recv())
        .await
        .expect("the backup reached its repository snapshot");
    let during = tokio::spawn(send_xp(base.clone(), PLAYER, 7, "during"));
    let mut applied_between = false;
    let until = Instant::now() + Duration::from_secs(3);
    while !applied_between && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        applied_between = xp_now(&client, &base, PLAYER).await == Some(107);
    }
    go_on.send(()).expect("go on");
    let report = backup.await.expect("backup task").expect("backup");
    assert_eq!(
        during.await.expect("send"),
        202,
        "accepted once the bus was free"
    );
    common::eventually(
        Duration::from_secs(30),
        "the second event applied",
        || async { (xp_now(&client, &base, PLAYER).await == Some(107)).then_some(()) },
    )
    .await;
    server.kill().expect("stop");
    let _ = server.wait();

    // Restored and served whole, the leaderboard reads its group's backlog from the restored bus:
    // XP and score agree, and hold the first event only (the second came after the backup).
    let restored = dir.path().join("restored");
    let (ok, _, err) = restore(&report.path, &restored);
    assert!(ok, "{err}");
    let (mut server, base) = serve_ready(&restored, &["--backup-every", "0"]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got_xp = xp_now(&client, &base, PLAYER).await.unwrap_or_default();
        let (status, rank) = get(
            &client,
            &format!("{base}/leaderboard/players/{PLAYER}?window=daily"),
        )
        .await;
        let got_score = rank["score"].as_u64().filter(|_| status == 200);
        if got_score == Some(got_xp) {
            assert_eq!(got_xp, 100, "the event sent during the backup is after it");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restored xp {got_xp} and score {got_score:?} never agreed (progression applied the \
             event sent between the snapshots before the repository's: {applied_between})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill().expect("stop");
    let _ = server.wait();
}

/// Runs `liveops serve` on `data` with `extra` flags expecting it to refuse at once: its stderr.
fn serve_refused(data: &Path, extra: &[&str]) -> String {
    let mut child = common::serve_command(data, free_port())
        .args(["--hmac-secret", SECRET, "--log-level", "warn"])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn liveops");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("serve started when it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    assert!(!status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_restore_is_refused_while_a_process_has_the_files_open_and_nothing_opens_them_during_one()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (report, set) = migrated_and_backed_up(&data);

    // A server runs; its files moved aside under it (what the restore checks for is gone): the
    // restore is still refused, with one line that says why.
    let (mut server, _) = serve_ready(&data, &["--backup-every", "0"]).await;
    let aside = dir.path().join("aside");
    std::fs::create_dir(&aside).expect("mkdir");
    let move_aside = || {
        for db in ["liveops.db", "bus.db"] {
            for f in [db.to_owned(), format!("{db}-wal"), format!("{db}-shm")] {
                if data.join(&f).exists() {
                    std::fs::rename(data.join(&f), aside.join(&f)).expect("move aside");
                }
            }
        }
    };
    move_aside();
    let (ok, _, err) = restore(&set, &data);
    assert!(!ok, "a restore under a running server must be refused");
    assert!(
        err.contains("is in use by a running liveops process") && err.contains("stop it first"),
        "{err}"
    );
    assert_eq!(
        err.trim()
            .lines()
            .last()
            .map(|l| l.starts_with("liveops: DATA_DIR")),
        Some(true),
        "{err}"
    );
    server.kill().expect("stop");
    let _ = server.wait();
    // What the server may have created again before it stopped goes aside too.
    move_aside();

    // While a restore holds DATA_DIR, nothing opens the files: serve and backup are refused.
    let restoring = liveops::data_lock::DataLock::at(&data, true).expect("the restore's lock");
    let err = serve_refused(&data, &[]);
    assert!(err.contains("is being restored"), "{err}");
    let (ok, _, err) = liveops(&["backup", "--data-dir", path_str(&data)]);
    assert!(!ok && err.contains("is being restored"), "{err}");
    drop(restoring);

    // Stopped: the restore goes through.
    let (ok, out, err) = restore(&set, &data);
    assert!(ok, "{err}");
    assert!(
        out.contains(report["name"].as_str().expect("name")),
        "{out}"
    );
    assert!(data.join("liveops.db").is_file() && data.join("bus.db").is_file());
}

async fn metric(client: &reqwest::Client, base: &str, name: &str) -> Option<f64> {
    let answer = client.get(format!("{base}/metrics")).send().await.ok()?;
    let text = answer.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn serve_backs_up_on_schedule_keeps_the_newest_sets_and_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let schedule = ["--backup-every", "10s", "--backup-keep", "1"];
    let (mut server, base) = serve_ready(
        &data,
        &[&schedule[..], &["--backup-dir", path_str(&backups)]].concat(),
    )
    .await;
    let client = reqwest::Client::new();
    assert_eq!(
        metric(&client, &base, "backup_last_success_timestamp_seconds").await,
        None
    );
    assert_eq!(
        metric(
            &client,
            &base,
            "backup_failures_total{target=\"directory\"}"
        )
        .await,
        Some(0.0)
    );

    // Two scheduled backups, ten seconds apart.
    let started = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "backups did not run: {seen:?}"
        );
        if let Some(t) = metric(&client, &base, "backup_last_success_timestamp_seconds").await {
            if seen.last() != Some(&t) {
                seen.push(t);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Ten seconds from one start to the next, and the metric is when the newest set began.
    assert!((seen[1] - seen[0] - 10.0).abs() < 1.0, "{seen:?}");
    assert!((now() as f64 - seen[1]).abs() < 5.0, "{seen:?}");
    assert!(metric(&client, &base, "backup_duration_seconds")
        .await
        .is_some_and(|d| d > 0.0));
    assert!(metric(&client, &base, "backup_size_bytes")
        .await
        .is_some_and(|b| b > 0.0));

    // Only the newest set is kept, and it restores.
    let sets: Vec<PathBuf> = std::fs::read_dir(&backups)
        .expect("backup dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    assert_eq!(sets.len(), 1, "{sets:?}");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(sets[0].join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    let created = chrono::DateTime::parse_from_rfc3339(manifest["createdAt"].as_str().expect("at"))
        .expect("createdAt");
    let latest = seen.last().copied().unwrap_or_default();
    let kept = sets[0]
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let shown = metric(&client, &base, "backup_last_success_timestamp_seconds").await;
    if shown == Some(latest) {
        assert!(
            (latest - created.timestamp_millis() as f64 / 1000.0).abs() < 0.0005,
            "{latest} is not when {kept} began ({created})"
        );
    }
    let restored = dir.path().join("restored");
    let (ok, _, err) = restore(&sets[0], &restored);
    assert!(ok, "{err}");
    assert!(restored.join("bus.db").is_file() && restored.join("liveops.db").is_file());
    server.kill().expect("stop");
    let _ = server.wait();
}

#[test]
fn restore_refuses_damaged_sets_and_backup_refuses_nothing_to_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let (ok, _, err) = liveops(&["migrate", "--data-dir", path_str(&data)]);
    assert!(ok, "{err}");
    let (ok, out, err) = backup(&data, &backups, &[]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(out.trim()).expect("report");
    let set = PathBuf::from(report["path"].as_str().expect("path"));

    // A byte changed in a copy: the manifest's checksum catches it, nothing is restored.
    let bus = set.join("bus.db");
    let mut bytes = std::fs::read(&bus).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&bus, bytes).expect("write");
    let target = dir.path().join("restored");
    let (ok, _, err) = restore(&set, &target);
    assert!(!ok && err.contains("does not match its manifest"), "{err}");
    assert!(!target.join("bus.db").exists() && !target.join("liveops.db").exists());

    // A directory that is not a set.
    let (ok, _, err) = restore(&data, &dir.path().join("r2"));
    assert!(!ok && err.contains("not a backup set"), "{err}");

    // A configuration with nothing on local disk has nothing to back up.
    let (ok, _, err) = liveops(&[
        "backup",
        "--data-dir",
        path_str(&data),
        "--bus-kind",
        "inmem",
        "--db-url",
        "sqlite://:memory:",
    ]);
    assert!(!ok && err.contains("nothing to back up"), "{err}");
}

/// A set taken more than `EVENT_RETENTION` ago is refused, saying how old and why, with nothing
/// placed: its processed event ids would all go at the first purge while its bus may still hold
/// events they applied. `--force` restores it.
#[test]
fn a_restore_of_a_set_older_than_event_retention_needs_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, set) = migrated_and_backed_up(&dir.path().join("data"));
    let path = set.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json");
    let taken = chrono::Utc::now() - chrono::Duration::hours(8 * 24 + 5);
    manifest["createdAt"] = taken.to_rfc3339().into();
    std::fs::write(&path, manifest.to_string()).expect("write manifest");

    let target = dir.path().join("restored");
    let (ok, _, err) = restore(&set, &target);
    assert!(!ok, "an old set was restored");
    assert!(
        err.contains("was taken 8d 5h ago, more than EVENT_RETENTION (7d 0h)")
            && err.contains("applied a second time")
            && err.contains("--force"),
        "{err}"
    );
    assert!(!target.join("bus.db").exists() && !target.join("liveops.db").exists());
    let (ok, _, err) = liveops(&[
        "restore",
        "--from",
        path_str(&set),
        "--data-dir",
        path_str(&target),
        "--force",
    ]);
    assert!(ok, "{err}");
    assert!(target.join("bus.db").is_file() && target.join("liveops.db").is_file());
}

/// Sets `role`'s SHA-256 in the manifest of `set` to that of its file as it is now.
fn reseal(set: &Path, role: &str) {
    let path = set.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json");
    for e in manifest["files"].as_array_mut().expect("files") {
        if e["role"] == role {
            let file = set.join(e["file"].as_str().expect("file"));
            e["sha256"] = liveops::backup::set::sha256_file(&file)
                .expect("sha")
                .into();
        }
    }
    std::fs::write(&path, manifest.to_string()).expect("write manifest");
}

#[test]
fn a_restore_goes_into_the_directory_holding_its_sets_and_places_nothing_unless_all_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The default place for sets: DATA_DIR/backups, on the same volume as the live files.
    let (report, set) = migrated_and_backed_up(&data);
    assert!(set.starts_with(data.join("backups")), "{set:?}");

    // The live files are there: refused. Moved aside, a stale -wal left behind: refused too.
    let (ok, _, err) = restore(&set, &data);
    assert!(!ok && err.contains("exists already"), "{err}");
    let aside = data.join("before-restore");
    std::fs::create_dir(&aside).expect("mkdir");
    for f in ["liveops.db", "bus.db"] {
        std::fs::rename(data.join(f), aside.join(f)).expect("move aside");
    }
    std::fs::write(data.join("liveops.db-wal"), b"stale").expect("wal");
    let (ok, _, err) = restore(&set, &data);
    assert!(!ok && err.contains("liveops.db-wal"), "{err}");
    std::fs::remove_file(data.join("liveops.db-wal")).expect("rm wal");

    // A set whose repository is not one this build can open (the bus file in its place, its
    // checksum made to match): the bus passes every check, yet nothing is placed.
    let bad = dir.path().join("bad-set");
    std::fs::create_dir(&bad).expect("mkdir");
    for f in ["manifest.json", "bus.db"] {
        std::fs::copy(set.join(f), bad.join(f)).expect("copy");
    }
    std::fs::copy(set.join("bus.db"), bad.join("repository.db")).expect("copy");
    reseal(&bad, "repository");
    let (ok, _, err) = restore(&bad, &data);
    assert!(
        !ok && err.contains("the repository copy failed its check"),
        "{err}"
    );
    let left: Vec<String> = std::fs::read_dir(&data)
        .expect("data")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(
        left,
        ["backups", "before-restore", "liveops.lock"],
        "placed or staged files left"
    );

    // The good set, from beside the live files, into their place.
    let (ok, out, err) = restore(&set, &data);
    assert!(ok, "{err}");
    assert!(
        out.contains(report["name"].as_str().expect("name")),
        "{out}"
    );
    // In the set each file is named by what it holds.
    for (live, in_set) in [("liveops.db", "repository.db"), ("bus.db", "bus.db")] {
        assert_eq!(
            liveops::backup::set::sha256_file(&data.join(live)).expect("sha"),
            liveops::backup::set::sha256_file(&set.join(in_set)).expect("sha"),
            "{live}"
        );
    }
}

#[cfg(feature = "azure")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_goes_to_azure_blob_storage_and_restores_from_there_in_a_new_place() {
    use liveops_core::ports::Archive;
    use liveops_testkit::azurite::{Azurite, KEY};

    let azurite = Azurite::start();
    let container = format!("{}/liveops-backups/region-a", azurite.account_url);
    let archive = liveops_azure_blob::BlobContainer::new(&container, Some(KEY)).expect("container");
    archive.create_container().await.expect("create container");

    // A server with one player's progress.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut server, base) = serve_ready(&data, &["--backup-every", "0"]).await;
    let app = common::Urls::all(&base);
    let ring = Keyring::single(SECRET).expect("key");
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&xp("player_archived", 420)).expect("json");
    let r = signed_post(
        &client,
        &ring,
        None,
        format!("{}/events", app.gateway),
        body,
    )
    .send()
    .await
    .expect("post");
    assert_eq!(r.status(), 202);
    common::eventually(Duration::from_secs(30), "progress applied", || async {
        let (_, p) = get(&client, &format!("{base}/players/player_archived/progress")).await;
        (p["xp"] == 420).then_some(())
    })
    .await;

    // Backed up to the directory and to the container.
    let backups = dir.path().join("backups");
    let azure = [
        "--backup-azure-url",
        container.as_str(),
        "--backup-azure-key",
        KEY,
    ];
    let (ok, out, err) = backup(&data, &backups, &azure);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(out.trim()).expect("report");
    let name = report["name"].as_str().expect("name").to_owned();
    assert!(
        report["archived"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!("region-a/{name}/"))),
        "{report}"
    );
    assert_eq!(
        archive.list(&name).await.expect("list"),
        [
            format!("{name}/bus.db"),
            format!("{name}/manifest.json"),
            format!("{name}/repository.db")
        ]
    );
    server.kill().expect("stop");
    let _ = server.wait();

    // The machine is gone: restore the newest set from the container elsewhere.
    let latest_into = |data: &Path| {
        let restore = ["restore", "--from-archive", "latest", "--data-dir"];
        liveops(&[&restore[..], &[path_str(data)], &azure].concat())
    };
    let elsewhere = dir.path().join("elsewhere");
    let (ok, out, err) = latest_into(&elsewhere);
    assert!(ok, "{err}");
    assert!(out.contains(&name), "{out}");
    let (mut server, base) = serve_ready(&elsewhere, &["--backup-every", "0"]).await;
    let (_, p) = get(&client, &format!("{base}/players/player_archived/progress")).await;
    assert_eq!(p["xp"], 420, "{p}");
    server.kill().expect("stop");
    let _ = server.wait();

    // A pre-upgrade set goes to the container too, and `latest` never takes one.
    let upgraded = dir.path().join("upgraded");
    repository_at(&upgraded, RELEASE_BEFORE).await;
    let mut args = vec!["migrate", "--data-dir", path_str(&upgraded)];
    args.extend(azure);
    let (ok, _, err) = liveops(&args);
    assert!(ok, "{err}");
    let pre = sets_named(&upgraded.join("backups"), "pre-upgrade-");
    assert_eq!(pre.len(), 1, "{pre:?}");
    assert_eq!(
        archive.list(&pre[0]).await.expect("list"),
        [
            format!("{}/manifest.json", pre[0]),
            format!("{}/repository.db", pre[0])
        ]
    );
    let (ok, out, err) = latest_into(&dir.path().join("again"));
    assert!(ok && out.contains(&name), "{out} {err}");

    // A wrong key: the local set is made, the upload fails and says why.
    let wrong_key = [
        "--backup-azure-url",
        container.as_str(),
        "--backup-azure-key",
        "d3Jvbmcga2V5",
    ];
    let (ok, _, err) = backup(&data, &backups, &wrong_key);
    assert!(!ok && err.contains("403") && err.contains("is in"), "{err}");
    assert!(!err.contains(KEY));
}

/// The repository file at `data/liveops.db` as the release whose newest migration is `version`
/// left it (its migrations applied by sqlx, as that release applied them).
async fn repository_at(data: &Path, version: i64) {
    let migrations =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../adapters/sql/migrations/sqlite");
    let mut before = sqlx::migrate::Migrator::new(migrations)
        .await
        .expect("migrations");
    before.migrations.to_mut().retain(|m| m.version <= version);
    assert_eq!(before.iter().map(|m| m.version).max(), Some(version));
    std::fs::create_dir_all(data).expect("data dir");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data.join("liveops.db"))
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("open");
    before.run(&pool).await.expect("migrate");
    pool.close().await;
}

/// The newest migration the repository in `data` has applied, and this build's it has not.
fn migrations_of(data: &Path) -> (Option<i64>, Vec<i64>) {
    liveops_sql::SqliteRepository::pending_migrations(&data.join("liveops.db")).expect("read")
}

/// The complete sets in `dir` whose names start with `prefix`, by name.
fn sets_named(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("backup dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && dir.join(n).join("manifest.json").is_file())
        .collect();
    names.sort();
    names
}

/// The migration an upgrade test starts from: a release before this one's newest.
const RELEASE_BEFORE: i64 = 15;

/// A release that finds the embedded repository with migrations to apply takes a pre-upgrade
/// set first, of the files as the release before left them: the ordinary sets' pruning never
/// deletes it, a start with nothing to migrate takes no other, and it restores the database
/// at the release before's schema (the rollback path, which later sets no longer are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_takes_a_pre_upgrade_set_before_migrating_that_pruning_keeps_and_that_restores()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    repository_at(&data, RELEASE_BEFORE).await;
    // The bus as well (`migrate` on another repository leaves this one alone).
    let elsewhere = format!("sqlite://{}?mode=rwc", path_str(&dir.path().join("x.db")));
    let (ok, _, err) = liveops(&[
        "migrate",
        "--data-dir",
        path_str(&data),
        "--db-url",
        &elsewhere,
    ]);
    assert!(ok, "{err}");
    let (from, pending) = migrations_of(&data);
    assert_eq!(from, Some(RELEASE_BEFORE));
    let to = *pending
        .last()
        .expect("this release has migrations to apply");

    let (mut server, _) = serve_ready(&data, &["--backup-every", "0"]).await;
    server.kill().expect("stop");
    let _ = server.wait();
    assert_eq!(migrations_of(&data).1, Vec::<i64>::new(), "serve migrated");
    let backups = data.join("backups");
    let pre = sets_named(&backups, "pre-upgrade-");
    assert_eq!(pre.len(), 1, "{pre:?}");
    assert!(
        pre[0].starts_with(&format!("pre-upgrade-{RELEASE_BEFORE:04}-{to:04}-")),
        "{pre:?}"
    );
    let set = backups.join(&pre[0]);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("manifest.json")).expect("read"))
            .expect("manifest");
    assert_eq!(
        manifest["preUpgrade"],
        serde_json::json!({"fromMigration": RELEASE_BEFORE, "toMigration": to})
    );
    let roles: Vec<&str> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["role"].as_str())
        .collect();
    assert_eq!(roles, ["bus", "repository"]);

    // Ordinary backups pruned to one set: the pre-upgrade set stays. A start with nothing to
    // migrate takes none.
    for _ in 0..3 {
        let (ok, _, err) = backup(&data, &backups, &["--backup-keep", "1"]);
        assert!(ok, "{err}");
    }
    assert_eq!(sets_named(&backups, "liveops-").len(), 1);
    let (ok, _, err) = liveops(&["migrate", "--data-dir", path_str(&data)]);
    assert!(ok, "{err}");
    assert_eq!(sets_named(&backups, "pre-upgrade-"), pre);

    // It restores like any set: the repository at the release before's schema.
    let rolled_back = dir.path().join("rolled-back");
    let (ok, out, err) = restore(&set, &rolled_back);
    assert!(ok, "{err}");
    assert!(out.contains(&pre[0]), "{out}");
    assert_eq!(migrations_of(&rolled_back), (Some(RELEASE_BEFORE), pending));
    assert!(rolled_back.join("bus.db").is_file());
}

/// A pre-upgrade set that cannot be taken stops the upgrade before anything migrates, saying
/// why and how to go on; `PRE_UPGRADE_BACKUP=false` migrates without one.
#[test]
fn an_upgrade_whose_pre_upgrade_set_fails_migrates_nothing_unless_told_to_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(repository_at(&data, RELEASE_BEFORE));
    // BACKUP_DIR cannot be created: a file is in its place.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"file").expect("write");
    let to_blocked = ["--backup-dir", path_str(&blocked)];

    let err = serve_refused(&data, &to_blocked);
    assert!(
        err.contains("pre-upgrade backup set could not be taken")
            && err.contains("PRE_UPGRADE_BACKUP=false")
            && err.contains("BACKUP_DIR"),
        "{err}"
    );
    let migrate = ["migrate", "--data-dir", path_str(&data)];
    let (ok, _, err) = liveops(&[&migrate[..], &to_blocked].concat());
    assert!(!ok && err.contains("was not migrated"), "{err}");
    assert_eq!(migrations_of(&data).0, Some(RELEASE_BEFORE), "migrated");

    let go_on = ["--pre-upgrade-backup", "false"];
    let (ok, _, err) = liveops(&[&migrate[..], &to_blocked, &go_on].concat());
    assert!(ok, "{err}");
    assert_eq!(migrations_of(&data).1, Vec::<i64>::new(), "not migrated");
    assert!(!data.join("backups").exists());
}

/// A set names its files by what they hold, whatever the live files are called: a repository
/// file whose name starts with a dot and a bus of the same name in another folder back up and
/// restore (before, the first made every set unrestorable and the second every backup fail).
#[test]
fn live_files_of_any_name_back_up_and_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (repo_dir, bus_dir) = (dir.path().join("repo"), dir.path().join("bus"));
    for d in [&repo_dir, &bus_dir] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let db_url = format!("sqlite://{}", repo_dir.join(".data.db").display());
    let bus = bus_dir.join(".data.db");
    let files = ["--db-url", &db_url, "--bus-conn", path_str(&bus)];
    let run = |args: &[&str]| liveops(&[args, &["--data-dir", path_str(&data)], &files].concat());
    let (ok, _, err) = run(&["migrate"]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["backup"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(out.trim()).expect("report");
    let set = PathBuf::from(report["path"].as_str().expect("path"));
    assert!(set.join("repository.db").is_file() && set.join("bus.db").is_file());
    for live in [repo_dir.join(".data.db"), bus.clone()] {
        std::fs::remove_file(&live).expect("remove the live file");
        for side in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{side}", live.display()));
        }
    }
    let (ok, _, err) = run(&["restore", "--from", path_str(&set)]);
    assert!(ok, "{err}");
    assert!(repo_dir.join(".data.db").is_file() && bus.is_file());
}

/// A stop that comes while a scheduled backup writes its set waits for the set: the copy, which
/// runs in a thread no stop can cut short, ends before the task does (and so before the
/// process lets go of `DATA_DIR`'s lock and says it stopped), and the set is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_scheduled_backup_waits_for_its_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let mut files = liveops::wiring::backup::local_files(&settings_of(&data));
    files.retain(|f| f.role == "repository");
    for f in &mut files {
        std::fs::create_dir_all(f.path.parent().expect("folder")).expect("data dir");
        liveops_sql::SqliteRepository::open_migrated(&f.path)
            .await
            .expect("repository");
        f.snapshot = late_repository_snapshot;
    }
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let (go_on, go_on_rx) = std::sync::mpsc::channel();
    *BETWEEN.lock().expect("hook") = Some((opened_tx, go_on_rx));
    let stop = tokio_util::sync::CancellationToken::new();
    let task = liveops::backup::Backups::of(files, backups.clone(), 8)
        .task(Duration::from_millis(10))
        .start(stop.clone());
    let task = tokio::spawn(task);
    tokio::time::timeout(Duration::from_secs(30), opened.recv())
        .await
        .expect("the backup is writing its set");
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !task.is_finished(),
        "the task ended while its set was written"
    );
    go_on.send(()).expect("go on");
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the task ends once the set is written")
        .expect("task")
        .expect("stopped");
    let sets: Vec<String> = std::fs::read_dir(&backups)
        .expect("backups")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(sets.len(), 1, "{sets:?}");
    let manifest = backups.join(&sets[0]).join("manifest.json");
    assert!(manifest.is_file(), "{sets:?}: a whole set");
}

/// A restore reads the signing keys `serve` reads: with them in `HMAC_KEYS_FILE`, one of them
/// named `default`, it restores (it once made up a `default` key beside the file's and refused
/// the list as naming it twice).
#[test]
fn a_restore_takes_the_signing_keys_file_serve_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, set) = migrated_and_backed_up(&dir.path().join("data"));
    let keys = dir.path().join("hmac-keys");
    let other = "abcdefghijklmnopqrstuvwxyz012345";
    std::fs::write(&keys, format!("default={SECRET},k2={other}")).expect("keys");
    let restored = dir.path().join("restored");
    let out = Command::new(BIN)
        .args(["restore", "--from", path_str(&set), "--data-dir"])
        .args([path_str(&restored), "--hmac-keys-file", path_str(&keys)])
        .args(["--log-level", "warn"])
        .output()
        .expect("run liveops");
    assert!(out.status.success(), "{out:?}");
    assert!(restored.join("liveops.db").is_file());
}
