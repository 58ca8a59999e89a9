//! The split deployment, end to end: eight processes `liveops serve --target gateway|fairness|
//! progression|leaderboard|operators|campaigns|participation|distribution` over Redis (hot
//! state, ranks, Streams bus) and PostgreSQL or MariaDB pass the same scenarios as the embedded
//! default: the event flow, and the live-event campaign story (a key revoked in one process is
//! refused by the others within 5 s). Over MariaDB every event also waits for the test Redis's
//! replica (`BUS_REDIS_REPLICAS=1`). Needs the servers of `scripts/services.sh`.
#![cfg(all(feature = "redis", any(feature = "postgres", feature = "mysql")))]

mod common;

use common::campaign::{campaign_story, Live, LiveUrls, ADMIN_EMAIL, ADMIN_PASSWORD};
use common::{
    free_port, fresh_database, play_scenario, redis_db, split_process, wait_ready, Fleet, Urls,
    SECRET,
};
use liveops_core::Keyring;

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the servers with scripts/services.sh start")
    })
}

/// Runs the scenarios on eight processes; each event waits for `replicas` Redis replicas.
async fn split_deployment(db_url: String, redis_url: String, replicas: u32, tag: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fleet = Fleet::default();
    let mut bases = Vec::new();
    for target in [
        "gateway",
        "fairness",
        "progression",
        "leaderboard",
        "operators",
        "campaigns",
        "participation",
        "distribution",
    ] {
        let port = free_port();
        let child = split_process(dir.path(), target, port, &db_url, &redis_url)
            .env("BUS_KIND", "redis")
            .env("BUS_PARTITIONS", "4")
            .env("BUS_REDIS_REPLICAS", replicas.to_string())
            .env("ADMIN_EMAIL", ADMIN_EMAIL)
            .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("WEBHOOK_ALLOW_PRIVATE", "true")
            .env("CAMPAIGN_TICK_MS", "200")
            .env("DRAW_TICK_MS", "200")
            .env("SETTLE_TICK_MS", "200")
            .spawn()
            .expect("spawn liveops");
        fleet.0.push(child);
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    for b in &bases {
        wait_ready(b).await;
    }
    // The bootstrap admin exists, so fairness reads need an operator's token.
    let live = LiveUrls {
        gateway: bases[0].clone(),
        progression: bases[2].clone(),
        operators: bases[4].clone(),
        campaigns: bases[5].clone(),
        participation: bases[6].clone(),
        distribution: bases[7].clone(),
    };
    let token = Live::new(live.clone())
        .token(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    let urls = Urls {
        operator: Some(token),
        ..Urls::split(&bases)
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
    campaign_story(live, tag).await;
    drop(fleet);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_over_redis_and_postgresql_pass_the_scenarios() {
    let db = fresh_database(&env_var("LIVEOPS_TEST_PG_URL"), "liveops_split_pg");
    split_deployment(db, redis_db(5), 0, "split_pg").await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_over_redis_and_mariadb_pass_the_scenarios() {
    let db = fresh_database(&env_var("LIVEOPS_TEST_MYSQL_URL"), "liveops_split_my");
    split_deployment(db, redis_db(6), 1, "split_my").await;
}
