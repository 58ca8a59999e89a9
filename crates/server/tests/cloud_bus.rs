//! The cloud buses under the binary. Over SQS (moto's server) and over AMQP 1.0 (the test broker
//! standing in for Service Bus; see docs/adr/0015-service-bus.md for what it cannot show):
//! - the split deployment, four processes, passes the same scenario as over Redis Streams;
//! - the bus out of reach for 3 s mid-stream gives 503s, never a 500, recovers by itself, and
//!   every event that got a 202 counts exactly once;
//! - `kill -9` of a consumer mid-stream loses nothing and counts nothing twice.
//!
//! Both emulators keep their queues in memory, so restarting them would lose what they stored,
//! which SQS and Service Bus never do: an outage here is the connection cut (a relay that closes
//! every connection and stops listening), what a pod sees when the cloud bus is unreachable.
//! Needs scripts/services.sh (Redis, PostgreSQL) and scripts/services-cloud.sh (moto; the AMQP
//! broker is started per test on a port of its own, so tests never share its topics).
#![cfg(all(
    feature = "redis",
    feature = "postgres",
    any(feature = "sqs", feature = "servicebus")
))]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::load::{assert_exactly_once, stream, Counts};
use common::{
    free_port, play_scenario, redis_db, split_process, wait_ready, wait_until, Fleet, Urls, SECRET,
};
use liveops_core::Keyring;
use liveops_testkit::relay::{upstream_of, Relay};
use serde_json::Value;

const TARGETS: [&str; 4] = ["gateway", "fairness", "progression", "leaderboard"];

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start scripts/services.sh and scripts/services-cloud.sh, then \
             source their env files"
        )
    })
}

/// A database of its own on the shared PostgreSQL, so fairness statistics start fresh.
fn fresh_database(name: &str) -> String {
    let admin = env_var("LIVEOPS_TEST_PG_URL");
    let (base, _) = admin.rsplit_once('/').expect("url with a database");
    // CREATE DATABASE copies template1 and fails while another session (a test beside this one
    // creating its own) uses it: a few tries.
    let mut tries = 0;
    loop {
        let out = Command::new("psql")
            .arg(&admin)
            .args(["-qc", &format!("DROP DATABASE IF EXISTS {name}")])
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("psql");
        if out.status.success() {
            return format!("{base}/{name}");
        }
        tries += 1;
        assert!(
            tries < 10,
            "cannot create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200 * tries));
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sqs,
    ServiceBus,
}

/// The bus one test uses: the settings every process gets, the broker started for it, and the
/// relay in front of it when the test plays an outage.
struct TestBus {
    env: Vec<(&'static str, String)>,
    upstream: SocketAddr,
    relay: Option<Relay>,
    _broker: Fleet,
}

/// The AMQP 1.0 test broker (`scripts/amqp-broker.py`) on a port of its own.
fn start_broker() -> (Child, u16) {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/amqp-broker.py");
    let child = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with python3-qpid-proton (scripts/services-cloud.sh installs it)");
    wait_until("the broker listening", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (child, port)
}

impl TestBus {
    async fn new(kind: Kind, with_relay: bool) -> Self {
        let mut broker = Fleet::default();
        let upstream = match kind {
            Kind::Sqs => upstream_of(&env_var("LIVEOPS_TEST_SQS_ENDPOINT")),
            Kind::ServiceBus => {
                let (child, port) = start_broker();
                broker.0.push(child);
                SocketAddr::from(([127, 0, 0, 1], port))
            }
        };
        let relay = if with_relay {
            Some(Relay::start("127.0.0.1:0".parse().expect("addr"), upstream).await)
        } else {
            None
        };
        let at = relay.as_ref().map_or(upstream, |r| r.addr);
        let env = match kind {
            Kind::Sqs => vec![
                ("BUS_KIND", "sqs".to_owned()),
                ("SQS_ENDPOINT", format!("http://{at}")),
                // Queues of their own on the shared emulator.
                (
                    "SQS_QUEUE_PREFIX",
                    format!("s{:08x}", rand::random::<u32>()),
                ),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ACCESS_KEY_ID", "test".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
                // Static keys and an endpoint: never the instance-metadata address.
                ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ],
            Kind::ServiceBus => vec![
                ("BUS_KIND", "servicebus".to_owned()),
                ("BUS_CONN", format!("amqp://{at}")),
            ],
        };
        Self {
            env,
            upstream,
            relay,
            _broker: broker,
        }
    }

    /// Cuts the bus off: every connection closed, nothing listening.
    fn cut(&self) {
        self.relay.as_ref().expect("relay").kill();
    }

    /// Listens again on the same address.
    async fn restore(&mut self) {
        let addr = self.relay.as_ref().expect("relay").addr;
        self.relay = Some(Relay::start(addr, self.upstream).await);
    }
}

/// `liveops serve --target <target>` on `port` with the test's bus, Redis and database.
fn spawn(target: &str, port: u16, data: &Path, db: &str, redis: &str, bus: &TestBus) -> Child {
    split_process(data, target, port, db, redis)
        .envs(bus.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("BUS_VISIBILITY_SEC", "5")
        .env("RATE_LIMIT_MAX", "100000")
        .spawn()
        .expect("spawn liveops")
}

/// The four processes of the split deployment; their ports, in `TARGETS` order.
async fn start_split(data: &Path, db: &str, redis: &str, bus: &TestBus) -> (Fleet, Vec<u16>) {
    let mut fleet = Fleet::default();
    let ports: Vec<u16> = TARGETS.iter().map(|_| free_port()).collect();
    for (target, port) in TARGETS.iter().zip(&ports) {
        fleet.0.push(spawn(target, *port, data, db, redis, bus));
    }
    for port in &ports {
        wait_ready(&format!("http://127.0.0.1:{port}")).await;
    }
    (fleet, ports)
}

fn urls(ports: &[u16]) -> Urls {
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    Urls::split(&bases)
}

async fn split_deployment_passes_the_scenario(kind: Kind, redis: u32) {
    let tag = format!("split_{kind:?}").to_lowercase();
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = TestBus::new(kind, false).await;
    let db = fresh_database(&format!("liveops_{tag}"));
    let (fleet, ports) = start_split(dir.path(), &db, &redis_db(redis), &bus).await;
    let urls = urls(&ports);
    // /readyz says which bus the process runs on.
    let ready: Value = reqwest::get(format!("{}/readyz", urls.gateway))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    let name = match kind {
        Kind::Sqs => "sqs",
        Kind::ServiceBus => "servicebus",
    };
    assert_eq!(ready["runs_on"]["bus"], name, "{ready}");
    play_scenario(&urls, &Keyring::single(SECRET).expect("key"), &tag).await;
    drop(fleet);
}

async fn bus_outage_answers_503_then_recovers(kind: Kind, redis: u32) {
    let tag = format!("outage_{kind:?}").to_lowercase();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bus = TestBus::new(kind, true).await;
    let db = fresh_database(&format!("liveops_{tag}"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _fleet = Fleet(
        vec![spawn("all", port, dir.path(), &db, &redis_db(redis), &bus)],
        Vec::new(),
    );
    wait_ready(&base).await;

    let counts = Arc::new(Counts::default());
    let load = tokio::spawn(stream(base.clone(), 6, 60, counts.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bus.cut();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(
        ready.status(),
        503,
        "not ready while the bus is out of reach"
    );
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(down.elapsed())).await;
    bus.restore().await;

    let want = load.await.expect("load");
    let unavailable = counts.unavailable.load(Ordering::Relaxed);
    let slowest = counts.slowest_ms.load(Ordering::Relaxed);
    eprintln!(
        "{kind:?} outage: {unavailable} answers were 503, {} other retries, slowest answer \
         {slowest} ms",
        counts.other.load(Ordering::Relaxed)
    );
    assert!(
        unavailable > 0,
        "writes answered 503 while the bus was out of reach"
    );
    assert!(slowest < 8_000, "a request hung for {slowest} ms");
    assert_exactly_once(&Urls::all(&base), &want).await;
}

async fn consumer_killed_mid_stream_loses_nothing(kind: Kind, redis: u32) {
    let tag = format!("crash_{kind:?}").to_lowercase();
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = TestBus::new(kind, false).await;
    let db = fresh_database(&format!("liveops_{tag}"));
    let redis = redis_db(redis);
    let (mut fleet, ports) = start_split(dir.path(), &db, &redis, &bus).await;
    let urls = urls(&ports);

    let counts = Arc::new(Counts::default());
    let load = tokio::spawn(stream(urls.gateway.clone(), 6, 60, counts.clone()));
    // Progression consumes while the stream runs; kill it hard mid-batch, then start it again.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    fleet.0[2].kill().expect("kill -9 progression");
    let _ = fleet.0[2].wait();
    tokio::time::sleep(Duration::from_secs(1)).await;
    fleet.0[2] = spawn("progression", ports[2], dir.path(), &db, &redis, &bus);
    wait_ready(&urls.progression).await;

    let want = load.await.expect("load");
    assert_exactly_once(&urls, &want).await;
    drop(fleet);
}

/// The three tests over one bus, in a module of their own behind the bus's feature; each test has
/// a Redis database of its own (`redis`, in the order of the tests).
macro_rules! bus_tests {
    ($module:ident, $feature:literal, $kind:expr, $redis:expr,
     $scenario:ident, $outage:ident, $crash:ident) => {
        #[cfg(feature = $feature)]
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                split_deployment_passes_the_scenario($kind, $redis[0]).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $outage() {
                bus_outage_answers_503_then_recovers($kind, $redis[1]).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $crash() {
                consumer_killed_mid_stream_loses_nothing($kind, $redis[2]).await;
            }
        }
    };
}

bus_tests!(
    sqs,
    "sqs",
    Kind::Sqs,
    [7, 8, 9],
    four_processes_over_sqs_pass_the_scenario,
    sqs_out_of_reach_answers_503_then_recovers_with_exactly_once_effect,
    kill_9_of_a_consumer_over_sqs_loses_nothing_and_doubles_nothing
);

bus_tests!(
    servicebus,
    "servicebus",
    Kind::ServiceBus,
    [10, 11, 12],
    four_processes_over_amqp_pass_the_scenario,
    amqp_broker_out_of_reach_answers_503_then_recovers_with_exactly_once_effect,
    kill_9_of_a_consumer_over_amqp_loses_nothing_and_doubles_nothing
);
