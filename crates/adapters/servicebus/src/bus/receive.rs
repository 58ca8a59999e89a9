//! The receive side of [`ServiceBusBus`](super::ServiceBusBus): each consumer group's receiver
//! links, the polls that read them, and the deliveries they handed out, each settled and renewed
//! on the link it came on. Without sessions a group has one link. With sessions it keeps a pool
//! of up to `session_links`, each holding another player's session: a poll reads them all at
//! once, new links attach in the background (a held attach never holds up a poll), and a link
//! with nothing to hand out and nothing un-acked is closed after [`SESSION_IDLE`], so that its
//! slot takes the next player's session.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::receiver::ReceiverDisposer;
use fe2o3_amqp::link::RecvError;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{Body, Modified};
use fe2o3_amqp::types::primitives::Value;
use fe2o3_amqp::{Delivery as AmqpDelivery, Receiver};
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use liveops_core::ports::{hand_out, held_by_others, Delivery};
use liveops_core::{PortError, PortResult};
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::{
    app_string, bounded, handed_over, lock, message_id_text, session_of, status_code, unavailable,
    Inner,
};
use crate::frames;

/// How long a poll lingers for more messages once it has some.
const LINGER: Duration = Duration::from_millis(20);

/// How long a session link may have credit and receive nothing before it counts as idle: closed
/// once nothing it handed out is left, so the next attach takes the next player's session.
const SESSION_IDLE: Duration = Duration::from_millis(250);

/// A message received and not handed out yet.
struct Got {
    /// The link it came on.
    link: u64,
    info: DeliveryInfo,
    id: String,
    key: String,
    payload: Bytes,
    deliveries: u32,
    lock_token: Option<[u8; 16]>,
}

/// A delivery handed to a consumer and not settled yet.
struct Out {
    /// The attach (link id) it came on: only that link can settle or renew it.
    link: u64,
    info: DeliveryInfo,
    key: String,
    consumer: String,
    handed_at: Instant,
    deadline: Instant,
    lock_token: Option<[u8; 16]>,
}

/// A link of the group deliveries can be settled on: how, and the session it holds.
struct Held {
    disposer: ReceiverDisposer,
    session_id: Option<String>,
}

/// What a group's links received and handed out.
#[derive(Default)]
struct GroupState {
    /// Every link of the group (the pool's and those attached and waiting to join it), by id.
    links: HashMap<u64, Held>,
    buffer: VecDeque<Got>,
    out: HashMap<String, Out>,
    /// Acked deliveries whose settlement is being sent, by link: that link is not idle yet.
    settling: HashMap<u64, usize>,
}

impl GroupState {
    /// Whether `link` has nothing buffered, un-acked or being acked.
    fn holds_nothing(&self, link: u64) -> bool {
        self.buffer.iter().all(|m| m.link != link)
            && self.out.values().all(|o| o.link != link)
            && !self.settling.contains_key(&link)
    }
}

/// Session links attached in the background, for the next poll to take into the pool.
#[derive(Default)]
struct Arrivals {
    slots: Vec<Slot>,
    /// Attaches under way.
    attaching: usize,
    /// Why the last attach failed, for a poll that finds no link (cleared by one that answered).
    failed: Option<PortError>,
    /// No attach starts before this: one that ended without a link sooner than the wait it
    /// asked for (failed, or answered without a session) is not retried at once.
    retry_at: Option<Instant>,
}

/// A group's receiver link: the connection generation it is on, its own id (one per attach), and
/// with sessions the AMQP session it has to itself (a held attach must not hold up the others).
struct Slot {
    connection: u64,
    link: u64,
    receiver: Receiver,
    session: Option<SessionHandle<()>>,
    /// Since when it has had credit and received nothing (with sessions a link keeps its credit
    /// between polls, so this runs on across them).
    quiet_since: Option<Instant>,
    /// Its credit was taken back (without sessions, at the end of a poll) while transfers may
    /// have been on their way: nothing is read on it until credit is granted again, as
    /// `fe2o3-amqp` refuses (and drops, leaving it in flight on the broker) a transfer that
    /// comes while its credit is lower than the broker's (`TransferLimitExceeded`).
    credit_taken_back: bool,
}

impl Slot {
    /// How long the link has had credit and received nothing.
    fn quiet_for(&self, now: Instant) -> Duration {
        self.quiet_since
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    /// Notes a message received at `now`: quiet from now on while credit is left.
    fn heard(&mut self, now: Instant) {
        self.quiet_since = (self.receiver.credit() > 0).then_some(now);
    }
}

/// One consumer group's receiver links in this process.
pub(super) struct Group {
    pub(super) topic: String,
    pub(super) group: String,
    /// The links polls read; a poll holds them all.
    pool: tokio::sync::Mutex<Vec<Slot>>,
    arrivals: Mutex<Arrivals>,
    /// Rung when a background attach ends.
    arrived: tokio::sync::Notify,
    state: Mutex<GroupState>,
}

/// How one round of a poll over the pool ended.
enum Round {
    /// The poll is over (it has what it hands out).
    Done,
    /// The pool changed (a link arrived, or the last one closed): take stock and go on.
    Again,
    /// The last link failed.
    Failed(PortError),
}

/// What one renewal request covers, by the session it renews (none without sessions): the lock
/// tokens, and the ids of the deliveries whose deadline it moves.
type Renewal = (Vec<[u8; 16]>, Vec<String>);

/// A receive on one slot, giving the slot back with what came.
type Next<'a> = BoxFuture<'a, (&'a mut Slot, Result<AmqpDelivery<Body<Value>>, RecvError>)>;

fn next_on(slot: &mut Slot) -> Next<'_> {
    Box::pin(async move {
        let got = slot.receiver.recv::<Body<Value>>().await;
        (slot, got)
    })
}

impl Inner {
    pub(super) fn group(&self, topic: &str, group: &str) -> Arc<Group> {
        lock(&self.groups)
            .entry((topic.to_owned(), group.to_owned()))
            .or_insert_with(|| {
                Arc::new(Group {
                    topic: topic.to_owned(),
                    group: group.to_owned(),
                    pool: tokio::sync::Mutex::new(Vec::new()),
                    arrivals: Mutex::new(Arrivals::default()),
                    arrived: tokio::sync::Notify::new(),
                    state: Mutex::new(GroupState::default()),
                })
            })
            .clone()
    }

    /// The links this process holds for `group` of `topic`: in its pool, and attached and
    /// waiting to join it.
    pub(super) fn links_held(&self, topic: &str, group: &str) -> usize {
        let key = (topic.to_owned(), group.to_owned());
        let g = lock(&self.groups).get(&key).cloned();
        g.map_or(0, |g| lock(&g.state).links.len())
    }

    /// Reports how many links `g` holds (`bus_session_links`, with sessions only).
    fn count_links(&self, g: &Group, n: usize) {
        if self.config.sessions() {
            let (topic, group) = (g.topic.clone(), g.group.clone());
            metrics::gauge!("bus_session_links", "topic" => topic, "group" => group).set(n as f64);
        }
    }

    /// Gives a new link of `g` its id and makes its deliveries settleable.
    fn register(
        &self,
        g: &Group,
        connection: u64,
        receiver: Receiver,
        session: Option<SessionHandle<()>>,
    ) -> Slot {
        let link = self.links.fetch_add(1, Ordering::Relaxed) + 1;
        let held = Held {
            disposer: receiver.disposer(),
            session_id: session_of(&receiver),
        };
        let n = {
            let mut state = lock(&g.state);
            state.links.insert(link, held);
            state.links.len()
        };
        self.count_links(g, n);
        Slot {
            connection,
            link,
            receiver,
            session,
            quiet_since: None,
            credit_taken_back: false,
        }
    }

    /// Takes `slot` out of use: what it buffered or handed out is forgotten (the broker hands it
    /// out again once the link is gone). `close`: detach it and end its session in the
    /// background (an idle link: its session goes back to the broker at once); else, with
    /// sessions, drop it (a failed link, or one of an older connection). Without sessions a
    /// retired link is always closed in the background, after what is queued on it was read
    /// (a detach from the broker among it ends the link without one from us): the detach that
    /// dropping sends is only tried once (lost when the session's channel is full), and until
    /// the broker has it, it keeps the link's unsettled and in-flight deliveries, so the
    /// player's later messages would wait behind them.
    fn retire(&self, g: &Group, slot: Slot, close: bool) {
        let n = {
            let mut state = lock(&g.state);
            state.links.remove(&slot.link);
            state.settling.remove(&slot.link);
            state.buffer.retain(|m| m.link != slot.link);
            state.out.retain(|_, o| o.link != slot.link);
            state.links.len()
        };
        self.count_links(g, n);
        let sessions = self.config.sessions();
        if close || !sessions {
            let limit = self.config.call_timeout;
            tokio::spawn(async move {
                let Slot {
                    mut receiver,
                    session,
                    ..
                } = slot;
                if !sessions {
                    drain_queued(&mut receiver);
                }
                let _ = tokio::time::timeout(limit, receiver.close()).await;
                if let Some(mut session) = session {
                    let _ = tokio::time::timeout(limit, session.end()).await;
                }
            });
        }
    }

    /// Retires the slots of `pool` whose links are in `failed` (emptied).
    fn retire_failed(&self, g: &Group, pool: &mut Vec<Slot>, failed: &mut Vec<u64>) {
        if failed.is_empty() {
            return;
        }
        for slot in std::mem::take(pool) {
            if failed.contains(&slot.link) {
                self.retire(g, slot, false);
            } else {
                pool.push(slot);
            }
        }
        failed.clear();
    }

    /// Keeps `pool` on the current connection: drops links of an older one, and takes in the
    /// session links attached in the background (at most `session_links` in all).
    async fn adopt(&self, g: &Group, pool: &mut Vec<Slot>) {
        let current = self.generation.load(Ordering::Relaxed);
        let live = self.live.lock().await.is_some();
        // A link of a connection opened since `current` was read is fresh too.
        let fresh = |s: &Slot| s.connection > current || (s.connection == current && live);
        let arrived = std::mem::take(&mut lock(&g.arrivals).slots);
        for slot in std::mem::take(pool) {
            if fresh(&slot) {
                pool.push(slot);
            } else {
                self.retire(g, slot, false);
            }
        }
        for slot in arrived {
            if fresh(&slot) && pool.len() < self.config.session_links {
                pool.push(slot);
            } else {
                self.retire(g, slot, true);
            }
        }
    }

    /// Makes `pool` ready for a poll: without sessions the group's one link, attached here (its
    /// failure is the poll's); with sessions attaches started in the background until
    /// `session_links` are held or under way.
    async fn fill(self: &Arc<Self>, g: &Arc<Group>, pool: &mut Vec<Slot>) -> PortResult<()> {
        self.adopt(g, pool).await;
        if self.config.sessions() {
            self.top_up(g, pool.len());
            return Ok(());
        }
        if pool.is_empty() {
            let address = frames::subscription(&g.topic, &g.group);
            let (connection, receiver) = self
                .with_live(|live, me| {
                    Box::pin(async move {
                        let r = me.attach_receiver(live, &address).await?;
                        Ok((live.generation, r))
                    })
                })
                .await?;
            pool.push(self.register(g, connection, receiver, None));
        }
        Ok(())
    }

    /// Starts background attaches of session links until `held` (the pool's), those waiting to
    /// join it and those under way make `session_links`.
    fn top_up(self: &Arc<Self>, g: &Arc<Group>, held: usize) {
        let starts = {
            let mut a = lock(&g.arrivals);
            if a.retry_at.is_some_and(|t| Instant::now() < t) {
                return;
            }
            let have = held + a.slots.len() + a.attaching;
            let starts = self.config.session_links.saturating_sub(have);
            a.attaching += starts;
            starts
        };
        for _ in 0..starts {
            let (inner, g) = (self.clone(), g.clone());
            tokio::spawn(async move { inner.attach_in_background(&g).await });
        }
    }

    /// Attaches a session link for `g` (the broker holding the attach until a session is free, up
    /// to half the call timeout) and leaves it for the next poll.
    async fn attach_in_background(&self, g: &Group) {
        let address = frames::subscription(&g.topic, &g.group);
        let wait = self.config.call_timeout / 2;
        let started = Instant::now();
        let got = self
            .attach_session_receiver(&address, wait)
            .await
            .map(|got| got.map(|(c, r, s)| self.register(g, c, r, Some(s))));
        {
            let mut a = lock(&g.arrivals);
            a.attaching = a.attaching.saturating_sub(1);
            if !matches!(got, Ok(Some(_))) {
                a.retry_at = Some(started + wait);
            }
            match got {
                Ok(slot) => {
                    a.failed = None;
                    a.slots.extend(slot);
                }
                Err(error) => {
                    tracing::debug!(%error, topic = %g.topic, group = %g.group,
                        "amqp session receiver attach failed");
                    a.failed = Some(error);
                }
            }
        }
        g.arrived.notify_waiters();
    }

    /// `ensure_group`: attaches the group's link. With sessions, on an empty subscription there
    /// is no session to lock: the broker refuses the attach after the wait asked for (half the
    /// call timeout), which shows the subscription is there all the same. A session link this
    /// attaches only shows the subscription is there: it is closed at once, not kept for a poll
    /// that may never come (every process ensures every group of the module table at start, so
    /// a gateway-only process kept one player's session locked per subscription, until the lock
    /// expired, at every start; until 2026-12-06). Polls attach their own links.
    pub(super) async fn ensure_group(self: &Arc<Self>, topic: &str, group: &str) -> PortResult<()> {
        let g = self.group(topic, group);
        let mut pool = g.pool.lock().await;
        if !self.config.sessions() {
            return self.fill(&g, &mut pool).await;
        }
        self.adopt(&g, &mut pool).await;
        if !pool.is_empty() {
            return Ok(());
        }
        drop(pool);
        let address = frames::subscription(topic, group);
        let wait = self.config.call_timeout / 2;
        if let Some((_, receiver, mut session)) =
            self.attach_session_receiver(&address, wait).await?
        {
            // Its session goes back to the broker before this answers: the next attach, here or
            // in another process, may take it at once.
            let limit = self.config.call_timeout;
            let _ = tokio::time::timeout(limit, receiver.close()).await;
            let _ = tokio::time::timeout(limit, session.end()).await;
        }
        Ok(())
    }

    /// One poll: up to `max` deliveries for `consumer`, waiting up to `wait` for a first one, read
    /// from every link of the pool at once.
    pub(super) async fn poll_group(
        self: &Arc<Self>,
        g: &Arc<Group>,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> PortResult<Vec<Delivery>> {
        let until = Instant::now() + wait;
        let mut pool = g.pool.lock().await;
        let mut out = Vec::new();
        loop {
            // Registered before the pool is filled: an attach ending after that rings it.
            let arrived = g.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Err(e) = self.fill(g, &mut pool).await {
                return handed_over(out, e);
            }
            if let Some(e) = self.expire(g, &mut pool).await {
                if pool.is_empty() {
                    return handed_over(out, e);
                }
            }
            self.take(g, consumer, max, &mut out);
            if out.len() >= max {
                return Ok(out);
            }
            if pool.is_empty() {
                // With sessions, no link yet: wait for an attach to bring one.
                if let Some(e) = lock(&g.arrivals).failed.take() {
                    return handed_over(out, e);
                }
                if !out.is_empty() || Instant::now() >= until {
                    return Ok(out);
                }
                let _ = tokio::time::timeout_at(until, arrived).await;
                continue;
            }
            let round = self.round(g, &mut pool, (consumer, max), until, &mut out, arrived);
            match round.await {
                Round::Done => return Ok(out),
                Round::Again => {}
                Round::Failed(e) => return handed_over(out, e),
            }
        }
    }

    /// Reads every link of `pool` at once, as one poll would (the first message up to `until`,
    /// then a moment for more), until `out` has `max`, the wait is over or the pool changed.
    async fn round(
        self: &Arc<Self>,
        g: &Arc<Group>,
        pool: &mut Vec<Slot>,
        (consumer, max): (&str, usize),
        until: Instant,
        out: &mut Vec<Delivery>,
        mut arrived: Pin<&mut Notified<'_>>,
    ) -> Round {
        let limit = self.config.call_timeout;
        let sessions = self.config.sessions();
        let want = u32::try_from(max - out.len()).unwrap_or(u32::MAX);
        let mut failed = Vec::new();
        let mut failure = None;
        let mut got_any = !out.is_empty();
        let now = Instant::now();
        for slot in pool.iter_mut() {
            // Without sessions, a link whose credit the last poll took back gets its credit
            // first, and only then is what came since read: a transfer the broker sent before
            // it had the lower credit is then within the credit (read before, `fe2o3-amqp`
            // refuses it with `TransferLimitExceeded`, the link fails and the transfer stays in
            // flight on the broker until the link is gone). As before 2026-12-06: a detach that
            // came between polls still costs the connection there.
            let granted = slot.credit_taken_back;
            if granted {
                if let Err(e) = bounded("flow", limit, slot.receiver.set_credit(want)).await {
                    failed.push(slot.link);
                    failure = Some(e);
                    continue;
                }
                slot.credit_taken_back = false;
            }
            // What came since the last poll first (transfers of credit left, a detach): a flow
            // on a link the broker has detached would end the connection.
            if let Err(e) = self.read_queued(g, slot, &mut got_any).await {
                failed.push(slot.link);
                failure = Some(e);
                continue;
            }
            // Credit is only ever raised while transfers may be on their way: `fe2o3-amqp`
            // drops (and leaves in flight for good) a transfer beyond the credit it set last.
            // (One granted just above covers what came since: the poll asks for `want` in all.)
            if !granted && slot.receiver.credit() < want {
                if let Err(e) = bounded("flow", limit, slot.receiver.set_credit(want)).await {
                    failed.push(slot.link);
                    failure = Some(e);
                    continue;
                }
            }
            slot.quiet_since.get_or_insert(now);
        }
        // While waiting, look at the clock now and then: a delivery whose time ran out is
        // abandoned (the broker hands it out again on its link), and idle session links close.
        let mut check = (self.config.visibility_timeout / 4)
            .clamp(Duration::from_millis(50), Duration::from_millis(500));
        if sessions {
            check = check.min(SESSION_IDLE);
        }
        self.take(g, consumer, max, out);
        let mut full = out.len() >= max;
        let mut last = Instant::now();
        // When this wait is over: `until` for a first message, a moment after the last one.
        let end = |got_any: bool, last: Instant, out: &[Delivery]| {
            if !got_any {
                until
            } else if out.is_empty() {
                last + LINGER
            } else {
                (last + LINGER).min(until.max(last))
            }
        };
        loop {
            if let Some(e) = failure.take() {
                self.retire_failed(g, pool, &mut failed);
                if pool.is_empty() {
                    return Round::Failed(e);
                }
                tracing::debug!(error = %e, topic = %g.topic, group = %g.group,
                    "amqp session link failed; the pool's other links go on");
                self.top_up(g, pool.len());
            }
            let mut slice_end = end(got_any, last, out).min(Instant::now() + check);
            if let Some(idle_at) = sessions.then(|| self.next_idle(g, pool)).flatten() {
                // Wake when a link would count as idle, not at the end of the slice.
                slice_end = slice_end.min(idle_at);
            }
            let mut rung = false;
            if !full {
                let mut waiting: FuturesUnordered<Next<'_>> = pool
                    .iter_mut()
                    .filter(|s| s.receiver.credit() > 0)
                    .map(next_on)
                    .collect();
                loop {
                    tokio::select! {
                        biased;
                        Some((slot, got)) = waiting.next(), if !waiting.is_empty() => {
                            let d = match got {
                                Ok(d) => d,
                                Err(e) => {
                                    failed.push(slot.link);
                                    failure = Some(unavailable("receive", e));
                                    break;
                                }
                            };
                            let now = Instant::now();
                            slot.heard(now);
                            match self.admit(g, slot.link, &slot.receiver, d).await {
                                Ok(Some(m)) => {
                                    lock(&g.state).buffer.push_back(m);
                                    got_any = true;
                                    last = now;
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    failed.push(slot.link);
                                    failure = Some(e);
                                    break;
                                }
                            }
                            self.take(g, consumer, max, out);
                            if out.len() >= max {
                                full = true;
                                break;
                            }
                            if slot.receiver.credit() > 0 {
                                waiting.push(next_on(slot));
                            }
                            slice_end = slice_end.min(end(got_any, last, out));
                        }
                        () = tokio::time::sleep_until(slice_end) => break,
                        () = arrived.as_mut() => {
                            rung = true;
                            break;
                        }
                    }
                }
            }
            if failure.is_some() {
                continue;
            }
            if full {
                break;
            }
            if rung {
                return Round::Again;
            }
            // Buffered messages of a player another consumer held may be free now (acked).
            self.take(g, consumer, max, out);
            let now = Instant::now();
            if out.len() >= max || now >= end(got_any, last, out) {
                break;
            }
            // A wait slice ran out with nothing new.
            if let Some(e) = self.expire(g, pool).await {
                if pool.is_empty() {
                    return Round::Failed(e);
                }
            }
            if sessions && self.close_idle(g, pool).await && pool.is_empty() {
                return Round::Again;
            }
        }
        self.finish(g, pool).await
    }

    /// Buffers what `slot` received and no poll read yet (without waiting); the error of a link
    /// the broker detached meanwhile. Nothing on a link whose credit was taken back (it is read
    /// once credit is granted again).
    async fn read_queued(&self, g: &Group, slot: &mut Slot, got_any: &mut bool) -> PortResult<()> {
        if slot.credit_taken_back {
            return Ok(());
        }
        while let Some(got) = slot.receiver.recv::<Body<Value>>().now_or_never() {
            let d = got.map_err(|e| unavailable("receive", e))?;
            slot.heard(Instant::now());
            if let Some(m) = self.admit(g, slot.link, &slot.receiver, d).await? {
                lock(&g.state).buffer.push_back(m);
                *got_any = true;
            }
        }
        Ok(())
    }

    /// Ends a poll's reading. Without sessions the poll takes its unused credit back, so nothing
    /// of the group's queue is pushed to this process between polls. With sessions a link keeps
    /// it: only its own player's messages can come, and `fe2o3-amqp` drops (leaving it in flight
    /// for good) a transfer sent before a lower credit reached the broker; the links that have
    /// been idle long enough close.
    async fn finish(self: &Arc<Self>, g: &Arc<Group>, pool: &mut Vec<Slot>) -> Round {
        if self.config.sessions() {
            self.close_idle(g, pool).await;
            return Round::Done;
        }
        let limit = self.config.call_timeout;
        let mut failed = Vec::new();
        let mut failure = None;
        for slot in pool.iter_mut() {
            if slot.receiver.credit() > 0 {
                // Transfers may be on their way: not read before credit is granted again.
                slot.credit_taken_back = true;
                if let Err(e) = bounded("flow", limit, slot.receiver.set_credit(0)).await {
                    failed.push(slot.link);
                    failure = Some(e);
                }
            }
            slot.quiet_since = None;
        }
        self.retire_failed(g, pool, &mut failed);
        match failure {
            Some(e) if pool.is_empty() => Round::Failed(e),
            _ => Round::Done,
        }
    }

    /// When the first link of `pool` that holds nothing would count as idle.
    fn next_idle(&self, g: &Group, pool: &[Slot]) -> Option<Instant> {
        let state = lock(&g.state);
        pool.iter()
            .filter(|s| state.holds_nothing(s.link))
            .filter_map(|s| s.quiet_since)
            .min()
            .map(|quiet| quiet + SESSION_IDLE)
    }

    /// Closes the session links of `pool` that had credit and received nothing for
    /// [`SESSION_IDLE`] and have nothing buffered or un-acked, and starts attaches in their place;
    /// whether any closed (or failed).
    async fn close_idle(self: &Arc<Self>, g: &Arc<Group>, pool: &mut Vec<Slot>) -> bool {
        let now = Instant::now();
        // What came since the links were last read first: a link that received is not idle.
        let mut failed = Vec::new();
        for slot in pool.iter_mut() {
            if slot.quiet_for(now) >= SESSION_IDLE {
                if let Err(error) = self.read_queued(g, slot, &mut false).await {
                    tracing::debug!(%error, topic = %g.topic, group = %g.group,
                        "amqp session link failed");
                    failed.push(slot.link);
                }
            }
        }
        let gone = !failed.is_empty();
        self.retire_failed(g, pool, &mut failed);
        let idle: Vec<u64> = {
            let state = lock(&g.state);
            pool.iter()
                .filter(|s| s.quiet_for(now) >= SESSION_IDLE && state.holds_nothing(s.link))
                .map(|s| s.link)
                .collect()
        };
        if idle.is_empty() && !gone {
            return false;
        }
        for slot in std::mem::take(pool) {
            if idle.contains(&slot.link) {
                self.retire(g, slot, true);
            } else {
                pool.push(slot);
            }
        }
        self.top_up(g, pool.len());
        true
    }

    /// Abandons deliveries whose time ran out (modified, delivery-failed) and gives back
    /// buffered messages of the same keys (released) so the broker hands them out in order, each
    /// on the link it came on. A link that fails at it is retired; the error is returned.
    async fn expire(&self, g: &Group, pool: &mut Vec<Slot>) -> Option<PortError> {
        let now = Instant::now();
        if lock(&g.state).out.values().all(|o| o.deadline > now) {
            return None;
        }
        let mut failed = Vec::new();
        let mut failure = None;
        // What already came goes back too (a session link keeps its credit between polls): a
        // player's later message must not be handed out before the one abandoned.
        for slot in pool.iter_mut() {
            if let Err(e) = self.read_queued(g, slot, &mut false).await {
                failed.push(slot.link);
                failure = Some(e);
            }
        }
        self.retire_failed(g, pool, &mut failed);
        // link → (to abandon, to release)
        let mut work: BTreeMap<u64, (Vec<DeliveryInfo>, Vec<DeliveryInfo>)> = BTreeMap::new();
        {
            let mut state = lock(&g.state);
            let due: Vec<String> = state
                .out
                .iter()
                .filter(|(_, o)| o.deadline <= now)
                .map(|(id, _)| id.clone())
                .collect();
            if due.is_empty() {
                return failure;
            }
            let mut keys = BTreeSet::new();
            for id in due {
                if let Some(o) = state.out.remove(&id) {
                    keys.insert(o.key.clone());
                    if state.links.contains_key(&o.link) {
                        work.entry(o.link).or_default().0.push(o.info);
                    }
                }
            }
            let (release, keep): (Vec<Got>, Vec<Got>) =
                state.buffer.drain(..).partition(|m| keys.contains(&m.key));
            state.buffer = keep.into();
            for m in release {
                work.entry(m.link).or_default().1.push(m.info);
            }
        }
        let limit = self.config.call_timeout;
        for (link, (abandon, release)) in work {
            let Some(slot) = pool.iter().find(|s| s.link == link) else {
                continue;
            };
            let receiver = &slot.receiver;
            let result = async {
                if !abandon.is_empty() {
                    let modified = Modified {
                        delivery_failed: Some(true),
                        undeliverable_here: None,
                        message_annotations: None,
                    };
                    bounded("abandon", limit, receiver.modify_all(abandon, modified)).await?;
                }
                if !release.is_empty() {
                    bounded("release", limit, receiver.release_all(release)).await?;
                }
                PortResult::Ok(())
            }
            .await;
            if let Err(e) = result {
                failed.push(link);
                failure = Some(e);
            }
        }
        self.retire_failed(g, pool, &mut failed);
        failure
    }

    /// Hands out buffered messages to `consumer`, skipping keys another consumer holds.
    fn take(&self, g: &Group, consumer: &str, max: usize, out: &mut Vec<Delivery>) {
        let now = Instant::now();
        let mut state = lock(&g.state);
        let held = state
            .out
            .values()
            .map(|o| (o.consumer.as_str(), o.key.as_str()));
        let busy = held_by_others(consumer, held);
        let buffer = std::mem::take(&mut state.buffer);
        let hand = |m: Got, out: &mut Vec<Delivery>| {
            let mut id = m.id.clone();
            let mut n = 1;
            while state.out.contains_key(&id) {
                n += 1;
                id = format!("{}#{n}", m.id);
            }
            out.push(Delivery {
                id: id.clone(),
                key: m.key.clone(),
                payload: m.payload.clone(),
                deliveries: m.deliveries,
            });
            state.out.insert(
                id,
                Out {
                    link: m.link,
                    info: m.info,
                    key: m.key,
                    consumer: consumer.to_owned(),
                    handed_at: now,
                    deadline: now + self.config.visibility_timeout,
                    lock_token: m.lock_token,
                },
            );
        };
        state.buffer = hand_out(buffer, |m| &m.key, &busy, max, out, hand);
    }

    /// Turns a transfer on `link` into a buffered message, dead-letters it after
    /// `max_deliveries`, or completes it unread when it is a replay for another group.
    async fn admit(
        &self,
        g: &Group,
        link: u64,
        receiver: &Receiver,
        d: AmqpDelivery<Body<Value>>,
    ) -> PortResult<Option<Got>> {
        let failed = d.message().header.as_ref().map_or(0, |h| h.delivery_count);
        let tag = frames::lock_token(d.delivery_tag().as_ref());
        let message = d.message();
        let key = app_string(message, frames::KEY_PROPERTY)
            .or_else(|| message.properties.as_ref().and_then(|p| p.group_id.clone()))
            .unwrap_or_default();
        let id = message
            .properties
            .as_ref()
            .and_then(|p| p.message_id.as_ref())
            .map(message_id_text)
            .unwrap_or_else(|| format!("d{}", d.delivery_id()));
        let payload = frames::data_body(&message.body).unwrap_or_default();
        if let Some(to) = app_string(message, frames::REPLAY_PROPERTY).filter(|to| *to != g.group) {
            // A replay of another group's dead letter, which a topic without the subscription
            // rule (see the crate docs) hands to every subscription: applied here, it would
            // count again an event this group may have applied and forgotten (EVENT_RETENTION).
            bounded("accept", self.config.call_timeout, receiver.accept(&d)).await?;
            tracing::debug!(topic = %g.topic, group = %g.group, id, replay_to = %to,
                "skipped a replay for another group");
            metrics::counter!("bus_replays_skipped_total", "topic" => g.topic.clone(), "group" => g.group.clone())
                .increment(1);
            return Ok(None);
        }
        if failed >= self.config.max_deliveries {
            let reason = format!("delivered {failed} times");
            bounded(
                "dead-letter",
                self.config.call_timeout,
                receiver.reject(
                    &d,
                    frames::dead_letter_error("MaxDeliveryCountExceeded", &reason),
                ),
            )
            .await?;
            tracing::warn!(topic = %g.topic, group = %g.group, id, "moved to dead letters");
            metrics::counter!("bus_dead_letters_total", "topic" => g.topic.clone(), "group" => g.group.clone())
                .increment(1);
            return Ok(None);
        }
        Ok(Some(Got {
            link,
            info: DeliveryInfo::from(&d),
            id,
            key,
            payload: payload.into(),
            deliveries: failed + 1,
            lock_token: tag,
        }))
    }

    /// `ack`: settles each delivery `accepted` on the link it came on (a delivery of a link that
    /// is gone is forgotten: the broker hands it out again). Its player is free for the group's
    /// other consumers at once; its link is not closed as idle until the settlement is sent.
    pub(super) async fn settle(&self, g: &Group, ids: &[String]) -> PortResult<()> {
        // link → (how to settle on it, what)
        let mut settle: BTreeMap<u64, (ReceiverDisposer, Vec<DeliveryInfo>)> = BTreeMap::new();
        {
            let mut state = lock(&g.state);
            for id in ids {
                let Some(o) = state.out.remove(id) else {
                    continue;
                };
                let Some(h) = state.links.get(&o.link) else {
                    continue;
                };
                let disposer = h.disposer.clone();
                settle
                    .entry(o.link)
                    .or_insert((disposer, Vec::new()))
                    .1
                    .push(o.info);
            }
            for (link, (_, infos)) in &settle {
                *state.settling.entry(*link).or_default() += infos.len();
            }
        }
        let limit = self.config.call_timeout;
        let mut result = Ok(());
        for (link, (disposer, infos)) in settle {
            let n = infos.len();
            for info in infos {
                if result.is_ok() {
                    result = bounded("accept", limit, disposer.accept(info)).await;
                }
            }
            let mut state = lock(&g.state);
            if let Some(left) = state.settling.get_mut(&link) {
                *left = left.saturating_sub(n);
                if *left == 0 {
                    state.settling.remove(&link);
                }
            }
        }
        result
    }

    /// Renews what consumers still hold (up to `max_hold`) on the link each came on: with
    /// sessions one `renew-session-lock` per session, else one `renew-lock` for every lock
    /// token. A failure ends the round: it has dropped the connection, and with it every link
    /// whose locks the rest of the round would renew.
    pub(super) async fn renew_locks(&self) -> PortResult<()> {
        let vis = self.config.visibility_timeout;
        let now = Instant::now();
        let groups: Vec<Arc<Group>> = lock(&self.groups).values().cloned().collect();
        for g in groups {
            let mut batches: BTreeMap<Option<String>, Renewal> = BTreeMap::new();
            {
                let state = lock(&g.state);
                for (id, o) in &state.out {
                    let Some(held) = state.links.get(&o.link) else {
                        continue;
                    };
                    let holding = o.handed_at + self.config.max_hold > now;
                    if holding && o.deadline < now + vis * 2 / 3 {
                        let (tokens, ids) = batches.entry(held.session_id.clone()).or_default();
                        ids.push(id.clone());
                        tokens.extend(o.lock_token);
                    }
                }
            }
            for (session, (tokens, ids)) in batches {
                // The broker's lock runs from when it took the request: counted from the send.
                let sent = Instant::now();
                if self.config.is_azure() {
                    self.renew_request(&g, session, tokens).await?;
                }
                let until = sent + vis;
                let mut state = lock(&g.state);
                for id in ids {
                    if let Some(o) = state.out.get_mut(&id) {
                        o.deadline = until;
                    }
                }
            }
        }
        Ok(())
    }

    /// Asks the subscription's `$management` node to renew a session's lock, or message locks.
    async fn renew_request(
        &self,
        g: &Group,
        session: Option<String>,
        tokens: Vec<[u8; 16]>,
    ) -> PortResult<()> {
        let entity = frames::subscription(&g.topic, &g.group);
        self.with_live(|live, me| {
            Box::pin(async move {
                let node = frames::management(&entity);
                me.authorize(live, &node).await?;
                let answer = me
                    .ask(live, &node, "renew", |id, reply_to| match &session {
                        Some(s) => frames::renew_session_lock(id, reply_to, s),
                        None => frames::renew_lock(id, reply_to, &tokens),
                    })
                    .await?;
                match status_code(&answer, "statusCode") {
                    Some(200) => Ok(()),
                    other => Err(PortError::Unavailable(format!(
                        "renew lock: status {other:?}"
                    ))),
                }
            })
        })
        .await
    }
}

/// Reads, without waiting, what is queued on a link about to be closed, so that a detach the
/// broker sent is applied first (`close` then sends none: one for a handle the broker has freed
/// would end the connection). Transfers read here are left unsettled: the broker hands them out
/// again once the link is closed.
fn drain_queued(receiver: &mut Receiver) {
    // Each read takes a frame off the link's channel; a bound in case one kept failing at once.
    for _ in 0..100_000 {
        match receiver.recv::<Body<Value>>().now_or_never() {
            None => return,
            Some(Ok(_)) | Some(Err(RecvError::TransferLimitExceeded)) => {}
            Some(Err(_)) => return,
        }
    }
}
