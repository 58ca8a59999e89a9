//! The PostgreSQL repository against a real server (`LIVEOPS_TEST_PG_URL`): the repository
//! conformance suite, concurrent migrations, scheme dispatch, collation, and an outage.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // tests may unwrap

mod sql_support;

use std::time::{Duration, Instant};

use liveops_core::ports::PortError;

use liveops_sql::PgRepository;
use liveops_testkit::conformance;
use sql_support::{address, server_url, suffix, with_address, with_database, Proxy};
use sqlx::postgres::PgPool;

const VAR: &str = "LIVEOPS_TEST_PG_URL";

async fn admin_of(url: &str) -> sqlx::postgres::PgConnection {
    sqlx::Connection::connect(url).await.unwrap()
}

async fn migrated(url: &str) -> PgRepository {
    let repo = PgRepository::open(url).await.unwrap();
    repo.migrate().await.unwrap();
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_repository_passes_the_repository_suite() {
    let repo = migrated(&server_url(VAR)).await;
    conformance::stores::run_all(&repo).await;
    // Twice on one database: the suite shares a database between runs.
    conformance::stores::run_all(&repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_repository_passes_the_live_event_suite() {
    let repo = std::sync::Arc::new(migrated(&server_url(VAR)).await);
    conformance::live::run_all(repo.clone()).await;
    // Twice on one database: the suite shares a database between runs.
    conformance::live::run_all(repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_of_a_fresh_database_apply_once_and_wait_for_each_other() {
    let url = server_url(VAR);
    let admin = PgPool::connect(&url).await.unwrap();
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
                let repo = PgRepository::open(&fresh).await?;
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
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(tables, 9 + 14, "0001's tables and 0003's");
    conformance::stores::healthcheck(&repos[1]).await;
    sql_support::purge_removes_only_rows_past_the_cutoff(&repos[1]).await;

    // Another migrator holding on (here: a lock on the history table for 3 s, longer than the
    // 2 s row-lock bound of ordinary sessions): migrating waits for it, then succeeds.
    let mut other = admin_of(&fresh).await;
    let mut tx = sqlx::Connection::begin(&mut other).await.unwrap();
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let started = Instant::now();
    let (waited, _) = tokio::join!(repos[2].migrate(), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.commit().await.unwrap();
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
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_repository_picks_postgres_by_scheme() {
    let url = server_url(VAR);
    let direct = migrated(&url).await;
    // The other protocol does not speak to this server.
    let foreign = cfg!(feature = "mysql").then_some("mysql");
    sql_support::picks_backend_by_scheme(
        &url,
        &["postgres", "postgresql", "PostgreSQL"],
        &direct,
        foreign,
    )
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
        PgRepository::open(&url).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_unavailable_quickly_and_the_pool_recovers() {
    let url = server_url(VAR);
    migrated(&url).await;
    let proxy = Proxy::start(&address(&url)).await;
    let repo = PgRepository::open(&with_address(&url, &proxy.address))
        .await
        .unwrap();
    sql_support::outage_then_recovery(&repo, &proxy).await;
}
