//! The Redis adapters over TLS (`rediss://`) against the TLS-only servers of
//! `scripts/services-tls.sh`: a single node and a Redis Cluster whose certificates chain to a test
//! CA. Trusting that CA, the hot state and rank suites pass and the Streams bus carries messages;
//! trusting another CA, or reaching the server under a name its certificate does not cover, every
//! call fails with a clear `Unavailable` (no panic, no hang). The plain URLs of
//! `scripts/services.sh` keep working in the same build.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::time::Duration;

use liveops_core::ports::{Bus, BusExt, BusOptions, Health, Message, PortError};
use liveops_redis::bus::RedisBus;
use liveops_redis::{RedisConn, RedisHotState, RedisRankStore};
use liveops_testkit::conformance;
use liveops_testkit::fixtures::server_env as env;

fn read(var: &str) -> Vec<u8> {
    let path = env(var);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{var}={path}: {e}"))
}

/// The test CA and an unrelated one.
fn ca() -> Vec<u8> {
    read("LIVEOPS_TEST_TLS_CA")
}

fn other_ca() -> Vec<u8> {
    read("LIVEOPS_TEST_TLS_OTHER_CA")
}

/// The same servers under a name their certificate does not cover.
fn wrong_host(url: &str) -> String {
    url.replace("127.0.0.1", "127.0.0.2")
}

fn prefix(tag: &str) -> String {
    format!("tls-{tag}-{:016x}:", rand::random::<u64>())
}

async fn trusted(url: &str) -> RedisConn {
    let conn = RedisConn::connect_with_ca(url, Some(&ca())).await.unwrap();
    conn.ping()
        .await
        .unwrap_or_else(|e| panic!("redis over TLS is not answering: {e}"));
    conn
}

/// Connecting is lazy, so a refused certificate shows on the first call: `Unavailable`, naming
/// the certificate problem and no password.
async fn assert_refused(conn: RedisConn, why: &str) {
    let started = std::time::Instant::now();
    let err = conn.ping().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PortError::Unavailable(_)), "{text}");
    assert!(
        text.to_lowercase().contains("certificate"),
        "the error should say the certificate was refused ({why}): {text}"
    );
    assert!(
        !text.contains("redis-tls-secret"),
        "password leaked: {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_over_tls_trusting_its_ca_passes_the_suites() {
    let conn = trusted(&env("LIVEOPS_TEST_REDIS_TLS_URL")).await;
    assert!(!conn.is_cluster());
    let hot = RedisHotState::new(conn.clone()).with_prefix(&prefix("hot"));
    conformance::hot::run_all(Arc::new(hot)).await;
    let ranks = RedisRankStore::new(conn).with_prefix(&prefix("rank"));
    conformance::rank::run_all(&ranks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_trusting_its_ca_passes_the_suites() {
    let conn = trusted(&env("LIVEOPS_TEST_REDIS_TLS_CLUSTER")).await;
    assert!(conn.is_cluster());
    let hot = RedisHotState::new(conn.clone()).with_prefix(&prefix("hot"));
    conformance::hot::run_all(Arc::new(hot)).await;
    let ranks = RedisRankStore::new(conn).with_prefix(&prefix("rank"));
    conformance::rank::run_all(&ranks).await;
}

#[tokio::test]
async fn another_ca_or_another_host_name_is_refused() {
    for url in [
        env("LIVEOPS_TEST_REDIS_TLS_URL"),
        env("LIVEOPS_TEST_REDIS_TLS_CLUSTER"),
    ] {
        let other = RedisConn::connect_with_ca(&url, Some(&other_ca()))
            .await
            .unwrap();
        assert_refused(other, "signed by another CA").await;
        let unnamed = RedisConn::connect_with_ca(&wrong_host(&url), Some(&ca()))
            .await
            .unwrap();
        assert_refused(unnamed, "issued for another name").await;
        // Without the CA, only Mozilla's roots are trusted: the test CA is not among them.
        let public_roots = RedisConn::connect(&url).await.unwrap();
        assert_refused(public_roots, "private CA not given").await;
    }
}

#[tokio::test]
async fn the_streams_bus_runs_over_tls_and_refuses_another_ca() {
    let url = env("LIVEOPS_TEST_REDIS_TLS_URL");
    let opts = BusOptions {
        visibility_timeout: Duration::from_secs(5),
        max_deliveries: 3,
    };
    let bus = RedisBus::connect_with_ca(&url, Some(&ca()), opts, 2)
        .await
        .unwrap();
    bus.healthcheck().await.unwrap();
    let topic = format!("tls-{:016x}", rand::random::<u64>());
    bus.ensure_group(&topic, "g").await.unwrap();
    let message = Message {
        id: "m1".into(),
        key: "player_tls".into(),
        payload: bytes::Bytes::from_static(b"over tls"),
    };
    bus.publish(&topic, vec![message]).await.unwrap();
    let got = bus
        .poll(&topic, "g", "c", 10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"over tls");

    let Err(err) = RedisBus::connect_with_ca(&url, Some(&other_ca()), opts, 2).await else {
        panic!("another CA is refused");
    };
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn plain_urls_still_work_in_a_tls_build() {
    for var in ["LIVEOPS_TEST_REDIS_URL", "LIVEOPS_TEST_REDIS_CLUSTER"] {
        // A CA given for TLS servers does not get in the way of plain ones.
        let conn = RedisConn::connect_with_ca(&env(var), Some(&ca()))
            .await
            .unwrap();
        conn.ping().await.unwrap();
    }
}
