//! The split deployment, end to end: four processes `liveops serve --target gateway|fairness|
//! progression|leaderboard` over Redis (hot state, ranks, Streams bus) and PostgreSQL or MariaDB
//! pass the same scenario as the embedded default. Needs the servers of `scripts/services.sh`.
#![cfg(all(feature = "redis", any(feature = "postgres", feature = "mysql")))]

mod common;

use std::process::{Command, Stdio};

use common::{free_port, fresh_database, play_scenario, wait_ready, Fleet, Urls, BIN, SECRET};
use liveops_core::Keyring;

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the servers with scripts/services.sh start")
    })
}

fn redis_db(db: u32) -> String {
    let url = env_var("LIVEOPS_TEST_REDIS_URL");
    let base = url
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(b, d)| {
            if d.parse::<u32>().is_ok() {
                b.to_owned()
            } else {
                url.trim_end_matches('/').to_owned()
            }
        })
        .unwrap_or(url.clone());
    let host = base.trim_start_matches("redis://");
    let (h, p) = host.split_once(':').expect("host:port");
    let ok = Command::new("redis-cli")
        .args(["-h", h, "-p", p, "-n", &db.to_string(), "FLUSHDB"])
        .status()
        .expect("redis-cli")
        .success();
    assert!(ok, "cannot flush redis db {db}");
    format!("{base}/{db}")
}

async fn split_deployment(db_url: String, redis_url: String, tag: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fleet = Fleet::default();
    let mut bases = Vec::new();
    for target in ["gateway", "fairness", "progression", "leaderboard"] {
        let port = free_port();
        let child = Command::new(BIN)
            .arg("serve")
            .env("LIVEOPS_TARGET", target)
            .env("PORT", port.to_string())
            .env("BIND", "127.0.0.1")
            .env("DATA_DIR", dir.path().join(target))
            .env("HMAC_SECRET", SECRET)
            .env("DB_URL", &db_url)
            .env("REDIS_URL", &redis_url)
            .env("BUS_KIND", "redis")
            .env("BUS_PARTITIONS", "4")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn liveops");
        fleet.0.push(child);
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    for b in &bases {
        wait_ready(b).await;
    }
    let urls = Urls {
        gateway: bases[0].clone(),
        fairness: bases[1].clone(),
        progression: bases[2].clone(),
        leaderboard: bases[3].clone(),
    };
    // Each process serves only its own routes.
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/leaderboard?window=daily", urls.gateway))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        404,
        "the gateway process does not serve leaderboards"
    );
    play_scenario(&urls, &Keyring::single(SECRET).expect("key"), tag).await;
    drop(fleet);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_over_redis_and_postgresql_pass_the_scenario() {
    let db = fresh_database(&env_var("LIVEOPS_TEST_PG_URL"), "liveops_split_pg");
    split_deployment(db, redis_db(5), "split_pg").await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_over_redis_and_mariadb_pass_the_scenario() {
    let db = fresh_database(&env_var("LIVEOPS_TEST_MYSQL_URL"), "liveops_split_my");
    split_deployment(db, redis_db(6), "split_my").await;
}
