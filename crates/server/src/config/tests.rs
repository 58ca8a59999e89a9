//! Settings are checked at start, each fault naming its variable.
#![allow(clippy::unwrap_used)] // tests may unwrap

use super::*;

pub(super) fn resolve(args: &[&str]) -> Result<Settings, ConfigError> {
    let table = Table::standard();
    let (raw, matches) = parse_args(&table, args).unwrap();
    Settings::resolve(&table, raw, matches)
}

#[test]
fn dev_mode_generates_and_reuses_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let a = resolve(&["--data-dir", d]).unwrap();
    let b = resolve(&["--data-dir", d]).unwrap();
    let path = a.dev_secret_path.clone().unwrap();
    assert!(path.exists());
    assert_eq!(
        a.keyring.sign_request(None, 1, "POST", "/events", b"x"),
        b.keyring.sign_request(None, 1, "POST", "/events", b"x")
    );
}

#[test]
fn prod_refuses_missing_and_short_secrets_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let e = resolve(&["--env", "prod", "--data-dir", d]).unwrap_err();
    assert_eq!(e.var, "HMAC_SECRET");
    let e = resolve(&["--env", "prod", "--hmac-secret", "short"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "HMAC_SECRET: secret must be at least 32 bytes"
    );
    let e = resolve(&["--hmac-keys", "k1=short"]).unwrap_err();
    assert_eq!(e.var, "HMAC_KEYS");
    let ok = resolve(&[
        "--env",
        "prod",
        "--hmac-secret",
        "0123456789abcdef0123456789abcdef",
    ])
    .unwrap();
    assert!(ok.dev_secret_path.is_none());
}

#[test]
fn prod_starts_with_a_keys_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hmac-keys");
    std::fs::write(&file, "k1=0123456789abcdef0123456789abcdef\n").unwrap();
    let f = file.to_str().unwrap();
    let s = resolve(&["--env", "prod", "--hmac-keys-file", f]).unwrap();
    assert_eq!(s.keyring.primary_id(), "k1");
    assert!(s.dev_secret_path.is_none());
    assert_eq!(s.shutdown_delay, DEFAULT_SHUTDOWN_DELAY);
    let e = resolve(&["--env", "prod", "--hmac-keys-file", f, "--hmac-keys", "x"]).unwrap_err();
    assert_eq!(e.var, "HMAC_KEYS_FILE");
    assert!(e.reason.contains("HMAC_KEYS or HMAC_KEYS_FILE"), "{e}");
}

#[test]
fn urls_come_from_files_but_not_from_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let s = "--hmac-secret=0123456789abcdef0123456789abcdef";
    let file = dir.path().join("db-url");
    std::fs::write(&file, "sqlite:///tmp/from-a-file.db\n").unwrap();
    let f = file.to_str().unwrap();
    let got = resolve(&[s, "--db-url-file", f]).unwrap();
    assert_eq!(got.db_url, "sqlite:///tmp/from-a-file.db");
    for (plain, twin) in [
        ("--db-url=sqlite:///x.db", "--db-url-file"),
        ("--redis-url=redis://h", "--redis-url-file"),
        ("--bus-conn=/x.db", "--bus-conn-file"),
    ] {
        let e = resolve(&[s, plain, twin, f]).unwrap_err();
        let var = e.var;
        assert!(var.ends_with("_FILE"), "{e}");
        assert!(e.reason.contains(var.trim_end_matches("_FILE")), "{e}");
    }
}

#[test]
fn shutdown_delay_is_zero_in_dev_unless_set() {
    let s = "--hmac-secret=0123456789abcdef0123456789abcdef";
    assert_eq!(resolve(&[s]).unwrap().shutdown_delay, Duration::ZERO);
    let set = resolve(&[s, "--shutdown-delay", "10"]).unwrap();
    assert_eq!(set.shutdown_delay, Duration::from_secs(10));
    assert_eq!(
        resolve(&[s, "--shutdown-delay", "301"]).unwrap_err().var,
        "SHUTDOWN_DELAY"
    );
}

#[test]
fn bad_values_name_their_variable() {
    let s = "--hmac-secret=0123456789abcdef0123456789abcdef";
    for (args, var) in [
        (vec![s, "--lb-windows", "hourly"], "LB_WINDOWS"),
        (vec![s, "--lb-windows", "daily,weekly, daily"], "LB_WINDOWS"),
        (
            vec![s, "--bus-kind", "inmem", "--target", "ingest"],
            "BUS_KIND",
        ),
        (
            vec![s, "--campaign-max-entrants", "0"],
            "CAMPAIGN_MAX_ENTRANTS",
        ),
        (vec![s, "--season-start", "2026-13-01"], "SEASON_START"),
        (vec![s, "--season-days", "0"], "SEASON_DAYS"),
        (vec![s, "--snapshot-cron", "not a cron"], "SNAPSHOT_CRON"),
        (vec![s, "--anomaly-z=-1"], "ANOMALY_Z"),
        (vec![s, "--level-curve", "0"], "LEVEL_CURVE"),
        (vec![s, "--db-url", "oracle://x"], "DB_URL"),
        (vec![s, "--bus-partitions", "0"], "BUS_PARTITIONS"),
        (vec![s, "--bus-redis-replicas", "17"], "BUS_REDIS_REPLICAS"),
        (vec![s, "--bus-redis-max-len", "99999"], "BUS_REDIS_MAX_LEN"),
        (
            vec![s, "--bus-redis-max-len", "1000000001"],
            "BUS_REDIS_MAX_LEN",
        ),
        (vec![s, "--bus-redis-replicas", "1"], "BUS_REDIS_REPLICAS"),
        (
            vec![s, "--bus-redis-replicas-away", "1"],
            "BUS_REDIS_REPLICAS_AWAY",
        ),
        (
            vec![
                s,
                "--bus-kind=redis",
                "--redis-url=redis://127.0.0.1:1/",
                "--bus-redis-replicas=1",
                "--bus-redis-replicas-away=2",
            ],
            "BUS_REDIS_REPLICAS_AWAY",
        ),
        (
            vec![s, "--bus-redis-replica-wait-ms", "0"],
            "BUS_REDIS_REPLICA_WAIT_MS",
        ),
        (
            vec![s, "--bus-redis-replica-wait-ms", "10001"],
            "BUS_REDIS_REPLICA_WAIT_MS",
        ),
        (vec![s, "--lb-topn", "0"], "LB_TOPN"),
        (
            vec![s, "--lb-scores-retention-days", "34"],
            "LB_SCORES_RETENTION_DAYS",
        ),
        (vec![s, "--target", "warehouse"], "LIVEOPS_TARGET"),
        (vec![s, "--rate-limit-max", "0"], "RATE_LIMIT_MAX"),
        (vec![s, "--backup-every", "5s"], "BACKUP_EVERY"),
        (vec![s, "--backup-keep", "0"], "BACKUP_KEEP"),
        (vec![s, "--flag-retention", "12h"], "FLAG_RETENTION"),
        (
            vec![s, "--webhook-retention-days", "0"],
            "WEBHOOK_RETENTION_DAYS",
        ),
        (
            vec![s, "--inbox-retention-days", "3651"],
            "INBOX_RETENTION_DAYS",
        ),
        (vec![s, "--webhook-max", "0"], "WEBHOOK_MAX"),
        (vec![s, "--webhook-max", "1001"], "WEBHOOK_MAX"),
        (vec![s, "--api-key-max", "0"], "API_KEY_MAX"),
        (vec![s, "--api-key-max", "10001"], "API_KEY_MAX"),
    ] {
        assert_eq!(resolve(&args).unwrap_err().var, var, "{args:?}");
    }
}

#[test]
fn cloud_picks_the_bus_unless_bus_kind_names_one() {
    let s = "--hmac-secret=0123456789abcdef0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let kind = |args: &[&str]| {
        let mut all = vec![s, "--data-dir", d];
        all.extend_from_slice(args);
        resolve(&all).map(|x| x.bus_kind)
    };
    assert_eq!(kind(&[]).unwrap(), BusKind::Sqlite);
    assert_eq!(
        kind(&["--cloud", "azure", "--bus-kind", "sqlite"]).unwrap(),
        BusKind::Sqlite
    );
    let aws = kind(&["--cloud", "aws"]);
    if cfg!(feature = "sqs") {
        assert_eq!(aws.unwrap(), BusKind::Sqs);
    } else {
        assert_eq!(aws.unwrap_err().var, "BUS_KIND");
    }
    // On Azure the connection string is a Key Vault file, mounted at /mnt/secrets-store.
    let azure = kind(&["--cloud", "azure"]).unwrap_err();
    if cfg!(feature = "servicebus") {
        assert_eq!(azure.var, "BUS_CONN_FILE");
        assert!(
            azure.reason.contains("/mnt/secrets-store/bus-conn"),
            "{azure}"
        );
    } else {
        assert_eq!(azure.var, "BUS_KIND");
    }
}

#[cfg(feature = "servicebus")]
#[test]
fn the_service_bus_connection_string_comes_from_bus_conn_or_its_file() {
    let s = "--hmac-secret=0123456789abcdef0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bus-conn");
    std::fs::write(&file, "amqp://127.0.0.1:5672\n").unwrap();
    let f = file.to_str().unwrap();
    let ok = resolve(&[s, "--bus-kind", "servicebus", "--bus-conn-file", f]).unwrap();
    assert!(matches!(ok.bus, BusChoice::ServiceBus(ref c) if c == "amqp://127.0.0.1:5672"));
    assert_eq!(
        format!("{:?}", ok.bus),
        "servicebus",
        "no secret in the logs"
    );
    for (args, var) in [
        (vec![s, "--bus-kind", "servicebus"], "BUS_CONN"),
        (
            vec![s, "--bus-kind", "servicebus", "--bus-conn", "Endpoint"],
            "BUS_CONN",
        ),
        (
            vec![
                s,
                "--bus-kind=servicebus",
                "--bus-conn=amqp://h:1",
                "--bus-conn-file",
                f,
            ],
            "BUS_CONN_FILE",
        ),
    ] {
        assert_eq!(resolve(&args).unwrap_err().var, var, "{args:?}");
    }
}

#[cfg(feature = "sqs")]
#[test]
fn sqs_settings_are_checked_at_start() {
    let s = "--hmac-secret=0123456789abcdef0123456789abcdef";
    for (args, var) in [
        (
            vec![s, "--bus-kind", "sqs", "--sqs-queue-prefix", "no spaces"],
            "SQS_QUEUE_PREFIX",
        ),
        (
            vec![s, "--bus-kind", "sqs", "--sqs-endpoint", "localhost:4566"],
            "SQS_ENDPOINT",
        ),
    ] {
        assert_eq!(resolve(&args).unwrap_err().var, var, "{args:?}");
    }
}

#[test]
fn redis_replicas_may_be_away_up_to_the_cache_count() {
    let s = "--hmac-secret=0123456789abcdef0123456789abcdef";
    let redis = [s, "--bus-kind=redis", "--redis-url=redis://127.0.0.1:1/"];
    for (replicas, away) in [("2", "1"), ("2", "2"), ("1", "0")] {
        let mut args = redis.to_vec();
        let (r, a) = (
            format!("--bus-redis-replicas={replicas}"),
            format!("--bus-redis-replicas-away={away}"),
        );
        args.extend([r.as_str(), a.as_str()]);
        let ok = resolve(&args).unwrap_or_else(|e| panic!("{args:?}: {e:?}"));
        assert!(matches!(ok.bus, BusChoice::Redis(_)), "{args:?}");
    }
}
