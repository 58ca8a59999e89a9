//! The consumer: judging, forwarding, quarantine, strikes, blocks, redelivery.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use liveops_core::ports::{topics, Message, PortResult, Strike};
use liveops_core::stores::FairnessStore;
use liveops_core::{now_ms, Bus, BusExt, EventType};
use liveops_fairness::GROUP;
use uuid::Uuid;

use crate::helpers::*;

async fn boss_kill_samples(app: &TestApp) -> u64 {
    let stats = app.repo.fairness_stats().await.unwrap();
    stats
        .iter()
        .find(|(t, _)| *t == EventType::BossKill)
        .map_or(0, |(_, w)| w.count)
}

/// A consumer stopped gracefully leaves its group, so on a bus that shares partitions (Redis)
/// the other replicas take its share at their next poll, not once its leases lapse.
#[tokio::test]
async fn a_stopped_consumer_leaves_its_group() {
    let app = spawn_app().await;
    app.start_as("fairness-a").stop().await;
    let left = app.bus.left.lock().unwrap().clone();
    assert_eq!(left, [format!("{}/{GROUP}/fairness-a", topics::INGESTED)]);
}

#[tokio::test]
async fn an_outlier_after_warm_up_is_quarantined_not_forwarded() {
    let app = spawn_app().await;
    let normal = warm_up();
    app.ingest(&normal).await;
    app.process().await;
    assert_eq!(boss_kill_samples(&app).await, 60);

    // A fresh consumer starts from the stored statistics, so it can judge right away.
    let cheat = boss_kill("player_cheat", 100_000);
    let after = boss_kill("player_3", 104);
    app.ingest(&[cheat.clone(), after.clone()]).await;
    app.process().await;

    let accepted: Vec<Uuid> = app.drained_ids(topics::ACCEPTED).await;
    let mut expected: Vec<Uuid> = normal.iter().map(|e| e.event_id).collect();
    expected.push(after.event_id);
    assert_eq!(
        accepted, expected,
        "fair events are forwarded in order, the outlier is not"
    );
    let flagged = app.drain(topics::FLAGGED).await;
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].1, cheat);
    assert_eq!(
        flagged[0].0.payload,
        Bytes::from(cheat.encode()),
        "original bytes"
    );
    assert_eq!(flagged[0].0.key, "player_cheat");
    // The outlier did not move the statistics; the fair event after it did.
    assert_eq!(boss_kill_samples(&app).await, 61);

    let flags = app.repo.flags(None, 10).await.unwrap();
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].event_id, cheat.event_id);
    assert!(flags[0].z_score > 3.5);
    assert_eq!(app.strikes("player_cheat").await, 1);
    assert_eq!(app.blocked_until("player_cheat").await, None);
}

/// Two replicas judging at once each add their batches' samples to the stored statistics:
/// neither replaces what the other stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_both_add_to_the_statistics() {
    let app = spawn_app().await;
    let (a, b) = (app.start_as("replica-a"), app.start_as("replica-b"));
    for round in 0..10u32 {
        let events: Vec<_> = (0..40u32)
            .map(|i| boss_kill(&format!("player_{i}"), 100 + (round + i) % 10))
            .collect();
        app.ingest(&events).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.settled().await;
    a.stop().await;
    b.stop().await;
    assert_eq!(boss_kill_samples(&app).await, 400);
}

#[tokio::test]
async fn nothing_is_flagged_during_warm_up() {
    let app = spawn_app().await;
    let mut events: Vec<_> = warm_up().into_iter().take(10).collect();
    events.push(boss_kill("player_cheat", 100_000));
    app.ingest(&events).await;
    app.process().await;
    assert_eq!(app.drain(topics::ACCEPTED).await.len(), 11);
    assert!(app.drain(topics::FLAGGED).await.is_empty());
    assert_eq!(boss_kill_samples(&app).await, 11);
}

#[tokio::test]
async fn three_outliers_block_the_player() {
    let app = spawn_app().await;
    let mut events = warm_up();
    events.extend((0..3).map(|i| boss_kill("player_cheat", 50_000 + i)));
    events.push(boss_kill("player_once", 90_000));
    app.ingest(&events).await;
    let before = now_ms();
    app.process().await;

    assert_eq!(app.drain(topics::FLAGGED).await.len(), 4);
    assert_eq!(app.drain(topics::ACCEPTED).await.len(), 60);
    let until = app.blocked_until("player_cheat").await.expect("blocked");
    assert!(
        until >= before + 60_000 && until <= now_ms() + 60_000,
        "{until}"
    );
    assert_eq!(app.strikes("player_cheat").await, 3);
    // One strike is not a block.
    assert_eq!(app.blocked_until("player_once").await, None);
    assert_eq!(app.strikes("player_once").await, 1);
    assert_eq!(boss_kill_samples(&app).await, 60);
}

#[tokio::test]
async fn a_redelivered_batch_neither_strikes_again_nor_restarts_the_block() {
    let app = spawn_app().await;
    let cheats = app.three_cheats(50_000).await;
    let until = app.blocked_until("player_cheat").await.expect("blocked");
    assert_eq!(app.strikes("player_cheat").await, 3);

    // The same events again a little later (a redelivery, or a resend under their messageIds).
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.ingest(&cheats).await;
    app.process().await;
    assert_eq!(app.strikes("player_cheat").await, 3, "no strike twice");
    assert_eq!(
        app.blocked_until("player_cheat").await,
        Some(until),
        "the block still ends when it did"
    );
}

/// An operator's unblock is not undone by a redelivered batch: the strikes it forgot, struck
/// again at their times, do not count; a cheat after the unblock strikes anew.
#[tokio::test]
async fn a_redelivered_batch_does_not_undo_an_unblock() {
    use liveops_core::ports::Blocklist;
    let app = spawn_app().await;
    let cheats = app.three_cheats(50_000).await;
    assert!(app.blocked_until("player_cheat").await.is_some());
    let keep = app.state.config.strike_keep();
    app.hot.unblock("player_cheat", keep).await.unwrap();

    app.ingest(&cheats).await;
    app.process().await;
    assert_eq!(
        app.blocked_until("player_cheat").await,
        None,
        "the unblock stands"
    );
    assert_eq!(app.strikes("player_cheat").await, 0);
    app.ingest(&[boss_kill("player_cheat", 50_010)]).await;
    app.process().await;
    assert_eq!(app.strikes("player_cheat").await, 1);
}

/// The memory hot state, with an operator's unblock landing each time the consumer has read
/// strike windows that call for a block (`strikes` in one), before it writes the block.
struct UnblockWhileDeciding {
    hot: std::sync::Arc<liveops_memory::MemoryHotState>,
    keep: Duration,
    strikes: u32,
}

#[async_trait::async_trait]
impl liveops_core::ports::Health for UnblockWhileDeciding {
    async fn healthcheck(&self) -> liveops_core::ports::PortResult<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl liveops_core::ports::Blocklist for UnblockWhileDeciding {
    async fn block(&self, player: &str, from_ms: i64, until_ms: i64) -> PortResult<bool> {
        self.hot.block(player, from_ms, until_ms).await
    }
    async fn blocked_until(&self, player: &str) -> PortResult<Option<i64>> {
        self.hot.blocked_until(player).await
    }
    async fn add_strike(&self, player: &str, strike: Strike<'_>) -> PortResult<u32> {
        self.hot.add_strike(player, strike).await
    }
    async fn strike_windows(
        &self,
        player: &str,
        from_ms: i64,
        window: Duration,
    ) -> PortResult<Vec<(i64, u32)>> {
        let windows = self.hot.strike_windows(player, from_ms, window).await?;
        if windows.iter().any(|(_, n)| *n >= self.strikes) {
            self.hot.unblock(player, self.keep).await?;
        }
        Ok(windows)
    }
    async fn strikes(&self, player: &str, now_ms: i64, window: Duration) -> PortResult<u32> {
        self.hot.strikes(player, now_ms, window).await
    }
    async fn unblock(&self, player: &str, keep: Duration) -> PortResult<()> {
        self.hot.unblock(player, keep).await
    }
}

#[tokio::test]
async fn an_unblock_while_a_block_is_decided_stands() {
    let mut app = spawn_app().await;
    let keep = app.state.config.strike_keep();
    app.state.blocks = std::sync::Arc::new(UnblockWhileDeciding {
        hot: app.hot.clone(),
        keep,
        strikes: app.state.config.strikes_to_block,
    });
    app.three_cheats(50_000).await;
    assert_eq!(
        app.strikes("player_cheat").await,
        0,
        "the unblock forgot them"
    );
    assert_eq!(
        app.blocked_until("player_cheat").await,
        None,
        "a block decided on strikes the unblock forgot was written after it"
    );
    // A cheat after the unblock blocks as ever (here without an unblock in between).
    app.state.blocks = app.hot.clone();
    let later: Vec<_> = (0..3)
        .map(|i| boss_kill("player_cheat", 60_000 + i))
        .collect();
    app.ingest(&later).await;
    app.process().await;
    assert!(app.blocked_until("player_cheat").await.is_some());
}

#[tokio::test]
async fn a_redelivered_batch_is_not_judged_twice() {
    let app = spawn_app().await;
    app.ingest(&warm_up()).await;
    app.process().await;
    app.drain(topics::ACCEPTED).await;

    // The batch is judged, stored, forwarded and struck, but its ack fails and the consumer
    // stops: the bus will hand it out again.
    app.bus.fail_acks.store(true, Ordering::SeqCst);
    let (fair, cheat) = (
        boss_kill("player_1", 105),
        boss_kill("player_cheat", 100_000),
    );
    app.ingest(&[fair.clone(), cheat.clone()]).await;
    let running = app.start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.strikes("player_cheat").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "batch was not handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    running.stop().await;
    assert_eq!(
        app.bus
            .lag(topics::INGESTED, liveops_fairness::GROUP)
            .await
            .unwrap(),
        2
    );
    assert_eq!(boss_kill_samples(&app).await, 61);
    assert_eq!(app.drain(topics::ACCEPTED).await.len(), 1);
    assert_eq!(app.drain(topics::FLAGGED).await.len(), 1);

    // Redelivered to a new consumer: the stored verdicts are reused as they are.
    app.bus.fail_acks.store(false, Ordering::SeqCst);
    app.process().await;
    assert_eq!(boss_kill_samples(&app).await, 61, "statistics unchanged");
    assert_eq!(app.repo.flags(None, 10).await.unwrap().len(), 1);
    assert_eq!(app.strikes("player_cheat").await, 1, "no second strike");
    let again: Vec<Uuid> = app.drained_ids(topics::ACCEPTED).await;
    assert_eq!(again, [fair.event_id], "forwarded again under the same id");
    let again: Vec<Uuid> = app.drained_ids(topics::FLAGGED).await;
    assert_eq!(again, [cheat.event_id], "quarantined again, not forwarded");
    let verdicts = app
        .repo
        .verdicts(&[fair.event_id, cheat.event_id])
        .await
        .unwrap();
    assert_eq!(verdicts.len(), 2);
}

#[tokio::test]
async fn a_verdict_stored_before_a_crash_still_strikes_once() {
    let app = spawn_app().await;
    // The process stopped after storing a flagged verdict and before the strike: the batch
    // comes back with the verdict stored and no strike given.
    let cheat = boss_kill("player_cheat", 100_000);
    let commit = liveops_core::stores::FairnessCommit {
        verdicts: vec![(cheat.event_id, true)],
        flags: vec![liveops_core::stores::Flag {
            event_id: cheat.event_id,
            player_id: "player_cheat".into(),
            event_type: EventType::BossKill,
            value: 100_000.0,
            z_score: 9.0,
            at_ms: now_ms(),
        }],
        stats: vec![],
        at_ms: now_ms(),
    };
    assert!(app.repo.commit_fairness(&commit).await.unwrap());
    app.ingest(&[cheat.clone(), cheat.clone()]).await;
    app.process().await;
    assert_eq!(app.strikes("player_cheat").await, 1, "struck once");
    assert_eq!(app.drained_ids(topics::FLAGGED).await.len(), 2);
    assert!(app.drain(topics::ACCEPTED).await.is_empty());

    // Delivered once more: still one strike.
    app.ingest(std::slice::from_ref(&cheat)).await;
    app.process().await;
    assert_eq!(app.strikes("player_cheat").await, 1, "no second strike");
}

/// Records `player_cheat`'s strikes `(id, at_ms)` straight in the hot state, each counted in and
/// kept for [`WINDOW`] (as the consumer records them).
async fn strike_cheat(app: &TestApp, strikes: &[(&str, i64)]) {
    use liveops_core::ports::Blocklist;
    for &(id, at_ms) in strikes {
        let strike = Strike {
            id,
            at_ms,
            window: WINDOW,
            keep: WINDOW,
        };
        app.hot.add_strike("player_cheat", strike).await.unwrap();
    }
}

/// A strike recorded late (its batch redelivered after a crash) that fills the window of a
/// later strike blocks the player from that later strike.
#[tokio::test]
async fn a_late_strike_that_fills_a_later_window_blocks() {
    let app = spawn_app().await;
    let now = now_ms();
    let (early, late, last) = (now - 3000, now - 2000, now - 1000);
    let cheat = boss_kill("player_cheat", 100_000);
    // Strikes before and after the late one, two in each window: not blocked.
    strike_cheat(&app, &[("early", early), ("last", last)]).await;
    app.flagged_before(&cheat, late).await;
    assert_eq!(app.blocked_until("player_cheat").await, None);

    app.ingest(std::slice::from_ref(&cheat)).await;
    app.process().await;
    assert_eq!(app.strikes("player_cheat").await, 3);
    let block = i64::try_from(app.state.config.block.as_millis()).unwrap();
    assert_eq!(
        app.blocked_until("player_cheat").await,
        Some(last + block),
        "blocked from the strike whose window the late one filled"
    );
}

/// A late strike whose own window is full (a block long over) still fills a later window, and
/// the block runs from that later strike.
#[tokio::test]
async fn a_late_strike_with_a_full_window_still_fills_a_later_one() {
    let app = spawn_app().await;
    let s = |seconds: i64| now_ms() - seconds * 1000;
    // Strikes at -616 s, -606 s, -316 s and -1 s (600 s windows, 3 to block): the window ending
    // at -1 s holds two of them. The late
    // one, at -596 s, fills its own window (with -616 s and -606 s) and the one ending at -1 s.
    let last = s(1);
    let strikes = [("c", last), ("d", s(316)), ("a", s(616)), ("b", s(606))];
    strike_cheat(&app, &strikes).await;
    let cheat = boss_kill("player_cheat", 100_000);
    app.flagged_before(&cheat, s(596)).await;
    app.ingest(std::slice::from_ref(&cheat)).await;
    app.process().await;
    let block = i64::try_from(app.state.config.block.as_millis()).unwrap();
    assert_eq!(app.blocked_until("player_cheat").await, Some(last + block));
}

/// Strikes redelivered together long after they were flagged (verdicts stored, then a crash
/// before the strikes, then an outage holding the batch past the strike window) still block
/// while the block they make would run: a player's strikes are kept a window and a block's
/// length after the latest, not only a window.
#[tokio::test]
async fn strikes_redelivered_past_their_window_still_block_while_the_block_would_run() {
    let mut app = spawn_app().await;
    let hour = Duration::from_secs(3600);
    app.state.config = std::sync::Arc::new(liveops_fairness::FairnessConfig {
        block: hour,
        ..(*app.state.config).clone()
    });
    let s = |seconds: i64| now_ms() - seconds * 1000;
    // Flagged 700, 690 and 680 s ago (600 s windows, 3 to block).
    let times = [s(700), s(690), s(680)];
    let cheats: Vec<_> = times
        .iter()
        .map(|_| boss_kill("player_cheat", 100_000))
        .collect();
    for (cheat, at) in cheats.iter().zip(times) {
        app.flagged_before(cheat, at).await;
    }
    app.ingest(&cheats).await;
    app.process().await;
    let block = i64::try_from(hour.as_millis()).unwrap();
    assert_eq!(
        app.blocked_until("player_cheat").await,
        Some(times[2] + block),
        "blocked an hour from the third strike"
    );
}

#[tokio::test]
async fn a_failed_forward_is_retried_without_rejudging() {
    let app = spawn_app().await;
    app.bus.fail_forwards.store(2, Ordering::SeqCst);
    let events: Vec<_> = warm_up().into_iter().take(5).collect();
    app.ingest(&events).await;
    app.process().await;
    assert_eq!(
        app.bus.fail_forwards.load(Ordering::SeqCst),
        0,
        "failures were injected"
    );
    let accepted: Vec<Uuid> = app.drained_ids(topics::ACCEPTED).await;
    assert_eq!(
        accepted,
        events.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    assert_eq!(boss_kill_samples(&app).await, 5);
}

/// A message this release cannot read is not acked: handed out again until the bus dead-letters
/// it (to be replayed once every replica reads it); the rest is judged and forwarded.
#[tokio::test]
async fn undecodable_messages_go_to_the_dead_letters_and_the_rest_is_forwarded() {
    let app = spawn_app().await;
    app.bus
        .publish(
            topics::INGESTED,
            vec![Message {
                id: "garbage".into(),
                key: "player_1".into(),
                payload: Bytes::from_static(b"\x00not an envelope"),
            }],
        )
        .await
        .unwrap();
    let fine = drop_claimed("player_1");
    app.ingest(std::slice::from_ref(&fine)).await;
    app.process().await;
    let accepted = app.drain(topics::ACCEPTED).await;
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].1, fine);
    // Drops carry no value to judge.
    assert!(app.repo.fairness_stats().await.unwrap().is_empty());
    let dead = app
        .bus
        .dead_letters(topics::INGESTED, GROUP, 10)
        .await
        .unwrap();
    let dead: Vec<&[u8]> = dead.iter().map(|d| d.payload.as_ref()).collect();
    assert_eq!(dead, [b"\x00not an envelope".as_slice()]);
}
