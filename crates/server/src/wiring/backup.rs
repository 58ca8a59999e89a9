//! What a backup copies and where else it goes: the files of the adapters this configuration
//! keeps on local disk, with how to open each one's snapshot at the instant that keeps a restored
//! pair consistent, and the archive (`BACKUP_AZURE_URL`) if one is configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use liveops_core::ports::Archive;
use liveops_core::PortResult;
use liveops_sql::{Backend, SqliteRepository};
use liveops_sqlite_bus::SqliteBus;
use liveops_sqlite_file::{Snapshot, WriteLock};

use crate::config::{BusChoice, Settings};

/// One adapter's local file, as backups and restores see it.
#[derive(Clone, Debug)]
pub struct LocalFile {
    /// What it holds (`bus`, `repository`): the key of its entry in a backup set.
    pub role: &'static str,
    /// Where the live file is (or, for a restore, goes).
    pub path: PathBuf,
    /// Opens a read snapshot of the live file while it is in use, to copy later (blocking).
    pub snapshot: fn(&Path) -> PortResult<Snapshot>,
    /// Holds the live file's writer while a backup opens its snapshots (the bus's), if any.
    pub hold_writer: Option<fn(&Path) -> PortResult<WriteLock>>,
    /// Checks that a copy is sound and readable by this build (blocking).
    pub check: fn(&Path) -> PortResult<()>,
}

/// The files this configuration keeps on local disk: the bus, then the repository.
///
/// A backup opens a snapshot of each while it holds the bus's writer, so both are one instant
/// with respect to the bus's commits (`docs/adr/0028-backups-at-one-bus-instant.md`). A consumer
/// commits an event's effects and id to the repository before it acks the event on the bus, and
/// every event reaches the repository through a bus commit (its publish) first. So, restored:
/// an event published after that instant is in neither file; one acked before it has its
/// effects in the repository; one published but not acked by a group is in the bus unacked for
/// that group, redelivered, and skipped by its recorded id if the repository applied it. Every
/// group counts every event of the restored bus once, and none counts an event it does not hold.
pub fn local_files(s: &Settings) -> Vec<LocalFile> {
    let mut files = Vec::new();
    if let BusChoice::Sqlite(path) = &s.bus {
        files.push(LocalFile {
            role: "bus",
            path: path.clone(),
            snapshot: SqliteBus::file_snapshot,
            hold_writer: Some(SqliteBus::hold_writer),
            check: SqliteBus::check_copy,
        });
    }
    if Backend::of_url(&s.db_url).ok() == Some(Backend::Sqlite) {
        if let Ok(path) = SqliteRepository::database_file(&s.db_url) {
            files.push(LocalFile {
                role: "repository",
                path,
                snapshot: SqliteRepository::file_snapshot,
                hold_writer: None,
                check: SqliteRepository::check_copy,
            });
        }
    }
    files
}

/// The archive `BACKUP_AZURE_URL` names, if any.
pub fn archive(s: &Settings) -> PortResult<Option<Arc<dyn Archive>>> {
    match &s.backup.azure {
        None => Ok(None),
        Some(target) => azure(&target.url, target.key.as_deref()).map(Some),
    }
}

#[cfg(feature = "azure")]
fn azure(url: &str, key: Option<&str>) -> PortResult<Arc<dyn Archive>> {
    Ok(Arc::new(liveops_azure_blob::BlobContainer::new(url, key)?))
}

#[cfg(not(feature = "azure"))]
fn azure(_url: &str, _key: Option<&str>) -> PortResult<Arc<dyn Archive>> {
    // Settings::resolve refuses BACKUP_AZURE_URL in a build without it.
    Err(liveops_core::PortError::Unavailable(
        "BACKUP_AZURE_URL: this build has no Azure Blob adapter".into(),
    ))
}
