//! The signing keys: `HMAC_SECRET`, `HMAC_SECRET_FILE`, `HMAC_KEYS`, or in dev a generated
//! secret in `DATA_DIR`.

use std::path::{Path, PathBuf};

use liveops_core::Keyring;

use super::{bad, ConfigError, Env, RawConfig};

/// Name of the generated dev secret inside `DATA_DIR`.
pub const DEV_SECRET_FILE: &str = "dev-hmac-secret";

pub(super) fn keyring(raw: &RawConfig) -> Result<(Keyring, Option<PathBuf>), ConfigError> {
    let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
    let mut dev_path = None;
    if raw.hmac_secret.is_some() && raw.hmac_secret_file.is_some() {
        return Err(bad(
            "HMAC_SECRET_FILE",
            "set either HMAC_SECRET or HMAC_SECRET_FILE, not both",
        ));
    }
    if let Some(s) = &raw.hmac_secret {
        check_len("HMAC_SECRET", s.as_bytes())?;
        keys.push(("default".into(), s.as_bytes().to_vec()));
    }
    if let Some(path) = &raw.hmac_secret_file {
        let s = std::fs::read_to_string(path).map_err(|e| {
            bad(
                "HMAC_SECRET_FILE",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let s = s.trim_end_matches(['\n', '\r']);
        check_len("HMAC_SECRET_FILE", s.as_bytes())?;
        keys.push(("default".into(), s.as_bytes().to_vec()));
    }
    if let Some(list) = &raw.hmac_keys {
        let extra = Keyring::parse_list(list).map_err(|e| bad("HMAC_KEYS", e.to_string()))?;
        for (kid, secret) in extra {
            check_len("HMAC_KEYS", &secret)?;
            if keys.iter().any(|(k, _)| *k == kid) {
                return Err(bad("HMAC_KEYS", format!("key id {kid:?} is given twice")));
            }
            keys.push((kid, secret));
        }
    }
    if keys.is_empty() {
        if raw.env != Env::Dev {
            return Err(bad(
                "HMAC_SECRET",
                "required outside ENV=dev (or set HMAC_SECRET_FILE or HMAC_KEYS)",
            ));
        }
        let path = raw.data_dir.join(DEV_SECRET_FILE);
        let secret = dev_secret(&path).map_err(|e| {
            bad(
                "HMAC_SECRET",
                format!("cannot create the dev secret at {}: {e}", path.display()),
            )
        })?;
        keys.push(("default".into(), secret.into_bytes()));
        dev_path = Some(path);
    }
    let ring = Keyring::new(keys).map_err(|e| bad("HMAC_SECRET", e.to_string()))?;
    Ok((ring, dev_path))
}

fn check_len(var: &'static str, secret: &[u8]) -> Result<(), ConfigError> {
    if secret.len() < liveops_core::signing::MIN_SECRET_LEN {
        return Err(bad(var, "secret must be at least 32 bytes"));
    }
    Ok(())
}

/// Reads the dev secret, creating a random one (owner-only permissions) on first use.
fn dev_secret(path: &Path) -> std::io::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_owned();
        if s.len() >= liveops_core::signing::MIN_SECRET_LEN {
            return Ok(s);
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
    Ok(secret)
}
