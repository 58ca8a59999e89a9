//! The `RankStore` contract, as a suite any adapter can run: `run_all(&store).await`.
//!
//! Every check works on boards of its own, named with a random suffix, so runs can share a real
//! server (Redis, Redis Cluster) and leave nothing that collides with the next run. Scores stay
//! well inside ±2^53 so backends that keep scores as doubles (Redis) are exact.

use std::collections::HashMap;

use liveops_core::ports::{Board, RankEntry, RankStore, ScoreTotal};
use liveops_core::Window;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ok;
use crate::fixtures::score_total;

/// Runs every check of the suite.
pub async fn run_all(store: &dyn RankStore) {
    healthcheck(store).await;
    orders_by_score_then_id_descending(store).await;
    scores_only_rise_whatever_the_order(store).await;
    one_batch_spans_boards(store).await;
    top_honours_offset_and_limit(store).await;
    around_stops_at_the_edges(store).await;
    size_and_boards(store).await;
    a_raise_merges_into_a_board(store).await;
    replicas_raising_at_once_end_at_the_newest_totals(store).await;
    drop_board_forgets_it(store).await;
    unknown_boards_and_players(store).await;
    random_changes_match_a_model(store).await;
}

/// A board no other run uses.
pub fn fresh_board(tag: &str) -> Board {
    Board {
        window: Window::Weekly,
        period: format!("conformance-{tag}-{:016x}", rand::random::<u64>()),
    }
}

fn entry(rank: u64, player: &str, score: i64) -> RankEntry {
    RankEntry {
        rank,
        player_id: player.to_owned(),
        score,
    }
}

/// Raises `board`'s players to the given totals in one call.
async fn add(store: &dyn RankStore, board: &Board, totals: &[(&str, i64)]) {
    let totals: Vec<ScoreTotal> = totals
        .iter()
        .map(|(p, t)| score_total(board, p, *t))
        .collect();
    ok(store.raise(&totals).await, "raise");
}

async fn rank(store: &dyn RankStore, board: &Board, player: &str) -> Option<RankEntry> {
    ok(store.rank(board, player).await, "rank")
}

async fn top(store: &dyn RankStore, board: &Board, offset: u64, limit: u64) -> Vec<RankEntry> {
    ok(store.top(board, offset, limit).await, "top")
}

/// The adapter reports itself healthy.
pub async fn healthcheck(store: &dyn RankStore) {
    ok(store.healthcheck().await, "healthcheck");
}

/// Higher scores first; equal scores by player id descending, in byte order (as Redis
/// `ZREVRANGE`).
pub async fn orders_by_score_then_id_descending(store: &dyn RankStore) {
    let b = fresh_board("order");
    add(
        store,
        &b,
        &[
            ("alice", 10),
            ("bob", 20),
            ("carol", 10),
            ("dave", 20),
            ("erin", 15),
            ("p10", 5),
            ("p9", 5),
            ("Zed", 1),
            ("zed", 1),
        ],
    )
    .await;
    assert_eq!(
        top(store, &b, 0, 20).await,
        vec![
            entry(1, "dave", 20),
            entry(2, "bob", 20),
            entry(3, "erin", 15),
            entry(4, "carol", 10),
            entry(5, "alice", 10),
            entry(6, "p9", 5),
            entry(7, "p10", 5),
            entry(8, "zed", 1),
            entry(9, "Zed", 1),
        ],
        "order: score desc, then id desc"
    );
    assert_eq!(rank(store, &b, "p10").await, Some(entry(7, "p10", 5)));
}

/// A total raises a score; a lower or equal one (an older commit, a repeat, a reload that
/// read the repository before it) changes nothing, in one batch or across batches.
pub async fn scores_only_rise_whatever_the_order(store: &dyn RankStore) {
    let b = fresh_board("raise");
    add(store, &b, &[("a", 5), ("b", 3)]).await;
    assert_eq!(rank(store, &b, "a").await, Some(entry(1, "a", 5)));
    assert_eq!(rank(store, &b, "b").await, Some(entry(2, "b", 3)));
    add(store, &b, &[("b", 7)]).await;
    assert_eq!(rank(store, &b, "b").await, Some(entry(1, "b", 7)));
    assert_eq!(rank(store, &b, "a").await, Some(entry(2, "a", 5)));
    add(store, &b, &[("a", 8), ("a", 6), ("a", 7)]).await;
    assert_eq!(rank(store, &b, "a").await, Some(entry(1, "a", 8)));
    add(store, &b, &[("a", 2), ("b", 7), ("b", 1)]).await;
    add(store, &b, &[("a", 8)]).await;
    // A total of zero ranks a new player with 0 points.
    add(store, &b, &[("c", 0)]).await;
    assert_eq!(
        top(store, &b, 0, 10).await,
        vec![entry(1, "a", 8), entry(2, "b", 7), entry(3, "c", 0)]
    );
}

/// One `raise` call can touch several boards; each board only sees its own totals.
pub async fn one_batch_spans_boards(store: &dyn RankStore) {
    let b1 = fresh_board("batch1");
    let b2 = Board {
        window: Window::Daily,
        period: b1.period.clone(),
    };
    let totals = vec![
        score_total(&b1, "a", 1),
        score_total(&b2, "a", 10),
        score_total(&b1, "b", 2),
        score_total(&b2, "a", 20),
    ];
    ok(store.raise(&totals).await, "raise");
    assert_eq!(
        top(store, &b1, 0, 10).await,
        vec![entry(1, "b", 2), entry(2, "a", 1)]
    );
    assert_eq!(top(store, &b2, 0, 10).await, vec![entry(1, "a", 20)]);
    ok(store.raise(&[]).await, "empty raise");
}

/// `top(offset, limit)` returns positions `offset+1 ..= offset+limit`, cut at the end.
pub async fn top_honours_offset_and_limit(store: &dyn RankStore) {
    let b = fresh_board("top");
    let players: Vec<(String, i64)> = (0..25).map(|i| (format!("p{i:02}"), i * 10)).collect();
    let changes: Vec<(&str, i64)> = players.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    add(store, &b, &changes).await;
    let expect = |rank: u64| {
        let i = 25 - rank as i64;
        entry(rank, &format!("p{i:02}"), i * 10)
    };
    // (offset, limit, the ranks it returns)
    for (offset, limit, ranks) in [
        (0, 5, 1..=5),
        (5, 10, 6..=15),
        (20, 10, 21..=25),
        (0, 1000, 1..=25),
    ] {
        assert_eq!(
            top(store, &b, offset, limit).await,
            ranks.map(expect).collect::<Vec<_>>(),
            "top({offset}, {limit})"
        );
    }
    assert!(top(store, &b, 25, 5).await.is_empty());
    assert!(top(store, &b, 100, 5).await.is_empty());
    assert!(top(store, &b, 3, 0).await.is_empty());
    assert_eq!(top(store, &b, 24, 1).await, vec![expect(25)]);
}

/// `around` gives up to `n` neighbours each side, fewer at the top and bottom.
pub async fn around_stops_at_the_edges(store: &dyn RankStore) {
    let b = fresh_board("around");
    let players: Vec<(String, i64)> = (0..10).map(|i| (format!("s{i}"), i)).collect();
    let changes: Vec<(&str, i64)> = players.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    add(store, &b, &changes).await;
    // Rank r holds s(10 - r).
    let span = |from: u64, to: u64| -> Vec<RankEntry> {
        (from..=to)
            .map(|r| entry(r, &format!("s{}", 10 - r), 10 - r as i64))
            .collect()
    };
    let around = |player: &'static str, n: u64| store.around(&b, player, n);
    assert_eq!(ok(around("s9", 2).await, "around top"), Some(span(1, 3)));
    assert_eq!(ok(around("s8", 2).await, "around 2nd"), Some(span(1, 4)));
    assert_eq!(
        ok(around("s0", 2).await, "around bottom"),
        Some(span(8, 10))
    );
    assert_eq!(ok(around("s5", 2).await, "around middle"), Some(span(3, 7)));
    assert_eq!(ok(around("s5", 0).await, "around n=0"), Some(span(5, 5)));
    assert_eq!(
        ok(around("s5", 100).await, "around wide"),
        Some(span(1, 10))
    );
    assert_eq!(ok(around("nobody", 2).await, "around unknown"), None);
}

/// `size` counts players once; `boards` lists boards with players.
pub async fn size_and_boards(store: &dyn RankStore) {
    let b = fresh_board("size");
    assert_eq!(ok(store.size(&b).await, "size"), 0);
    add(store, &b, &[("a", 1), ("b", 2), ("c", 3)]).await;
    assert_eq!(ok(store.size(&b).await, "size"), 3);
    add(store, &b, &[("a", 5), ("b", 1)]).await;
    assert_eq!(ok(store.size(&b).await, "size"), 3);
    let boards = ok(store.boards().await, "boards");
    assert!(boards.contains(&b), "boards() misses {b:?}");
}

/// A whole board's totals (a reload from the repository) merge into what the board holds: new
/// players are added, nobody goes down, and a board that did not exist is created.
pub async fn a_raise_merges_into_a_board(store: &dyn RankStore) {
    let b = fresh_board("merge");
    add(store, &b, &[("x", 100), ("y", 50)]).await;
    let reload: Vec<(String, i64)> = (0..2500).map(|i| (format!("r{i:04}"), i % 50)).collect();
    let mut totals: Vec<(&str, i64)> = reload.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    totals.extend([("x", 60), ("y", 70)]);
    add(store, &b, &totals).await;
    assert_eq!(ok(store.size(&b).await, "size"), 2502);
    assert_eq!(
        top(store, &b, 0, 2).await,
        vec![entry(1, "x", 100), entry(2, "y", 70)]
    );
    let r49 = rank(store, &b, "r0049").await.map(|e| e.score);
    assert_eq!(r49, Some(49));
    let fresh = fresh_board("merge-new");
    add(store, &fresh, &[("solo", 42)]).await;
    assert_eq!(top(store, &fresh, 0, 10).await, vec![entry(1, "solo", 42)]);
    assert!(ok(store.boards().await, "boards").contains(&fresh));
}

/// Two replicas raising one board at once, each with its own commits' totals in its own order
/// (one also reloading the whole board from an older read), end at each player's newest total.
pub async fn replicas_raising_at_once_end_at_the_newest_totals(store: &dyn RankStore) {
    let b = fresh_board("replicas");
    let players: Vec<String> = (0..40).map(|i| format!("q{i:02}")).collect();
    // Player i's commits leave totals 10, 20, .., 10 * (i % 5 + 1).
    let newest = |i: usize| 10 * (i as i64 % 5 + 1);
    let commits = |odd: bool| -> Vec<Vec<ScoreTotal>> {
        (0..5)
            .map(|step| {
                players
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i % 2 == 1) == odd && step as i64 * 10 < newest(*i))
                    .map(|(_, p)| score_total(&b, p, (step as i64 + 1) * 10))
                    .collect()
            })
            .collect()
    };
    let stale_reload: Vec<ScoreTotal> = players.iter().map(|p| score_total(&b, p, 10)).collect();
    let first = async {
        for batch in commits(false) {
            ok(store.raise(&batch).await, "raise");
        }
        ok(store.raise(&stale_reload).await, "raise");
    };
    let second = async {
        ok(store.raise(&stale_reload).await, "raise");
        for batch in commits(true).into_iter().rev() {
            ok(store.raise(&batch).await, "raise");
        }
    };
    tokio::join!(first, second);
    for (i, p) in players.iter().enumerate() {
        let got = rank(store, &b, p).await.map(|e| e.score);
        assert_eq!(got, Some(newest(i)), "{p}");
    }
}

/// `drop_board` forgets every player; the board can be used again afterwards.
pub async fn drop_board_forgets_it(store: &dyn RankStore) {
    let b = fresh_board("drop");
    add(store, &b, &[("a", 1), ("b", 2)]).await;
    ok(store.drop_board(&b).await, "drop_board");
    assert_eq!(ok(store.size(&b).await, "size"), 0);
    assert!(top(store, &b, 0, 10).await.is_empty());
    assert_eq!(rank(store, &b, "a").await, None);
    assert!(!ok(store.boards().await, "boards").contains(&b));
    ok(store.drop_board(&b).await, "drop_board again");
    add(store, &b, &[("a", 1)]).await;
    assert_eq!(top(store, &b, 0, 10).await, vec![entry(1, "a", 1)]);
}

/// Unknown boards are empty; unknown players have no rank.
pub async fn unknown_boards_and_players(store: &dyn RankStore) {
    let b = fresh_board("unknown");
    assert!(top(store, &b, 0, 10).await.is_empty());
    assert_eq!(rank(store, &b, "a").await, None);
    assert_eq!(ok(store.around(&b, "a", 3).await, "around"), None);
    assert_eq!(ok(store.size(&b).await, "size"), 0);
    add(store, &b, &[("a", 1)]).await;
    assert_eq!(rank(store, &b, "b").await, None);
    assert_eq!(ok(store.around(&b, "b", 3).await, "around"), None);
}

/// Random batches of totals, higher and lower than the scores held, agree with a model that
/// keeps each player's highest, at every step checked.
pub async fn random_changes_match_a_model(store: &dyn RankStore) {
    let seed = rand::random::<u64>();
    let mut rng = StdRng::seed_from_u64(seed);
    let b = fresh_board("model");
    let mut model: HashMap<String, i64> = HashMap::new();
    for round in 0..60 {
        let batch: Vec<ScoreTotal> = (0..rng.gen_range(1..=8))
            .map(|_| {
                let player = format!("m{}", rng.gen_range(0..30));
                score_total(&b, &player, rng.gen_range(0..=500))
            })
            .collect();
        for t in &batch {
            let held = model.entry(t.player_id.clone()).or_insert(t.total);
            *held = (*held).max(t.total);
        }
        ok(store.raise(&batch).await, "raise");
        if round % 6 != 5 {
            continue;
        }
        let mut expect: Vec<(String, i64)> = model.iter().map(|(p, s)| (p.clone(), *s)).collect();
        expect.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let expect: Vec<RankEntry> = expect
            .iter()
            .zip(1..)
            .map(|((p, s), r)| entry(r, p, *s))
            .collect();
        assert_eq!(
            top(store, &b, 0, 100).await,
            expect,
            "seed {seed}, round {round}"
        );
        assert_eq!(ok(store.size(&b).await, "size"), expect.len() as u64);
        let probe = &expect[rng.gen_range(0..expect.len())];
        assert_eq!(
            ok(store.rank(&b, &probe.player_id).await, "rank"),
            Some(probe.clone()),
            "seed {seed}"
        );
        let i = probe.rank as usize - 1;
        let near = expect[i.saturating_sub(2)..(i + 3).min(expect.len())].to_vec();
        assert_eq!(
            ok(store.around(&b, &probe.player_id, 2).await, "around"),
            Some(near),
            "seed {seed}"
        );
    }
    ok(store.drop_board(&b).await, "drop_board");
}
