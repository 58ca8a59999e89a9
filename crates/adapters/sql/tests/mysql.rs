//! The MySQL / MariaDB repository against a real server (`LIVEOPS_TEST_MYSQL_URL`): the repository
//! conformance suite, concurrent migrations, scheme dispatch, collation, and an outage.

#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used)] // tests may unwrap

mod sql_support;

use futures_util::future::BoxFuture;
use liveops_core::ports::PortError;
use liveops_sql::MySqlRepository;
use sql_support::server::{self, release_with, Release, Server};

struct MySql;

/// The named lock the repository's migrations take (per database).
const MIGRATION_LOCK: &str = "CONCAT('liveops_migrate_', CRC32(DATABASE()))";

impl Server for MySql {
    type DB = sqlx::MySql;
    type Repo = MySqlRepository;
    const VAR: &'static str = "LIVEOPS_TEST_MYSQL_URL";
    const MIGRATIONS: &'static str = "migrations/mysql";
    /// 0008 widens the outcome columns, MySQL's MEDIUMTEXT being the only such bound.
    const VERSIONS: &'static [i64] = &[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
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

    fn drop_database(db: &str) -> String {
        format!("DROP DATABASE {db}")
    }
}

server::server_tests!(MySql);
