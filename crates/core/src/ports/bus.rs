//! The event bus: topics, consumer groups, at-least-once delivery.

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
    /// What `poll` asks the backend for, `max` at least 1 (adapters implement this one).
    async fn receive(&self, request: PollRequest<'_>) -> PortResult<Vec<Delivery>>;
    /// Marks deliveries done.
    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()>;
    /// Messages the group has not acked yet (new plus in flight).
    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64>;
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
    /// What `dead_letters` asks the backend for, `limit` at least 1 (adapters implement this one).
    async fn read_dead_letters(&self, request: DeadLetterRequest<'_>) -> PortResult<Vec<Delivery>>;
    /// Puts the group's dead letters back for delivery; returns how many.
    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64>;
}
