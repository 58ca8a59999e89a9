//! The MySQL / MariaDB repository against a real server (`LIVEOPS_TEST_MYSQL_URL`): the repository
//! conformance suite, concurrent migrations, scheme dispatch, collation, and an outage.

#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used)] // tests may unwrap

mod sql_support;

use std::time::{Duration, Instant};

use liveops_core::ports::PortError;

use liveops_sql::MySqlRepository;
use liveops_testkit::conformance;
use sql_support::{address, server_url, suffix, with_address, with_database, Proxy};
use sqlx::mysql::MySqlPool;

const VAR: &str = "LIVEOPS_TEST_MYSQL_URL";

async fn admin_of(url: &str) -> sqlx::mysql::MySqlConnection {
    sqlx::Connection::connect(url).await.unwrap()
}

async fn migrated(url: &str) -> MySqlRepository {
    let repo = MySqlRepository::open(url).await.unwrap();
    repo.migrate().await.unwrap();
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_repository_passes_the_repository_suite() {
    let repo = migrated(&server_url(VAR)).await;
    conformance::stores::run_all(&repo).await;
    // Twice on one database: the suite shares a database between runs.
    conformance::stores::run_all(&repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_repository_passes_the_live_event_suite() {
    let repo = std::sync::Arc::new(migrated(&server_url(VAR)).await);
    conformance::live::run_all(repo.clone()).await;
    // Twice on one database: the suite shares a database between runs.
    conformance::live::run_all(repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_of_a_fresh_database_apply_once_and_wait_for_each_other() {
    let url = server_url(VAR);
    let admin = MySqlPool::connect(&url).await.unwrap();
    let db = format!("liveops_migrate_{}", suffix());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let fresh = with_database(&url, &db);

    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let fresh = fresh.clone();
            tokio::spawn(async move {
                let repo = MySqlRepository::open(&fresh).await?;
                repo.migrate().await?;
                Ok::<_, PortError>(repo)
            })
        })
        .collect();
    let mut repos = Vec::new();
    for t in tasks {
        repos.push(t.await.unwrap().unwrap());
    }
    // And again, now that everything is applied.
    repos[0].migrate().await.unwrap();

    let pool = repos[0].pool();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(applied, [(1, true), (3, true), (4, true)]);
    let (tables,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(tables, 9 + 14, "0001's tables and 0003's");
    conformance::stores::healthcheck(&repos[1]).await;
    sql_support::purge_removes_only_rows_past_the_cutoff(&repos[1]).await;

    // Another migrator holding the migration lock for 3 s (longer than the 2 s row-lock bound):
    // migrating waits for it, then succeeds.
    let mut other = admin_of(&fresh).await;
    let (got,): (Option<i64>,) =
        sqlx::query_as("SELECT GET_LOCK(CONCAT('liveops_migrate_', CRC32(DATABASE())), 0)")
            .fetch_one(&mut other)
            .await
            .unwrap();
    assert_eq!(got, Some(1));
    let started = Instant::now();
    let (waited, _) = tokio::join!(repos[2].migrate(), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        sqlx::query("SELECT RELEASE_LOCK(CONCAT('liveops_migrate_', CRC32(DATABASE())))")
            .execute(&mut other)
            .await
            .unwrap();
    });
    waited.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(2_900),
        "{:?}",
        started.elapsed()
    );
    drop(other);

    for r in repos {
        r.pool().close().await;
    }
    sqlx::query(&format!("DROP DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_repository_picks_mysql_by_scheme() {
    let url = server_url(VAR);
    let direct = migrated(&url).await;
    // The other protocol does not speak to this server.
    let foreign = cfg!(feature = "postgres").then_some("postgres");
    sql_support::picks_backend_by_scheme(&url, &["mysql", "mariadb", "MariaDB"], &direct, foreign)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_case_sensitive_and_large_snapshots_fit() {
    let repo = migrated(&server_url(VAR)).await;
    sql_support::ids_are_case_sensitive_and_sorted_by_bytes(&repo).await;
    sql_support::large_snapshots_round_trip(&repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_server_that_is_not_there_fails_fast() {
    sql_support::opening_a_missing_server_fails_fast(&server_url(VAR), |url| async move {
        MySqlRepository::open(&url).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_unavailable_quickly_and_the_pool_recovers() {
    let url = server_url(VAR);
    migrated(&url).await;
    let proxy = Proxy::start(&address(&url)).await;
    let repo = MySqlRepository::open(&with_address(&url, &proxy.address))
        .await
        .unwrap();
    sql_support::outage_then_recovery(&repo, &proxy).await;
}
