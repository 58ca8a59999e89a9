//! The `events.accepted` consumer: applies each event to progression exactly once.

use std::collections::{HashMap, HashSet};

use liveops_core::{Envelope, PortError};
use liveops_module::consume::{applied_before, consume, unapplied, Apply, Subscription};
use tokio_util::sync::CancellationToken;

use crate::apply::{plan, xp_keys, Plan};
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
    // The series exists from the start, so a dashboard's increase() sees the first.
    metrics::counter!("progression_replans_total").increment(0);
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

/// Times a batch is planned in a row while another consumer moves its players' XP first,
/// before the batch is left to the consumer's back-off.
const PLANNINGS: u32 = 4;

/// Applies the events not applied before, atomically with their ids, then drops stale cache.
///
/// Level-ups are computed from the XP read before the commit; the commit takes effect only if
/// that XP is still the players' (another consumer may apply the same players' events, e.g. a
/// replayed dead letter), else the batch is read and planned again.
pub(crate) async fn apply_batch(
    state: &ProgressionState,
    events: &[Envelope],
) -> Result<(), PortError> {
    for tries in 1..=PLANNINGS {
        let fresh = unapplied(&*state.processed, CONSUMER_ID, events).await?;
        if tries == 1 {
            // Applied before, maybe by a commit whose cache drop never ran (a crash after it,
            // or a commit that timed out yet went through): drop those players' views now.
            let players: HashSet<&str> = applied_before(events, &fresh)
                .into_iter()
                .map(|e| e.event.player_id.as_str())
                .collect();
            crate::cache::invalidate_all(state.cache.as_ref(), players).await;
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let plan = plan_fresh(state, &fresh).await?;
        if state
            .store
            .commit_progress(CONSUMER_ID, &plan.commit)
            .await?
        {
            return committed(state, fresh.len(), plan).await;
        }
        if tries < PLANNINGS {
            metrics::counter!("progression_replans_total").increment(1);
            tracing::debug!("players' XP changed since the batch was planned; planning again");
        }
    }
    Err(PortError::Unavailable(format!(
        "players' XP changed under the batch {PLANNINGS} times in a row"
    )))
}

/// Reads the XP of the players in `fresh` and plans the batch from it.
async fn plan_fresh(state: &ProgressionState, fresh: &[Envelope]) -> Result<Plan, PortError> {
    let cfg = &state.config;
    let keys = xp_keys(fresh, &cfg.calendar);
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
    let mut plan = plan(fresh, &cfg.calendar, &cfg.curve, &before);
    plan.commit.xp_before = before.into_iter().collect();
    Ok(plan)
}

/// Counts a committed batch and drops the cached views it changed.
async fn committed(state: &ProgressionState, applied: usize, plan: Plan) -> Result<(), PortError> {
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
        applied,
        level_ups = plan.level_ups,
        "progression batch committed"
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::sync::Arc;

    use liveops_core::ports::BusOptions;
    use liveops_core::{now_ms, Calendar, KeyStore, Keyring};
    use liveops_http::SignatureCheck;
    use liveops_memory::{MemoryBus, MemoryHotState};
    use liveops_sql::SqliteRepository;
    use liveops_testkit::received::{self, envelope};

    use super::*;
    use crate::ProgressionConfig;

    /// A batch committed before its cached views were dropped (the process died in between)
    /// and delivered again: the views are dropped then, though nothing is applied twice.
    #[tokio::test]
    async fn a_batch_delivered_again_after_its_commit_drops_the_views_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_on(&dir).await;
        let cache = state.cache.as_ref();
        let season = state.config.calendar.season_at_ms(now_ms());
        let events = vec![envelope("player_1", received::xp(30), now_ms())];
        let key = crate::cache::view_key(cache, "player_1", season)
            .await
            .unwrap();
        cache
            .cache_put(
                &key,
                bytes::Bytes::from_static(b"old"),
                crate::cache::CACHE_TTL,
            )
            .await
            .unwrap();
        // The first delivery's commit, and no more.
        let plan = plan_fresh(&state, &events).await.unwrap();
        assert!(state
            .store
            .commit_progress(CONSUMER_ID, &plan.commit)
            .await
            .unwrap());
        apply_batch(&state, &events).await.unwrap();
        let now_key = crate::cache::view_key(cache, "player_1", season)
            .await
            .unwrap();
        assert_eq!(cache.cache_get(&now_key).await.unwrap(), None);
        assert_eq!(
            state.store.progress("player_1", season).await.unwrap().xp,
            30
        );
    }

    /// A progression state over a migrated SQLite repository in `dir` and in-process hot state.
    async fn state_on(dir: &tempfile::TempDir) -> ProgressionState {
        let repo = SqliteRepository::open_migrated(&dir.path().join("liveops.db"))
            .await
            .unwrap();
        let repo = Arc::new(repo);
        ProgressionState {
            config: Arc::new(ProgressionConfig {
                curve: liveops_core::LevelCurve::parse("100").unwrap(),
                calendar: Calendar::default(),
                batch_size: 256,
                consumer_name: "test-1".into(),
            }),
            signatures: SignatureCheck {
                keys: Arc::new(KeyStore::new(Keyring::single("k".repeat(32)).unwrap())),
                tolerance_s: 300,
                accept_v1: true,
            },
            bus: Arc::new(MemoryBus::new(BusOptions::default())),
            cache: Arc::new(MemoryHotState::new()),
            store: repo.clone(),
            processed: repo,
        }
    }

    /// Two consumers apply batches of the same players at once (a replayed dead letter beside
    /// its partition), each batch too small to cross a level alone: every level the players'
    /// XP reaches still leaves its reward, once.
    #[tokio::test]
    async fn concurrent_batches_of_one_player_leave_every_level_reward() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_on(&dir).await;
        let repo = state.store.clone();
        let players: Vec<String> = (0..8).map(|i| format!("player_{i}")).collect();
        let batch = || -> Vec<Envelope> {
            let at = now_ms();
            players
                .iter()
                .map(|p| envelope(p, received::xp(30), at))
                .collect()
        };
        // 2 × 30 XP a round, a level every 100: in some rounds 30 crosses nothing but 60 does.
        for _ in 0..40 {
            let (a, b) = (batch(), batch());
            let (ra, rb) = tokio::join!(apply_batch(&state, &a), apply_batch(&state, &b));
            ra.unwrap();
            rb.unwrap();
        }
        let season = state.config.calendar.season_at_ms(now_ms());
        for p in &players {
            let progress = repo.progress(p, season).await.unwrap();
            assert_eq!(progress.xp, 2_400, "{p}");
            let rewards: Vec<&str> = progress
                .pending
                .iter()
                .map(|r| r.reward_id.as_str())
                .collect();
            let want: Vec<String> = (2..=25)
                .map(|level| crate::apply::level_reward_id(season, level))
                .collect();
            assert_eq!(rewards, want, "{p}");
        }
    }
}
