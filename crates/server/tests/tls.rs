//! The whole product over TLS, configured as in production: URLs (with their passwords) read
//! from files, the database verifying the server's certificate and name against a CA file, Redis
//! over `rediss://` trusting `REDIS_CA_FILE`. Needs the servers of `scripts/services-tls.sh`.
#![cfg(all(feature = "redis", feature = "postgres", feature = "mysql"))]

mod common;

use std::path::Path;
use std::process::Command;

use common::{play_scenario, spawn_app, Urls};
use liveops_testkit::fixtures::server_env as env;

fn file(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{contents}\n")).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

/// A fresh database on the TLS server, so fairness statistics start empty; its URL.
fn fresh_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("url with a database");
    let ca = env("LIVEOPS_TEST_TLS_CA");
    let sql = format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}");
    let out = if url.starts_with("postgres") {
        Command::new("psql")
            .arg(format!("{url}?sslmode=verify-full&sslrootcert={ca}"))
            .args(["-qc", &format!("DROP DATABASE IF EXISTS {name}")])
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .output()
    } else {
        let rest = url.split_once("://").expect("scheme").1;
        let (creds, host) = rest.split_once('@').expect("credentials");
        let (user, pass) = creds.split_once(':').expect("user:password");
        let (h, p) = host
            .split('/')
            .next()
            .expect("host")
            .split_once(':')
            .expect("port");
        Command::new("mariadb")
            .args(["--no-defaults", "-h", h, "-P", p, "-u", user])
            .arg(format!("-p{pass}"))
            .args(["--ssl-ca", &ca, "--ssl-verify-server-cert", "-e", &sql])
            .output()
    }
    .expect("database client");
    assert!(
        out.status.success(),
        "cannot create {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{base}/{name}")
}

/// An empty database `db` on the TLS Redis; its URL.
fn redis_db(db: u32) -> String {
    let url = env("LIVEOPS_TEST_REDIS_TLS_URL");
    let rest = url.split_once('@').expect("password").1;
    let (h, p) = rest
        .trim_end_matches('/')
        .split_once(':')
        .expect("host:port");
    let pass = url
        .split_once("://:")
        .and_then(|(_, r)| r.split_once('@'))
        .expect("password")
        .0;
    let ok = Command::new("redis-cli")
        .env("REDISCLI_AUTH", pass)
        .args(["--tls", "--cacert", &env("LIVEOPS_TEST_TLS_CA")])
        .args(["-h", h, "-p", p, "-n", &db.to_string(), "FLUSHDB"])
        .status()
        .expect("redis-cli")
        .success();
    assert!(ok, "cannot flush TLS redis db {db}");
    format!("{}{db}", url.trim_end_matches('/').to_owned() + "/")
}

/// Players unique to this run (the Redis servers outlive it).
fn tag(name: &str) -> String {
    format!("{name}_{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// Plays the scenario with the database at `db_url` (TLS settings included) and the Redis at
/// `redis_url`, both given in files with the test CA, plus `extra` flags.
async fn scenario_over_tls(db_url: &str, redis_url: &str, extra: &[&str], players: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = env("LIVEOPS_TEST_TLS_CA");
    let db_url = file(dir.path(), "db-url", db_url);
    let redis_url = file(dir.path(), "redis-url", redis_url);
    let mut flags = vec![
        "--db-url-file",
        &db_url,
        "--redis-url-file",
        &redis_url,
        "--redis-ca-file",
        &ca,
    ];
    flags.extend_from_slice(extra);
    let app = spawn_app(&flags).await;
    play_scenario(&Urls::all(&app.base), &app.keyring, &tag(players)).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_passes_over_verified_tls_to_postgresql_and_redis() {
    let ca = env("LIVEOPS_TEST_TLS_CA");
    let db = fresh_database(&env("LIVEOPS_TEST_PG_TLS_URL"), "liveops_tls_e2e");
    let db_url = format!("{db}?sslmode=verify-full&sslrootcert={ca}");
    scenario_over_tls(&db_url, &redis_db(3), &["--bus-kind", "redis"], "tls_pg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scenario_passes_over_verified_tls_to_mariadb_and_a_redis_cluster() {
    let ca = env("LIVEOPS_TEST_TLS_CA");
    let db = fresh_database(&env("LIVEOPS_TEST_MYSQL_TLS_URL"), "liveops_tls_e2e");
    let db_url = format!("{db}?ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}");
    let cluster = env("LIVEOPS_TEST_REDIS_TLS_CLUSTER");
    scenario_over_tls(&db_url, &cluster, &[], "tls_my").await;
}
