//! Settings are checked at start, each fault naming its variable.

use super::*;

fn resolve(args: &[&str]) -> Result<Settings, ConfigError> {
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
        a.keyring.sign_request(None, 1, b"x"),
        b.keyring.sign_request(None, 1, b"x")
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
        (vec![s, "--target", "warehouse"], "LIVEOPS_TARGET"),
        (vec![s, "--rate-limit-max", "0"], "RATE_LIMIT_MAX"),
    ] {
        assert_eq!(resolve(&args).unwrap_err().var, var, "{args:?}");
    }
}
