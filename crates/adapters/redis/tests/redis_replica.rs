//! The Redis bus waiting for replicas (`BUS_REDIS_REPLICAS`), against a primary and a replica of
//! this test's own: a failover keeps every publish the bus acknowledged, a publish the replicas
//! did not confirm in time is refused rather than acknowledged, and with `away` (ADR 0022)
//! intake goes on while a replica is away and waits for it again once it is back.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use liveops_core::ports::{Bus, BusOptions};
use liveops_core::PortError;
use liveops_redis::bus::{RedisBus, ReplicaAcks};
use liveops_testkit::conformance::bus::{msg, read_to_the_end, SUITE_OPTIONS};
use liveops_testkit::redis_server::{
    closed_port, redis_cli, until_replication, BehindOneAddress, OwnRedis, RelayedReplica,
};

const TOPIC: &str = "replicated";
const GROUP: &str = "g";
const WAIT: Duration = Duration::from_millis(300);

/// Waits for `replicas`, `away` of which may be away, for [`WAIT`] at most.
fn acks(replicas: u32, away: u32) -> ReplicaAcks {
    ReplicaAcks {
        replicas,
        wait: WAIT,
        away,
    }
}

/// A bus on the Redis at `port` waiting for [`acks`]`(replicas, away)`.
async fn acked(port: u16, replicas: u32, away: u32) -> RedisBus {
    connect(port, SUITE_OPTIONS)
        .await
        .with_replica_acks(acks(replicas, away))
}

async fn connect(port: u16, opts: BusOptions) -> RedisBus {
    RedisBus::connect(&format!("redis://127.0.0.1:{port}/"), opts, 2)
        .await
        .unwrap()
}

/// Every body the group still has to read on `bus`.
async fn bodies(bus: &RedisBus) -> HashSet<String> {
    read_to_the_end(bus, TOPIC, GROUP, "reader", Duration::from_millis(300))
        .await
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_failover_keeps_every_publish_the_replica_acknowledged() {
    // The replica follows through a relay that can hold back the replication stream.
    let pair = RelayedReplica::start().await;
    let (p, r) = (pair.primary_port, pair.replica_port);

    let acked = acked(p, 1, 0).await;
    let plain = connect(p, SUITE_OPTIONS).await;
    acked.ensure_group(TOPIC, GROUP).await.unwrap();

    // While the replica follows, every publish (one message or many) is acknowledged.
    let mut confirmed = HashSet::new();
    for i in 0..20 {
        let batch: Vec<_> = (0..i % 4 + 1).map(|j| format!("acked-{i}-{j}")).collect();
        let messages = batch.iter().map(|b| msg(&format!("p{i}"), b)).collect();
        acked.publish(TOPIC, messages).await.unwrap();
        confirmed.extend(batch);
    }

    // The link stalls: the primary still takes writes, the replica no longer gets them.
    pair.link.stalled.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let refused = acked.publish(TOPIC, vec![msg("p", "refused")]).await;
    let took = started.elapsed();
    assert!(
        matches!(refused, Err(PortError::Unavailable(ref m)) if m.contains("0 of 1 replicas")),
        "{refused:?}"
    );
    assert!(
        took >= WAIT && took < WAIT + Duration::from_secs(2),
        "{took:?}"
    );
    // Without waiting for replicas the same write is acknowledged, on the primary alone.
    plain
        .publish(TOPIC, vec![msg("p", "unreplicated")])
        .await
        .unwrap();

    // The primary dies (SIGKILL) with what it had not yet sent, and the replica takes over.
    let _promoted = pair.fail_over().await;

    let promoted = connect(r, SUITE_OPTIONS).await;
    let kept = bodies(&promoted).await;
    let lost: Vec<_> = confirmed.difference(&kept).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(!kept.contains("refused"));
    // The write acknowledged without a replica is what a failover loses.
    assert!(!kept.contains("unreplicated"), "{kept:?}");
    assert_eq!(kept.len(), confirmed.len());
}

#[tokio::test]
async fn without_a_replica_every_publish_waiting_for_one_is_refused() {
    let port = closed_port();
    let _alone = OwnRedis::start(port, &[]);
    until_replication(port, "role:master").await;
    let bus = acked(port, 1, 0).await;
    bus.ensure_group(TOPIC, GROUP).await.unwrap();
    for _ in 0..3 {
        let refused = bus.publish(TOPIC, vec![msg("p", "x")]).await;
        assert!(
            matches!(refused, Err(PortError::Unavailable(_))),
            "{refused:?}"
        );
    }
    // No replicas asked for: the same bus acknowledges.
    let bus = bus.with_replica_acks(acks(0, 0));
    bus.publish(TOPIC, vec![msg("p", "y")]).await.unwrap();
}

/// Until `bus` follows `want` replicas (read about once a second), at most 20 s.
async fn until_followed(bus: &RedisBus, want: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while bus.replicas_followed() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "follows {:?}, not {want}",
            bus.replicas_followed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `count` single messages named `{name}-{i}`; each must be acknowledged. Returns
/// their bodies and how many took [`WAIT`] or longer (waited for a replica in vain).
async fn publish_all(bus: &RedisBus, name: &str, count: usize) -> (HashSet<String>, usize) {
    let (mut bodies, mut waited) = (HashSet::new(), 0);
    for i in 0..count {
        let b = format!("{name}-{i}");
        if timed_publish(bus, &b).await >= WAIT {
            waited += 1;
        }
        bodies.insert(b);
    }
    (bodies, waited)
}

/// The time one publish of `body` takes on `bus`; it must be acknowledged.
async fn timed_publish(bus: &RedisBus, body: &str) -> Duration {
    let started = Instant::now();
    bus.publish(TOPIC, vec![msg(&format!("p-{body}"), body)])
        .await
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_one_replica_away_publishes_go_on_and_wait_for_it_again_once_back() {
    let pair = RelayedReplica::start().await;
    let (p, r) = (pair.primary_port, pair.replica_port);
    // A Standard cache: one replica, which may be away (a minimum of none).
    let bus = acked(p, 1, 1).await;
    assert!(bus.follow_replicas().await.unwrap().is_some());
    until_followed(&bus, 1).await;
    bus.ensure_group(TOPIC, GROUP).await.unwrap();
    let (before, _) = publish_all(&bus, "before", 20).await;
    // (One of those slow on a busy machine would be a shortfall: counted again within seconds.)
    until_followed(&bus, 1).await;

    // The replica's link stalls: no publish is refused. The first one waits for it in vain;
    // from then on publishes are prompt, though the primary still reports the replica as
    // recent for a few seconds (waiting until then would make about ten of them slow; one or
    // two may be slow on a busy machine).
    pair.link.stalled.store(true, Ordering::SeqCst);
    let took = timed_publish(&bus, "stalled").await;
    assert!(took >= WAIT, "not waited for the stalled replica: {took:?}");
    let (_, waited) = publish_all(&bus, "away", 20).await;
    assert!(
        waited <= 2,
        "{waited} of 20 waited for the replica that is away"
    );
    until_followed(&bus, 0).await;

    // It follows again: once it has caught up, publishes wait for it again (shown by stalling
    // it once more: the next publish waits).
    pair.link.stalled.store(false, Ordering::SeqCst);
    until_followed(&bus, 1).await;
    let (after, _) = publish_all(&bus, "after", 20).await;
    until_followed(&bus, 1).await;
    pair.link.stalled.store(true, Ordering::SeqCst);
    let took = timed_publish(&bus, "waited-again").await;
    assert!(took >= WAIT, "not waited for once back: {took:?}");
    pair.link.stalled.store(false, Ordering::SeqCst);
    until_followed(&bus, 1).await;

    // A failover to that replica keeps every publish made while it was waited for.
    let _promoted = pair.fail_over().await;
    let kept = bodies(&connect(r, SUITE_OPTIONS).await).await;
    let lost: Vec<_> = before
        .union(&after)
        .filter(|b| !kept.contains(*b))
        .collect();
    assert!(lost.is_empty(), "waited for and lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_one_may_be_away_but_never_both() {
    let pair = RelayedReplica::start().await;
    let p = pair.primary_port;
    // A second replica, following the primary directly.
    let d = closed_port();
    let direct = OwnRedis::start(d, &["--replicaof", "127.0.0.1", &p.to_string()]);
    until_replication(d, "master_link_status:up").await;
    until_replication(p, "connected_slaves:2").await;
    // A Premium cache with two replicas per primary, one of which may be patched at a time.
    let bus = acked(p, 2, 1).await;
    assert!(bus.follow_replicas().await.unwrap().is_some());
    until_followed(&bus, 2).await;
    bus.ensure_group(TOPIC, GROUP).await.unwrap();
    let strict = acked(p, 2, 0).await;
    publish_all(&bus, "both", 10).await;
    until_followed(&bus, 2).await;

    // One replica stalls: publishes go on, confirmed by the other, and after the first one
    // without waiting for the stalled one; without `away` they are refused.
    pair.link.stalled.store(true, Ordering::SeqCst);
    let (_, waited) = publish_all(&bus, "one", 10).await;
    assert!(
        (1..=3).contains(&waited),
        "{waited} of 10 waited for the stalled replica"
    );
    until_followed(&bus, 1).await;
    let refused = strict.publish(TOPIC, vec![msg("p", "strict")]).await;
    assert!(
        matches!(refused, Err(PortError::Unavailable(ref m)) if m.contains("1 of 2 replicas")),
        "{refused:?}"
    );

    // The other goes too: below the minimum of one, publishes are refused.
    direct.stop();
    until_followed(&bus, 0).await;
    let refused = bus.publish(TOPIC, vec![msg("p", "none")]).await;
    assert!(
        matches!(refused, Err(PortError::Unavailable(ref m)) if m.contains("0 of 1 replicas")),
        "{refused:?}"
    );
}

/// A primary demoted behind the cache's one address (Azure moves the address on a failover; a
/// kept connection may still reach the old primary, now a replica): publishes are refused a
/// couple of times at most, then the same bus publishes on the new primary, and every publish
/// it acknowledged is there to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demoted_behind_its_address_takes_publishes_again() {
    let pair = BehindOneAddress::start().await;
    let (a, b) = (pair.first, pair.second);
    let url = format!("redis://{}/", pair.address.addr);
    let bus = RedisBus::connect(&url, SUITE_OPTIONS, 2).await.unwrap();
    bus.ensure_group(TOPIC, GROUP).await.unwrap();
    bus.publish(TOPIC, vec![msg("p1", "before")]).await.unwrap();
    redis_cli(a, &["wait", "1", "2000"]).await;
    // The replica is promoted, the primary demoted; new connections reach the new primary,
    // the bus's kept one the old.
    pair.fail_over(a, b).await;

    let mut refused = 0;
    let mut sent = HashSet::from(["before".to_owned()]);
    for i in 0..5 {
        let body = format!("after-{i}");
        loop {
            match bus.publish(TOPIC, vec![msg("p1", &body)]).await {
                Ok(()) => break,
                Err(PortError::Unavailable(m)) if refused < 2 => {
                    eprintln!("refused: {m}");
                    refused += 1;
                }
                Err(other) => panic!("publish {i} after {refused} refusals: {other:?}"),
            }
        }
        sent.insert(body);
    }
    assert!(refused <= 2, "{refused}");
    let role = redis_cli(b, &["info", "replication"]).await;
    assert!(role.contains("role:master"), "{role}");
    // Read on the new primary by a bus of its own: every acknowledged publish is there.
    let reader = RedisBus::connect(&format!("redis://127.0.0.1:{b}/"), SUITE_OPTIONS, 2)
        .await
        .unwrap();
    assert_eq!(bodies(&reader).await, sent);
}
