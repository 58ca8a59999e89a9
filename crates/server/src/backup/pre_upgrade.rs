//! The pre-upgrade backup set: a release that finds the embedded SQLite repository with
//! migrations applied and some of its own pending copies the embedded files into
//! `BACKUP_DIR/pre-upgrade-<from>-<to>-<UTC time>` (and the archive, when there is one) before
//! anything opens them. Once migrated, every later set holds the new migrations, which the release
//! before refuses to restore: this set is the rollback path, and pruning keeps it apart from the
//! `BACKUP_KEEP` ordinary sets ([`super::set::PRE_UPGRADE_KEEP`]).
//!
//! If it cannot be taken, nothing is migrated and the command fails, unless
//! `PRE_UPGRADE_BACKUP=false` says to go on without it.

use anyhow::Context as _;
use liveops_sql::SqliteRepository;

use super::set::PreUpgrade;
use super::{Backups, Report};
use crate::config::Settings;
use crate::wiring::backup::local_files;

/// Takes the pre-upgrade set if the repository `settings` name is an embedded file with
/// migrations applied and some of this release's pending; call it before the adapters open
/// (the repository migrates on open). `None`: nothing to migrate, a new database, a server
/// database, or `PRE_UPGRADE_BACKUP=false` (logged).
pub async fn before_migrating(settings: &Settings) -> anyhow::Result<Option<Report>> {
    let Some(repository) = local_files(settings)
        .into_iter()
        .find(|f| f.role == "repository" && f.path.exists())
    else {
        return Ok(None);
    };
    let file = repository.path.clone();
    let (newest, pending) =
        tokio::task::spawn_blocking(move || SqliteRepository::pending_migrations(&file))
            .await
            .context("the migration check's thread failed")?
            .with_context(|| {
                format!(
                    "DB_URL: cannot read the migrations of {}",
                    repository.path.display()
                )
            })?;
    let (Some(from), Some(&to)) = (newest, pending.last()) else {
        return Ok(None);
    };
    if !settings.backup.pre_upgrade {
        tracing::warn!(
            from_migration = from,
            ?pending,
            "PRE_UPGRADE_BACKUP=false: the repository migrates without a pre-upgrade backup \
             set; the release before can restore only sets taken before now"
        );
        return Ok(None);
    }
    tracing::info!(
        from_migration = from,
        ?pending,
        "the repository has migrations to apply: taking the pre-upgrade backup set first"
    );
    let upgrade = PreUpgrade {
        from_migration: from,
        to_migration: to,
    };
    let report = Backups::new(settings)?
        .run_before_upgrade(upgrade)
        .await
        .with_context(|| {
            format!(
                "the pre-upgrade backup set could not be taken, so the repository (at migration \
                 {from}) was not migrated to {to}: once migrated, the release before refuses \
                 every later set, and this set is its rollback path. Fix BACKUP_DIR ({}) or the \
                 archive and start again, or set PRE_UPGRADE_BACKUP=false \
                 (--pre-upgrade-backup false) to migrate without it",
                settings.backup.dir.display()
            )
        })?;
    tracing::info!(set = %report.name, path = %report.path.display(),
        archived = report.archived.as_deref().unwrap_or("-"), "pre-upgrade backup set taken");
    Ok(Some(report))
}
