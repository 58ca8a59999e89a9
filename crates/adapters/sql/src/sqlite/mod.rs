//! The SQLite backend of the repository (the embedded default): how a location becomes
//! connection options (WAL, `synchronous=FULL`, busy timeout), SQLite's [`Dialect`], and its two
//! specifics: this process's writes take turns on an async lock (SQLite has one writer at a time,
//! and its busy handler sleeps up to 100 ms per retry under load), and a restart's rebuild reads
//! a board's scores on a direct connection instead of row by row through sqlx's worker channel.
//! [`SqlRepository::backup`] copies the live file consistently (`backup.rs`).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use liveops_core::ports::Board;
use liveops_core::PortError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::Sqlite;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::dialect::{
    db_error, tolerating_newer, BulkRead, Dialect, SessionLock, Upserts, ON_CONFLICT,
};
use super::repository::SqlRepository;

mod backup;

/// The repository on SQLite: the embedded default.
pub type SqliteRepository = SqlRepository<Sqlite>;

impl SqlRepository<Sqlite> {
    /// Opens (creating if missing) the database at `url`: a `sqlite:` URL
    /// (`sqlite://data/liveops.db?mode=rwc`) or a file path. WAL mode, `synchronous=FULL`, and a
    /// busy timeout so concurrent writers wait for each other. Call [`SqlRepository::migrate`]
    /// next. An in-memory URL gives every pooled connection its own empty database: use a file.
    pub async fn connect(url: &str) -> Result<Self, PortError> {
        let pool = pool_options(4)
            .connect_with(options(Path::new(url))?)
            .await
            .map_err(db_error::<Sqlite>)?;
        Ok(Self::from_pool(pool))
    }

    /// Opens the database file at `path` (created if missing) with its schema brought up to
    /// date: a ready repository in one call, as a single process or a test wants it.
    pub async fn open_migrated(path: &Path) -> Result<Self, PortError> {
        let repo = Self::connect(&path.to_string_lossy()).await?;
        repo.migrate().await?;
        Ok(repo)
    }

    /// What the repository file `file` has of this build's migrations, read without changing
    /// it: the newest version it has applied (`None`: none, a new database) and this build's
    /// versions it has not applied, ascending. Blocking.
    pub fn pending_migrations(file: &Path) -> Result<(Option<i64>, Vec<i64>), PortError> {
        let fail = liveops_sqlite_file::fail(file);
        // Read-write (never created): a read-only connection cannot open a WAL database whose
        // `-shm` is missing. Nothing is written.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE;
        let conn = rusqlite::Connection::open_with_flags(file, flags).map_err(&fail)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&fail)?;
        let applied = applied_migrations(&conn)
            .map_err(&fail)?
            .unwrap_or_default();
        let mut pending: Vec<i64> = MIGRATOR
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect();
        pending.sort_unstable();
        Ok((applied.into_iter().max(), pending))
    }
}

/// The versions of the migrations the repository on `conn` applied; `None` when it has no
/// migration history (a new database, or not a repository).
fn applied_migrations(conn: &rusqlite::Connection) -> rusqlite::Result<Option<Vec<i64>>> {
    let migrated: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master \
         WHERE type = 'table' AND name = '_sqlx_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !migrated {
        return Ok(None);
    }
    let mut read = conn.prepare("SELECT version FROM _sqlx_migrations WHERE success")?;
    let versions = read.query_map([], |r| r.get(0))?;
    versions.collect::<Result<_, _>>().map(Some)
}

/// How long a statement waits for another writer's lock before giving up with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Page cache per connection (`PRAGMA cache_size`; negative is KiB): 16 MiB keeps the indexes
/// of the hot tables in memory instead of re-reading pages for every lookup.
const CACHE_SIZE: &str = "-16384";

/// Bytes of the file read through a memory map (`PRAGMA mmap_size`), which spares a copy per
/// page read; the pages are the OS's page cache, shared by every connection.
const MMAP_SIZE: &str = "268435456";

/// Where SQLite keeps statement journals and temporary b-trees (`PRAGMA temp_store`): in memory.
/// On a file (the default) every multi-row upsert in a write transaction wrote its statement
/// journal with `pwrite`; the profile of a draining backlog showed it (docs/BENCHMARKS.md).
const TEMP_STORE: &str = "MEMORY";

/// WAL pages before a commit checkpoints (`PRAGMA wal_autocheckpoint`; SQLite's default is
/// 1 000): the hot rows (scores, progress) are rewritten by every batch, and a longer interval
/// copies each hot page back once per checkpoint instead of many times. About 16 MiB of WAL.
const WAL_AUTOCHECKPOINT: &str = "4000";

/// Opens a write transaction that takes the write lock at once (SQLite's `BEGIN IMMEDIATE`), so
/// a read followed by a write in it never fails on a stale snapshot; concurrent writers queue on
/// the busy timeout instead.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Most values bound in one statement (SQLite's historic limit is 999; stay well below it).
const MAX_BIND: usize = 500;

/// Rows a statement's worker thread may send ahead of the task reading them (sqlx's default is
/// 50). Past it the worker waits for that task to be scheduled again, with the write turn held:
/// a score upsert answers up to `MAX_BIND / 4` rows (`RETURNING`), so it never waits.
const ROW_BUFFER: usize = 512;

/// Connection options for `location`: a `sqlite:` URL or a plain file path. The file and its
/// parent directories are created if missing. WAL with `synchronous=FULL`: a committed
/// transaction is on disk before the commit returns, so it survives `kill -9` and power loss.
fn options(location: &Path) -> Result<SqliteConnectOptions, PortError> {
    let opts = match location.to_str() {
        Some(url) if url.starts_with("sqlite:") => SqliteConnectOptions::from_str(url)
            .map_err(|e| PortError::Unavailable(format!("bad SQLite URL: {e}")))?,
        _ => SqliteConnectOptions::new().filename(location),
    };
    let file = opts.get_filename();
    if let Some(dir) = file.parent() {
        if !dir.as_os_str().is_empty() && file != Path::new(":memory:") {
            std::fs::create_dir_all(dir).map_err(|e| {
                PortError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
    }
    Ok(opts
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("cache_size", CACHE_SIZE)
        .pragma("mmap_size", MMAP_SIZE)
        .pragma("temp_store", TEMP_STORE)
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT)
        .foreign_keys(false)
        .row_buffer_size(ROW_BUFFER))
}

static MIGRATOR: Migrator = tolerating_newer(sqlx::migrate!("./migrations/sqlite"));

impl Dialect for Sqlite {
    const MAX_BIND: usize = MAX_BIND;
    const BEGIN_WRITE: Option<&'static str> = Some(BEGIN_WRITE);
    // A deferred transaction reads one snapshot of the WAL from its first read on.
    const BEGIN_READ: Option<&'static str> = None;
    // The write transaction already holds the database's write lock.
    const LOCK_ROWS: &'static str = "";
    const LOCK_SHARED: &'static str = "";
    const INTEGER: &'static str = "INTEGER";
    const UPSERTS: &'static Upserts = &ON_CONFLICT;
    const CALL_TIMEOUT: Option<Duration> = None;

    const MIGRATION_SESSION: Option<&'static str> = None;
    const MIGRATION_LOCK: Option<&'static SessionLock> = None;
    // The embedded database is one process's: its purges never overlap another's.
    const PURGE_LOCK: Option<&'static SessionLock> = None;

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    /// SQLITE_CORRUPT and SQLITE_NOTADB, with their extended codes (the low byte).
    fn is_damage(code: &str) -> bool {
        code.parse::<i32>()
            .is_ok_and(|c| matches!(c & 0xff, 11 | 26))
    }

    const GROUP_WRITES: bool = true;

    fn write_turn(turns: &Arc<Mutex<()>>) -> BoxFuture<'static, Option<OwnedMutexGuard<()>>> {
        let turns = turns.clone();
        Box::pin(async move { Some(turns.lock_owned().await) })
    }

    fn bulk_board_scores(pool: &sqlx::Pool<Self>, board: &Board) -> Option<BulkRead> {
        let file = pool.connect_options().get_filename().to_path_buf();
        if file == Path::new(":memory:") {
            return None;
        }
        let (window, period) = (board.window.as_str(), board.period.clone());
        Some(Box::pin(async move {
            tokio::task::spawn_blocking(move || read_board_scores(&file, window, &period))
                .await
                .map_err(|e| PortError::Unavailable(format!("reading scores failed: {e}")))?
        }))
    }
}

crate::dialect::text_as_string!(Sqlite);

/// The repository's pool of `max` connections. A connection is handed out only outside any
/// transaction: a COMMIT that fails (disk full, an I/O error) has SQLite roll the transaction
/// back while sqlx still counts it open, and its ROLLBACK on drop then fails too; reused, such a
/// connection refused every write transaction, and ran reads and single writes inside a
/// transaction left open (stale reads, writes never committed) until its lifetime ended. The
/// ping before each hand-out runs after any queued rollback, so the count read then is true.
fn pool_options(max: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(true)
        .before_acquire(|conn, _| {
            let open = sqlx::Connection::is_in_transaction(conn);
            if open {
                tracing::warn!("a repository connection left in a failed transaction is closed");
            }
            Box::pin(async move { Ok(!open) })
        })
}

/// Every score on a board, read on a connection of its own with no per-row round trip: what a
/// restart's rebuild of a million-player board waits for. Blocking; run it off the async threads.
fn read_board_scores(
    file: &Path,
    window: &str,
    period: &str,
) -> Result<Vec<(String, i64)>, PortError> {
    let fail = liveops_sqlite_file::fail(file);
    let conn =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(&fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&fail)?;
    conn.execute_batch(&format!(
        "PRAGMA mmap_size = {MMAP_SIZE}; PRAGMA cache_size = {CACHE_SIZE};"
    ))
    .map_err(&fail)?;
    let mut stmt = conn
        .prepare("SELECT player_id, score FROM scores WHERE board_window = ?1 AND period = ?2")
        .map_err(&fail)?;
    let rows = stmt
        .query_map(rusqlite::params![window, period], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(&fail)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(&fail)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::dialect::db_error_of;

    #[test]
    fn plain_paths_and_urls_are_both_accepted_and_their_directories_made() {
        let dir = std::env::temp_dir().join(format!("liveops-opts-{}", rand::random::<u32>()));
        let path = dir.join("nested/x.db");
        let o = options(&path).unwrap();
        assert_eq!(o.get_filename(), path.as_path());
        assert!(dir.join("nested").is_dir());
        let url = format!("sqlite://{}/other/y.db?mode=rwc", dir.display());
        let o = options(Path::new(&url)).unwrap();
        assert_eq!(o.get_filename(), dir.join("other/y.db").as_path());
        assert!(dir.join("other").is_dir());
        assert!(options(Path::new("sqlite::memory:")).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A connection whose transaction SQLite ended while sqlx still counts it open (what a
    /// failed COMMIT leaves: SQLite rolls back, and the ROLLBACK on drop fails) is not handed
    /// out again: the next write transaction begins and commits on a fresh one.
    #[tokio::test]
    async fn a_connection_left_in_a_failed_transaction_is_not_handed_out_again() {
        use sqlx::{Connection as _, Executor as _};
        let dir = tempfile::tempdir().unwrap();
        let opts = options(&dir.path().join("t.db")).unwrap();
        let pool = pool_options(1).connect_with(opts).await.unwrap();
        pool.execute("CREATE TABLE t (v INTEGER)").await.unwrap();
        {
            let mut conn = pool.acquire().await.unwrap();
            let mut tx = conn.begin_with(BEGIN_WRITE).await.unwrap();
            tx.execute("INSERT INTO t VALUES (1)").await.unwrap();
            // SQLite ends the transaction under sqlx, as on a COMMIT that fails.
            tx.execute("ROLLBACK").await.unwrap();
        }
        let mut tx = pool.begin_with(BEGIN_WRITE).await.unwrap();
        tx.execute("INSERT INTO t VALUES (2)").await.unwrap();
        tx.commit().await.unwrap();
        let mut other =
            sqlx::SqliteConnection::connect_with(&options(&dir.path().join("t.db")).unwrap())
                .await
                .unwrap();
        let kept: Vec<i64> = sqlx::query_scalar("SELECT v FROM t")
            .fetch_all(&mut other)
            .await
            .unwrap();
        assert_eq!(kept, [2], "committed, as another connection reads it");
    }

    #[test]
    fn damaged_files_are_corruption() {
        for code in ["11", "267", "779", "26"] {
            assert!(Sqlite::is_damage(code), "{code}");
        }
        for code in ["5", "13", "2067", "nope"] {
            assert!(!Sqlite::is_damage(code), "{code}");
        }
    }

    /// Maps a sqlx error as the repository does.
    fn db_error(e: sqlx::Error) -> PortError {
        db_error_of(<Sqlite as sqlx::Database>::NAME, e)
    }

    #[test]
    fn decoding_problems_are_corruption_the_rest_unavailable() {
        assert!(matches!(
            db_error(sqlx::Error::RowNotFound),
            PortError::Corrupt(_)
        ));
        assert!(matches!(
            db_error(sqlx::Error::PoolTimedOut),
            PortError::Unavailable(_)
        ));
    }
}

crate::stores::impl_stores!(Sqlite);
crate::live_stores::impl_live_stores!(Sqlite);
