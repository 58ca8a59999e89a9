//! Where a process that starts finds its backup age: the newest set already complete in
//! `BACKUP_DIR` (and whole in the archive, when there is one), read back so a restart does not
//! hide how old it is (`backup_last_success_timestamp_seconds`).

use std::path::Path;

use liveops_core::ports::Archive;

use super::restore::MAX_AHEAD;
use super::set;

/// When the newest set complete everywhere it goes began (unix ms): the newest complete set in
/// `dir` (`BACKUP_DIR`) that is also whole in `archive`, when there is one. A set dated more than
/// [`MAX_AHEAD`] after this host's clock (taken while a clock was ahead) says nothing of the
/// age and is passed over (logged). `None` when there is none, or the sets or the archive cannot
/// be read (logged).
pub async fn complete_ms(dir: &Path, archive: Option<&dyn Archive>) -> Option<i64> {
    let listing = dir.to_path_buf();
    let local = tokio::task::spawn_blocking(move || set::created(&listing)).await;
    let mut sets = match local {
        Ok(Ok(sets)) => sets,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Ok(Err(error)) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot list the backup sets");
            return None;
        }
        Err(error) => {
            tracing::warn!(%error, "the backup listing thread failed");
            return None;
        }
    };
    if let Some(archive) = archive {
        let archived = match archive.list(set::PREFIX).await {
            Ok(objects) => objects,
            Err(error) => {
                tracing::warn!(archive = archive.location(), %error,
                    "cannot list the archived backup sets");
                return None;
            }
        };
        let whole = |name: &str| archived.contains(&format!("{name}/{}", set::MANIFEST));
        sets.retain(|(name, _)| whole(name));
    }
    let latest = liveops_core::now_ms().saturating_add(MAX_AHEAD.as_millis() as i64);
    sets.retain(|(name, at_ms)| {
        let dated = *at_ms <= latest;
        if !dated {
            tracing::warn!(set = %name, "a backup set dated in the future is not counted for the backup age");
        }
        dated
    });
    sets.into_iter().map(|(_, at_ms)| at_ms).max()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use liveops_core::PortResult;

    use super::set::Manifest;
    use super::*;

    /// An archive that only lists `objects`.
    struct Listed(Vec<String>);

    #[async_trait::async_trait]
    impl Archive for Listed {
        fn location(&self) -> String {
            "listed://".into()
        }
        async fn put_file(&self, _: &str, _: &Path) -> PortResult<u64> {
            Ok(0)
        }
        async fn get_file(&self, _: &str, _: &Path) -> PortResult<u64> {
            Ok(0)
        }
        async fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
            Ok(self
                .0
                .iter()
                .filter(|o| o.starts_with(prefix))
                .cloned()
                .collect())
        }
    }

    /// Writes a complete set begun at `at` into `dir`; its name.
    fn complete_set(dir: &Path, at: &str) -> String {
        let at: DateTime<Utc> = DateTime::parse_from_rfc3339(at).expect("time").into();
        let name = set::name_at(at);
        std::fs::create_dir_all(dir.join(&name)).expect("set dir");
        let manifest = Manifest {
            format: set::FORMAT,
            name: name.clone(),
            created_at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            liveops: "test".into(),
            files: Vec::new(),
            pre_upgrade: None,
        };
        set::write_manifest(&dir.join(&name), &manifest).expect("manifest");
        name
    }

    /// After a restart the backup age starts from the newest complete set already there (in
    /// the archive too, when there is one), not from nothing: `LiveOpsBackupTooOld` can fire
    /// before this process's first backup succeeds.
    #[tokio::test]
    async fn the_newest_complete_set_is_found_again_at_start() {
        let dir = tempfile::tempdir().expect("dir");
        let sets = dir.path().join("backups");
        assert_eq!(complete_ms(&sets, None).await, None, "no sets yet");

        let older = complete_set(&sets, "2026-12-01T10:00:00.250Z");
        let newer = complete_set(&sets, "2026-12-01T10:10:00.500Z");
        // Half-written: not a set.
        std::fs::create_dir(set::partial_dir(&sets, "liveops-20261201T102000.000Z")).expect("dir");
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("t")
                .timestamp_millis()
        };
        assert_eq!(
            complete_ms(&sets, None).await,
            Some(at("2026-12-01T10:10:00.500Z"))
        );

        // The newer set's manifest never reached the archive: the older one is the newest whole
        // everywhere.
        let archive = Listed(vec![
            format!("{older}/{}", set::MANIFEST),
            format!("{older}/repository.db"),
            format!("{newer}/repository.db"),
        ]);
        assert_eq!(
            complete_ms(&sets, Some(&archive)).await,
            Some(at("2026-12-01T10:00:00.250Z"))
        );
    }

    /// A set dated past the clock's tolerated skew (taken while a clock was ahead) is not the
    /// newest for the backup age: the age stays that of the newest set that can be dated.
    #[tokio::test]
    async fn a_set_from_the_future_is_not_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let sets = dir.path().join("backups");
        let now = Utc::now();
        let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let past = now - chrono::Duration::minutes(10);
        complete_set(&sets, &fmt(past));
        complete_set(&sets, &fmt(now + chrono::Duration::days(30)));
        assert_eq!(
            complete_ms(&sets, None).await,
            Some(past.timestamp_millis())
        );
    }
}
