//! The fairness consumer: reads `events.ingested` in batches, judges each event, stores the
//! verdicts, forwards the fair ones to `events.accepted` and quarantines the rest in
//! `events.flagged`, then strikes and blocks the players who sent them.
//!
//! Each step of a batch is retried in place with back-off until it succeeds, so a port outage
//! never loses a verdict or a strike that is already decided; nothing is acked before every step
//! is done, so a crash means redelivery, and redelivered events reuse their stored verdicts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use liveops_core::ports::{topics, Delivery, Message, Strike};
use liveops_core::stores::{FairnessCommit, Flag};
use liveops_core::{now_ms, Bus, BusExt, Envelope, PortError};
use liveops_module::consume::{decode, record_batch, Backoff, POLL_WAIT};
use liveops_module::trace::BatchSpans;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::judge::{Judge, Ruling};
use crate::{FairnessState, GROUP, READS};

/// Marker: shutdown was requested while a batch was in progress (it stays un-acked).
struct Stopped;

/// Runs the fairness consumer until `shutdown` is cancelled.
///
/// Transient port errors are logged and retried with back-off; the only error returned is
/// corrupt stored statistics at start-up, which no retry can fix.
#[tracing::instrument(skip_all, fields(consumer = %state.config.consumer_name))]
pub async fn run_consumer(
    state: FairnessState,
    shutdown: CancellationToken,
) -> Result<(), PortError> {
    let cfg = &state.config;
    // The series exists from the start, so a dashboard's increase() sees the first.
    metrics::counter!("fairness_rejudged_total").increment(0);
    let mut backoff = Backoff::new();
    let stats = loop {
        let setup = async {
            state.bus.ensure_group(READS.topic, READS.group).await?;
            state.store.fairness_stats().await
        };
        match setup.await {
            Ok(stats) => break stats,
            Err(error @ PortError::Corrupt(_)) => {
                tracing::error!(%error, "fairness statistics are unreadable");
                return Err(error);
            }
            Err(error) => {
                tracing::warn!(%error, "fairness consumer cannot start yet; retrying");
                if !backoff.wait(&shutdown).await {
                    return Ok(());
                }
            }
        }
    };
    backoff.reset();
    let mut judge = Judge::new(cfg.anomaly_z, cfg.warmup, stats);
    let mut summary = FlagSummary::default();
    tracing::info!(group = GROUP, "fairness consumer started");
    loop {
        summary.tick(Instant::now());
        let polled = tokio::select! {
            _ = shutdown.cancelled() => break,
            polled = state.bus.poll(
                READS.topic,
                READS.group,
                &cfg.consumer_name,
                cfg.batch_size.max(1),
                POLL_WAIT,
            ) => polled,
        };
        match polled {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                let (started, taken) = (std::time::Instant::now(), batch.len());
                let handled = handle_batch(&state, &mut judge, batch, &shutdown, &mut backoff);
                match handled.await {
                    Ok(flags) => summary.add(&flags),
                    Err(Stopped) => break,
                }
                backoff.reset();
                record_batch(GROUP, taken, started.elapsed());
            }
            Err(error) => {
                tracing::warn!(%error, "polling events.ingested failed; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
    // Its partitions go to the other replicas at their next poll, not once its leases lapse.
    liveops_module::consume::leave(&*state.bus, READS, &cfg.consumer_name).await;
    summary.flush();
    tracing::info!("fairness consumer stopped");
    Ok(())
}

/// Retries `$call` (an expression yielding a `PortResult`) until it succeeds or shutdown.
macro_rules! retrying {
    ($backoff:expr, $shutdown:expr, $what:expr, $call:expr) => {
        loop {
            match $call {
                Ok(v) => break v,
                Err(error) => {
                    tracing::warn!(%error, step = $what, "fairness step failed; retrying");
                    if !$backoff.wait($shutdown).await {
                        return Err(Stopped);
                    }
                }
            }
        }
    };
}

/// Publishes `messages` to `topic` in parts of at most [`PUBLISH_PART`], one after the other,
/// each retried on its own (as `step`) until it is stored: a part is stored before the next is
/// sent, so each player's messages keep their order, and a failure sends only its part again.
async fn publish_in_parts(
    bus: &dyn Bus,
    topic: &str,
    messages: &[Message],
    step: &str,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> Result<(), Stopped> {
    for part in messages.chunks(PUBLISH_PART) {
        retrying!(
            backoff,
            shutdown,
            step,
            bus.publish(topic, part.to_vec()).await
        );
    }
    Ok(())
}

/// How often at most the consumer says at info how many events it quarantined (each one is
/// logged at debug and counted in `anomaly_flags_total`), so a flood of anomalous events writes
/// a line a minute instead of one an event.
const FLAG_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// The events quarantined since the consumer last said so at info, and when that was.
#[derive(Debug, Default)]
struct FlagSummary {
    /// Quarantined since the last line.
    flagged: u64,
    /// The latest of them (named in the line, an example to look up).
    latest: Option<Flag>,
    /// When the last line was written.
    said_at: Option<Instant>,
}

impl FlagSummary {
    /// Counts a batch's new `flags`; says so at once if no line was written in the last
    /// [`FLAG_SUMMARY_EVERY`].
    fn add(&mut self, flags: &[Flag]) {
        let Some(latest) = flags.last() else { return };
        self.flagged += flags.len() as u64;
        self.latest = Some(latest.clone());
        self.tick(Instant::now());
    }

    /// Writes the line if events were quarantined since the last and that was
    /// [`FLAG_SUMMARY_EVERY`] before `now` (or there was none); returns how many it counted.
    fn tick(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .said_at
            .is_none_or(|at| now.saturating_duration_since(at) >= FLAG_SUMMARY_EVERY);
        if self.flagged == 0 || !due {
            return None;
        }
        self.said_at = Some(now);
        self.flush()
    }

    /// Writes the line for the events quarantined since the last, if any; returns how many.
    fn flush(&mut self) -> Option<u64> {
        let flagged = std::mem::take(&mut self.flagged);
        let latest = self.latest.take().filter(|_| flagged > 0)?;
        tracing::info!(
            flagged,
            latest_event_id = %latest.event_id,
            latest_player = %latest.player_id,
            "anomalous events quarantined since the last such line (each logged at debug)"
        );
        Some(flagged)
    }
}

/// Judges, stores, forwards, strikes and acks one batch; returns the flags it raised.
async fn handle_batch(
    state: &FairnessState,
    judge: &mut Judge,
    batch: Vec<Delivery>,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Result<Vec<Flag>, Stopped> {
    // Undecodable deliveries are not acked (see `liveops_module::consume::decode`).
    let (envs, unread) = decode(GROUP, &batch);
    let ack_ids: Vec<String> = batch
        .iter()
        .map(|d| d.id.clone())
        .filter(|id| !unread.contains(id))
        .collect();
    let decoded = batch.into_iter().filter(|d| !unread.contains(&d.id));
    let items: Vec<(Delivery, Envelope)> = decoded.zip(envs).collect();

    let envs: Vec<&Envelope> = items.iter().map(|(_, e)| e).collect();
    // Ended when dropped, after the ack; each traced event's span is forwarded as its parent.
    let spans = BatchSpans::start(GROUP, envs.iter().copied());
    let mut stale = false;
    let (ruling, flagged_at) = retrying!(
        backoff,
        shutdown,
        "judge",
        judge_and_store(state, judge, &envs, &mut stale).await
    );
    for flag in &ruling.flags {
        tracing::debug!(
            event_id = %flag.event_id,
            player = %flag.player_id,
            kind = flag.event_type.as_str(),
            value = flag.value,
            z = flag.z_score,
            "anomalous event quarantined"
        );
        metrics::counter!("anomaly_flags_total", "type" => flag.event_type.as_str()).increment(1);
        metrics::counter!("dropped_events_total", "reason" => "anomaly").increment(1);
    }

    let (mut accepted, mut flagged) = (Vec::new(), Vec::new());
    for (i, ((d, env), &is_flagged)) in items.iter().zip(&ruling.flagged).enumerate() {
        let payload = match spans.traceparent(i) {
            Some(traceparent) => Bytes::from(
                Envelope {
                    traceparent: Some(traceparent),
                    ..env.clone()
                }
                .encode(),
            ),
            None => d.payload.clone(),
        };
        let message = Message {
            id: env.event_id.to_string(),
            key: d.key.clone(),
            payload,
        };
        if is_flagged {
            flagged.push(message);
        } else {
            accepted.push(message);
        }
    }
    for (step, topic, messages) in [
        ("forward", topics::ACCEPTED, &accepted),
        ("quarantine", topics::FLAGGED, &flagged),
    ] {
        publish_in_parts(state.bus.as_ref(), topic, messages, step, backoff, shutdown).await?;
    }

    let cfg = &state.config;
    let keep = cfg.strike_keep();
    for (player, event_id, at_ms) in strikes_of(&items, &ruling, &flagged_at) {
        let id = event_id.to_string();
        let strike = Strike {
            id: &id,
            at_ms,
            window: cfg.strike_window,
            keep,
        };
        retrying!(
            backoff,
            shutdown,
            "strike",
            state.blocks.add_strike(player, strike).await
        );
        // Its own window and those of later strikes: a strike recorded late (a redelivery after
        // a crash) can fill one of them, whether or not its own is full.
        let windows = retrying!(
            backoff,
            shutdown,
            "strike windows",
            state
                .blocks
                .strike_windows(player, at_ms, cfg.strike_window)
                .await
        );
        // The block runs from the latest strike whose window holds enough, so a redelivered
        // strike neither restarts a block nor lengthens it.
        let Some((from, strikes)) = windows
            .into_iter()
            .filter(|(_, n)| *n >= cfg.strikes_to_block)
            .max_by_key(|(t, _)| *t)
        else {
            continue;
        };
        let until = from.saturating_add(i64::try_from(cfg.block.as_millis()).unwrap_or(i64::MAX));
        if until > now_ms()
            && retrying!(
                backoff,
                shutdown,
                "block",
                state.blocks.block(player, from, until).await
            )
        {
            metrics::counter!("fairness_blocks_total").increment(1);
            tracing::warn!(player, strikes, until, "player blocked");
        }
    }

    retrying!(
        backoff,
        shutdown,
        "ack",
        state.bus.ack(READS.topic, READS.group, &ack_ids).await
    );
    Ok(ruling.flags)
}

/// The strikes a batch gives, once per flagged event: `(player, event id, time)`, at the time
/// it was flagged (`flagged_at`). Events judged flagged before (a redelivered batch, a resend
/// under its `messageId`) strike again at that same time, in case the process stopped between
/// their verdict and their strike: the hot state keeps each event's strike once, and one long
/// past counts in no window that matters now.
fn strikes_of<'a>(
    items: &'a [(Delivery, Envelope)],
    ruling: &Ruling,
    flagged_at: &HashMap<Uuid, i64>,
) -> Vec<(&'a str, Uuid, i64)> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .zip(&ruling.flagged)
        .filter(|((_, env), flagged)| **flagged && seen.insert(env.event_id))
        .filter_map(|((_, env), _)| {
            let at = *flagged_at.get(&env.event_id)?;
            Some((env.event.player_id.as_str(), env.event_id, at))
        })
        .collect()
}

/// Most messages of one publish when a batch is forwarded or quarantined. A batch (up to 2048)
/// goes out in parts of this many, one after the other, each retried on its own until stored:
/// a bus that must answer a publish within a deadline (SQS: 2 s, for the gateways) stores a
/// part well within it (256 messages to two groups are 52 `SendMessageBatch` calls, seven
/// rounds side by side), where a whole batch (410 calls) missed it whenever a call took more
/// than about 38 ms, and, retried whole, missed it forever. A part stored stays stored when a
/// later one fails: only the failed part is sent again. Nothing is acked before every part is
/// stored, so a crash in between means redelivery, and the parts already sent are sent again
/// under the same event ids (dropped as duplicates by the bus or by the consumers' processed
/// ids), as with a whole batch.
pub(crate) const PUBLISH_PART: usize = 256;

/// Times a batch is judged in a row while other replicas store verdicts for its events first,
/// before the step backs off.
const JUDGINGS: u32 = 4;

/// How often the statistics are read again from the store, where the other fairness replicas
/// add their samples.
const STATS_REFRESH: Duration = Duration::from_secs(5);

/// Judges the batch against earlier verdicts and stores the ruling atomically; the judge takes
/// on the new statistics only once they are stored. After a failed store the statistics are
/// reloaded first (`stale`), in case the store went through after all. If another replica
/// stored a verdict for one of the events meanwhile (it judged a redelivery of the same batch),
/// its verdict stands: the batch is judged again from the stored verdicts and statistics, so
/// an event is never both forwarded and quarantined.
async fn judge_and_store(
    state: &FairnessState,
    judge: &mut Judge,
    envs: &[&Envelope],
    stale: &mut bool,
) -> Result<(Ruling, HashMap<Uuid, i64>), PortError> {
    let ids: Vec<Uuid> = envs.iter().map(|e| e.event_id).collect();
    for tries in 1..=JUDGINGS {
        if *stale || judge.older_than(STATS_REFRESH) {
            judge.reset(state.store.fairness_stats().await?);
            *stale = false;
        }
        let stored = if ids.is_empty() {
            Vec::new()
        } else {
            state.store.verdicts(&ids).await?
        };
        let earlier: HashMap<Uuid, bool> = stored.iter().map(|(id, f, _)| (*id, *f)).collect();
        let judged_at = now_ms();
        let ruling = judge.rule(envs, &earlier, judged_at);
        // When each flagged event was flagged: now for this ruling's flags, else when stored
        // (the same time: a verdict is stored with the time of its ruling).
        let flagged_at: HashMap<Uuid, i64> = stored
            .iter()
            .filter(|(_, flagged, _)| *flagged)
            .map(|(id, _, at)| (*id, *at))
            .chain(ruling.flags.iter().map(|f| (f.event_id, f.at_ms)))
            .collect();
        if ruling.verdicts.is_empty() {
            return Ok((ruling, flagged_at));
        }
        let commit = FairnessCommit {
            verdicts: ruling.verdicts.clone(),
            flags: ruling.flags.clone(),
            stats: ruling.stats.clone(),
            at_ms: judged_at,
        };
        // Stale either way: the store may have gone through, or another replica's did.
        *stale = true;
        if state.store.commit_fairness(&commit).await? {
            *stale = false;
            judge.adopt(&ruling);
            return Ok((ruling, flagged_at));
        }
        if tries < JUDGINGS {
            metrics::counter!("fairness_rejudged_total").increment(1);
            tracing::info!("another replica judged events of this batch; judging it again");
        }
    }
    Err(PortError::Unavailable(format!(
        "other replicas judged events of this batch {JUDGINGS} times in a row"
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use liveops_core::ports::{BusOptions, DeadLetterRequest, PollRequest};
    use liveops_core::{Health, PortResult};
    use liveops_memory::MemoryBus;

    use super::*;

    /// A memory bus that refuses any publish bigger than [`PUBLISH_PART`] (as SQS missed its
    /// deadline for a whole batch over a slow link) and fails the second publish once.
    struct Parts {
        inner: MemoryBus,
        sizes: Mutex<Vec<usize>>,
        failed_once: AtomicBool,
    }

    #[async_trait]
    impl Bus for Parts {
        async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()> {
            self.inner.ensure_group(topic, group).await
        }
        async fn publish(&self, topic: &str, messages: Vec<Message>) -> PortResult<()> {
            let calls = {
                let mut sizes = self.sizes.lock().unwrap();
                sizes.push(messages.len());
                sizes.len()
            };
            if messages.len() > PUBLISH_PART {
                return Err(PortError::Unavailable("too big for the deadline".into()));
            }
            if calls == 2 && !self.failed_once.swap(true, Ordering::SeqCst) {
                return Err(PortError::Unavailable("injected".into()));
            }
            self.inner.publish(topic, messages).await
        }
        async fn receive(&self, request: PollRequest<'_>) -> PortResult<Vec<Delivery>> {
            self.inner.receive(request).await
        }
        async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()> {
            self.inner.ack(topic, group, ids).await
        }
        async fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
            self.inner.lag(topic, group).await
        }
        async fn read_dead_letters(&self, r: DeadLetterRequest<'_>) -> PortResult<Vec<Delivery>> {
            self.inner.read_dead_letters(r).await
        }
        async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64> {
            self.inner.replay_dead_letters(topic, group).await
        }
    }

    #[async_trait]
    impl Health for Parts {
        async fn healthcheck(&self) -> PortResult<()> {
            Ok(())
        }
    }

    /// A flood of flags is said at info once a minute, counting every flag since the line
    /// before; the first flag after a quiet minute is said at once, and what is left at a stop.
    #[test]
    fn quarantined_events_are_summed_up_once_a_minute() {
        let flag = || Flag {
            event_id: Uuid::now_v7(),
            player_id: "p_flood".into(),
            event_type: liveops_core::EventType::BossKill,
            value: 1_000_000.0,
            z_score: 9.5,
            at_ms: 0,
        };
        let start = Instant::now();
        let mut summary = FlagSummary::default();
        summary.add(&[flag(), flag()]);
        assert_eq!(summary.flagged, 0, "the first is said at once");
        for _ in 0..1000 {
            summary.add(&[flag()]);
            summary.add(&[]);
        }
        assert_eq!(summary.flagged, 1000, "not said again within the minute");
        assert_eq!(summary.tick(start + Duration::from_secs(30)), None);
        let minute_later = start + FLAG_SUMMARY_EVERY + Duration::from_secs(1);
        assert_eq!(summary.tick(minute_later), Some(1000));
        assert_eq!(
            summary.tick(minute_later + FLAG_SUMMARY_EVERY * 2),
            None,
            "nothing new"
        );
        summary.add(&[flag()]);
        assert_eq!(summary.flush(), Some(1), "what is left at a stop");
        assert_eq!(summary.flush(), None);
    }

    /// A batch of 700 goes out in parts of at most 256, one after the other; the part that
    /// failed is sent again on its own (not the parts before it), and every message arrives
    /// once, each player's in order. Before, the whole batch went in one publish, retried
    /// whole: over a slow link to SQS it missed the deadline every time.
    #[tokio::test]
    async fn a_batch_is_forwarded_in_parts_each_retried_on_its_own() {
        let bus = Parts {
            inner: MemoryBus::new(BusOptions::default()),
            sizes: Mutex::new(Vec::new()),
            failed_once: AtomicBool::new(false),
        };
        bus.ensure_group("t", "g").await.unwrap();
        let messages: Vec<Message> = (0..700)
            .map(|i| Message {
                id: format!("e{i}"),
                key: format!("p{}", i % 3),
                payload: Bytes::from(i.to_string()),
            })
            .collect();
        let (mut backoff, shutdown) = (Backoff::new(), CancellationToken::new());
        let sent = publish_in_parts(&bus, "t", &messages, "forward", &mut backoff, &shutdown).await;
        assert!(sent.is_ok());
        assert_eq!(*bus.sizes.lock().unwrap(), [256, 256, 256, 188]);
        let got = bus.poll("t", "g", "c", 1000, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 700, "each once");
        for p in 0..3 {
            let mine: Vec<usize> = got
                .iter()
                .filter(|d| d.key == format!("p{p}"))
                .map(|d| std::str::from_utf8(&d.payload).unwrap().parse().unwrap())
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "p{p} in order");
        }
    }
}
