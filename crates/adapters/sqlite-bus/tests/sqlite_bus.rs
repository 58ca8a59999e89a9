//! The SQLite bus passes the bus conformance suite, and what it acknowledges survives closing
//! the file and `kill -9` of the process.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use liveops_core::ports::BusOptions;
use liveops_core::ports::{Bus, BusExt, Delivery, Health, Message};
use liveops_sqlite_bus::{SqliteBus, LAG_COUNTED, MAX_BATCH};
use liveops_testkit::conformance;
use liveops_testkit::conformance::bus::{poll, publish, SUITE_OPTIONS};

/// A bus with [`SUITE_OPTIONS`] in a file of a new temporary directory (gone when dropped).
async fn temp_bus() -> (tempfile::TempDir, SqliteBus) {
    let dir = tempfile::tempdir().unwrap();
    let bus = SqliteBus::open(dir.path().join("bus.db"), SUITE_OPTIONS)
        .await
        .unwrap();
    (dir, bus)
}

fn msg(key: &str, body: String) -> Message {
    Message {
        id: format!("{:016x}", rand::random::<u64>()),
        key: key.to_owned(),
        payload: body.into_bytes().into(),
    }
}

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect()
}

fn ids(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bus_passes_the_bus_suite() {
    let (_dir, bus) = temp_bus().await;
    conformance::bus::run_all(Arc::new(bus), SUITE_OPTIONS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_survive_reopening_and_in_flight_ones_come_back_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let path = path.to_str().unwrap();
    let long = BusOptions {
        visibility_timeout: Duration::from_secs(300),
        max_deliveries: 10,
    };
    let in_flight = {
        let bus = SqliteBus::open(path, long).await.unwrap();
        bus.ensure_group("t", "g").await.unwrap();
        for batch in 0..5 {
            let msgs = (0..10)
                .map(|i| msg("p", format!("m{:02}", batch * 10 + i)))
                .collect();
            publish(&bus, "t", msgs).await;
        }
        let first = poll(&bus, "t", "g", "c1", 10, Duration::from_secs(1)).await;
        assert_eq!(first.len(), 10);
        bus.ack("t", "g", &ids(&first)).await.unwrap();
        // The group's position is written at close (and every PERSIST_EVERY).
        let taken = poll(&bus, "t", "g", "c1", 10, Duration::from_secs(1)).await;
        assert_eq!(bodies(&taken)[0], "m10");
        // In this process the 10 in flight stay hidden for 300 s...
        assert_eq!(bus.lag("t", "g").await.unwrap(), 40);
        let fresh = poll(&bus, "t", "g", "c1", 5, Duration::ZERO).await;
        assert_eq!(bodies(&fresh)[0], "m20");
        bus.ack("t", "g", &ids(&fresh)).await.unwrap();
        // ...unless reclaimed.
        assert_eq!(bus.reclaim("t", "g").await.unwrap(), 10);
        let back = poll(&bus, "t", "g", "c1", 100, Duration::ZERO).await;
        assert_eq!(ids(&back)[..10], ids(&taken)[..]);
        assert!(back[..10].iter().all(|d| d.deliveries == 2));
        assert_eq!(bodies(&back[10..])[0], "m25");
        bus.flush().await.unwrap();
        taken
    };

    // After a restart the group resumes at its oldest unacked message: what was in flight
    // comes back first, delivered anew, followed by everything after it.
    let bus = SqliteBus::open(path, long).await.unwrap();
    assert_eq!(bus.lag("t", "g").await.unwrap(), 40);
    let back = poll(&bus, "t", "g", "c1", 100, Duration::ZERO).await;
    assert_eq!(ids(&back[..10]), ids(&in_flight));
    assert_eq!(bodies(&back[..10]), bodies(&in_flight));
    let want: Vec<String> = (10..50).map(|i| format!("m{i:02}")).collect();
    assert_eq!(bodies(&back), want);
    assert!(back.iter().all(|d| d.deliveries == 1));
    bus.ack("t", "g", &ids(&back)).await.unwrap();
    assert_eq!(bus.lag("t", "g").await.unwrap(), 0);
    assert_eq!(bus.compact().await.unwrap(), 50);
    bus.healthcheck().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_no_group_reads_keeps_only_its_newest_messages() {
    let (_dir, bus) = temp_bus().await;
    let msgs = (0..30).map(|i| msg("p", format!("m{i:02}"))).collect();
    publish(&bus, "quarantine", msgs).await;
    assert_eq!(bus.compact_keeping(10).await.unwrap(), 20);
    assert_eq!(bus.compact_keeping(10).await.unwrap(), 0);
    // The default keeps far more: nothing more goes.
    assert_eq!(bus.compact().await.unwrap(), 0);
    // A group that comes later reads the newest ten.
    bus.ensure_group("quarantine", "late").await.unwrap();
    let got = poll(&bus, "quarantine", "late", "c", 100, Duration::ZERO).await;
    let want: Vec<String> = (20..30).map(|i| format!("m{i:02}")).collect();
    assert_eq!(bodies(&got), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_what_any_group_still_needs() {
    let (_dir, bus) = temp_bus().await;
    bus.ensure_group("t", "fast").await.unwrap();
    bus.ensure_group("t", "slow").await.unwrap();
    let msgs = (0..6).map(|i| msg("p", format!("m{i}"))).collect();
    publish(&bus, "t", msgs).await;
    // Messages of a topic without groups are kept for the group that will come.
    bus.publish("orphan", vec![msg("p", "o".into())])
        .await
        .unwrap();

    let fast = poll(&bus, "t", "fast", "c", 10, Duration::ZERO).await;
    bus.ack("t", "fast", &ids(&fast)).await.unwrap();
    assert_eq!(
        bus.compact().await.unwrap(),
        0,
        "slow has not read anything"
    );

    let slow = poll(&bus, "t", "slow", "c", 4, Duration::ZERO).await;
    // slow acks m1..m3 but m0 stays in flight: its position stays at m0, so all is kept.
    bus.ack("t", "slow", &ids(&slow[1..])).await.unwrap();
    assert_eq!(bus.compact().await.unwrap(), 0);
    assert_eq!(bus.lag("t", "slow").await.unwrap(), 3);
    bus.ack("t", "slow", &ids(&slow[..1])).await.unwrap();
    assert_eq!(bus.compact().await.unwrap(), 4);
    assert_eq!(bus.compact().await.unwrap(), 0);
    let rest = poll(&bus, "t", "slow", "c", 10, Duration::ZERO).await;
    assert_eq!(bodies(&rest), ["m4", "m5"]);

    bus.ensure_group("orphan", "late").await.unwrap();
    let o = poll(&bus, "orphan", "late", "c", 10, Duration::ZERO).await;
    assert_eq!(bodies(&o), ["o"]);
}

/// Set in the child process of the `kill -9` test: the bus file to publish to.
const CHILD_ENV: &str = "LIVEOPS_KILL9_BUS";

/// The child publishes from 4 tasks until killed (30 s at most), printing each acknowledged message; the parent
/// kills it with SIGKILL mid-stream, reopens the file, and finds every acknowledged message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_kill_9() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let bus = Arc::new(SqliteBus::open(&path, SUITE_OPTIONS).await.unwrap());
        let mut tasks = Vec::new();
        for task in 0..4 {
            let bus = bus.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let body = format!("{task}:{i}");
                    publish(&*bus, "t", vec![msg("p", body.clone())]).await;
                    println!("ACKED {body}");
                }
            }));
        }
        // Should the parent die before killing it, stop on our own.
        tokio::time::sleep(Duration::from_secs(30)).await;
        for t in tasks {
            t.abort();
        }
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "acknowledged_publishes_survive_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(body) = line.strip_prefix("ACKED ") {
                acked.push(body.to_owned());
            }
        }
        acked
    });
    let start = Instant::now();
    // Let it publish for a while, then kill it mid-flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked = reader.join().unwrap();
    assert!(
        acked.len() >= 100,
        "child acknowledged only {} publishes in {:?}",
        acked.len(),
        start.elapsed()
    );

    let bus = SqliteBus::open(&path, SUITE_OPTIONS).await.unwrap();
    bus.ensure_group("t", "g").await.unwrap();
    let mut stored = HashSet::new();
    loop {
        let got = poll(&bus, "t", "g", "c", 1000, Duration::ZERO).await;
        if got.is_empty() {
            break;
        }
        stored.extend(bodies(&got));
    }
    println!(
        "kill -9: {} publishes acknowledged, {} messages found after restart",
        acked.len(),
        stored.len()
    );
    let lost: Vec<&String> = acked.iter().filter(|b| !stored.contains(*b)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged publishes lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Group commit at work: many concurrent single-message publishers. Prints the rate; the
/// assertion is that nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publish_throughput() {
    for (publishers, each) in [(16, 1000), (256, 100)] {
        let (_dir, bus) = temp_bus().await;
        let bus = Arc::new(bus);
        bus.ensure_group("t", "g").await.unwrap();
        let payload = "x".repeat(200);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..publishers {
            let (bus, payload) = (bus.clone(), payload.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..each {
                    bus.publish("t", vec![msg(&format!("player_{p}"), payload.clone())])
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let took = start.elapsed();
        let n = publishers * each;
        println!(
            "sqlite bus: {n} single-message publishes from {publishers} tasks in {took:?}: {:.0} messages/s",
            n as f64 / took.as_secs_f64()
        );
        assert_eq!(bus.lag("t", "g").await.unwrap(), n as u64);
    }
}

/// A backlog beyond [`LAG_COUNTED`] is not counted one by one on the writer's thread: it
/// reads as the span of its message numbers, which bounds it (another topic's messages
/// interleave) and grows with it; below, it is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_lag_is_bounded_by_the_span_of_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let bus = SqliteBus::open(&dir.path().join("bus.db"), BusOptions::default())
        .await
        .unwrap();
    bus.ensure_group("t", "g").await.unwrap();
    bus.ensure_group("u", "g").await.unwrap();
    let batch = |n: usize| (0..n).map(|i| msg("p", i.to_string())).collect();
    // 1 000 on "t", then 1 000 on "u": exact.
    publish(&bus, "t", batch(1_000)).await;
    publish(&bus, "u", batch(1_000)).await;
    assert_eq!(bus.lag("t", "g").await.unwrap(), 1_000);
    // Then "t" and "u" in turns until "t" holds more than the cap.
    let mut on_t = 1_000;
    while on_t <= LAG_COUNTED as u64 {
        publish(&bus, "t", batch(MAX_BATCH)).await;
        publish(&bus, "u", batch(MAX_BATCH)).await;
        on_t += MAX_BATCH as u64;
    }
    let lag = bus.lag("t", "g").await.unwrap();
    assert!(lag > on_t && lag < 2 * on_t, "{lag} for {on_t} unread");
    publish(&bus, "t", batch(10)).await;
    assert_eq!(
        bus.lag("t", "g").await.unwrap(),
        lag + MAX_BATCH as u64 + 10
    );
}

/// A bus file written by schema 1 (which stored each in-flight delivery) opens under schema 2:
/// the group resumes at its oldest in-flight message and keeps its dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_bus_file_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE bus_messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, \
               msg_key TEXT NOT NULL, payload BLOB NOT NULL);
             CREATE INDEX bus_messages_topic ON bus_messages (topic, seq);
             CREATE TABLE bus_groups (topic TEXT NOT NULL, grp TEXT NOT NULL, next_seq INTEGER NOT NULL,
               PRIMARY KEY (topic, grp)) WITHOUT ROWID;
             CREATE TABLE bus_pending (topic TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL,
               consumer TEXT NOT NULL, deliveries INTEGER NOT NULL, deadline_ms INTEGER NOT NULL,
               PRIMARY KEY (topic, grp, seq)) WITHOUT ROWID;
             CREATE TABLE bus_dead (topic TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL,
               deliveries INTEGER NOT NULL, dead_at_ms INTEGER NOT NULL,
               PRIMARY KEY (topic, grp, seq)) WITHOUT ROWID;
             INSERT INTO bus_messages (topic, msg_key, payload) VALUES
               ('t', 'p', x'6d31'), ('t', 'p', x'6d32'), ('t', 'p', x'6d33'), ('t', 'p', x'6d34');
             INSERT INTO bus_groups VALUES ('t', 'g', 4);
             INSERT INTO bus_pending VALUES ('t', 'g', 2, 'c', 1, 0);
             INSERT INTO bus_dead VALUES ('t', 'g', 1, 3, 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let bus = SqliteBus::open(&path, SUITE_OPTIONS).await.unwrap();
    let got = poll(&bus, "t", "g", "c", 10, Duration::ZERO).await;
    assert_eq!(bodies(&got), ["m2", "m3", "m4"]);
    let dead = bus.dead_letters("t", "g", 10).await.unwrap();
    assert_eq!(bodies(&dead), ["m1"]);
    bus.ack("t", "g", &ids(&got)).await.unwrap();
    assert_eq!(bus.lag("t", "g").await.unwrap(), 0);
}

/// Options under which a message dies at its first lapse (100 ms).
const DIE_FAST: BusOptions = BusOptions {
    visibility_timeout: Duration::from_millis(100),
    max_deliveries: 1,
};

/// A bus at `path` ([`DIE_FAST`]) whose group `g` of topic `t` let "poison" die: delivered once
/// and never acked.
async fn with_a_dead_letter(path: &std::path::Path) -> SqliteBus {
    let bus = SqliteBus::open(path, DIE_FAST).await.unwrap();
    bus.ensure_group("t", "g").await.unwrap();
    publish(&bus, "t", vec![msg("p", "poison".into())]).await;
    let first = poll(&bus, "t", "g", "c", 10, Duration::ZERO).await;
    assert_eq!(bodies(&first), ["poison"]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(poll(&bus, "t", "g", "c", 10, Duration::ZERO)
        .await
        .is_empty());
    bus
}

/// A dead letter stays dead when the group's position read back from the file is below it (the
/// process killed, or a batch failed, before the position was written): it is not delivered
/// again as a new message, and is listed once; replayed, it comes back once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_stays_dead_below_the_stored_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let bus = with_a_dead_letter(&path).await;
    bus.flush().await.unwrap();
    drop(bus);
    // As if the process had died before writing the position past the dead letter.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE bus_groups SET next_seq = 0", [])
        .unwrap();
    drop(conn);
    let bus = SqliteBus::open(&path, DIE_FAST).await.unwrap();
    let quiet = Duration::from_millis(200);
    assert!(
        poll(&bus, "t", "g", "c", 10, quiet).await.is_empty(),
        "the dead letter is not delivered again as new"
    );
    assert_eq!(
        bodies(&bus.dead_letters("t", "g", 10).await.unwrap()),
        ["poison"]
    );
    assert_eq!(bus.replay_dead_letters("t", "g").await.unwrap(), 1);
    let back = poll(&bus, "t", "g", "c", 10, Duration::from_secs(3)).await;
    assert_eq!(bodies(&back), ["poison"], "replayed once");
    bus.ack("t", "g", &ids(&back)).await.unwrap();
    assert!(bus.dead_letters("t", "g", 10).await.unwrap().is_empty());
    // Acked while the group had not read past it: still not read again as new.
    assert!(poll(&bus, "t", "g", "c", 10, quiet).await.is_empty());
    publish(&bus, "t", vec![msg("p", "after".into())]).await;
    let next = poll(&bus, "t", "g", "c", 10, quiet).await;
    assert_eq!(bodies(&next), ["after"]);
    bus.ack("t", "g", &ids(&next)).await.unwrap();
    assert_eq!(bus.lag("t", "g").await.unwrap(), 0);
}

/// A replay made by another process (`liveops dead-letters --replay` beside a running server)
/// reaches the process that consumes the group, and survives its restart until acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_another_process_reaches_the_consuming_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let server = with_a_dead_letter(&path).await;
    let cli = SqliteBus::open(&path, DIE_FAST).await.unwrap();
    assert_eq!(
        bodies(&cli.dead_letters("t", "g", 10).await.unwrap()),
        ["poison"]
    );
    assert_eq!(cli.replay_dead_letters("t", "g").await.unwrap(), 1);
    assert!(cli.dead_letters("t", "g", 10).await.unwrap().is_empty());
    drop(cli);

    // The consuming process looks for put-back letters every second.
    let back = poll(&server, "t", "g", "c", 10, Duration::from_secs(3)).await;
    assert_eq!(bodies(&back), ["poison"]);
    assert_eq!(back[0].deliveries, 1);
    // Not acked before a restart: it is delivered again after it.
    server.flush().await.unwrap();
    drop(server);
    let restarted = SqliteBus::open(&path, DIE_FAST).await.unwrap();
    let again = poll(&restarted, "t", "g", "c", 10, Duration::from_secs(1)).await;
    assert_eq!(bodies(&again), ["poison"]);
    restarted.ack("t", "g", &ids(&again)).await.unwrap();
    assert_eq!(restarted.lag("t", "g").await.unwrap(), 0);
    assert!(
        poll(&restarted, "t", "g", "c", 10, Duration::from_millis(200))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_publishing_holds_whole_commits_and_the_stored_positions() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("bus.db");
    let bus = Arc::new(SqliteBus::open(&live, SUITE_OPTIONS).await.unwrap());
    bus.ensure_group("t", "g").await.unwrap();
    // Ten messages acked and their position written: the copy must know it.
    let early = (0..10).map(|i| msg("k", format!("early-{i}"))).collect();
    publish(&*bus, "t", early).await;
    let first = poll(&*bus, "t", "g", "c", 10, Duration::from_secs(1)).await;
    bus.ack("t", "g", &ids(&first)).await.unwrap();
    bus.flush().await.unwrap();

    // Publishers go on in batches of 10, one commit each, while the copy is taken.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move {
            let mut batches = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch = (0..10)
                    .map(|j| msg("k", format!("b{batches}-{j}")))
                    .collect();
                publish(&*bus, "t", batch).await;
                batches += 1;
            }
            batches
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copy = dir.path().join("copy.db");
    let (from, to) = (live.clone(), copy.clone());
    tokio::task::spawn_blocking(move || SqliteBus::backup(&from, &to))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let published = publisher.await.unwrap();
    SqliteBus::check_copy(&copy).unwrap();

    let restored = SqliteBus::open(&copy, SUITE_OPTIONS).await.unwrap();
    // The acked messages stay acked for their group...
    let next = poll(&restored, "t", "g", "c", 1, Duration::from_secs(1)).await;
    assert_eq!(bodies(&next), vec!["b0-0"]);
    // ...and a fresh group sees every message of the copy: whole batches, a prefix of them.
    restored.ensure_group("t", "audit").await.unwrap();
    let all = poll(
        &restored,
        "t",
        "audit",
        "c",
        100_000,
        Duration::from_secs(1),
    )
    .await;
    let batch_msgs = all.len() - 10;
    assert!(batch_msgs > 0 && batch_msgs % 10 == 0, "{batch_msgs}");
    let batches = u32::try_from(batch_msgs / 10).unwrap();
    assert!(
        batches < published,
        "the publisher kept going after the copy"
    );
    let expected: Vec<String> = (0..10)
        .map(|i| format!("early-{i}"))
        .chain((0..batches).flat_map(|b| (0..10).map(move |j| format!("b{b}-{j}"))))
        .collect();
    assert_eq!(bodies(&all), expected);

    // A copy never overwrites, a missing source is an error, and junk fails the check.
    assert!(SqliteBus::backup(&live, &copy).is_err());
    assert!(SqliteBus::backup(&dir.path().join("nope.db"), &dir.path().join("x.db")).is_err());
    std::fs::write(dir.path().join("junk.db"), b"not a database at all").unwrap();
    assert!(SqliteBus::check_copy(&dir.path().join("junk.db")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_writer_keeps_publishes_out_of_a_snapshot_taken_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("bus.db");
    let bus = Arc::new(SqliteBus::open(&live, SUITE_OPTIONS).await.unwrap());
    publish(&*bus, "t", vec![msg("k", "before".into())]).await;

    let from = live.clone();
    let held = tokio::task::spawn_blocking(move || SqliteBus::hold_writer(&from))
        .await
        .unwrap()
        .unwrap();
    // A publish waits for the writer; a snapshot opened meanwhile is the bus before it.
    let publishing = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish("t", vec![msg("k", "during".into())]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !publishing.is_finished(),
        "a publish committed past the held writer"
    );
    let from = live.clone();
    let snapshot = tokio::task::spawn_blocking(move || SqliteBus::file_snapshot(&from))
        .await
        .unwrap()
        .unwrap();
    drop(held);
    publishing.await.unwrap().unwrap();

    let copy = dir.path().join("copy.db");
    let to = copy.clone();
    tokio::task::spawn_blocking(move || snapshot.copy_into(&to))
        .await
        .unwrap()
        .unwrap();
    SqliteBus::check_copy(&copy).unwrap();
    let restored = SqliteBus::open(&copy, SUITE_OPTIONS).await.unwrap();
    restored.ensure_group("t", "audit").await.unwrap();
    let all = poll(&restored, "t", "audit", "c", 10, Duration::from_millis(500)).await;
    assert_eq!(bodies(&all), ["before"]);
}

/// A group's delivery state lives in the memory of the one process consuming it: a second
/// handle on the same file (a second `serve` on one `DATA_DIR`) is refused the group, not served
/// the same messages; other groups stay open to it, and the group is its once the first leaves
/// or goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_handle_consumes_a_group_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.db");
    let first = SqliteBus::open(&path, SUITE_OPTIONS).await.unwrap();
    let second = SqliteBus::open(&path, SUITE_OPTIONS).await.unwrap();
    for g in ["g", "h"] {
        first.ensure_group("t", g).await.unwrap();
    }
    publish(&first, "t", vec![msg("p", "m".into())]).await;
    let taken = poll(&first, "t", "g", "c1", 10, Duration::ZERO).await;
    assert_eq!(bodies(&taken), ["m"]);

    let refused = second.poll("t", "g", "c2", 10, Duration::ZERO).await;
    let error = refused
        .expect_err("the group is the first handle's")
        .to_string();
    assert!(
        error.contains("another process consumes group g"),
        "{error}"
    );
    assert_eq!(
        bodies(&poll(&second, "t", "h", "c2", 10, Duration::ZERO).await),
        ["m"],
        "another group"
    );

    first.leave("t", "g", "c1").await.unwrap();
    second
        .poll("t", "g", "c2", 10, Duration::ZERO)
        .await
        .unwrap();
    let refused = first.poll("t", "g", "c1", 10, Duration::ZERO).await;
    assert!(refused.is_err(), "now the second's");
    drop(second);
    first
        .poll("t", "g", "c1", 10, Duration::ZERO)
        .await
        .unwrap();
}
