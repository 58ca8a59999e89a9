//! Configuration: 12-factor, every variable also a CLI flag (ARCHITECTURE §5).
//!
//! Parsing is in two steps: clap reads raw values (env first, flags override), then
//! [`Settings::resolve`] checks them and turns them into typed settings, failing with one line
//! that names the variable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use clap::{Args, ValueEnum};
use liveops_core::{Calendar, Keyring, LevelCurve, Limits, Window};

/// Deployment environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Env {
    /// A developer's machine: a missing secret is generated.
    Dev,
    /// Pre-production.
    Staging,
    /// Production.
    Prod,
}

/// Where the process runs (informational; selects nothing yet beyond labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cloud {
    /// A laptop or VM.
    Local,
    /// Microsoft Azure.
    Azure,
    /// Amazon Web Services.
    Aws,
}

/// Which services this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Every service behind one listener.
    All,
    /// `POST /events`, `POST /events/batch`.
    Gateway,
    /// Anomaly detection, strikes, blocks.
    Fairness,
    /// Rankings and snapshots.
    Leaderboard,
    /// XP, inventory, rewards, receipts.
    Progression,
}

impl Target {
    /// The port this target listens on by default.
    pub fn default_port(self) -> u16 {
        match self {
            Self::All | Self::Gateway => 8080,
            Self::Fairness => 8081,
            Self::Leaderboard => 8082,
            Self::Progression => 8083,
        }
    }

    /// Whether this target runs `service`.
    pub fn runs(self, service: Target) -> bool {
        self == Self::All || self == service
    }

    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Gateway => "gateway",
            Self::Fairness => "fairness",
            Self::Leaderboard => "leaderboard",
            Self::Progression => "progression",
        }
    }
}

/// Which bus backs the event flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BusKind {
    /// Durable local log in a SQLite file (the embedded default).
    Sqlite,
    /// In memory; tests only: unconsumed events are lost on a crash.
    Inmem,
    /// Redis Streams (`BUS_CONN`, default `REDIS_URL`), partitioned by player.
    Redis,
}

/// Raw settings as given by environment and flags.
#[derive(Args, Clone, Debug)]
pub struct RawConfig {
    /// dev | staging | prod. In dev a missing secret is generated in DATA_DIR.
    #[arg(long = "env", env = "ENV", value_enum, default_value = "dev")]
    pub env: Env,
    /// local | azure | aws.
    #[arg(long, env = "CLOUD", value_enum, default_value = "local")]
    pub cloud: Cloud,
    /// Listen port (default by target: 8080 all/gateway, 8081 fairness, 8082 leaderboard, 8083 progression).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// Listen address.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// Services to run: all | gateway | fairness | leaderboard | progression.
    #[arg(
        long = "target",
        env = "LIVEOPS_TARGET",
        value_enum,
        default_value = "all"
    )]
    pub target: Target,
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
    /// Leaderboard windows, comma separated.
    #[arg(long, env = "LB_WINDOWS", default_value = "daily,weekly,seasonal")]
    pub lb_windows: String,
    /// Default and snapshot size of a leaderboard.
    #[arg(long, env = "LB_TOPN", default_value_t = 100)]
    pub lb_topn: u64,
    /// Snapshot schedule (5-field cron, UTC).
    #[arg(long, env = "SNAPSHOT_CRON", default_value = "*/5 * * * *")]
    pub snapshot_cron: String,
    /// First day of season 1 (YYYY-MM-DD, UTC).
    #[arg(long, env = "SEASON_START", default_value = "2026-01-01")]
    pub season_start: String,
    /// Length of a season in days.
    #[arg(long, env = "SEASON_DAYS", default_value_t = 90)]
    pub season_days: u32,
    /// z-score above which an event is flagged.
    #[arg(long, env = "ANOMALY_Z", default_value_t = 3.5)]
    pub anomaly_z: f64,
    /// Samples per event type before anomaly detection starts.
    #[arg(long, env = "ANOMALY_WARMUP", default_value_t = 50)]
    pub anomaly_warmup: u64,
    /// Strikes within STRIKE_WINDOW_SEC that block a player.
    #[arg(long, env = "STRIKES_TO_BLOCK", default_value_t = 3)]
    pub strikes_to_block: u32,
    /// Window in which strikes add up, seconds.
    #[arg(long, env = "STRIKE_WINDOW_SEC", default_value_t = 600)]
    pub strike_window_sec: u64,
    /// How long a block lasts, seconds.
    #[arg(long, env = "BLOCK_SEC", default_value_t = 60)]
    pub block_sec: u64,
    /// Events per second per player before 429.
    #[arg(long, env = "RATE_LIMIT_MAX", default_value_t = 100)]
    pub rate_limit_max: u32,
    /// How long an Idempotency-Key is remembered, seconds.
    #[arg(long, env = "IDEMP_TTL", default_value_t = 86_400)]
    pub idemp_ttl: u64,
    /// Allowed clock difference for X-Timestamp, seconds.
    #[arg(long, env = "SIG_TOLERANCE_SEC", default_value_t = 300)]
    pub sig_tolerance_sec: i64,
    /// Level curve: one step (`1000`) or cumulative thresholds (`100,300,600`).
    #[arg(long, env = "LEVEL_CURVE", default_value = "1000")]
    pub level_curve: String,
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

impl RawConfig {
    /// Parses settings from command-line style arguments (plus the environment), as `serve` does.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: RawConfig,
        }
        let all = std::iter::once(std::ffi::OsString::from("liveops"))
            .chain(args.into_iter().map(Into::into));
        <Wrapper as clap::Parser>::try_parse_from(all).map(|w| w.config)
    }
}

/// A configuration problem: one line naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub var: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn bad(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// Checked, typed settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The raw values they came from.
    pub raw: RawConfig,
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
    /// Leaderboard windows.
    pub windows: Vec<Window>,
    /// Season calendar.
    pub calendar: Calendar,
    /// Level curve.
    pub curve: LevelCurve,
    /// Event field bounds.
    pub limits: Limits,
}

impl Settings {
    /// Validates raw settings; in dev mode generates a missing secret in `DATA_DIR`.
    pub fn resolve(raw: RawConfig) -> Result<Self, ConfigError> {
        let port = raw.port.unwrap_or_else(|| raw.target.default_port());
        let (keyring, dev_secret_path) = keyring(&raw)?;
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
        let windows = raw
            .lb_windows
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|w| {
                Window::parse(w).ok_or_else(|| {
                    bad(
                        "LB_WINDOWS",
                        format!("unknown window {w:?}: use daily, weekly, seasonal"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if windows.is_empty() {
            return Err(bad("LB_WINDOWS", "at least one window is required"));
        }
        if !(1..=1000).contains(&raw.lb_topn) {
            return Err(bad("LB_TOPN", "must be between 1 and 1000"));
        }
        liveops_leaderboard::parse_cron(&raw.snapshot_cron).map_err(|e| bad("SNAPSHOT_CRON", e))?;
        let start = NaiveDate::parse_from_str(&raw.season_start, "%Y-%m-%d")
            .map_err(|_| bad("SEASON_START", "must be a date YYYY-MM-DD"))?;
        if raw.season_days == 0 || raw.season_days > 3660 {
            return Err(bad("SEASON_DAYS", "must be between 1 and 3660"));
        }
        let calendar = Calendar {
            season_start: Utc.from_utc_datetime(&start.and_hms_opt(0, 0, 0).unwrap_or_default()),
            season_days: raw.season_days,
        };
        if !(raw.anomaly_z.is_finite() && raw.anomaly_z > 0.0) {
            return Err(bad("ANOMALY_Z", "must be a positive number"));
        }
        if raw.block_sec == 0 {
            return Err(bad("BLOCK_SEC", "must be at least 1"));
        }
        if raw.strikes_to_block == 0 {
            return Err(bad("STRIKES_TO_BLOCK", "must be at least 1"));
        }
        if raw.rate_limit_max == 0 {
            return Err(bad("RATE_LIMIT_MAX", "must be at least 1"));
        }
        if raw.idemp_ttl == 0 {
            return Err(bad("IDEMP_TTL", "must be at least 1 second"));
        }
        if raw.sig_tolerance_sec <= 0 {
            return Err(bad("SIG_TOLERANCE_SEC", "must be at least 1 second"));
        }
        if raw.bus_visibility_sec == 0 {
            return Err(bad("BUS_VISIBILITY_SEC", "must be at least 1 second"));
        }
        if raw.bus_max_deliveries == 0 {
            return Err(bad("BUS_MAX_DELIVERIES", "must be at least 1"));
        }
        let curve =
            LevelCurve::parse(&raw.level_curve).map_err(|e| bad("LEVEL_CURVE", e.to_string()))?;
        tracing_subscriber::EnvFilter::try_new(&raw.log_level)
            .map_err(|e| bad("LOG_LEVEL", e.to_string()))?;
        Ok(Self {
            port,
            keyring,
            dev_secret_path,
            db_url,
            bus_path,
            bus_url,
            windows,
            calendar,
            curve,
            limits: Limits::default(),
            raw,
        })
    }

    /// Idempotency-key lifetime.
    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_secs(self.raw.idemp_ttl)
    }
}

/// Name of the generated dev secret inside `DATA_DIR`.
pub const DEV_SECRET_FILE: &str = "dev-hmac-secret";

fn keyring(raw: &RawConfig) -> Result<(Keyring, Option<PathBuf>), ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        c: RawConfig,
    }

    fn raw(args: &[&str]) -> RawConfig {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::parse_from(v).c
    }

    #[test]
    fn dev_mode_generates_and_reuses_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let a = Settings::resolve(raw(&["--data-dir", d])).unwrap();
        let b = Settings::resolve(raw(&["--data-dir", d])).unwrap();
        let path = a.dev_secret_path.clone().unwrap();
        assert!(path.exists());
        assert_eq!(
            a.keyring.sign_request(None, 1, b"x"),
            b.keyring.sign_request(None, 1, b"x")
        );
    }

    #[test]
    fn prod_refuses_missing_and_short_secrets_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let e = Settings::resolve(raw(&["--env", "prod", "--data-dir", d])).unwrap_err();
        assert_eq!(e.var, "HMAC_SECRET");
        let e = Settings::resolve(raw(&["--env", "prod", "--hmac-secret", "short"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "HMAC_SECRET: secret must be at least 32 bytes"
        );
        let e = Settings::resolve(raw(&["--hmac-keys", "k1=short"])).unwrap_err();
        assert_eq!(e.var, "HMAC_KEYS");
        let ok = Settings::resolve(raw(&[
            "--env",
            "prod",
            "--hmac-secret",
            "0123456789abcdef0123456789abcdef",
        ]))
        .unwrap();
        assert!(ok.dev_secret_path.is_none());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let s = "--hmac-secret=0123456789abcdef0123456789abcdef";
        for (args, var) in [
            (vec![s, "--lb-windows", "hourly"], "LB_WINDOWS"),
            (vec![s, "--season-start", "2026-13-01"], "SEASON_START"),
            (vec![s, "--season-days", "0"], "SEASON_DAYS"),
            (vec![s, "--snapshot-cron", "not a cron"], "SNAPSHOT_CRON"),
            (vec![s, "--anomaly-z=-1"], "ANOMALY_Z"),
            (vec![s, "--level-curve", "0"], "LEVEL_CURVE"),
            (vec![s, "--db-url", "oracle://x"], "DB_URL"),
            (vec![s, "--bus-partitions", "0"], "BUS_PARTITIONS"),
            (vec![s, "--lb-topn", "0"], "LB_TOPN"),
        ] {
            assert_eq!(
                Settings::resolve(raw(&args)).unwrap_err().var,
                var,
                "{args:?}"
            );
        }
    }
}
