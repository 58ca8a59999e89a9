//! The bus settings: which bus carries the events (`BUS_KIND`, else the one `CLOUD` implies) and
//! how to reach it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::secrets::either;
use super::{bad, BusKind, Cloud, ConfigError};

/// The bus settings as given by environment and flags (no `Debug`: `BUS_CONN` holds a key).
#[derive(Args, Clone)]
pub struct BusArgs {
    /// Bus backend: sqlite (durable local log) | redis (Redis Streams) | sqs (AWS SQS FIFO) |
    /// servicebus (Azure Service Bus, AMQP 1.0) | inmem (tests only). Unset: the one CLOUD
    /// implies (local: sqlite, aws: sqs, azure: servicebus).
    #[arg(long, env = "BUS_KIND", value_enum)]
    pub bus_kind: Option<BusKind>,
    /// Bus connection (sqlite: the file, default `DATA_DIR/bus.db`; redis: the URL, default
    /// `REDIS_URL`; servicebus: the connection string `Endpoint=sb://…;SharedAccessKeyName=…;
    /// SharedAccessKey=…`, or `amqp://host:port` for a plain AMQP 1.0 broker).
    #[arg(long, env = "BUS_CONN", hide_env_values = true)]
    pub bus_conn: Option<String>,
    /// File holding `BUS_CONN` (a Key Vault mount); CLOUD=azure defaults it to
    /// `/mnt/secrets-store/bus-conn`.
    #[arg(long, env = "BUS_CONN_FILE")]
    pub bus_conn_file: Option<PathBuf>,
    /// Streams per topic on the Redis bus; a player's events always go to the same one.
    #[arg(long, env = "BUS_PARTITIONS", default_value_t = 8)]
    pub bus_partitions: u32,
    /// Replicas of the Redis bus's Redis that must hold an event before the gateway accepts it
    /// (Redis `WAIT`): 0 accepts once the primary has it; as many as the Redis has keeps every
    /// 202 across a failover.
    #[arg(long, env = "BUS_REDIS_REPLICAS", default_value_t = 0)]
    pub bus_redis_replicas: u32,
    /// Milliseconds a publish waits for those replicas before the gateway answers 503 instead.
    #[arg(long, env = "BUS_REDIS_REPLICA_WAIT_MS", default_value_t = 500)]
    pub bus_redis_replica_wait_ms: u64,
    /// How many of those replicas may be away (a node being patched) while events are still
    /// accepted: then each waits for every replica attached and caught up (ADR 0022).
    #[arg(long, env = "BUS_REDIS_REPLICAS_AWAY", default_value_t = 0)]
    pub bus_redis_replicas_away: u32,
    /// Most entries a Redis bus partition stream keeps (`MAXLEN ~`): streams drop what every
    /// group acked as the groups read; this bounds one a group has stopped reading (its oldest
    /// unread events then go: size it to the cache's memory) and one no group reads.
    #[arg(long, env = "BUS_REDIS_MAX_LEN", default_value_t = 1_000_000)]
    pub bus_redis_max_len: u64,
    /// Service Bus with sessions: players' sessions each consumer group reads at once in a
    /// process (session receiver links, 1 to 64; ADR 0015).
    #[arg(long, env = "BUS_SB_SESSIONS", default_value_t = 8)]
    pub bus_sb_sessions: u32,
    /// Seconds before an unacked bus message is delivered again.
    #[arg(long, env = "BUS_VISIBILITY_SEC", default_value_t = 30)]
    pub bus_visibility_sec: u64,
    /// Deliveries before a message goes to the dead letters.
    #[arg(long, env = "BUS_MAX_DELIVERIES", default_value_t = 10)]
    pub bus_max_deliveries: u32,
    /// AWS region of the SQS bus (unset: the standard AWS chain).
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,
    /// SQS endpoint URL, for a local emulator (also `AWS_ENDPOINT_URL_SQS`); unset on AWS.
    #[arg(long, env = "SQS_ENDPOINT")]
    pub sqs_endpoint: Option<String>,
    /// First part of every SQS queue name: 1 to 20 of `[A-Za-z0-9_-]`.
    #[arg(long, env = "SQS_QUEUE_PREFIX", default_value = "liveops")]
    pub sqs_queue_prefix: String,
}

/// Most replicas `BUS_REDIS_REPLICAS` may ask for.
pub const MAX_REDIS_REPLICAS: u32 = 16;

/// Fewest entries `BUS_REDIS_MAX_LEN` may keep a stream: about 3 minutes of a stopped group at
/// 4 000 events/s over 8 partitions, time for a database failover.
pub const MIN_REDIS_MAX_LEN: u64 = 100_000;

/// Most entries `BUS_REDIS_MAX_LEN` may keep a stream (beyond any cache's memory).
pub const MAX_REDIS_MAX_LEN: u64 = 1_000_000_000;

/// Most session links `BUS_SB_SESSIONS` may keep a group: each is an AMQP session and link.
pub const MAX_SB_SESSIONS: u32 = 64;

/// Longest `BUS_REDIS_REPLICA_WAIT_MS`: a request waits for it before its answer.
pub const MAX_REPLICA_WAIT_MS: u64 = 10_000;

/// Where the Key Vault secrets are mounted on Azure (the SecretProviderClass of deploy/k8s).
pub const AZURE_SECRETS_DIR: &str = "/mnt/secrets-store";

/// The bus this process uses, checked.
#[derive(Clone)]
pub enum BusChoice {
    /// The SQLite log in this file.
    Sqlite(PathBuf),
    /// In memory (tests only).
    Inmem,
    /// Redis Streams at this URL.
    Redis(String),
    /// SQS: region (unset: the standard chain), explicit endpoint, queue prefix.
    Sqs {
        /// AWS region.
        region: Option<String>,
        /// Explicit endpoint URL.
        endpoint: Option<String>,
        /// Queue name prefix.
        prefix: String,
    },
    /// Service Bus (or a plain AMQP 1.0 broker) with this connection string.
    ServiceBus(String),
}

impl BusChoice {
    /// The kind as `BUS_KIND` names it, without the connection: logs and metrics' `bus` label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Inmem => "inmem",
            Self::Redis(_) => "redis",
            Self::Sqs { .. } => "sqs",
            Self::ServiceBus(_) => "servicebus",
        }
    }
}

impl std::fmt::Debug for BusChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Connection strings hold credentials: only the kind is shown.
        f.write_str(self.label())
    }
}

/// The bus kind in force: `BUS_KIND` when given, else the one `CLOUD` implies.
pub fn kind(args: &BusArgs, cloud: Cloud) -> BusKind {
    args.bus_kind.unwrap_or(match cloud {
        Cloud::Local => BusKind::Sqlite,
        Cloud::Aws => BusKind::Sqs,
        Cloud::Azure => BusKind::ServiceBus,
    })
}

fn needs_feature(kind: &str) -> ConfigError {
    bad(
        "BUS_KIND",
        format!("{kind} needs a build with the `{kind}` feature (cargo build --features full)"),
    )
}

/// Checks the bus settings and says where the bus is.
pub fn resolve(
    args: &BusArgs,
    cloud: Cloud,
    data_dir: &Path,
    redis_url: Option<&String>,
) -> Result<BusChoice, ConfigError> {
    if args.bus_visibility_sec == 0 {
        return Err(bad("BUS_VISIBILITY_SEC", "must be at least 1 second"));
    }
    if args.bus_max_deliveries == 0 {
        return Err(bad("BUS_MAX_DELIVERIES", "must be at least 1"));
    }
    if !(1..=1024).contains(&args.bus_partitions) {
        return Err(bad("BUS_PARTITIONS", "must be between 1 and 1024"));
    }
    ConfigError::within(
        "BUS_REDIS_REPLICAS",
        args.bus_redis_replicas,
        0..=MAX_REDIS_REPLICAS,
    )?;
    if args.bus_redis_replicas_away > args.bus_redis_replicas {
        return Err(bad(
            "BUS_REDIS_REPLICAS_AWAY",
            "must be at most BUS_REDIS_REPLICAS (the replicas that may be away)",
        ));
    }
    ConfigError::within(
        "BUS_REDIS_REPLICA_WAIT_MS",
        args.bus_redis_replica_wait_ms,
        1..=MAX_REPLICA_WAIT_MS,
    )?;
    ConfigError::within(
        "BUS_REDIS_MAX_LEN",
        args.bus_redis_max_len,
        MIN_REDIS_MAX_LEN..=MAX_REDIS_MAX_LEN,
    )?;
    ConfigError::within("BUS_SB_SESSIONS", args.bus_sb_sessions, 1..=MAX_SB_SESSIONS)?;
    let kind = kind(args, cloud);
    // (BUS_REDIS_REPLICAS_AWAY is at most BUS_REDIS_REPLICAS, so this covers it too.)
    if args.bus_redis_replicas > 0 && kind != BusKind::Redis {
        return Err(bad(
            "BUS_REDIS_REPLICAS",
            "applies to the Redis bus only (BUS_KIND=redis)",
        ));
    }
    // On Azure the Service Bus connection string comes from the Key Vault mount by default (in a
    // build that has the Service Bus; one without it says so rather than read a file).
    let file = args.bus_conn_file.clone().or_else(|| {
        (cfg!(feature = "servicebus")
            && kind == BusKind::ServiceBus
            && cloud == Cloud::Azure
            && args.bus_conn.is_none())
        .then(|| Path::new(AZURE_SECRETS_DIR).join("bus-conn"))
    });
    let conn = either("BUS_CONN", &args.bus_conn, "BUS_CONN_FILE", &file)?;
    Ok(match kind {
        BusKind::Sqlite => BusChoice::Sqlite(match &conn {
            Some(c) => PathBuf::from(c.strip_prefix("sqlite://").unwrap_or(c)),
            None => data_dir.join("bus.db"),
        }),
        BusKind::Inmem => BusChoice::Inmem,
        BusKind::Redis => {
            if !cfg!(feature = "redis") {
                return Err(needs_feature("redis"));
            }
            #[cfg(feature = "redis")]
            let from_conn = conn.is_some();
            let url = conn.or_else(|| redis_url.cloned()).ok_or_else(|| {
                bad(
                    "BUS_CONN",
                    "BUS_KIND=redis needs BUS_CONN (or BUS_CONN_FILE) or REDIS_URL",
                )
            })?;
            // The Streams bus runs on one node (ADR 0010); a cluster URL would fail when the
            // bus opens, or talk to one node of the cluster.
            #[cfg(feature = "redis")]
            if liveops_redis::conn::is_cluster_url(&url) {
                let var = if from_conn { "BUS_CONN" } else { "REDIS_URL" };
                return Err(bad(
                    var,
                    "the Redis Streams bus needs one Redis node, not a cluster: set BUS_CONN to \
                     one (hot state and ranks may stay on the cluster in REDIS_URL)",
                ));
            }
            BusChoice::Redis(url)
        }
        BusKind::Sqs => {
            if !cfg!(feature = "sqs") {
                return Err(needs_feature("sqs"));
            }
            // SQS's own limits (a redrive policy's maxReceiveCount, a message's visibility).
            ConfigError::within("BUS_MAX_DELIVERIES", args.bus_max_deliveries, 1..=1000)?;
            ConfigError::within("BUS_VISIBILITY_SEC", args.bus_visibility_sec, 1..=43_200)?;
            let p = &args.sqs_queue_prefix;
            if p.is_empty()
                || p.len() > 20
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                return Err(bad("SQS_QUEUE_PREFIX", "1 to 20 of [A-Za-z0-9_-]"));
            }
            let endpoint = args
                .sqs_endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL_SQS").ok())
                .filter(|e| !e.is_empty());
            if let Some(e) = &endpoint {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(bad("SQS_ENDPOINT", "must start with http:// or https://"));
                }
            }
            BusChoice::Sqs {
                region: args.aws_region.clone().filter(|r| !r.is_empty()),
                endpoint,
                prefix: p.clone(),
            }
        }
        BusKind::ServiceBus => {
            if !cfg!(feature = "servicebus") {
                return Err(needs_feature("servicebus"));
            }
            let conn = conn.ok_or_else(|| {
                bad(
                    "BUS_CONN",
                    "BUS_KIND=servicebus needs BUS_CONN or BUS_CONN_FILE",
                )
            })?;
            #[cfg(feature = "servicebus")]
            liveops_servicebus::ServiceBusConfig::parse(&conn)
                .map_err(|e| bad("BUS_CONN", e.to_string()))?;
            BusChoice::ServiceBus(conn)
        }
    })
}

impl BusArgs {
    /// How long an unacked bus message stays invisible, and how often it is delivered.
    pub fn options(&self) -> liveops_core::ports::BusOptions {
        liveops_core::ports::BusOptions {
            visibility_timeout: Duration::from_secs(self.bus_visibility_sec),
            max_deliveries: self.bus_max_deliveries,
        }
    }
}
