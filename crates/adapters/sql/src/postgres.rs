//! PostgreSQL's [`Dialect`] and how [`PgRepository`] connects.
//!
//! Transactions run at PostgreSQL's default READ COMMITTED: every write is an atomic upsert or
//! an insert guarded by a unique key, and a claim locks its reward row (`FOR UPDATE`). A player's
//! progress is read in one REPEATABLE READ, READ ONLY transaction so its tables agree. Text
//! columns use the "C" collation: case-sensitive ids, ordered by bytes as on SQLite and MySQL.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use liveops_core::PortError;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use sqlx::Postgres;

use super::dialect::{
    db_error, number_placeholders, server, tolerating_newer, Dialect, SessionLock, Upserts,
    ON_CONFLICT,
};
use super::replica::ReplicaPosition;
use super::repository::SqlRepository;

/// The repository on PostgreSQL.
pub type PgRepository = SqlRepository<Postgres>;

static MIGRATOR: Migrator = tolerating_newer(sqlx::migrate!("./migrations/postgres"));

impl Dialect for Postgres {
    const MAX_BIND: usize = server::MAX_BIND;
    const BEGIN_WRITE: Option<&'static str> = None;
    const BEGIN_READ: Option<&'static str> =
        Some("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    const LOCK_ROWS: &'static str = " FOR UPDATE";
    const LOCK_SHARED: &'static str = " FOR SHARE";
    const INTEGER: &'static str = "BIGINT";
    const UPSERTS: &'static Upserts = &ON_CONFLICT;
    const CALL_TIMEOUT: Option<Duration> = Some(server::CALL_TIMEOUT);

    // sqlx's advisory lock wait is subject to `lock_timeout`: let a replica queue behind
    // another one's migration instead of failing after the 2 s meant for row locks.
    const MIGRATION_SESSION: Option<&'static str> = Some("SET lock_timeout = '10min'");
    const MIGRATION_LOCK: Option<&'static SessionLock> = None;
    // Advisory locks are the database's; the two-key form (class, hash of the name) keeps clear
    // of sqlx's one-key migration lock.
    const PURGE_LOCK: Option<&'static SessionLock> = Some(&SessionLock {
        take: "SELECT CAST(CASE WHEN pg_try_advisory_lock(1280266325, hashtext(?)) \
               THEN 1 ELSE 0 END AS BIGINT)",
        release: "SELECT pg_advisory_unlock(1280266325, hashtext(?))",
    });
    const REPLICA_POSITION: Option<&'static ReplicaPosition> = Some(&ReplicaPosition {
        // Flushed WAL is what the primary sends to its standbys.
        primary: "SELECT pg_current_wal_flush_lsn()::text",
        // NULL (not a replica, or nothing replayed yet) is "not replayed".
        replayed: "SELECT CAST(CASE WHEN pg_last_wal_replay_lsn() >= CAST(? AS pg_lsn) \
                   THEN 1 ELSE 0 END AS BIGINT)",
    });

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn placeholders(sql: &'static str) -> Cow<'static, str> {
        Cow::Owned(number_placeholders(sql))
    }
}

crate::dialect::text_as_string!(Postgres);

impl SqlRepository<Postgres> {
    /// Connects to the server at `url` (`postgres://user:pass@host:5432/db`, `postgresql://..`
    /// too, with any libpq-style parameters sqlx understands, e.g. `sslmode`). Fails with
    /// `Unavailable` within about 2 s when the server cannot be reached. Call
    /// [`SqlRepository::migrate`] next.
    ///
    /// Each session waits at most 2 s for a row lock (`lock_timeout`); pooled connections that
    /// broke while the server was away are replaced on the next call.
    pub async fn open(url: &str) -> Result<Self, PortError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| PortError::Unavailable(format!("bad PostgreSQL URL: {e}")))?
            .options([("lock_timeout", format!("{}s", server::LOCK_WAIT_S))]);
        if options.get_application_name().is_none() {
            options = options.application_name("liveops");
        }
        let pool = server::pool_options::<Postgres>()
            .connect_with(options)
            .await
            .map_err(db_error::<Postgres>)?;
        Ok(Self::from_pool(pool))
    }

    /// A pool on the read replica at `url`, connecting on first use (a replica that is down at
    /// start only sends the reads to the primary); see [`SqlRepository::with_replica`].
    pub fn replica_pool(url: &str) -> Result<sqlx::PgPool, PortError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| PortError::Unavailable(format!("bad PostgreSQL replica URL: {e}")))?;
        if options.get_application_name().is_none() {
            options = options.application_name("liveops-reads");
        }
        Ok(server::pool_options::<Postgres>().connect_lazy_with(options))
    }
}

crate::stores::impl_stores!(Postgres);
crate::live_stores::impl_live_stores!(Postgres);
