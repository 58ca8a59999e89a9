//! Which backends the settings name: the repository (`DB_URL`), Redis (`REDIS_URL`,
//! `REDIS_CA_FILE`) and the bus (`BUS_KIND`, `BUS_CONN`), each URL given plainly or as a file
//! (`*_FILE`), and whether this build has them.

use std::path::PathBuf;

use super::secrets::{either, read_secret_file};
use super::{bad, BusKind, ConfigError, RawConfig};

/// The backends, resolved.
#[derive(Clone)]
pub(super) struct Backends {
    pub db_url: String,
    pub redis_url: Option<String>,
    pub redis_ca: Option<Vec<u8>>,
    pub bus_path: PathBuf,
    pub bus_url: Option<String>,
}

fn needs_feature(var: &'static str, what: &str, feature: &str) -> ConfigError {
    bad(
        var,
        format!("{what} needs a build with the `{feature}` feature (cargo build --features full)"),
    )
}

/// Checks that `DB_URL` names a backend this build has.
fn check_db_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
    let scheme = url.split("://").next().unwrap_or_default();
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
    let bus_conn = either(
        "BUS_CONN",
        &raw.bus_conn,
        "BUS_CONN_FILE",
        &raw.bus_conn_file,
    )?;
    let bus_path = match &bus_conn {
        Some(c) if raw.bus_kind == BusKind::Sqlite => {
            PathBuf::from(c.strip_prefix("sqlite://").unwrap_or(c))
        }
        _ => raw.data_dir.join("bus.db"),
    };
    let bus_url = match raw.bus_kind {
        BusKind::Redis => {
            if !cfg!(feature = "redis") {
                return Err(needs_feature("BUS_KIND", "BUS_KIND=redis", "redis"));
            }
            let url = bus_conn.or_else(|| redis_url.clone());
            if url.is_none() {
                return Err(bad(
                    "BUS_CONN",
                    "BUS_KIND=redis needs BUS_CONN (or BUS_CONN_FILE) or REDIS_URL",
                ));
            }
            url
        }
        _ => None,
    };
    Ok(Backends {
        db_url,
        redis_url,
        redis_ca,
        bus_path,
        bus_url,
    })
}
