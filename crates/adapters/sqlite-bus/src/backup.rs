//! Online copies of a bus file, for `liveops backup`: SQLite's backup API run in one step on a
//! connection of its own, so the copy is the file as of one commit while the writer thread (of
//! this process or another) goes on appending. [`crate::SqliteBus::hold_writer`] stops every
//! commit to the file for the moment a backup needs to open its snapshots of the bus and the
//! repository at one instant with respect to the bus (see
//! `docs/adr/0028-backups-at-one-bus-instant.md`).
//!
//! What the copy holds: every message not yet compacted, the dead letters, and each group's
//! position as last written (at most [`crate::PERSIST_EVERY`] behind what the consuming process
//! acked). Positions can only be older than the truth, never newer, so a restored bus delivers
//! a few acked messages again, which consumers skip by event id.

use std::path::{Path, PathBuf};

use liveops_core::PortError;
use liveops_sqlite_file::{Snapshot, WriteLock};

use crate::{bus_file, db_error, BUSY_TIMEOUT, SCHEMA_VERSION};

/// The existing bus file at `location` (a path or a `sqlite:` URL).
fn live_file(location: &Path) -> Result<PathBuf, PortError> {
    let src = bus_file(location)?;
    if !src.exists() {
        return Err(PortError::Unavailable(format!(
            "no bus file at {}",
            src.display()
        )));
    }
    Ok(src)
}

impl crate::SqliteBus {
    /// Writes a consistent copy of the live bus file at `location` (a path or a `sqlite:` URL)
    /// into `dest`, which must not exist, and returns the copy's size in bytes. The bus may be
    /// in use meanwhile, by this process or others. Blocking: run it off the async threads.
    pub fn backup(location: &Path, dest: &Path) -> Result<u64, PortError> {
        liveops_sqlite_file::copy_live(&live_file(location)?, dest, BUSY_TIMEOUT)
    }

    /// Opens a read snapshot of the live bus file at `location` now, to copy later with
    /// [`Snapshot::copy_into`]. Blocking.
    pub fn file_snapshot(location: &Path) -> Result<Snapshot, PortError> {
        Snapshot::take(&live_file(location)?, BUSY_TIMEOUT)
    }

    /// Holds the writer of the live bus file at `location`: until the lock is dropped no
    /// publish, poll, ack or compaction of any process commits (each waits, up to its busy
    /// timeout of 10 s, then fails and is retried by its caller). Hold it for milliseconds.
    /// Blocking.
    pub fn hold_writer(location: &Path) -> Result<WriteLock, PortError> {
        WriteLock::take(&live_file(location)?)
    }

    /// Checks that `file` is a sound bus file this build can open: SQLite's `quick_check`, and
    /// a schema version it knows. Blocking.
    pub fn check_copy(file: &Path) -> Result<(), PortError> {
        let conn = liveops_sqlite_file::open_checked(file)?;
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
