//! The lock file of `DATA_DIR` (`DATA_DIR/liveops.lock`), taken when a configuration keeps files
//! on local disk (the SQLite repository, the local bus): every process that opens them (`serve`,
//! `backup`, `migrate`, `dead-letters`, `operators ...`) holds it shared for as long as it runs,
//! so several may share one `DATA_DIR`; `liveops restore` holds it exclusively, so it never
//! replaces files under a running process and no process opens files a restore is placing. Both
//! refuse at once rather than wait. The lock is the operating system's (`flock` on Unix), gone
//! with the process however it ends; the file itself stays. A configuration with nothing on local
//! disk (PostgreSQL or MySQL, a server bus) takes none.
//!
//! Refusals are logged and counted: `data_dir_lock_refusals_total{wanted="shared"|"exclusive"}`.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::wiring::backup::local_files;

/// The lock file's name inside `DATA_DIR`.
pub const FILE: &str = "liveops.lock";

/// Why `DATA_DIR`'s lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A process that opens the files holds it: a restore must wait until it stops.
    #[error("DATA_DIR {0} is in use by a running liveops process (serve, backup, migrate, dead-letters or operators); stop it first")]
    InUse(PathBuf),
    /// `liveops restore` holds it: nothing may open the files until it ends.
    #[error("DATA_DIR {0} is being restored by `liveops restore`; start once it has ended")]
    Restoring(PathBuf),
    /// The lock file cannot be created or locked.
    #[error("DATA_DIR: cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// `DATA_DIR`'s lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

impl DataLock {
    /// Takes the lock shared, for a process that opens the local files; `None` if the settings
    /// keep none.
    pub fn shared(settings: &Settings) -> Result<Option<Self>, LockError> {
        Self::take(settings, false)
    }

    /// Takes the lock exclusively, for a restore; `None` if the settings keep no local file.
    pub fn exclusive(settings: &Settings) -> Result<Option<Self>, LockError> {
        Self::take(settings, true)
    }

    fn take(settings: &Settings, exclusive: bool) -> Result<Option<Self>, LockError> {
        if local_files(settings).is_empty() {
            return Ok(None);
        }
        Self::at(&settings.raw.data_dir, exclusive).map(Some)
    }

    /// Takes the lock of the directory `dir` (created if missing) without waiting.
    pub fn at(dir: &Path, exclusive: bool) -> Result<Self, LockError> {
        let path = dir.join(FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let taken = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match taken {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => {
                let wanted = if exclusive { "exclusive" } else { "shared" };
                metrics::counter!("data_dir_lock_refusals_total", "wanted" => wanted).increment(1);
                tracing::warn!(data_dir = %dir.display(), wanted, "DATA_DIR is locked");
                Err(if exclusive {
                    LockError::InUse(dir.to_path_buf())
                } else {
                    LockError::Restoring(dir.to_path_buf())
                })
            }
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_holders_exclude_a_restore_and_a_restore_excludes_them() {
        let dir = tempfile::tempdir().expect("dir");
        let first = DataLock::at(dir.path(), false).expect("shared");
        let second = DataLock::at(dir.path(), false).expect("shared twice");
        let refused = DataLock::at(dir.path(), true);
        assert!(matches!(refused, Err(LockError::InUse(_))), "{refused:?}");
        drop((first, second));
        let restore = DataLock::at(dir.path(), true).expect("exclusive once alone");
        let refused = DataLock::at(dir.path(), false);
        assert!(
            matches!(refused, Err(LockError::Restoring(_))),
            "{refused:?}"
        );
        drop(restore);
        DataLock::at(dir.path(), false).expect("shared after the restore");
    }
}
