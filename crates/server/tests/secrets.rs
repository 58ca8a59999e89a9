//! No secret ever reaches a log line or an answer. The real binary runs with known secrets, all
//! given as files the way Key Vault mounts them (signing keys, a PostgreSQL password, a Redis
//! password, each for a user made for this test), and is driven through failures: bad and
//! unknown signatures, broken bodies, a keys file replaced by a broken one, a gateway whose Redis
//! password is wrong (503s and a failing `/readyz`), a progression whose database password is
//! wrong (start-up refused). Every JSON log line and every answer body is searched for every
//! secret, the wrong ones included. The database is the TLS-only PostgreSQL of
//! `scripts/services-tls.sh` (it checks passwords; the plain one trusts every local client), the
//! way a managed database is reached: `sslmode=verify-full` with the CA as a file.
#![cfg(all(feature = "redis", feature = "postgres"))]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, now, wait_ready, xp, Fleet, BIN};
use liveops_core::Keyring;

const HMAC_SECRET: &str = "hmac-known-secret-5b1e2a7c9d3f4e6a8b0c";
const HMAC_SECRET_2: &str = "hmac-known-secret-2-77f0c1d2e3a4b5c6d7e8";
const BROKEN_KEY: &str = "broken-file-secret-x1";

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the servers (scripts/services.sh start, \
             scripts/services-tls.sh start) and source their env files"
        )
    })
}

/// `(host, port)` of a `scheme://[user[:pass]@]host:port/...` URL.
fn host_port(url: &str) -> (String, String) {
    let rest = url.split_once("://").expect("scheme").1;
    let authority = rest.split('/').next().expect("authority");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (h, p) = hostport.split_once(':').expect("host:port");
    (h.to_owned(), p.to_owned())
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("client tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL role owning a database of its own, and a Redis ACL user, each with a password
/// known to this test; removed when the fleet is dropped.
struct Accounts {
    name: String,
    pg_password: String,
    redis_password: String,
}

impl Accounts {
    fn create(fleet: &mut Fleet) -> Self {
        let tag = format!("{:08x}", rand::random::<u32>());
        let a = Self {
            name: format!("leak_{tag}"),
            pg_password: format!("pg-known-secret-{tag}-e4c1"),
            redis_password: format!("redis-known-secret-{tag}-9a2f"),
        };
        let admin = format!("{}?sslmode=require", env_var("LIVEOPS_TEST_PG_TLS_URL"));
        run(Command::new("psql").arg(&admin).args([
            "-qc",
            &format!("CREATE ROLE {} LOGIN PASSWORD '{}'", a.name, a.pg_password),
            "-c",
            &format!("CREATE DATABASE {0} OWNER {0}", a.name),
        ]));
        let (h, p) = host_port(&env_var("LIVEOPS_TEST_REDIS_URL"));
        let rule = format!(">{}", a.redis_password);
        run(Command::new("redis-cli").args([
            "-h", &h, "-p", &p, "ACL", "SETUSER", &a.name, "on", &rule, "~*", "&*", "+@all",
        ]));
        let name = a.name.clone();
        fleet.1.push(Box::new(move || {
            let _ = Command::new("redis-cli")
                .args(["-h", &h, "-p", &p, "ACL", "DELUSER", &name])
                .output();
            let _ = Command::new("psql")
                .arg(&admin)
                .args([
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    "-c",
                    &format!("DROP ROLE IF EXISTS {name}"),
                ])
                .output();
        }));
        a
    }

    fn db_url(&self, password: &str) -> String {
        let (h, p) = host_port(&env_var("LIVEOPS_TEST_PG_TLS_URL"));
        let ca = env_var("LIVEOPS_TEST_TLS_CA");
        format!(
            "postgres://{0}:{password}@{h}:{p}/{0}?sslmode=verify-full&sslrootcert={ca}",
            self.name
        )
    }

    fn redis_url(&self, password: &str) -> String {
        let (h, p) = host_port(&env_var("LIVEOPS_TEST_REDIS_URL"));
        format!("redis://{}:{password}@{h}:{p}/9", self.name)
    }
}

/// A `liveops serve` whose stderr (the JSON logs) goes to a file.
fn serve(dir: &Path, name: &str, port: u16, env: &[(&str, String)]) -> std::process::Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("PORT", port.to_string())
        .env("BIND", "127.0.0.1")
        .env("DATA_DIR", dir.join(name))
        .env("ENV", "prod")
        .env("SHUTDOWN_DELAY", "0")
        .env("LOG_LEVEL", "info,liveops=debug")
        .env_remove("HMAC_SECRET")
        .env_remove("HMAC_KEYS")
        .env_remove("DB_URL")
        .env_remove("REDIS_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn liveops")
}

fn file(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{contents}\n")).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

/// Posts `body` signed by `ring`'s key `kid`; the answer's status and body.
async fn post(base: &str, ring: &Keyring, kid: &str, body: &[u8]) -> (u16, String) {
    let ts = now();
    let sig = ring
        .sign_request(Some(kid), ts, "POST", "/events", body)
        .unwrap_or_default();
    let r = reqwest::Client::new()
        .post(format!("{base}/events"))
        .header("content-type", "application/json")
        .header("x-timestamp", ts.to_string())
        .header("x-signature", sig)
        .header("x-key-id", kid)
        .body(body.to_vec())
        .send()
        .await
        .expect("post");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("get");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_log_line_or_an_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut fleet = Fleet::default();
    let acct = Accounts::create(&mut fleet);
    let wrong_pg = format!("{}-wrong", acct.pg_password);
    let wrong_redis = format!("{}-wrong", acct.redis_password);
    let mut answers: Vec<String> = Vec::new();

    // 1. Everything right, secrets as files; then failures a client can cause.
    let keys = file(d, "hmac-keys", &format!("k1={HMAC_SECRET}"));
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    fleet.0.push(serve(
        d,
        "all",
        port,
        &[
            ("HMAC_KEYS_FILE", keys.clone()),
            (
                "DB_URL_FILE",
                file(d, "db-url", &acct.db_url(&acct.pg_password)),
            ),
            (
                "REDIS_URL_FILE",
                file(d, "redis-url", &acct.redis_url(&acct.redis_password)),
            ),
        ],
    ));
    wait_ready(&base).await;
    let ring = Keyring::new(vec![
        ("k1".into(), HMAC_SECRET.into()),
        ("k2".into(), HMAC_SECRET_2.into()),
    ])
    .expect("keys");
    let event = serde_json::to_vec(&xp("player_leak", 10)).expect("json");
    let (s, b) = post(&base, &ring, "k1", &event).await;
    assert_eq!(s, 202, "{b}");
    answers.push(b);
    for (kid, body, want) in [
        ("k2", event.clone(), 401),               // a key the server does not have
        ("k1", b"{not json".to_vec(), 400),       // a broken body
        ("k1", br#"{"type":"x"}"#.to_vec(), 400), // an invalid event
    ] {
        let (s, b) = post(&base, &ring, kid, &body).await;
        assert_eq!(s, want, "{b}");
        answers.push(b);
    }
    // Keys file replaced by a broken one (a secret too short): refused and logged.
    std::fs::write(
        d.join("hmac-keys"),
        format!("k1={HMAC_SECRET}\nk9={BROKEN_KEY}\n"),
    )
    .expect("rewrite");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for path in ["/readyz", "/players/player_leak/progress", "/metrics"] {
        answers.push(get(&format!("{base}{path}")).await.1);
    }

    // The keys file mended (a process starting on a broken one would refuse to start).
    std::fs::write(d.join("hmac-keys"), format!("k1={HMAC_SECRET}\n")).expect("mend");

    // 2. A gateway whose Redis password is wrong: it starts, answers 503, is not ready.
    let port = free_port();
    let gw = format!("http://127.0.0.1:{port}");
    fleet.0.push(serve(
        d,
        "gateway",
        port,
        &[
            ("LIVEOPS_TARGET", "gateway".into()),
            ("HMAC_KEYS_FILE", keys.clone()),
            ("REDIS_URL", acct.redis_url(&wrong_redis)),
        ],
    ));
    common::eventually(Duration::from_secs(30), "the gateway answers", || async {
        reqwest::get(format!("{gw}/healthz")).await.ok().map(|_| ())
    })
    .await;
    let (s, b) = post(&gw, &ring, "k1", &event).await;
    assert_eq!(s, 503, "{b}");
    answers.push(b);
    let (s, b) = get(&format!("{gw}/readyz")).await;
    assert_eq!(s, 503, "{b}");
    assert!(b.contains("hot_state") || b.contains("redis"), "{b}");
    answers.push(b);

    // 3. A progression whose database password is wrong: start-up is refused.
    let port = free_port();
    let mut progression = serve(
        d,
        "progression",
        port,
        &[
            ("LIVEOPS_TARGET", "progression".into()),
            ("HMAC_KEYS_FILE", keys.clone()),
            ("DB_URL", acct.db_url(&wrong_pg)),
        ],
    );
    let exited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(status) = progression.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("progression gives up on a wrong database password");
    assert!(!exited.success());
    drop(fleet);

    let logs: Vec<(String, String)> = ["all", "gateway", "progression"]
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(d.join(format!("{n}.log"))).expect("log");
            (n.to_string(), text)
        })
        .collect();
    // The failures did happen and were logged.
    let log_of = |n: &str| &logs.iter().find(|(k, _)| k == n).expect("log").1;
    assert!(
        log_of("all").contains("HMAC_KEYS_FILE refused"),
        "{}",
        log_of("all")
    );
    assert!(
        log_of("gateway").to_lowercase().contains("redis"),
        "{}",
        log_of("gateway")
    );
    assert!(
        log_of("progression").contains("DB_URL"),
        "{}",
        log_of("progression")
    );

    let secrets = [
        HMAC_SECRET,
        HMAC_SECRET_2,
        BROKEN_KEY,
        &acct.pg_password,
        &wrong_pg,
        &acct.redis_password,
        &wrong_redis,
    ];
    for secret in secrets {
        for (name, text) in &logs {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                panic!("the {name} log holds a secret: {line}");
            }
        }
        for body in &answers {
            assert!(!body.contains(secret), "an answer holds a secret: {body}");
        }
    }
}
