//! Configuration: 12-factor, every variable also a CLI flag (ARCHITECTURE §5).
//!
//! Parsing is in two steps: clap reads raw values (env first, flags override) — the settings
//! every process shares here, each module's own settings from its `Args` — then
//! [`Settings::resolve`] checks them all and turns the shared ones into typed settings, failing
//! with one line that names the variable.

mod keys;
mod kinds;

pub use kinds::{BusKind, Cloud, Env};

use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use clap::Args;
use liveops_core::{Calendar, Keyring, LevelCurve};
pub use liveops_module::ConfigError;

use crate::modules::{Table, Target};

/// The settings every process reads, as given by environment and flags (each module adds its
/// own).
#[derive(Args, Clone, Debug)]
pub struct RawConfig {
    /// dev | staging | prod. In dev a missing secret is generated in DATA_DIR.
    #[arg(long = "env", env = "ENV", value_enum, default_value = "dev")]
    pub env: Env,
    /// local | azure | aws.
    #[arg(long, env = "CLOUD", value_enum, default_value = "local")]
    pub cloud: Cloud,
    /// Listen port (default by target: 8080 all/gateway, 8081 fairness, 8082 leaderboard,
    /// 8083 progression).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// Listen address.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// Services to run: a module (gateway, fairness, leaderboard, progression), a group (all,
    /// ingest, game), or several, comma separated.
    #[arg(long = "target", env = "LIVEOPS_TARGET", default_value = "all")]
    pub target: String,
    /// Where the embedded default keeps its files.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// HMAC secret (≥ 32 bytes) for request signatures and receipts.
    #[arg(long, env = "HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<String>,
    /// File holding the HMAC secret (e.g. a Key Vault CSI mount).
    #[arg(long, env = "HMAC_SECRET_FILE")]
    pub hmac_secret_file: Option<PathBuf>,
    /// Extra keys for rotation: `kid=secret,kid2=secret2` (picked by `X-Key-Id`).
    #[arg(long, env = "HMAC_KEYS", hide_env_values = true)]
    pub hmac_keys: Option<String>,
    /// Repository URL: `sqlite://`, `postgres://` or `mysql://` (default `sqlite://DATA_DIR/liveops.db`).
    #[arg(long, env = "DB_URL", hide_env_values = true)]
    pub db_url: Option<String>,
    /// Redis for hot state and ranks: `redis://host:port/db`, or several comma-separated node URLs
    /// (or `redis+cluster://`) for a Redis Cluster. Unset: in-process state.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Bus backend: sqlite (durable local log) | redis (Redis Streams) | inmem (tests only).
    #[arg(long, env = "BUS_KIND", value_enum, default_value = "sqlite")]
    pub bus_kind: BusKind,
    /// Bus connection (sqlite: the file, default `DATA_DIR/bus.db`; redis: the URL, default `REDIS_URL`).
    #[arg(long, env = "BUS_CONN", hide_env_values = true)]
    pub bus_conn: Option<String>,
    /// Streams per topic on the Redis bus; a player's events always go to the same one.
    #[arg(long, env = "BUS_PARTITIONS", default_value_t = 8)]
    pub bus_partitions: u32,
    /// First day of season 1 (YYYY-MM-DD, UTC).
    #[arg(long, env = "SEASON_START", default_value = "2026-01-01")]
    pub season_start: String,
    /// Length of a season in days.
    #[arg(long, env = "SEASON_DAYS", default_value_t = 90)]
    pub season_days: u32,
    /// Level curve: one step (`1000`) or cumulative thresholds (`100,300,600`).
    #[arg(long, env = "LEVEL_CURVE", default_value = "1000")]
    pub level_curve: String,
    /// Allowed clock difference for X-Timestamp, seconds.
    #[arg(long, env = "SIG_TOLERANCE_SEC", default_value_t = 300)]
    pub sig_tolerance_sec: i64,
    /// Seconds before an unacked bus message is delivered again.
    #[arg(long, env = "BUS_VISIBILITY_SEC", default_value_t = 30)]
    pub bus_visibility_sec: u64,
    /// Deliveries before a message goes to the dead letters.
    #[arg(long, env = "BUS_MAX_DELIVERIES", default_value_t = 10)]
    pub bus_max_deliveries: u32,
    /// Log filter (`info`, `liveops=debug,sqlx=warn`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// OTLP endpoint for traces (not built into this version; see README).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
}

/// Parses command-line style arguments (plus the environment) as `serve` does, with the
/// settings of every module of `table`: the shared settings and the whole parse, from which each
/// module reads its own.
pub fn parse_args<I, T>(
    table: &Table,
    args: I,
) -> Result<(RawConfig, clap::ArgMatches), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    let cmd = table.args(RawConfig::augment_args(clap::Command::new("liveops")));
    let all = std::iter::once(std::ffi::OsString::from("liveops"))
        .chain(args.into_iter().map(Into::into));
    let matches = cmd.try_get_matches_from(all)?;
    let raw = RawConfig::from_arg_matches(&matches)?;
    Ok((raw, matches))
}

/// Everything given on the command line and in the environment, before it is checked: the
/// shared settings and the whole parse (each module reads its own settings from it).
#[derive(Clone, Debug)]
pub struct Given {
    /// The shared settings.
    pub raw: RawConfig,
    /// The whole parse.
    pub args: clap::ArgMatches,
}

impl Given {
    /// Parses `args` (plus the environment) with the standard module table.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let (raw, args) = parse_args(&Table::standard(), args)?;
        Ok(Self { raw, args })
    }

    /// Checks everything against the standard module table.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        Settings::resolve(&Table::standard(), self.raw, self.args)
    }
}

fn bad(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(var, reason)
}

/// Checked, typed settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The raw values they came from.
    pub raw: RawConfig,
    /// The whole parse: every module reads its own settings from it.
    pub args: clap::ArgMatches,
    /// Every module this binary knows.
    pub table: Table,
    /// The modules this process runs.
    pub target: Target,
    /// Port to listen on.
    pub port: u16,
    /// Signing keys.
    pub keyring: Keyring,
    /// Where the dev secret was generated, if it was.
    pub dev_secret_path: Option<PathBuf>,
    /// Repository URL.
    pub db_url: String,
    /// Bus file for the sqlite bus.
    pub bus_path: PathBuf,
    /// Bus URL for the redis bus.
    pub bus_url: Option<String>,
    /// Season calendar.
    pub calendar: Calendar,
    /// XP per level.
    pub level_curve: LevelCurve,
}

impl Settings {
    /// Validates the settings of every module of `table` and the shared ones; in dev mode
    /// generates a missing secret in `DATA_DIR`.
    pub fn resolve(
        table: &Table,
        raw: RawConfig,
        args: clap::ArgMatches,
    ) -> Result<Self, ConfigError> {
        table.check(&args)?;
        let target = table.target(&raw.target)?;
        let port = raw.port.unwrap_or(target.port);
        let (keyring, dev_secret_path) = keys::keyring(&raw)?;
        let db_url = match &raw.db_url {
            Some(u) => {
                let scheme = u.split("://").next().unwrap_or_default();
                let built = match scheme {
                    "sqlite" => true,
                    "postgres" | "postgresql" => cfg!(feature = "postgres"),
                    "mysql" | "mariadb" => cfg!(feature = "mysql"),
                    _ => {
                        return Err(bad(
                            "DB_URL",
                            format!(
                                "unknown scheme {scheme:?}: use sqlite://, postgres:// or mysql://"
                            ),
                        ))
                    }
                };
                if !built {
                    return Err(bad(
                        "DB_URL",
                        format!("{scheme}:// needs a build with the `{scheme}` feature (cargo build --features full)"),
                    ));
                }
                u.clone()
            }
            None => format!("sqlite://{}", raw.data_dir.join("liveops.db").display()),
        };
        if raw.redis_url.is_some() && !cfg!(feature = "redis") {
            return Err(bad(
                "REDIS_URL",
                "this build has no Redis adapters (cargo build --features full); unset it for the embedded default",
            ));
        }
        let bus_path = match &raw.bus_conn {
            Some(c) if raw.bus_kind == BusKind::Sqlite => {
                PathBuf::from(c.strip_prefix("sqlite://").unwrap_or(c))
            }
            _ => raw.data_dir.join("bus.db"),
        };
        let bus_url = match raw.bus_kind {
            BusKind::Redis => {
                if !cfg!(feature = "redis") {
                    return Err(bad("BUS_KIND", "redis needs a build with the `redis` feature (cargo build --features full)"));
                }
                let url = raw.bus_conn.clone().or_else(|| raw.redis_url.clone());
                if url.is_none() {
                    return Err(bad(
                        "BUS_CONN",
                        "BUS_KIND=redis needs BUS_CONN or REDIS_URL",
                    ));
                }
                url
            }
            _ => None,
        };
        if !(1..=1024).contains(&raw.bus_partitions) {
            return Err(bad("BUS_PARTITIONS", "must be between 1 and 1024"));
        }
        let start = NaiveDate::parse_from_str(&raw.season_start, "%Y-%m-%d")
            .map_err(|_| bad("SEASON_START", "must be a date YYYY-MM-DD"))?;
        if raw.season_days == 0 || raw.season_days > 3660 {
            return Err(bad("SEASON_DAYS", "must be between 1 and 3660"));
        }
        let calendar = Calendar {
            season_start: Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).unwrap_or_default()),
            season_days: raw.season_days,
        };
        let level_curve =
            LevelCurve::parse(&raw.level_curve).map_err(|e| bad("LEVEL_CURVE", e.to_string()))?;
        if raw.sig_tolerance_sec <= 0 {
            return Err(bad("SIG_TOLERANCE_SEC", "must be at least 1 second"));
        }
        if raw.bus_visibility_sec == 0 {
            return Err(bad("BUS_VISIBILITY_SEC", "must be at least 1 second"));
        }
        if raw.bus_max_deliveries == 0 {
            return Err(bad("BUS_MAX_DELIVERIES", "must be at least 1"));
        }
        tracing_subscriber::EnvFilter::try_new(&raw.log_level)
            .map_err(|e| bad("LOG_LEVEL", e.to_string()))?;
        Ok(Self {
            args,
            table: table.clone(),
            target,
            port,
            keyring,
            dev_secret_path,
            db_url,
            bus_path,
            bus_url,
            calendar,
            level_curve,
            raw,
        })
    }

    /// How long an unacked bus message stays invisible, and how often it is delivered.
    pub fn bus_options(&self) -> liveops_core::ports::BusOptions {
        liveops_core::ports::BusOptions {
            visibility_timeout: Duration::from_secs(self.raw.bus_visibility_sec),
            max_deliveries: self.raw.bus_max_deliveries,
        }
    }
}

pub use keys::DEV_SECRET_FILE;

#[cfg(test)]
mod tests;
