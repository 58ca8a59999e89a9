//! The event bus: topics, consumer groups, at-least-once delivery.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Health, PortError, PortResult};

/// A long poll for a bus whose publishers ring `published`: `look` until it finds something or
/// `wait` has passed, sleeping between looks until a publish or `recheck` (other processes and
/// visibility timeouts do not ring). Registers for the ring before each look, so a publish in
/// between is not missed.
pub async fn long_poll<F, Fut>(
    published: &tokio::sync::Notify,
    wait: Duration,
    recheck: Duration,
    mut look: F,
) -> PortResult<Vec<Delivery>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<Vec<Delivery>>>,
{
    let until = tokio::time::Instant::now() + wait;
    loop {
        let rung = published.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        let got = look().await?;
        let now = tokio::time::Instant::now();
        if !got.is_empty() || now >= until {
            return Ok(got);
        }
        tokio::select! {
            _ = &mut rung => {}
            _ = tokio::time::sleep((until - now).min(recheck)) => {}
        }
    }
}

/// Bus topics.
pub mod topics {
    /// Events the gateway accepted, before fairness.
    pub const INGESTED: &str = "events.ingested";
    /// Events fairness let through.
    pub const ACCEPTED: &str = "events.accepted";
    /// Events fairness quarantined.
    pub const FLAGGED: &str = "events.flagged";
}

/// One message to publish: `key` (the player id) keeps a player's events in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Stable id (the event id), so buses with duplicate detection drop a re-published copy.
    pub id: String,
    /// Partition key.
    pub key: String,
    /// Encoded body (an [`crate::event::Envelope`]).
    pub payload: Bytes,
}

/// One message handed to a consumer; ack it by `id` once its effect is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Opaque id to ack with.
    pub id: String,
    /// Partition key.
    pub key: String,
    /// Encoded body.
    pub payload: Bytes,
    /// How many times it has been handed out, this time included.
    pub deliveries: u32,
}

/// How a bus redelivers: every adapter takes these two settings.
#[derive(Clone, Copy, Debug)]
pub struct BusOptions {
    /// How long a delivery stays invisible to other polls before it is handed out again.
    pub visibility_timeout: Duration,
    /// Deliveries before a message goes to the dead letters instead.
    pub max_deliveries: u32,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_deliveries: 10,
        }
    }
}

/// Runs `work` on the owner every `every` until the owner is dropped: a bus's lock renewal or
/// visibility extension, held by a `Weak` so the task ends with the bus. A failure goes to
/// `failed` and is retried at the next tick.
pub async fn every_while_alive<T, F, Fut>(
    owner: Weak<T>,
    every: Duration,
    work: F,
    failed: impl Fn(PortError),
) where
    F: Fn(Arc<T>) -> Fut,
    Fut: Future<Output = PortResult<()>>,
{
    loop {
        tokio::time::sleep(every).await;
        let Some(owner) = owner.upgrade() else {
            return;
        };
        if let Err(e) = work(owner).await {
            failed(e);
        }
    }
}

/// Runs `step` (one chunk of work that says how many messages it moved) until a step moves
/// fewer than `full`, and returns the total. A bus whose reads can come back short while more
/// is waiting passes `full` = 1: only an empty step ends it.
pub async fn drain_in_chunks<F, Fut>(full: u64, mut step: F) -> PortResult<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = PortResult<u64>>,
{
    let mut total = 0_u64;
    loop {
        let n = step().await?;
        total += n;
        if n < full {
            return Ok(total);
        }
    }
}

/// The keys held by consumers other than `consumer`, from the (consumer, key) of each delivery
/// handed out and not acked.
pub fn held_by_others<'a>(
    consumer: &str,
    out: impl Iterator<Item = (&'a str, &'a str)>,
) -> BTreeSet<String> {
    out.filter(|(c, _)| *c != consumer)
        .map(|(_, key)| key.to_owned())
        .collect()
}

/// Hands out `buffer` in order to one consumer: a message whose `key` is in `busy` (held by
/// another consumer), and every message once `out` holds `max`, stays buffered in order (the
/// returned queue); each other message goes to `hand`, which pushes its delivery to `out`
/// (or folds it into one already there).
pub fn hand_out<T>(
    buffer: VecDeque<T>,
    key: impl Fn(&T) -> &str,
    busy: &BTreeSet<String>,
    max: usize,
    out: &mut Vec<Delivery>,
    mut hand: impl FnMut(T, &mut Vec<Delivery>),
) -> VecDeque<T> {
    let mut keep = VecDeque::new();
    for m in buffer {
        if out.len() >= max || busy.contains(key(&m)) {
            keep.push_back(m);
        } else {
            hand(m, out);
        }
    }
    keep
}

/// Why a bus adapter could not be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusSetupError {
    /// A setting is missing or malformed (`what`: which bus).
    #[error("{what} configuration: {reason}")]
    Config {
        /// Which bus (`sqs bus`, `service bus`).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The backend did not answer, or refused the first call.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl BusSetupError {
    /// A missing or malformed setting of the bus `what`.
    pub fn config(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            what,
            reason: reason.into(),
        }
    }
}

impl From<BusSetupError> for PortError {
    fn from(e: BusSetupError) -> Self {
        match e {
            BusSetupError::Port(p) => p,
            BusSetupError::Config { reason, .. } => PortError::Unavailable(reason),
        }
    }
}

/// One poll: up to `max` (at least 1) messages of `topic` for `consumer` in `group`, waiting up
/// to `wait` for one.
#[derive(Clone, Copy, Debug)]
pub struct PollRequest<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The consumer group.
    pub group: &'a str,
    /// The consumer within the group.
    pub consumer: &'a str,
    /// How many messages at most.
    pub max: usize,
    /// How long to wait for a first one.
    pub wait: Duration,
}

/// One read of a group's dead letters: up to `limit` (at least 1), oldest first.
#[derive(Clone, Copy, Debug)]
pub struct DeadLetterRequest<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The consumer group.
    pub group: &'a str,
    /// How many dead letters at most.
    pub limit: usize,
}

/// Topics with consumer groups, at-least-once delivery, ack, redelivery after a visibility
/// timeout, and a dead letter after too many deliveries.
#[async_trait]
pub trait Bus: Health {
    /// Creates `group` on `topic` if missing, starting from the oldest retained message.
    async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()>;
    /// Appends messages; when this returns `Ok`, they survive a crash.
    async fn publish(&self, topic: &str, messages: Vec<Message>) -> PortResult<()>;
    /// What [`BusExt::poll`] asks the backend for, `max` at least 1 (adapters implement this
    /// one).
    async fn receive(&self, request: PollRequest<'_>) -> PortResult<Vec<Delivery>>;
    /// Marks deliveries done.
    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()>;
    /// Messages the group has not acked yet (new plus in flight).
    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64>;
    /// What [`BusExt::dead_letters`] asks the backend for, `limit` at least 1 (adapters
    /// implement this one).
    async fn read_dead_letters(&self, request: DeadLetterRequest<'_>) -> PortResult<Vec<Delivery>>;
    /// Puts the group's dead letters back for delivery; returns how many.
    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64>;
    /// `consumer` stops reading `group` for good (a graceful stop): a bus that shares a group's
    /// partitions among its consumers hands its share to the others now rather than once its
    /// claim lapses. What it has not acked still comes back as it would have. Nothing to do for
    /// a bus without such claims (the default).
    async fn leave(&self, topic: &str, group: &str, consumer: &str) -> PortResult<()> {
        let _ = (topic, group, consumer);
        Ok(())
    }
}

/// The calls services make on a [`Bus`], over the methods adapters implement: a request for
/// nothing is answered here, once, without asking the backend. Every bus has them.
#[async_trait]
pub trait BusExt: Bus {
    /// Takes up to `max` messages for `consumer` in `group`, waiting up to `wait` for one.
    /// Unacked messages come back after the visibility timeout; after too many deliveries they
    /// go to the group's dead letters instead. A poll for none answers at once, asking no one.
    async fn poll(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> PortResult<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let request = PollRequest {
            topic,
            group,
            consumer,
            max,
            wait,
        };
        self.receive(request).await
    }
    /// The group's dead letters, oldest first, `limit` at most. A request for none answers at
    /// once, asking no one.
    async fn dead_letters(
        &self,
        topic: &str,
        group: &str,
        limit: usize,
    ) -> PortResult<Vec<Delivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let request = DeadLetterRequest {
            topic,
            group,
            limit,
        };
        self.read_dead_letters(request).await
    }
}

#[async_trait]
impl<B: Bus + ?Sized> BusExt for B {}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_stops_at_the_first_short_chunk() {
        let mut chunks = vec![3_u64, 3, 1, 3].into_iter();
        let total = drain_in_chunks(3, || {
            let n = chunks.next().unwrap();
            async move { Ok(n) }
        })
        .await
        .unwrap();
        assert_eq!(total, 7);
        assert_eq!(chunks.next(), Some(3));
    }

    #[test]
    fn handing_out_skips_busy_keys_and_keeps_order() {
        let buffer: VecDeque<(&str, &str)> = VecDeque::from([
            ("a", "p1"),
            ("b", "p2"),
            ("c", "p1"),
            ("d", "p3"),
            ("e", "p4"),
        ]);
        let held = [("other", "p2"), ("me", "p3")];
        let busy = held_by_others("me", held.into_iter());
        let mut out = Vec::new();
        let keep = hand_out(
            buffer,
            |m| m.1,
            &busy,
            2,
            &mut out,
            |m, out| {
                out.push(Delivery {
                    id: m.0.to_owned(),
                    key: m.1.to_owned(),
                    payload: Bytes::new(),
                    deliveries: 1,
                });
            },
        );
        let ids: Vec<&str> = out.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(Vec::from(keep), [("b", "p2"), ("d", "p3"), ("e", "p4")]);
    }
}
