//! What a backup copies and where else it goes: the files of the adapters this configuration
//! keeps on local disk, in the order that keeps a restored pair consistent, and the archive
//! (`BACKUP_AZURE_URL`) if one is configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use liveops_core::ports::Archive;
use liveops_core::PortResult;
use liveops_sql::{Backend, SqliteRepository};
use liveops_sqlite_bus::SqliteBus;

use crate::config::{BusChoice, Settings};

/// One adapter's local file, as backups and restores see it.
#[derive(Clone, Debug)]
pub struct LocalFile {
    /// What it holds (`bus`, `repository`): the key of its entry in a backup set.
    pub role: &'static str,
    /// Where the live file is (or, for a restore, goes).
    pub path: PathBuf,
    /// Writes a consistent copy of the live file into a new file while it is in use (blocking).
    pub copy: fn(&Path, &Path) -> PortResult<u64>,
    /// Checks that a copy is sound and readable by this build (blocking).
    pub check: fn(&Path) -> PortResult<()>,
}

/// The files this configuration keeps on local disk, in the order a backup must copy them.
///
/// The bus comes first. Its copy holds, per consumer group, a position below which every event
/// is acked, and a consumer acks an event only after its effects and its event id are
/// committed to the repository. A repository copied *after* the bus therefore holds the effects
/// of every event the bus copy calls acked, so a restore loses nothing that was accepted before
/// the backup started. What the repository applied meanwhile is either redelivered by the
/// restored bus and skipped by its recorded id, or was published after the bus copy and is
/// counted once. Copied the other way round, the bus could call acked an event whose effects
/// the older repository copy never saw: that event would be lost.
pub fn local_files(s: &Settings) -> Vec<LocalFile> {
    let mut files = Vec::new();
    if let BusChoice::Sqlite(path) = &s.bus {
        files.push(LocalFile {
            role: "bus",
            path: path.clone(),
            copy: SqliteBus::backup,
            check: SqliteBus::check_copy,
        });
    }
    if Backend::of_url(&s.db_url).ok() == Some(Backend::Sqlite) {
        if let Ok(path) = SqliteRepository::database_file(&s.db_url) {
            files.push(LocalFile {
                role: "repository",
                path,
                copy: SqliteRepository::backup,
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
