//! The SQLite specifics shared by the repository and the local bus: how a location becomes
//! connection options (WAL, synchronous, busy timeout), and how sqlx errors become [`PortError`].
//! PostgreSQL and MySQL adapters get their own module like this one; the SQL elsewhere stays put.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use liveops_core::PortError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// How long a statement waits for another writer's lock before giving up with "busy".
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a write transaction that takes the write lock at once (SQLite's `BEGIN IMMEDIATE`), so
/// a read followed by a write in it never fails on a stale snapshot; concurrent writers queue on
/// the busy timeout instead.
pub(crate) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Most values bound in one statement (SQLite's historic limit is 999; stay well below it).
pub(crate) const MAX_BIND: usize = 500;

/// Connection options for `location`: a `sqlite:` URL or a plain file path. The file and its
/// parent directories are created if missing. WAL with `synchronous=FULL`: a committed
/// transaction is on disk before the commit returns, so it survives `kill -9` and power loss.
pub(crate) fn options(location: &Path) -> Result<SqliteConnectOptions, PortError> {
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
        .foreign_keys(false))
}

/// Maps a sqlx error: anything about reaching or locking the database is `Unavailable` (the
/// caller answers 503 or leaves the message for redelivery); rows that cannot be read back are
/// `Corrupt`.
pub(crate) fn db_error(e: sqlx::Error) -> PortError {
    use sqlx::Error as E;
    match e {
        E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. }
        | E::RowNotFound => PortError::Corrupt(e.to_string()),
        E::Database(ref d) if d.is_unique_violation() => {
            PortError::Unavailable(format!("conflicting write, retry: {d}"))
        }
        other => PortError::Unavailable(format!("sqlite: {other}")),
    }
}

/// Maps a migration error: a failing statement is like any other database error; a migration
/// history that does not match the code is corruption.
pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> PortError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => db_error(e),
        other => PortError::Corrupt(format!("migrations: {other}")),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

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
