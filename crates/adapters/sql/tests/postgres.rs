//! The PostgreSQL repository against a real server (`LIVEOPS_TEST_PG_URL`): the repository
//! conformance suite, concurrent migrations, scheme dispatch, collation, and an outage.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // tests may unwrap

mod sql_support;

use futures_util::future::BoxFuture;
use liveops_core::ports::PortError;
use liveops_sql::PgRepository;
use sql_support::server::{self, release_with, Release, Server};

struct Postgres;

impl Server for Postgres {
    type DB = sqlx::Postgres;
    type Repo = PgRepository;
    const VAR: &'static str = "LIVEOPS_TEST_PG_URL";
    const SCHEMES: &'static [&'static str] = &["postgres", "postgresql", "PostgreSQL"];
    const FOREIGN: Option<&'static str> = if cfg!(feature = "mysql") {
        Some("mysql")
    } else {
        None
    };
    const TABLES: &'static str = "SELECT count(*) FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'";

    fn open(url: String) -> BoxFuture<'static, Result<PgRepository, PortError>> {
        Box::pin(async move { PgRepository::open(&url).await })
    }

    fn pool(repo: &PgRepository) -> &sqlx::PgPool {
        repo.pool()
    }

    /// Holds a lock on the history table, in a transaction of its own.
    fn hold_migrations(url: String) -> BoxFuture<'static, Release> {
        Box::pin(async move {
            let other = sqlx::PgPool::connect(&url).await.unwrap();
            let mut tx = other.begin().await.unwrap();
            sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            release_with(move || async move {
                tx.commit().await.unwrap();
                other.close().await;
            })
        })
    }

    fn drop_database(db: &str) -> String {
        format!("DROP DATABASE {db} WITH (FORCE)")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_repository_passes_the_repository_suite() {
    server::passes_the_repository_suite::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_repository_passes_the_live_event_suite() {
    server::passes_the_live_event_suite::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_of_a_fresh_database_apply_once_and_wait_for_each_other() {
    server::migrations_apply_once_and_wait_for_each_other::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_repository_picks_postgres_by_scheme() {
    server::picks_it_by_scheme::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_case_sensitive_and_large_snapshots_fit() {
    server::ids_are_case_sensitive_and_large_snapshots_fit::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_server_that_is_not_there_fails_fast() {
    server::opening_a_missing_server_fails_fast::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_unavailable_quickly_and_the_pool_recovers() {
    server::outage_then_recovery::<Postgres>().await;
}
