//! Online copies of a bus file, for `liveops backup`: SQLite's backup API run in one step on a
//! connection of its own, so the copy is the file as of one commit while the writer thread (of
//! this process or another) goes on appending.
//!
//! What the copy holds: every message not yet compacted, the dead letters, and each group's
//! position as last written (at most [`crate::PERSIST_EVERY`] behind what the consuming process
//! acked). Positions can only be older than the truth, never newer, so a restored bus delivers
//! a few acked messages again, which consumers skip by event id.

use std::path::Path;

use liveops_core::PortError;

use crate::{bus_file, db_error, BUSY_TIMEOUT, SCHEMA_VERSION};

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
        liveops_sqlite_file::copy_live(&src, dest, BUSY_TIMEOUT)
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
