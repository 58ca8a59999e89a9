//! Online copies of the SQLite repository, for `liveops backup`: SQLite's backup API run in one
//! step on a connection of its own, so the copy is the database as of one commit while the
//! service keeps writing (WAL: readers and the writer do not block each other).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use liveops_core::PortError;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::Sqlite;

use super::BUSY_TIMEOUT;
use crate::repository::SqlRepository;

/// How long a copy waits for a lock it needs before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

fn fail(what: &Path) -> impl Fn(rusqlite::Error) -> PortError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            PortError::Corrupt(format!("{}: {e}", what.display()))
        }
        _ => PortError::Unavailable(format!("{}: {e}", what.display())),
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
        if !src.exists() {
            return Err(PortError::Unavailable(format!(
                "no repository file at {}",
                src.display()
            )));
        }
        if dest.exists() {
            return Err(PortError::Unavailable(format!(
                "{} exists already",
                dest.display()
            )));
        }
        // Read-write without create: a WAL reader may need to create the shared-memory file,
        // and a missing source must be an error, not a new empty database.
        let from = Connection::open_with_flags(
            src,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(fail(src))?;
        from.busy_timeout(BUSY_TIMEOUT).map_err(fail(src))?;
        let mut to = Connection::open(dest).map_err(fail(dest))?;
        {
            let backup = Backup::new(&from, &mut to).map_err(fail(dest))?;
            let deadline = Instant::now() + LOCK_WAIT;
            loop {
                // -1: every page in one step, so no writer can restart the copy half-way.
                match backup.step(-1).map_err(fail(src))? {
                    StepResult::Done => break,
                    StepResult::More => {}
                    StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    other => {
                        return Err(PortError::Unavailable(format!(
                            "backup of {} stopped: {other:?}",
                            src.display()
                        )))
                    }
                }
            }
        }
        quick_check(&to, dest)?;
        to.close().map_err(|(_, e)| fail(dest)(e))?;
        let file = std::fs::File::open(dest)
            .map_err(|e| PortError::Unavailable(format!("{}: {e}", dest.display())))?;
        file.sync_all()
            .map_err(|e| PortError::Unavailable(format!("syncing {}: {e}", dest.display())))?;
        file.metadata()
            .map(|m| m.len())
            .map_err(|e| PortError::Unavailable(format!("{}: {e}", dest.display())))
    }

    /// Checks that `file` is a sound repository this build can open: SQLite's `quick_check`,
    /// and migrations no newer than this build's. Blocking.
    pub fn check_copy(file: &Path) -> Result<(), PortError> {
        let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(fail(file))?;
        quick_check(&conn, file)?;
        let newest: Option<i64> = conn
            .query_row(
                "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
                [],
                |r| r.get(0),
            )
            .map_err(|e| {
                PortError::Corrupt(format!(
                    "{} is not a LiveOps repository: {e}",
                    file.display()
                ))
            })?;
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

fn quick_check(conn: &Connection, file: &Path) -> Result<(), PortError> {
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(fail(file))?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(PortError::Corrupt(format!(
            "{}: quick_check: {verdict}",
            file.display()
        )))
    }
}
