//! `kill -9` of each process of the split deployment in turn, mid-stream (issue 14): the
//! gateway, fairness, progression and leaderboard processes over Redis (hot state, ranks,
//! Streams bus) and PostgreSQL, each killed and restarted on its port while clients keep
//! sending; afterwards every accepted event counts exactly once and nothing was a 5xx other
//! than a 503. Needs the servers of `scripts/services.sh`.
#![cfg(all(feature = "redis", feature = "postgres"))]

mod common;

use std::path::Path;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::load::{assert_exactly_once, stream, Counts};
use common::{free_port, fresh_database, redis_db, split_process, wait_ready, Fleet, Urls};

const TARGETS: [&str; 4] = ["gateway", "fairness", "progression", "leaderboard"];

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the servers with scripts/services.sh start")
    })
}

fn serve(dir: &Path, target: &str, port: u16, db: &str, redis: &str) -> Child {
    split_process(dir, target, port, db, redis)
        .env("BUS_KIND", "redis")
        .env("BUS_PARTITIONS", "4")
        .env("RATE_LIMIT_MAX", "100000")
        .spawn()
        .expect("spawn liveops")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_each_split_process_in_turn_loses_and_doubles_nothing() {
    let db = fresh_database(&env_var("LIVEOPS_TEST_PG_URL"), "liveops_split_crash");
    let redis = redis_db(13);
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<u16> = TARGETS.iter().map(|_| free_port()).collect();
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut fleet = Fleet::default();
    for (t, p) in TARGETS.iter().zip(&ports) {
        fleet.0.push(serve(dir.path(), t, *p, &db, &redis));
    }
    for b in &bases {
        wait_ready(b).await;
    }
    let counts = Arc::new(Counts::default());
    let load = tokio::spawn(stream(bases[0].clone(), 6, 120, counts.clone()));
    for (i, target) in TARGETS.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        fleet.0[i].kill().expect("kill -9"); // SIGKILL
        let _ = fleet.0[i].wait();
        tokio::time::sleep(Duration::from_millis(800)).await;
        fleet.0[i] = serve(dir.path(), target, ports[i], &db, &redis);
        wait_ready(&bases[i]).await;
        eprintln!("{target}: killed and back");
    }
    let want = load.await.expect("load");
    eprintln!(
        "split crash: {} events accepted, {} answers 503, {} refused connections or timeouts, slowest {} ms",
        want.len() * 120,
        counts.unavailable.load(Ordering::Relaxed),
        counts.other.load(Ordering::Relaxed),
        counts.slowest_ms.load(Ordering::Relaxed)
    );
    let urls = Urls::split(&bases);
    assert_exactly_once(&urls, &want).await;
    drop(fleet);
}
