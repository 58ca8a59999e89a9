//! The AMQP bus in plain-broker mode against a real AMQP 1.0 broker (`LIVEOPS_TEST_AMQP_URL`,
//! scripts/amqp-broker.py on Qpid Proton): the bus conformance suite, plus fan-out, order with two
//! consumers, holding a slow batch, broker-side dead-lettering and per-group replay, and outages.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::time::Duration;

use liveops_core::ports::BusOptions;
use liveops_core::ports::{Bus, PortError};
use liveops_servicebus::{ServiceBusBus, ServiceBusConfig};
use liveops_testkit::conformance;
use liveops_testkit::conformance::bus::{body, ids, msg, poll, publish, unique};
use liveops_testkit::conformance::bus_faults::{self, Outage};
use liveops_testkit::fixtures::server_env;
use liveops_testkit::relay::{upstream_of, Relay};
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
    let mut back = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while back.len() < 5 && Instant::now() < until {
        back.extend(poll(&next, &t, &g, "c2", 10, Duration::from_secs(1)).await);
    }
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
