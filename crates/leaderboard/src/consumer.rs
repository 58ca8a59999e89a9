//! The `events.accepted` consumer: adds each event's score to every window exactly once.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use liveops_core::ports::{topics, Board, Delivery, ScoreDelta};
use liveops_core::{now_ms, Envelope, PortError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::scores::{deltas, is_live, live_periods};
use crate::{LeaderboardState, CONSUMER_ID, GROUP};

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
fn decode(deliveries: &[Delivery]) -> Vec<Envelope> {
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
fn dedupe(events: Vec<Envelope>) -> Vec<Envelope> {
    let mut seen = HashSet::new();
    events
        .into_iter()
        .filter(|e| seen.insert(e.event_id))
        .collect()
}

/// Loads the live boards (current and previous period of each window) from the repository, all
/// at once: each board's read and build run side by side on the repository's connections.
pub(crate) async fn rebuild(state: &LeaderboardState, now_ms: i64) -> Result<(), PortError> {
    let started = std::time::Instant::now();
    let mut loads = tokio::task::JoinSet::new();
    for &window in &state.config.windows {
        let (current, previous) = live_periods(&state.config.calendar, window, now_ms);
        for period in [previous, current] {
            let board = Board {
                window,
                period: period.id,
            };
            let state = state.clone();
            loads.spawn(async move {
                let scores = state.repo.board_scores(&board).await?;
                let players = scores.len();
                state.ranks.load(&board, scores).await?;
                state.top_cache.invalidate();
                tracing::info!(window = %board.window, period = %board.period, players, "board rebuilt");
                Ok::<_, PortError>(())
            });
        }
    }
    while let Some(done) = loads.join_next().await {
        done.map_err(|e| PortError::Unavailable(format!("rebuilding a board failed: {e}")))??;
    }
    let took = started.elapsed();
    metrics::gauge!("leaderboard_rebuild_seconds").set(took.as_secs_f64());
    tracing::info!(seconds = took.as_secs_f64(), "live boards rebuilt");
    state
        .loaded
        .store(true, std::sync::atomic::Ordering::Release);
    Ok(())
}

/// Rebuilds the rank store from the repository, then consumes `events.accepted` until `shutdown`.
#[tracing::instrument(skip_all, fields(group = GROUP, consumer = %state.config.consumer_name))]
pub async fn run_consumer(
    state: LeaderboardState,
    shutdown: CancellationToken,
) -> Result<(), PortError> {
    let mut backoff = Backoff::new();
    loop {
        let ready = match state.bus.ensure_group(topics::ACCEPTED, GROUP).await {
            Ok(()) => rebuild(&state, now_ms()).await,
            Err(e) => Err(e),
        };
        match ready {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "cannot start consuming; retrying");
                if !backoff.wait(&shutdown).await {
                    return Ok(());
                }
            }
        }
    }
    backoff.reset();
    tracing::info!("leaderboard consumer started");

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
        let committed = loop {
            attempts += 1;
            match commit_batch(&state, &events).await {
                Ok(deltas) => break Some(deltas),
                Err(error) if attempts < MAX_ATTEMPTS => {
                    tracing::warn!(%error, attempts, "batch failed; retrying");
                    if !backoff.wait(&shutdown).await {
                        break None;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, attempts, events = events.len(),
                        "batch keeps failing; leaving it to redelivery");
                    break None;
                }
            }
        };
        backoff.reset();
        let Some(deltas) = committed else { continue };
        // The scores are durable now; the rank store must follow even if it is down for a while.
        if !update_ranks(&state, &deltas, &mut backoff, &shutdown).await {
            break;
        }
        backoff.reset();

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
    tracing::info!("leaderboard consumer stopped");
    Ok(())
}

/// Records the scores of the events not applied before, atomically with their ids; returns the
/// score changes to apply to the rank store.
pub(crate) async fn commit_batch(
    state: &LeaderboardState,
    events: &[Envelope],
) -> Result<Vec<ScoreDelta>, PortError> {
    if events.is_empty() {
        return Ok(Vec::new());
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
        return Ok(Vec::new());
    }
    let cfg = &state.config;
    let (deltas, updates) = deltas(&fresh, &cfg.windows, &cfg.calendar);
    let fresh_ids: Vec<Uuid> = fresh.iter().map(|e| e.event_id).collect();
    state
        .repo
        .commit_scores(CONSUMER_ID, &fresh_ids, &deltas)
        .await?;
    for (window, n) in updates {
        metrics::counter!("leaderboard_updates_total", "window" => window.as_str()).increment(n);
    }
    Ok(deltas)
}

/// Applies committed deltas to the live boards of the rank store. On failure the affected boards
/// are reloaded from the repository instead (an increment may have half-applied), until it works
/// or shutdown; returns `false` on shutdown.
pub(crate) async fn update_ranks(
    state: &LeaderboardState,
    deltas: &[ScoreDelta],
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> bool {
    // Boards older than the previous period are archived: only the repository keeps them.
    let now = now_ms();
    let live: Vec<ScoreDelta> = deltas
        .iter()
        .filter(|d| is_live(&state.config.calendar, &d.board, now))
        .cloned()
        .collect();
    if live.is_empty() {
        return true;
    }
    let result = state.ranks.incr(&live).await;
    state.top_cache.invalidate();
    let Err(error) = result else {
        return true;
    };
    tracing::warn!(%error, "rank store update failed; reloading the boards");
    let boards: BTreeSet<Board> = live.into_iter().map(|d| d.board).collect();
    loop {
        if !backoff.wait(shutdown).await {
            return false;
        }
        match reload(state, &boards).await {
            Ok(()) => return true,
            Err(error) => tracing::warn!(%error, "board reload failed; retrying"),
        }
    }
}

async fn reload(state: &LeaderboardState, boards: &BTreeSet<Board>) -> Result<(), PortError> {
    for board in boards {
        let scores = state.repo.board_scores(board).await?;
        state.ranks.load(board, scores).await?;
        state.top_cache.invalidate();
    }
    Ok(())
}
