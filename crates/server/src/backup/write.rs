//! Writing one backup set: a snapshot of every file at one instant with respect to the bus, the
//! copies under a partial name, the manifest, the set renamed into place, then pruning.

use std::time::Instant;

use anyhow::Context as _;
use liveops_sqlite_file::Snapshot;

use super::set::{self, Entry, Manifest, PreUpgrade};
use super::Report;
use crate::wiring::backup::LocalFile;

/// Opens a snapshot of every file, in order, while the writers of those that have one (the
/// bus) are held: no publish, poll or ack commits between the first snapshot and the last, so
/// the set is one instant with respect to the bus (`docs/adr/0028-backups-at-one-bus-instant.md`).
/// Blocking; the writers are held for as long as opening the snapshots takes (milliseconds).
fn snapshot_all(files: &[LocalFile]) -> anyhow::Result<Vec<Snapshot>> {
    let held = files
        .iter()
        .filter_map(|f| f.hold_writer.map(|hold| (f, hold)))
        .map(|(f, hold)| hold(&f.path).with_context(|| format!("holding the {}'s writer", f.role)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // From here the others wait: the time to take the writers is not part of their wait.
    let started = Instant::now();
    let snapshots = files
        .iter()
        .map(|f| {
            (f.snapshot)(&f.path).with_context(|| format!("opening a snapshot of the {}", f.role))
        })
        .collect::<anyhow::Result<Vec<_>>>();
    drop(held);
    let held_for = started.elapsed().as_secs_f64();
    metrics::gauge!("backup_bus_hold_seconds").set(held_for);
    tracing::debug!(seconds = held_for, "backup snapshots opened");
    snapshots
}

/// Writes one set (blocking; a pre-upgrade one with `upgrade`): snapshots every file at one
/// instant, copies them under a partial name, writes the manifest, renames the set into place,
/// then prunes.
pub(super) fn write_set(
    files: &[LocalFile],
    dir: &std::path::Path,
    keep: usize,
    upgrade: Option<PreUpgrade>,
) -> anyhow::Result<Report> {
    let created = chrono::Utc::now();
    let name = match upgrade {
        None => set::name_at(created),
        Some(u) => set::pre_upgrade_name_at(created, u),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("BACKUP_DIR: cannot create {}", dir.display()))?;
    let partial = set::partial_dir(dir, &name);
    std::fs::create_dir(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let copied = (|| {
        // Every copy first, each ending its snapshot, so none is held while others are checked.
        let mut copies = Vec::new();
        for (f, snapshot) in files.iter().zip(snapshot_all(files)?) {
            // Named by what it holds, never after the live file: a name a set refuses (a dot
            // first), or two live files of one name in two folders, would make every set
            // unusable or every backup fail. Restores map files by role.
            let file = format!("{}.db", f.role);
            let dest = partial.join(&file);
            snapshot
                .copy_into(&dest)
                .with_context(|| format!("copying the {} ({})", f.role, f.path.display()))?;
            copies.push((f.role, file, dest));
        }
        let mut entries = Vec::new();
        for (role, file, dest) in copies {
            let bytes = liveops_sqlite_file::seal(&dest)
                .with_context(|| format!("checking the copy of the {role}"))?;
            let sha256 = set::sha256_file(&dest)?;
            entries.push(Entry {
                role: role.to_owned(),
                file,
                bytes,
                sha256,
            });
        }
        set::write_manifest(
            &partial,
            &Manifest {
                format: set::FORMAT,
                name: name.clone(),
                created_at: created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                liveops: env!("CARGO_PKG_VERSION").to_owned(),
                files: entries.clone(),
                pre_upgrade: upgrade,
            },
        )?;
        set::sync_dir(&partial)?;
        Ok::<_, anyhow::Error>(entries)
    })();
    let entries = match copied {
        Ok(e) => e,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    let path = dir.join(&name);
    std::fs::rename(&partial, &path)?;
    set::sync_dir(dir)?;
    let pruned = set::prune(dir, keep)?;
    if !pruned.is_empty() {
        tracing::info!(?pruned, "old backup sets deleted");
    }
    Ok(Report {
        bytes: entries.iter().map(|e| e.bytes).sum(),
        name,
        path,
        created_at_ms: created.timestamp_millis(),
        seconds: 0.0,
        files: entries,
        archived: None,
    })
}
