//! `MemoryHotState` on the gateway's hot path: the idempotency check (`idem_begin`, by key or by
//! signature for unkeyed requests) and the per-player rate window (`rate_hit`).
//!
//! `cargo bench -p liveops-memory --bench hot` (add `-- --quick` for a fast pass). The port is
//! async; each measurement runs its whole loop inside one `block_on` so the runtime's cost per
//! call is only the (never pending) future itself.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use liveops_core::ports::{IdemState, Idempotency, RateLimiter};
use liveops_memory::MemoryHotState;

const TTL: Duration = Duration::from_secs(86_400);
const FINGERPRINT: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => unreachable!("a current-thread runtime starts: {e}"),
    }
}

/// Times `iters` calls of `op(i)` inside one `block_on`.
fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, offset: u64, mut op: F) -> Duration
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            black_box(op(offset + i).await);
        }
        start.elapsed()
    })
}

/// `count` keys not used before, named by `name`; `next` counts the keys made so far.
fn fresh_keys(next: &mut u64, count: u64, name: impl Fn(u64) -> String) -> Vec<String> {
    let keys = (*next..*next + count).map(name).collect();
    *next += count;
    keys
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("hot_state");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    // A fresh key each time: the first request of an idempotent pair (claims the key).
    let hot = MemoryHotState::new();
    let mut next = 0u64;
    g.bench_function("idem_begin/fresh", |b| {
        b.iter_custom(|iters| {
            let keys = fresh_keys(&mut next, iters, |i| format!("gateway:events:{i}"));
            let d = timed(&rt, iters, 0, |i| {
                hot.idem_begin(&keys[i as usize], FINGERPRINT, TTL)
            });
            d
        })
    });

    // A key already answered: the retry path (replays the stored answer).
    let done = MemoryHotState::new();
    let keys: Vec<String> = (0..4096).map(|i| format!("gateway:events:{i}")).collect();
    rt.block_on(async {
        for k in &keys {
            if let Ok(IdemState::Fresh) = done.idem_begin(k, FINGERPRINT, TTL).await {
                let answer = liveops_core::ports::StoredAnswer {
                    status: 202,
                    body: r#"{"eventId":"0190f3a2-7b1c-7cc0-9d5e-3f1a2b3c4d5e"}"#.into(),
                };
                let _ = done.idem_complete(k, FINGERPRINT, answer, TTL).await;
            }
        }
    });
    g.bench_function("idem_begin/done", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, 0, |i| {
                done.idem_begin(&keys[(i & 4095) as usize], FINGERPRINT, TTL)
            })
        })
    });

    // The per-player rate window, over 10 000 players.
    let rate = MemoryHotState::new();
    let players: Vec<String> = (0..10_000).map(|i| format!("player_{i}")).collect();
    g.bench_function("rate_hit", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, 0, |i| {
                rate.rate_hit(&players[(i % 10_000) as usize], 1, u32::MAX)
            })
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
