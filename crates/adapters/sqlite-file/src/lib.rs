//! Upkeep of a live SQLite file, shared by the SQLite repository (`liveops-sql`) and the SQLite
//! bus (`liveops-sqlite-bus`) for `liveops backup`: an online copy with SQLite's backup API run
//! in one step on a connection of its own, so the copy is the file as of one commit while
//! writers (of this process or another) go on, and SQLite's `quick_check`. Blocking: run it off
//! the async threads.

use std::path::Path;
use std::time::{Duration, Instant};

use liveops_core::PortError;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// How long a copy waits for a lock it needs (a WAL reader waits only while the log is
/// recovered) before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// A SQLite error on `file` as a port error: a damaged file is `Corrupt`, the rest `Unavailable`.
pub fn fail(file: &Path) -> impl Fn(rusqlite::Error) -> PortError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            PortError::Corrupt(format!("{}: {e}", file.display()))
        }
        _ => PortError::Unavailable(format!("{}: {e}", file.display())),
    }
}

/// Copies the live database `src` into `dest`, which must not exist, in one backup step (one
/// read transaction on `src`, waiting up to `busy_timeout` for a lock per call and [`LOCK_WAIT`]
/// in all); checks the copy, syncs it and returns its size in bytes.
pub fn copy_live(src: &Path, dest: &Path, busy_timeout: Duration) -> Result<u64, PortError> {
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
    .map_err(fail(src))?;
    from.busy_timeout(busy_timeout).map_err(fail(src))?;
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

/// Opens the copy `file` (never creating it) after SQLite's `quick_check` of it, for the caller
/// to check what is its own (migrations, schema version).
pub fn open_checked(file: &Path) -> Result<Connection, PortError> {
    let conn =
        Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(fail(file))?;
    quick_check(&conn, file)?;
    Ok(conn)
}

/// SQLite's `quick_check` of `conn`, the database at `file`: anything but `ok` is `Corrupt`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_holds_what_was_committed_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("live.db"), dir.path().join("copy.db"));
        let live = Connection::open(&src).unwrap();
        live.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (7);")
            .unwrap();
        let size = copy_live(&src, &dest, Duration::from_secs(1)).unwrap();
        assert_eq!(size, std::fs::metadata(&dest).unwrap().len());
        let copy = Connection::open(&dest).unwrap();
        let x: i64 = copy.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 7);
        drop(copy);
        open_checked(&dest).unwrap();
        let again = copy_live(&src, &dest, Duration::from_secs(1));
        assert!(matches!(again, Err(PortError::Unavailable(_))), "{again:?}");
    }

    #[test]
    fn a_file_that_is_no_database_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("junk.db");
        std::fs::write(&src, vec![0x5a_u8; 8192]).unwrap();
        let got = copy_live(&src, &dir.path().join("copy.db"), Duration::from_secs(1));
        assert!(matches!(got, Err(PortError::Corrupt(_))), "{got:?}");
    }
}
