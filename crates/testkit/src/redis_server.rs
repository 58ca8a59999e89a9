//! A throw-away `redis-server` of a test's own (Debian's, on `PATH`, or `LIVEOPS_TEST_REDIS_SERVER`),
//! for tests that stop, pause or kill the server they talk to.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::relay::Relay;

/// A port nothing listens on now (the OS's pick, released again).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

/// A `redis-server` on 127.0.0.1 whose files (a replica's copy of its primary) go to a
/// directory of its own; killed (`SIGKILL`) when dropped.
pub struct OwnRedis {
    child: Child,
    /// Removed when the server is dropped.
    _dir: tempfile::TempDir,
}

impl OwnRedis {
    /// Starts one on `port` with `extra` arguments (for example `--replicaof 127.0.0.1 6379`).
    pub fn start(port: u16, extra: &[&str]) -> Self {
        let bin =
            std::env::var("LIVEOPS_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {bin:?} ({e}): this test needs a redis-server binary \
                     (on PATH, or set LIVEOPS_TEST_REDIS_SERVER)"
                )
            });
        Self { child, _dir: dir }
    }

    /// Kills it (`SIGKILL`: no shutdown, nothing flushed) and waits for it to end.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What `redis-cli -p <port> <args>` prints ("" if it cannot run).
pub async fn redis_cli(port: u16, args: &[&str]) -> String {
    tokio::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Waits up to 10 s until `INFO replication` of the server on `port` has `line`.
pub async fn until_replication(port: u16, line: &str) {
    let started = Instant::now();
    loop {
        let info = redis_cli(port, &["info", "replication"]).await;
        if info.contains(line) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {line:?} on port {port}: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A primary and a replica following it through a [`Relay`] that can stall or cut the
/// replication stream (a replica being patched, a failover that loses writes).
pub struct RelayedReplica {
    /// The primary.
    pub primary: OwnRedis,
    /// Its port.
    pub primary_port: u16,
    /// The replica's way to the primary.
    pub link: Relay,
    /// The replica.
    pub replica: OwnRedis,
    /// Its port.
    pub replica_port: u16,
}

impl RelayedReplica {
    /// Starts both and returns once the replica follows.
    pub async fn start() -> Self {
        let (p, r) = (closed_port(), closed_port());
        let primary = OwnRedis::start(p, &[]);
        until_replication(p, "role:master").await;
        let link = Relay::start(loopback(0), loopback(p)).await;
        let relay_port = link.addr.port().to_string();
        let replica = OwnRedis::start(r, &["--replicaof", "127.0.0.1", &relay_port]);
        until_replication(r, "master_link_status:up").await;
        until_replication(p, "connected_slaves:1").await;
        Self {
            primary,
            primary_port: p,
            link,
            replica,
            replica_port: r,
        }
    }

    /// A failover that loses what the replica had not copied: the primary is killed
    /// (`SIGKILL`), the link cut and the replica promoted. Returns the replica, now a primary.
    pub async fn fail_over(self) -> OwnRedis {
        self.primary.stop();
        self.link.kill();
        redis_cli(self.replica_port, &["replicaof", "no", "one"]).await;
        until_replication(self.replica_port, "role:master").await;
        self.replica
    }
}

/// A primary and its replica behind one address, as a managed cache's endpoint: a failover
/// ([`BehindOneAddress::fail_over`]) moves the address while kept connections stay on the old
/// primary, which then answers `READONLY`.
pub struct BehindOneAddress {
    /// Where clients connect.
    pub address: Relay,
    /// The first primary's port.
    pub first: u16,
    /// Its replica's port.
    pub second: u16,
    _servers: [OwnRedis; 2],
}

impl BehindOneAddress {
    /// Starts both, the address on the first, and returns once the second follows it.
    pub async fn start() -> Self {
        let (first, second) = (closed_port(), closed_port());
        let a = OwnRedis::start(first, &[]);
        until_replication(first, "role:master").await;
        let b = OwnRedis::start(second, &["--replicaof", "127.0.0.1", &first.to_string()]);
        until_replication(second, "master_link_status:up").await;
        let address = Relay::start(loopback(0), loopback(first)).await;
        Self {
            address,
            first,
            second,
            _servers: [a, b],
        }
    }

    /// A planned failover, as a managed cache makes one: once `to` (a replica of `from`) has
    /// every write `from` took (`WAIT`: promoting it earlier loses the last writes, which a
    /// loaded machine's replication can be behind by), it is promoted, `from` demoted to follow
    /// it, and the address sends new connections to `to` while kept ones stay on `from`.
    pub async fn fail_over(&self, from: u16, to: u16) {
        let synced = redis_cli(from, &["wait", "1", "10000"]).await;
        assert_eq!(
            synced.trim(),
            "1",
            "the replica {to} did not catch up with {from}"
        );
        redis_cli(to, &["replicaof", "no", "one"]).await;
        until_replication(to, "role:master").await;
        redis_cli(from, &["replicaof", "127.0.0.1", &to.to_string()]).await;
        until_replication(from, "master_link_status:up").await;
        self.address.redirect(loopback(to));
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
