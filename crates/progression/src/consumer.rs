//! The `events.accepted` consumer: applies each event to progression exactly once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use liveops_core::ports::{topics, Delivery};
use liveops_core::{Envelope, PortError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::apply::{plan, xp_keys};
use crate::{ProgressionState, CONSUMER_ID, GROUP};

/// How long one poll waits for a message.
const POLL_WAIT: Duration = Duration::from_millis(200);
/// First pause after a failure; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest pause after a failure.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Attempts at one batch before leaving it to the bus's redelivery (and dead letters).
const MAX_ATTEMPTS: u32 = 8;

/// Exponential pause between retries, cut short by shutdown.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// Sleeps; returns `false` if shutdown came first.
    pub(crate) async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let pause = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(pause) => true,
        }
    }
}

/// Decodes deliveries; undecodable ones are counted, logged and left to be acked.
pub(crate) fn decode(deliveries: &[Delivery]) -> Vec<Envelope> {
    deliveries
        .iter()
        .filter_map(|d| match Envelope::decode(&d.payload) {
            Ok(env) => Some(env),
            Err(error) => {
                metrics::counter!("dropped_events_total", "reason" => "corrupt").increment(1);
                tracing::error!(delivery = %d.id, %error, "undecodable event dropped");
                None
            }
        })
        .collect()
}

/// Keeps the first occurrence of each event id.
pub(crate) fn dedupe(events: Vec<Envelope>) -> Vec<Envelope> {
    let mut seen = HashSet::new();
    events
        .into_iter()
        .filter(|e| seen.insert(e.event_id))
        .collect()
}

/// Consumes `events.accepted` until `shutdown`.
#[tracing::instrument(skip_all, fields(group = GROUP, consumer = %state.config.consumer_name))]
pub async fn run_consumer(
    state: ProgressionState,
    shutdown: CancellationToken,
) -> Result<(), PortError> {
    let mut backoff = Backoff::new();
    loop {
        match state.bus.ensure_group(topics::ACCEPTED, GROUP).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "cannot create consumer group; retrying");
                if !backoff.wait(&shutdown).await {
                    return Ok(());
                }
            }
        }
    }
    backoff.reset();
    tracing::info!("progression consumer started");

    while !shutdown.is_cancelled() {
        let deliveries = match state
            .bus
            .poll(
                topics::ACCEPTED,
                GROUP,
                &state.config.consumer_name,
                state.config.batch_size.max(1),
                POLL_WAIT,
            )
            .await
        {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(%error, "poll failed; backing off");
                backoff.wait(&shutdown).await;
                continue;
            }
        };
        backoff.reset();
        if deliveries.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let taken = deliveries.len();
        let events = dedupe(decode(&deliveries));

        let mut attempts = 0;
        let applied = loop {
            attempts += 1;
            match apply_batch(&state, &events).await {
                Ok(()) => break true,
                Err(error) if attempts < MAX_ATTEMPTS => {
                    tracing::warn!(%error, attempts, "batch failed; retrying");
                    if !backoff.wait(&shutdown).await {
                        break false;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, attempts, events = events.len(),
                        "batch keeps failing; leaving it to redelivery");
                    break false;
                }
            }
        };
        backoff.reset();
        if !applied {
            continue;
        }

        let ids: Vec<String> = deliveries.into_iter().map(|d| d.id).collect();
        loop {
            match state.bus.ack(topics::ACCEPTED, GROUP, &ids).await {
                Ok(()) => break,
                Err(error) => {
                    // Unacked events come back and are skipped as already processed.
                    tracing::warn!(%error, "ack failed; retrying");
                    if !backoff.wait(&shutdown).await {
                        break;
                    }
                }
            }
        }
        backoff.reset();
        liveops_core::record_batch(GROUP, taken, started.elapsed());
    }
    tracing::info!("progression consumer stopped");
    Ok(())
}

/// Applies the events not applied before, atomically with their ids, then drops stale cache.
pub(crate) async fn apply_batch(
    state: &ProgressionState,
    events: &[Envelope],
) -> Result<(), PortError> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let done = state.repo.processed(CONSUMER_ID, &ids).await?;
    let fresh: Vec<Envelope> = events
        .iter()
        .filter(|e| !done.contains(&e.event_id))
        .cloned()
        .collect();
    if fresh.len() < events.len() {
        tracing::debug!(
            skipped = events.len() - fresh.len(),
            "events already applied"
        );
    }
    if fresh.is_empty() {
        return Ok(());
    }

    let cfg = &state.config;
    let keys = xp_keys(&fresh, &cfg.calendar);
    let xp = if keys.is_empty() {
        Vec::new()
    } else {
        state.repo.xp_of(&keys).await?
    };
    if xp.len() != keys.len() {
        return Err(PortError::Corrupt(format!(
            "xp_of returned {} values for {} players",
            xp.len(),
            keys.len()
        )));
    }
    let before: HashMap<(String, i64), u64> = keys.into_iter().zip(xp).collect();
    let plan = plan(&fresh, &cfg.calendar, &cfg.curve, &before);
    state
        .repo
        .commit_progress(CONSUMER_ID, &plan.commit)
        .await?;

    for (kind, n) in &plan.applied {
        metrics::counter!("progression_events_applied_total", "type" => kind.as_str())
            .increment(*n);
    }
    if plan.level_ups > 0 {
        metrics::counter!("level_ups_total").increment(plan.level_ups);
    }
    // Inventory and rewards are shown in every season's view: every view of a touched player.
    let players: HashSet<&str> = plan.touched.iter().map(|(p, _)| p.as_str()).collect();
    crate::cache::invalidate_all(state.hot.as_ref(), players).await;
    tracing::debug!(
        applied = fresh.len(),
        level_ups = plan.level_ups,
        "progression batch committed"
    );
    Ok(())
}
