//! The local bus (the embedded default) on its file: publishing a batch of 100 events, and a
//! consumer's round of taking 100 and acking them, with no dead letters and with 1 000 of them
//! in the group (new messages are read past the group's dead letters, which stay dead).
//!
//! `cargo bench -p liveops-sqlite-bus --bench bus` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use liveops_core::ports::{Bus, BusExt, BusOptions, Message};
use liveops_sqlite_bus::SqliteBus;

const BATCH: usize = 100;
const TOPIC: &str = "events.accepted";
const GROUP: &str = "progression";

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => unreachable!("a runtime starts: {e}"),
    }
}

/// `BATCH` messages of an envelope's size (~300 bytes), numbered from `first`.
fn batch(first: u64) -> Vec<Message> {
    (first..first + BATCH as u64)
        .map(|i| Message {
            id: format!("0193a0c4-0000-7000-8000-{i:012}"),
            key: format!("player_{}", i % 10_000),
            payload: Bytes::from(vec![b'x'; 300]),
        })
        .collect()
}

/// A bus file in `dir` with `GROUP` on `TOPIC`; with `dead`, that many dead letters in it
/// (delivered once, never acked, past a visibility timeout of 1 ms).
async fn bus(dir: &std::path::Path, dead: u64) -> SqliteBus {
    let opts = BusOptions {
        visibility_timeout: Duration::from_millis(1),
        max_deliveries: 1,
    };
    let bus = SqliteBus::open(dir.join("bus.db"), opts).await;
    let Ok(bus) = bus else {
        unreachable!("the bus opens")
    };
    let ready = bus.ensure_group(TOPIC, GROUP).await;
    assert!(ready.is_ok(), "the group exists");
    let mut published = 0;
    while published < dead {
        assert!(bus.publish(TOPIC, batch(published)).await.is_ok());
        let taken = bus.poll(TOPIC, GROUP, "c", BATCH, Duration::ZERO).await;
        assert_eq!(taken.map(|t| t.len()).ok(), Some(BATCH));
        published += BATCH as u64;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Taken again past their last delivery: dead now.
    let none = bus.poll(TOPIC, GROUP, "c", BATCH, Duration::ZERO).await;
    assert_eq!(none.map(|n| n.len()).ok(), Some(0));
    let listed = bus.dead_letters(TOPIC, GROUP, 10_000).await;
    assert_eq!(listed.map(|l| l.len() as u64).ok(), Some(dead));
    bus
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("sqlite_bus");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for dead in [0, 1_000] {
        let Ok(dir) = tempfile::tempdir() else {
            unreachable!("a temporary directory")
        };
        let bus = rt.block_on(bus(dir.path(), dead));
        let mut next = 1_000_000u64;
        if dead == 0 {
            g.bench_function("publish_100", |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(bus.publish(TOPIC, batch(next)).await.is_ok());
                            next += BATCH as u64;
                        }
                        start.elapsed()
                    })
                })
            });
        }
        let name = format!("poll_ack_100/dead_{dead}");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    // Published before timing: each round below takes and acks one batch.
                    for _ in 0..iters {
                        assert!(bus.publish(TOPIC, batch(next)).await.is_ok());
                        next += BATCH as u64;
                    }
                    let start = Instant::now();
                    for _ in 0..iters {
                        let Ok(taken) = bus.poll(TOPIC, GROUP, "c", BATCH, Duration::ZERO).await
                        else {
                            unreachable!("a poll answers")
                        };
                        let ids: Vec<String> = taken.into_iter().map(|d| d.id).collect();
                        assert_eq!(ids.len(), BATCH);
                        assert!(bus.ack(TOPIC, GROUP, &ids).await.is_ok());
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
