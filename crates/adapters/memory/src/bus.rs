//! [`MemoryBus`]: the [`Bus`] in process memory, for `BUS_KIND=inmem` and tests.
//!
//! **Not durable.** Everything published and not yet consumed (or consumed and not acked) is lost
//! when the process stops or crashes. Use a durable bus (the local log of `liveops-sqlite-bus`, or Redis)
//! for anything that must survive a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use liveops_core::ports::{
    long_poll, BusOptions, DeadLetterRequest, Delivery, Health, Message, PollRequest,
};
use liveops_core::{Bus, PortResult};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How often a waiting poll re-checks for messages whose visibility timeout has passed.
const RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct InFlight {
    deliveries: u32,
    deadline: Instant,
}

#[derive(Debug, Default)]
struct Group {
    /// Next sequence number to hand out.
    cursor: u64,
    /// Delivered, not acked.
    pending: BTreeMap<u64, InFlight>,
    /// Dead letters: sequence → deliveries made.
    dead: BTreeMap<u64, u32>,
}

#[derive(Debug, Default)]
struct Topic {
    next_seq: u64,
    messages: BTreeMap<u64, Message>,
    groups: HashMap<String, Group>,
}

impl Topic {
    fn oldest(&self) -> u64 {
        self.messages
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_seq)
    }

    fn group(&mut self, name: &str) -> &mut Group {
        let oldest = self.oldest();
        self.groups.entry(name.to_owned()).or_insert_with(|| Group {
            cursor: oldest,
            ..Group::default()
        })
    }

    /// Drops the oldest messages every group has moved past and settled (acked).
    fn compact(&mut self) {
        let Some(horizon) = self.groups.values().map(|g| g.cursor).min() else {
            return;
        };
        while let Some((&seq, _)) = self.messages.first_key_value() {
            let held = self
                .groups
                .values()
                .any(|g| g.pending.contains_key(&seq) || g.dead.contains_key(&seq));
            if seq >= horizon || held {
                break;
            }
            self.messages.pop_first();
        }
    }
}

fn delivery(seq: u64, m: &Message, deliveries: u32) -> Delivery {
    Delivery {
        id: seq.to_string(),
        key: m.key.clone(),
        payload: m.payload.clone(),
        deliveries,
    }
}

/// An in-memory bus with consumer groups, visibility timeout, redelivery and dead letters.
/// Loses every unconsumed event on a crash: for tests and `BUS_KIND=inmem` only.
#[derive(Debug, Default)]
pub struct MemoryBus {
    opts: BusOptions,
    topics: Mutex<HashMap<String, Topic>>,
    published: Notify,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new(opts: BusOptions) -> Self {
        Self {
            opts,
            topics: Mutex::new(HashMap::new()),
            published: Notify::new(),
        }
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, Topic>> {
        // No code path panics while holding the lock; recover the data if one ever did.
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands out what is available now: expired in-flight messages first, then new ones.
    fn take(&self, topic: &str, group: &str, max: usize) -> Vec<Delivery> {
        let now = Instant::now();
        let max_deliveries = self.opts.max_deliveries;
        let mut topics = self.topics();
        let t = topics.entry(topic.to_owned()).or_default();
        t.group(group);
        let Topic {
            messages, groups, ..
        } = t;
        let Some(g) = groups.get_mut(group) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let expired: Vec<u64> = g
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in expired {
            let Some(p) = g.pending.get_mut(&seq) else {
                continue;
            };
            if p.deliveries >= max_deliveries {
                g.dead.insert(seq, p.deliveries);
                g.pending.remove(&seq);
                metrics::counter!("bus_dead_letters_total", "topic" => topic.to_owned(), "group" => group.to_owned())
                    .increment(1);
                continue;
            }
            if out.len() >= max {
                continue;
            }
            if let Some(m) = messages.get(&seq) {
                p.deliveries += 1;
                p.deadline = now + self.opts.visibility_timeout;
                out.push(delivery(seq, m, p.deliveries));
            }
        }
        let room = max.saturating_sub(out.len());
        for (&seq, m) in messages.range(g.cursor..).take(room) {
            g.pending.insert(
                seq,
                InFlight {
                    deliveries: 1,
                    deadline: now + self.opts.visibility_timeout,
                },
            );
            g.cursor = seq + 1;
            out.push(delivery(seq, m, 1));
        }
        out
    }
}

/// Ids we handed out are sequence numbers; anything else names no message.
fn seqs(ids: &[String]) -> impl Iterator<Item = u64> + '_ {
    ids.iter().filter_map(|id| id.parse().ok())
}

#[async_trait]
impl Bus for MemoryBus {
    async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()> {
        self.topics()
            .entry(topic.to_owned())
            .or_default()
            .group(group);
        Ok(())
    }

    async fn publish(&self, topic: &str, messages: Vec<Message>) -> PortResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        {
            let mut topics = self.topics();
            let t = topics.entry(topic.to_owned()).or_default();
            for m in messages {
                t.messages.insert(t.next_seq, m);
                t.next_seq += 1;
            }
        }
        self.published.notify_waiters();
        Ok(())
    }

    async fn receive(&self, request: PollRequest<'_>) -> PortResult<Vec<Delivery>> {
        long_poll(&self.published, request.wait, RECHECK, || async {
            Ok(self.take(request.topic, request.group, request.max))
        })
        .await
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()> {
        let mut topics = self.topics();
        if let Some(t) = topics.get_mut(topic) {
            if let Some(g) = t.groups.get_mut(group) {
                for seq in seqs(ids) {
                    g.pending.remove(&seq);
                }
            }
            t.compact();
        }
        Ok(())
    }

    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
        let topics = self.topics();
        let Some(t) = topics.get(topic) else {
            return Ok(0);
        };
        let (cursor, in_flight) = t
            .groups
            .get(group)
            .map_or((t.oldest(), 0), |g| (g.cursor, g.pending.len()));
        Ok((t.messages.range(cursor..).count() + in_flight) as u64)
    }

    async fn read_dead_letters(&self, request: DeadLetterRequest<'_>) -> PortResult<Vec<Delivery>> {
        let (topic, group, limit) = (request.topic, request.group, request.limit);
        let topics = self.topics();
        let Some(t) = topics.get(topic) else {
            return Ok(Vec::new());
        };
        let Some(g) = t.groups.get(group) else {
            return Ok(Vec::new());
        };
        Ok(g.dead
            .iter()
            .filter_map(|(seq, &n)| t.messages.get(seq).map(|m| delivery(*seq, m, n)))
            .take(limit)
            .collect())
    }

    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64> {
        let n = {
            let mut topics = self.topics();
            let Some(g) = topics.get_mut(topic).and_then(|t| t.groups.get_mut(group)) else {
                return Ok(0);
            };
            let dead = std::mem::take(&mut g.dead);
            let now = Instant::now();
            for seq in dead.keys() {
                g.pending.insert(
                    *seq,
                    InFlight {
                        deliveries: 0,
                        deadline: now,
                    },
                );
            }
            dead.len() as u64
        };
        self.published.notify_waiters();
        Ok(n)
    }
}

#[async_trait]
impl Health for MemoryBus {
    async fn healthcheck(&self) -> PortResult<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use liveops_core::BusExt;

    fn msg(i: u32) -> Message {
        Message {
            id: i.to_string(),
            key: format!("k{i}"),
            payload: i.to_string().into_bytes().into(),
        }
    }

    #[tokio::test]
    async fn acked_messages_are_dropped_once_every_group_is_past_them() {
        let bus = MemoryBus::new(BusOptions::default());
        bus.ensure_group("t", "a").await.unwrap();
        bus.ensure_group("t", "b").await.unwrap();
        bus.publish("t", (0..4).map(msg).collect()).await.unwrap();
        let a = bus.poll("t", "a", "c", 10, Duration::ZERO).await.unwrap();
        bus.ack(
            "t",
            "a",
            &a.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        assert_eq!(
            bus.topics()["t"].messages.len(),
            4,
            "group b still needs them"
        );
        let b = bus.poll("t", "b", "c", 2, Duration::ZERO).await.unwrap();
        bus.ack("t", "b", &[b[1].id.clone()]).await.unwrap();
        assert_eq!(
            bus.topics()["t"].messages.len(),
            4,
            "b's first is in flight"
        );
        bus.ack("t", "b", &[b[0].id.clone()]).await.unwrap();
        assert_eq!(bus.topics()["t"].messages.len(), 2);
        // A group created now starts at the oldest retained message.
        bus.ensure_group("t", "late").await.unwrap();
        assert_eq!(bus.lag("t", "late").await.unwrap(), 2);
    }
}
