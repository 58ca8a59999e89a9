//! `liveops restore`: puts a backup set's files where the settings place the live files (in
//! `DATA_DIR` by default). It holds `DATA_DIR`'s lock exclusively from start to end (refused while
//! any liveops process that opens the files runs; see [`crate::data_lock`]), and refuses while
//! any of those files (or a `-wal`, `-shm` or `-journal` beside one) exists, or appears before
//! its move; anything else in the directory (the backup sets themselves, a volume's
//! `lost+found`) is left alone. Every file is checked against the manifest's SHA-256 and by its
//! adapter (`quick_check`, schema version) before any is moved into place, so a damaged set
//! never becomes a live file. A set taken more than `EVENT_RETENTION` ago, or whose time is more
//! than [`MAX_AHEAD`] in the future, is refused unless forced ([`check_age`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::set;
use super::target::{check_free, move_in};
use crate::config::Settings;
use crate::data_lock::DataLock;
use crate::wiring::backup::{archive, local_files, LocalFile};

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

/// Restores the set `from` into the places `settings` give the live files; `force`: even a set
/// taken more than `EVENT_RETENTION` ago or stamped in the future.
pub async fn run(settings: &Settings, from: &Source, force: bool) -> anyhow::Result<Restored> {
    let targets = local_files(settings);
    anyhow::ensure!(
        !targets.is_empty(),
        "nothing to restore into: this configuration keeps no files on local disk"
    );
    // Held until the restore ends: no liveops process has the files open, none opens them.
    let _lock = DataLock::exclusive(settings)?;
    check_free(&targets)?;
    let data_dir = &settings.raw.data_dir;
    // A download lands in DATA_DIR (on the volume the files go to, not on a container's
    // read-only or small root filesystem) and is removed afterwards.
    let download = tempfile::Builder::new()
        .prefix(".liveops-restore-")
        .tempdir_in(data_dir)
        .with_context(|| format!("DATA_DIR: cannot write in {}", data_dir.display()))?;
    // None: any age will do.
    let keep = (!force).then_some(settings.retention.keep);
    let (set_dir, owned) = match from {
        Source::Dir(dir) => (dir.clone(), false),
        Source::Archive(name) => (fetch(settings, name, download.path(), keep).await?, true),
    };
    // A download's age was checked before its files came.
    let keep = if owned { None } else { keep };
    tokio::task::spawn_blocking(move || place(&set_dir, &targets, owned, keep))
        .await
        .context("the restore thread failed")?
}

/// How far in the future a set's `createdAt` may be (clocks of two hosts apart) before its age
/// is taken to be unknown.
pub const MAX_AHEAD: Duration = Duration::from_secs(5 * 60);

/// Refuses a set taken more than `keep` ago, or whose time cannot be read or is more than
/// [`MAX_AHEAD`] after `now_ms`. An old set's processed event ids are all older than
/// `EVENT_RETENTION`: the first purge after start deletes them, while the events its bus still
/// holds unacked, applied before the backup, are delivered again and applied a second time
/// (ADR 0028). A set from the future was taken while a clock was wrong: it may be that old.
pub fn check_age(manifest: &set::Manifest, keep: Duration, now_ms: i64) -> anyhow::Result<()> {
    let taken = manifest.created_ms().with_context(|| {
        format!(
            "cannot tell when set {} was taken; restore it with --force only if it is younger \
             than EVENT_RETENTION",
            manifest.name
        )
    })?;
    let ahead = taken.saturating_sub(now_ms);
    anyhow::ensure!(
        ahead <= millis(MAX_AHEAD),
        "set {} says it was taken at {}, {} after this host's clock: the clock of the host that \
         took it was ahead (or this one's is behind), so how old it is cannot be told, and it may \
         be older than EVENT_RETENTION ({}). Check both clocks; restore it with --force only if \
         it is younger than that (docs/OPERATIONS.md, Restore)",
        manifest.name,
        manifest.created_at,
        crate::dead_letters::age(ahead),
        crate::dead_letters::age(millis(keep))
    );
    let age = Duration::from_millis(u64::try_from(now_ms.saturating_sub(taken)).unwrap_or(0));
    anyhow::ensure!(
        age <= keep,
        "set {} was taken {} ago, more than EVENT_RETENTION ({}): the first purge after start \
         would delete every processed event id it holds, and the events its bus still holds \
         unacked would be applied a second time (XP, score counted twice). Restore a younger \
         set, or accept that risk with --force (docs/OPERATIONS.md, Restore)",
        manifest.name,
        crate::dead_letters::age(millis(age)),
        crate::dead_letters::age(millis(keep))
    );
    Ok(())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Downloads a set from the archive into `into` (refused past `keep`, read from its manifest
/// before anything else); returns its directory.
async fn fetch(
    settings: &Settings,
    name: &str,
    into: &Path,
    keep: Option<Duration>,
) -> anyhow::Result<PathBuf> {
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
    let manifest = set::read_manifest(&dir)?;
    if let Some(keep) = keep {
        check_age(&manifest, keep, liveops_core::now_ms())?;
    }
    for e in manifest.files {
        archive
            .get_file(&format!("{name}/{}", e.file), &dir.join(&e.file))
            .await?;
    }
    Ok(dir)
}

/// Checks the set's age (unless `keep` is `None`) and every file of the set, stages and checks
/// every copy beside its target, then moves them all into place, the bus last (blocking).
/// `owned`: the set is a download of this restore, so its files are moved rather than copied.
fn place(
    set_dir: &Path,
    targets: &[LocalFile],
    owned: bool,
    keep: Option<Duration>,
) -> anyhow::Result<Restored> {
    let manifest = set::read_manifest(set_dir)?;
    if let Some(keep) = keep {
        check_age(&manifest, keep, liveops_core::now_ms())?;
    }
    let mut plan = Vec::new();
    for e in &manifest.files {
        let target = targets.iter().find(|t| t.role == e.role).with_context(|| {
            format!(
                "the set holds a {} file, but this configuration keeps no {} on local disk",
                e.role, e.role
            )
        })?;
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
    let mut staged: Vec<(&set::Entry, &LocalFile, PathBuf)> = Vec::new();
    let outcome = (|| {
        for &(e, target) in &plan {
            let dir = target.path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir)?;
            let copy = dir.join(format!(".{}.restoring", e.file));
            let src = set_dir.join(&e.file);
            // A move within one filesystem; a copy otherwise or when the set is not ours.
            if !owned || std::fs::rename(&src, &copy).is_err() {
                std::fs::copy(&src, &copy)?;
            }
            staged.push((e, target, copy.clone()));
            std::fs::File::open(&copy)?.sync_all()?;
            (target.check)(&copy)
                .with_context(|| format!("the {} copy failed its check", e.role))?;
        }
        Ok::<_, anyhow::Error>(())
    })();
    if let Err(error) = outcome {
        for (_, _, copy) in &staged {
            let _ = std::fs::remove_file(copy);
        }
        return Err(error.context("nothing was restored"));
    }
    // The bus goes in last: a restore cut short between two moves leaves a repository without a
    // bus (the bus's backlog lost), never a bus whose positions call acked the events of a
    // repository that is not there.
    staged.sort_by_key(|(e, _, _)| e.role == "bus");
    let mut placed: Vec<(String, PathBuf)> = Vec::new();
    let moved = (|| {
        check_free(targets)?;
        for (e, target, copy) in &staged {
            move_in(copy, &target.path)?;
            placed.push((e.role.clone(), target.path.clone()));
            set::sync_dir(target.path.parent().unwrap_or(Path::new(".")))?;
        }
        Ok::<_, anyhow::Error>(())
    })();
    if let Err(error) = moved {
        // Nothing opened what this restore placed (it holds DATA_DIR's lock): take it back.
        for path in placed
            .iter()
            .map(|(_, p)| p)
            .chain(staged.iter().map(|(_, _, c)| c))
        {
            let _ = std::fs::remove_file(path);
        }
        return Err(error.context("nothing was restored"));
    }
    Ok(Restored {
        name: manifest.name,
        created_at: manifest.created_at,
        files: placed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set whose `createdAt` is past this host's clock by more than [`MAX_AHEAD`] has no age
    /// that can be trusted: refused, saying why; within the skew it passes like a fresh set.
    #[test]
    fn a_set_taken_in_the_future_is_refused_past_a_small_skew() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").expect("time");
        let set_at = |at: chrono::DateTime<chrono::FixedOffset>| set::Manifest {
            format: set::FORMAT,
            name: "liveops-x".into(),
            created_at: at.to_rfc3339(),
            liveops: "test".into(),
            files: Vec::new(),
            pre_upgrade: None,
        };
        let keep = Duration::from_secs(7 * 24 * 3600);
        let now_ms = now.timestamp_millis();
        let within = set_at(now + chrono::Duration::minutes(4));
        check_age(&within, keep, now_ms).expect("within the skew");
        let ahead = set_at(now + chrono::Duration::hours(3));
        let err = check_age(&ahead, keep, now_ms).expect_err("3 h ahead");
        let text = err.to_string();
        assert!(
            text.contains("after this host's clock")
                && text.contains("3h 0m")
                && text.contains("--force"),
            "{text}"
        );
        // A set taken a day ago still passes; one older than EVENT_RETENTION does not.
        check_age(&set_at(now - chrono::Duration::days(1)), keep, now_ms).expect("a day old");
        assert!(check_age(&set_at(now - chrono::Duration::days(8)), keep, now_ms).is_err());
    }
}
