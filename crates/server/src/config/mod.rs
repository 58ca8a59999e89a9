//! Configuration: 12-factor, every variable also a CLI flag (ARCHITECTURE §5).
//!
//! Parsing is in two steps: clap reads raw values (env first, flags override) — the settings
//! every process shares here, each module's own settings from its `Args` — then
//! [`Settings::resolve`] checks them all and turns the shared ones into typed settings, failing
//! with one line that names the variable.

mod backends;
pub mod backup;
mod bus;
mod duration;
pub mod http;
mod keys;
mod kinds;
mod raw;
pub mod reads;
pub mod retention;
pub mod sealing;
mod secrets;
mod split;

pub use bus::{BusArgs, BusChoice, AZURE_SECRETS_DIR};
pub use kinds::{BusKind, Cloud, Env};

use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use clap::Args;
use liveops_core::{Calendar, Keyring, LevelCurve};

pub use keys::{parse_key_list, KeySources, FILE_LAYER};
pub use liveops_module::ConfigError;
pub use raw::RawConfig;

use crate::modules::{Table, Target};

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
#[derive(Clone)]
pub struct Given {
    /// The shared settings.
    pub raw: RawConfig,
    /// The whole parse.
    pub args: clap::ArgMatches,
}

impl std::fmt::Debug for Given {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The shared settings without their secrets; not the parse, which holds every value.
        f.debug_struct("Given")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
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

/// The bus kind `raw` selects: `BUS_KIND`, else the one `CLOUD` implies.
pub fn bus_kind(raw: &RawConfig) -> BusKind {
    bus::kind(&raw.bus, raw.cloud)
}

/// `SHUTDOWN_DELAY` outside `ENV=dev` when not set: a few seconds for endpoints and load
/// balancers to stop sending new requests.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
/// The longest `SHUTDOWN_DELAY` accepted.
const MAX_SHUTDOWN_DELAY_S: u64 = 300;

fn bad(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(var, reason)
}

/// Checked, typed settings (their `Debug` shows no secret).
#[derive(Clone)]
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
    /// Every signing key known at start (the CLI's tools sign and check with it).
    pub keyring: Keyring,
    /// Where the signing keys come from (the server re-reads `HMAC_KEYS_FILE`).
    pub keys: KeySources,
    /// Where the dev secret was generated, if it was.
    pub dev_secret_path: Option<PathBuf>,
    /// Repository URL.
    pub db_url: String,
    /// The bus kind in force (`BUS_KIND`, else the one `CLOUD` implies).
    pub bus_kind: BusKind,
    /// Where the bus is.
    pub bus: BusChoice,
    /// Redis URL for hot state and ranks, if any.
    pub redis_url: Option<String>,
    /// CA certificates (PEM) for `rediss://` connections, if given.
    pub redis_ca: Option<Vec<u8>>,
    /// The address to listen on (`BIND`): IPv4 or IPv6.
    pub bind: std::net::IpAddr,
    /// How long the process keeps serving, not ready, after SIGTERM.
    pub shutdown_delay: Duration,
    /// Season calendar.
    pub calendar: Calendar,
    /// XP per level.
    pub level_curve: LevelCurve,
    /// Leaderboard windows ranked (`LB_WINDOWS`).
    pub windows: Vec<liveops_core::Window>,
    /// How long a ranking waits after its end (`LB_SETTLE_SEC`).
    pub settle: std::time::Duration,
    /// Where backups of the embedded files go.
    pub backup: backup::BackupSettings,
    /// The read replica, if any.
    pub reads: Option<reads::ReadReplica>,
    /// How long per-event rows are kept and how often older ones are purged.
    pub retention: retention::Retention,
    /// The HTTP server's limits on slow and numerous clients.
    pub http: http::HttpLimits,
    /// Seals and opens the secrets the database holds (`SECRETS_KEYS_FILE`).
    pub sealer: std::sync::Arc<liveops_core::sealing::SealerCell>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("raw", &self.raw)
            .field("target", &self.target.name)
            .field("port", &self.port)
            .field("keys", &self.keys)
            .field("bind", &self.bind)
            .field("shutdown_delay", &self.shutdown_delay)
            .finish_non_exhaustive()
    }
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
        let keys = keys::sources(&raw)?;
        let keyring = keys.keyring()?;
        let dev_secret_path = keys.dev_secret_path.clone();
        let backends = backends::resolve(&raw)?;
        ConfigError::within("IDEMP_MAX_KEYS", raw.idemp_max_keys, 10_000..=1_000_000_000)?;
        if let Some(t) = &raw.peer_url_template {
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                return Err(bad(
                    "PEER_URL_TEMPLATE",
                    "an http:// or https:// URL, such as http://liveops-{module}:{port}",
                ));
            }
        }
        let bind = raw
            .bind
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad("BIND", "an IPv4 or IPv6 address, such as 0.0.0.0 or ::"))?;
        let shutdown_delay = match raw.shutdown_delay {
            Some(s) if s > MAX_SHUTDOWN_DELAY_S => {
                return Err(bad(
                    "SHUTDOWN_DELAY",
                    format!("at most {MAX_SHUTDOWN_DELAY_S} seconds"),
                ))
            }
            Some(s) => Duration::from_secs(s),
            None if raw.env == Env::Dev => Duration::ZERO,
            None => DEFAULT_SHUTDOWN_DELAY,
        };
        let bus_kind = bus_kind(&raw);
        let bus = bus::resolve(
            &raw.bus,
            raw.cloud,
            &raw.data_dir,
            backends.redis_url.as_ref(),
        )?;
        split::check(table, &target, backends.redis_url.is_some(), &bus)?;
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
        let windows = raw.modules.windows()?;
        let settle = raw.modules.settle()?;
        if raw.sig_tolerance_sec <= 0 {
            return Err(bad("SIG_TOLERANCE_SEC", "must be at least 1 second"));
        }
        tracing_subscriber::EnvFilter::try_new(&raw.log_level)
            .map_err(|e| bad("LOG_LEVEL", e.to_string()))?;
        let backup = raw.backup.resolve(&raw.data_dir)?;
        let reads = raw.reads.resolve(&backends.db_url)?;
        let retention = raw
            .retention
            .resolve(&raw.bus.options(), raw.sig_tolerance_sec)?;
        let http = raw.http.resolve()?;
        let sealer = raw.sealing.resolve()?;
        Ok(Self {
            args,
            table: table.clone(),
            target,
            port,
            keyring,
            keys,
            dev_secret_path,
            db_url: backends.db_url,
            bus_kind,
            bus,
            redis_url: backends.redis_url,
            redis_ca: backends.redis_ca,
            bind,
            shutdown_delay,
            calendar,
            backup,
            reads,
            retention,
            http,
            sealer,
            level_curve,
            windows,
            settle,
            raw,
        })
    }

    /// How long an unacked bus message stays invisible, and how often it is delivered.
    pub fn bus_options(&self) -> liveops_core::ports::BusOptions {
        self.raw.bus.options()
    }
}

pub use keys::DEV_SECRET_FILE;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_refusals;
