//! The AMQP bus in plain-broker mode against a real AMQP 1.0 broker (`LIVEOPS_TEST_AMQP_URL`,
//! scripts/amqp-broker.py on Qpid Proton): the bus conformance suite, plus fan-out, order with two
//! consumers, holding a slow batch, broker-side dead-lettering and per-group replay, concurrent
//! publishes through a broker 20 ms away, and outages;
//! and in Azure mode (tokens, sessions as the broker implements them from the documents): the
//! session pool (`with_sessions_*`).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use liveops_core::ports::BusOptions;
use liveops_core::ports::{Bus, BusExt, Delivery, Message, PortError, PortResult};
use liveops_core::Health;
use liveops_servicebus::{ServiceBusBus, ServiceBusConfig};
use liveops_testkit::conformance;
use liveops_testkit::conformance::bus::{body, ids, msg, poll, publish, unique};
use liveops_testkit::conformance::bus_faults::{self, consume_side_by_side, Outage, SideBySide};
use liveops_testkit::fixtures::server_env;
use liveops_testkit::relay::{upstream_of, Relay};
use metrics::{Counter, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use tokio::time::Instant;

fn url() -> String {
    server_env("LIVEOPS_TEST_AMQP_URL")
}

fn config_at(url: &str) -> ServiceBusConfig {
    let mut c = ServiceBusConfig::parse(url).unwrap();
    c.visibility_timeout = Duration::from_secs(1);
    c.max_deliveries = 3;
    c.max_hold = Duration::ZERO;
    c.call_timeout = Duration::from_secs(2);
    c
}

fn config() -> ServiceBusConfig {
    config_at(&url())
}

/// The test broker spoken to as Azure: a SAS token on `$cbs` for every entity (no TLS, as for
/// the emulator), with sessions or not.
fn azure_config(sessions: bool) -> ServiceBusConfig {
    let addr = upstream_of(&url());
    let conn = format!(
        "Endpoint=sb://{addr}/;SharedAccessKeyName=liveops;SharedAccessKey=test-key;\
         UseDevelopmentEmulator=true;Sessions={sessions}"
    );
    let c = config_at(&conn);
    assert!(c.is_azure() && c.sessions() == sessions);
    c
}

/// A process-wide metrics recorder (nextest runs every test in a process of its own) that keeps
/// `bus_connections_opened_total`, `bus_replays_skipped_total` and the `bus_session_links` gauge
/// (of the one group its test reads), and drops every other metric.
#[derive(Default)]
struct Watching {
    opened: Arc<AtomicU64>,
    skipped: Arc<AtomicU64>,
    links: Arc<LinksGauge>,
}

impl metrics::Recorder for Watching {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match key.name() {
            "bus_connections_opened_total" => Counter::from_arc(self.opened.clone()),
            "bus_replays_skipped_total" => Counter::from_arc(self.skipped.clone()),
            _ => Counter::noop(),
        }
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        if key.name() == "bus_session_links" {
            Gauge::from_arc(self.links.clone())
        } else {
            Gauge::noop()
        }
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Polls `group` of `topic` as `consumer` (1 s waits, 10 at a time) until `n` deliveries came,
/// for 10 s at most; what came.
async fn poll_until(
    bus: &dyn Bus,
    topic: &str,
    group: &str,
    consumer: &str,
    n: usize,
) -> Vec<Delivery> {
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while got.len() < n && Instant::now() < until {
        got.extend(poll(bus, topic, group, consumer, 10, Duration::from_secs(1)).await);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_bus_passes_the_bus_suite() {
    let c = config();
    let opts = BusOptions {
        visibility_timeout: c.visibility_timeout,
        max_deliveries: c.max_deliveries,
    };
    let bus = ServiceBusBus::connect(c).await.unwrap();
    conformance::bus::run_all(Arc::new(bus), opts).await;
}

/// A publisher in one process reaches subscriptions consumers created in others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscription_gets_what_another_process_published() {
    let gateway = ServiceBusBus::connect(config()).await.unwrap();
    let fairness = ServiceBusBus::connect(config()).await.unwrap();
    let audit = ServiceBusBus::connect(config()).await.unwrap();
    let t = unique("fan");
    fairness.ensure_group(&t, "fairness").await.unwrap();
    audit.ensure_group(&t, "audit").await.unwrap();
    publish(&gateway, &t, vec![msg("p", "one"), msg("q", "two")]).await;
    for (bus, g) in [(&fairness, "fairness"), (&audit, "audit")] {
        let got = poll(bus, &t, g, "c", 10, Duration::from_secs(2)).await;
        assert_eq!(
            got.iter().map(body).collect::<Vec<_>>(),
            ["one", "two"],
            "{g}"
        );
        bus.ack(&t, g, &ids(&got)).await.unwrap();
        assert_eq!(bus.lag(&t, g).await.unwrap(), 0);
    }
}

/// Two consumers of one group in one process: each player's messages in order, once, and never
/// in flight to both at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_player_stays_in_order_with_two_consumers() {
    let mut c = config();
    c.visibility_timeout = Duration::from_secs(10);
    let bus = ServiceBusBus::connect(c).await.unwrap();
    bus_faults::two_consumers_keep_each_player_in_order(Arc::new(bus)).await;
}

/// A consumer that holds a batch past the visibility timeout keeps it (up to `max_hold`); once
/// it lets go the batch is abandoned and comes back counting one more delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_batch_is_not_abandoned_until_max_hold() {
    let mut c = config();
    c.visibility_timeout = Duration::from_secs(1);
    c.max_hold = Duration::from_secs(4);
    let bus = ServiceBusBus::connect(c).await.unwrap();
    let (t, g) = (unique("hold"), unique("g"));
    bus.ensure_group(&t, &g).await.unwrap();
    publish(&bus, &t, vec![msg("p", "slow")]).await;
    let got = poll(&bus, &t, &g, "c1", 10, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 1);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let again = poll(&bus, &t, &g, "c2", 10, Duration::from_millis(300)).await;
        assert!(again.is_empty(), "redelivered while held: {again:?}");
    }
    let back = poll(&bus, &t, &g, "c2", 10, Duration::from_secs(5)).await;
    assert_eq!(back.iter().map(body).collect::<Vec<_>>(), ["slow"]);
    assert_eq!(
        (back[0].id.as_str(), back[0].deliveries),
        (got[0].id.as_str(), 2)
    );
    bus.ack(&t, &g, &ids(&back)).await.unwrap();
}

/// The broker dead-letters a rejected message into the subscription's own `$deadletterqueue`;
/// replaying it reaches that group only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_per_subscription_and_replay_reaches_one_group() {
    let bus = ServiceBusBus::connect(config()).await.unwrap();
    let t = unique("dlq");
    bus_faults::dead_letters_stay_with_their_group(&bus, &t, Some(3)).await;
    assert_eq!(bus.lag(&t, "a").await.unwrap(), 0);
}

/// Without the subscription rule Terraform gives each subscription (Azure's default rule lets
/// every message of the topic in), a replay of group `a`'s dead letter also lands in group
/// `b`'s subscription, where `b` may have applied the event and forgotten it (EVENT_RETENTION).
/// The test broker applies the rule by itself, so the replay's message (as
/// `replay_dead_letters` sends it) is put into `b`'s subscription directly: `b` completes it
/// unread and counts it, and still gets what is its own (untagged, or a replay for `b`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_for_another_group_is_completed_unread() {
    use fe2o3_amqp::{Connection, Sender, Session};
    use liveops_servicebus::frames;

    let recorder = Watching::default();
    let skipped = recorder.skipped.clone();
    metrics::set_global_recorder(recorder).unwrap();
    let bus = ServiceBusBus::connect(config()).await.unwrap();
    let t = unique("replay-to");
    for g in ["a", "b"] {
        bus.ensure_group(&t, g).await.unwrap();
    }
    let mut connection = Connection::open("liveops-test-replay", url().as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut connection).await.unwrap();
    let address = format!("{t}/Subscriptions/b");
    let mut sender = Sender::attach(&mut session, "no-rule", address)
        .await
        .unwrap();
    for (id, replay_to) in [("for-a", Some("a")), ("plain", None), ("for-b", Some("b"))] {
        let m = frames::outgoing(id, "player_1", id.as_bytes(), false, replay_to);
        assert!(sender.send(m).await.unwrap().is_accepted(), "{id}");
    }
    sender.close().await.unwrap();
    session.end().await.unwrap();
    connection.close().await.unwrap();

    let got = poll_until(&bus, &t, "b", "c1", 2).await;
    let bodies: BTreeSet<String> = got.iter().map(body).collect();
    assert_eq!(bodies, BTreeSet::from(["plain".into(), "for-b".into()]));
    bus.ack(&t, "b", &ids(&got)).await.unwrap();
    let more = poll(&bus, &t, "b", "c1", 10, Duration::from_millis(500)).await;
    assert!(more.is_empty(), "the replay for a came back: {more:?}");
    // Completed, not left in the subscription nor dead-lettered there.
    assert_eq!(bus.lag(&t, "b").await.unwrap(), 0);
    assert!(bus.dead_letters(&t, "b", 10).await.unwrap().is_empty());
    assert_eq!(skipped.load(Ordering::Relaxed), 1);
}

/// A consumer that vanishes mid-batch (its connection gone without an AMQP close, as after
/// `kill -9`) loses nothing: the broker hands what it had not settled to the next consumer,
/// counting one more delivery. (The test broker used to keep such deliveries in flight for
/// good: the `kill -9` test of the split deployment lost an event to it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_consumers_deliveries_go_to_the_next_one() {
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), upstream_of(&url())).await;
    let doomed = ServiceBusBus::connect(config_at(&format!("amqp://{}", relay.addr)))
        .await
        .unwrap();
    let (t, g) = (unique("vanish"), unique("g"));
    doomed.ensure_group(&t, &g).await.unwrap();
    let sent: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    publish(&doomed, &t, sent.iter().map(|b| msg("p", b)).collect()).await;
    let got = poll(&doomed, &t, &g, "c1", 10, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 5);
    relay.kill();

    let next = ServiceBusBus::connect(config()).await.unwrap();
    let back = poll_until(&next, &t, &g, "c2", 5).await;
    assert_eq!(back.iter().map(body).collect::<Vec<_>>(), sent);
    assert!(back.iter().all(|d| d.deliveries == 2), "{back:?}");
    next.ack(&t, &g, &ids(&back)).await.unwrap();
    assert_eq!(next.lag(&t, &g).await.unwrap(), 0);
}

/// Broker unreachable, hung or gone: every call answers `Unavailable` within 5 s (call timeout
/// 1 s); when the broker is back the same bus works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_within_bounds_then_recovers() {
    let mut nowhere = config_at("amqp://127.0.0.1:1");
    nowhere.call_timeout = Duration::from_secs(1);
    bus_faults::assert_unavailable("connect", Duration::from_secs(5), async {
        ServiceBusBus::connect(nowhere)
            .await
            .map_err(PortError::from)
    })
    .await;

    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), upstream_of(&url())).await;
    let mut c = config_at(&format!("amqp://{}", relay.addr));
    c.call_timeout = Duration::from_secs(1);
    let bus = ServiceBusBus::connect(c).await.unwrap();
    // A poll only grants credit on the open link: while hung it finds nothing, without a round
    // trip to time out.
    let outage = Outage {
        within: Duration::from_secs(5),
        poll_while_hung: false,
        ack_while_down: None,
    };
    bus_faults::unavailable_then_recovers(&bus, relay, upstream_of(&url()), outage).await;
}

/// A healthcheck does not make the bus forget the entities it holds tokens for: with tokens of
/// 3 s, which the broker enforces by detaching the links of an expired audience, publish and
/// poll still work well past the lifetime of the tokens put before the healthcheck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_still_renewed_after_a_healthcheck() {
    let mut c = azure_config(false);
    c.token_ttl = Duration::from_secs(3);
    let bus = ServiceBusBus::connect(c).await.unwrap();
    let (t, g) = (unique("token"), unique("g"));
    bus.ensure_group(&t, &g).await.unwrap();
    publish(&bus, &t, vec![msg("p", "before")]).await;
    bus.healthcheck().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    bus.publish(&t, vec![msg("p", "after")]).await.unwrap();
    let got = bus
        .poll(&t, &g, "c", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(body).collect::<Vec<_>>(),
        ["before", "after"]
    );
    bus.ack(&t, &g, &ids(&got)).await.unwrap();
}

/// Publishes stuck on a connection that failed do not close the ones opened after it: with many
/// concurrent publishers and a readiness probe (whose call holds the connection while it opens
/// a new one), a relay that stalls for 1.5 s, twice, leaves every publish started once the bus
/// has recovered succeeding, on one new connection per stall. (Before, each stale failure
/// closed whichever connection was current, and the failures of that one the next.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_publish_failures_do_not_close_the_new_connection() {
    let recorder = Watching::default();
    let opened = recorder.opened.clone();
    metrics::set_global_recorder(recorder).unwrap();
    let relay = Relay::start("127.0.0.1:0".parse().unwrap(), upstream_of(&url())).await;
    let mut c = config_at(&format!("amqp://{}", relay.addr));
    c.call_timeout = Duration::from_secs(1);
    let bus = Arc::new(ServiceBusBus::connect(c).await.unwrap());
    let t = unique("blip");
    bus.ensure_group(&t, "g").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // (when the publish started, whether it succeeded)
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (bus, t, stop, results) = (bus.clone(), t.clone(), stop.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let ok = bus
                    .publish(&t, vec![msg(&format!("p{i}"), "x")])
                    .await
                    .is_ok();
                results.lock().unwrap().push((started, ok));
            }
        }));
    }
    {
        let (bus, stop) = (bus.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let _ = bus.healthcheck().await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let opened_before = opened.load(Ordering::SeqCst);
    // Publishes started within two call timeouts of the end of a stall may still meet it.
    let mut recovered = Vec::new();
    for _ in 0..2 {
        relay.stalled.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        relay.stalled.store(false, Ordering::SeqCst);
        let settled = Instant::now() + Duration::from_secs(2);
        tokio::time::sleep(Duration::from_secs(4)).await;
        // Up to a second before the next stall: a publish started later may meet it.
        recovered.push((settled, Instant::now() - Duration::from_secs(1)));
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let results = results.lock().unwrap();
    for (from, to) in &recovered {
        let late: Vec<bool> = results
            .iter()
            .filter(|(started, _)| started >= from && started < to)
            .map(|(_, ok)| *ok)
            .collect();
        assert!(
            late.len() > 16,
            "publishers kept publishing: {}",
            late.len()
        );
        let failed = late.iter().filter(|ok| !**ok).count();
        assert_eq!(
            failed,
            0,
            "{failed} of {} publishes failed after recovery",
            late.len()
        );
    }
    let opened = opened.load(Ordering::SeqCst) - opened_before;
    assert!(opened <= 2, "{opened} connections opened for 2 stalls");
}

/// A link the broker detaches while its connection stays up takes its deliveries with it: they
/// are not counted as held any more, so their player's messages go to the next consumer as soon
/// as the broker hands them out again, not after the visibility timeout. (The detach comes
/// while a poll waits on the link: a flow sent on a link the broker has detached would end the
/// connection.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_links_deliveries_are_not_held_on_the_next_link() {
    let mut c = config();
    c.visibility_timeout = Duration::from_secs(20);
    let bus = Arc::new(ServiceBusBus::connect(c).await.unwrap());
    let (t, g) = (unique("detach"), unique("g"));
    bus.ensure_group(&t, &g).await.unwrap();
    publish(&*bus, &t, vec![msg("p", "one")]).await;
    let first = poll(&*bus, &t, &g, "c1", 10, Duration::from_secs(2)).await;
    assert_eq!(first.len(), 1);
    let waiting = {
        let (bus, t, g) = (bus.clone(), t.clone(), g.clone());
        tokio::spawn(async move { bus.poll(&t, &g, "c2", 10, Duration::from_secs(3)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The test broker detaches the subscription's receivers, keeping the connection.
    let entity = format!("{t}/Subscriptions/{g}");
    publish(
        &*bus,
        &format!("$liveops-detach/{entity}"),
        vec![msg("x", "detach")],
    )
    .await;
    let cut = waiting.await.unwrap();
    assert!(cut.is_err(), "the poll on the detached link: {cut:?}");
    let mut again = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while again.is_empty() && Instant::now() < until {
        again = poll(&*bus, &t, &g, "c2", 10, Duration::from_millis(500)).await;
    }
    assert_eq!(again.iter().map(body).collect::<Vec<_>>(), ["one"]);
    assert_eq!(
        (again[0].id.as_str(), again[0].deliveries),
        (first[0].id.as_str(), 2)
    );
    // The first delivery's ack is a no-op: its link is gone.
    bus.ack(&t, &g, &ids(&first)).await.unwrap();
    bus.ack(&t, &g, &ids(&again)).await.unwrap();
    assert_eq!(bus.lag(&t, &g).await.unwrap(), 0);
}

/// Without sessions a poll takes its unused credit back at the end, while messages keep coming:
/// the transfers the broker sent before it had the lower credit are read by the next poll, once
/// it has granted credit again. (Read before, `fe2o3-amqp` refused them with
/// `TransferLimitExceeded`: the poll failed, the link was replaced and its deliveries came back
/// counting one more delivery, over and over while the stream ran; seen failing that way in the
/// served outage test, 2026-12-06.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_under_a_steady_stream_never_fail_and_read_each_message_once() {
    let mut c = config();
    c.visibility_timeout = Duration::from_secs(10);
    let bus = ServiceBusBus::connect(c.clone()).await.unwrap();
    let publisher = Arc::new(ServiceBusBus::connect(c).await.unwrap());
    let (t, g) = (unique("stream"), unique("g"));
    bus.ensure_group(&t, &g).await.unwrap();
    const N: usize = 600;
    const PLAYERS: usize = 4;
    let sending = {
        let (publisher, t) = (publisher.clone(), t.clone());
        tokio::spawn(async move {
            for i in 0..N {
                let key = format!("p{}", i % PLAYERS);
                publish(&*publisher, &t, vec![msg(&key, &i.to_string())]).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    let mut got = 0;
    let mut polls = 0;
    let until = Instant::now() + Duration::from_secs(60);
    while got < N && Instant::now() < until {
        polls += 1;
        let batch = bus
            .poll(&t, &g, "c1", 1000, Duration::from_millis(50))
            .await
            .unwrap_or_else(|e| panic!("poll {polls} (after {got} of {N}) failed: {e}"));
        for d in &batch {
            assert_eq!(d.deliveries, 1, "{} came back: {d:?}", body(d));
            seen.entry(d.key.clone())
                .or_default()
                .push(body(d).parse().unwrap());
        }
        got += batch.len();
        bus.ack(&t, &g, &ids(&batch)).await.unwrap();
    }
    sending.await.unwrap();
    assert_eq!(got, N, "read {got} of {N} in {polls} polls");
    for (key, bodies) in &seen {
        let p: usize = key[1..].parse().unwrap();
        let want: Vec<usize> = (0..N).filter(|i| i % PLAYERS == p).collect();
        assert_eq!(bodies, &want, "player {key}");
    }
    assert_eq!(bus.lag(&t, &g).await.unwrap(), 0);
}

/// With sessions (the Azure default), `ensure_group` on a subscription with no message, hence
/// no session to lock, answers `Ok` within the call timeout: the broker refuses the session
/// receiver's attach with `com.microsoft:timeout` after the wait the bus asked for, instead of
/// holding it (Service Bus's default is a minute) until the call times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_group_with_sessions_answers_on_an_empty_subscription() {
    let c = azure_config(true);
    let limit = c.call_timeout;
    let bus = ServiceBusBus::connect(c).await.unwrap();
    let (t, g) = (unique("empty"), unique("g"));
    let started = Instant::now();
    bus.ensure_group(&t, &g).await.unwrap();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    // And it still reads the subscription once something arrives.
    publish(&bus, &t, vec![msg("p1", "one")]).await;
    let got = bus
        .poll(&t, &g, "c", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["one"]);
    bus.ack(&t, &g, &ids(&got)).await.unwrap();
}

/// With sessions, `ensure_group` keeps no link: the session link it attached to see that the
/// subscription is there is closed before it answers. Every process ensures every group of the
/// module table at start, so a process that never polls the group (a gateway) would otherwise
/// keep the first player's session locked (until the lock expired, on Service Bus), and another
/// process could not read that player meanwhile. (Until 2026-12-06 the link stayed in the pool.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_group_with_sessions_holds_no_session() {
    let gateway = ServiceBusBus::connect(azure_config(true)).await.unwrap();
    // The attach of `ensure_group` finds p1's session.
    let (t, g) = sent_before_the_group(&gateway, "ensured", vec![msg("p1", "a1")]).await;
    assert_eq!(gateway.links_held(&t, &g), 0, "ensure_group kept a link");
    let consumer = ServiceBusBus::connect(pool_config(1)).await.unwrap();
    let started = Instant::now();
    let got = consumer
        .poll(&t, &g, "c", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["a1"]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "p1 was read {:?} after the poll began",
        started.elapsed()
    );
    consumer.ack(&t, &g, &ids(&got)).await.unwrap();
}

/// A TCP proxy in front of `upstream` that delays every byte by `delay` each way, keeping their
/// order: a broker `2 × delay` away. Towards `upstream` it carries at most `rate` bytes a second
/// when given (a slow link, what it cannot carry yet queued at the sender's end), else without
/// a limit. Runs until the test ends.
async fn delayed_proxy(
    upstream: std::net::SocketAddr,
    delay: Duration,
    rate: Option<usize>,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(delayed(cr, sw, delay, rate));
            tokio::spawn(delayed(sr, cw, delay, None));
        }
    });
    addr
}

/// Copies `from` to `to`, each chunk `delay` after it was read, at most `rate` bytes a second
/// when given (in pieces of a hundredth of a second's worth).
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    rate: Option<usize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        let piece = rate.map_or(usize::MAX, |r| (r / 100).max(1));
        // When the link has carried what it was given so far.
        let mut free_at = Instant::now();
        while let Some((due, bytes)) = rx.recv().await {
            for part in bytes.chunks(piece) {
                free_at = free_at.max(due);
                tokio::time::sleep_until(free_at).await;
                if to.write_all(part).await.is_err() {
                    return;
                }
                if let Some(rate) = rate {
                    free_at += Duration::from_secs_f64(part.len() as f64 / rate as f64);
                }
            }
        }
    });
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// `n` single-message publishes to `t` started at once, each answering how long it took and what.
fn rush(
    bus: &Arc<ServiceBusBus>,
    t: &str,
    n: usize,
) -> tokio::task::JoinSet<(Duration, PortResult<()>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (bus, t) = (bus.clone(), t.to_owned());
        tasks.spawn(async move {
            let started = Instant::now();
            let m = msg(&format!("p{i}"), &format!("m{i}"));
            let result = bus.publish(&t, vec![m]).await;
            (started.elapsed(), result)
        });
    }
    tasks
}

/// Publishes to one topic from many callers at once are pipelined on the topic's link: with the
/// broker 20 ms away (10 ms each way), 500 concurrent single-event publishes each answer within
/// the call timeout (or fail `Unavailable`, the gateway's 503), and each one accepted is on the
/// subscription. (Until 2026-12-06 a publish held the link until its outcome came back, and the
/// wait for the link had no bound: the last of 500 answered after 500 round trips, over 10 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_are_pipelined_and_bounded() {
    const N: usize = 500;
    let proxy = delayed_proxy(upstream_of(&url()), Duration::from_millis(10), None).await;
    let c = config_at(&format!("amqp://{proxy}"));
    let limit = c.call_timeout;
    let bus = Arc::new(ServiceBusBus::connect(c).await.unwrap());
    let t = unique("pipelined");
    bus.ensure_group(&t, "g").await.unwrap();
    // The link is attached before the rush.
    publish(&*bus, &t, vec![msg("warm", "up")]).await;
    let tasks = rush(&bus, &t, N);
    let (mut accepted, mut slowest) = (0_u64, Duration::ZERO);
    for (took, result) in tasks.join_all().await {
        slowest = slowest.max(took);
        match result {
            Ok(()) => accepted += 1,
            Err(PortError::Unavailable(_)) => {}
            Err(e) => panic!("a publish failed otherwise than Unavailable: {e}"),
        }
    }
    assert!(
        slowest <= limit + Duration::from_millis(250),
        "the slowest publish took {slowest:?} (call timeout {limit:?})"
    );
    assert_eq!(accepted, N as u64, "slowest {slowest:?}");
    assert_eq!(bus.lag(&t, "g").await.unwrap(), accepted + 1);
}

/// More publishes at once than one call timeout (2 s) can carry over a slow link (10 ms away,
/// 16 KiB a second towards the broker): each answers within the call timeout, `Ok` or
/// `Unavailable` (the gateway's 503, the client retries), and the connection stays: a publish
/// whose time ran out while the broker kept answering on the link (it waited behind others)
/// fails alone, without dropping the link and every publish in flight on it. The transfers of
/// those that gave up still reach the broker, seconds of them: the publishes after the rush wait
/// behind them and fail alone too, until one goes through, on the same connection. (Until
/// 2026-12-07 a waiting publish heard the broker's answers only to its own transfers: the first
/// publish after the rush that waited out its time behind the backlog found the link quiet, and
/// dropped the connection. The link's pace makes the overload, not the test broker's speed:
/// with a 300 ms call timeout and no pace, the broker of a loaded machine answered in bursts,
/// and a silence of over half a call timeout between them dropped the connection as stalled.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_publishes_fail_alone_and_keep_the_connection() {
    const N: usize = 1000;
    let recorder = Watching::default();
    let opened = recorder.opened.clone();
    metrics::set_global_recorder(recorder).unwrap();
    let slow = Some(16 * 1024);
    let proxy = delayed_proxy(upstream_of(&url()), Duration::from_millis(10), slow).await;
    let c = config_at(&format!("amqp://{proxy}"));
    let limit = c.call_timeout;
    let bus = Arc::new(ServiceBusBus::connect(c).await.unwrap());
    let t = unique("overload");
    bus.ensure_group(&t, "g").await.unwrap();
    publish(&*bus, &t, vec![msg("warm", "up")]).await;
    let opened_before = opened.load(Ordering::SeqCst);
    let tasks = rush(&bus, &t, N);
    let (mut accepted, mut refused, mut slowest) = (0_u64, 0_u64, Duration::ZERO);
    for (took, result) in tasks.join_all().await {
        slowest = slowest.max(took);
        match result {
            Ok(()) => accepted += 1,
            Err(PortError::Unavailable(_)) => refused += 1,
            Err(e) => panic!("a publish failed otherwise than Unavailable: {e}"),
        }
    }
    assert!(
        slowest <= limit + Duration::from_millis(250),
        "the slowest publish took {slowest:?} (call timeout {limit:?})"
    );
    assert!(refused > 0, "no publish was refused: not an overload");
    assert!(accepted > 0, "none accepted");
    // The next publishes wait behind the backlog; the same connection carries one through.
    let (mut behind, until) = (0, Instant::now() + Duration::from_secs(30));
    loop {
        match bus.publish(&t, vec![msg("after", "after")]).await {
            Ok(()) => break,
            Err(PortError::Unavailable(e)) => {
                behind += 1;
                assert!(
                    Instant::now() < until,
                    "{behind} publishes after the rush: {e}"
                );
            }
            Err(e) => panic!("a publish after the rush failed otherwise than Unavailable: {e}"),
        }
    }
    eprintln!("{accepted} accepted, {refused} refused, then {behind} behind the backlog");
    assert_eq!(
        opened.load(Ordering::SeqCst) - opened_before,
        0,
        "the connection was dropped ({accepted} accepted, {refused} refused, {behind} behind)"
    );
    assert!(
        behind > 0,
        "no publish waited out its time behind the backlog"
    );
}

/// With sessions a link holds one player's session; once that player's messages are acked and
/// none is left, a poll closes the link and the next attach takes the next player's session,
/// so a short poll returns p2 after p1. (One link per group, so the pool cannot read p2 beside
/// p1: what a single link does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_a_poll_moves_on_to_the_next_player() {
    let bus = ServiceBusBus::connect(pool_config(1)).await.unwrap();
    // The first attach finds p1's session.
    let sent = vec![msg("p1", "a1"), msg("p2", "b1"), msg("p1", "a2")];
    let (t, g) = sent_before_the_group(&bus, "sessions", sent).await;
    let first = bus
        .poll(&t, &g, "c", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(first.iter().map(body).collect::<Vec<_>>(), ["a1", "a2"]);
    assert!(first.iter().all(|d| d.key == "p1"), "{first:?}");
    bus.ack(&t, &g, &ids(&first)).await.unwrap();
    let next = bus
        .poll(&t, &g, "c", 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(next.iter().map(body).collect::<Vec<_>>(), ["b1"]);
    assert_eq!(next[0].key, "p2");
    bus.ack(&t, &g, &ids(&next)).await.unwrap();
}

/// With sessions and one link, polls as short as the consumers' (200 ms, under the 250 ms idle
/// time) still move on to the next player: the link's idle time adds up over polls. (Until
/// 2026-12-06 it had to pass within one poll, and p2 was never read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_short_polls_move_on_to_the_next_player() {
    let bus = ServiceBusBus::connect(pool_config(1)).await.unwrap();
    let (t, g) = sent_before_the_group(&bus, "short", vec![msg("p1", "a1"), msg("p2", "b1")]).await;
    let mut bodies = Vec::new();
    for _ in 0..25 {
        let got = poll(&bus, &t, &g, "c", 10, Duration::from_millis(200)).await;
        bus.ack(&t, &g, &ids(&got)).await.unwrap();
        bodies.extend(got.iter().map(body));
        if bodies.len() == 2 {
            break;
        }
    }
    assert_eq!(bodies, ["a1", "b1"], "after 25 polls of 200 ms");
}

/// A pool of no session links is refused before anything is asked of the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_no_session_links_is_refused() {
    let mut c = ServiceBusConfig::parse("amqp://127.0.0.1:1").unwrap();
    c.session_links = 0;
    let e = ServiceBusBus::connect(c).await.unwrap_err();
    assert!(e.to_string().contains("session_links"), "{e}");
}

/// A new topic `what` and group: `sent` is published to the topic before the group exists, and
/// the broker keeps it for the group's first subscription (with sessions, the first attach finds
/// the first player's session).
async fn sent_before_the_group(bus: &dyn Bus, what: &str, sent: Vec<Message>) -> (String, String) {
    let (t, g) = (unique(what), unique("g"));
    publish(bus, &t, sent).await;
    bus.ensure_group(&t, &g).await.unwrap();
    (t, g)
}

/// The test broker spoken to as Azure with sessions, `links` session links per group.
fn pool_config(links: usize) -> ServiceBusConfig {
    let mut c = azure_config(true);
    c.session_links = links;
    c
}

/// `each` messages for each of `players` players (`player_<k>`), bodies `player_<k>:<i>` as
/// [`bus_faults::each_next_in_order`] reads them, the players interleaved.
fn players(players: usize, each: usize) -> Vec<Message> {
    (0..each)
        .flat_map(|i| {
            (0..players).map(move |k| msg(&format!("player_{k}"), &format!("player_{k}:{i}")))
        })
        .collect()
}

/// The players a batch holds messages of.
fn keys_of(got: &[Delivery]) -> BTreeSet<String> {
    got.iter().map(|d| d.key.clone()).collect()
}

/// The last and the highest value set on the `bus_session_links` gauge (non-negative, so the
/// bits of the `f64` order as the values do).
#[derive(Default)]
struct LinksGauge {
    last: AtomicU64,
    max: AtomicU64,
}

impl GaugeFn for LinksGauge {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, value: f64) {
        self.last.store(value.to_bits(), Ordering::SeqCst);
        self.max.fetch_max(value.to_bits(), Ordering::SeqCst);
    }
}

impl LinksGauge {
    fn last(&self) -> f64 {
        f64::from_bits(self.last.load(Ordering::SeqCst))
    }
    fn max(&self) -> f64 {
        f64::from_bits(self.max.load(Ordering::SeqCst))
    }
}

/// With sessions a group's links in one process hold several players' sessions at once (a
/// pool): a poll, or one of the first few, hands out more than one player's messages, each
/// player's in order, and the pool holds one link per player with messages un-acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_one_poll_reads_several_players() {
    let bus = ServiceBusBus::connect(pool_config(8)).await.unwrap();
    let (t, g) = (unique("pool"), unique("g"));
    bus.ensure_group(&t, &g).await.unwrap();
    publish(&bus, &t, players(4, 3)).await;
    let next = Mutex::new(HashMap::new());
    let (mut all, mut polls, mut widest) = (Vec::new(), 0, 0);
    let until = Instant::now() + Duration::from_secs(10);
    while all.len() < 12 && Instant::now() < until {
        let got = poll(&bus, &t, &g, "c", 100, Duration::from_secs(1)).await;
        bus_faults::each_next_in_order(&next, &got, "c");
        widest = widest.max(keys_of(&got).len());
        polls += 1;
        all.extend(got);
        assert!(bus.links_held(&t, &g) <= 8);
    }
    assert_eq!(all.len(), 12, "{all:?}");
    assert!(widest > 1, "no poll of {polls} read more than one player");
    assert_eq!(
        bus.links_held(&t, &g),
        4,
        "one link per player with messages un-acked"
    );
    bus.ack(&t, &g, &ids(&all)).await.unwrap();
}

/// Two processes (two buses) share a group with sessions, each with a pool of 4 links, for 16
/// players: every player's messages arrive in order and once, never in flight in both
/// processes at once (a player's session is on one link at a time, by the broker's lock), both
/// processes get work, and polls read several players at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_each_player_stays_in_order_across_two_processes() {
    const PLAYERS: usize = 16;
    const EACH: usize = 10;
    let config = || {
        let mut c = pool_config(4);
        c.visibility_timeout = Duration::from_secs(10);
        c
    };
    let first: Arc<dyn Bus> = Arc::new(ServiceBusBus::connect(config()).await.unwrap());
    let second: Arc<dyn Bus> = Arc::new(ServiceBusBus::connect(config()).await.unwrap());
    let (t, g) = sent_before_the_group(&*first, "pools", players(PLAYERS, EACH)).await;
    second.ensure_group(&t, &g).await.unwrap();
    let side = SideBySide {
        consumers: vec![("first", first), ("second", second)],
        max: 15,
        work: Duration::from_millis(20),
        holds: |d| d.key.clone(),
        // Released only once acked: until then the session stays with this process.
        held_until_acked: true,
    };
    let read = consume_side_by_side(side, &t, &g, PLAYERS * EACH).await;
    let counts = read.handled;
    assert_eq!(counts.iter().sum::<usize>(), PLAYERS * EACH, "{counts:?}");
    assert!(
        counts.iter().all(|n| *n > 0),
        "both processes got work: {counts:?}"
    );
    assert!(read.widest > 1, "no poll read more than one player");
}

/// With sessions and a pool of 2 links for 6 players, polled as the consumers poll (200 ms):
/// the link of a player whose messages were acked falls idle and is closed, and its slot takes
/// another player's session, so all 6 are read, in order, never more than 2 at once. Once
/// everything is read no link stays held, and the `bus_session_links` gauge says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_idle_links_are_released_and_other_players_taken() {
    let recorder = Watching::default();
    let gauge = recorder.links.clone();
    metrics::set_global_recorder(recorder).unwrap();
    let bus = ServiceBusBus::connect(pool_config(2)).await.unwrap();
    let (t, g) = sent_before_the_group(&bus, "release", players(6, 2)).await;
    let next = Mutex::new(HashMap::new());
    let (mut read, mut seen) = (0, BTreeSet::new());
    let until = Instant::now() + Duration::from_secs(15);
    while read < 12 && Instant::now() < until {
        let got = poll(&bus, &t, &g, "c", 100, Duration::from_millis(200)).await;
        let keys = keys_of(&got);
        assert!(keys.len() <= 2, "more players than links: {keys:?}");
        assert!(bus.links_held(&t, &g) <= 2);
        bus_faults::each_next_in_order(&next, &got, "c");
        read += got.len();
        seen.extend(keys);
        bus.ack(&t, &g, &ids(&got)).await.unwrap();
    }
    assert_eq!((read, seen.len()), (12, 6), "{seen:?}");
    // Nothing left: the idle links close, and attaches find no session to hold.
    let until = Instant::now() + Duration::from_secs(10);
    while bus.links_held(&t, &g) > 0 {
        assert!(Instant::now() < until, "links still held");
        let none = poll(&bus, &t, &g, "c", 100, Duration::from_millis(200)).await;
        assert!(none.is_empty(), "{none:?}");
    }
    assert_eq!((gauge.last(), gauge.max()), (0.0, 2.0));
}

/// With sessions, a link that fails (the broker detaches it, as Service Bus does when a
/// session's lock is lost) takes nothing with it: its player's un-acked deliveries come back in
/// order, counting one more delivery, on another link of the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_a_failed_links_deliveries_come_back_in_order() {
    let mut c = pool_config(4);
    c.visibility_timeout = Duration::from_secs(20);
    let bus = Arc::new(ServiceBusBus::connect(c).await.unwrap());
    let sent = ["p1:0", "p2:0", "p1:1", "p2:1", "p1:2"];
    let sent = sent.iter().map(|b| msg(&b[..2], b)).collect();
    let (t, g) = sent_before_the_group(&*bus, "lost", sent).await;
    let first = poll_until(&*bus, &t, &g, "c1", 5).await;
    let (p1, p2): (Vec<Delivery>, Vec<Delivery>) = first.into_iter().partition(|d| d.key == "p1");
    assert_eq!(
        p1.iter().map(body).collect::<Vec<_>>(),
        ["p1:0", "p1:1", "p1:2"]
    );
    assert_eq!(p2.len(), 2, "{p2:?}");
    bus.ack(&t, &g, &ids(&p2)).await.unwrap();
    // A poll waits on the pool while the broker detaches the link holding p1's session.
    let waiting = {
        let (bus, t, g) = (bus.clone(), t.clone(), g.clone());
        tokio::spawn(async move { bus.poll(&t, &g, "c2", 10, Duration::from_secs(3)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let entity = format!("{t}/Subscriptions/{g}");
    let detach = format!("$liveops-detach/{entity}");
    publish(&*bus, &detach, vec![msg("p1", "session")]).await;
    // The waiting poll fails if p1's link was the last of the pool (p2's closed, idle).
    let mut back = waiting.await.unwrap().unwrap_or_default();
    let until = Instant::now() + Duration::from_secs(10);
    while back.len() < 3 && Instant::now() < until {
        back.extend(poll(&*bus, &t, &g, "c2", 10, Duration::from_secs(1)).await);
    }
    assert_eq!(
        back.iter().map(body).collect::<Vec<_>>(),
        ["p1:0", "p1:1", "p1:2"]
    );
    assert_eq!(ids(&back), ids(&p1));
    assert!(back.iter().all(|d| d.deliveries == 2), "{back:?}");
    // The first deliveries' ack is a no-op: their link is gone.
    bus.ack(&t, &g, &ids(&p1)).await.unwrap();
    bus.ack(&t, &g, &ids(&back)).await.unwrap();
    let none = poll(&*bus, &t, &g, "c2", 10, Duration::from_millis(500)).await;
    assert!(none.is_empty(), "{none:?}");
}

/// Many players with a few events each (48 × 2), polled as the consumers poll (200 ms): with a
/// pool of 8 links a process reads them in well under half the time one link needs, whose every
/// switch of player waits out the idle time (47 × 250 ms, near 12 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_many_players_are_read_side_by_side() {
    const PLAYERS: usize = 48;
    let bus = ServiceBusBus::connect(pool_config(8)).await.unwrap();
    let (t, g) = sent_before_the_group(&bus, "crowd", players(PLAYERS, 2)).await;
    let next = Mutex::new(HashMap::new());
    let started = Instant::now();
    let mut read = 0;
    while read < PLAYERS * 2 && started.elapsed() < Duration::from_secs(30) {
        let got = poll(&bus, &t, &g, "c", 100, Duration::from_millis(200)).await;
        bus_faults::each_next_in_order(&next, &got, "c");
        read += got.len();
        bus.ack(&t, &g, &ids(&got)).await.unwrap();
    }
    let took = started.elapsed();
    assert_eq!(read, PLAYERS * 2);
    let one_link = Duration::from_millis(250) * (PLAYERS as u32 - 1);
    eprintln!("{PLAYERS} players read in {took:?} (one link: over {one_link:?})");
    assert!(took < one_link / 2, "took {took:?}");
}

/// With sessions, a link the broker detaches between two polls (its session's lock lost while
/// no poll reads it) is seen before the next poll grants it credit: the connection stays (a flow
/// on the detached link would make the test broker end it), and the player's un-acked
/// deliveries come back in order on another link of the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_a_link_detached_between_polls_costs_no_connection() {
    let recorder = Watching::default();
    let opened = recorder.opened.clone();
    metrics::set_global_recorder(recorder).unwrap();
    let mut c = pool_config(4);
    c.visibility_timeout = Duration::from_secs(20);
    let bus = ServiceBusBus::connect(c).await.unwrap();
    let sent = vec![msg("p1", "p1:0"), msg("p1", "p1:1")];
    let (t, g) = sent_before_the_group(&bus, "between", sent).await;
    let first = poll_until(&bus, &t, &g, "c", 2).await;
    assert_eq!(first.iter().map(body).collect::<Vec<_>>(), ["p1:0", "p1:1"]);
    let opened_before = opened.load(Ordering::SeqCst);
    let detach = format!("$liveops-detach/{t}/Subscriptions/{g}");
    publish(&bus, &detach, vec![msg("p1", "session")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = poll_until(&bus, &t, &g, "c", 2).await;
    assert_eq!(back.iter().map(body).collect::<Vec<_>>(), ["p1:0", "p1:1"]);
    assert!(back.iter().all(|d| d.deliveries == 2), "{back:?}");
    assert_eq!(
        opened.load(Ordering::SeqCst),
        opened_before,
        "a connection was opened again"
    );
    bus.ack(&t, &g, &ids(&back)).await.unwrap();
}

/// With sessions a link keeps its credit between polls, so a player's later messages may reach
/// the process while an earlier one is still held. When that one's time runs out it comes back
/// before them: the later ones already received are given back with it, and the broker hands
/// the player's messages out again in order (the abandoned ones counting one more delivery).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sessions_an_abandoned_delivery_comes_back_before_later_ones() {
    let bus = ServiceBusBus::connect(pool_config(2)).await.unwrap();
    let sent = vec![msg("p1", "p1:0"), msg("p1", "p1:1")];
    let (t, g) = sent_before_the_group(&bus, "abandon", sent).await;
    let first = poll_until(&bus, &t, &g, "c", 2).await;
    assert_eq!(first.iter().map(body).collect::<Vec<_>>(), ["p1:0", "p1:1"]);
    // Pushed to the link's credit left while p1:0 and p1:1 are held and not acked.
    let later = vec![msg("p1", "p1:2"), msg("p1", "p1:3"), msg("p1", "p1:4")];
    publish(&bus, &t, later).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let back = poll_until(&bus, &t, &g, "c", 5).await;
    let got: Vec<(String, u32)> = back.iter().map(|d| (body(d), d.deliveries)).collect();
    let want = [
        ("p1:0", 2),
        ("p1:1", 2),
        ("p1:2", 1),
        ("p1:3", 1),
        ("p1:4", 1),
    ];
    let want: Vec<(String, u32)> = want.iter().map(|(b, n)| ((*b).to_owned(), *n)).collect();
    assert_eq!(got, want);
    bus.ack(&t, &g, &ids(&back)).await.unwrap();
}
