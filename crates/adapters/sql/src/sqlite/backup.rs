//! Online copies of the SQLite repository, for `liveops backup`: SQLite's backup API run in one
//! step on a connection of its own, so the copy is the database as of one commit while the
//! service keeps writing (WAL: readers and the writer do not block each other), or a snapshot
//! opened now and copied later, for a backup that opens its snapshots at one instant.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use liveops_core::PortError;
use liveops_sqlite_file::Snapshot;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::Sqlite;

use super::BUSY_TIMEOUT;
use crate::repository::SqlRepository;

/// `src` if the repository file is there.
fn live_file(src: &Path) -> Result<&Path, PortError> {
    if src.exists() {
        Ok(src)
    } else {
        Err(PortError::Unavailable(format!(
            "no repository file at {}",
            src.display()
        )))
    }
}

impl SqlRepository<Sqlite> {
    /// The database file a `sqlite:` URL (or plain path) names; nothing is created.
    pub fn database_file(url: &str) -> Result<PathBuf, PortError> {
        if !url.starts_with("sqlite:") {
            return Ok(PathBuf::from(url));
        }
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| PortError::Unavailable(format!("bad SQLite URL: {e}")))?;
        let file = opts.get_filename();
        if url.contains(":memory:") || url.contains("mode=memory") || file == Path::new(":memory:")
        {
            return Err(PortError::Unavailable(
                "an in-memory database has no file to copy".into(),
            ));
        }
        Ok(file.to_path_buf())
    }

    /// Writes a consistent copy of the live repository file `src` (see
    /// [`SqlRepository::database_file`]) into `dest`, which must not exist, checks it and returns
    /// its size in bytes. The repository may be in use meanwhile. Blocking: run it off the async
    /// threads.
    pub fn backup(src: &Path, dest: &Path) -> Result<u64, PortError> {
        liveops_sqlite_file::copy_live(live_file(src)?, dest, BUSY_TIMEOUT)
    }

    /// Opens a read snapshot of the live repository file `src` now, to copy later with
    /// [`Snapshot::copy_into`]. Blocking.
    pub fn file_snapshot(src: &Path) -> Result<Snapshot, PortError> {
        Snapshot::take(live_file(src)?, BUSY_TIMEOUT)
    }

    /// Checks that `file` is a sound repository this build can open: SQLite's `quick_check`,
    /// and migrations no newer than this build's. Blocking.
    pub fn check_copy(file: &Path) -> Result<(), PortError> {
        let conn = liveops_sqlite_file::open_checked(file)?;
        let not_ours = |why: &dyn std::fmt::Display| {
            PortError::Corrupt(format!(
                "{} is not a LiveOps repository: {why}",
                file.display()
            ))
        };
        let newest = super::applied_migrations(&conn)
            .map_err(|e| not_ours(&e))?
            .ok_or_else(|| not_ours(&"no migration history"))?
            .into_iter()
            .max();
        let known = super::MIGRATOR.iter().map(|m| m.version).max();
        match (newest, known) {
            (Some(n), Some(k)) if n <= k => Ok(()),
            (n, k) => Err(PortError::Corrupt(format!(
                "{} has migrations up to {n:?}; this build knows up to {k:?}",
                file.display()
            ))),
        }
    }
}
