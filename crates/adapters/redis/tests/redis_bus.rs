//! The Redis Streams bus against a real Redis (`LIVEOPS_TEST_REDIS_URL`): the bus conformance
//! suite, plus partitioning, dead letters per group, trimming, throughput, outages, a consumer
//! leaving its group, and heartbeat failures counted.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use liveops_core::ports::{Bus, BusExt, BusOptions, Message};
use liveops_redis::bus::{partition_of, RedisBus};
use liveops_testkit::conformance;
use liveops_testkit::conformance::bus::{
    ack_all_but, body, ids, msg, poll, publish, read_to_the_end, unique, SUITE_OPTIONS,
};
use liveops_testkit::conformance::bus_faults::{
    assert_unavailable, consume_side_by_side, unavailable_then_recovers, Outage, SideBySide,
};
use liveops_testkit::fixtures::server_env;
use liveops_testkit::relay::{upstream_of, Relay};
use tokio::time::Instant;

/// The tests share one Redis and a 2-core machine; timing-sensitive checks run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn redis_url() -> String {
    server_env("LIVEOPS_TEST_REDIS_URL")
}

async fn bus(opts: BusOptions, partitions: u32) -> RedisBus {
    RedisBus::connect(&redis_url(), opts, partitions)
        .await
        .unwrap()
}

/// A bus with `partitions` per topic, and the lock that keeps this file's tests one at a time.
async fn serial_bus(
    visibility_timeout: Duration,
    max_deliveries: u32,
    partitions: u32,
) -> (tokio::sync::MutexGuard<'static, ()>, RedisBus) {
    let serial = SERIAL.lock().await;
    let opts = BusOptions {
        visibility_timeout,
        max_deliveries,
    };
    (serial, bus(opts, partitions).await)
}

/// Deletes every key of `topic` (they carry the topic as hash tag).
async fn drop_topic(topic: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("bus:{{{topic}}}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_passes_the_bus_suite() {
    let _serial = SERIAL.lock().await;
    let opts = SUITE_OPTIONS;
    conformance::bus::run_all(Arc::new(bus(opts, 4).await), opts).await;
}

/// Two consumers of one group over 4 partitions: each key's messages are handled in order and
/// exactly once, both consumers get work, and never do both handle one partition at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_stays_in_order_with_two_consumers_of_one_group() {
    const KEYS: usize = 16;
    const EACH: usize = 60;
    let (_serial, bus) = serial_bus(Duration::from_secs(5), 5, 4).await;
    let bus: Arc<dyn Bus> = Arc::new(bus);
    let (t, g) = (unique("order"), unique("g"));
    let keys: Vec<String> = (0..KEYS).map(|k| format!("player_{k}")).collect();
    let used: HashSet<u32> = keys.iter().map(|k| partition_of(k, 4)).collect();
    assert!(used.len() >= 3, "keys should spread over the partitions");

    bus.ensure_group(&t, &g).await.unwrap();
    for i in 0..EACH {
        // Each batch lists the keys in another order.
        let batch = (0..KEYS)
            .map(|j| &keys[(j * 5 + i) % KEYS])
            .map(|k| msg(k, &format!("{k}:{i}")))
            .collect();
        publish(&*bus, &t, batch).await;
    }
    assert_eq!(bus.lag(&t, &g).await.unwrap(), (KEYS * EACH) as u64);

    let side = SideBySide {
        consumers: vec![("c1", bus.clone()), ("c2", bus.clone())],
        // Small polls and real work, so that the first consumer is still busy with its
        // partitions when the second takes its leases (a consumer with none naps 200 ms).
        max: 10,
        // Some work, then done with these partitions, then ack.
        work: Duration::from_millis(20),
        holds: |d| format!("partition {}", d.id.split(':').next().unwrap()),
        held_until_acked: false,
    };
    let read = consume_side_by_side(side, &t, &g, KEYS * EACH).await;
    let (next, handled) = (read.next, read.handled);
    assert_eq!(next.len(), KEYS);
    assert!(next.values().all(|n| *n == EACH), "{next:?}");
    assert_eq!(handled.iter().sum::<usize>(), KEYS * EACH, "{handled:?}");
    assert!(
        handled.iter().all(|n| *n > 0),
        "both consumers should get a share: {handled:?}"
    );
    assert_eq!(bus.lag(&t, &g).await.unwrap(), 0);
    bus.leave(&t, &g, "c1").await.unwrap();
    bus.leave(&t, &g, "c2").await.unwrap();
    drop_topic(&t).await;
}

/// A poison message is dead-lettered in the group that failed it only; replaying it hands it
/// to that group again (from its retry stream), never to the other group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_replayed_to_their_group_only() {
    let (_serial, bus) = serial_bus(Duration::from_secs(1), 2, 4).await;
    let (t, a, b) = (unique("dlq"), unique("a"), unique("b"));
    bus.ensure_group(&t, &a).await.unwrap();
    bus.ensure_group(&t, &b).await.unwrap();
    let sent = vec![
        msg("alice", "poison"),
        msg("bob", "fine1"),
        msg("carol", "fine2"),
    ];
    publish(&bus, &t, sent).await;

    // Group b handles everything.
    let got_b = poll(&bus, &t, &b, "cb", 10, Duration::from_secs(2)).await;
    assert_eq!(
        got_b.iter().map(body).collect::<Vec<_>>(),
        ["poison", "fine1", "fine2"]
    );
    bus.ack(&t, &b, &ids(&got_b)).await.unwrap();

    // Group a never acks the poison.
    let mut deliveries = Vec::new();
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until && bus.dead_letters(&t, &a, 10).await.unwrap().is_empty() {
        let got = poll(&bus, &t, &a, "ca", 10, Duration::from_millis(500)).await;
        let poison = ack_all_but(&bus, &t, &a, &got, "poison").await;
        deliveries.extend(poison.iter().map(|d| d.deliveries));
    }
    assert_eq!(deliveries, [1, 2]);
    let dead = bus.dead_letters(&t, &a, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            body(&dead[0]).as_str(),
            dead[0].key.as_str(),
            dead[0].deliveries
        ),
        ("poison", "alice", 2)
    );
    assert_eq!(
        dead[0].id.split(':').next().unwrap(),
        partition_of("alice", 4).to_string()
    );
    assert!(bus.dead_letters(&t, &b, 10).await.unwrap().is_empty());
    assert_eq!(bus.lag(&t, &a).await.unwrap(), 0);

    assert_eq!(bus.replay_dead_letters(&t, &a).await.unwrap(), 1);
    assert!(bus.dead_letters(&t, &a, 10).await.unwrap().is_empty());
    assert_eq!(
        bus.lag(&t, &a).await.unwrap(),
        1,
        "the replayed message is lag again"
    );
    assert_eq!(bus.lag(&t, &b).await.unwrap(), 0, "b is not concerned");
    let none = poll(&bus, &t, &b, "cb", 10, Duration::from_millis(800)).await;
    assert!(
        none.is_empty(),
        "replay leaked into another group: {none:?}"
    );

    let again = poll(&bus, &t, &a, "ca", 10, Duration::from_secs(2)).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        (
            body(&again[0]).as_str(),
            again[0].key.as_str(),
            again[0].deliveries
        ),
        ("poison", "alice", 1)
    );
    assert!(again[0].id.starts_with("r:"), "{}", again[0].id);
    bus.ack(&t, &a, &ids(&again)).await.unwrap();
    assert_eq!(bus.lag(&t, &a).await.unwrap(), 0);
    assert_eq!(bus.replay_dead_letters(&t, &a).await.unwrap(), 0);
    drop_topic(&t).await;
}

/// A consumer stops without acking what it holds: the consumer that takes its partition over
/// first gets those messages back (after the visibility timeout), and only then newer ones of
/// the same key, so the key's order survives the hand-over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_finishes_what_the_old_one_left_before_reading_on() {
    let (_serial, bus) = serial_bus(Duration::from_secs(1), 5, 2).await;
    let (t, g) = (unique("handover"), unique("g"));
    bus.ensure_group(&t, &g).await.unwrap();
    let sent = (0..4).map(|i| msg("alice", &format!("m{i}"))).collect();
    publish(&bus, &t, sent).await;
    let first = poll(&bus, &t, &g, "c1", 2, Duration::from_secs(1)).await;
    assert_eq!(first.iter().map(body).collect::<Vec<_>>(), ["m0", "m1"]);
    // c1 goes away holding m0 and m1; c2 may take its partitions at once.
    bus.leave(&t, &g, "c1").await.unwrap();

    let start = Instant::now();
    let mut got: Vec<(String, u32)> = Vec::new();
    while got.len() < 4 && start.elapsed() < Duration::from_secs(10) {
        let batch = poll(&bus, &t, &g, "c2", 10, Duration::from_millis(300)).await;
        if got.is_empty() && !batch.is_empty() {
            assert!(
                start.elapsed() >= Duration::from_millis(700),
                "c2 read before c1's messages timed out: {batch:?}"
            );
        }
        got.extend(batch.iter().map(|d| (body(d), d.deliveries)));
        bus.ack(&t, &g, &ids(&batch)).await.unwrap();
    }
    let want: Vec<(String, u32)> = vec![
        ("m0".into(), 2),
        ("m1".into(), 2),
        ("m2".into(), 1),
        ("m3".into(), 1),
    ];
    assert_eq!(got, want);
    assert_eq!(bus.lag(&t, &g).await.unwrap(), 0);
    drop_topic(&t).await;
}

/// Every message lands in the partition stream of its key, whatever else is in its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_land_in_the_partition_of_their_key() {
    let _serial = SERIAL.lock().await;
    let bus = bus(BusOptions::default(), 4).await;
    let t = unique("layout");
    for b in 0..10_usize {
        let batch = (0..b + 1)
            .map(|i| msg(&format!("k{}", (i * 7 + b * 3) % 13), &format!("{b}:{i}")))
            .collect();
        publish(&bus, &t, batch).await;
    }
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut total = 0;
    for p in 0..4 {
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(format!("bus:{{{t}}}:p:{p}"))
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .unwrap();
        for e in &entries.ids {
            let key: String = e.get("k").unwrap();
            assert_eq!(partition_of(&key, 4), p, "{key} in partition {p}");
        }
        total += entries.ids.len();
    }
    assert_eq!(total, 55);
    drop_topic(&t).await;
}

/// Redis lost the topic (a restart without persistence): groups, sequence and partition pin are
/// re-created by the next publish and poll, with no restart of the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_when_redis_lost_the_topic() {
    let _serial = SERIAL.lock().await;
    let bus = bus(BusOptions::default(), 4).await;
    let (t, g) = (unique("lost"), unique("g"));
    bus.ensure_group(&t, &g).await.unwrap();
    publish(&bus, &t, vec![msg("p1", "old1"), msg("p2", "old2")]).await;
    let got = poll(&bus, &t, &g, "c", 10, Duration::from_secs(1)).await;
    assert_eq!(got.len(), 2);

    drop_topic(&t).await;
    bus.ack(&t, &g, &ids(&got)).await.unwrap();
    assert_eq!(bus.lag(&t, &g).await.unwrap(), 0);
    publish(&bus, &t, vec![msg("p1", "new1"), msg("p3", "new2")]).await;
    let got = poll(&bus, &t, &g, "c", 10, Duration::from_secs(1)).await;
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["new1", "new2"]);
    assert!(got.iter().all(|d| d.deliveries == 1));
    bus.ack(&t, &g, &ids(&got)).await.unwrap();
    assert_eq!(bus.lag(&t, &g).await.unwrap(), 0);
    drop_topic(&t).await;
}

/// `MAXLEN ~` keeps each partition stream near its bound however much is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxlen_keeps_the_streams_bounded() {
    let _serial = SERIAL.lock().await;
    let bus = bus(BusOptions::default(), 2).await.with_max_len(100);
    let t = unique("trim");
    for b in 0..30 {
        let batch = (0..100)
            .map(|i| msg(&format!("p{i}"), &format!("{b}:{i}")))
            .collect();
        publish(&bus, &t, batch).await;
    }
    let len = bus.stream_len(&t).await.unwrap();
    // Approximate trimming removes whole stream nodes (100 entries by default) at a time.
    assert!(
        (200..=400).contains(&len),
        "3000 published, 2 partitions of MAXLEN ~100: {len} retained"
    );
    // Newest entries survive: a new group reads the tail.
    let g = unique("g");
    bus.ensure_group(&t, &g).await.unwrap();
    let got = poll(&bus, &t, &g, "c", 1000, Duration::from_secs(1)).await;
    assert_eq!(got.len() as u64, len);
    assert!(got.iter().any(|d| body(d) == "29:99"));
    drop_topic(&t).await;
}

/// Reads `group` of `topic` to the end as consumer `c`: the bodies in the order read.
async fn read_all(bus: &RedisBus, topic: &str, group: &str) -> Vec<String> {
    read_to_the_end(bus, topic, group, "c", Duration::from_millis(200)).await
}

/// Polls `group` once with nothing for it (the poll only trims) and returns the topic's length.
async fn idle_poll_then_len(bus: &RedisBus, topic: &str, group: &str) -> u64 {
    let got = poll(bus, topic, group, "c", 10, Duration::from_millis(50)).await;
    assert!(got.is_empty(), "{} unexpected deliveries", got.len());
    bus.stream_len(topic).await.unwrap()
}

/// The serial lock, a bus of 2 partitions, and a fresh topic with two groups, ensured.
async fn topic_of_two_groups(
    tag: &str,
) -> (tokio::sync::MutexGuard<'static, ()>, RedisBus, [String; 3]) {
    let serial = SERIAL.lock().await;
    let bus = bus(BusOptions::default(), 2).await;
    let names = [unique(tag), unique("g1"), unique("g2")];
    for g in &names[1..] {
        bus.ensure_group(&names[0], g).await.unwrap();
    }
    (serial, bus, names)
}

/// A partition stream keeps every entry some group has not acked (unread, or in a consumer's
/// hands) and loses what every group acked as the groups' consumers poll: the bus holds what is
/// still to do, not its last million events, and the slow group still gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_keep_what_a_group_still_needs_and_drop_what_all_acked() {
    let (_serial, bus, [t, fast, slow]) = topic_of_two_groups("progress").await;
    let mut sent = Vec::new();
    for b in 0..30 {
        let batch: Vec<Message> = (0..100)
            .map(|i| msg(&format!("p{i}"), &format!("{b}:{i}")))
            .collect();
        sent.extend(
            batch
                .iter()
                .map(|m| String::from_utf8_lossy(&m.payload).into_owned()),
        );
        publish(&bus, &t, batch).await;
    }
    assert_eq!(read_all(&bus, &t, &fast).await.len(), 3000);
    assert_eq!(
        bus.stream_len(&t).await.unwrap(),
        3000,
        "the slow group read nothing yet"
    );

    // In the slow group's hands, not acked: still kept after the fast group polls again.
    let held = poll(&bus, &t, &slow, "c", 1000, Duration::from_secs(1)).await;
    assert_eq!(held.len(), 1000);
    assert_eq!(
        idle_poll_then_len(&bus, &t, &fast).await,
        3000,
        "pending entries are kept"
    );

    // Acked: the next poll drops them (Redis 6.2 whole nodes of at most 100 entries, else exactly
    // all but the last read of each partition).
    bus.ack(&t, &slow, &ids(&held)).await.unwrap();
    let len = idle_poll_then_len(&bus, &t, &fast).await;
    assert!(
        (2000..=2200).contains(&len),
        "2000 unread by the slow group: {len} kept"
    );

    let mut got: Vec<String> = held.iter().map(body).collect();
    got.extend(read_all(&bus, &t, &slow).await);
    idle_poll_then_len(&bus, &t, &fast).await;
    idle_poll_then_len(&bus, &t, &fast).await;
    let len = idle_poll_then_len(&bus, &t, &fast).await;
    assert!(len <= 200, "all acked by both groups: {len} kept");
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "the slow group got every message once");
    drop_topic(&t).await;
}

/// Redis lost everything (a restart without persistence) and the gateway published again: the
/// first group to poll brings back the other groups this process ensured, so what it acks is
/// not trimmed before the others have read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_redis_lost_come_back_before_anything_is_trimmed() {
    let (_serial, bus, [t, first, later]) = topic_of_two_groups("lostgroups").await;
    drop_topic(&t).await;
    let sent: Vec<Message> = (0..300)
        .map(|i| msg(&format!("p{i}"), &format!("m{i}")))
        .collect();
    publish(&bus, &t, sent).await;

    assert_eq!(read_all(&bus, &t, &first).await.len(), 300);
    assert_eq!(
        idle_poll_then_len(&bus, &t, &first).await,
        300,
        "the later group read nothing yet"
    );
    assert_eq!(read_all(&bus, &t, &later).await.len(), 300);
    drop_topic(&t).await;
}

/// Publishing batches of 100 messages: every message lands, and the rate is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_throughput_in_batches_of_100() {
    const BATCHES: usize = 200;
    let _serial = SERIAL.lock().await;
    let bus = Arc::new(bus(BusOptions::default(), 8).await);
    let t = unique("rate");
    let payload = "x".repeat(200);
    let batch = |b: usize| -> Vec<Message> {
        (0..100)
            .map(|i| msg(&format!("player_{}", (b * 100 + i) % 5000), &payload))
            .collect()
    };
    bus.publish(&t, batch(0)).await.unwrap(); // warm-up: pins the topic, loads the script

    let start = Instant::now();
    for b in 0..BATCHES {
        bus.publish(&t, batch(b)).await.unwrap();
    }
    let one = (BATCHES * 100) as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..4 {
        let (bus, t) = (bus.clone(), t.clone());
        let batches: Vec<Vec<Message>> = (0..BATCHES / 4).map(|b| batch(task * 1000 + b)).collect();
        tasks.push(tokio::spawn(async move {
            for m in batches {
                bus.publish(&t, m).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let four = (BATCHES * 100) as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "redis bus publish, batches of 100 × 200-byte payloads: {one:.0} msg/s from one publisher, {four:.0} msg/s from four"
    );
    assert_eq!(
        bus.stream_len(&t).await.unwrap(),
        (2 * BATCHES * 100 + 100) as u64
    );
    drop_topic(&t).await;
}

/// Redis unreachable, hung or gone: every call answers `Unavailable` within 3 s; when Redis is
/// back the same bus works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_within_3s_then_recovers() {
    let _serial = SERIAL.lock().await;
    let opts = SUITE_OPTIONS;
    let within = Duration::from_secs(3);
    // Nothing listens there.
    assert_unavailable(
        "connect",
        within,
        RedisBus::connect("redis://127.0.0.1:1/", opts, 4),
    )
    .await;

    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), upstream_of(&redis_url())).await;
    let bus = RedisBus::connect(&format!("redis://{}/", relay.addr), opts, 4)
        .await
        .unwrap();
    let outage = Outage {
        within,
        poll_while_hung: true,
        ack_while_down: Some("0:1-0".to_owned()),
    };
    let (t, relay) =
        unavailable_then_recovers(&bus, relay, upstream_of(&redis_url()), outage).await;
    relay.kill();
    drop_topic(&t).await;
}

/// A consumer that stops gracefully leaves its group (`Bus::leave`, which
/// `liveops_module::consume::run_batches` calls once its loop has stopped): a message published
/// afterwards to a partition it held reaches the group's other consumer within 300 ms, not once
/// its leases lapse (a lease is the visibility timeout, 5 s here, as in production at most).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_leaves_hands_its_partitions_over_at_once() {
    let (_serial, bus) = serial_bus(Duration::from_secs(5), 5, 4).await;
    let (t, g) = (unique("leave"), unique("g"));
    bus.ensure_group(&t, &g).await.unwrap();
    let quick = Duration::from_millis(50);
    // c1 takes every slot alone; c2 joins; c1's next poll gives back what is above its share
    // (3 of 5), and c2 takes that: each now holds some partitions.
    for consumer in ["c1", "c2", "c1", "c2"] {
        assert!(poll(&bus, &t, &g, consumer, 10, quick).await.is_empty());
    }
    // One key for each partition: every partition c1 held gets a message.
    let keys: Vec<String> = (0..4)
        .map(|p| {
            (0..)
                .map(|i| format!("player_{i}"))
                .find(|k| partition_of(k, 4) == p)
                .unwrap()
        })
        .collect();
    let stopping: &dyn Bus = &bus;
    stopping.leave(&t, &g, "c1").await.unwrap();
    let sent: Vec<Message> = keys.iter().map(|k| msg(k, k)).collect();
    publish(&bus, &t, sent).await;
    let published = Instant::now();
    let mut got = Vec::new();
    while got.len() < 4 && published.elapsed() < Duration::from_secs(10) {
        let batch = poll(&bus, &t, &g, "c2", 10, Duration::from_millis(100)).await;
        bus.ack(&t, &g, &ids(&batch)).await.unwrap();
        got.extend(batch.iter().map(body));
    }
    let took = published.elapsed();
    got.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(got, want);
    assert!(
        took < Duration::from_millis(300),
        "c2 read c1's partitions {took:?} after the publish"
    );
    drop_topic(&t).await;
}

/// Keeps `bus_heartbeat_failures_total{bus="redis"}` and drops every other metric (nextest runs
/// each test in a process of its own, so this test may set the process's recorder).
struct HeartbeatFailures(Arc<std::sync::atomic::AtomicU64>);

impl metrics::Recorder for HeartbeatFailures {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let redis = key
            .labels()
            .any(|l| l.key() == "bus" && l.value() == "redis");
        if key.name() == "bus_heartbeat_failures_total" && redis {
            metrics::Counter::from_arc(self.0.clone())
        } else {
            metrics::Counter::noop()
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// A consumer's heartbeat that fails is counted (`bus_heartbeat_failures_total{bus="redis"}`,
/// and logged at warn once per run of failures): while the consumer holds a delivery, its Redis
/// (one of the test's own) pauses every client for 3 s (`CLIENT PAUSE`), so a beat gets no
/// answer within the call timeout. (Until 2026-12-06 such failures were logged at debug only.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_heartbeats_are_counted() {
    use liveops_testkit::redis_server::{closed_port, redis_cli, OwnRedis};
    use std::sync::atomic::{AtomicU64, Ordering};
    let failures = Arc::new(AtomicU64::new(0));
    metrics::set_global_recorder(HeartbeatFailures(failures.clone())).unwrap();
    let port = closed_port();
    let _redis = OwnRedis::start(port, &[]);
    let url = format!("redis://127.0.0.1:{port}/");
    // A lease of 1 s: a beat every 333 ms, for as long as the delivery is held (1 s).
    let opts = BusOptions {
        visibility_timeout: Duration::from_secs(1),
        max_deliveries: 5,
    };
    let started = Instant::now();
    let bus = loop {
        match RedisBus::connect(&url, opts, 2).await {
            Ok(bus) => break bus,
            Err(e) if started.elapsed() > Duration::from_secs(10) => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    bus.ensure_group("beats", "g").await.unwrap();
    publish(&bus, "beats", vec![msg("p1", "m1")]).await;
    let held = poll(&bus, "beats", "g", "c1", 10, Duration::from_secs(1)).await;
    assert_eq!(held.len(), 1);
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    redis_cli(port, &["CLIENT", "PAUSE", "3000"]).await;
    // The first beat in the pause fails after the 2 s call timeout.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        failures.load(Ordering::SeqCst) >= 1,
        "no heartbeat failure counted"
    );
}
