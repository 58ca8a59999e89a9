//! Keeps the keys in force in step with their mounted files while the process runs: the signing
//! keys' `file` layer with `HMAC_KEYS_FILE`, and the keys secrets are sealed with at rest with
//! `SECRETS_KEYS_FILE` (ADR 0032). The Key Vault CSI driver rotates a mounted secret by swapping
//! a symbolic link, so a file is simply read again every second and its keys installed when its
//! contents change: a key added works, and a key removed stops working, within about a second.
//! Contents that do not parse (or would leave no key at all) are refused with an error log that
//! names the problem, never a secret, and the keys in force stay; so do they while the file
//! cannot be read. `<reloads>{result="applied|rejected|unreadable"}` counts each change taken,
//! each change refused and each time the file became unreadable (all from 0 at start);
//! `<refused>` is 1 while the file as it is now is not what is in force (refused or unreadable),
//! 0 otherwise ([`KeysFile`] records both metrics).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use liveops_core::sealing::SealerCell;
use liveops_core::KeyStore;
use liveops_module::Task;
use sha2::{Digest, Sha256};

use crate::config::sealing::SealingConfig;
use crate::config::{parse_key_list, FILE_LAYER};

/// How often a file is read.
pub const POLL: Duration = Duration::from_secs(1);

/// A file of keys followed while the process runs: its variable, its task and its metrics.
#[derive(Clone, Copy, Debug)]
pub struct KeysFile {
    /// The variable that names the file, in logs.
    pub var: &'static str,
    /// The task's name.
    pub task: &'static str,
    /// Counts `n` changes applied, refused or the file becoming unreadable (`result`).
    pub reloads: fn(result: &'static str, n: u64),
    /// Sets the gauge that is 1 while the file as it is now is not in force.
    pub refused: fn(bool),
}

/// The signing keys' file.
pub const HMAC_KEYS: KeysFile = KeysFile {
    var: "HMAC_KEYS_FILE",
    task: "hmac keys file",
    reloads: |result, n| {
        metrics::counter!("hmac_key_reloads_total", "result" => result).increment(n);
    },
    refused: |now| metrics::gauge!("hmac_keys_file_refused").set(f64::from(u8::from(now))),
};

/// The file of the keys secrets are sealed with at rest.
pub const SECRETS_KEYS: KeysFile = KeysFile {
    var: "SECRETS_KEYS_FILE",
    task: "secrets keys file",
    reloads: |result, n| {
        metrics::counter!("secrets_key_reloads_total", "result" => result).increment(n);
    },
    refused: |now| metrics::gauge!("secrets_keys_file_refused").set(f64::from(u8::from(now))),
};

/// The task that re-reads `path` into `store`'s `file` layer. `fixed` are the ids of the fixed
/// keys, which the file may not reuse.
pub fn watch(store: Arc<KeyStore>, path: PathBuf, fixed: Vec<String>) -> Task {
    follow(HMAC_KEYS, path, move |text| {
        let fixed: Vec<&str> = fixed.iter().map(String::as_str).collect();
        let keys = parse_key_list(text, &fixed)?;
        let ids = keys.iter().map(|(k, _)| k.clone()).collect();
        store
            .set_layer(FILE_LAYER, keys)
            .map_err(|e| e.to_string())?;
        Ok(ids)
    })
}

/// The task that re-reads `SECRETS_KEYS_FILE` into `cell`, as `config` reads it at start (the
/// first key seals unless `SECRETS_SEAL=false`); none without the file. Each key in force is
/// `secrets_keys_in_force{key, seals="true|false"}` 1 (a series no longer in force 0): what tells
/// that every pod took a rotation step.
pub fn watch_sealing(cell: Arc<SealerCell>, config: &SealingConfig) -> Option<Task> {
    let path = config.secrets_keys_file.clone()?;
    let config = config.clone();
    let mut shown: Vec<(String, bool)> = Vec::new();
    Some(follow(SECRETS_KEYS, path, move |text| {
        let sealer = config.sealer_of(text)?;
        let ids = sealer.key_ids();
        let seals = sealer.current().map(str::to_owned);
        let now: Vec<(String, bool)> = ids
            .iter()
            .map(|id| (id.clone(), seals.as_ref() == Some(id)))
            .collect();
        cell.replace(sealer);
        let gone = shown.iter().filter(|k| !now.contains(k));
        for (in_force, (key, seals)) in gone.map(|k| (0.0, k)).chain(now.iter().map(|k| (1.0, k))) {
            let seals = if *seals { "true" } else { "false" };
            metrics::gauge!("secrets_keys_in_force", "key" => key.clone(), "seals" => seals)
                .set(in_force);
        }
        shown = now;
        Ok(ids)
    }))
}

/// The task that reads `path` every [`POLL`] and hands contents that changed to `install`
/// (trailing newlines cut), which takes them and answers the key ids taken, or why not. Its
/// first read installs the file as it is then, quietly (the keys are what they were at start,
/// unless it changed since).
fn follow<F>(file: KeysFile, path: PathBuf, mut install: F) -> Task
where
    F: FnMut(&str) -> Result<Vec<String>, String> + Send + 'static,
{
    let KeysFile {
        var,
        reloads,
        refused: refused_now,
        ..
    } = file;
    let mut seen: Option<[u8; 32]> = None;
    Task::new(file.task, move |stop| async move {
        for result in ["applied", "rejected", "unreadable"] {
            reloads(result, 0);
        }
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
                        reloads("unreadable", 1);
                        tracing::error!(path = %path.display(), %error,
                            "cannot read {var}; the keys in force stay");
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
            let taken = std::str::from_utf8(&text)
                .map_err(|_| "the file is not UTF-8".to_owned())
                .and_then(|text| install(text.trim_end_matches(['\n', '\r'])));
            refused = match taken {
                Ok(_) if first => false,
                Ok(ids) => {
                    reloads("applied", 1);
                    tracing::info!(path = %path.display(), key_ids = ?ids, "{var} reloaded");
                    false
                }
                Err(reason) => {
                    reloads("rejected", 1);
                    tracing::error!(path = %path.display(), %reason,
                        "{var} refused; the keys in force stay");
                    true
                }
            };
            refused_now(refused);
        }
    })
}
