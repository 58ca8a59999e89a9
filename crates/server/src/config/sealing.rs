//! The keys secrets are sealed with at rest (`SECRETS_KEYS_FILE`, `SECRETS_SEAL`; ADR 0032).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use liveops_core::sealing::{Sealer, SealerCell};

use super::keys::parse_key_list;
use super::secrets::read_secret_file;
use super::{bad, ConfigError};

/// How secrets are sealed in the database, as given.
#[derive(Args, Clone, Debug)]
pub struct SealingConfig {
    /// File of `kid=material` entries (by commas or lines; material of at least 32
    /// characters): API keys' and webhooks' secrets, campaigns' seeds and keyed answers are
    /// stored sealed with the first and opened with any. Read at start and again each second
    /// (a change is taken at once, a broken one refused). Unset: in the clear.
    #[arg(long, env = "SECRETS_KEYS_FILE")]
    pub secrets_keys_file: Option<PathBuf>,
    /// `false`: the keys only open; new secrets are written in the clear and sealed ones are
    /// written back in the clear (before a rollback to a release that reads them so).
    #[arg(long, env = "SECRETS_SEAL", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub secrets_seal: bool,
}

impl SealingConfig {
    /// The sealer these settings give, in the cell the process keeps it in: none without a
    /// file. Errors name the entry, never what it holds.
    pub fn resolve(&self) -> Result<Arc<SealerCell>, ConfigError> {
        const VAR: &str = "SECRETS_KEYS_FILE";
        let Some(path) = &self.secrets_keys_file else {
            return Ok(Arc::default());
        };
        let text = read_secret_file(VAR, path)?;
        let sealer = self.sealer_of(&text).map_err(|e| bad(VAR, e))?;
        Ok(Arc::new(SealerCell::new(sealer)))
    }

    /// The sealer over the keys file's contents `text` (sealing unless `SECRETS_SEAL=false`),
    /// or why not, naming the entry and never what it holds.
    pub fn sealer_of(&self, text: &str) -> Result<Sealer, String> {
        let keys = parse_key_list(text, &[])?;
        let sealer = Sealer::new(keys.iter().map(|(id, m)| (id.as_str(), m.as_slice())))
            .map_err(|e| e.to_string())?;
        Ok(if self.secrets_seal {
            sealer
        } else {
            sealer.opening_only()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn config(text: Option<&str>, seal: bool) -> (tempfile::TempDir, SealingConfig) {
        let dir = tempfile::tempdir().unwrap();
        let file = text.map(|t| {
            let path = dir.path().join("secrets-keys");
            std::fs::write(&path, t).unwrap();
            path
        });
        let c = SealingConfig {
            secrets_keys_file: file,
            secrets_seal: seal,
        };
        (dir, c)
    }

    #[test]
    fn a_file_of_keys_seals_with_the_first() {
        let m1 = "a".repeat(32);
        let m2 = "b".repeat(40);
        let (_dir, c) = config(Some(&format!("k2={m2}\nk1={m1}\n")), true);
        let sealer = c.resolve().unwrap().load();
        assert_eq!(sealer.current(), Some("k2"));
        assert_eq!(sealer.key_ids(), ["k2", "k1"]);
        let (_dir, c) = config(Some(&format!("k2={m2},k1={m1}")), false);
        let sealer = c.resolve().unwrap().load();
        assert!(sealer.opens() && !sealer.seals());
    }

    #[test]
    fn no_file_writes_in_the_clear() {
        let (_dir, c) = config(None, true);
        let sealer = c.resolve().unwrap().load();
        assert!(!sealer.opens() && !sealer.seals());
    }

    #[test]
    fn bad_files_name_the_variable_and_not_the_material() {
        for text in [
            "k1=tooshortmaterial",
            "k 1=0123456789abcdef0123456789abcdef",
            "nokey",
            "",
        ] {
            let (_dir, c) = config(Some(text), true);
            let e = c.resolve().unwrap_err();
            assert_eq!(e.var, "SECRETS_KEYS_FILE", "{text}");
            assert!(!e.to_string().contains("tooshort"), "{e}");
            assert!(!e.to_string().contains("0123456789abcdef"), "{e}");
        }
    }
}
