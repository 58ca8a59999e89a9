//! `RankTree` at 10k, 100k and 1M players: increment, raise to a total (what the leaderboard
//! does since ADR 0020), rank of a player, top 100, around(10).
//!
//! `cargo bench -p liveops-memory --bench rank` (add `-- --quick` for a fast pass). Also prints the
//! heap bytes per player of each tree.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use liveops_memory::RankTree;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

fn player(i: usize) -> String {
    format!("player_{i}")
}

/// A board filled the way a live one is: by increments, with a spread of scores and ties.
fn board(n: usize, rng: &mut StdRng) -> RankTree {
    let mut tree = RankTree::new();
    for i in 0..n {
        let score = rng.gen_range(0..(n as i64 * 10));
        if tree.incr(&player(i), score).is_err() {
            unreachable!("a bench board fits");
        }
    }
    tree
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rank_tree");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let mut rng = StdRng::seed_from_u64(n as u64);
        let mut tree = board(n, &mut rng);
        println!(
            "rank_tree/{n}: {} heap bytes, {:.1} bytes per player",
            tree.approx_heap_bytes(),
            tree.approx_heap_bytes() as f64 / n as f64
        );
        // Pre-made ids so the loops measure the tree, not formatting.
        let ids: Vec<String> = (0..4096).map(|_| player(rng.gen_range(0..n))).collect();
        let mut k = 0usize;
        let mut next = move || {
            k = (k + 1) & 4095;
            k
        };

        group.bench_function(BenchmarkId::new("incr", n), |b| {
            b.iter(|| {
                let i = next();
                black_box(tree.incr(&ids[i], (i as i64 % 201) - 100))
            })
        });
        // A newer total (always above the score held: the player moves up) and a stale one
        // (below it, as in a reload that read the repository earlier: nothing moves).
        let mut newer = n as i64 * 10;
        group.bench_function(BenchmarkId::new("raise", n), |b| {
            b.iter(|| {
                newer += 1;
                black_box(tree.raise(&ids[next()], newer))
            })
        });
        group.bench_function(BenchmarkId::new("raise_stale", n), |b| {
            b.iter(|| black_box(tree.raise(&ids[next()], -1)))
        });
        group.bench_function(BenchmarkId::new("rank", n), |b| {
            b.iter(|| black_box(tree.rank(&ids[next()])))
        });
        group.bench_function(BenchmarkId::new("top100", n), |b| {
            b.iter(|| black_box(tree.range(0, 100)))
        });
        group.bench_function(BenchmarkId::new("around10", n), |b| {
            b.iter(|| black_box(tree.around(&ids[next()], 10)))
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
