//! [`FlakyBus`]: a real bus with failures injected on demand, for outage tests.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use liveops_core::ports::{
    topics, Bus, DeadLetterRequest, Delivery, Health, Message, PollRequest, PortError, PortResult,
};

/// Wraps a bus; every switch is off until a test turns it on.
pub struct FlakyBus {
    inner: Arc<dyn Bus>,
    /// While set, every publish fails (the bus is "down").
    pub down: AtomicBool,
    /// The next this-many publishes to a topic other than `events.ingested` (what consumers
    /// forward) fail.
    pub fail_forwards: AtomicU32,
    /// While set, every ack fails.
    pub fail_acks: AtomicBool,
    /// While nonzero, every publish first waits this many milliseconds (a bus waiting for its
    /// replicas); a publish already waiting keeps its wait when this changes.
    pub stall_publish_ms: AtomicU64,
    /// Who left which group, `topic/group/consumer`, in order.
    pub left: std::sync::Mutex<Vec<String>>,
}

impl FlakyBus {
    /// Wraps `inner` with every switch off.
    pub fn new(inner: impl Bus + 'static) -> Self {
        Self {
            inner: Arc::new(inner),
            down: AtomicBool::new(false),
            fail_forwards: AtomicU32::new(0),
            fail_acks: AtomicBool::new(false),
            stall_publish_ms: AtomicU64::new(0),
            left: std::sync::Mutex::default(),
        }
    }

    /// The wrapped bus, to read or ack around the injected failures.
    pub fn inner(&self) -> &dyn Bus {
        self.inner.as_ref()
    }

    fn injected(what: &str) -> PortError {
        PortError::Unavailable(format!("injected {what} failure"))
    }
}

#[async_trait]
impl Bus for FlakyBus {
    async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()> {
        self.inner.ensure_group(topic, group).await
    }

    async fn publish(&self, topic: &str, messages: Vec<Message>) -> PortResult<()> {
        let stall = self.stall_publish_ms.load(Ordering::SeqCst);
        if stall > 0 {
            tokio::time::sleep(Duration::from_millis(stall)).await;
        }
        let forward_fails = topic != topics::INGESTED
            && self
                .fail_forwards
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if self.down.load(Ordering::SeqCst) || forward_fails {
            return Err(Self::injected("publish"));
        }
        self.inner.publish(topic, messages).await
    }

    async fn receive(&self, request: PollRequest<'_>) -> PortResult<Vec<Delivery>> {
        self.inner.receive(request).await
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()> {
        if self.fail_acks.load(Ordering::SeqCst) {
            return Err(Self::injected("ack"));
        }
        self.inner.ack(topic, group, ids).await
    }

    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
        self.inner.lag(topic, group).await
    }

    async fn read_dead_letters(&self, request: DeadLetterRequest<'_>) -> PortResult<Vec<Delivery>> {
        self.inner.read_dead_letters(request).await
    }

    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64> {
        self.inner.replay_dead_letters(topic, group).await
    }

    async fn leave(&self, topic: &str, group: &str, consumer: &str) -> PortResult<()> {
        if let Ok(mut left) = self.left.lock() {
            left.push(format!("{topic}/{group}/{consumer}"));
        }
        self.inner.leave(topic, group, consumer).await
    }
}

#[async_trait]
impl Health for FlakyBus {
    async fn healthcheck(&self) -> PortResult<()> {
        self.inner.healthcheck().await
    }
}
