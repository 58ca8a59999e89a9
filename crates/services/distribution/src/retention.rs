//! Retention of distribution's rows, hourly: delivered and dead webhook deliveries (each holds
//! its whole body, a megabyte for a draw of 10 000 winners, once per webhook) with their
//! attempts `WEBHOOK_RETENTION_DAYS` after their last attempt; campaign events that long after
//! they happened once none of their deliveries is left; inbox messages, with their claims,
//! `INBOX_RETENTION_DAYS` after they expired. Pending deliveries, events not yet queued and
//! messages not expired stay however old. The clock is a parameter, so tests can move time.

use std::time::Duration;

use liveops_core::stores::PurgeRound;
use liveops_core::time::cutoff;
use liveops_core::{now_ms, PortError};
use liveops_module::tick::every_tick_after;
use tokio_util::sync::CancellationToken;

use crate::DistributionState;

/// How long after start the first purge runs, and the time between purges.
const FIRST: Duration = Duration::from_secs(60);
const EVERY: Duration = Duration::from_secs(3600);

/// What [`purge`] counts, by its `kind` label in `distribution_purged_total`.
const KINDS: [&str; 3] = ["deliveries", "events", "messages"];

/// Purges what is past its retention at `now_ms`, deliveries before the events they keep,
/// counted in `distribution_purged_total{kind}`; how many deliveries, events and messages went.
/// A table a process walked less than an hour before `now_ms` is not walked again
/// ([`PurgeRound`]).
pub async fn purge(state: &DistributionState, now_ms: i64) -> Result<[u64; 3], PortError> {
    let config = &state.config;
    let webhooks = cutoff(now_ms, config.webhook_retention);
    let store = &state.retention;
    let round = PurgeRound {
        at_ms: now_ms,
        every: EVERY,
    };
    let purged = [
        store.purge_deliveries(webhooks, round).await?,
        store.purge_events(webhooks, round).await?,
        store
            .purge_messages(cutoff(now_ms, config.inbox_retention), round)
            .await?,
    ];
    for (kind, rows) in KINDS.into_iter().zip(purged) {
        metrics::counter!("distribution_purged_total", "kind" => kind).increment(rows);
    }
    if purged.iter().any(|n| *n > 0) {
        let [deliveries, events, messages] = purged;
        tracing::info!(
            deliveries,
            events,
            messages,
            "distribution rows past retention purged"
        );
    }
    Ok(purged)
}

/// Purges a minute after start and hourly after, until `shutdown`; a failed purge is counted
/// and logged as every background round is, and tried again at the next (what it deleted before
/// failing stays deleted).
pub async fn run_retention(
    state: DistributionState,
    shutdown: CancellationToken,
) -> Result<(), PortError> {
    for kind in KINDS {
        metrics::counter!("distribution_purged_total", "kind" => kind).increment(0);
    }
    let failing = "purging distribution rows past their retention";
    every_tick_after(FIRST, EVERY, shutdown, failing, || purge(&state, now_ms())).await
}
