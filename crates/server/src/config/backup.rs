//! Backup settings: where and how often `serve` copies the embedded files (`BACKUP_DIR`,
//! `BACKUP_EVERY`, `BACKUP_KEEP`), and the optional Azure Blob container that receives a copy of
//! every set (`BACKUP_AZURE_URL`, `BACKUP_AZURE_KEY` or `BACKUP_AZURE_KEY_FILE`), and whether a
//! release that finds the embedded repository to migrate may go on without its pre-upgrade set
//! (`PRE_UPGRADE_BACKUP`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::{bad, duration, ConfigError};

/// Backup settings as given (no `Debug`: they hold a storage key).
#[derive(Args, Clone)]
pub struct BackupConfig {
    /// Directory receiving the backup sets of the embedded files (default `DATA_DIR/backups`).
    #[arg(long, env = "BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Time between the starts of scheduled backups inside `serve`: `10m`, `600s`, `1h`; `0` or
    /// `off` turns them off. The 15-minute RPO needs it plus a run's duration below 15 minutes.
    #[arg(long, env = "BACKUP_EVERY", default_value = "10m")]
    pub backup_every: String,
    /// Backup sets kept in `BACKUP_DIR`; older ones are deleted after each backup.
    #[arg(long, env = "BACKUP_KEEP", default_value_t = 8)]
    pub backup_keep: u32,
    /// Azure Blob container (and optional name prefix) receiving a copy of every set:
    /// `https://<account>.blob.core.windows.net/<container>[/<prefix>]`, optionally with a SAS
    /// query (`?sv=...&sig=...`).
    #[arg(long, env = "BACKUP_AZURE_URL", hide_env_values = true)]
    pub backup_azure_url: Option<String>,
    /// Storage account key (base64) for `BACKUP_AZURE_URL`; not needed with a SAS.
    #[arg(long, env = "BACKUP_AZURE_KEY", hide_env_values = true)]
    pub backup_azure_key: Option<String>,
    /// File holding the storage account key (e.g. a Key Vault CSI mount).
    #[arg(long, env = "BACKUP_AZURE_KEY_FILE")]
    pub backup_azure_key_file: Option<PathBuf>,
    /// Before migrating the embedded SQLite repository, take a pre-upgrade backup set (the
    /// rollback path) and refuse to migrate if it fails; `false` migrates without one.
    #[arg(long, env = "PRE_UPGRADE_BACKUP", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub pre_upgrade_backup: bool,
}

/// Where backups go, checked.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    /// Directory of the backup sets.
    pub dir: PathBuf,
    /// Time between scheduled backups; `None`: no schedule.
    pub every: Option<Duration>,
    /// Sets kept in `dir`.
    pub keep: usize,
    /// Object storage receiving a copy of each set.
    pub azure: Option<AzureTarget>,
    /// Whether a pre-upgrade set must be taken before the repository is migrated.
    pub pre_upgrade: bool,
}

/// An Azure Blob container for backup sets.
#[derive(Clone)]
pub struct AzureTarget {
    /// Container URL with an optional prefix and SAS query.
    pub url: String,
    /// Account key for Shared Key signing, if no SAS is in the URL.
    pub key: Option<String>,
}

impl std::fmt::Debug for AzureTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a SAS signature and the key is a secret: neither is printed.
        f.debug_struct("AzureTarget").finish_non_exhaustive()
    }
}

/// Parses `15m`, `900s`, `1h`, `900` (seconds); `0` and `off` are `None`.
pub fn parse_every(text: &str) -> Result<Option<Duration>, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let every = duration::parse(text, &[duration::S, duration::M, duration::H])?;
    Ok((!every.is_zero()).then_some(every))
}

impl BackupConfig {
    /// Checks the backup settings; `data_dir` gives the default directory.
    pub fn resolve(&self, data_dir: &Path) -> Result<BackupSettings, ConfigError> {
        let every = parse_every(&self.backup_every).map_err(|e| bad("BACKUP_EVERY", e))?;
        if every.is_some_and(|d| d < Duration::from_secs(10)) {
            return Err(bad(
                "BACKUP_EVERY",
                "must be at least 10s (or 0 to turn it off)",
            ));
        }
        if self.backup_keep == 0 {
            return Err(bad("BACKUP_KEEP", "must keep at least 1 set"));
        }
        let azure = match &self.backup_azure_url {
            None => None,
            Some(_) if !cfg!(feature = "azure") => {
                return Err(bad(
                    "BACKUP_AZURE_URL",
                    "needs a build with the `azure` feature (cargo build --features full)",
                ))
            }
            Some(url) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(bad("BACKUP_AZURE_URL", "must be an http(s) container URL"));
                }
                // Read as every other secret file is (an empty one refused); a blank key is
                // refused too: it would be preferred to a SAS and fail every upload.
                let key = super::secrets::either(
                    "BACKUP_AZURE_KEY",
                    &self.backup_azure_key,
                    "BACKUP_AZURE_KEY_FILE",
                    &self.backup_azure_key_file,
                )?
                .map(|k| k.trim().to_owned());
                if key.as_deref().is_some_and(str::is_empty) {
                    return Err(bad("BACKUP_AZURE_KEY", "is empty"));
                }
                let has_sas = url.contains("sig=");
                if key.is_none() && !has_sas {
                    return Err(bad(
                        "BACKUP_AZURE_KEY",
                        "BACKUP_AZURE_URL needs an account key or a SAS in its query",
                    ));
                }
                // The URL's form and the key's base64, checked now rather than at the first
                // backup (after start-up, or never with BACKUP_EVERY=0).
                #[cfg(feature = "azure")]
                liveops_azure_blob::BlobContainer::new(url, key.as_deref()).map_err(|e| {
                    let e = e.to_string();
                    bad(
                        if e.contains("key") {
                            "BACKUP_AZURE_KEY"
                        } else {
                            "BACKUP_AZURE_URL"
                        },
                        e,
                    )
                })?;
                Some(AzureTarget {
                    url: url.clone(),
                    key,
                })
            }
        };
        Ok(BackupSettings {
            dir: self
                .backup_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("backups")),
            every,
            keep: usize::try_from(self.backup_keep).unwrap_or(usize::MAX),
            azure,
            pre_upgrade: self.pre_upgrade_backup,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_an_operator_writes_them() {
        let m = |s| Some(Duration::from_secs(s));
        assert_eq!(parse_every("15m"), Ok(m(900)));
        assert_eq!(parse_every("900s"), Ok(m(900)));
        assert_eq!(parse_every("900"), Ok(m(900)));
        assert_eq!(parse_every("1h"), Ok(m(3600)));
        assert_eq!(parse_every("0"), Ok(None));
        assert_eq!(parse_every("off"), Ok(None));
        for bad in ["", "m", "15 minutes", "-5m", "1.5h", "15d"] {
            assert!(parse_every(bad).is_err(), "{bad}");
        }
    }
}
