//! Upkeep of a live SQLite file, shared by the SQLite repository (`liveops-sql`) and the SQLite
//! bus (`liveops-sqlite-bus`) for `liveops backup`: a [`Snapshot`] (one read transaction held on
//! a connection of its own, copied with SQLite's backup API in one step, so the copy is the file
//! as of one commit while writers of this process or another go on), a [`WriteLock`] (the file's
//! writer held, so snapshots of several files can be opened at one instant with respect to this
//! one's commits), and SQLite's `quick_check`. Blocking: run it off the async threads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use liveops_core::PortError;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// How long a copy waits for a lock it needs (a WAL reader waits only while the log is
/// recovered), and a [`WriteLock`] for the writer's turn, before giving up.
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

/// An I/O error on `file` as a port error.
fn io_fail(file: &Path) -> impl Fn(std::io::Error) -> PortError + '_ {
    move |e| PortError::Unavailable(format!("{}: {e}", file.display()))
}

/// Opens the existing live database `src` on a connection of its own. Read-write without
/// create: a WAL reader may need to create the shared-memory file, and a missing source must be
/// an error, not a new empty database.
fn open_live(src: &Path) -> Result<Connection, PortError> {
    Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail(src))
}

/// A live database as of one commit: a read transaction held open on a connection of its own
/// (in WAL mode writers go on meanwhile, and the snapshot does not move), until it is copied or
/// dropped.
#[derive(Debug)]
pub struct Snapshot {
    conn: Connection,
    src: PathBuf,
}

impl Snapshot {
    /// Opens a read transaction on the live database `src` now, waiting up to `busy_timeout`
    /// for a lock it needs.
    pub fn take(src: &Path, busy_timeout: Duration) -> Result<Self, PortError> {
        let conn = open_live(src)?;
        conn.busy_timeout(busy_timeout).map_err(fail(src))?;
        // A deferred transaction reads its snapshot at its first read, here.
        conn.execute_batch("BEGIN; SELECT COUNT(*) FROM sqlite_master;")
            .map_err(fail(src))?;
        Ok(Self {
            conn,
            src: src.to_path_buf(),
        })
    }

    /// Copies the snapshot into `dest`, which must not exist, in one backup step, then ends the
    /// read transaction. The copy is not checked yet: see [`seal`].
    pub fn copy_into(self, dest: &Path) -> Result<(), PortError> {
        let src = self.src.as_path();
        if dest.exists() {
            return Err(PortError::Unavailable(format!(
                "{} exists already",
                dest.display()
            )));
        }
        let mut to = Connection::open(dest).map_err(fail(dest))?;
        {
            // Within the open read transaction: the backup reads that snapshot.
            let backup = Backup::new(&self.conn, &mut to).map_err(fail(dest))?;
            let deadline = Instant::now() + LOCK_WAIT;
            loop {
                // -1: every page in one step.
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
        self.conn.execute_batch("COMMIT").map_err(fail(src))?;
        self.conn.close().map_err(|(_, e)| fail(src)(e))?;
        to.close().map_err(|(_, e)| fail(dest)(e))
    }
}

/// Checks a copy made by [`Snapshot::copy_into`] (`quick_check`), syncs it and returns its size
/// in bytes.
pub fn seal(dest: &Path) -> Result<u64, PortError> {
    let conn = open_checked(dest)?;
    conn.close().map_err(|(_, e)| fail(dest)(e))?;
    let file = std::fs::File::open(dest).map_err(io_fail(dest))?;
    file.sync_all().map_err(io_fail(dest))?;
    file.metadata().map(|m| m.len()).map_err(io_fail(dest))
}

/// Copies the live database `src` into `dest`, which must not exist, as of one commit (a
/// [`Snapshot`] taken now); checks the copy, syncs it and returns its size in bytes.
pub fn copy_live(src: &Path, dest: &Path, busy_timeout: Duration) -> Result<u64, PortError> {
    Snapshot::take(src, busy_timeout)?.copy_into(dest)?;
    seal(dest)
}

/// A live database's writer, held: while this lives, no connection of this process or another
/// commits to the file (they wait, each up to its own busy timeout); readers go on. Dropping it
/// lets them go on (the transaction holding the lock writes nothing and is rolled back).
#[derive(Debug)]
pub struct WriteLock {
    conn: Connection,
}

impl WriteLock {
    /// Takes the writer of the live database `src`, retrying every millisecond (a writer that
    /// commits batch after batch leaves only short gaps) for up to [`LOCK_WAIT`].
    pub fn take(src: &Path) -> Result<Self, PortError> {
        let conn = open_live(src)?;
        // About LOCK_WAIT in one-millisecond tries.
        fn retry(tries: i32) -> bool {
            std::thread::sleep(Duration::from_millis(1));
            u128::try_from(tries).is_ok_and(|t| t < LOCK_WAIT.as_millis())
        }
        conn.busy_handler(Some(retry)).map_err(fail(src))?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(fail(src))?;
        Ok(Self { conn })
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Closing would roll back too; done first so the writers go on before the close.
        let _ = self.conn.execute_batch("ROLLBACK");
    }
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

    /// A WAL database at `src` with a table `t` holding one row, 7.
    fn live_table(src: &Path) -> Connection {
        let live = Connection::open(src).unwrap();
        live.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (7);")
            .unwrap();
        live
    }

    #[test]
    fn a_copy_holds_what_was_committed_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("live.db"), dir.path().join("copy.db"));
        let _live = live_table(&src);
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

    #[test]
    fn a_snapshot_copies_the_file_as_it_was_when_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("live.db"), dir.path().join("copy.db"));
        let live = live_table(&src);
        let snapshot = Snapshot::take(&src, Duration::from_secs(1)).unwrap();
        live.execute("INSERT INTO t VALUES (8)", []).unwrap();
        snapshot.copy_into(&dest).unwrap();
        assert_eq!(
            seal(&dest).unwrap(),
            std::fs::metadata(&dest).unwrap().len()
        );
        let copy = Connection::open(&dest).unwrap();
        let n: i64 = copy
            .query_row("SELECT SUM(x) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 7, "the write after the snapshot is not in the copy");
    }

    #[test]
    fn a_held_writer_stops_commits_but_not_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("live.db");
        let live = live_table(&src);
        live.execute("DELETE FROM t", []).unwrap();
        live.busy_timeout(Duration::from_millis(100)).unwrap();
        let held = WriteLock::take(&src).unwrap();
        let refused = live.execute("INSERT INTO t VALUES (1)", []);
        assert_eq!(
            refused.unwrap_err().sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy)
        );
        let snapshot = Snapshot::take(&src, Duration::from_millis(100)).unwrap();
        drop(held);
        live.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let dest = dir.path().join("copy.db");
        snapshot.copy_into(&dest).unwrap();
        let copy = Connection::open(&dest).unwrap();
        let n: i64 = copy
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
