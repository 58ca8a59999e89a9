//! One cloneable connection to Redis, a single node or a Redis Cluster, with every call bounded
//! in time and failures mapped to [`PortError`].
//!
//! The connection is opened lazily: [`RedisConn::connect`] only rejects a malformed URL, so a
//! service starts while Redis is down and answers 503 until it comes back. Once open, a single
//! node sits behind redis-rs' `ConnectionManager` and a cluster behind its `ClusterConnection`;
//! both reconnect by themselves after a server restart (the next calls fail fast, then succeed).
//! A single node that answers `READONLY` (a primary demoted to a replica behind the same address,
//! as an Azure cache fails over) is let go: the manager would keep the connection (redis-rs
//! reconnects only on I/O errors), so the next call connects to the address anew
//! (`redis_errors_total{kind="readonly"}`).
//!
//! `rediss://` URLs speak TLS (rustls on ring; no OpenSSL). The server's certificate must chain
//! to Mozilla's roots, compiled in, or to the CA certificates given to
//! [`RedisConn::connect_with_ca`] (`REDIS_CA_FILE`), and name the host of the URL.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use liveops_core::ports::{PortError, PortResult};
use liveops_core::Throttled;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo,
    Pipeline, RedisError, RedisFuture, RedisResult, ScriptInvocation, TlsCertificates, Value,
};
use tokio::sync::OnceCell;

/// How long one call (a command, a pipeline or a script) may take, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// After this long without an acknowledgement from the peer, the kernel drops a connection, so a
/// vanished server is noticed (and reconnected to) even when no RST ever arrives.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time before TCP keep-alive probes start.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// A cloneable handle to Redis (single node or cluster); clones share the connection.
#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    /// The cell the backend is opened in; a single node's is swapped for an empty one once the
    /// server answers `READONLY`, so the next call opens a new backend.
    backend: Mutex<Slot>,
    timeout: Duration,
    round_trips: Arc<AtomicU64>,
    /// Where it points, without credentials, for logs and errors.
    name: String,
}

enum Target {
    Single(Client),
    Cluster(ClusterClient),
}

#[derive(Clone)]
enum Backend {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A backend, open or not yet.
type Slot = Arc<OnceCell<Backend>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding it; recover the data if anything ever did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("target", &self.inner.name)
            .field("cluster", &self.is_cluster())
            .field("connected", &self.slot().initialized())
            .finish()
    }
}

/// `Debug` (its connection and key prefix, scripts left out) and `Health` (a `PING`) for a
/// store type with `conn: RedisConn` and `prefix: String` fields.
macro_rules! store_debug_and_health {
    ($store:ident) => {
        impl std::fmt::Debug for $store {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($store))
                    .field("conn", &self.conn)
                    .field("prefix", &self.prefix)
                    .finish()
            }
        }

        #[async_trait::async_trait]
        impl liveops_core::ports::Health for $store {
            async fn healthcheck(&self) -> liveops_core::ports::PortResult<()> {
                self.conn.ping().await
            }
        }
    };
}
pub(crate) use store_debug_and_health;

/// A connection as parsed from a URL, before any I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ParsedUrl {
    /// One node.
    Single(String),
    /// Seed nodes of a cluster.
    Cluster(Vec<String>),
}

/// Whether `url` names a Redis Cluster (several nodes, a `+cluster` scheme or `cluster=true`), as
/// the connection reads it; a URL that does not parse is not one.
pub fn is_cluster_url(url: &str) -> bool {
    matches!(parse_url(url), Ok(ParsedUrl::Cluster(_)))
}

fn invalid(url_hint: &str, why: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("invalid Redis URL ({url_hint}): {why}"))
}

/// Drops `cluster=...` from a URL's query; returns the URL and whether it asked for a cluster.
fn take_cluster_flag(url: &str) -> (String, bool) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), false);
    };
    let mut cluster = false;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, "true"));
            if name.eq_ignore_ascii_case("cluster") {
                cluster |= matches!(value.to_ascii_lowercase().as_str(), "true" | "1" | "yes");
                false
            } else {
                !pair.is_empty()
            }
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), cluster)
    } else {
        (format!("{base}?{}", kept.join("&")), cluster)
    }
}

/// Reads `REDIS_URL`-style strings: `redis://host:port/db` is one node; several comma-separated
/// URLs, `redis+cluster://host:port[,host:port...]` or `?cluster=true` mean a cluster. Hosts
/// after the first may omit the scheme and credentials, which they then share with the first.
pub(crate) fn parse_url(url: &str) -> PortResult<ParsedUrl> {
    let url = url.trim();
    // The first URL's user name and password may hold commas (RFC 3986 allows them there): the
    // list is split after them.
    let creds_end = url
        .split_once("://")
        .and_then(|(scheme, rest)| {
            let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
            authority.rfind('@').map(|at| scheme.len() + 3 + at + 1)
        })
        .unwrap_or(0);
    let (creds, hosts) = url.split_at(creds_end);
    let mut parts: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(first) = parts.first_mut() {
        first.insert_str(0, creds);
    }
    let Some(first) = parts.first() else {
        return Err(invalid("empty", "no host given"));
    };
    let Some((scheme, rest)) = first.split_once("://") else {
        // Not the text itself: without a scheme it may be a password.
        return Err(invalid("no scheme", "expected redis://host:port"));
    };
    let (scheme, mut cluster) = match scheme.to_ascii_lowercase().as_str() {
        "redis" => ("redis", false),
        "rediss" => ("rediss", false),
        "redis+cluster" => ("redis", true),
        "rediss+cluster" => ("rediss", true),
        other => return Err(invalid(other, "unknown scheme")),
    };
    // Credentials of the first URL, for the hosts written without them.
    let userinfo = rest
        .split(['/', '?'])
        .next()
        .and_then(|authority| authority.rsplit_once('@'))
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    let mut nodes = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let full = if i == 0 {
            format!("{scheme}://{rest}")
        } else if let Some((s, r)) = part.split_once("://") {
            let s = s.to_ascii_lowercase();
            let s = s.strip_suffix("+cluster").unwrap_or(&s).to_owned();
            format!("{s}://{r}")
        } else {
            format!("{scheme}://{userinfo}{part}")
        };
        let (full, flag) = take_cluster_flag(&full);
        cluster |= flag;
        nodes.push(full);
    }
    if nodes.len() > 1 || cluster {
        Ok(ParsedUrl::Cluster(nodes))
    } else {
        Ok(ParsedUrl::Single(nodes.swap_remove(0)))
    }
}

fn connection_info(url: &str) -> PortResult<ConnectionInfo> {
    url.into_connection_info()
        .map_err(|e| invalid("check the host, port and database", e))
}

/// Makes ring the process's rustls crypto provider unless one is installed already: redis-rs
/// builds its TLS settings with the process default.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn is_tls(info: &ConnectionInfo) -> bool {
    matches!(info.addr, ConnectionAddr::TcpTls { .. })
}

/// The CA certificates a `rediss://` connection trusts instead of Mozilla's roots.
fn trust(root_ca: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(root_ca.to_vec()),
    }
}

/// A client for one node: TLS for `rediss://`, trusting `root_ca` (PEM) when given; `root_ca`
/// is ignored for plain `redis://`. Returns the client and where it points, without credentials.
pub(crate) fn single_client(url: &str, root_ca: Option<&[u8]>) -> PortResult<(Client, String)> {
    let info = connection_info(url)?;
    let name = format!("{}/{}", info.addr, info.redis.db);
    if is_tls(&info) {
        ensure_crypto_provider();
    }
    let client = match root_ca {
        Some(ca) if is_tls(&info) => Client::build_with_tls(info, trust(ca)),
        _ => Client::open(info),
    }
    .map_err(|e| invalid(&name, e))?;
    Ok((client, name))
}

/// Keep-alive and a user timeout on every Redis socket: a server that vanished without a reset
/// (a crashed host during a failover) is noticed, and reconnected to, within seconds.
pub(crate) fn tcp_settings() -> TcpSettings {
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(TcpKeepalive::new().with_time(TCP_KEEPALIVE));
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let settings = settings.set_user_timeout(TCP_USER_TIMEOUT);
    #[cfg(not(any(target_os = "android", target_os = "fuchsia", target_os = "linux")))]
    let _ = TCP_USER_TIMEOUT;
    settings
}

/// Whether `err` is a replica refusing a write: `READONLY`, or the script error Redis before 7.0
/// wraps it in (`ERR Error running script ... -READONLY You can't write ...`).
pub(crate) fn is_read_only(err: &RedisError) -> bool {
    err.kind() == ErrorKind::ReadOnly
        || (err.kind() == ErrorKind::ResponseError
            && err.detail().is_some_and(|d| d.contains("-READONLY ")))
}

/// Maps a Redis error: unreadable data is `Corrupt`, everything else `Unavailable`.
pub(crate) fn port_error(op: &str, err: &RedisError) -> PortError {
    let corrupt = err.kind() == ErrorKind::TypeError
        || matches!(err.code(), Some("WRONGTYPE") | Some("CORRUPT"));
    if corrupt {
        PortError::Corrupt(format!("redis {op}: {err}"))
    } else {
        PortError::Unavailable(format!("redis {op}: {err}"))
    }
}

impl RedisConn {
    /// Prepares a connection to `url` with calls bounded by [`DEFAULT_TIMEOUT`]. A single
    /// `redis://host:port/db` is one node; several comma-separated URLs,
    /// `redis+cluster://host:port,...` or `?cluster=true` are a cluster.
    ///
    /// Only a malformed URL is an error: an unreachable server is retried by every call (each
    /// failing with `Unavailable` meanwhile), so start-up does not depend on Redis being up.
    pub async fn connect(url: &str) -> Result<RedisConn, PortError> {
        Self::connect_with_timeout(url, DEFAULT_TIMEOUT).await
    }

    /// Like [`Self::connect`], with calls bounded by `timeout`.
    pub async fn connect_with_timeout(
        url: &str,
        timeout: Duration,
    ) -> Result<RedisConn, PortError> {
        Self::open(url, timeout, None).await
    }

    /// Like [`Self::connect`]; `rediss://` connections trust the CA certificates in `root_ca`
    /// (PEM, e.g. the contents of `REDIS_CA_FILE`) instead of Mozilla's roots. A certificate that
    /// does not chain to them, or does not name the URL's host, fails every call with
    /// `Unavailable` saying so.
    pub async fn connect_with_ca(
        url: &str,
        root_ca: Option<&[u8]>,
    ) -> Result<RedisConn, PortError> {
        Self::open(url, DEFAULT_TIMEOUT, root_ca).await
    }

    async fn open(
        url: &str,
        timeout: Duration,
        root_ca: Option<&[u8]>,
    ) -> Result<RedisConn, PortError> {
        let timeout = timeout.max(Duration::from_millis(1));
        let (target, name) = match parse_url(url)? {
            ParsedUrl::Single(url) => {
                let (client, name) = single_client(&url, root_ca)?;
                (Target::Single(client), name)
            }
            ParsedUrl::Cluster(urls) => {
                let infos = urls
                    .iter()
                    .map(|u| connection_info(u))
                    .collect::<PortResult<Vec<_>>>()?;
                let name = infos
                    .iter()
                    .map(|i| i.addr.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                let tls = infos.first().is_some_and(is_tls);
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(timeout)
                    .retries(2)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .tcp_settings(tcp_settings());
                if tls {
                    ensure_crypto_provider();
                    if let Some(ca) = root_ca {
                        builder = builder.certs(trust(ca));
                    }
                }
                let client = builder.build().map_err(|e| invalid(&name, e))?;
                (Target::Cluster(client), name)
            }
        };
        let conn = RedisConn {
            inner: Arc::new(Inner {
                target,
                backend: Mutex::new(Slot::default()),
                timeout,
                round_trips: Arc::new(AtomicU64::new(0)),
                name,
            }),
        };
        match tokio::time::timeout(timeout, conn.backend()).await {
            Ok(Ok(_)) => {
                tracing::info!(target = %conn.inner.name, cluster = conn.is_cluster(), "redis connected");
            }
            Ok(Err(err)) => {
                tracing::warn!(target = %conn.inner.name, error = %err, "redis not reachable yet; will retry on use");
            }
            Err(_) => {
                tracing::warn!(target = %conn.inner.name, "redis connect timed out; will retry on use");
            }
        }
        Ok(conn)
    }

    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.target, Target::Cluster(_))
    }

    /// The bound on each call.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Requests sent to the server so far by this connection and its clones (a pipeline counts
    /// once): lets callers and tests see how many round trips an operation takes.
    pub fn round_trips(&self) -> u64 {
        self.inner.round_trips.load(Ordering::Relaxed)
    }

    /// The current slot of the backend.
    fn slot(&self) -> Slot {
        lock(&self.inner.backend).clone()
    }

    /// Lets the single-node backend of `used` go after it answered `READONLY`, unless a call
    /// did already: the next call connects anew. A cluster's is kept (its nodes answer `MOVED`
    /// after a failover, which it follows).
    fn let_go(&self, used: &Slot) {
        if self.is_cluster() {
            return;
        }
        let mut current = lock(&self.inner.backend);
        if Arc::ptr_eq(&current, used) {
            *current = Slot::default();
            drop(current);
            tracing::warn!(target = %self.inner.name, "redis answered READONLY (a replica now); reconnecting");
        }
    }

    /// The open backend and its slot, opening it first if needed (not bounded in time by
    /// itself).
    async fn backend(&self) -> RedisResult<(Slot, Backend)> {
        let slot = self.slot();
        let backend = slot
            .get_or_try_init(|| async {
                match &self.inner.target {
                    Target::Single(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(self.inner.timeout)
                            // Fail fast while the server is down: every later call starts a new
                            // attempt, so the manager recovers as soon as the server is back.
                            .set_number_of_retries(0)
                            .set_tcp_settings(tcp_settings());
                        ConnectionManager::new_with_config(client.clone(), config)
                            .await
                            .map(Backend::Single)
                    }
                    Target::Cluster(client) => {
                        client.get_async_connection().await.map(Backend::Cluster)
                    }
                }
            })
            .await?
            .clone();
        Ok((slot, backend))
    }

    /// Runs `f` on a handle to the server, bounded by `timeout` (opening the connection
    /// included); a timeout or a Redis error becomes a [`PortError`] naming `op`. Use this for
    /// calls that need a different bound than [`Self::timeout`] (blocking reads).
    pub async fn run_within<T, F, Fut>(
        &self,
        op: &'static str,
        timeout: Duration,
        f: F,
    ) -> PortResult<T>
    where
        F: FnOnce(RedisHandle) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let work = async {
            let (slot, backend) = self.backend().await?;
            let result = f(RedisHandle {
                backend,
                round_trips: self.inner.round_trips.clone(),
            })
            .await;
            if result.as_ref().is_err_and(is_read_only) {
                self.let_go(&slot);
            }
            result
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                let kind = if is_read_only(&err) {
                    "readonly"
                } else {
                    "error"
                };
                metrics::counter!("redis_errors_total", "op" => op, "kind" => kind).increment(1);
                // One line a period: every request may fail while Redis does (counted above).
                static FAILED: Throttled = Throttled::new(10_000);
                if let Some(left_out) = FAILED.admit() {
                    tracing::warn!(op, target = %self.inner.name, error = %err, left_out,
                        "redis call failed");
                }
                Err(port_error(op, &err))
            }
            Err(_) => {
                metrics::counter!("redis_errors_total", "op" => op, "kind" => "timeout")
                    .increment(1);
                static TIMED_OUT: Throttled = Throttled::new(10_000);
                if let Some(left_out) = TIMED_OUT.admit() {
                    tracing::warn!(op, target = %self.inner.name,
                        timeout_ms = timeout.as_millis() as u64, left_out, "redis call timed out");
                }
                Err(PortError::Unavailable(format!(
                    "redis {op}: no answer from {} within {timeout:?}",
                    self.inner.name
                )))
            }
        }
    }

    /// Like [`Self::run_within`], bounded by [`Self::timeout`].
    pub async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> PortResult<T>
    where
        F: FnOnce(RedisHandle) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.run_within(op, self.inner.timeout, f).await
    }

    /// Sends one command.
    pub async fn query<T: FromRedisValue>(&self, op: &'static str, cmd: &Cmd) -> PortResult<T> {
        self.run(op, |mut h| async move { cmd.query_async(&mut h).await })
            .await
    }

    /// Sends a pipeline in one round trip. In a cluster, every key in it must be in one slot.
    pub async fn query_pipeline<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &Pipeline,
    ) -> PortResult<T> {
        self.run(op, |mut h| async move { pipe.query_async(&mut h).await })
            .await
    }

    /// Sends several pipelines side by side (one per cluster slot, say), each bounded by
    /// [`Self::timeout`]; results in the order given. Fails if any fails.
    pub async fn query_pipelines<T>(
        &self,
        op: &'static str,
        pipes: Vec<Pipeline>,
    ) -> PortResult<Vec<T>>
    where
        T: FromRedisValue + Send + 'static,
    {
        if pipes.len() <= 1 {
            let mut out = Vec::with_capacity(pipes.len());
            for pipe in &pipes {
                out.push(self.query_pipeline(op, pipe).await?);
            }
            return Ok(out);
        }
        let mut tasks = tokio::task::JoinSet::new();
        let count = pipes.len();
        for (i, pipe) in pipes.into_iter().enumerate() {
            let conn = self.clone();
            tasks.spawn(async move { (i, conn.query_pipeline::<T>(op, &pipe).await) });
        }
        let mut slots: Vec<Option<T>> = (0..count).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (i, result) = joined.map_err(|e| {
                PortError::Unavailable(format!("redis {op}: pipeline task failed: {e}"))
            })?;
            slots[i] = Some(result?);
        }
        slots
            .into_iter()
            .map(|v| v.ok_or_else(|| PortError::Unavailable(format!("redis {op}: pipeline lost"))))
            .collect()
    }

    /// Runs a Lua script (EVALSHA, loading it on first use). In a cluster, its keys must share
    /// one slot.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &ScriptInvocation<'_>,
    ) -> PortResult<T> {
        self.run(op, |mut h| async move { script.invoke_async(&mut h).await })
            .await
    }

    /// Pings the server (every master of a cluster answers through its own slots in time).
    pub async fn ping(&self) -> PortResult<()> {
        let pong: String = self.query("ping", &redis::cmd("PING")).await?;
        expect_pong(&pong)
    }
}

/// Ok if `answer` is what a healthy server answers to `PING`.
pub(crate) fn expect_pong(answer: &str) -> PortResult<()> {
    if answer == "PONG" {
        Ok(())
    } else {
        Err(PortError::Unavailable(format!(
            "redis ping: unexpected answer {answer:?}"
        )))
    }
}

/// A connection handle for one call, as given to [`RedisConn::run`]; usable with any redis-rs
/// async API (`Cmd::query_async`, `AsyncCommands`, scripts). Counts the requests it sends.
#[derive(Clone)]
pub struct RedisHandle {
    backend: Backend,
    round_trips: Arc<AtomicU64>,
}

impl ConnectionLike for RedisHandle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match &mut self.backend {
            Backend::Single(c) => c.req_packed_command(cmd),
            Backend::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match &mut self.backend {
            Backend::Single(c) => c.req_packed_commands(cmd, offset, count),
            Backend::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.backend {
            Backend::Single(c) => c.get_db(),
            Backend::Cluster(c) => c.get_db(),
        }
    }
}

/// A single node's `ConnectionManager` that lets its connection go once the server answers
/// `READONLY` (a primary demoted behind the same address): it asks the server to close it
/// (`QUIT`), so the manager and every clone of it connect to the address anew. The manager
/// alone would keep it: redis-rs reconnects only on I/O errors. (The Streams bus shares its
/// manager with background tasks, so it closes the shared connection; [`RedisConn`] owns its
/// backend and replaces it instead, one failed call sooner.)
#[derive(Clone)]
pub(crate) struct Watched {
    conn: ConnectionManager,
    /// Names the connection in its log lines.
    op: &'static str,
}

impl Watched {
    /// Watches `conn`, named `op` in its log lines.
    pub fn new(conn: ConnectionManager, op: &'static str) -> Self {
        Self { conn, op }
    }

    /// The manager (its clones share the one connection, and so its reconnection).
    pub fn manager(&self) -> &ConnectionManager {
        &self.conn
    }

    /// After an answer `err`: lets the connection go if it was a replica's refusal.
    async fn after(&mut self, err: &RedisError) {
        if !is_read_only(err) {
            return;
        }
        // Counted by the call that met it (the bus's `bounded`), not here as well.
        tracing::warn!(
            op = self.op,
            "redis answered READONLY (a replica now); reconnecting"
        );
        let quit = redis::cmd("QUIT");
        let closing = quit.query_async::<()>(&mut self.conn);
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

impl ConnectionLike for Watched {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let answer = self.conn.req_packed_command(cmd).await;
            match &answer {
                Err(e) => self.after(e).await,
                Ok(Value::ServerError(e)) => self.after(&e.clone().into()).await,
                Ok(_) => {}
            }
            answer
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let answers = self.conn.req_packed_commands(cmd, offset, count).await;
            match &answers {
                Err(e) => self.after(e).await,
                Ok(values) => {
                    let refused = values.iter().find_map(|v| match v {
                        Value::ServerError(e) => Some(RedisError::from(e.clone())),
                        _ => None,
                    });
                    if let Some(e) = refused {
                        self.after(&e).await;
                    }
                }
            }
            answers
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// Milliseconds for a TTL: at least 1 (Redis refuses 0) and at most about a century (so the
/// expiry time cannot overflow on the server).
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
    u64::try_from(ttl.as_millis())
        .unwrap_or(MAX_TTL_MS)
        .clamp(1, MAX_TTL_MS)
}

/// Replaces `{` and `}` so a key prefix never becomes a cluster hash tag.
pub(crate) fn clean_prefix(prefix: &str) -> String {
    prefix.replace(['{', '}'], "_")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn a_url_without_a_scheme_is_refused_without_quoting_it() {
        let e = parse_url(":hunter2@cache:6380")
            .map(drop)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn one_url_is_a_single_node() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6379/2").unwrap(),
            ParsedUrl::Single("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            parse_url(" redis://h:1/?protocol=resp2 ").unwrap(),
            ParsedUrl::Single("redis://h:1/?protocol=resp2".into())
        );
    }

    #[test]
    fn lists_and_cluster_schemes_are_clusters() {
        let three = ParsedUrl::Cluster(vec![
            "redis://a:1".into(),
            "redis://b:2".into(),
            "redis://c:3".into(),
        ]);
        assert_eq!(
            parse_url("redis://a:1,redis://b:2, redis://c:3").unwrap(),
            three
        );
        assert_eq!(parse_url("redis+cluster://a:1,b:2,c:3").unwrap(), three);
        assert_eq!(
            parse_url("redis://a:1?cluster=true").unwrap(),
            ParsedUrl::Cluster(vec!["redis://a:1".into()])
        );
        assert_eq!(
            parse_url("redis://a:1/?protocol=resp2&cluster=true").unwrap(),
            ParsedUrl::Cluster(vec!["redis://a:1/?protocol=resp2".into()])
        );
        assert_eq!(
            parse_url("redis://a:1?cluster=false").unwrap(),
            ParsedUrl::Single("redis://a:1".into())
        );
    }

    #[test]
    fn hosts_without_scheme_share_the_first_ones_credentials_which_may_hold_commas() {
        let cluster = |nodes: [&str; 2]| ParsedUrl::Cluster(nodes.map(String::from).to_vec());
        for (url, want) in [
            (
                "rediss+cluster://u:secret@a:1,b:2",
                cluster(["rediss://u:secret@a:1", "rediss://u:secret@b:2"]),
            ),
            // RFC 3986 allows a comma in the password: the list is split after it.
            (
                "redis://:ab,cd@host:6379/0",
                ParsedUrl::Single("redis://:ab,cd@host:6379/0".into()),
            ),
            (
                "rediss+cluster://u:p,w@a:1,b:2",
                cluster(["rediss://u:p,w@a:1", "rediss://u:p,w@b:2"]),
            ),
        ] {
            assert_eq!(parse_url(url).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["", " , ", "127.0.0.1:6379", "http://a:1"] {
            assert!(
                matches!(parse_url(url), Err(PortError::Unavailable(_))),
                "{url:?}"
            );
        }
    }

    #[test]
    fn ttls_are_clamped() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(10)), 1);
        assert_eq!(ttl_ms(Duration::from_secs(2)), 2000);
        assert_eq!(ttl_ms(Duration::MAX), 100 * 365 * 24 * 3600 * 1000);
    }

    #[test]
    fn read_only_answers_are_told_apart() {
        let server = |kind, detail: &str| {
            RedisError::from((
                kind,
                "An error was signalled by the server",
                detail.to_owned(),
            ))
        };
        let refused = "You can't write against a read only replica.";
        assert!(is_read_only(&server(ErrorKind::ReadOnly, refused)));
        // Redis 7 keeps a script's error code; 5.0 and 6.0 wrap it in ERR.
        assert!(is_read_only(&server(
            ErrorKind::ReadOnly,
            &format!("{refused} script: 474ef873, on @user_script:1.")
        )));
        assert!(is_read_only(&server(
            ErrorKind::ResponseError,
            &format!(
                "Error running script (call to f_474ef873): @user_script:1: \
                 @user_script: 1: -READONLY {refused}"
            )
        )));
        assert!(!is_read_only(&server(
            ErrorKind::ResponseError,
            "unknown command"
        )));
        assert!(!is_read_only(&server(
            ErrorKind::ExtensionError,
            "-READONLY as a word of some other error"
        )));
    }

    #[test]
    fn prefixes_never_carry_hash_tags() {
        assert_eq!(clean_prefix("run-{1}:"), "run-_1_:");
    }
}
