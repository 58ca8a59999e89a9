//! The signing keys: fixed ones (`HMAC_SECRET` or `HMAC_SECRET_FILE`, `HMAC_KEYS`, or in dev a
//! generated secret in `DATA_DIR`) and those of `HMAC_KEYS_FILE`, which the process re-reads
//! while it runs (`crate::key_files`). Errors name the variable and never a secret.

use std::path::{Path, PathBuf};

use liveops_core::signing::{KeyList, MIN_SECRET_LEN};
use liveops_core::{KeyStore, Keyring};

use super::secrets::{either, read_secret_file};
use super::{bad, ConfigError, Env, RawConfig};

/// Name of the generated dev secret inside `DATA_DIR`.
pub const DEV_SECRET_FILE: &str = "dev-hmac-secret";

/// The layer of the key store that holds the fixed keys.
pub const FIXED_LAYER: &str = "config";
/// The layer of the key store that holds the keys of `HMAC_KEYS_FILE`.
pub const FILE_LAYER: &str = "file";

/// Where the signing keys come from, as read at start.
#[derive(Clone)]
pub struct KeySources {
    /// Keys fixed for the life of the process.
    pub fixed: KeyList,
    /// `HMAC_KEYS_FILE` and the keys it held at start.
    pub file: Option<(PathBuf, KeyList)>,
    /// Where the dev secret was generated, if it was.
    pub dev_secret_path: Option<PathBuf>,
    /// Whether this start wrote the dev secret (none was there): what it signs, nothing else
    /// with another `DATA_DIR` accepts.
    pub dev_secret_created: bool,
}

impl std::fmt::Debug for KeySources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: secrets never reach logs.
        let ids = |keys: &KeyList| keys.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("KeySources")
            .field("fixed", &ids(&self.fixed))
            .field("file", &self.file.as_ref().map(|(p, k)| (p, ids(k))))
            .finish()
    }
}

impl KeySources {
    /// Every key known at start, fixed ones first (for the CLI's signing and checks).
    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        self.store().map(|s| s.current().as_ref().clone())
    }

    /// A key store with the fixed keys and the file's keys as two layers.
    pub fn store(&self) -> Result<KeyStore, ConfigError> {
        let file = self
            .file
            .as_ref()
            .map(|(_, k)| k.clone())
            .unwrap_or_default();
        KeyStore::with_layers(vec![(FIXED_LAYER, self.fixed.clone()), (FILE_LAYER, file)])
            .map_err(|e| bad("HMAC_SECRET", e.to_string()))
    }
}

/// Parses a key list, `kid=secret` entries separated by commas or new lines. `fixed` are the ids
/// the fixed keys use, which a list may not reuse. The error says which entry is wrong, never
/// what it holds.
pub fn parse_key_list(text: &str, fixed: &[&str]) -> Result<KeyList, String> {
    let mut keys: KeyList = Vec::new();
    let entries = text
        .split([',', '\n'])
        .map(|e| e.trim_matches(['\r', ' ', '\t']))
        .filter(|e| !e.is_empty());
    for (i, entry) in entries.enumerate() {
        let Some((kid, secret)) = entry.split_once('=') else {
            return Err(format!("entry {} is not kid=secret", i + 1));
        };
        let kid = kid.trim();
        if kid.is_empty() || secret.is_empty() {
            return Err(format!("entry {} is not kid=secret", i + 1));
        }
        // Named by its id only where it reads as one: a secret wrapped onto a second line
        // ending in `=` would otherwise be quoted as the id of a key with a short secret.
        let named = if liveops_core::sealing::is_key_id(kid) {
            format!("entry {} (key {kid:?})", i + 1)
        } else {
            format!("entry {}", i + 1)
        };
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!("the secret of {named} is shorter than 32 bytes"));
        }
        if keys.iter().any(|(k, _)| k == kid) || fixed.contains(&kid) {
            return Err(format!("the key id of {named} is given twice"));
        }
        keys.push((kid.to_owned(), secret.as_bytes().to_vec()));
    }
    if keys.is_empty() {
        return Err("no kid=secret entry".into());
    }
    Ok(keys)
}

/// Reads every key source of `raw`; outside dev some source must give a key.
pub(super) fn sources(raw: &RawConfig) -> Result<KeySources, ConfigError> {
    let mut fixed: KeyList = Vec::new();
    let secret = either(
        "HMAC_SECRET",
        &raw.hmac_secret,
        "HMAC_SECRET_FILE",
        &raw.hmac_secret_file,
    )?;
    if let Some(s) = secret {
        let var = if raw.hmac_secret.is_some() {
            "HMAC_SECRET"
        } else {
            "HMAC_SECRET_FILE"
        };
        if s.len() < MIN_SECRET_LEN {
            return Err(bad(var, "secret must be at least 32 bytes"));
        }
        fixed.push(("default".into(), s.into_bytes()));
    }
    if raw.hmac_keys.is_some() && raw.hmac_keys_file.is_some() {
        return Err(bad(
            "HMAC_KEYS_FILE",
            "set either HMAC_KEYS or HMAC_KEYS_FILE, not both",
        ));
    }
    if let Some(list) = &raw.hmac_keys {
        let ids: Vec<&str> = fixed.iter().map(|(k, _)| k.as_str()).collect();
        let extra = parse_key_list(list, &ids).map_err(|e| bad("HMAC_KEYS", e))?;
        fixed.extend(extra);
    }
    let file = match &raw.hmac_keys_file {
        Some(path) => {
            let text = read_secret_file("HMAC_KEYS_FILE", path)?;
            let ids: Vec<&str> = fixed.iter().map(|(k, _)| k.as_str()).collect();
            let keys = parse_key_list(&text, &ids).map_err(|e| bad("HMAC_KEYS_FILE", e))?;
            Some((path.clone(), keys))
        }
        None => None,
    };
    let mut dev_secret_path = None;
    let mut dev_secret_created = false;
    if fixed.is_empty() && file.is_none() {
        if raw.env != Env::Dev {
            return Err(bad(
                "HMAC_SECRET",
                "outside ENV=dev a signing key is required: set HMAC_SECRET, HMAC_SECRET_FILE, \
                 HMAC_KEYS or HMAC_KEYS_FILE",
            ));
        }
        let path = raw.data_dir.join(DEV_SECRET_FILE);
        let (secret, created) = dev_secret(&path).map_err(|e| {
            bad(
                "HMAC_SECRET",
                format!("cannot create the dev secret at {}: {e}", path.display()),
            )
        })?;
        fixed.push(("default".into(), secret.into_bytes()));
        dev_secret_path = Some(path);
        dev_secret_created = created;
    }
    Ok(KeySources {
        fixed,
        file,
        dev_secret_path,
        dev_secret_created,
    })
}

/// Reads the dev secret, creating a random one (owner-only permissions) on first use.
fn dev_secret(path: &Path) -> std::io::Result<(String, bool)> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_owned();
        if s.len() >= MIN_SECRET_LEN {
            return Ok((s, false));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes: [u8; 32] = rand::random();
    let secret = hex::encode(bytes);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &secret)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok((secret, true))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    const S1: &str = "0123456789abcdef0123456789abcdef";
    const S2: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn key_lists_take_commas_and_new_lines() {
        let keys = parse_key_list(&format!("k1={S1},\nk2={S2}\r\n"), &[]).unwrap();
        let ids: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(ids, ["k1", "k2"]);
        assert_eq!(keys[1].1, S2.as_bytes());
    }

    #[test]
    fn bad_lists_say_which_entry_and_never_the_secret() {
        for (text, fixed, want) in [
            (format!("k1={S1},{S2}"), vec![], "entry 2 is not kid=secret"),
            (
                "k1=short-secret".to_owned(),
                vec![],
                "shorter than 32 bytes",
            ),
            (format!("k1={S1},k1={S2}"), vec![], "given twice"),
            (format!("default={S1}"), vec!["default"], "given twice"),
            (" \n".to_owned(), vec![], "no kid=secret entry"),
            // A base64 secret wrapped onto a second line: its text is not quoted as an id.
            (
                format!("k1={S1}\nQmFzZTY0IHNlY3JldCB0ZXh0+/abcdef=="),
                vec![],
                "the secret of entry 2 is shorter",
            ),
        ] {
            let e = parse_key_list(&text, &fixed).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("abcdef") && !e.contains("short-secret"), "{e}");
            assert!(!e.contains("QmFzZTY0"), "{e}");
        }
    }
}
