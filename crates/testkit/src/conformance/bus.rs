//! The `Bus` contract, as a suite any backend can run: `run_all(Arc::new(bus), opts).await`,
//! where `opts` are the [`BusOptions`] the bus was built with. Build it with a short visibility
//! timeout (1 s) and few deliveries (3): the timed checks wait for them.
//!
//! Every topic and group carries a random suffix, so runs can share a real server. The checks that
//! wait for the clock run side by side.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use liveops_core::ports::{Bus, BusExt, BusOptions, Delivery, Message, PortResult};
use tokio::time::Instant;

use super::ok;

/// Slack for timers and a busy machine.
const MARGIN: Duration = Duration::from_millis(500);

/// How many publishers the crowd check runs side by side, and how many messages each sends.
#[derive(Clone, Copy, Debug)]
pub struct Crowd {
    /// Concurrent publishers.
    pub publishers: usize,
    /// Single-message publishes per publisher.
    pub each: usize,
}

/// The crowd every bus takes unless its test says why it cannot (8 × 200).
pub const CROWD: Crowd = Crowd {
    publishers: 8,
    each: 200,
};

/// The options the suite's timed checks are written for: a visibility timeout of 1 s and 3
/// deliveries at most.
pub const SUITE_OPTIONS: BusOptions = BusOptions {
    visibility_timeout: Duration::from_secs(1),
    max_deliveries: 3,
};

/// Runs every check of the suite.
pub async fn run_all(bus: Arc<dyn Bus>, opts: BusOptions) {
    run_all_with(bus, opts, CROWD).await;
}

/// Runs every check of the suite, the crowd check with `crowd` (a smaller one only for a
/// backend whose test states why, e.g. an emulator that serves one request at a time).
pub async fn run_all_with(bus: Arc<dyn Bus>, opts: BusOptions, crowd: Crowd) {
    assert!(
        opts.visibility_timeout <= Duration::from_secs(5),
        "build the bus with a short visibility timeout for this suite"
    );
    let b: &dyn Bus = bus.as_ref();
    healthcheck(b).await;
    publish_then_poll_in_order(b).await;
    every_group_gets_every_message(b).await;
    new_group_starts_at_the_oldest_message(b).await;
    lag_counts_new_and_in_flight(b).await;
    poll_waits_then_wakes_on_publish(bus.clone()).await;
    concurrent_publishers_lose_nothing_with(bus.clone(), crowd).await;
    tokio::join!(
        unacked_messages_come_back_after_the_timeout(b, &opts),
        acked_messages_never_come_back(b, &opts),
        dead_letter_after_max_deliveries_then_replay(b, &opts),
    );
}

/// A topic or group name unique to this run.
pub fn unique(what: &str) -> String {
    format!("conformance.{what}.{:016x}", rand::random::<u64>())
}

/// A message with a text body.
pub fn msg(key: &str, body: &str) -> Message {
    Message {
        id: format!("{:016x}", rand::random::<u64>()),
        key: key.to_owned(),
        payload: body.as_bytes().to_vec().into(),
    }
}

/// A delivery's body as text.
pub fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.payload).into_owned()
}

/// The ids to ack deliveries with.
pub fn ids(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.id.clone()).collect()
}

/// Publishes `messages` to `topic`; an error panics.
pub async fn publish(bus: &dyn Bus, topic: &str, messages: Vec<Message>) {
    ok(bus.publish(topic, messages).await, "publish");
}

/// What one poll of `topic` by `consumer` in `group` brings (at most `max`, waiting up to
/// `wait`); an error panics.
pub async fn poll(
    bus: &dyn Bus,
    topic: &str,
    group: &str,
    consumer: &str,
    max: usize,
    wait: Duration,
) -> Vec<Delivery> {
    ok(bus.poll(topic, group, consumer, max, wait).await, "poll")
}

/// Acks every delivery of `got` in `group` of `topic` but those whose body is `failing` (what a
/// consumer does whose handler fails on that message), and returns those; an error panics.
pub async fn ack_all_but<'a>(
    bus: &dyn Bus,
    topic: &str,
    group: &str,
    got: &'a [Delivery],
    failing: &str,
) -> Vec<&'a Delivery> {
    let (failed, fine): (Vec<&Delivery>, Vec<&Delivery>) =
        got.iter().partition(|d| body(d) == failing);
    let fine: Vec<String> = fine.iter().map(|d| d.id.clone()).collect();
    ok(bus.ack(topic, group, &fine).await, "ack");
    failed
}

/// Reads `group` as `consumer` until a poll of `wait` finds nothing, acking each batch, and
/// returns the bodies in the order read.
pub async fn read_to_the_end(
    bus: &dyn Bus,
    topic: &str,
    group: &str,
    consumer: &str,
    wait: Duration,
) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let got = poll(bus, topic, group, consumer, 1000, wait).await;
        if got.is_empty() {
            return bodies;
        }
        ok(bus.ack(topic, group, &ids(&got)).await, "ack");
        bodies.extend(got.iter().map(body));
    }
}

/// Polls until `n` messages arrived or `within` passed.
async fn drain(
    bus: &dyn Bus,
    topic: &str,
    group: &str,
    n: usize,
    within: Duration,
) -> Vec<Delivery> {
    let until = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let batch = poll(
            bus,
            topic,
            group,
            "c1",
            n - got.len(),
            left.min(Duration::from_secs(1)),
        )
        .await;
        got.extend(batch);
    }
    got
}

/// The backend answers its health check.
pub async fn healthcheck(bus: &dyn Bus) {
    ok(bus.healthcheck().await, "healthcheck");
}

/// Messages come out in the order they went in, once each, then nothing until more arrive.
pub async fn publish_then_poll_in_order(bus: &dyn Bus) {
    let (t, g) = (unique("order"), unique("g"));
    ok(bus.ensure_group(&t, &g).await, "ensure_group");
    publish(
        bus,
        &t,
        vec![msg("p1", "m0"), msg("p2", "m1"), msg("p1", "m2")],
    )
    .await;
    publish(bus, &t, vec![msg("p3", "m3"), msg("p1", "m4")]).await;
    ok(bus.publish(&t, Vec::new()).await, "publish nothing");

    let first = poll(bus, &t, &g, "c1", 2, Duration::from_secs(2)).await;
    assert!(
        (1..=2).contains(&first.len()),
        "poll(max=2) gave {}",
        first.len()
    );
    let mut got = first;
    got.extend(drain(bus, &t, &g, 5 - got.len(), Duration::from_secs(5)).await);
    let bodies: Vec<String> = got.iter().map(body).collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    let keys: Vec<&str> = got.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["p1", "p2", "p1", "p3", "p1"]);
    assert!(got.iter().all(|d| d.deliveries == 1), "{got:?}");
    assert_eq!(
        ids(&got).into_iter().collect::<HashSet<_>>().len(),
        5,
        "ids must be distinct"
    );

    let more = poll(bus, &t, &g, "c1", 10, Duration::ZERO).await;
    assert!(
        more.is_empty(),
        "in-flight messages were handed out again: {more:?}"
    );
    ok(bus.ack(&t, &g, &ids(&got)).await, "ack");
    ok(
        bus.ack(&t, &g, &ids(&got)).await,
        "acking twice is harmless",
    );
    assert_eq!(ok(bus.lag(&t, &g).await, "lag"), 0);
}

/// Two groups on one topic each get every message; acking in one leaves the other alone.
pub async fn every_group_gets_every_message(bus: &dyn Bus) {
    let (t, a, b) = (unique("fanout"), unique("a"), unique("b"));
    ok(bus.ensure_group(&t, &a).await, "ensure_group a");
    ok(bus.ensure_group(&t, &b).await, "ensure_group b");
    let sent: Vec<Message> = (0..4).map(|i| msg("p", &format!("m{i}"))).collect();
    publish(bus, &t, sent).await;

    let got_a = drain(bus, &t, &a, 4, Duration::from_secs(5)).await;
    let got_b = drain(bus, &t, &b, 4, Duration::from_secs(5)).await;
    let want = ["m0", "m1", "m2", "m3"];
    assert_eq!(got_a.iter().map(body).collect::<Vec<_>>(), want);
    assert_eq!(got_b.iter().map(body).collect::<Vec<_>>(), want);

    ok(bus.ack(&t, &a, &ids(&got_a)).await, "ack a");
    assert_eq!(ok(bus.lag(&t, &a).await, "lag a"), 0);
    assert_eq!(ok(bus.lag(&t, &b).await, "lag b"), 4, "b has 4 in flight");
    ok(bus.ack(&t, &b, &ids(&got_b)).await, "ack b");
    assert_eq!(ok(bus.lag(&t, &b).await, "lag b"), 0);
}

/// A group created after messages were published still gets them; creating it again changes
/// nothing.
pub async fn new_group_starts_at_the_oldest_message(bus: &dyn Bus) {
    let (t, g) = (unique("late"), unique("g"));
    publish(bus, &t, vec![msg("p", "early0"), msg("p", "early1")]).await;
    ok(bus.ensure_group(&t, &g).await, "ensure_group");
    let got = drain(bus, &t, &g, 2, Duration::from_secs(5)).await;
    assert_eq!(
        got.iter().map(body).collect::<Vec<_>>(),
        ["early0", "early1"]
    );
    ok(bus.ack(&t, &g, &ids(&got)).await, "ack");
    ok(bus.ensure_group(&t, &g).await, "ensure_group again");
    let again = poll(bus, &t, &g, "c1", 10, Duration::ZERO).await;
    assert!(again.is_empty(), "ensure_group reset the group: {again:?}");
}

/// Lag counts messages not yet handed out plus those in flight.
pub async fn lag_counts_new_and_in_flight(bus: &dyn Bus) {
    let (t, g) = (unique("lag"), unique("g"));
    ok(bus.ensure_group(&t, &g).await, "ensure_group");
    assert_eq!(ok(bus.lag(&t, &g).await, "lag"), 0);
    let sent: Vec<Message> = (0..5).map(|i| msg("p", &format!("m{i}"))).collect();
    publish(bus, &t, sent).await;
    assert_eq!(ok(bus.lag(&t, &g).await, "lag"), 5);
    let two = drain(bus, &t, &g, 2, Duration::from_secs(5)).await;
    assert_eq!(two.len(), 2);
    assert_eq!(
        ok(bus.lag(&t, &g).await, "lag"),
        5,
        "in flight still counts"
    );
    ok(bus.ack(&t, &g, &ids(&two)).await, "ack");
    assert_eq!(ok(bus.lag(&t, &g).await, "lag"), 3);
    let rest = drain(bus, &t, &g, 3, Duration::from_secs(5)).await;
    ok(bus.ack(&t, &g, &ids(&rest)).await, "ack");
    assert_eq!(ok(bus.lag(&t, &g).await, "lag"), 0);
}

/// An empty poll waits its full `wait`; a publish during the wait ends it early.
pub async fn poll_waits_then_wakes_on_publish(bus: Arc<dyn Bus>) {
    let (t, g) = (unique("wake"), unique("g"));
    ok(bus.ensure_group(&t, &g).await, "ensure_group");
    let start = Instant::now();
    let none = poll(&*bus, &t, &g, "c1", 10, Duration::from_millis(400)).await;
    assert!(none.is_empty());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(350),
        "returned after {waited:?}, before the wait was over"
    );

    let publisher = {
        let (bus, t) = (bus.clone(), t.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            bus.publish(&t, vec![msg("p", "late")]).await
        })
    };
    let start = Instant::now();
    let got = poll(&*bus, &t, &g, "c1", 10, Duration::from_secs(10)).await;
    let waited = start.elapsed();
    ok(
        publisher.await.unwrap_or_else(|e| panic!("publisher: {e}")),
        "publish",
    );
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["late"]);
    assert!(
        waited < Duration::from_millis(200) + MARGIN * 2,
        "poll woke {waited:?} after it started; a publish must wake it promptly"
    );
    ok(bus.ack(&t, &g, &ids(&got)).await, "ack");
}

/// 8 publishers × 200 single-message publishes: every message delivered exactly once, each
/// publisher's messages in the order it sent them.
pub async fn concurrent_publishers_lose_nothing(bus: Arc<dyn Bus>) {
    concurrent_publishers_lose_nothing_with(bus, CROWD).await;
}

/// [`concurrent_publishers_lose_nothing`] with `crowd.publishers` × `crowd.each` publishes.
pub async fn concurrent_publishers_lose_nothing_with(bus: Arc<dyn Bus>, crowd: Crowd) {
    let (publishers, each) = (crowd.publishers, crowd.each);
    let (t, g) = (unique("crowd"), unique("g"));
    ok(bus.ensure_group(&t, &g).await, "ensure_group");
    let mut tasks = Vec::new();
    for task in 0..publishers {
        let (bus, t) = (bus.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                bus.publish(&t, vec![msg(&format!("k{task}"), &format!("{task}:{i}"))])
                    .await?;
            }
            PortResult::Ok(())
        }));
    }
    for task in tasks {
        ok(
            task.await.unwrap_or_else(|e| panic!("publisher: {e}")),
            "publish",
        );
    }

    // Body → (its delivery count, when it was delivered): a second delivery names both, which
    // tells a redelivery by the bus (count 2) from a copy handed out twice (count 1 again).
    let mut seen: HashMap<String, (u32, Duration)> = HashMap::new();
    let mut last: HashMap<String, usize> = HashMap::new();
    let start = Instant::now();
    let until = start + Duration::from_secs(30);
    while seen.len() < publishers * each && Instant::now() < until {
        let batch = poll(&*bus, &t, &g, "c1", 500, Duration::from_secs(1)).await;
        for d in &batch {
            let b = body(d);
            let now = (d.deliveries, start.elapsed());
            if let Some(first) = seen.insert(b.clone(), now) {
                panic!("{b} delivered twice: (delivery, at) {first:?} then {now:?}");
            }
            let i: usize = b
                .split_once(':')
                .and_then(|(_, i)| i.parse().ok())
                .unwrap_or_else(|| panic!("bad body {b}"));
            if let Some(prev) = last.insert(d.key.clone(), i) {
                assert!(prev < i, "{}: {i} came after {prev}", d.key);
            }
        }
        ok(bus.ack(&t, &g, &ids(&batch)).await, "ack");
    }
    assert_eq!(seen.len(), publishers * each, "messages lost");
    assert_eq!(ok(bus.lag(&t, &g).await, "lag"), 0);
    let extra = poll(&*bus, &t, &g, "c1", 10, Duration::ZERO).await;
    assert!(extra.is_empty(), "acked messages came back: {extra:?}");
}

/// A message not acked within the visibility timeout is handed out again, counting deliveries.
pub async fn unacked_messages_come_back_after_the_timeout(bus: &dyn Bus, opts: &BusOptions) {
    let (t, g) = (unique("redeliver"), unique("g"));
    ok(bus.ensure_group(&t, &g).await, "ensure_group");
    publish(bus, &t, vec![msg("p", "again")]).await;
    let first = drain(bus, &t, &g, 1, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].deliveries, 1);
    let hidden = poll(bus, &t, &g, "c2", 10, Duration::ZERO).await;
    assert!(hidden.is_empty(), "visible before its timeout: {hidden:?}");

    tokio::time::sleep(opts.visibility_timeout).await;
    let second = poll(bus, &t, &g, "c2", 10, MARGIN + Duration::from_secs(2)).await;
    assert_eq!(second.len(), 1, "not redelivered: {second:?}");
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(body(&second[0]), "again");
    assert_eq!(second[0].key, "p");
    assert_eq!(second[0].deliveries, 2);
    ok(bus.ack(&t, &g, &ids(&second)).await, "ack");
    assert_eq!(ok(bus.lag(&t, &g).await, "lag"), 0);
}

/// An acked message stays gone after the visibility timeout.
pub async fn acked_messages_never_come_back(bus: &dyn Bus, opts: &BusOptions) {
    let (t, g) = (unique("acked"), unique("g"));
    ok(bus.ensure_group(&t, &g).await, "ensure_group");
    publish(bus, &t, vec![msg("p", "a"), msg("p", "b")]).await;
    let got = drain(bus, &t, &g, 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    ok(bus.ack(&t, &g, &[got[0].id.clone()]).await, "ack");
    tokio::time::sleep(opts.visibility_timeout + MARGIN).await;
    let back = poll(bus, &t, &g, "c1", 10, Duration::from_secs(2)).await;
    assert_eq!(
        back.iter().map(body).collect::<Vec<_>>(),
        ["b"],
        "only the unacked one returns"
    );
    ok(bus.ack(&t, &g, &ids(&back)).await, "ack");
}

/// After `max_deliveries` unacked deliveries a message goes to the dead letters, leaves the lag,
/// and a replay hands it out again with its delivery count reset.
pub async fn dead_letter_after_max_deliveries_then_replay(bus: &dyn Bus, opts: &BusOptions) {
    let (t, g) = (unique("dead"), unique("g"));
    ok(bus.ensure_group(&t, &g).await, "ensure_group");
    publish(bus, &t, vec![msg("p", "poison"), msg("p", "fine")]).await;
    let wait = opts.visibility_timeout + MARGIN + Duration::from_secs(2);
    for n in 1..=opts.max_deliveries {
        let got = drain(bus, &t, &g, if n == 1 { 2 } else { 1 }, wait).await;
        if n == 1 {
            let fine: Vec<String> = got
                .iter()
                .filter(|d| body(d) == "fine")
                .map(|d| d.id.clone())
                .collect();
            assert_eq!(fine.len(), 1, "{got:?}");
            ok(bus.ack(&t, &g, &fine).await, "ack");
        }
        let poison: Vec<&Delivery> = got.iter().filter(|d| body(d) == "poison").collect();
        assert_eq!(poison.len(), 1, "delivery {n}: {got:?}");
        assert_eq!(poison[0].deliveries, n);
    }
    // One more timeout: the next poll moves it to the dead letters instead of delivering it.
    tokio::time::sleep(opts.visibility_timeout + MARGIN).await;
    let none = poll(bus, &t, &g, "c1", 10, MARGIN).await;
    assert!(none.is_empty(), "delivered past max_deliveries: {none:?}");
    let dead = ok(bus.dead_letters(&t, &g, 10).await, "dead_letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(body(&dead[0]), "poison");
    assert_eq!(dead[0].key, "p");
    assert_eq!(dead[0].deliveries, opts.max_deliveries);
    assert_eq!(
        ok(bus.lag(&t, &g).await, "lag"),
        0,
        "dead letters are not lag"
    );

    assert_eq!(ok(bus.replay_dead_letters(&t, &g).await, "replay"), 1);
    assert!(ok(bus.dead_letters(&t, &g, 10).await, "dead_letters").is_empty());
    let again = drain(bus, &t, &g, 1, Duration::from_secs(5)).await;
    assert_eq!(again.len(), 1, "replayed message not delivered");
    assert_eq!(body(&again[0]), "poison");
    assert_eq!(again[0].deliveries, 1, "replay resets the delivery count");
    ok(bus.ack(&t, &g, &ids(&again)).await, "ack");
    assert_eq!(ok(bus.lag(&t, &g).await, "lag"), 0);
    assert_eq!(ok(bus.replay_dead_letters(&t, &g).await, "replay"), 0);
}
