//! The PostgreSQL repository against a real server (`LIVEOPS_TEST_PG_URL`): the repository
//! conformance suite, concurrent migrations, scheme dispatch, collation, and an outage.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // tests may unwrap

mod sql_support;

use futures_util::future::BoxFuture;
use liveops_core::ports::PortError;
use liveops_sql::{PgRepository, Purge};
use sql_support::server::{self, release_with, Release, Server, Walk, Walked};

struct Postgres;

impl Server for Postgres {
    type DB = sqlx::Postgres;
    type Repo = PgRepository;
    const VAR: &'static str = "LIVEOPS_TEST_PG_URL";
    const MIGRATIONS: &'static str = "migrations/postgres";
    const VERSIONS: &'static [i64] = &[
        1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    ];
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

    fn purge_alone<'a>(repo: &'a PgRepository, purge: Purge<'a>, walk: Walk<'a>) -> Walked<'a> {
        Box::pin(repo.purge_alone(purge, walk))
    }

    fn drop_database(db: &str) -> String {
        format!("DROP DATABASE {db} WITH (FORCE)")
    }

    const EXPLAIN: &'static str = "EXPLAIN";
    const ANALYZE: &'static str = "VACUUM ANALYZE";
    const INVENTORY_KEY: &'static str = "inventory_pkey";

    /// PostgreSQL picks by its statistics (a sequential scan under the `Limit` when the player's
    /// rows are most of the table, an index scan otherwise): whichever it picks streams rows
    /// into the `Limit`, unless a sort or a bitmap (every matching entry first) comes between.
    fn stops_at_its_limit(plan: &str, _index: &str) -> bool {
        plan.contains("Limit") && !plan.contains("Sort") && !plan.contains("Bitmap")
    }

    /// Two backward index scans (`inbox_messages_by_position` for the player's side, 0016's
    /// `inbox_messages_to_all` for everyone's) merged in order: no sort step and no bitmap.
    fn reads_each_inbox_side_in_order(plan: &str) -> bool {
        plan.matches("Index Scan Backward using inbox_messages_")
            .count()
            == 2
            && !plan.contains("Sort  (cost")
            && !plan.contains("Bitmap")
    }
}

server::server_tests!(Postgres);

/// Thousands of expired messages to every player above the live ones (kept for retention): an
/// inbox page reads everyone's side down `inbox_messages_live_to_all` (0017) with the expiry in
/// the index's condition, so the expired ones are passed over in the index, their rows never
/// read. (MariaDB 10.11 compares no condition in a backward index scan, so an index with the
/// expiry would not spare it the rows: not checked there.)
#[tokio::test]
async fn an_inbox_page_passes_expired_broadcasts_over_in_the_index() {
    server::expired_broadcasts_in_the_index::<Postgres>(|plan| {
        plan.lines()
            .skip_while(|l| !l.contains("Index Scan Backward using inbox_messages_live_to_all"))
            .nth(1)
            .is_some_and(|cond| cond.contains("Index Cond") && cond.contains("expires_at >"))
    })
    .await;
}

/// The scheduler's read, among years of finished campaigns: each half along its index (the
/// live ones whose end has come along `campaigns_by_end`, 0018), no sequential scan of the
/// campaigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_campaigns_are_read_along_their_indexes() {
    let db = server::FreshDb::<Postgres>::new("due_plans").await;
    let repo = PgRepository::open(&db.url).await.unwrap();
    repo.migrate().await.unwrap();
    let plan = sql_support::due_campaigns_plan(repo.pool(), "EXPLAIN", "VACUUM ANALYZE").await;
    assert!(plan.contains("campaigns_by_end"), "{plan}");
    assert!(plan.contains("campaigns_by_state"), "{plan}");
    assert!(!plan.contains("Seq Scan on campaigns"), "{plan}");
    db.drop(repo.pool()).await;
}
