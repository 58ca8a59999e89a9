//! [`Azurite`]: Microsoft's Azure Storage emulator (npm `azurite`, installed by
//! `scripts/tools.sh`), started on a free loopback port with a throw-away directory and the
//! emulator's well-known account, for tests of the Azure Blob archive. Stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The emulator's account (the same on every installation).
pub const ACCOUNT: &str = "devstoreaccount1";

/// The emulator account's key (public, documented by Microsoft).
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Blob service emulator.
pub struct Azurite {
    /// `http://127.0.0.1:<port>/devstoreaccount1`: append `/<container>`.
    pub account_url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Where `azurite-blob` is: `$LIVEOPS_AZURITE`, else on `PATH`, else in the tools cache.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LIVEOPS_AZURITE") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("azurite-blob"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        let tools = std::env::var_os("LIVEOPS_TOOLS")
            .map_or_else(|| PathBuf::from("/var/tmp/liveops-tools"), PathBuf::from);
        tools.join("npm/node_modules/.bin/azurite-blob")
    })
}

impl Azurite {
    /// Starts the Blob service and waits until it listens; panics with how to install it if
    /// it is missing (these tests never skip silently).
    pub fn start() -> Self {
        let bin = binary();
        assert!(
            bin.is_file(),
            "{} not found: run scripts/tools.sh install (npm azurite), or set LIVEOPS_AZURITE",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(dir.path())
            .args(["--skipApiVersionCheck", "--disableTelemetry", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "azurite did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            account_url: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
            child,
            _dir: dir,
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
