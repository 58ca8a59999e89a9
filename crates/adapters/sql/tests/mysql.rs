//! The MySQL / MariaDB repository against a real server (`LIVEOPS_TEST_MYSQL_URL`): the repository
//! conformance suite, concurrent migrations, migrations that meet a lock or that a start left
//! unfinished, scheme dispatch, collation, and an outage.

#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used)] // tests may unwrap

mod sql_support;

use futures_util::future::BoxFuture;
use liveops_core::ports::PortError;
use liveops_sql::{MySqlRepository, Purge};
use sql_support::server::{self, release_with, Release, Server, Walk, Walked};

struct MySql;

/// The named lock the repository's migrations take (per database).
const MIGRATION_LOCK: &str = "CONCAT('liveops_migrate_', CRC32(DATABASE()))";

impl Server for MySql {
    type DB = sqlx::MySql;
    type Repo = MySqlRepository;
    const VAR: &'static str = "LIVEOPS_TEST_MYSQL_URL";
    const MIGRATIONS: &'static str = "migrations/mysql";
    /// 0008 widens the outcome columns, MySQL's MEDIUMTEXT being the only such bound.
    const VERSIONS: &'static [i64] = &[
        1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21,
    ];
    const SCHEMES: &'static [&'static str] = &["mysql", "mariadb", "MariaDB"];
    const FOREIGN: Option<&'static str> = if cfg!(feature = "postgres") {
        Some("postgres")
    } else {
        None
    };
    const TABLES: &'static str = "SELECT count(*) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name <> '_sqlx_migrations'";

    fn open(url: String) -> BoxFuture<'static, Result<MySqlRepository, PortError>> {
        Box::pin(async move { MySqlRepository::open(&url).await })
    }

    fn pool(repo: &MySqlRepository) -> &sqlx::MySqlPool {
        repo.pool()
    }

    /// Takes the repository's named migration lock in a session of its own.
    fn hold_migrations(url: String) -> BoxFuture<'static, Release> {
        Box::pin(async move {
            let other = sqlx::MySqlPool::connect(&url).await.unwrap();
            let mut session = other.acquire().await.unwrap();
            let (got,): (Option<i64>,) =
                sqlx::query_as(&format!("SELECT GET_LOCK({MIGRATION_LOCK}, 0)"))
                    .fetch_one(&mut *session)
                    .await
                    .unwrap();
            assert_eq!(got, Some(1));
            release_with(move || async move {
                sqlx::query(&format!("SELECT RELEASE_LOCK({MIGRATION_LOCK})"))
                    .execute(&mut *session)
                    .await
                    .unwrap();
                drop(session);
                other.close().await;
            })
        })
    }

    fn purge_alone<'a>(repo: &'a MySqlRepository, purge: Purge<'a>, walk: Walk<'a>) -> Walked<'a> {
        Box::pin(repo.purge_alone(purge, walk))
    }

    fn drop_database(db: &str) -> String {
        format!("DROP DATABASE {db}")
    }

    const EXPLAIN: &'static str = "EXPLAIN FORMAT=JSON";
    const ANALYZE: &'static str = "ANALYZE TABLE";
    const INVENTORY_KEY: &'static str = "PRIMARY";

    /// MySQL and MariaDB read along `index` (a `ref` or `range` access that stops at the
    /// `LIMIT`), without a filesort.
    fn stops_at_its_limit(plan: &str, index: &str) -> bool {
        plan.contains(&format!("\"key\": \"{index}\"")) && !plan.contains("filesort")
    }

    /// Each side reads `inbox_messages` along `inbox_messages_by_position` (the player's id a
    /// `ref`, whose order is the position's), and a filesort sorts only what the sides gave (a
    /// derived table), never the table's rows.
    fn reads_each_inbox_side_in_order(plan: &str) -> bool {
        let plan: serde_json::Value = serde_json::from_str(plan).unwrap();
        let nodes = plan_nodes(&plan);
        let sides: Vec<_> = nodes
            .iter()
            .filter(|n| n["table_name"] == "inbox_messages")
            .collect();
        let sorted = nodes.iter().filter_map(|n| n.get("filesort"));
        sides.len() == 2
            && sides
                .iter()
                .all(|n| n["key"] == "inbox_messages_by_position")
            && sorted
                .map(|f| f["table"]["table_name"].as_str().unwrap_or_default())
                .all(|table| table.starts_with("<derived"))
    }
}

server::server_tests!(MySql);

/// Every object of a JSON plan (`EXPLAIN FORMAT=JSON`), the plan's own first.
fn plan_nodes(plan: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(node: &'a serde_json::Value, found: &mut Vec<&'a serde_json::Value>) {
        match node {
            serde_json::Value::Object(fields) => {
                found.push(node);
                fields.values().for_each(|v| walk(v, found));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut nodes = Vec::new();
    walk(plan, &mut nodes);
    nodes
}

/// Migrations that meet a lock, or that a start left unfinished (ADR 0030).
mod unfinished_migrations {
    use std::path::Path;
    use std::time::Duration;

    use liveops_core::ports::PortError;
    use liveops_sql::dialect::Text;
    use liveops_sql::migrate_mysql::LockRetry;
    use liveops_sql::MySqlRepository;
    use sqlx::migrate::{MigrateError, Migrator};
    use sqlx::{Connection, MySqlConnection, MySqlPool};
    use tokio::time::Instant;

    /// A database of its own on the test server, dropped by [`Db::drop`].
    type Db = super::server::FreshDb<super::MySql>;

    /// The release's MySQL migrations as sqlx reads them.
    async fn migrations() -> Migrator {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/mysql");
        Migrator::new(path).await.unwrap()
    }

    /// The migrations up to `version` applied as the release before applied them: by sqlx's
    /// migrator, the whole file in one request.
    async fn release_before(pool: &MySqlPool, version: i64) -> Result<(), MigrateError> {
        let before = super::sql_support::migrator_up_to("migrations/mysql", version).await;
        before.run(pool).await
    }

    /// A database of its own (named after `tag`) as the release before left it with the
    /// migrations up to `version`, and the repository on it.
    async fn at_release_before(tag: &str, version: i64) -> (Db, MySqlRepository) {
        let db = Db::new(tag).await;
        let repo = MySqlRepository::open(&db.url).await.unwrap();
        release_before(repo.pool(), version).await.unwrap();
        (db, repo)
    }

    /// The schema of the database `pool` is on (tables, columns, indexes) and its migration
    /// history (version, description, success, checksum), one line each.
    async fn schema(pool: &MySqlPool) -> Vec<String> {
        const READS: [&str; 4] = [
            "SELECT CONCAT_WS('|', table_name, engine, table_collation) \
             FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY table_name",
            "SELECT CONCAT_WS('|', table_name, column_name, ordinal_position, column_type, \
             is_nullable, IFNULL(column_default, '-'), extra, IFNULL(collation_name, '-')) \
             FROM information_schema.columns WHERE table_schema = DATABASE() \
             ORDER BY table_name, ordinal_position",
            "SELECT CONCAT_WS('|', table_name, index_name, non_unique, seq_in_index, \
             column_name) FROM information_schema.statistics WHERE table_schema = DATABASE() \
             ORDER BY table_name, index_name, seq_in_index",
            "SELECT CONCAT_WS('|', version, description, success, HEX(checksum)) \
             FROM _sqlx_migrations ORDER BY version",
        ];
        let mut lines = Vec::new();
        for read in READS {
            let rows: Vec<(Text,)> = sqlx::query_as(read).fetch_all(pool).await.unwrap();
            lines.extend(rows.into_iter().map(|(line,)| line.0));
        }
        lines
    }

    /// The schema and history of a database every migration of the release built from scratch,
    /// by sqlx as the release before ran them.
    async fn reference() -> Vec<String> {
        let db = Db::new("reference").await;
        let pool = MySqlPool::connect(&db.url).await.unwrap();
        release_before(&pool, i64::MAX).await.unwrap();
        let lines = schema(&pool).await;
        db.drop(&pool).await;
        lines
    }

    /// A session that read `table` in a transaction it keeps open, as a long read of another
    /// process does: it holds the table's metadata lock until it ends.
    async fn reader_of(url: &str, table: &str) -> MySqlConnection {
        let mut session = MySqlConnection::connect(url).await.unwrap();
        sqlx::raw_sql("BEGIN").execute(&mut session).await.unwrap();
        sqlx::raw_sql(&format!("SELECT 1 FROM {table} LIMIT 1"))
            .execute(&mut session)
            .await
            .unwrap();
        session
    }

    /// Ends `reader`'s transaction.
    async fn end(mut reader: MySqlConnection) {
        sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
        reader.close().await.unwrap();
    }

    /// No attempt after the first that waited for a lock.
    const NO_RETRY: LockRetry = LockRetry {
        pause: Duration::from_secs(1),
        give_up_after: Duration::ZERO,
    };

    /// The versions in the migration history and whether each succeeded.
    async fn history(pool: &MySqlPool) -> Vec<(i64, bool)> {
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// `versions`, each successful.
    fn succeeded(versions: &[i64]) -> Vec<(i64, bool)> {
        versions.iter().map(|v| (*v, true)).collect()
    }

    /// The inbox counter's rows.
    async fn counter(pool: &MySqlPool) -> Vec<(i32, i64)> {
        sqlx::query_as("SELECT id, last_position FROM inbox_positions ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    /// 0012 indexes `scores`; a read of it stays open 8 s (longer than one 5 s lock wait): the
    /// start retries and completes once the read ends, and a read of the table meanwhile waits
    /// for one attempt at most, not for the whole migration.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_migration_blocked_by_an_open_read_is_retried_until_the_read_ends() {
        let reference = reference().await;
        let (db, repo) = at_release_before("blocked", 11).await;
        let reader = reader_of(&db.url, "scores").await;
        let started = Instant::now();
        let pool = repo.pool().clone();
        let (migrated, queued) = tokio::join!(repo.migrate(), async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let asked = Instant::now();
            sqlx::query("SELECT COUNT(*) FROM scores")
                .execute(&pool)
                .await
                .unwrap();
            let queued = asked.elapsed();
            tokio::time::sleep_until(started + Duration::from_secs(8)).await;
            end(reader).await;
            queued
        });
        migrated.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(8));
        assert!(queued < Duration::from_millis(5_500), "{queued:?}");
        assert_eq!(schema(repo.pool()).await, reference);
        db.drop(repo.pool()).await;
    }

    /// The release before applied 0010 as one request: its table and counter committed, then
    /// its `ALTER TABLE` timed out behind a read of the inbox, leaving the migration dirty for
    /// every later start of that release. The next start of this one completes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_0010_the_release_before_left_dirty_is_completed_by_the_next_start() {
        let reference = reference().await;
        let (db, repo) = at_release_before("dirty", 9).await;
        let reader = reader_of(&db.url, "inbox_messages").await;
        let failed = release_before(repo.pool(), 10).await;
        assert!(
            matches!(failed, Err(MigrateError::ExecuteMigration(_, 10))),
            "{failed:?}"
        );
        end(reader).await;
        let again = release_before(repo.pool(), 10).await;
        assert!(matches!(again, Err(MigrateError::Dirty(10))), "{again:?}");
        assert_eq!(counter(repo.pool()).await, [(1, 0)]);

        repo.migrate().await.unwrap();
        assert_eq!(schema(repo.pool()).await, reference);
        assert_eq!(counter(repo.pool()).await, [(1, 0)], "the counter once");
        repo.migrate().await.unwrap();
        db.drop(repo.pool()).await;
    }

    /// 0010 left dirty after none, one, two or all three of its statements with an effect (the
    /// table, the counter's row, the column): the next start completes it, each effect once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_0010_left_dirty_after_any_of_its_statements_is_completed_by_the_next_start() {
        let reference = reference().await;
        let all = migrations().await;
        let m = all.iter().find(|m| m.version == 10).unwrap();
        // The file's statements end at its only semicolons; the first sets the session's wait.
        let effects: Vec<&str> = m
            .sql
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .skip(1)
            .collect();
        assert_eq!(effects.len(), 3, "{effects:?}");
        for done in 0..=effects.len() {
            let (db, repo) = at_release_before("partial", 9).await;
            sqlx::query(
                "INSERT INTO _sqlx_migrations \
                 (version, description, success, checksum, execution_time) \
                 VALUES (?, ?, FALSE, ?, -1)",
            )
            .bind(m.version)
            .bind(&*m.description)
            .bind(&*m.checksum)
            .execute(repo.pool())
            .await
            .unwrap();
            for statement in &effects[..done] {
                sqlx::raw_sql(statement).execute(repo.pool()).await.unwrap();
            }
            repo.migrate().await.unwrap();
            assert_eq!(schema(repo.pool()).await, reference, "after {done}");
            assert_eq!(counter(repo.pool()).await, [(1, 0)], "after {done}");
            db.drop(repo.pool()).await;
        }
    }

    /// 0012 still blocked when its attempts end: the start fails, and as its one statement with
    /// an effect never ran, nothing of 0012 stays (no history row: the release before, sqlx,
    /// still starts). Once the read ends, the next start applies it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_migration_still_blocked_when_its_attempts_end_fails_leaving_nothing_behind() {
        let reference = reference().await;
        let (db, repo) = at_release_before("stillblocked", 11).await;
        let before = history(repo.pool()).await;
        let reader = reader_of(&db.url, "scores").await;
        let failed = repo.migrate_with(NO_RETRY).await;
        let Err(PortError::Unavailable(why)) = &failed else {
            panic!("{failed:?}")
        };
        assert!(
            why.contains("migration 12") && why.contains("1205"),
            "{why}"
        );
        assert!(why.contains("the next start completes"), "{why}");
        assert_eq!(history(repo.pool()).await, before);
        release_before(repo.pool(), 11).await.unwrap();

        end(reader).await;
        repo.migrate().await.unwrap();
        assert_eq!(schema(repo.pool()).await, reference);
        db.drop(repo.pool()).await;
    }

    /// 0011 numbers the messages (committed), then its first index waits for a read of the
    /// inbox and the start fails: the migration stays unfinished (sqlx would refuse every start
    /// from then on), and the next start builds the indexes without numbering again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_migration_that_fails_half_way_on_a_lock_is_completed_by_the_next_start() {
        let reference = reference().await;
        let (db, repo) = at_release_before("halfway", 10).await;
        sqlx::raw_sql(
            "INSERT INTO inbox_messages (message_id, player_id, campaign_id, title, body, \
             attachments, created_at, expires_at) \
             VALUES ('msg_old', 'p_1', NULL, 'Old', 'Old', '[]', 10, 4000000000000)",
        )
        .execute(repo.pool())
        .await
        .unwrap();
        let positions = || async {
            let rows: Vec<(Option<i64>,)> = sqlx::query_as("SELECT position FROM inbox_messages")
                .fetch_all(repo.pool())
                .await
                .unwrap();
            rows
        };
        let reader = reader_of(&db.url, "inbox_messages").await;
        let failed = repo.migrate_with(NO_RETRY).await;
        assert!(
            matches!(&failed, Err(PortError::Unavailable(why)) if why.contains("migration 11")),
            "{failed:?}"
        );
        let mut unfinished = succeeded(&[1, 3, 4, 5, 6, 7, 8, 9, 10]);
        unfinished.push((11, false));
        assert_eq!(history(repo.pool()).await, unfinished);
        assert_eq!(positions().await, [(Some(-1),)], "numbered");
        let sqlx_start = release_before(repo.pool(), 11).await;
        assert!(
            matches!(sqlx_start, Err(MigrateError::Dirty(11))),
            "{sqlx_start:?}"
        );

        end(reader).await;
        repo.migrate().await.unwrap();
        assert_eq!(schema(repo.pool()).await, reference);
        assert_eq!(positions().await, [(Some(-1),)], "numbered once");
        db.drop(repo.pool()).await;
    }
}

/// The scheduler's read, among years of finished campaigns: each half reads `campaigns` along
/// an index (the live ones whose end has come along `campaigns_by_end`, 0018), a `range` or
/// `ref` access, never the whole table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_campaigns_are_read_along_their_indexes() {
    let db = server::FreshDb::<MySql>::new("due_plans").await;
    let repo = MySqlRepository::open(&db.url).await.unwrap();
    repo.migrate().await.unwrap();
    let plan =
        sql_support::due_campaigns_plan(repo.pool(), "EXPLAIN FORMAT=JSON", "ANALYZE TABLE").await;
    let json: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let nodes = plan_nodes(&json);
    let reads: Vec<_> = nodes
        .iter()
        .filter(|n| n["table_name"] == "campaigns")
        .collect();
    let indexed = ["range", "ref"];
    assert_eq!(reads.len(), 2, "{plan}");
    assert!(
        reads
            .iter()
            .all(|n| indexed.contains(&n["access_type"].as_str().unwrap_or_default())),
        "{plan}"
    );
    assert!(
        reads.iter().any(|n| n["key"] == "campaigns_by_end"),
        "{plan}"
    );
    db.drop(repo.pool()).await;
}
