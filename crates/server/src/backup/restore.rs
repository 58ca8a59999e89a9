//! `liveops restore`: puts a backup set's files where the settings place the live files (in
//! `DATA_DIR` by default), refusing a target that holds anything. Each file is checked against
//! the manifest's SHA-256 and by its adapter (`quick_check`, schema version) before it is moved
//! into place, so a damaged set never becomes a live file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::set;
use crate::config::Settings;
use crate::wiring::backup::{archive, local_files};

/// Where a set comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A set directory (with its `manifest.json`).
    Dir(PathBuf),
    /// A set in the archive (`BACKUP_AZURE_URL`) by name, or the newest with `latest`.
    Archive(String),
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    /// The set restored.
    pub name: String,
    /// When it was taken.
    pub created_at: String,
    /// Where each file went, by role.
    pub files: Vec<(String, PathBuf)>,
}

/// Fails unless `dir` is missing or empty: a restore never mixes with existing files.
pub fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("DATA_DIR: cannot read {}", dir.display())),
        Ok(mut entries) => {
            anyhow::ensure!(
                entries.next().is_none(),
                "DATA_DIR {} is not empty: restore only into a new or empty directory",
                dir.display()
            );
            Ok(())
        }
    }
}

/// Restores the set `from` into the places `settings` give the live files.
pub async fn run(settings: &Settings, from: &Source) -> anyhow::Result<Restored> {
    check_empty(&settings.raw.data_dir)?;
    std::fs::create_dir_all(&settings.raw.data_dir)?;
    // A download lands beside DATA_DIR (not in it) and is removed afterwards.
    let parent = settings
        .raw
        .data_dir
        .canonicalize()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let download = tempfile::Builder::new()
        .prefix(".liveops-restore-")
        .tempdir_in(parent)?;
    let set_dir = match from {
        Source::Dir(dir) => dir.clone(),
        Source::Archive(name) => fetch(settings, name, download.path()).await?,
    };
    let targets = local_files(settings);
    tokio::task::spawn_blocking(move || place(&set_dir, &targets))
        .await
        .context("the restore thread failed")?
}

/// Downloads a set from the archive into `into`; returns its directory.
async fn fetch(settings: &Settings, name: &str, into: &Path) -> anyhow::Result<PathBuf> {
    let archive =
        archive(settings)?.context("--from-archive needs BACKUP_AZURE_URL (and its key)")?;
    let name = if name == "latest" {
        let objects = archive.list("liveops-").await?;
        objects
            .iter()
            .filter_map(|o| o.strip_suffix(&format!("/{}", set::MANIFEST)))
            .max()
            .map(str::to_owned)
            .with_context(|| format!("no backup set in {}", archive.location()))?
    } else {
        name.to_owned()
    };
    let dir = into.join(&name);
    std::fs::create_dir(&dir)?;
    archive
        .get_file(
            &format!("{name}/{}", set::MANIFEST),
            &dir.join(set::MANIFEST),
        )
        .await
        .with_context(|| format!("no set {name} in {}", archive.location()))?;
    for e in set::read_manifest(&dir)?.files {
        archive
            .get_file(&format!("{name}/{}", e.file), &dir.join(&e.file))
            .await?;
    }
    Ok(dir)
}

/// Checks every file of the set, then moves each into place (blocking).
fn place(set_dir: &Path, targets: &[crate::wiring::backup::LocalFile]) -> anyhow::Result<Restored> {
    let manifest = set::read_manifest(set_dir)?;
    let mut plan = Vec::new();
    for e in &manifest.files {
        let target = targets.iter().find(|t| t.role == e.role).with_context(|| {
            format!(
                "the set holds a {} file, but this configuration keeps no {} on local disk",
                e.role, e.role
            )
        })?;
        anyhow::ensure!(
            !target.path.exists(),
            "{} exists already: restore only into an empty place",
            target.path.display()
        );
        let src = set_dir.join(&e.file);
        let sha = set::sha256_file(&src).with_context(|| format!("reading {}", src.display()))?;
        anyhow::ensure!(
            sha == e.sha256,
            "{} does not match its manifest (SHA-256 {sha}, expected {})",
            src.display(),
            e.sha256
        );
        plan.push((e, target));
    }
    let mut placed = Vec::new();
    for (e, target) in plan {
        let dir = target.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let staged = dir.join(format!(".{}.restoring", e.file));
        std::fs::copy(set_dir.join(&e.file), &staged)?;
        std::fs::File::open(&staged)?.sync_all()?;
        if let Err(error) = (target.check)(&staged) {
            let _ = std::fs::remove_file(&staged);
            return Err(error).with_context(|| format!("the {} copy failed its check", e.role));
        }
        std::fs::rename(&staged, &target.path)?;
        set::sync_dir(dir)?;
        placed.push((e.role.clone(), target.path.clone()));
    }
    Ok(Restored {
        name: manifest.name,
        created_at: manifest.created_at,
        files: placed,
    })
}
