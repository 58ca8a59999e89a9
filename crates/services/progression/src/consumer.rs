//! The `events.accepted` consumer: applies each event to progression exactly once.

use std::collections::{HashMap, HashSet};

use liveops_core::{Envelope, PortError};
use liveops_module::consume::{consume, unapplied, Apply, Subscription};
use tokio_util::sync::CancellationToken;

use crate::apply::{plan, xp_keys};
use crate::{ProgressionState, CONSUMER_ID, GROUP, READS};

/// The progression's part of each batch.
struct Progression<'a>(&'a ProgressionState);

#[async_trait::async_trait]
impl Apply for Progression<'_> {
    async fn apply(&mut self, events: &[Envelope]) -> Result<(), PortError> {
        apply_batch(self.0, events).await
    }

    async fn stores_answer(&mut self) -> bool {
        self.0.store.healthcheck().await.is_ok()
    }
}

/// Consumes `events.accepted` until `shutdown`.
#[tracing::instrument(skip_all, fields(group = GROUP, consumer = %state.config.consumer_name))]
pub async fn run_consumer(
    state: ProgressionState,
    shutdown: CancellationToken,
) -> Result<(), PortError> {
    let ready = || state.bus.ensure_group(READS.topic, READS.group);
    let sub = Subscription {
        bus: state.bus.as_ref(),
        reads: READS,
        consumer: &state.config.consumer_name,
        batch: state.config.batch_size,
    };
    consume(sub, ready, &mut Progression(&state), &shutdown).await;
    Ok(())
}

/// Applies the events not applied before, atomically with their ids, then drops stale cache.
pub(crate) async fn apply_batch(
    state: &ProgressionState,
    events: &[Envelope],
) -> Result<(), PortError> {
    let fresh = unapplied(&*state.processed, CONSUMER_ID, events).await?;
    if fresh.is_empty() {
        return Ok(());
    }

    let cfg = &state.config;
    let keys = xp_keys(&fresh, &cfg.calendar);
    let xp = if keys.is_empty() {
        Vec::new()
    } else {
        state.store.xp_of(&keys).await?
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
        .store
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
    crate::cache::invalidate_all(state.cache.as_ref(), players).await;
    tracing::debug!(
        applied = fresh.len(),
        level_ups = plan.level_ups,
        "progression batch committed"
    );
    Ok(())
}
