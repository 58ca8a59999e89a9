//! The places a restore writes: checking that nothing is there (the live file, or a file SQLite
//! keeps beside one), and moving a checked copy into one without replacing anything that
//! appeared meanwhile.
//!
//! Refusals are logged and counted: `restore_refusals_total{reason="exists"|"appeared"}`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::wiring::backup::LocalFile;

/// The files SQLite keeps beside a database, which belong to the file they sit beside.
const SIDECARS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// `path` and the files SQLite would keep beside it.
fn with_sidecars(path: &Path) -> Vec<PathBuf> {
    let mut paths = vec![path.to_path_buf()];
    for suffix in SIDECARS {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        paths.push(PathBuf::from(p));
    }
    paths
}

/// Logs and counts a refusal to write where something is.
fn refused(path: &Path, reason: &'static str) {
    metrics::counter!("restore_refusals_total", "reason" => reason).increment(1);
    tracing::warn!(path = %path.display(), reason, "restore refused: the place is taken");
}

/// Fails if a live file a restore would write, or a file SQLite keeps beside one, exists: a
/// restore never mixes with existing state (a stale `-wal` would be read into the restored file).
pub fn check_free(targets: &[LocalFile]) -> anyhow::Result<()> {
    for target in targets {
        for path in with_sidecars(&target.path) {
            if path.exists() {
                refused(&path, "exists");
                anyhow::bail!(
                    "{} exists already: a restore writes only where no {} is (move the old \
                     files aside, with their -wal and -shm; after an interrupted restore, remove \
                     what it placed and run it again)",
                    path.display(),
                    target.role
                );
            }
        }
    }
    Ok(())
}

/// Moves the checked copy `copy` to `target` (same directory), refusing if `target` or a file
/// SQLite keeps beside it exists by now. The move is a hard link, which never replaces an
/// existing file, then the copy's removal; on a filesystem without hard links, a rename right
/// after the check.
pub fn move_in(copy: &Path, target: &Path) -> anyhow::Result<()> {
    let appeared = |path: &Path| {
        refused(path, "appeared");
        anyhow::anyhow!(
            "{} appeared while the restore was staging (another process writes there?)",
            path.display()
        )
    };
    if let Some(taken) = with_sidecars(target).into_iter().find(|p| p.exists()) {
        return Err(appeared(&taken));
    }
    match std::fs::hard_link(copy, target) {
        Ok(()) => {
            if let Err(error) = std::fs::remove_file(copy) {
                tracing::warn!(%error, copy = %copy.display(), "the restored file is placed; its staged link stays");
            }
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(appeared(target)),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::Unsupported | ErrorKind::PermissionDenied
            ) =>
        {
            // Some network filesystems have no hard links.
            if target.exists() {
                return Err(appeared(target));
            }
            std::fs::rename(copy, target)?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_never_replaces_a_file_or_joins_a_wal_that_appeared_while_staging() {
        let dir = tempfile::tempdir().expect("dir");
        let (copy, target) = (
            dir.path().join(".x.restoring"),
            dir.path().join("liveops.db"),
        );
        std::fs::write(&copy, b"restored").expect("copy");

        // A -wal beside the place: refused, nothing placed, the copy kept for the caller.
        let wal = dir.path().join("liveops.db-wal");
        std::fs::write(&wal, b"someone's log").expect("wal");
        let err = move_in(&copy, &target).expect_err("a -wal appeared");
        assert!(err.to_string().contains("liveops.db-wal"), "{err}");
        assert!(!target.exists() && copy.exists());
        std::fs::remove_file(&wal).expect("rm wal");

        // The file itself: refused, and left as it was.
        std::fs::write(&target, b"someone's file").expect("target");
        let err = move_in(&copy, &target).expect_err("the file appeared");
        assert!(err.to_string().contains("appeared"), "{err}");
        assert_eq!(std::fs::read(&target).expect("read"), b"someone's file");
        std::fs::remove_file(&target).expect("rm target");

        // A free place: moved.
        move_in(&copy, &target).expect("moved");
        assert_eq!(std::fs::read(&target).expect("read"), b"restored");
        assert!(!copy.exists());
    }
}
