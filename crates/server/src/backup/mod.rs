//! Backups of the embedded files: `liveops backup` (once) and the scheduled backup inside
//! `liveops serve` (every `BACKUP_EVERY`). Each run opens a snapshot of every local file the
//! wiring lists at one instant with respect to the bus (see [`crate::wiring::backup`]), copies
//! them into a new set in `BACKUP_DIR` while the services keep running, keeps the newest
//! `BACKUP_KEEP` sets, and uploads the set to the archive (`BACKUP_AZURE_URL`) when one is
//! configured.
//!
//! Before a release migrates the embedded repository it takes a pre-upgrade set
//! ([`pre_upgrade`]), which ordinary runs never prune.
//!
//! Runs start every `BACKUP_EVERY` from the previous run's start (not its end), so the newest
//! set's age stays below `BACKUP_EVERY` plus one run's duration.
//!
//! Metrics: `backup_last_success_timestamp_seconds` (when the copies of the newest set complete
//! everywhere it goes began: what is newer than that is not in any backup; at start, read from
//! the sets already there, so a restart does not hide how old the newest one is),
//! `backup_duration_seconds` and `backup_size_bytes` (of that run), `backup_bus_hold_seconds`
//! (how long that run held the bus's writer: publishes and acks waited that long),
//! `backup_failures_total{target="directory"|"archive"}` and `backup_archive_retries_total`.

mod newest;
pub mod pre_upgrade;
pub mod restore;
pub mod set;
pub mod target;
mod write;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use liveops_core::ports::Archive;
use liveops_module::Task;
use serde::Serialize;

use crate::config::Settings;
use crate::wiring::backup::{archive, local_files, LocalFile};
use set::{Entry, PreUpgrade};

/// The longest wait before the first scheduled backup after a start, so a process that
/// restarts often still backs up.
const FIRST_AFTER: Duration = Duration::from_secs(60);

/// What one backup made.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The set's name.
    pub name: String,
    /// Its directory.
    pub path: PathBuf,
    /// When its copies began (unix milliseconds): nothing later is in it.
    pub created_at_ms: i64,
    /// Bytes copied.
    pub bytes: u64,
    /// How long the whole run took.
    pub seconds: f64,
    /// The copies, in the order taken.
    pub files: Vec<Entry>,
    /// Where the set was uploaded, if anywhere.
    pub archived: Option<String>,
}

/// Everything a backup run needs: what to copy, where, and how many sets to keep.
pub struct Backups {
    files: Vec<LocalFile>,
    dir: PathBuf,
    keep: usize,
    archive: Option<Arc<dyn Archive>>,
    /// Held by the thread writing a set for as long as it runs, which no stop can cut short:
    /// the scheduled task waits for it before it ends, so the files stay locked
    /// (`DATA_DIR`'s lock) and the process says it stopped only after the copy.
    writing: Arc<tokio::sync::Mutex<()>>,
}

impl Backups {
    /// The backups `settings` describe.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self {
            files: local_files(settings),
            dir: settings.backup.dir.clone(),
            keep: settings.backup.keep,
            archive: archive(settings)?,
            writing: Arc::default(),
        })
    }

    /// Backups of exactly `files` into `dir`, keeping `keep` sets, with no archive.
    pub fn of(files: Vec<LocalFile>, dir: PathBuf, keep: usize) -> Self {
        Self {
            files,
            dir,
            keep,
            archive: None,
            writing: Arc::default(),
        }
    }

    /// Whether this configuration keeps anything on local disk to back up.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Makes one backup set now, keeps the newest sets, uploads the new one; records metrics.
    pub async fn run_once(&self) -> anyhow::Result<Report> {
        self.run(None).await
    }

    /// [`Self::run_once`] for the pre-upgrade set taken before the migrations `upgrade` names,
    /// of the files that exist (a bus never created is not waited for).
    pub async fn run_before_upgrade(mut self, upgrade: PreUpgrade) -> anyhow::Result<Report> {
        self.files.retain(|f| f.path.exists());
        self.run(Some(upgrade)).await
    }

    /// A set (a pre-upgrade one with `upgrade`), uploaded; the metrics recorded.
    async fn run(&self, upgrade: Option<PreUpgrade>) -> anyhow::Result<Report> {
        let started = Instant::now();
        let result = self.make_set(upgrade).await;
        let mut report = match result {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("backup_failures_total", "target" => "directory").increment(1);
                return Err(e);
            }
        };
        if let Some(archive) = &self.archive {
            if let Err(e) = upload(archive.as_ref(), &report).await {
                metrics::counter!("backup_failures_total", "target" => "archive").increment(1);
                return Err(e.context(format!("set {} is in {}", report.name, self.dir.display())));
            }
            report.archived = Some(format!("{}{}/", archive.location(), report.name));
        }
        report.seconds = started.elapsed().as_secs_f64();
        metrics::gauge!("backup_last_success_timestamp_seconds")
            .set(report.created_at_ms as f64 / 1000.0);
        metrics::gauge!("backup_duration_seconds").set(report.seconds);
        metrics::gauge!("backup_size_bytes").set(report.bytes as f64);
        Ok(report)
    }

    /// Copies every local file, in order, into a new complete set, then prunes old sets.
    async fn make_set(&self, upgrade: Option<PreUpgrade>) -> anyhow::Result<Report> {
        anyhow::ensure!(
            !self.files.is_empty(),
            "nothing to back up: this configuration keeps no files on local disk \
             (the database and bus servers have their own backups)"
        );
        let (files, dir, keep) = (self.files.clone(), self.dir.clone(), self.keep);
        let writing = Arc::clone(&self.writing).lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let _writing = writing;
            write::write_set(&files, &dir, keep, upgrade)
        })
        .await
        .context("the backup thread failed")?
    }

    /// When the newest set complete everywhere it goes began (unix ms): a set in `BACKUP_DIR`
    /// whose manifest, when an archive is configured, is in the archive too.
    pub async fn newest_complete_ms(&self) -> Option<i64> {
        newest::complete_ms(&self.dir, self.archive.as_deref()).await
    }

    /// The scheduled backup: every `every` from one run's start to the next (a run longer than
    /// `every` is followed at once), the first one within a minute of the start. It starts by
    /// setting `backup_last_success_timestamp_seconds` from the sets already there.
    pub fn task(self, every: Duration) -> Task {
        Task::new("backups", move |stop| async move {
            for target in ["directory", "archive"] {
                metrics::counter!("backup_failures_total", "target" => target).increment(0);
            }
            if let Some(at_ms) = self.newest_complete_ms().await {
                metrics::gauge!("backup_last_success_timestamp_seconds").set(at_ms as f64 / 1000.0);
            }
            let mut next = tokio::time::Instant::now() + every.min(FIRST_AFTER);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(next) => {}
                }
                let started = tokio::time::Instant::now();
                let outcome = tokio::select! {
                    _ = stop.cancelled() => {
                        // A set being written goes on in its thread: it ends first.
                        let _written = self.writing.lock().await;
                        return Ok(());
                    }
                    outcome = self.run_once() => outcome,
                };
                match outcome {
                    Ok(r) => tracing::info!(set = %r.name, bytes = r.bytes, seconds = r.seconds,
                        archived = r.archived.as_deref().unwrap_or("-"), "backup done"),
                    Err(error) => tracing::error!(error = format!("{error:#}"), "backup failed"),
                }
                next = (started + every).max(tokio::time::Instant::now());
            }
        })
    }
}

/// Uploads a set: its files, then its manifest, so an archived set with a manifest is whole.
async fn upload(archive: &dyn Archive, report: &Report) -> anyhow::Result<()> {
    for e in &report.files {
        archive
            .put_file(
                &format!("{}/{}", report.name, e.file),
                &report.path.join(&e.file),
            )
            .await
            .with_context(|| format!("uploading {} to {}", e.file, archive.location()))?;
    }
    archive
        .put_file(
            &format!("{}/{}", report.name, set::MANIFEST),
            &report.path.join(set::MANIFEST),
        )
        .await
        .with_context(|| format!("uploading the manifest to {}", archive.location()))?;
    Ok(())
}
