//! The `events.accepted` consumer: adds each event's score to every window exactly once, then
//! raises the rank store to the totals the commit left (ADR 0020).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use liveops_core::ports::{Board, ScoreTotal};
use liveops_core::{now_ms, Envelope, PortError};
use liveops_module::consume::{applied_before, consume, unapplied, Apply, Backoff, Subscription};
use liveops_module::tick::{naming, Failures};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::scores::{deltas, is_live, live_boards, live_periods};
use crate::{LeaderboardState, CONSUMER_ID, GROUP, READS};

/// Raises the live boards (current and previous period of each window) to the repository's
/// scores, all at once: each board's read and raise run side by side on the repository's
/// connections.
pub(crate) async fn rebuild(state: &LeaderboardState, now_ms: i64) -> Result<(), PortError> {
    let started = std::time::Instant::now();
    let mut loads = tokio::task::JoinSet::new();
    let cfg = &state.config;
    for board in live_boards(&cfg.calendar, &cfg.windows, now_ms) {
        let state = state.clone();
        loads.spawn(async move {
            let players = raise_board(&state, &board).await?;
            tracing::info!(window = %board.window, period = %board.period, players, "board rebuilt");
            Ok::<_, PortError>(())
        });
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

/// The leaderboard's part of each batch: durable scores first, then the rank store.
struct Leaderboard<'a> {
    state: &'a LeaderboardState,
    /// The totals the batch's commits left since the last `after_commit`, for the rank store.
    totals: Vec<ScoreTotal>,
    /// Boards of batches whose commit failed: it may have landed all the same (its answer lost
    /// with the connection), and then the retry finds the events applied and has no deltas, so
    /// these boards are reloaded from the repository once a batch goes through.
    suspect: BTreeSet<Board>,
}

#[async_trait::async_trait]
impl Apply for Leaderboard<'_> {
    async fn apply(&mut self, events: &[Envelope]) -> Result<(), PortError> {
        match commit_batch(self.state, events, now_ms).await {
            Ok(totals) => {
                // Several applies (a failing batch's events one at a time) share one after_commit.
                self.totals.extend(totals);
                Ok(())
            }
            Err(error) => {
                let cfg = &self.state.config;
                let (deltas, _) = deltas(events, &cfg.windows, &cfg.calendar);
                // Landed or not, the retry will find nothing to commit: note ended boards now.
                self.state
                    .late
                    .note_boards(cfg, deltas.iter().map(|d| &d.board), now_ms());
                self.suspect.extend(deltas.into_iter().map(|d| d.board));
                Err(error)
            }
        }
    }

    async fn stores_answer(&mut self) -> bool {
        self.state.store.healthcheck().await.is_ok()
    }

    /// The scores are durable now; the rank store must follow even if it is down for a while.
    async fn after_commit(&mut self, backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
        let totals = std::mem::take(&mut self.totals);
        if !update_ranks(self.state, &totals, backoff, shutdown).await {
            return false;
        }
        let now = now_ms();
        let live: BTreeSet<Board> = std::mem::take(&mut self.suspect)
            .into_iter()
            .filter(|b| is_live(&self.state.config.calendar, b, now))
            .collect();
        if live.is_empty() {
            return true;
        }
        tracing::info!(
            boards = live.len(),
            "reloading boards after a failed commit"
        );
        reload_until(self.state, &live, "commit_failed", backoff, shutdown).await
    }
}

/// Rebuilds the rank store from the repository, then consumes `events.accepted` until `shutdown`.
#[tracing::instrument(skip_all, fields(group = GROUP, consumer = %state.config.consumer_name))]
pub async fn run_consumer(
    state: LeaderboardState,
    shutdown: CancellationToken,
) -> Result<(), PortError> {
    // Both series exist from the start, so a dashboard's increase() sees the first reload.
    for reason in ["commit_failed", "rank_store_failed", "reconcile"] {
        metrics::counter!("leaderboard_board_reloads_total", "reason" => reason).increment(0);
    }
    metrics::counter!("leaderboard_reraised_total").increment(0);
    metrics::counter!("leaderboard_reraise_skipped_total").increment(0);
    let st = &state;
    let ready = move || async move {
        st.bus.ensure_group(READS.topic, READS.group).await?;
        rebuild(st, now_ms()).await
    };
    let sub = Subscription {
        bus: state.bus.as_ref(),
        reads: READS,
        consumer: &state.config.consumer_name,
        batch: state.config.batch_size,
    };
    let mut handler = Leaderboard {
        state: &state,
        totals: Vec::new(),
        suspect: BTreeSet::new(),
    };
    consume(sub, ready, &mut handler, &shutdown).await;
    Ok(())
}

/// Records the scores of the events not applied before, atomically with their ids; notes the
/// ended boards whose final snapshot is due again (by `clock`, read once committed); returns
/// the totals they left, to raise the rank store to.
pub(crate) async fn commit_batch(
    state: &LeaderboardState,
    events: &[Envelope],
    clock: fn() -> i64,
) -> Result<Vec<ScoreTotal>, PortError> {
    let fresh = unapplied(&*state.processed, CONSUMER_ID, events).await?;
    let before = applied_before(events, &fresh);
    let mut totals = if before.is_empty() {
        Vec::new()
    } else {
        held_totals(state, &before, clock()).await?
    };
    if fresh.is_empty() {
        return Ok(totals);
    }
    let cfg = &state.config;
    let (deltas, updates) = deltas(&fresh, &cfg.windows, &cfg.calendar);
    let fresh_ids: Vec<Uuid> = fresh.iter().map(|e| e.event_id).collect();
    let committed = state
        .store
        .commit_scores(CONSUMER_ID, &fresh_ids, &deltas)
        .await?;
    for (window, n) in updates {
        metrics::counter!("leaderboard_updates_total", "window" => window.as_str()).increment(n);
    }
    // Read after the commit: one that took long may have landed after the final snapshot.
    state.late.note(cfg, &committed, clock());
    totals.extend(committed);
    Ok(totals)
}

/// The totals the repository holds on the live boards (at `now_ms`) for the players of events
/// applied `before`. Their commit's raise may never have reached
/// the rank store: the process that committed them stopped (a scale-in, the end of a rollout)
/// while the rank store was failing, and a redelivered batch finds them applied, with nothing
/// else to raise them. Raising again to a total the rank store holds moves nothing.
async fn held_totals(
    state: &LeaderboardState,
    before: &[&Envelope],
    now_ms: i64,
) -> Result<Vec<ScoreTotal>, PortError> {
    let cfg = &state.config;
    let mut players: BTreeMap<Board, Vec<String>> = BTreeMap::new();
    for d in deltas(before.iter().copied(), &cfg.windows, &cfg.calendar).0 {
        if is_live(&cfg.calendar, &d.board, now_ms) {
            players.entry(d.board).or_default().push(d.player_id);
        }
    }
    let mut totals = Vec::new();
    for (board, players) in players {
        for (player_id, total) in state.store.scores_of(&board, &players).await? {
            let board = board.clone();
            totals.push(ScoreTotal {
                board,
                player_id,
                total,
            });
        }
    }
    Ok(totals)
}

/// Raises the live boards of the rank store to committed totals. On failure the affected boards
/// are raised from the repository instead, until it works or shutdown; returns `false` on
/// shutdown.
pub(crate) async fn update_ranks(
    state: &LeaderboardState,
    totals: &[ScoreTotal],
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> bool {
    // Boards older than the previous period are archived: only the repository keeps them.
    let now = now_ms();
    let live: Vec<ScoreTotal> = totals
        .iter()
        .filter(|t| is_live(&state.config.calendar, &t.board, now))
        .cloned()
        .collect();
    if live.is_empty() {
        return true;
    }
    let result = state.ranks.raise(&live).await;
    state.top_cache.invalidate();
    let Err(error) = result else {
        note(state, &live);
        return true;
    };
    tracing::warn!(%error, "rank store update failed; reloading the boards");
    let boards: BTreeSet<Board> = live.iter().map(|t| t.board.clone()).collect();
    if !backoff.wait(shutdown).await {
        return false;
    }
    let reloaded = reload_until(state, &boards, "rank_store_failed", backoff, shutdown).await;
    if reloaded {
        // The reload raised them: a failover right after it must not lose them either.
        note(state, &live);
    }
    reloaded
}

/// Reloads `boards` from the repository until it works or shutdown, counted under `reason` in
/// `leaderboard_board_reloads_total`; `false` on shutdown.
async fn reload_until(
    state: &LeaderboardState,
    boards: &BTreeSet<Board>,
    reason: &'static str,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> bool {
    metrics::counter!("leaderboard_board_reloads_total", "reason" => reason)
        .increment(boards.len() as u64);
    loop {
        match reload(state, boards).await {
            Ok(()) => return true,
            Err(error) => tracing::warn!(%error, "board reload failed; retrying"),
        }
        if !backoff.wait(shutdown).await {
            return false;
        }
    }
}

async fn reload(state: &LeaderboardState, boards: &BTreeSet<Board>) -> Result<(), PortError> {
    for board in boards {
        raise_board(state, board).await?;
    }
    Ok(())
}

/// Raises `board` in the rank store to every score the repository holds on it (merging: a
/// replica's newer total raised meanwhile stays); returns how many players it has.
async fn raise_board(state: &LeaderboardState, board: &Board) -> Result<usize, PortError> {
    let totals: Vec<ScoreTotal> = state
        .store
        .board_scores(board)
        .await?
        .into_iter()
        .map(|(player_id, total)| ScoreTotal {
            board: board.clone(),
            player_id,
            total,
        })
        .collect();
    state.ranks.raise(&totals).await?;
    state.top_cache.invalidate();
    Ok(totals.len())
}

/// Every `LB_RECONCILE_SEC` until `shutdown`: raises again the totals this replica's commits
/// raised in that pass and the one before (a Redis failed over to a replica that had not
/// received them: `leaderboard_reraised_total`), then each live board the rank store holds
/// fewer players of than the repository (a Redis restarted empty), counted as `reconcile` in
/// `leaderboard_board_reloads_total`.
pub async fn run_reconcile(
    state: LeaderboardState,
    shutdown: CancellationToken,
) -> Result<(), PortError> {
    let every = state.config.reconcile_every;
    let mut failures = Failures::new("cannot reconcile the live boards", every);
    let mut counted = Counted::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        if !state.loaded.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        failures.note(reconcile(&state, now_ms(), &mut counted).await);
    }
}

/// The repository's player count of each previous-period board as a pass last read it, and
/// the passes left before it is read again. Only late events change such a board, and
/// [`raise_again`] covers those, so while the rank store holds at least that many players the
/// board is counted only every [`RECOUNT_PASSES`] passes, not every pass (a count reads the
/// whole board's index): a rank store that lost a few late players (a failover past what
/// `raise_again` still held) is raised again within that many passes.
type Counted = HashMap<Board, (u64, u32)>;

/// Passes between two counts of a previous period's board (10 minutes at `LB_RECONCILE_SEC`'s
/// default).
const RECOUNT_PASSES: u32 = 10;

/// One reconcile pass over the live boards; it fails with its first error, naming the board
/// (logged once a run of failing passes by [`run_reconcile`]).
pub(crate) async fn reconcile(
    state: &LeaderboardState,
    now_ms: i64,
    counted: &mut Counted,
) -> Result<(), PortError> {
    let cfg = &state.config;
    let mut failed = None;
    if let Err(error) = raise_again(state, now_ms).await {
        tracing::debug!(%error, "cannot raise the latest totals again");
        failed = Some(naming("raising the latest totals again", error));
    }
    counted.retain(|board, _| is_live(&cfg.calendar, board, now_ms));
    for &window in &cfg.windows {
        let (current, previous) = live_periods(&cfg.calendar, window, now_ms);
        for (period, ended) in [(previous, true), (current, false)] {
            let board = Board {
                window,
                period: period.id,
            };
            let known = match counted.get_mut(&board) {
                Some((durable, left)) if ended && *left > 0 => {
                    *left -= 1;
                    Some(*durable)
                }
                _ => None,
            };
            match reconcile_board(state, &board, known).await {
                Ok(durable) if ended && known != Some(durable) => {
                    counted.insert(board, (durable, RECOUNT_PASSES));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%window, period = %board.period, %error,
                        "cannot reconcile the board");
                    failed.get_or_insert_with(|| {
                        naming(&format!("{window} {}", board.period), error)
                    });
                }
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Raises again what [`crate::Recent`] holds for the live boards; on failure it is noted again
/// for the next pass.
async fn raise_again(state: &LeaderboardState, now_ms: i64) -> Result<(), PortError> {
    let calendar = &state.config.calendar;
    let totals: Vec<ScoreTotal> = state
        .recent
        .take()
        .into_iter()
        .filter(|t| is_live(calendar, &t.board, now_ms))
        .collect();
    if totals.is_empty() {
        return Ok(());
    }
    if let Err(error) = state.ranks.raise(&totals).await {
        note(state, &totals);
        return Err(error);
    }
    state.top_cache.invalidate();
    metrics::counter!("leaderboard_reraised_total").increment(totals.len() as u64);
    Ok(())
}

/// Notes totals the rank store acknowledged, for the reconcile to raise again; what does not
/// fit counts in `leaderboard_reraise_skipped_total`.
fn note(state: &LeaderboardState, totals: &[ScoreTotal]) {
    let skipped = state.recent.note(totals);
    if skipped > 0 {
        metrics::counter!("leaderboard_reraise_skipped_total").increment(skipped as u64);
    }
}

/// How long a batch's raise may follow its commit: a board short of the repository by no more
/// than commits this recent is looked at again after it, not read whole again.
const RAISE_GAP: std::time::Duration = std::time::Duration::from_secs(2);

/// Raises `board` if the rank store holds fewer of its players than the repository still
/// [`RAISE_GAP`] after counting them (a batch raises its totals just after its commit, so a
/// count between the two is no loss), or cannot read it (a board a panic left inconsistent
/// counts as empty: raising starts it over). With `known` (an earlier pass's count of an ended
/// period's board) the repository is counted only when the rank store holds fewer. Returns the
/// repository's count it went by.
async fn reconcile_board(
    state: &LeaderboardState,
    board: &Board,
    known: Option<u64>,
) -> Result<u64, PortError> {
    let held = || async {
        match state.ranks.size(board).await {
            Ok(held) => Ok(held),
            Err(PortError::Corrupt(_)) => Ok(0),
            Err(error) => Err(error),
        }
    };
    if let Some(known) = known {
        if held().await? >= known {
            return Ok(known);
        }
    }
    let durable = state.store.board_size(board).await?;
    if held().await? >= durable {
        return Ok(durable);
    }
    tokio::time::sleep(RAISE_GAP).await;
    let held = held().await?;
    if held >= durable {
        return Ok(durable);
    }
    tracing::warn!(window = %board.window, period = %board.period, held, durable,
        "rank store short of the repository; raising the board");
    metrics::counter!("leaderboard_board_reloads_total", "reason" => "reconcile").increment(1);
    raise_board(state, board).await?;
    Ok(durable)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use liveops_testkit::received::{envelope, kill};

    use super::*;
    use crate::snapshots::tests::state;

    /// A batch committed by a process that stopped before its raise reached the rank store is
    /// delivered again: finding its events applied, the commit answers the totals the
    /// repository holds for their players, to raise, and commits nothing twice.
    #[tokio::test]
    async fn a_batch_delivered_again_answers_the_totals_its_first_commit_left() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir).await;
        let now = now_ms();
        let earlier = [envelope("alice", kill(40), now)];
        commit_batch(&state, &earlier, now_ms).await.unwrap();
        let batch = [
            envelope("alice", kill(25), now),
            envelope("bob", kill(10), now),
        ];
        let mut first = commit_batch(&state, &batch, now_ms).await.unwrap();
        assert_eq!(
            first.len(),
            4,
            "two players on the day's and the week's board"
        );
        // Never raised: lost with the process. Delivered again, and again with a new event.
        let mut again = commit_batch(&state, &batch, now_ms).await.unwrap();
        let key = |t: &ScoreTotal| (t.board.clone(), t.player_id.clone());
        first.sort_by_key(key);
        again.sort_by_key(key);
        assert_eq!(again, first);
        assert!(again
            .iter()
            .all(|t| t.total == if t.player_id == "alice" { 65 } else { 10 }));
        let mut more = batch.to_vec();
        more.push(envelope("carol", kill(5), now));
        let totals = commit_batch(&state, &more, now_ms).await.unwrap();
        assert_eq!(
            totals.len(),
            6,
            "alice's and bob's held totals, carol's new ones"
        );
        let carol: Vec<i64> = totals
            .iter()
            .filter(|t| t.player_id == "carol")
            .map(|t| t.total)
            .collect();
        assert_eq!(carol, [5, 5]);
    }
}
