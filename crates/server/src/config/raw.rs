//! The shared settings as clap reads them from flags and the environment, before any check.

use std::path::PathBuf;

use clap::Args;

use super::kinds::{Cloud, Env};

/// The settings every process reads, as given by environment and flags (each module adds its
/// own).
#[derive(Args, Clone)]
pub struct RawConfig {
    /// dev | staging | prod. In dev a missing secret is generated in DATA_DIR.
    #[arg(long = "env", env = "ENV", value_enum, default_value = "dev")]
    pub env: Env,
    /// local | azure | aws: picks the bus when BUS_KIND is unset (sqlite, servicebus, sqs).
    #[arg(long, env = "CLOUD", value_enum, default_value = "local")]
    pub cloud: Cloud,
    /// Listen port (default by target; the module table writes the list into `--help`).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// Listen address.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    pub bind: String,
    /// Services to run: all, a module, a group, or several, comma separated (the module table
    /// writes the names into `--help`).
    #[arg(long = "target", env = "LIVEOPS_TARGET", default_value = "all")]
    pub target: String,
    /// Where the modules this process does not run answer, `{module}` and `{port}` (its
    /// default port) replaced, such as `http://liveops-{module}:{port}`: a request for one of
    /// their routes is forwarded there. Unset, such a request is answered 404.
    #[arg(long, env = "PEER_URL_TEMPLATE")]
    pub peer_url_template: Option<String>,
    /// Where the embedded default keeps its files.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// HMAC secret (≥ 32 bytes) for request signatures and receipts, key id `default`.
    #[arg(long, env = "HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<String>,
    /// File holding HMAC_SECRET (e.g. a Key Vault CSI mount); read at start.
    #[arg(long, env = "HMAC_SECRET_FILE")]
    pub hmac_secret_file: Option<PathBuf>,
    /// Extra keys for rotation: `kid=secret,kid2=secret2` (picked by `X-Key-Id`).
    #[arg(long, env = "HMAC_KEYS", hide_env_values = true)]
    pub hmac_keys: Option<String>,
    /// File holding HMAC_KEYS (`kid=secret` entries, by commas or lines), re-read every second
    /// while running: a key added works and a key removed stops working within seconds.
    #[arg(long, env = "HMAC_KEYS_FILE")]
    pub hmac_keys_file: Option<PathBuf>,
    /// Repository URL: `sqlite://`, `postgres://` or `mysql://` (default
    /// `sqlite://DATA_DIR/liveops.db`). TLS: `?sslmode=verify-full&sslrootcert=<CA file>`
    /// (PostgreSQL), `?ssl-mode=VERIFY_IDENTITY&ssl-ca=<CA file>` (MySQL/MariaDB).
    #[arg(long, env = "DB_URL", hide_env_values = true)]
    pub db_url: Option<String>,
    /// File holding DB_URL (e.g. a Key Vault CSI mount); read at start.
    #[arg(long, env = "DB_URL_FILE")]
    pub db_url_file: Option<PathBuf>,
    /// Redis for hot state and ranks: `redis://host:port/db` (`rediss://` for TLS), or several
    /// comma-separated node URLs (or `redis+cluster://`) for a Redis Cluster. Unset: in-process
    /// state.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// File holding REDIS_URL (e.g. a Key Vault CSI mount); read at start.
    #[arg(long, env = "REDIS_URL_FILE")]
    pub redis_url_file: Option<PathBuf>,
    /// CA certificates (PEM) that `rediss://` servers' certificates must chain to, instead of
    /// the public roots built in.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Most idempotency holds in-process hot state keeps (without REDIS_URL; 10000 to
    /// 1000000000, about 160 bytes each): past it, expired ones go, then the live ones nearest
    /// their end.
    #[arg(long, env = "IDEMP_MAX_KEYS", default_value_t = 4_000_000)]
    pub idemp_max_keys: u64,
    /// The bus: which one and how to reach it.
    #[command(flatten)]
    pub bus: super::BusArgs,
    /// First day of season 1 (YYYY-MM-DD, UTC).
    #[arg(long, env = "SEASON_START", default_value = "2026-01-01")]
    pub season_start: String,
    /// Length of a season in days.
    #[arg(long, env = "SEASON_DAYS", default_value_t = 90)]
    pub season_days: u32,
    /// Settings several modules read: the leaderboard windows.
    #[command(flatten)]
    pub modules: liveops_module::SharedArgs,
    /// Level curve: one step (`1000`) or cumulative thresholds (`100,300,600`).
    #[arg(long, env = "LEVEL_CURVE", default_value = "1000")]
    pub level_curve: String,
    /// Allowed clock difference for X-Timestamp, seconds.
    #[arg(long, env = "SIG_TOLERANCE_SEC", default_value_t = 300)]
    pub sig_tolerance_sec: i64,
    /// Accept first-scheme signatures (`sha256=`, over timestamp and body only, so a signed
    /// request fits any route with an equal body); `false` once every client signs `v2=`.
    #[arg(long, env = "SIG_ACCEPT_V1", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub sig_accept_v1: bool,
    /// Log filter (`info`, `liveops=debug,sqlx=warn`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Seconds between SIGTERM and the drain: /readyz answers 503 at once while every request
    /// is still served, so load balancers stop sending before the port closes. Default 0 with
    /// ENV=dev, 5 otherwise.
    #[arg(long, env = "SHUTDOWN_DELAY")]
    pub shutdown_delay: Option<u64>,
    /// OTLP/gRPC endpoint for traces (`http://collector:4317`); needs a build with the `otel`
    /// feature. Unset: no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// Backups of the embedded files.
    #[command(flatten)]
    pub backup: super::backup::BackupConfig,
    /// The read replica (`DB_READ_URL`).
    #[command(flatten)]
    pub reads: super::reads::ReadConfig,
    /// Retention of the per-event rows (`EVENT_RETENTION`).
    #[command(flatten)]
    pub retention: super::retention::RetentionConfig,
    /// The HTTP server's limits (`HTTP_HEADER_TIMEOUT`, `HTTP_BODY_TIMEOUT`,
    /// `HTTP_MAX_IN_FLIGHT`).
    #[command(flatten)]
    pub http: super::http::HttpConfig,
    /// How secrets are sealed in the database (`SECRETS_KEYS_FILE`, `SECRETS_SEAL`).
    #[command(flatten)]
    pub sealing: super::sealing::SealingConfig,
}

impl std::fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets (keys, URLs with passwords): only what says where and what runs.
        f.debug_struct("RawConfig")
            .field("env", &self.env)
            .field("target", &self.target)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("bus_kind", &self.bus.bus_kind)
            .finish_non_exhaustive()
    }
}
