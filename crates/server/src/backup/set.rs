//! A backup set on disk: a directory `liveops-<UTC time>` holding one copy per local file and a
//! `manifest.json` (written last) naming each file's role, size and SHA-256. A set is written
//! under `.partial-<name>` and renamed once complete, so a directory with a manifest is whole.
//!
//! A set taken just before a release migrates the repository is named
//! `pre-upgrade-<from>-<to>-<UTC time>` (the newest migration the database had, the newest this
//! release applies) and says so in its manifest (`preUpgrade`). Pruning keeps `BACKUP_KEEP`
//! ordinary sets and, apart from them, the newest [`PRE_UPGRADE_KEEP`] pre-upgrade sets. Their
//! prefix is not `liveops-`, so a release before this one never counts or prunes them, nor takes
//! one for `--from-archive latest`, yet restores one named like any set.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::restore::MAX_AHEAD;

/// The manifest's file name inside a set.
pub const MANIFEST: &str = "manifest.json";

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Prefix of every set's name.
pub const PREFIX: &str = "liveops-";

/// Prefix of a set taken before a release migrated the repository.
pub const PRE_UPGRADE_PREFIX: &str = "pre-upgrade-";

/// Pre-upgrade sets kept in `BACKUP_DIR` (the newest ones), whatever `BACKUP_KEEP` says.
pub const PRE_UPGRADE_KEEP: usize = 3;

/// Prefix of a set still being written.
const PARTIAL: &str = ".partial-";

/// What a set holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Manifest format version.
    pub format: u32,
    /// The set's name (its directory, and its prefix in the archive).
    pub name: String,
    /// When the copy started (RFC 3339, UTC).
    pub created_at: String,
    /// The version of the binary that wrote it.
    pub liveops: String,
    /// The copies, in the order they were taken.
    pub files: Vec<Entry>,
    /// Set when the set was taken before this release migrated the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_upgrade: Option<PreUpgrade>,
}

impl Manifest {
    /// When the copy started, unix ms.
    pub fn created_ms(&self) -> anyhow::Result<i64> {
        DateTime::parse_from_rfc3339(&self.created_at)
            .map(|t| t.timestamp_millis())
            .with_context(|| format!("{}: createdAt {:?}", self.name, self.created_at))
    }
}

/// The migrations a pre-upgrade set was taken before.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PreUpgrade {
    /// The newest migration the database had (the set's schema).
    pub from_migration: i64,
    /// The newest migration the release that took it was about to apply.
    pub to_migration: i64,
}

/// One copied file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// What it holds (`bus`, `repository`).
    pub role: String,
    /// Its file name inside the set.
    pub file: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// The name of a set started at `at`; names sort by time.
pub fn name_at(at: DateTime<Utc>) -> String {
    format!("{PREFIX}{}", time_part(at))
}

/// The name of a set started at `at` before the migrations `upgrade` names; those of one
/// upgrade sort by time.
pub fn pre_upgrade_name_at(at: DateTime<Utc>, upgrade: PreUpgrade) -> String {
    format!(
        "{PRE_UPGRADE_PREFIX}{:04}-{:04}-{}",
        upgrade.from_migration,
        upgrade.to_migration,
        time_part(at)
    )
}

/// `at` as set names spell it (no `-`, fixed width).
fn time_part(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// Where a set being written lives until it is complete.
pub fn partial_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{PARTIAL}{name}"))
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex::encode(hash.finalize()))
}

/// Makes a directory's entries (new files, renames) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `manifest` into `set_dir` durably.
pub fn write_manifest(set_dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let path = set_dir.join(MANIFEST);
    let text = serde_json::to_vec_pretty(manifest)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::File::open(&path)?.sync_all()?;
    Ok(())
}

/// Reads the manifest of the set in `set_dir`.
pub fn read_manifest(set_dir: &Path) -> anyhow::Result<Manifest> {
    let path = set_dir.join(MANIFEST);
    let text = std::fs::read(&path)
        .with_context(|| format!("{} is not a backup set (no {MANIFEST})", set_dir.display()))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    anyhow::ensure!(
        manifest.format == FORMAT,
        "{}: manifest format {} (this build reads {FORMAT})",
        path.display(),
        manifest.format
    );
    for e in &manifest.files {
        anyhow::ensure!(
            !e.file.contains(['/', '\\']) && !e.file.starts_with('.'),
            "{}: bad file name {:?}",
            path.display(),
            e.file
        );
    }
    Ok(manifest)
}

/// The complete sets in `dir`, oldest first (pre-upgrade sets are not among them).
pub fn complete_sets(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = complete(dir, PREFIX)?;
    names.sort();
    Ok(names)
}

/// The complete pre-upgrade sets in `dir`, oldest first.
pub fn pre_upgrade_sets(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = complete(dir, PRE_UPGRADE_PREFIX)?;
    // By the time at the end of the name, whatever upgrade each was taken before.
    names.sort_by(|a, b| {
        a.rsplit('-')
            .next()
            .cmp(&b.rsplit('-').next())
            .then(a.cmp(b))
    });
    Ok(names)
}

/// The complete sets in `dir` whose names start with `prefix`.
fn complete(dir: &Path, prefix: &str) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && dir.join(n).join(MANIFEST).is_file())
        .collect())
}

/// The complete sets in `dir`, oldest first, each with when its copies began (unix ms, from its
/// manifest); a set whose manifest cannot be read is left out (logged).
pub fn created(dir: &Path) -> std::io::Result<Vec<(String, i64)>> {
    let mut sets = Vec::new();
    for name in complete_sets(dir)? {
        match read_manifest(&dir.join(&name)).and_then(|m| m.created_ms()) {
            Ok(at) => sets.push((name, at)),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "backup set left out"),
        }
    }
    Ok(sets)
}

/// Whether set `name` is stamped more than [`MAX_AHEAD`] after `now_ms` (a clock was wrong
/// when it was taken): restore refuses it, so pruning takes it before any other.
fn from_the_future(name: &str, now_ms: i64) -> bool {
    let stamp = name.rsplit('-').next().unwrap_or_default();
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ").is_ok_and(|t| {
        t.and_utc().timestamp_millis() > now_ms.saturating_add(MAX_AHEAD.as_millis() as i64)
    })
}

/// Deletes all but the newest `keep` complete sets and the newest [`PRE_UPGRADE_KEEP`]
/// pre-upgrade sets (a set stamped in the future first: it would stay newest for ever), and
/// sets left half-written by a process that died more than an hour ago; returns the names
/// deleted.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<String>> {
    let mut gone = Vec::new();
    let now = liveops_core::now_ms();
    for (mut sets, keep) in [
        (complete_sets(dir)?, keep),
        (pre_upgrade_sets(dir)?, PRE_UPGRADE_KEEP),
    ] {
        // Stable: the others keep their order by time.
        sets.sort_by_key(|name| !from_the_future(name, now));
        for name in &sets[..sets.len().saturating_sub(keep)] {
            std::fs::remove_dir_all(dir.join(name))?;
            gone.push(name.clone());
        }
    }
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if name.starts_with(PARTIAL) && stale {
            std::fs::remove_dir_all(entry.path())?;
            gone.push(name);
        }
    }
    if !gone.is_empty() {
        sync_dir(dir)?;
    }
    Ok(gone)
}

#[cfg(test)]
mod tests;
