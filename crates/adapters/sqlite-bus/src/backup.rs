//! Online copies of a bus file, for `liveops backup`: SQLite's backup API run in one step on a
//! connection of its own, so the copy is the file as of one commit while the writer thread (of
//! this process or another) goes on appending.
//!
//! What the copy holds: every message not yet compacted, the dead letters, and each group's
//! position as last written (at most [`crate::PERSIST_EVERY`] behind what the consuming process
//! acked). Positions can only be older than the truth, never newer, so a restored bus delivers
//! a few acked messages again, which consumers skip by event id.

use std::path::Path;
use std::time::{Duration, Instant};

use liveops_core::PortError;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::{bus_file, db_error, BUSY_TIMEOUT, SCHEMA_VERSION};

/// How long a copy waits for a lock it needs (a WAL reader waits only while the log is
/// recovered) before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

impl crate::SqliteBus {
    /// Writes a consistent copy of the live bus file at `location` (a path or a `sqlite:` URL)
    /// into `dest`, which must not exist, and returns the copy's size in bytes. The bus may be
    /// in use meanwhile, by this process or others. Blocking: run it off the async threads.
    pub fn backup(location: &Path, dest: &Path) -> Result<u64, PortError> {
        let src = bus_file(location)?;
        if !src.exists() {
            return Err(PortError::Unavailable(format!(
                "no bus file at {}",
                src.display()
            )));
        }
        copy_live(&src, dest)
    }

    /// Checks that `file` is a sound bus file this build can open: SQLite's `quick_check`, and
    /// a schema version it knows. Blocking.
    pub fn check_copy(file: &Path) -> Result<(), PortError> {
        let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(db_error)?;
        quick_check(&conn)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db_error)?;
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(PortError::Corrupt(format!(
                "{} is not a bus file this build knows (schema version {version})",
                file.display()
            )));
        }
        Ok(())
    }
}

/// Copies the database `src` into the new file `dest` in one backup step (one read
/// transaction on `src`), syncs it, and returns its size.
fn copy_live(src: &Path, dest: &Path) -> Result<u64, PortError> {
    if dest.exists() {
        return Err(PortError::Unavailable(format!(
            "{} exists already",
            dest.display()
        )));
    }
    // Read-write without create: a WAL reader may need to create the shared-memory file, and a
    // missing source must be an error, not a new empty database.
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_error)?;
    from.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
    let mut to = Connection::open(dest).map_err(db_error)?;
    {
        let backup = Backup::new(&from, &mut to).map_err(db_error)?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // -1: every page in one step, so no writer can restart the copy half-way.
            match backup.step(-1).map_err(db_error)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                StepResult::Busy | StepResult::Locked => {
                    return Err(PortError::Unavailable(format!(
                        "{} stayed locked for {LOCK_WAIT:?}",
                        src.display()
                    )))
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
    quick_check(&to)?;
    to.close().map_err(|(_, e)| db_error(e))?;
    let file = std::fs::File::open(dest)
        .map_err(|e| PortError::Unavailable(format!("{}: {e}", dest.display())))?;
    file.sync_all()
        .map_err(|e| PortError::Unavailable(format!("syncing {}: {e}", dest.display())))?;
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| PortError::Unavailable(format!("{}: {e}", dest.display())))
}

fn quick_check(conn: &Connection) -> Result<(), PortError> {
    let verdict: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(db_error)?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(PortError::Corrupt(format!("quick_check: {verdict}")))
    }
}
