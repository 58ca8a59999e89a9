//! Settings that hold URLs and secrets are refused without quoting them, and what a backend
//! cannot take is refused at start, naming its variable.
#![allow(clippy::unwrap_used)] // tests may unwrap

use super::tests::resolve;
use super::*;

/// [`resolve`] with a signing key given, so no dev secret is written anywhere.
fn keyed(args: &[&str]) -> Result<Settings, ConfigError> {
    let key = ["--hmac-secret", "0123456789abcdef0123456789abcdef"];
    resolve(&[&key[..], args].concat())
}

/// A `DB_URL` that is not a URL is refused without quoting it: it may hold a password.
#[test]
fn a_db_url_that_is_no_url_is_refused_without_its_text() {
    let e = keyed(&["--db-url", "Server=h;User Id=u;Password=hunter2;"]).unwrap_err();
    assert_eq!(e.var, "DB_URL");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = keyed(&["--db-url", "u:hunter2@h/db"]).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let e = keyed(&["--db-url", "oracle://u:hunter2@h/db"]).unwrap_err();
    assert!(e.to_string().contains("\"oracle\"") && !e.to_string().contains("hunter2"));
}

/// The Redis Streams bus runs on one node: a cluster URL is refused at start-up, naming where
/// it came from.
#[cfg(feature = "redis")]
#[test]
fn the_redis_bus_refuses_a_cluster_url() {
    let cluster = "redis://127.0.0.1:7001,redis://127.0.0.1:7002";
    let e = keyed(&["--bus-kind", "redis", "--redis-url", cluster]).unwrap_err();
    assert_eq!(e.var, "REDIS_URL");
    let e = keyed(&["--bus-kind", "redis", "--bus-conn", "redis+cluster://h:1"]).unwrap_err();
    assert_eq!(e.var, "BUS_CONN");
    let one = [
        "--bus-kind",
        "redis",
        "--redis-url",
        cluster,
        "--bus-conn",
        "redis://h:1",
    ];
    assert!(keyed(&one).is_ok());
}

/// The Service Bus's session links per group are bounded at start-up (1 to 64, default 8),
/// naming the variable.
#[test]
fn service_bus_session_links_are_bounded() {
    for bad in ["0", "65"] {
        let e = keyed(&["--bus-sb-sessions", bad]).unwrap_err();
        assert_eq!(e.var, "BUS_SB_SESSIONS");
    }
    assert_eq!(keyed(&[]).unwrap().raw.bus.bus_sb_sessions, 8);
    let most = keyed(&["--bus-sb-sessions", "64"]).unwrap();
    assert_eq!(most.raw.bus.bus_sb_sessions, 64);
}

/// SQS's own limits are checked at start-up, naming the variable.
#[cfg(feature = "sqs")]
#[test]
fn sqs_limits_are_checked_at_start_up() {
    let sqs = ["--bus-kind", "sqs", "--aws-region", "eu-west-1"];
    let e = keyed(&[&sqs[..], &["--bus-max-deliveries", "1001"]].concat()).unwrap_err();
    assert_eq!(e.var, "BUS_MAX_DELIVERIES");
    let e = keyed(&[&sqs[..], &["--bus-visibility-sec", "43201"]].concat()).unwrap_err();
    assert_eq!(e.var, "BUS_VISIBILITY_SEC");
    assert!(keyed(&[&sqs[..], &["--bus-max-deliveries", "1000"]].concat()).is_ok());
}

/// The archive's key is read as every secret file is and checked at start-up: a blank one
/// (which would be preferred to the URL's SAS) and one that is not base64 are refused.
#[cfg(feature = "azure")]
#[test]
fn the_archive_key_is_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, "\n").unwrap();
    let sas = "https://acct.blob.core.windows.net/backups?sv=2022-11-02&sig=abc";
    let key_file = ["--backup-azure-url", sas, "--backup-azure-key-file"];
    let e = keyed(&[&key_file[..], &[file.to_str().unwrap()]].concat()).unwrap_err();
    assert_eq!(e.var, "BACKUP_AZURE_KEY_FILE");
    let url = "https://acct.blob.core.windows.net/backups";
    let e = keyed(&["--backup-azure-url", url, "--backup-azure-key", "%%"]).unwrap_err();
    assert_eq!(e.var, "BACKUP_AZURE_KEY");
    let no_container = ["--backup-azure-url", "https://acct.blob.core.windows.net/"];
    let e = keyed(&[&no_container[..], &["--backup-azure-key", "a2V5"]].concat()).unwrap_err();
    assert_eq!(e.var, "BACKUP_AZURE_URL");
    assert!(keyed(&["--backup-azure-url", sas]).is_ok());
}

/// What the settings print for debugging names no secret: not the shared ones, not a module's,
/// not the parse they came from.
#[test]
fn printed_settings_hold_no_secret() {
    let secrets = [
        ("--hmac-secret", "s3cret-hmac-0123456789abcdef-0123456789"),
        ("--hmac-keys", "k2=s3cret-rotated-0123456789abcdef-012345"),
        ("--db-url", "postgres://u:s3cret-db@h/db"),
        ("--db-read-url", "postgres://u:s3cret-replica@r/db"),
        ("--redis-url", "redis://:s3cret-redis@h:6379/0"),
        ("--bus-conn", "redis://:s3cret-bus@h:6379/0"),
        ("--backup-azure-key", "s3cret-azure-key"),
        ("--admin-password", "s3cret-admin-password"),
    ];
    let mut args: Vec<String> = Vec::new();
    for (flag, value) in secrets {
        args.extend([flag.to_owned(), value.to_owned()]);
    }
    let given = Given::from_args(&args).unwrap();
    let printed = format!("{given:?} {:?}", given.raw);
    assert!(printed.contains("RawConfig"), "{printed}");
    assert!(!printed.contains("s3cret"), "{printed}");
    let settings = keyed(&["--hmac-keys", "k2=s3cret-rotated-0123456789abcdef-012345"]).unwrap();
    let printed = format!("{settings:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
}

/// Without Redis, hot state is in process: a target running the gateway without fairness (or
/// fairness without the gateway) would never see the blocks the other makes, so it is refused.
#[test]
fn gateway_and_fairness_apart_need_redis() {
    for target in ["gateway", "fairness", "gateway,leaderboard"] {
        let e = keyed(&["--target", target]).unwrap_err();
        assert_eq!(e.var, "REDIS_URL", "{target}");
    }
    for target in [
        "all",
        "ingest",
        "gateway,fairness",
        "leaderboard",
        "operators",
    ] {
        assert!(keyed(&["--target", target]).is_ok(), "{target}");
    }
    #[cfg(feature = "redis")]
    assert!(keyed(&["--target", "gateway", "--redis-url", "redis://127.0.0.1:1"]).is_ok());
}

/// The bound on in-process idempotency holds is checked at start, naming the variable.
#[test]
fn in_process_idempotency_holds_are_bounded() {
    for bad in ["0", "9999", "1000000001"] {
        let e = keyed(&["--idemp-max-keys", bad]).unwrap_err();
        assert_eq!(e.var, "IDEMP_MAX_KEYS", "{bad}");
    }
    assert_eq!(keyed(&[]).unwrap().raw.idemp_max_keys, 4_000_000);
    assert!(keyed(&["--idemp-max-keys", "10000"]).is_ok());
}

/// `BIND` is an IPv4 or IPv6 address, checked at start naming the variable: `::` listens on
/// every IPv6 (and, where the system maps them, IPv4) address. Before, an IPv6 address made the
/// listen address `:::8080`, refused only after every module was built.
#[test]
fn the_bind_address_may_be_ipv6_and_is_checked_at_start() {
    for (given, want) in [
        ("::", "::"),
        ("[::1]", "::1"),
        ("0.0.0.0", "0.0.0.0"),
        ("127.0.0.1", "127.0.0.1"),
    ] {
        let s = keyed(&["--bind", given]).unwrap();
        assert_eq!(s.bind.to_string(), want, "{given}");
    }
    for bad in ["localhost", "0.0.0.0:80", "", "::g"] {
        let e = keyed(&["--bind", bad]).unwrap_err();
        assert_eq!(e.var, "BIND", "{bad}");
    }
}

/// `PEER_URL_TEMPLATE` is an http:// or https:// URL, checked at start naming the variable.
#[test]
fn the_peer_template_is_a_url() {
    for bad in ["liveops-{module}:8080", "ftp://x/{module}", ""] {
        let e = keyed(&["--peer-url-template", bad]).unwrap_err();
        assert_eq!(e.var, "PEER_URL_TEMPLATE", "{bad}");
    }
    let ok = keyed(&["--peer-url-template", "http://liveops-{module}:{port}"]).unwrap();
    assert_eq!(
        ok.raw.peer_url_template.as_deref(),
        Some("http://liveops-{module}:{port}")
    );
}

/// The HTTP server's timeouts and its bound on requests at once are checked at start-up, naming
/// the variable; the defaults hold.
#[test]
fn http_limits_are_bounded() {
    for (flag, bad, var) in [
        ("--http-header-timeout", "0s", "HTTP_HEADER_TIMEOUT"),
        ("--http-header-timeout", "10m", "HTTP_HEADER_TIMEOUT"),
        ("--http-body-timeout", "999ms", "HTTP_BODY_TIMEOUT"),
        ("--http-body-timeout", "soon", "HTTP_BODY_TIMEOUT"),
        ("--http-max-in-flight", "15", "HTTP_MAX_IN_FLIGHT"),
        ("--http-max-in-flight", "100001", "HTTP_MAX_IN_FLIGHT"),
    ] {
        assert_eq!(keyed(&[flag, bad]).unwrap_err().var, var, "{flag} {bad}");
    }
    let http = keyed(&[]).unwrap().http;
    assert_eq!(http.header_timeout, Duration::from_secs(20));
    assert_eq!(http.body_timeout, Duration::from_secs(20));
    assert_eq!(http.max_in_flight, 512);
    let set = [
        "--http-body-timeout",
        "1500ms",
        "--http-max-in-flight",
        "16",
    ];
    let http = keyed(&set).unwrap().http;
    assert_eq!(
        (http.body_timeout, http.max_in_flight),
        (Duration::from_millis(1500), 16)
    );
}
