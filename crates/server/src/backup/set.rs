//! A backup set on disk: a directory `liveops-<UTC time>` holding one copy per local file and a
//! `manifest.json` (written last) naming each file's role, size and SHA-256. A set is written
//! under `.partial-<name>` and renamed once complete, so a directory with a manifest is whole.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name inside a set.
pub const MANIFEST: &str = "manifest.json";

/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Prefix of every set's name.
pub const PREFIX: &str = "liveops-";

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
    format!("{PREFIX}{}", at.format("%Y%m%dT%H%M%S%.3fZ"))
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

/// The complete sets in `dir`, oldest first.
pub fn complete_sets(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX) && dir.join(n).join(MANIFEST).is_file())
        .collect();
    names.sort();
    Ok(names)
}

/// The complete sets in `dir`, oldest first, each with when its copies began (unix ms, from its
/// manifest); a set whose manifest cannot be read is left out (logged).
pub fn created(dir: &Path) -> std::io::Result<Vec<(String, i64)>> {
    let mut sets = Vec::new();
    for name in complete_sets(dir)? {
        let at = read_manifest(&dir.join(&name)).and_then(|m| {
            DateTime::parse_from_rfc3339(&m.created_at)
                .with_context(|| format!("{name}: createdAt {:?}", m.created_at))
        });
        match at {
            Ok(at) => sets.push((name, at.timestamp_millis())),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "backup set left out"),
        }
    }
    Ok(sets)
}

/// Deletes all but the newest `keep` complete sets, and sets left half-written by a process
/// that died more than an hour ago; returns the names deleted.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<String>> {
    let sets = complete_sets(dir)?;
    let mut gone = Vec::new();
    for name in &sets[..sets.len().saturating_sub(keep)] {
        std::fs::remove_dir_all(dir.join(name))?;
        gone.push(name.clone());
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
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_pruning_keeps_the_newest_complete_sets() {
        let dir = tempfile::tempdir().expect("dir");
        let t0 = DateTime::parse_from_rfc3339("2026-12-01T10:15:00.5Z")
            .expect("time")
            .with_timezone(&Utc);
        let names: Vec<String> = (0..5)
            .map(|i| name_at(t0 + chrono::Duration::seconds(i * 90)))
            .collect();
        assert_eq!(names[0], "liveops-20261201T101500.500Z");
        for n in &names {
            std::fs::create_dir(dir.path().join(n)).expect("set");
            std::fs::write(dir.path().join(n).join(MANIFEST), "{}").expect("manifest");
        }
        // A set still being written is neither counted nor (while fresh) deleted.
        std::fs::create_dir(partial_dir(dir.path(), "liveops-x")).expect("partial");
        assert_eq!(complete_sets(dir.path()).expect("sets"), names);
        assert_eq!(prune(dir.path(), 2).expect("prune"), names[..3].to_vec());
        assert_eq!(
            complete_sets(dir.path()).expect("sets"),
            names[3..].to_vec()
        );
        assert!(partial_dir(dir.path(), "liveops-x").exists());
    }
}
