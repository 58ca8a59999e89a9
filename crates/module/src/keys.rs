//! API keys in every process that checks signatures: the active keys in the repository are
//! loaded into the [`API_LAYER`] of the process's [`KeyStore`] when the first module asks for
//! the signing keys ([`crate::Context::signing_keys`]), then re-read every second by a task the
//! supervisor runs beside the modules' own. A revoked key stops verifying within a second or two
//! of its revocation in every process.
//!
//! While the repository cannot be read, the keys last read stay in force (fail-static), so an
//! outage of the database does not stop event ingestion; `api_keys_sync_age_seconds` says how
//! old they are.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use liveops_core::signing::{API_LAYER, MIN_SECRET_LEN};
use liveops_core::stores::ActiveKeys;
use liveops_core::{KeyStore, PortError};
use tokio::time::MissedTickBehavior;

use crate::{Ports, Task};

/// How often the active API keys are re-read.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Reads the active API keys and puts them in the `api` layer of `keys`; returns how many.
pub async fn refresh(store: &dyn ActiveKeys, keys: &KeyStore) -> Result<usize, PortError> {
    let mut active = store.active_api_keys().await?;
    // Keys are made 64 characters long; a shorter one in the table is not ours to trust.
    active.retain(|(kid, secret)| {
        let ok = secret.len() >= MIN_SECRET_LEN;
        if !ok {
            tracing::warn!(key_id = %kid, "ignoring an API key shorter than 32 bytes");
        }
        ok
    });
    let n = active.len();
    keys.set_layer(API_LAYER, active)
        .map_err(|e| PortError::Corrupt(format!("API keys: {e}")))?;
    metrics::gauge!("api_keys_active").set(n as f64);
    Ok(n)
}

/// The task that keeps the `api` layer of `keys` in sync with the repository, every
/// [`REFRESH`], opening the store on first success; sets `read` at each success.
/// `api_keys_sync_age_seconds` is set from the first success on (before it the process is not
/// ready: [`crate::Context::readiness`]).
pub fn sync(ports: Arc<Ports>, keys: Arc<KeyStore>, read: Arc<AtomicBool>) -> Task {
    Task::new("api key sync", move |stop| async move {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_ok = read.load(Ordering::SeqCst).then(Instant::now);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let result = match ports.get::<dyn ActiveKeys>().await {
                Ok(store) => refresh(store.as_ref(), &keys).await.map(drop),
                Err(e) => Err(PortError::Unavailable(e.to_string())),
            };
            match result {
                Ok(()) => {
                    if failing {
                        tracing::info!("API keys read again");
                    }
                    failing = false;
                    last_ok = Some(Instant::now());
                    read.store(true, Ordering::SeqCst);
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot read the API keys; the last ones read stay in force");
                }
                Err(_) => {}
            }
            if let Some(at) = last_ok {
                metrics::gauge!("api_keys_sync_age_seconds").set(at.elapsed().as_secs_f64());
            }
        }
    })
}
