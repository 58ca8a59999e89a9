//! Which backends the settings name: the repository (`DB_URL`), Redis (`REDIS_URL`,
//! `REDIS_CA_FILE`), each URL given plainly or as a file (`*_FILE`), and whether this build has
//! them. The bus is resolved in [`super::bus`].

use super::secrets::{either, read_secret_file};
use super::{bad, ConfigError, RawConfig};

/// The backends, resolved.
#[derive(Clone)]
pub(super) struct Backends {
    pub db_url: String,
    pub redis_url: Option<String>,
    pub redis_ca: Option<Vec<u8>>,
}

fn needs_feature(var: &'static str, what: &str, feature: &str) -> ConfigError {
    bad(
        var,
        format!("{what} needs a build with the `{feature}` feature (cargo build --features full)"),
    )
}

/// Checks that `DB_URL` names a backend this build has.
fn check_db_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
    // Only a scheme is ever named: the rest of a URL (or of a string that is none) may hold a
    // password.
    let scheme = match url.split_once("://") {
        Some((s, _))
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')) =>
        {
            s
        }
        _ => {
            return Err(bad(
                var,
                "not a URL: use sqlite://, postgres:// or mysql://",
            ))
        }
    };
    let (built, feature) = match scheme {
        "sqlite" => (true, "sqlite"),
        "postgres" | "postgresql" => (cfg!(feature = "postgres"), "postgres"),
        "mysql" | "mariadb" => (cfg!(feature = "mysql"), "mysql"),
        _ => {
            return Err(bad(
                var,
                format!("unknown scheme {scheme:?}: use sqlite://, postgres:// or mysql://"),
            ))
        }
    };
    if built {
        Ok(())
    } else {
        Err(needs_feature(var, &format!("{scheme}://"), feature))
    }
}

pub(super) fn resolve(raw: &RawConfig) -> Result<Backends, ConfigError> {
    let db_url = match either("DB_URL", &raw.db_url, "DB_URL_FILE", &raw.db_url_file)? {
        Some(url) => {
            let var = if raw.db_url.is_some() {
                "DB_URL"
            } else {
                "DB_URL_FILE"
            };
            check_db_url(var, &url)?;
            url
        }
        None => format!("sqlite://{}", raw.data_dir.join("liveops.db").display()),
    };
    let redis_url = either(
        "REDIS_URL",
        &raw.redis_url,
        "REDIS_URL_FILE",
        &raw.redis_url_file,
    )?;
    if redis_url.is_some() && !cfg!(feature = "redis") {
        return Err(bad(
            "REDIS_URL",
            "this build has no Redis adapters (cargo build --features full); unset it for the embedded default",
        ));
    }
    let redis_ca = match &raw.redis_ca_file {
        Some(path) => {
            let pem = read_secret_file("REDIS_CA_FILE", path)?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(bad(
                    "REDIS_CA_FILE",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            Some(pem.into_bytes())
        }
        None => None,
    };
    Ok(Backends {
        db_url,
        redis_url,
        redis_ca,
    })
}
