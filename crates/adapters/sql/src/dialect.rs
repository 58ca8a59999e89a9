//! What differs between the SQL backends, in one place: the few statements each spells its own
//! way (upserts, row locks, how a transaction starts), placeholders, limits, migrations and how a
//! driver error becomes a [`PortError`]. The repository's logic
//! ([`super::repository::SqlRepository`]) is written once against [`Dialect`].
//!
//! The shared SQL uses `?` placeholders; [`Dialect::placeholders`] numbers them for PostgreSQL.

use std::borrow::Cow;
use std::time::Duration;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use liveops_core::ports::Board;
use liveops_core::{PortError, PortResult};
use sqlx::database::HasStatementCache;
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::Database;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// A whole board's scores, read off the async threads.
pub type BulkRead = BoxFuture<'static, PortResult<Vec<(String, i64)>>>;

/// `migrator` passing over migrations the database has applied that this release does not know:
/// during a rolling update the first new pod migrates, and the old release's pods that start
/// after it (restarts, scale-ups, a stalled rollout) must still open the database. Migrations
/// only add (ADR 0031); those this release knows are still checked against their checksums.
pub(crate) const fn tolerating_newer(migrator: Migrator) -> Migrator {
    let mut migrator = migrator;
    migrator.ignore_missing = true;
    migrator
}
/// A sqlx driver the repository runs on: SQLite always, PostgreSQL and MySQL/MariaDB behind the
/// `postgres` and `mysql` features.
pub trait Dialect: Database + HasStatementCache + Sized {
    /// Most values bound in one statement; batches are cut in chunks below it.
    const MAX_BIND: usize;
    /// How a write transaction starts (`None`: the driver's plain `BEGIN`).
    const BEGIN_WRITE: Option<&'static str>;
    /// How a read-only transaction with one consistent view of every table starts.
    const BEGIN_READ: Option<&'static str>;
    /// Appended to a `SELECT` that must lock the rows it reads until commit.
    const LOCK_ROWS: &'static str;
    /// Appended to a `SELECT` that must keep the rows it reads from changing until commit,
    /// while letting other readers do the same (a campaign's row while an entry is added).
    const LOCK_SHARED: &'static str;
    /// The type `CAST(text AS …)` names for a whole number (ordering season ids by their number).
    const INTEGER: &'static str;
    /// The upserts, in this backend's spelling.
    const UPSERTS: &'static Upserts;
    /// Upper bound on one repository call (pool wait, lock waits and statements included);
    /// `None` where the driver bounds everything itself (SQLite's busy timeout).
    const CALL_TIMEOUT: Option<Duration>;

    /// Session settings for the connection that migrates (it is closed afterwards), e.g. a lock
    /// wait long enough to queue behind another process's migration.
    const MIGRATION_SESSION: Option<&'static str>;
    /// A lock taken around migrations on the migrating connection (named `migrate`), where
    /// sqlx's own does not hold; `None` where it does (PostgreSQL's advisory lock) or is not
    /// needed.
    const MIGRATION_LOCK: Option<&'static SessionLock>;
    /// The lock a retention purge's walk runs under (named `purge_<table>`), taken without
    /// waiting, so one process of a deployment walks a table at a time and the others skip that
    /// run; `None` where one process owns the database (nothing to share the walk with).
    const PURGE_LOCK: Option<&'static SessionLock>;

    /// How a primary's write position is compared with a read replica's replay, to measure the
    /// replica's lag; `None`: the lag cannot be measured, a reachable replica counts as current.
    const REPLICA_POSITION: Option<&'static crate::replica::ReplicaPosition> = None;

    /// `campaign_entries` as a `FROM` names it to read one campaign's entrants from a cursor on,
    /// along the unique key `(campaign_id, player_id, slot)`.
    const ENTRIES_IN_KEY_ORDER: &'static str = "campaign_entries";

    /// The schema migrations of this backend (`migrations/<backend>`).
    fn migrator() -> &'static Migrator;

    /// Applies [`Self::migrator`]'s pending migrations on `conn`, which holds the migration lock.
    fn apply_migrations(conn: &mut Self::Connection) -> BoxFuture<'_, PortResult<()>>
    where
        Self::Connection: Migrate,
    {
        Box::pin(async move {
            Self::migrator()
                .run_direct(conn)
                .await
                .map_err(|e| migrate_error_of(Self::NAME, e))
        })
    }

    /// Waits for this process's turn to write, where the database takes one writer at a time
    /// and queueing in process beats waiting in the driver; `None`: no turns, write at once.
    fn write_turn(_turns: &Arc<Mutex<()>>) -> BoxFuture<'static, Option<OwnedMutexGuard<()>>> {
        Box::pin(async { None })
    }

    /// Whether inbox claims and campaign entries that wait for the write turn are written
    /// together, in one transaction of the turn: where writers take turns and each commit syncs
    /// the log, one commit for the many that queue at once is what lifts them per second.
    const GROUP_WRITES: bool = false;

    /// A faster way than the pooled query to read every score of a board (a restart's rebuild),
    /// if this backend has one.
    fn bulk_board_scores(_pool: &sqlx::Pool<Self>, _board: &Board) -> Option<BulkRead> {
        None
    }

    /// Whether an `UPDATE` can answer the rows it changed (`RETURNING`): not on MySQL/MariaDB.
    const UPDATE_RETURNING: bool = true;

    /// How many rows an `UPDATE` or `DELETE` matched. (Not for telling an insert from a kept
    /// duplicate: MySQL counts both as 1; read the row back, or insert with [`Self::skip_taken`].)
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// Appended to an `INSERT` so that, its key `conflict` taken, it writes nothing and
    /// `rows_affected` says 0 (1 for a row written); `None` where no clause can say it (MySQL
    /// counts a kept duplicate as 1): there the taken key fails the statement alone, which
    /// InnoDB rolls back while the transaction goes on, and the caller counts it as kept.
    fn skip_taken(conflict: &str) -> Option<String> {
        Some(format!(" ON CONFLICT ({conflict}) DO NOTHING"))
    }

    /// Appended to an `INSERT .. VALUES ..` so a row whose key `conflict` (a column list) is
    /// taken is left as it is and nothing is written. `column` is any column of the table
    /// (MySQL's spelling assigns it to itself).
    fn keep_existing(conflict: &str, _column: &str) -> String {
        format!(" ON CONFLICT ({conflict}) DO NOTHING")
    }

    /// Rewrites the `?` placeholders of shared SQL into this backend's form.
    fn placeholders(sql: &'static str) -> Cow<'static, str> {
        Cow::Borrowed(sql)
    }

    /// Whether the database error `code` (as sqlx gives it) says the stored data is damaged:
    /// corruption an operator must see, not an outage to retry.
    fn is_damage(_code: &str) -> bool {
        false
    }
}

/// Statements that take and release a session-level lock between the processes on one database
/// (migrations, retention purges), the lock's name bound to their one `?`. `take` answers one
/// row, one column: 1 when the lock is held. The lock belongs to the connection that took it:
/// released on that one, which is closed after rather than returned to the pool.
#[derive(Debug)]
pub struct SessionLock {
    /// Takes the lock (waiting for it as long as the statement says) and answers 1 once held.
    pub take: &'static str,
    /// Releases it.
    pub release: &'static str,
}

/// The conflict clauses appended to the shared `INSERT .. VALUES ..` statements.
#[derive(Debug)]
pub struct Upserts {
    /// `player_xp`: add XP, keep the latest update time.
    pub add_xp: &'static str,
    /// After [`Upserts::add_xp`]: the rows as the upsert left them (`RETURNING`), where the
    /// backend can answer them from the upsert itself; `None`: read them back.
    pub returning_xp: Option<&'static str>,
    /// `inventory`: add quantities.
    pub add_items: &'static str,
    /// `rewards`: keep the reward first earned under an id.
    pub keep_reward: &'static str,
    /// `scores`: add points.
    pub add_score: &'static str,
    /// After [`Upserts::add_score`]: the rows as the upsert left them, where the backend can
    /// answer them from the upsert itself (`RETURNING`); `None`: read them back.
    pub returning_scores: Option<&'static str>,
    /// `snapshots`: replace the board's snapshot unless final, a final one by a later final.
    pub replace_snapshot: &'static str,
    /// `fairness_verdicts`: the statement's start and end, such that a stored verdict stands and
    /// the count is of the rows inserted only.
    pub keep_verdict: (&'static str, &'static str),
    /// `fairness_flags`: one flag per event.
    pub keep_flag: &'static str,
    /// `fairness_stats`: add a batch's statistics to a type's (Chan et al.'s parallel update, as
    /// `Welford::merge`).
    pub merge_stats: &'static str,
    /// `purge_runs`: the walk written replaces the purge's last one only if its round is later
    /// (an older walk that ended after a newer one leaves the newer one's row).
    pub purge_run: &'static str,
    /// `cap_locks`: a capped set's lock row written, or kept and locked (to the end of the
    /// transaction) if it is there.
    pub take_cap: &'static str,
}

/// SQLite and PostgreSQL: `ON CONFLICT (key) DO ..` with `excluded`.
pub const ON_CONFLICT: Upserts = Upserts {
    add_xp: " ON CONFLICT (player_id, season) DO UPDATE SET xp = player_xp.xp + excluded.xp, \
             updated_at = CASE WHEN excluded.updated_at > player_xp.updated_at \
             THEN excluded.updated_at ELSE player_xp.updated_at END",
    returning_xp: Some(" RETURNING player_id, season, xp"),
    add_items: " ON CONFLICT (player_id, item) DO UPDATE SET \
                quantity = inventory.quantity + excluded.quantity",
    keep_reward: " ON CONFLICT (player_id, reward_id) DO NOTHING",
    add_score: " ON CONFLICT (board_window, period, player_id) \
                DO UPDATE SET score = scores.score + excluded.score",
    returning_scores: Some(" RETURNING board_window, period, player_id, score"),
    replace_snapshot: " ON CONFLICT (board_window, period) DO UPDATE SET \
                       taken_at = excluded.taken_at, is_final = excluded.is_final, \
                       entries = excluded.entries WHERE snapshots.is_final = 0 \
                       OR (excluded.is_final = 1 AND excluded.taken_at > snapshots.taken_at)",
    keep_verdict: (
        "INSERT INTO fairness_verdicts (event_id, flagged, done_at) ",
        " ON CONFLICT (event_id) DO NOTHING",
    ),
    keep_flag: " ON CONFLICT (event_id) DO NOTHING",
    // Every right-hand side reads the row as it was.
    merge_stats: " ON CONFLICT (event_type) DO UPDATE SET \
                  samples = fairness_stats.samples + excluded.samples, \
                  mean = fairness_stats.mean + (excluded.mean - fairness_stats.mean) \
                    * excluded.samples / (fairness_stats.samples + excluded.samples), \
                  m2 = fairness_stats.m2 + excluded.m2 + (excluded.mean - fairness_stats.mean) \
                    * (excluded.mean - fairness_stats.mean) * fairness_stats.samples \
                    * excluded.samples / (fairness_stats.samples + excluded.samples)",
    purge_run: " ON CONFLICT (name) DO UPDATE SET \
                round_ms = excluded.round_ms, finished_ms = excluded.finished_ms \
                WHERE excluded.round_ms > purge_runs.round_ms",
    // An update, unlike DO NOTHING, locks the row it finds.
    take_cap: " ON CONFLICT (name) DO UPDATE SET name = excluded.name",
};

/// Pool and call bounds shared by the server backends (PostgreSQL, MySQL).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod server {
    use std::time::Duration;

    /// Most connections one process opens.
    pub(crate) const MAX_CONNECTIONS: u32 = 10;
    /// How long a call waits for a connection, establishing one included: with the server down
    /// a call answers `Unavailable` after this.
    pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
    /// A pool's options within [`MAX_CONNECTIONS`] and [`ACQUIRE_TIMEOUT`].
    pub(crate) fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
        sqlx::pool::PoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
    }
    /// How long a statement waits for a row lock another transaction holds.
    pub(crate) const LOCK_WAIT_S: u64 = 2;
    /// Upper bound on one repository call.
    pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);
    /// Most values bound in one statement (both allow 65 535; smaller statements plan faster
    /// and keep one packet small).
    pub(crate) const MAX_BIND: usize = 2_000;
}

/// A text column read back as a `String`.
///
/// MySQL reports columns with a binary collation (`utf8mb4_bin`, which keeps ids case-sensitive
/// and ordered by bytes as on the other backends) as `VARBINARY`, which sqlx refuses to decode
/// into a `String`; this type accepts them and still checks the bytes are UTF-8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(pub String);

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

/// Makes [`Text`] read on backend `$db` exactly as a `String` does (every backend but MySQL,
/// whose binary collations need more).
macro_rules! text_as_string {
    ($db:ty) => {
        impl sqlx::Type<$db> for $crate::dialect::Text {
            fn type_info() -> <$db as sqlx::Database>::TypeInfo {
                <String as sqlx::Type<$db>>::type_info()
            }

            fn compatible(ty: &<$db as sqlx::Database>::TypeInfo) -> bool {
                <String as sqlx::Type<$db>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, $db> for $crate::dialect::Text {
            fn decode(
                value: <$db as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                <String as sqlx::Decode<'r, $db>>::decode(value).map($crate::dialect::Text)
            }
        }
    };
}
pub(crate) use text_as_string;

/// Maps a sqlx error of backend `name`: anything about reaching, locking or timing out on the
/// database is `Unavailable` (the caller answers 503 or leaves the message for redelivery); rows
/// that cannot be read back are `Corrupt`.
pub(crate) fn db_error_of(name: &str, e: sqlx::Error) -> PortError {
    use sqlx::Error as E;
    match e {
        E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. }
        | E::RowNotFound => PortError::Corrupt(format!("{name}: {e}")),
        E::Database(ref d) if d.is_unique_violation() => {
            PortError::Unavailable(format!("{name}: conflicting write, retry: {d}"))
        }
        E::PoolTimedOut => PortError::Unavailable(format!(
            "{name}: no connection within the acquire timeout (database down or overloaded)"
        )),
        other => PortError::Unavailable(format!("{name}: {other}")),
    }
}

/// [`db_error_of`] for dialect `DB` (named as sqlx names it: `PostgreSQL`).
pub(crate) fn db_error<DB: Dialect>(e: sqlx::Error) -> PortError {
    if let sqlx::Error::Database(d) = &e {
        if d.code().is_some_and(|code| DB::is_damage(&code)) {
            return PortError::Corrupt(format!("{}: {e}", DB::NAME));
        }
    }
    db_error_of(DB::NAME, e)
}

/// Maps a migration error of backend `name`: a failing statement is like any other database
/// error; a migration history that does not match the code (or a half-applied migration) is
/// corruption an operator must look at.
pub(crate) fn migrate_error_of(name: &str, e: MigrateError) -> PortError {
    match e {
        MigrateError::Execute(e) => db_error_of(name, e),
        MigrateError::ExecuteMigration(e, version) => match db_error_of(name, e) {
            PortError::Unavailable(m) => {
                PortError::Unavailable(format!("migration {version}: {m}"))
            }
            PortError::Corrupt(m) => PortError::Corrupt(format!("migration {version}: {m}")),
        },
        other => PortError::Corrupt(format!("{name} migrations: {other}")),
    }
}

/// A count read from SQL (never negative in our tables) as `u64`.
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A `u64` stored in a signed BIGINT column, saturating.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Numbers `?` placeholders as `$1`, `$2`, .. (PostgreSQL). The shared SQL has no `?` inside
/// string literals, so every `?` is a placeholder.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            number_placeholders("SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4"
        );
        assert_eq!(number_placeholders("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn decoding_problems_are_corruption_the_rest_unavailable() {
        assert!(matches!(
            db_error_of("x", sqlx::Error::RowNotFound),
            PortError::Corrupt(_)
        ));
        assert!(matches!(
            db_error_of("x", sqlx::Error::PoolTimedOut),
            PortError::Unavailable(_)
        ));
        assert!(matches!(
            db_error_of("x", sqlx::Error::PoolClosed),
            PortError::Unavailable(_)
        ));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            db_error_of("x", sqlx::Error::Io(io)),
            PortError::Unavailable(_)
        ));
        assert!(matches!(
            migrate_error_of("x", MigrateError::VersionMismatch(1)),
            PortError::Corrupt(_)
        ));
    }
}
