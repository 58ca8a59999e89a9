//! Keeps the `file` layer of the signing keys in step with `HMAC_KEYS_FILE`. The Key Vault CSI
//! driver rotates a mounted secret by swapping a symbolic link, so the file is simply read again
//! every second and its keys installed when its contents change: a key added works, and a key
//! removed stops working, within about a second. Contents that do not parse (or would leave no
//! key at all) are refused with an error log that names the problem, never a secret, and the keys
//! in force stay; so do they while the file cannot be read. `hmac_key_reloads_total{result=
//! "applied|rejected|unreadable"}` counts each change taken, each change refused and each time the
//! file became unreadable (all from 0 at start); `hmac_keys_file_refused` is 1 while the file as
//! it is now is not what is in force (refused or unreadable), 0 otherwise.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use liveops_core::KeyStore;
use liveops_module::Task;
use sha2::{Digest, Sha256};

use crate::config::{parse_key_list, FILE_LAYER};

/// How often the file is read.
pub const POLL: Duration = Duration::from_secs(1);

/// The task that re-reads `path` into `store`'s `file` layer. `fixed` are the ids of the fixed
/// keys, which the file may not reuse. Its first read installs the file as it is then, quietly
/// (the layer holds what it held at start, unless it changed since).
pub fn watch(store: Arc<KeyStore>, path: PathBuf, fixed: Vec<String>) -> Task {
    let mut seen: Option<[u8; 32]> = None;
    Task::new("hmac keys file", move |stop| async move {
        for result in ["applied", "rejected", "unreadable"] {
            metrics::counter!("hmac_key_reloads_total", "result" => result).increment(0);
        }
        let refused_now = |refused: bool| {
            metrics::gauge!("hmac_keys_file_refused").set(if refused { 1.0 } else { 0.0 });
        };
        refused_now(false);
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut unreadable = false;
        // Whether the contents last read were refused.
        let mut refused = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let text = match tokio::fs::read(&path).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    if !unreadable {
                        metrics::counter!("hmac_key_reloads_total", "result" => "unreadable")
                            .increment(1);
                        tracing::error!(path = %path.display(), %error,
                            "cannot read HMAC_KEYS_FILE; the keys in force stay");
                        unreadable = true;
                        refused_now(true);
                    }
                    continue;
                }
            };
            unreadable = false;
            let digest: [u8; 32] = Sha256::digest(&text).into();
            let first = seen.is_none();
            if seen == Some(digest) {
                refused_now(refused);
                continue;
            }
            seen = Some(digest);
            refused = match install(&store, &text, &fixed) {
                Ok(_) if first => false,
                Ok(ids) => {
                    metrics::counter!("hmac_key_reloads_total", "result" => "applied").increment(1);
                    tracing::info!(path = %path.display(), key_ids = ?ids, "HMAC keys reloaded");
                    false
                }
                Err(reason) => {
                    metrics::counter!("hmac_key_reloads_total", "result" => "rejected")
                        .increment(1);
                    tracing::error!(path = %path.display(), %reason,
                        "HMAC_KEYS_FILE refused; the keys in force stay");
                    true
                }
            };
            refused_now(refused);
        }
    })
}

/// Parses the file's contents and installs them; the key ids installed, or why not.
fn install(store: &KeyStore, text: &[u8], fixed: &[String]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the file is not UTF-8".to_owned())?;
    let fixed: Vec<&str> = fixed.iter().map(String::as_str).collect();
    let keys = parse_key_list(text.trim_end_matches(['\n', '\r']), &fixed)?;
    let ids = keys.iter().map(|(k, _)| k.clone()).collect();
    store
        .set_layer(FILE_LAYER, keys)
        .map_err(|e| e.to_string())?;
    Ok(ids)
}
