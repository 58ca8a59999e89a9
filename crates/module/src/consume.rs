//! What every bus consumer shares: back-off between retries, decoding and de-duplicating a polled
//! batch, the per-batch metrics, and [`run_batches`], the poll → apply → ack loop of the consumers
//! that commit their effects together with the processed event ids, with a span per batch and
//! per traced event ([`crate::trace`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use liveops_core::ports::{Bus, BusExt, Delivery};
use liveops_core::stores::ProcessedEvents;
use liveops_core::{Envelope, PortError};
use tracing::Instrument;
use uuid::Uuid;

use crate::trace::BatchSpans;
use crate::Group;

/// How long one poll waits for a message.
pub const POLL_WAIT: Duration = Duration::from_millis(200);

/// Attempts at one batch before applying it one event at a time (what still fails is left to
/// the bus's redelivery and dead letters).
pub const MAX_ATTEMPTS: u32 = 8;

/// Exponential pause between retries of a failed port call, cut short by shutdown.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// First pause after a failure; it doubles up to [`Backoff::MAX`].
    pub const FIRST: Duration = Duration::from_millis(200);
    /// Longest pause.
    pub const MAX: Duration = Duration::from_secs(5);

    /// Starts at [`Backoff::FIRST`].
    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// Back to [`Backoff::FIRST`] after a success.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// Sleeps for the current pause and doubles it; `false` if shutdown came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(pause) => true,
        }
    }

    /// Runs `attempt` until it succeeds (`true`, and the pause is back to [`Backoff::FIRST`]) or
    /// shutdown comes first (`false`), logging each failure with the consumer `group` as a
    /// field: a consumer's start-up.
    pub async fn retry<F, Fut>(
        &mut self,
        shutdown: &CancellationToken,
        group: &'static str,
        mut attempt: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), PortError>>,
    {
        loop {
            match attempt().await {
                Ok(()) => {
                    self.reset();
                    return true;
                }
                Err(error) => {
                    tracing::warn!(group, %error, "cannot start consuming; retrying");
                    if !self.wait(shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes deliveries for `group`: the envelopes, and the ids of the deliveries that do not
/// decode (an event of a newer release during a rolling upgrade or after a rollback, or a
/// corrupt one). Those are counted (`events_undecodable_total`), logged and not to be acked: the
/// bus hands them out again, to a replica that can read them, and dead-letters them after its
/// most deliveries, from where they are replayed once every replica reads them. On Service Bus
/// an unacked delivery is held (its lock renewed) for up to `max_hold`, five minutes, before it
/// comes back, holding up its player's later events meanwhile; on SQS until the consumer polls
/// again, then for the visibility timeout.
pub fn decode(group: &'static str, deliveries: &[Delivery]) -> (Vec<Envelope>, HashSet<String>) {
    let mut unread = HashSet::new();
    let events = deliveries
        .iter()
        .filter_map(|d| match Envelope::decode(&d.payload) {
            Ok(env) => Some(env),
            Err(error) => {
                metrics::counter!("events_undecodable_total", "group" => group).increment(1);
                tracing::error!(group, delivery = %d.id, deliveries = d.deliveries, %error,
                    "undecodable event left to redelivery and the dead letters");
                unread.insert(d.id.clone());
                None
            }
        })
        .collect();
    (events, unread)
}

/// Keeps the first occurrence of each event id.
pub fn dedupe(events: Vec<Envelope>) -> Vec<Envelope> {
    let mut seen = HashSet::new();
    events
        .into_iter()
        .filter(|e| seen.insert(e.event_id))
        .collect()
}

/// Of `events`, those `consumer` has not applied yet (by their ids in `processed`): what keeps a
/// redelivered batch from counting twice.
pub async fn unapplied(
    processed: &dyn ProcessedEvents,
    consumer: &str,
    events: &[Envelope],
) -> Result<Vec<Envelope>, PortError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let done = processed.processed(consumer, &ids).await?;
    let fresh: Vec<Envelope> = events
        .iter()
        .filter(|e| !done.contains(&e.event_id))
        .cloned()
        .collect();
    if fresh.len() < events.len() {
        tracing::debug!(
            consumer,
            skipped = events.len() - fresh.len(),
            "events already applied"
        );
    }
    Ok(fresh)
}

/// The `events` not among `fresh` (what [`unapplied`] answered for them): applied before, maybe
/// by a commit whose follow-up (a cache drop, a rank-store raise) never ran.
pub fn applied_before<'a>(events: &'a [Envelope], fresh: &[Envelope]) -> Vec<&'a Envelope> {
    if fresh.len() == events.len() {
        return Vec::new();
    }
    let fresh: HashSet<Uuid> = fresh.iter().map(|e| e.event_id).collect();
    events
        .iter()
        .filter(|e| !fresh.contains(&e.event_id))
        .collect()
}

/// Applies a batch that keeps failing one event at a time, so that one event that cannot be
/// applied does not hold up the others (and take them to the dead letters with it); the ids of
/// the events not applied, left to redelivery: those that still fail
/// (`consumer_failing_events_total`), and all after them, uncounted, if shutdown comes or the
/// stores stop answering meanwhile (an outage is not blamed on the events; they come back
/// with the bus's redelivery).
async fn one_at_a_time(
    handler: &mut impl Apply,
    group: &'static str,
    events: &[Envelope],
    shutdown: &CancellationToken,
) -> HashSet<Uuid> {
    let mut failing = HashSet::new();
    for (i, event) in events.iter().enumerate() {
        let error = match handler.apply(std::slice::from_ref(event)).await {
            Ok(()) => continue,
            Err(error) => error,
        };
        let outage = matches!(error, PortError::Unavailable(_)) && !handler.stores_answer().await;
        if outage || shutdown.is_cancelled() {
            tracing::warn!(group, %error, left = events.len() - i,
                "stores unreachable or shutting down; leaving the rest of the batch to redelivery");
            failing.extend(events[i..].iter().map(|e| e.event_id));
            break;
        }
        metrics::counter!("consumer_failing_events_total", "group" => group).increment(1);
        tracing::error!(group, %error, event_id = %event.event_id, player = %event.event.player_id,
            "event keeps failing; leaving it to redelivery and the dead letters");
        failing.insert(event.event_id);
    }
    failing
}

/// Records one consumer batch, from its poll to its ack: how many messages
/// (`consumer_batch_events`) and how long (`consumer_batch_seconds`), per group. A consumer
/// falling behind shows here whether its batches grow or each one got slower.
pub fn record_batch(group: &'static str, messages: usize, took: Duration) {
    metrics::histogram!("consumer_batch_events", "group" => group).record(messages as f64);
    metrics::histogram!("consumer_batch_seconds", "group" => group).record(took.as_secs_f64());
}

/// What a consumer does with each batch [`run_batches`] polls.
#[async_trait]
pub trait Apply: Send {
    /// Applies the batch (decoded, without repeated ids) exactly once: its effects and its event
    /// ids in one commit, skipping ids committed before. An error is retried with back-off.
    async fn apply(&mut self, events: &[Envelope]) -> Result<(), PortError>;

    /// Whether the stores batches are applied to answer now. While they do not, a batch failing
    /// as unavailable is retried in place, past [`MAX_ATTEMPTS`], without polling: left to
    /// redelivery, every delivery during a long outage would count towards the dead letters. A
    /// batch that keeps failing while they answer is applied one event at a time.
    async fn stores_answer(&mut self) -> bool {
        true
    }

    /// Runs after a successful [`Apply::apply`] and before the ack, for follow-up work that must
    /// happen before the batch is let go; `false` stops the consumer (shutdown came first). A
    /// batch that kept failing is applied one event at a time, and this runs once after all of
    /// them, if any was applied.
    async fn after_commit(
        &mut self,
        _backoff: &mut Backoff,
        _shutdown: &CancellationToken,
    ) -> bool {
        true
    }
}

/// Where [`run_batches`] reads from.
#[derive(Clone, Copy)]
pub struct Subscription<'a> {
    /// The bus.
    pub bus: &'a dyn Bus,
    /// The topic and consumer group (the module's row in its table lists the same).
    pub reads: Group,
    /// This replica's name in the group.
    pub consumer: &'a str,
    /// Most messages taken per poll.
    pub batch: usize,
}

/// A consumer's whole run: retries `ready` (creating its group, loading what it needs) until it
/// works, then [`run_batches`] until `shutdown`, logging when it starts and stops.
pub async fn consume<F, Fut>(
    sub: Subscription<'_>,
    ready: F,
    handler: &mut impl Apply,
    shutdown: &CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), PortError>>,
{
    let group = sub.reads.group;
    // The series exist from the start, so a dashboard's increase() sees the first of each.
    metrics::counter!("consumer_outage_retries_total", "group" => group).increment(0);
    metrics::counter!("consumer_failing_events_total", "group" => group).increment(0);
    metrics::counter!("consumer_poll_failures_total", "group" => group).increment(0);
    if !Backoff::new().retry(shutdown, group, ready).await {
        return;
    }
    tracing::info!(group, "{group} consumer started");
    run_batches(sub, handler, shutdown).await;
    tracing::info!(group, "{group} consumer stopped");
}

/// Tells the bus that `consumer` stops reading `reads` ([`Bus::leave`]): on the Redis bus the
/// group's other consumers take its partitions at their next poll, not after its leases lapse
/// (up to 5 s in which those partitions deliver nothing, at every rolling restart). Call it once
/// a consumer's poll loop has stopped for good; a failure is logged (the leases then lapse).
pub async fn leave(bus: &dyn Bus, reads: Group, consumer: &str) {
    if let Err(error) = bus.leave(reads.topic, reads.group, consumer).await {
        tracing::warn!(%error, group = reads.group, consumer,
            "could not leave the consumer group; its partitions go to the others once its leases lapse");
    }
}

/// Polls `sub` until `shutdown`: decodes and de-duplicates each batch, applies it (up to
/// [`MAX_ATTEMPTS`] tries, or for as long as its stores do not answer; then one event at a time,
/// leaving those that still fail to redelivery), runs [`Apply::after_commit`], then acks what
/// was applied. Failures back off; nothing is acked
/// before it is applied, so a crash means redelivery, which [`Apply::apply`] absorbs. Once the
/// loop has stopped, the consumer [`leave`]s its group.
pub async fn run_batches(
    sub: Subscription<'_>,
    handler: &mut impl Apply,
    shutdown: &CancellationToken,
) {
    let group = sub.reads.group;
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        let polled = tokio::select! {
            _ = shutdown.cancelled() => break,
            polled = sub.bus.poll(sub.reads.topic, sub.reads.group, sub.consumer, sub.batch.max(1), POLL_WAIT) => polled,
        };
        let deliveries = match polled {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(group, %error, "poll failed; backing off");
                metrics::counter!("consumer_poll_failures_total", "group" => sub.reads.group)
                    .increment(1);
                backoff.wait(shutdown).await;
                continue;
            }
        };
        backoff.reset();
        if deliveries.is_empty() {
            continue;
        }
        let started = Instant::now();
        let taken = deliveries.len();
        let (events, unread) = decode(sub.reads.group, &deliveries);
        // Each decoded delivery's event, to ack only what was applied.
        let decoded: Vec<(String, Uuid)> = deliveries
            .into_iter()
            .map(|d| d.id)
            .filter(|id| !unread.contains(id))
            .zip(events.iter().map(|e| e.event_id))
            .collect();
        let events = dedupe(events);
        // Ended when dropped, after the ack.
        let spans = BatchSpans::start(sub.reads.group, &events);

        let mut attempts = 0;
        let failing = loop {
            attempts += 1;
            let error = match handler
                .apply(&events)
                .instrument(spans.batch().clone())
                .await
            {
                Ok(()) => break Some(HashSet::new()),
                Err(error) => error,
            };
            if attempts < MAX_ATTEMPTS {
                tracing::warn!(group, %error, attempts, "batch failed; retrying");
            } else if matches!(error, PortError::Unavailable(_)) && !handler.stores_answer().await {
                if attempts == MAX_ATTEMPTS {
                    tracing::error!(group, %error,
                        "stores unreachable; holding the batch until they answer");
                }
                metrics::counter!("consumer_outage_retries_total", "group" => sub.reads.group)
                    .increment(1);
            } else {
                tracing::error!(group, %error, attempts, events = events.len(),
                    "batch keeps failing; applying its events one at a time");
                let failing = one_at_a_time(handler, sub.reads.group, &events, shutdown)
                    .instrument(spans.batch().clone())
                    .await;
                break (failing.len() < events.len()).then_some(failing);
            }
            if !backoff.wait(shutdown).await {
                break None;
            }
        };
        backoff.reset();
        // `None`: nothing applied, all is left to redelivery.
        let Some(failing) = failing else {
            continue;
        };
        if !handler.after_commit(&mut backoff, shutdown).await {
            break;
        }
        backoff.reset();

        let ids: Vec<String> = decoded
            .into_iter()
            .filter(|(_, event)| !failing.contains(event))
            .map(|(id, _)| id)
            .collect();
        loop {
            match sub.bus.ack(sub.reads.topic, sub.reads.group, &ids).await {
                Ok(()) => break,
                Err(error) => {
                    // Unacked events come back and are skipped as already processed.
                    tracing::warn!(group, %error, "ack failed; retrying");
                    if !backoff.wait(shutdown).await {
                        break;
                    }
                }
            }
        }
        backoff.reset();
        record_batch(sub.reads.group, taken, started.elapsed());
    }
    leave(sub.bus, sub.reads, sub.consumer).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::sync::{Arc, Mutex};

    use liveops_core::now_ms;
    use liveops_core::ports::BusOptions;
    use liveops_memory::MemoryBus;
    use liveops_testkit::received::{self, envelope};

    use super::*;

    /// The group the tests read.
    const READS: Group = Group::new("events.accepted", "test");

    /// Consumer `c1` of [`READS`] on `bus`, 16 messages a poll.
    fn subscription(bus: &dyn Bus) -> Subscription<'_> {
        Subscription {
            bus,
            reads: READS,
            consumer: "c1",
            batch: 16,
        }
    }

    /// Applies every event but one, which fails as corrupt data would, every time.
    struct AllBut {
        poison: Uuid,
        applied: Arc<Mutex<Vec<Uuid>>>,
        after_commits: usize,
    }

    impl AllBut {
        /// Fails only `poison`, nothing applied yet.
        fn new(poison: Uuid) -> Self {
            Self {
                poison,
                applied: Arc::new(Mutex::new(Vec::new())),
                after_commits: 0,
            }
        }
    }

    #[async_trait]
    impl Apply for AllBut {
        async fn apply(&mut self, events: &[Envelope]) -> Result<(), PortError> {
            if events.iter().any(|e| e.event_id == self.poison) {
                return Err(PortError::Corrupt("cannot apply this event".into()));
            }
            let mut applied = self.applied.lock().unwrap();
            applied.extend(events.iter().map(|e| e.event_id));
            Ok(())
        }

        async fn after_commit(&mut self, _: &mut Backoff, _: &CancellationToken) -> bool {
            self.after_commits += 1;
            true
        }
    }

    /// A consumer stopped by shutdown leaves its group once its loop has stopped, so a bus that
    /// shares partitions among a group's consumers (Redis) hands its share to the others at once
    /// instead of after its leases lapse. (Until 2026-12-06 nothing called `leave`.)
    #[tokio::test]
    async fn a_consumer_that_stops_leaves_its_group() {
        // Records who left which group.
        let bus = liveops_testkit::flaky::FlakyBus::new(MemoryBus::new(BusOptions::default()));
        let mut handler = AllBut::new(Uuid::nil());
        let shutdown = CancellationToken::new();
        let sub = subscription(&bus);
        let ready = || async { bus.ensure_group(READS.topic, READS.group).await };
        let stop = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(bus.left.lock().unwrap().is_empty(), "left while running");
            shutdown.cancel();
        };
        tokio::join!(consume(sub, ready, &mut handler, &shutdown), stop);
        let left = bus.left.lock().unwrap().clone();
        assert_eq!(left, ["events.accepted/test/c1"]);
    }

    /// One event that can never be applied holds up its batch for the batch's tries, then the
    /// rest of the batch is applied and acked, and only that event goes to the dead letters.
    #[tokio::test]
    async fn one_failing_event_does_not_take_its_batch_to_the_dead_letters() {
        let bus = MemoryBus::new(BusOptions {
            visibility_timeout: Duration::from_millis(300),
            max_deliveries: 1,
        });
        bus.ensure_group(READS.topic, READS.group).await.unwrap();
        let events: Vec<Envelope> = (0..6)
            .map(|i| envelope(&format!("player_{}", i % 2), received::xp(10), now_ms()))
            .collect();
        let messages = events.iter().map(Envelope::to_message).collect();
        bus.publish(READS.topic, messages).await.unwrap();

        let logs = liveops_testkit::logs::Captured::start();
        let poison = events[2].event_id;
        let mut handler = AllBut::new(poison);
        let applied = handler.applied.clone();
        let shutdown = CancellationToken::new();
        let sub = subscription(&bus);
        let stop = shutdown.clone();
        let dead = async {
            // The batch's 8 tries back off about 16 s; its one delivery of the poison is its last.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let dead = bus
                    .dead_letters(READS.topic, READS.group, 10)
                    .await
                    .unwrap();
                if !dead.is_empty() || Instant::now() > deadline {
                    stop.cancel();
                    return dead;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let ((), dead) = tokio::join!(run_batches(sub, &mut handler, &shutdown), dead);

        assert_eq!(dead.len(), 1, "only the failing event is dead-lettered");
        assert_eq!(Envelope::decode(&dead[0].payload).unwrap().event_id, poison);
        let mut want: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        want.retain(|id| *id != poison);
        assert_eq!(
            *applied.lock().unwrap(),
            want,
            "the rest applied once, in order"
        );
        assert!(handler.after_commits >= 1);
        let again = bus
            .poll(
                READS.topic,
                READS.group,
                "c2",
                16,
                Duration::from_millis(400),
            )
            .await
            .unwrap();
        assert!(again.is_empty(), "the applied events were acked: {again:?}");
        // Each line about the batch names its group as a field, not only in its text.
        for message in [
            "batch failed; retrying",
            "batch keeps failing",
            "event keeps failing",
        ] {
            let line = logs
                .line(message)
                .unwrap_or_else(|| panic!("{message}: not logged"));
            assert_eq!(line["group"], READS.group, "{line}");
        }
    }
}
