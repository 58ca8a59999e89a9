//! MySQL's and MariaDB's [`Dialect`] and how [`MySqlRepository`] connects. What differs from the
//! other backends and why: `docs/adr/0013-mysql-quirks.md`.

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use liveops_core::{PortError, PortResult};
use sqlx::decode::Decode;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlTypeInfo, MySqlValueRef};
use sqlx::{Executor, MySql, Type};

use super::dialect::{db_error, server, tolerating_newer, Dialect, SessionLock, Text, Upserts};
use super::repository::SqlRepository;

/// The repository on MySQL or MariaDB.
pub type MySqlRepository = SqlRepository<MySql>;

static MIGRATOR: Migrator = tolerating_newer(sqlx::migrate!("./migrations/mysql"));

/// MySQL and MariaDB: `ON DUPLICATE KEY UPDATE`. Assignments apply left to right, and each one
/// here reads only its own column, so every right-hand side sees the row as it was (a snapshot's
/// `is_final`, which the others read, is assigned last).
pub const ON_DUPLICATE_KEY: Upserts = Upserts {
    add_xp: " ON DUPLICATE KEY UPDATE xp = xp + VALUES(xp), \
             updated_at = GREATEST(updated_at, VALUES(updated_at))",
    returning_xp: None,
    add_items: " ON DUPLICATE KEY UPDATE quantity = quantity + VALUES(quantity)",
    keep_reward: " ON DUPLICATE KEY UPDATE reward_id = reward_id",
    add_score: " ON DUPLICATE KEY UPDATE score = score + VALUES(score)",
    returning_scores: None,
    // Assignments run in order and later ones see earlier results: `taken_at` changes last
    // but one, after `entries` compared against its old value.
    replace_snapshot: " ON DUPLICATE KEY UPDATE \
                       entries = IF(is_final = 0 OR (VALUES(is_final) = 1 \
                         AND VALUES(taken_at) > taken_at), VALUES(entries), entries), \
                       taken_at = IF(is_final = 0 OR (VALUES(is_final) = 1 \
                         AND VALUES(taken_at) > taken_at), VALUES(taken_at), taken_at), \
                       is_final = GREATEST(is_final, VALUES(is_final))",
    // Not `ON DUPLICATE KEY UPDATE`: a duplicate counts there as a found row (the driver asks
    // for found rows); an ignored one counts nothing. The values cannot raise what IGNORE would
    // also turn into warnings (a uuid, 0 or 1, a time).
    keep_verdict: (
        "INSERT IGNORE INTO fairness_verdicts (event_id, flagged, done_at) ",
        "",
    ),
    keep_flag: " ON DUPLICATE KEY UPDATE event_id = event_id",
    // MySQL assigns left to right, each later one reading the earlier ones' results: m2 and mean
    // first, from the old mean and count, the count last.
    merge_stats: " ON DUPLICATE KEY UPDATE \
                  m2 = m2 + VALUES(m2) + (VALUES(mean) - mean) * (VALUES(mean) - mean) \
                    * samples * VALUES(samples) / (samples + VALUES(samples)), \
                  mean = mean + (VALUES(mean) - mean) * VALUES(samples) \
                    / (samples + VALUES(samples)), \
                  samples = samples + VALUES(samples)",
    // Left to right again: `finished_ms` compared against the old `round_ms`, before it changes.
    purge_run: " ON DUPLICATE KEY UPDATE \
                finished_ms = IF(VALUES(round_ms) > round_ms, VALUES(finished_ms), finished_ms), \
                round_ms = GREATEST(round_ms, VALUES(round_ms))",
    // A duplicate found is locked exclusively (not shared, as a plain INSERT's check would).
    take_cap: " ON DUPLICATE KEY UPDATE name = name",
};

/// The server's name of the lock whose name is bound to `?`: `liveops_<name>_<CRC32 of the
/// database>`, since GET_LOCK's names are the server's, not a database's (`liveops_migrate_..` is
/// the name earlier releases take).
macro_rules! lock_name {
    () => {
        "CONCAT('liveops_', ?, '_', CRC32(DATABASE()))"
    };
}

/// The [`SessionLock`] of a named lock ([`lock_name!`]) whose take waits up to `$wait_s` seconds.
macro_rules! named_lock {
    ($wait_s:literal) => {
        SessionLock {
            take: concat!("SELECT GET_LOCK(", lock_name!(), ", ", $wait_s, ")"),
            release: concat!("SELECT RELEASE_LOCK(", lock_name!(), ")"),
        }
    };
}

impl Dialect for MySql {
    const MAX_BIND: usize = server::MAX_BIND;
    const BEGIN_WRITE: Option<&'static str> = None;
    // `SET TRANSACTION` applies to the next transaction only; the session stays READ COMMITTED.
    const BEGIN_READ: Option<&'static str> = Some(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
         START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    );
    const LOCK_ROWS: &'static str = " FOR UPDATE";
    // MySQL 8 and MariaDB both read this spelling (`FOR SHARE` is MySQL 8 only).
    const LOCK_SHARED: &'static str = " LOCK IN SHARE MODE";
    const INTEGER: &'static str = "SIGNED";
    const UPSERTS: &'static Upserts = &ON_DUPLICATE_KEY;
    const CALL_TIMEOUT: Option<Duration> = Some(server::CALL_TIMEOUT);
    // The unique key of migration 0003 is named after its first column (ADR 0013).
    const ENTRIES_IN_KEY_ORDER: &'static str = "campaign_entries FORCE INDEX (campaign_id)";
    // MariaDB answers `RETURNING` on `INSERT` and `DELETE` only, MySQL on none.
    const UPDATE_RETURNING: bool = false;

    const MIGRATION_SESSION: Option<&'static str> = None;
    const MIGRATION_LOCK: Option<&'static SessionLock> = Some(&named_lock!(600));
    const PURGE_LOCK: Option<&'static SessionLock> = Some(&named_lock!(0));

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    /// Statement by statement, completing what a start left unfinished (ADR 0030).
    fn apply_migrations(conn: &mut MySqlConnection) -> BoxFuture<'_, PortResult<()>> {
        crate::migrate_mysql::apply(conn, &MIGRATOR, crate::migrate_mysql::LockRetry::STANDARD)
    }

    /// Rows matched (sqlx connects with `CLIENT_FOUND_ROWS`, so an `UPDATE` counts the rows its
    /// `WHERE` matched, changed or not; an `INSERT .. ON DUPLICATE KEY UPDATE` counts a kept
    /// duplicate as 1 too, so callers read inserted rows back instead of counting).
    fn rows_affected(result: &sqlx::mysql::MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    fn keep_existing(_conflict: &str, column: &str) -> String {
        format!(" ON DUPLICATE KEY UPDATE {column} = {column}")
    }

    fn skip_taken(_conflict: &str) -> Option<String> {
        None
    }
}

impl Type<MySql> for Text {
    fn type_info() -> MySqlTypeInfo {
        <String as Type<MySql>>::type_info()
    }

    /// Every string column type, binary collations included (see [`Text`]).
    fn compatible(ty: &MySqlTypeInfo) -> bool {
        <[u8] as Type<MySql>>::compatible(ty)
    }
}

impl<'r> Decode<'r, MySql> for Text {
    fn decode(value: MySqlValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        <&str as Decode<'r, MySql>>::decode(value).map(|s| Text(s.to_owned()))
    }
}

/// The options `url` gives (`mariadb://` read as `mysql://`); `what` names the URL in the error.
fn connect_options(url: &str, what: &str) -> Result<MySqlConnectOptions, PortError> {
    let url = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => format!("mysql://{rest}"),
        _ => url.to_owned(),
    };
    MySqlConnectOptions::from_str(&url)
        .map_err(|e| PortError::Unavailable(format!("bad {what}: {e}")))
}

impl SqlRepository<MySql> {
    /// Connects to the server at `url` (`mysql://user:pass@host:3306/db`; `mariadb://` is
    /// accepted as a synonym). Fails with `Unavailable` within about 2 s when the server cannot
    /// be reached. Call [`SqlRepository::migrate`] next.
    ///
    /// Every session is set to READ COMMITTED with a 2 s row-lock wait; pooled connections that
    /// broke while the server was away are replaced on the next call.
    pub async fn open(url: &str) -> Result<Self, PortError> {
        let options = connect_options(url, "MySQL URL")?;
        let pool = server::pool_options::<MySql>()
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await?;
                    conn.execute(
                        format!(
                            "SET SESSION innodb_lock_wait_timeout = {}",
                            server::LOCK_WAIT_S
                        )
                        .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db_error::<MySql>)?;
        Ok(Self::from_pool(pool))
    }

    /// A pool on the read replica at `url`, connecting on first use (a replica that is down at
    /// start only sends the reads to the primary); see [`SqlRepository::with_replica`].
    pub fn replica_pool(url: &str) -> Result<sqlx::MySqlPool, PortError> {
        let options = connect_options(url, "MySQL replica URL")?;
        Ok(server::pool_options::<MySql>().connect_lazy_with(options))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// The locks' statements as earlier releases spelled them: a lock another release takes
    /// under another name would not keep the two apart.
    #[test]
    fn locks_keep_the_names_earlier_releases_take() {
        let name = "CONCAT('liveops_', ?, '_', CRC32(DATABASE()))";
        for (lock, wait) in [(MySql::MIGRATION_LOCK, 600), (MySql::PURGE_LOCK, 0)] {
            let lock = lock.unwrap();
            assert_eq!(lock.take, format!("SELECT GET_LOCK({name}, {wait})"));
            assert_eq!(lock.release, format!("SELECT RELEASE_LOCK({name})"));
        }
    }
}

crate::stores::impl_stores!(MySql);
crate::live_stores::impl_live_stores!(MySql);
