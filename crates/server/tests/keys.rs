//! Keys from mounted files, rotated while the product runs: the signing keys, and the keys
//! secrets are sealed with at rest. A file is laid out the way the Key Vault CSI driver lays out
//! a mount (the visible name is a link into a `..data` link to a timestamped directory, swapped in
//! one rename), and `ENV=prod` starts on the signing keys' file alone. A key added to a file
//! works within seconds, a key removed stops working within seconds, and contents that do not
//! parse leave the keys in force.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::campaign::{Live, LiveUrls, ADMIN_EMAIL, ADMIN_PASSWORD};
use common::{eventually, signed_post, spawn_app_in, spawn_app_keyed, xp, TestApp};
use liveops_core::Keyring;

const OLD: &str = "old-key-0123456789abcdef0123456789abcdef";
const NEW: &str = "new-key-fedcba9876543210fedcba9876543210";

/// A secret volume as the CSI driver writes it: `<dir>/keys -> ..data/keys`,
/// `..data -> ..<version>`.
struct Mount {
    dir: PathBuf,
    version: u32,
}

impl Mount {
    fn new(dir: &Path, contents: &str) -> Self {
        let mut m = Self {
            dir: dir.to_path_buf(),
            version: 0,
        };
        m.rotate(contents);
        std::os::unix::fs::symlink("..data/keys", m.file()).expect("link");
        m
    }

    /// A mount holding `contents` in a new temporary directory (its `secrets-store`), which
    /// also holds the product's data directory.
    fn in_temp(contents: &str) -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = dir.path().join("secrets-store");
        std::fs::create_dir(&secrets).expect("mount dir");
        let mount = Self::new(&secrets, contents);
        (dir, mount)
    }

    fn file(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// Writes a new version and swaps `..data` to it atomically, as the driver does.
    fn rotate(&mut self, contents: &str) {
        self.swap(Some(contents));
    }

    /// Swaps `..data` to a new version, with the file holding `contents`, or without it (the
    /// visible name then leads nowhere: unreadable).
    fn swap(&mut self, contents: Option<&str>) {
        self.version += 1;
        let version = format!("..2026_12_01_00_00_{:02}", self.version);
        std::fs::create_dir(self.dir.join(&version)).expect("version dir");
        if let Some(contents) = contents {
            std::fs::write(self.dir.join(&version).join("keys"), contents).expect("write");
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).expect("link");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap");
    }
}

/// Posts an event signed with key `kid` of `secret`; the status.
async fn send_with(app: &TestApp, kid: &str, secret: &str) -> u16 {
    let ring = Keyring::new(vec![(kid.to_owned(), secret.as_bytes().to_vec())]).expect("key");
    // A new player each time: the gateway refuses a signed request seen before (a replay).
    let player = format!("player_rotation_{:08x}", rand::random::<u32>());
    let body = serde_json::to_vec(&xp(&player, 10)).expect("json");
    let url = format!("{}/events", app.base);
    signed_post(&app.client, &ring, Some(kid), url, body)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

/// The value of `series` in the app's `/metrics`.
async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let text = app.get("/metrics").await.body.as_str()?.to_owned();
    liveops_testkit::logs::sample(&text, series)
}

/// Waits (at most 5 s) until `series` is at least `at_least`.
async fn until_metric(app: &TestApp, series: &str, at_least: f64) {
    eventually(Duration::from_secs(5), series, || async {
        metric(app, series)
            .await
            .filter(|v| *v >= at_least)
            .map(drop)
    })
    .await;
}

/// Waits (at most 5 s: the file is read every second) until `kid` gets `status`.
async fn until(app: &TestApp, kid: &str, secret: &str, status: u16, what: &str) {
    eventually(Duration::from_secs(5), what, || async {
        (send_with(app, kid, secret).await == status).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_through_the_mounted_file_while_serving() {
    let (dir, mut mount) = Mount::in_temp(&format!("k1={OLD}\n"));
    let file = mount.file();
    let app = spawn_app_keyed(
        dir.path().join("data"),
        &[
            "--env",
            "prod",
            "--shutdown-delay",
            "0",
            "--hmac-keys-file",
            file.to_str().expect("utf-8"),
        ],
    )
    .await;

    // ENV=prod started on the file alone; its key signs, an unknown one does not. Nothing
    // refused yet, and the series an alert reads are there from the start.
    assert_eq!(send_with(&app, "k1", OLD).await, 202);
    assert_eq!(
        metric(&app, "hmac_key_reloads_total{result=\"rejected\"}").await,
        Some(0.0)
    );
    assert_eq!(
        metric(&app, "hmac_key_reloads_total{result=\"unreadable\"}").await,
        Some(0.0)
    );
    assert_eq!(metric(&app, "hmac_keys_file_refused").await, Some(0.0));
    assert_eq!(send_with(&app, "k2", NEW).await, 401);

    // Rotation, step 1: the new key joins; both work.
    mount.rotate(&format!("k1={OLD},k2={NEW}\n"));
    until(&app, "k2", NEW, 202, "the new key works").await;
    assert_eq!(send_with(&app, "k1", OLD).await, 202);

    // Step 2: the old key leaves and stops working.
    mount.rotate(&format!("k2={NEW}\n"));
    until(&app, "k1", OLD, 401, "the removed key is refused").await;
    assert_eq!(send_with(&app, "k2", NEW).await, 202);

    // A broken file (a secret too short, a line that is not kid=secret) changes nothing; the
    // refusal is counted and says what is wrong without the contents.
    mount.rotate("k3=too-short\nnot-a-key-entry\n");
    until_metric(&app, "hmac_key_reloads_total{result=\"rejected\"}", 1.0).await;
    assert_eq!(metric(&app, "hmac_keys_file_refused").await, Some(1.0));
    assert_eq!(
        send_with(&app, "k2", NEW).await,
        202,
        "the keys in force stay"
    );
    assert_eq!(send_with(&app, "k1", OLD).await, 401);

    // The file gone (the mount's link leads nowhere): counted too, and the keys in force stay.
    mount.swap(None);
    until_metric(&app, "hmac_key_reloads_total{result=\"unreadable\"}", 1.0).await;
    assert_eq!(metric(&app, "hmac_keys_file_refused").await, Some(1.0));
    assert_eq!(send_with(&app, "k2", NEW).await, 202);

    // Fixed again: back to normal.
    mount.rotate(&format!("k2={NEW}\nk4={OLD}\n"));
    until(&app, "k4", OLD, 202, "a fixed file is taken").await;
    assert_eq!(metric(&app, "hmac_keys_file_refused").await, Some(0.0));
    app.shutdown().await;
}

const SEAL_1: &str = "s1=sealing-material-one-0123456789abcdef";
const SEAL_2: &str = "s2=sealing-material-two-fedcba9876543210";

/// The keys secrets are sealed with at rest (ADR 0032), rotated through their mounted file while
/// the product serves, in the three steps of docs/OPERATIONS.md with no restart: the secrets
/// sealed under the old key are sealed again under the new one as soon as it comes first, so
/// the old key can leave and every API key still signs; a broken file changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealing_keys_rotate_through_the_mounted_file_while_serving() {
    let (dir, mut mount) = Mount::in_temp(&format!("{SEAL_1}\n"));
    let file = mount.file();
    let flags = [
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password",
        ADMIN_PASSWORD,
        "--secrets-keys-file",
        file.to_str().expect("utf-8"),
    ];
    let app = spawn_app_in(dir.path().join("data"), &flags).await;
    let live = Live::new(LiveUrls::all(&app.base));
    let admin = live.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let first = live.create_key(&admin, "sealed under s1").await;
    live.wait_key_works(&first).await;
    let applied = "secrets_key_reloads_total{result=\"applied\"}";
    assert_eq!(metric(&app, applied).await, Some(0.0));
    assert_eq!(metric(&app, "secrets_keys_file_refused").await, Some(0.0));

    // Step 1: the new key joins, opening only (each process must hold it before any seals).
    mount.rotate(&format!("{SEAL_1}\n{SEAL_2}\n"));
    until_metric(&app, applied, 1.0).await;
    // Step 2: the new key first. It seals what is written from now on, and the upkeep seals
    // the first key's secret again at once, without waiting for its minute.
    mount.rotate(&format!("{SEAL_2}\n{SEAL_1}\n"));
    until_metric(&app, applied, 2.0).await;
    // The keys in force, as an operator checks every pod took the step.
    for (series, value) in [
        ("secrets_keys_in_force{key=\"s2\",seals=\"true\"}", 1.0),
        ("secrets_keys_in_force{key=\"s1\",seals=\"false\"}", 1.0),
        ("secrets_keys_in_force{key=\"s1\",seals=\"true\"}", 0.0),
        ("secrets_keys_in_force{key=\"s2\",seals=\"false\"}", 0.0),
    ] {
        assert_eq!(metric(&app, series).await, Some(value), "{series}");
    }
    let resealed = "secrets_resealed_total{table=\"api_keys\"}";
    until_metric(&app, resealed, 1.0).await;
    let second = live.create_key(&admin, "sealed under s2").await;
    live.wait_key_works(&second).await;
    assert_eq!(
        metric(&app, "secrets_stale{table=\"api_keys\"}").await,
        Some(0.0)
    );

    // Step 3: the old key leaves. Once the API keys are read again under the new list, both
    // still sign: each opens under s2, and none was passed over.
    mount.rotate(&format!("{SEAL_2}\n"));
    until_metric(&app, applied, 3.0).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for key in [&first, &second] {
        let player = format!("player_sealed_{:08x}", rand::random::<u32>());
        let (status, body) = live.send_event(key, &xp(&player, 10)).await;
        assert_eq!(status, 202, "{}: {body}", key.key_id);
    }
    let unreadable = "secrets_unreadable_total{table=\"api_keys\"}";
    assert_eq!(metric(&app, unreadable).await.unwrap_or(0.0), 0.0);

    // A broken file (material too short) is refused and counted; the keys in force stay.
    mount.rotate("s3=too-short\n");
    until_metric(&app, "secrets_key_reloads_total{result=\"rejected\"}", 1.0).await;
    assert_eq!(metric(&app, "secrets_keys_file_refused").await, Some(1.0));
    let player = format!("player_sealed_{:08x}", rand::random::<u32>());
    let (status, body) = live.send_event(&second, &xp(&player, 10)).await;
    assert_eq!(status, 202, "the keys in force stay: {body}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_keys_file_and_its_plain_twin_together_are_refused_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hmac-keys");
    std::fs::write(&file, format!("k1={OLD}")).expect("write");
    let given = liveops::config::Given::from_args([
        "--hmac-keys-file",
        file.to_str().expect("utf-8"),
        "--hmac-keys",
        &format!("k2={NEW}"),
    ])
    .expect("args");
    let err = given.resolve().expect_err("both forms at once");
    assert_eq!(err.var, "HMAC_KEYS_FILE");
    assert!(
        err.to_string().contains("HMAC_KEYS or HMAC_KEYS_FILE"),
        "{err}"
    );
    assert!(!err.to_string().contains(NEW) && !err.to_string().contains(OLD));
}
