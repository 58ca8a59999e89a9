//! The `HotState` contract, as a suite any adapter can run: `run_all(Arc::new(adapter)).await`.
//!
//! Every key carries a random suffix, so runs can share a real server. The TTL checks use 1 s
//! TTLs and run side by side, so the whole suite takes about two seconds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use liveops_core::now_ms;
use liveops_core::ports::hot::MAX_STRIKES;
use liveops_core::ports::{
    Attempt, Attempts, Blocklist, Health, IdemState, Idempotency, RateDecision, RateLimiter,
    StoredAnswer, Strike, ViewCache,
};

use super::ok;

/// An adapter serving every hot-state concern, as the suite exercises them together.
pub trait HotState: Idempotency + RateLimiter + Blocklist + Attempts + ViewCache + Health {}

impl<T: Idempotency + RateLimiter + Blocklist + Attempts + ViewCache + Health> HotState for T {}

/// The TTL used by expiry checks.
const TTL: Duration = Duration::from_secs(1);
/// How long expiry checks wait: the TTL plus a margin for coarse server clocks.
const PAST_TTL: Duration = Duration::from_millis(1500);
/// A TTL no check outlives.
const LONG: Duration = Duration::from_secs(600);

/// Runs every check of the suite.
pub async fn run_all(hot: Arc<dyn HotState>) {
    let h: &dyn HotState = hot.as_ref();
    healthcheck(h).await;
    idem_lifecycle(h).await;
    idem_release_frees_the_key(h).await;
    idem_begin_is_atomic(hot.clone()).await;
    strikes_count_within_the_window(h).await;
    unblock_lifts_the_block_and_forgets_strikes(h).await;
    attempts_count_per_key_and_are_forgotten(h).await;
    attempts_within_a_limit_are_checked_and_recorded_at_once(hot.clone()).await;
    cache_round_trip(h).await;
    blocks_read_in_one_call(h).await;
    // The checks that wait for the clock run side by side.
    tokio::join!(
        idem_claims_expire(h),
        idem_a_lapsed_claim_is_not_finished_over_another(h),
        idem_extended_claims_outlive_their_ttl(h),
        rate_window_per_second(h),
        rate_hits_count_in_order_in_one_call(h),
        blocks_hold_until_they_expire(h),
        cache_entries_expire(h),
    );
}

/// A key no other run uses.
pub fn fresh_key(tag: &str) -> String {
    format!("conformance:{tag}:{:016x}", rand::random::<u64>())
}

fn answer(status: u16) -> StoredAnswer {
    StoredAnswer {
        status,
        body: format!("{{\"status\":{status}}}"),
    }
}

/// The adapter reports itself healthy.
pub async fn healthcheck(hot: &dyn HotState) {
    ok(hot.healthcheck().await, "healthcheck");
}

/// Fresh → in flight → done, with mismatching fingerprints refused at every stage.
pub async fn idem_lifecycle(hot: &dyn HotState) {
    let key = fresh_key("idem");
    let begin = |fp: &'static str| hot.idem_begin(&key, fp, LONG);
    assert_eq!(ok(begin("A").await, "idem_begin"), IdemState::Fresh);
    assert_eq!(ok(begin("A").await, "idem_begin"), IdemState::InFlight);
    assert_eq!(ok(begin("B").await, "idem_begin"), IdemState::Mismatch);
    ok(
        hot.idem_complete(&key, "A", answer(202), LONG).await,
        "idem_complete",
    );
    assert_eq!(
        ok(begin("A").await, "idem_begin"),
        IdemState::Done(answer(202))
    );
    assert_eq!(
        ok(begin("A").await, "idem_begin"),
        IdemState::Done(answer(202))
    );
    assert_eq!(ok(begin("B").await, "idem_begin"), IdemState::Mismatch);
    // Keys are independent.
    let other = fresh_key("idem-other");
    assert_eq!(
        ok(hot.idem_begin(&other, "B", LONG).await, "idem_begin"),
        IdemState::Fresh
    );
}

/// `idem_begin` of `key` for body `fp` (a long claim).
async fn begin(hot: &dyn HotState, key: &str, fp: &str) -> IdemState {
    ok(hot.idem_begin(key, fp, LONG).await, "idem_begin")
}

/// `idem_complete` of `key` for body `fp` with an answer of `status`.
async fn complete(hot: &dyn HotState, key: &str, fp: &str, status: u16) {
    let done = hot.idem_complete(key, fp, answer(status), LONG);
    ok(done.await, "idem_complete");
}

/// `idem_release` of `key` for body `fp`.
async fn release(hot: &dyn HotState, key: &str, fp: &str) {
    ok(hot.idem_release(key, fp).await, "idem_release");
}

/// A released claim frees the key for any request; only its own body releases it, and an
/// answered key is not released.
pub async fn idem_release_frees_the_key(hot: &dyn HotState) {
    let key = fresh_key("idem-release");
    assert_eq!(begin(hot, &key, "A").await, IdemState::Fresh);
    release(hot, &key, "B").await;
    assert_eq!(begin(hot, &key, "A").await, IdemState::InFlight);
    release(hot, &key, "A").await;
    assert_eq!(begin(hot, &key, "B").await, IdemState::Fresh);
    release(hot, &fresh_key("never"), "A").await;
    // Its answer stays for the repeats.
    complete(hot, &key, "B", 202).await;
    release(hot, &key, "B").await;
    assert_eq!(begin(hot, &key, "B").await, IdemState::Done(answer(202)));
}

/// A request whose claim lapsed while it ran, the key taken since by a request with another
/// body: its answer and its release leave that request's claim alone (before, the second got
/// the first's answer and the first's repeats were refused as another body's).
pub async fn idem_a_lapsed_claim_is_not_finished_over_another(hot: &dyn HotState) {
    let key = fresh_key("idem-lapsed");
    let short = hot.idem_begin(&key, "A", TTL);
    assert_eq!(ok(short.await, "idem_begin"), IdemState::Fresh);
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(begin(hot, &key, "B").await, IdemState::Fresh);
    complete(hot, &key, "A", 202).await;
    release(hot, &key, "A").await;
    assert_eq!(
        begin(hot, &key, "B").await,
        IdemState::InFlight,
        "B's claim was finished or released by A"
    );
    complete(hot, &key, "B", 200).await;
    assert_eq!(begin(hot, &key, "B").await, IdemState::Done(answer(200)));
}

/// `add_strike` for `player` of the strike `id` at `at_ms`, counted in and kept for `window`:
/// the strikes in its window.
async fn strike(hot: &dyn HotState, player: &str, id: &str, at_ms: i64, window: Duration) -> u32 {
    let strike = Strike {
        id,
        at_ms,
        window,
        keep: window,
    };
    ok(hot.add_strike(player, strike).await, "add_strike")
}

/// `idem_extend` of `key` for body `fp` to `ttl`: whether the claim is held.
async fn extend(hot: &dyn HotState, key: &str, fp: &str, ttl: Duration) -> bool {
    ok(hot.idem_extend(key, fp, ttl).await, "idem_extend")
}

/// A claim extended by its own body outlives its first TTL, and is never shortened; another
/// body's extension, or one of an answered, lapsed or unknown key, is refused and changes nothing.
pub async fn idem_extended_claims_outlive_their_ttl(hot: &dyn HotState) {
    let [extended, long, lapsed, others, answered] = [
        "idem-ext",
        "idem-ext-long",
        "idem-ext-lapsed",
        "idem-ext-others",
        "idem-ext-done",
    ]
    .map(fresh_key);
    for key in [&extended, &lapsed, &others] {
        let short = hot.idem_begin(key, "A", TTL);
        assert_eq!(ok(short.await, "idem_begin"), IdemState::Fresh);
    }
    assert_eq!(begin(hot, &long, "A").await, IdemState::Fresh);
    assert_eq!(begin(hot, &answered, "A").await, IdemState::Fresh);
    complete(hot, &answered, "A", 202).await;
    assert!(
        !extend(hot, &others, "B", LONG).await,
        "another body's claim"
    );
    assert!(!extend(hot, &answered, "A", TTL).await, "an answered key");
    assert!(
        !extend(hot, &fresh_key("never"), "A", TTL).await,
        "a key never taken"
    );
    assert!(extend(hot, &long, "A", TTL).await, "a long claim");
    // Extended to the TTL twice, 600 ms apart: held until 1.2 s + the TTL.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(extend(hot, &extended, "A", TTL).await, "its own claim");
    }
    tokio::time::sleep(PAST_TTL - Duration::from_millis(1200)).await;
    assert_eq!(
        begin(hot, &extended, "A").await,
        IdemState::InFlight,
        "an extended claim lapsed"
    );
    assert_eq!(
        begin(hot, &long, "A").await,
        IdemState::InFlight,
        "an extension shortened a claim"
    );
    assert!(!extend(hot, &lapsed, "A", LONG).await, "a lapsed claim");
    assert_eq!(
        begin(hot, &lapsed, "B").await,
        IdemState::Fresh,
        "a claim not extended outlived its TTL"
    );
    assert_eq!(
        begin(hot, &others, "B").await,
        IdemState::Fresh,
        "another body's extension kept the claim"
    );
    assert_eq!(
        begin(hot, &answered, "A").await,
        IdemState::Done(answer(202)),
        "an extension touched an answer"
    );
}

/// 100 concurrent claims of one key: exactly one is `Fresh`, the others `InFlight`.
pub async fn idem_begin_is_atomic(hot: Arc<dyn HotState>) {
    let key = Arc::new(fresh_key("idem-race"));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (hot, key) = (hot.clone(), key.clone());
            tokio::spawn(async move { hot.idem_begin(&key, "same", LONG).await })
        })
        .collect();
    let (mut fresh, mut in_flight) = (0, 0);
    for task in tasks {
        match task.await {
            Ok(Ok(IdemState::Fresh)) => fresh += 1,
            Ok(Ok(IdemState::InFlight)) => in_flight += 1,
            Ok(other) => panic!("concurrent idem_begin gave {other:?}"),
            Err(err) => panic!("concurrent idem_begin task failed: {err}"),
        }
    }
    assert_eq!((fresh, in_flight), (1, 99), "exactly one claim wins");
}

/// Claims and answers both expire after their TTL: a crashed request frees its key.
pub async fn idem_claims_expire(hot: &dyn HotState) {
    let crashed = fresh_key("idem-ttl");
    let answered = fresh_key("idem-done-ttl");
    assert_eq!(
        ok(hot.idem_begin(&crashed, "A", TTL).await, "idem_begin"),
        IdemState::Fresh
    );
    assert_eq!(
        ok(hot.idem_begin(&answered, "A", LONG).await, "idem_begin"),
        IdemState::Fresh
    );
    ok(
        hot.idem_complete(&answered, "A", answer(200), TTL).await,
        "idem_complete",
    );
    assert_eq!(
        ok(hot.idem_begin(&answered, "A", LONG).await, "idem_begin"),
        IdemState::Done(answer(200))
    );
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(
        ok(hot.idem_begin(&crashed, "B", LONG).await, "idem_begin"),
        IdemState::Fresh,
        "an in-flight claim outlived its TTL"
    );
    assert_eq!(
        ok(hot.idem_begin(&answered, "A", LONG).await, "idem_begin"),
        IdemState::Fresh,
        "a stored answer outlived its TTL"
    );
}

/// Sleeps until just after the next wall-clock second starts.
async fn next_second() {
    let into = now_ms().rem_euclid(1000);
    tokio::time::sleep(Duration::from_millis((1000 - into) as u64 + 20)).await;
}

/// Runs `check` until one run of it starts and ends within one wall-clock second (a slow
/// backend may cross a boundary; at most a few tries), and returns what it gave.
async fn in_one_second<T, F: std::future::Future<Output = T>>(mut check: impl FnMut() -> F) -> T {
    for attempt in 0.. {
        next_second().await;
        let second = now_ms().div_euclid(1000);
        let seen = check().await;
        if now_ms().div_euclid(1000) == second {
            return seen;
        }
        assert!(attempt < 3, "rate checks keep crossing a second boundary");
    }
    unreachable!("the loop returns or fails")
}

/// Counts per player in fixed one-second windows aligned to wall-clock seconds; a refused hit
/// is not counted; a new second starts from zero.
pub async fn rate_window_per_second(hot: &dyn HotState) {
    let limited = RateDecision::Limited { retry_after_s: 1 };
    let allowed = RateDecision::Allowed;
    let (p, seen) = in_one_second(move || async move {
        let (p, q) = (fresh_key("rate-p"), fresh_key("rate-q"));
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(ok(hot.rate_hit(&p, 1, 5).await, "rate_hit"));
        }
        // n over max is refused and not counted, so the full allowance is still there.
        seen.push(ok(hot.rate_hit(&q, 6, 5).await, "rate_hit"));
        seen.push(ok(hot.rate_hit(&q, 5, 5).await, "rate_hit"));
        seen.push(ok(hot.rate_hit(&q, 1, 5).await, "rate_hit"));
        (p, seen)
    })
    .await;
    assert_eq!(
        seen,
        vec![allowed, allowed, allowed, allowed, allowed, limited, limited, allowed, limited]
    );
    next_second().await;
    assert_eq!(
        ok(hot.rate_hit(&p, 5, 5).await, "rate_hit"),
        allowed,
        "a new second starts from zero"
    );
}

/// Rate hits in one call count as one by one, in order, except that a player refused once
/// stays refused for the rest of the call (not counted); nothing asked, nothing answered.
pub async fn rate_hits_count_in_order_in_one_call(hot: &dyn HotState) {
    let limited = RateDecision::Limited { retry_after_s: 1 };
    let allowed = RateDecision::Allowed;
    let (seen, after) = in_one_second(move || async move {
        let (p, q, r) = (
            fresh_key("hits-p"),
            fresh_key("hits-q"),
            fresh_key("hits-r"),
        );
        let hits = [
            (p.as_str(), 3),
            (q.as_str(), 6),
            (r.as_str(), 1),
            (p.as_str(), 3),
            (q.as_str(), 5),
            (p.as_str(), 2),
            (r.as_str(), 1),
        ];
        let seen = ok(hot.rate_hits(&hits, 5).await, "rate_hits");
        // p counted 3, q nothing, r 2.
        let mut after = Vec::new();
        for (player, n) in [(&p, 2), (&p, 1), (&q, 5), (&r, 3), (&r, 1)] {
            after.push(ok(hot.rate_hit(player, n, 5).await, "rate_hit"));
        }
        (seen, after)
    })
    .await;
    assert_eq!(
        seen,
        [allowed, limited, allowed, limited, limited, limited, allowed],
        "(p 3, q 6, r 1, p 3, q 5, p 2, r 1) against 5"
    );
    assert_eq!(after, [allowed, limited, allowed, allowed, limited]);
    assert_eq!(ok(hot.rate_hits(&[], 5).await, "rate_hits"), []);
}

/// Blocks read in one call answer as one by one, in order, a player asked twice answered
/// twice, an unblocked player as never blocked; nothing asked, nothing answered.
pub async fn blocks_read_in_one_call(hot: &dyn HotState) {
    let now = now_ms();
    let [long, never, lifted] = ["each-long", "each-never", "each-lifted"].map(fresh_key);
    for player in [&long, &lifted] {
        assert!(ok(hot.block(player, now, now + 60_000).await, "block"));
    }
    ok(hot.unblock(&lifted, LONG).await, "unblock");
    let asked = [
        long.as_str(),
        never.as_str(),
        lifted.as_str(),
        long.as_str(),
    ];
    let each = ok(hot.blocked_until_each(&asked).await, "blocked_until_each");
    assert_eq!(each, [Some(now + 60_000), None, None, Some(now + 60_000)]);
    let one_by_one = [
        ok(hot.blocked_until(&long).await, "blocked_until"),
        ok(hot.blocked_until(&never).await, "blocked_until"),
        ok(hot.blocked_until(&lifted).await, "blocked_until"),
    ];
    assert_eq!(each[..3], one_by_one);
    let none = hot.blocked_until_each(&[]).await;
    assert_eq!(ok(none, "blocked_until_each"), []);
}

/// A block reads back while in the future, can be extended but not shortened, and ends by
/// itself.
pub async fn blocks_hold_until_they_expire(hot: &dyn HotState) {
    let now = now_ms();
    let (long, short, past) = (
        fresh_key("block-long"),
        fresh_key("block-short"),
        fresh_key("block-past"),
    );
    assert_eq!(ok(hot.blocked_until(&long).await, "blocked_until"), None);
    assert!(ok(hot.block(&long, now, now + 60_000).await, "block"));
    assert_eq!(
        ok(hot.blocked_until(&long).await, "blocked_until"),
        Some(now + 60_000)
    );
    assert!(ok(hot.block(&long, now, now + 120_000).await, "block"));
    assert_eq!(
        ok(hot.blocked_until(&long).await, "blocked_until"),
        Some(now + 120_000)
    );
    // A block that ends sooner, or at the same time, changes nothing.
    for until in [now + 90_000, now + 120_000] {
        assert!(!ok(hot.block(&long, now, until).await, "block"), "{until}");
    }
    assert_eq!(
        ok(hot.blocked_until(&long).await, "blocked_until"),
        Some(now + 120_000)
    );
    assert!(!ok(hot.block(&past, now, now - 1000).await, "block"));
    assert_eq!(ok(hot.blocked_until(&past).await, "blocked_until"), None);
    assert!(ok(hot.block(&short, now, now + 1000).await, "block"));
    assert_eq!(
        ok(hot.blocked_until(&short).await, "blocked_until"),
        Some(now + 1000)
    );
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(
        ok(hot.blocked_until(&short).await, "blocked_until"),
        None,
        "a block outlived its end"
    );
    assert_eq!(
        ok(hot.blocked_until(&long).await, "blocked_until"),
        Some(now + 120_000)
    );
}

/// An operator's unblock ends the block at once and starts the strike count afresh.
pub async fn unblock_lifts_the_block_and_forgets_strikes(hot: &dyn HotState) {
    let now = now_ms();
    let (p, other) = (fresh_key("unblock"), fresh_key("unblock-other"));
    let window = Duration::from_secs(600);
    for player in [&p, &other] {
        strike(hot, player, "e1", now - 10, window).await;
        ok(hot.block(player, now, now + 60_000).await, "block");
    }
    ok(hot.unblock(&p, window).await, "unblock");
    assert_eq!(ok(hot.blocked_until(&p).await, "blocked_until"), None);
    assert_eq!(ok(hot.strikes(&p, now, window).await, "strikes"), 0);
    assert_eq!(
        ok(hot.blocked_until(&other).await, "blocked_until"),
        Some(now + 60_000),
        "only that player"
    );
    // The forgotten strike recorded again (a redelivered batch) stays forgotten; a new one
    // counts alone.
    assert_eq!(strike(hot, &p, "e1", now - 10, window).await, 0);
    assert_eq!(
        strike(hot, &p, "e0", now - 20, window).await,
        0,
        "nor one from before the unblock"
    );
    assert_eq!(ok(hot.strikes(&p, now, window).await, "strikes"), 0);
    let windows = hot.strike_windows(&p, now - 10, window).await;
    assert_eq!(ok(windows, "strike_windows"), []);
    // A block decided on the forgotten strikes (their windows read just before the unblock)
    // is refused when it lands: the player stays unblocked.
    let late = hot.block(&p, now - 10, now + 90_000).await;
    assert!(
        !ok(late, "block"),
        "a block for forgotten strikes was taken"
    );
    assert_eq!(ok(hot.blocked_until(&p).await, "blocked_until"), None);
    let later = now_ms() + 1;
    assert_eq!(strike(hot, &p, "e2", later, window).await, 1);
    let windows = hot.strike_windows(&p, now - 10, window).await;
    assert_eq!(ok(windows, "strike_windows"), [(later, 1)]);
    // A block for a strike after the unblock is taken.
    assert!(ok(hot.block(&p, later, later + 60_000).await, "block"));
    assert_eq!(
        ok(hot.blocked_until(&p).await, "blocked_until"),
        Some(later + 60_000)
    );
    ok(
        hot.unblock(&fresh_key("never-blocked"), window).await,
        "unblock",
    );
    // A strike timed ahead of the unblock (another replica's clock) is forgotten with the rest.
    let ahead = fresh_key("unblock-ahead");
    let ahead_at = now_ms() + 5_000;
    assert_eq!(strike(hot, &ahead, "a1", ahead_at, window).await, 1);
    ok(hot.unblock(&ahead, window).await, "unblock");
    assert_eq!(
        strike(hot, &ahead, "a1", ahead_at, window).await,
        0,
        "the strike ahead stays forgotten"
    );
    let late = hot.block(&ahead, ahead_at, ahead_at + 60_000).await;
    assert!(!ok(late, "block"), "a block for the strike ahead was taken");
    assert_eq!(ok(hot.blocked_until(&ahead).await, "blocked_until"), None);
    // More strikes than are kept after an unblock: the newest are kept, still none forgotten.
    let many = fresh_key("unblock-many");
    ok(hot.unblock(&many, window).await, "unblock");
    let from = now_ms() + 1;
    let count = i64::try_from(MAX_STRIKES).unwrap_or(256) + 4;
    for i in 0..count {
        let at = from + i;
        strike(hot, &many, &format!("m{i}"), at, window).await;
    }
    let newest = hot.strikes(&many, from + count, window).await;
    assert_eq!(ok(newest, "strikes") as usize, MAX_STRIKES);
    assert_eq!(
        strike(hot, &many, "old", now - 5, window).await,
        0,
        "still forgotten after the trim"
    );
}

/// Attempts count per key within the window; one past the limit is refused and not recorded,
/// one recorded already counts once; forgetting a key starts it afresh, forgetting one attempt
/// takes back only that one.
pub async fn attempts_count_per_key_and_are_forgotten(hot: &dyn HotState) {
    let t0 = now_ms();
    let minute = Duration::from_secs(60);
    let (a, b) = (fresh_key("attempts"), fresh_key("attempts-b"));
    let attempt = |key: &str, id: &str, at: i64, max: u32| {
        let (key, id) = (key.to_owned(), id.to_owned());
        async move {
            let attempt = Attempt {
                id: &id,
                at_ms: at,
                window: minute,
                max,
            };
            ok(hot.attempt(&key, attempt).await, "attempt")
        }
    };
    let count = |key: &str, window: Duration| {
        let key = key.to_owned();
        async move { ok(hot.attempts(&key, t0, window).await, "attempts") }
    };
    assert_eq!(count(&a, minute).await, 0);
    for n in 1..=3 {
        let id = format!("a{n}");
        assert_eq!(
            attempt(&a, &id, t0 - 10 * n, u32::MAX).await,
            Some(n as u32)
        );
    }
    assert_eq!(attempt(&b, "b1", t0, u32::MAX).await, Some(1), "keys apart");
    assert_eq!(count(&a, minute).await, 3);
    let recent = count(&a, Duration::from_millis(15)).await;
    assert_eq!(recent, 1, "only those within the window");
    assert_eq!(
        attempt(&a, "a4", t0, 3).await,
        None,
        "at the limit: refused"
    );
    assert_eq!(count(&a, minute).await, 3, "and not recorded");
    assert_eq!(attempt(&a, "a4", t0, 4).await, Some(4), "below it");
    assert_eq!(attempt(&a, "a4", t0, 4).await, Some(4), "recorded already");
    ok(hot.forget_attempts(&a, Some("a2")).await, "forget_attempts");
    assert_eq!(count(&a, minute).await, 3, "only a2 taken back");
    ok(
        hot.forget_attempts(&a, Some("never")).await,
        "forget_attempts",
    );
    assert_eq!(count(&a, minute).await, 3, "an unknown one changes nothing");
    ok(hot.forget_attempts(&a, None).await, "forget_attempts");
    assert_eq!(count(&a, minute).await, 0);
    assert_eq!(count(&b, minute).await, 1);
}

/// Attempts on one key at the same moment, each allowed only below a limit: exactly the limit
/// are recorded, whatever the interleaving.
pub async fn attempts_within_a_limit_are_checked_and_recorded_at_once(hot: Arc<dyn HotState>) {
    let key = Arc::new(fresh_key("attempts-race"));
    let at = now_ms();
    let minute = Duration::from_secs(60);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (hot, key) = (hot.clone(), key.clone());
            let id = format!("race{i}");
            tokio::spawn(async move {
                let attempt = Attempt {
                    id: &id,
                    at_ms: at,
                    window: minute,
                    max: 20,
                };
                hot.attempt(&key, attempt).await
            })
        })
        .collect();
    let mut recorded = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(Some(n))) => {
                assert!((1..=20).contains(&n), "counted {n}");
                recorded += 1;
            }
            Ok(Ok(None)) => {}
            Ok(Err(err)) => panic!("concurrent attempt failed: {err}"),
            Err(err) => panic!("concurrent attempt task failed: {err}"),
        }
    }
    assert_eq!(recorded, 20, "exactly the limit recorded");
    let counted = hot.attempts(&key, at, minute).await;
    assert_eq!(ok(counted, "attempts"), 20);
}

/// Strikes count those strictly after `now - window`.
pub async fn strikes_count_within_the_window(hot: &dyn HotState) {
    let t0 = now_ms();
    let ten_min = Duration::from_secs(600);
    let ms = Duration::from_millis;
    let p = fresh_key("strikes");
    assert_eq!(ok(hot.strikes(&p, t0, ten_min).await, "strikes"), 0);
    assert_eq!(strike(hot, &p, "e1", t0 - 3000, ten_min).await, 1);
    assert_eq!(strike(hot, &p, "e2", t0 - 2000, ten_min).await, 2);
    assert_eq!(strike(hot, &p, "e3", t0 - 1000, ten_min).await, 3);
    assert_eq!(ok(hot.strikes(&p, t0, ten_min).await, "strikes"), 3);
    // A late strike (a redelivered one) counts the window ending at it, not the later ones.
    assert_eq!(strike(hot, &p, "e0", t0 - 2500, ten_min).await, 2);
    assert_eq!(ok(hot.strikes(&p, t0, ten_min).await, "strikes"), 4);
    // ... but it fills the windows of the later ones, which say so.
    assert_eq!(
        ok(
            hot.strike_windows(&p, t0 - 2500, ten_min).await,
            "strike_windows"
        ),
        [(t0 - 2500, 2), (t0 - 2000, 3), (t0 - 1000, 4)]
    );
    assert_eq!(
        ok(
            hot.strike_windows(&p, t0 - 2500, ms(1000)).await,
            "strike_windows"
        ),
        [(t0 - 2500, 2), (t0 - 2000, 2)],
        "strikes up to a window later, each window's start exclusive"
    );
    assert_eq!(
        ok(
            hot.strike_windows(&fresh_key("none"), t0, ten_min).await,
            "strike_windows"
        ),
        []
    );
    assert_eq!(ok(hot.strikes(&p, t0, ms(2500)).await, "strikes"), 2);
    // The bound is exclusive: a strike exactly `window` ago is out.
    assert_eq!(ok(hot.strikes(&p, t0, ms(2000)).await, "strikes"), 1);
    assert_eq!(ok(hot.strikes(&p, t0, ms(2001)).await, "strikes"), 2);
    assert_eq!(ok(hot.strikes(&p, t0, ms(500)).await, "strikes"), 0);

    // A strike long after the previous one starts a new count.
    let q = fresh_key("strikes-q");
    let ten_s = Duration::from_secs(10);
    assert_eq!(strike(hot, &q, "e1", t0 - 20_000, ten_s).await, 1);
    assert_eq!(strike(hot, &q, "e2", t0, ten_s).await, 1);
    assert_eq!(strike(hot, &q, "e3", t0 + 1, ten_s).await, 2);
    assert_eq!(ok(hot.strikes(&q, t0 + 1, ten_s).await, "strikes"), 2);

    // The same strike again (a redelivered batch), at its time or later, counts once; its first
    // time is kept.
    for at in [t0 + 1, t0 + 5_000] {
        assert_eq!(strike(hot, &q, "e3", at, ten_s).await, 2);
    }
    assert_eq!(ok(hot.strikes(&q, t0 + 1, ten_s).await, "strikes"), 2);
    assert_eq!(
        ok(hot.strikes(&q, t0 + 10_001, ten_s).await, "strikes"),
        0,
        "kept at its first time"
    );
    // A late strike more than a window before the newest still finds the earlier ones in its
    // window: the newest did not make the set forget them (times ahead of now, so that the
    // set outlives the test).
    let s = fresh_key("strikes-late");
    assert_eq!(strike(hot, &s, "s1", t0 - 5_000, ten_s).await, 1);
    assert_eq!(strike(hot, &s, "s2", t0 + 8_000, ten_s).await, 1);
    let late = strike(hot, &s, "late", t0 + 1_000, ten_s).await;
    assert_eq!(late, 2, "s1, 6 s before it");
    assert_eq!(
        ok(
            hot.strike_windows(&s, t0 + 1_000, ten_s).await,
            "strike_windows"
        ),
        [(t0 + 1_000, 2), (t0 + 8_000, 2)]
    );
    // Kept `keep` after the latest (here a minute, the window 10 s): strikes flagged 20 s ago,
    // recorded only now (a batch held by an outage), still find each other.
    let kept = fresh_key("strikes-kept");
    let minute = Duration::from_secs(60);
    for (n, at) in [(1, t0 - 20_000), (2, t0 - 19_000), (3, t0 - 18_000)] {
        let id = format!("k{n}");
        let held = Strike {
            id: &id,
            at_ms: at,
            window: ten_s,
            keep: minute,
        };
        assert_eq!(
            ok(hot.add_strike(&kept, held).await, "add_strike"),
            n,
            "{id} finds the ones before it"
        );
    }
    // And still there a moment later (a set kept only its window would be gone at once).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let windows = hot.strike_windows(&kept, t0 - 20_000, ten_s).await;
    assert_eq!(
        ok(windows, "strike_windows"),
        [(t0 - 20_000, 1), (t0 - 19_000, 2), (t0 - 18_000, 3)]
    );
    // Strike ids are per player.
    let r = fresh_key("strikes-r");
    assert_eq!(strike(hot, &r, "e3", t0, ten_s).await, 1);
}

/// Caches `value` under `key` for `ttl` and reads it back.
async fn put_and_read_back(hot: &dyn HotState, key: &str, value: Bytes, ttl: Duration) {
    ok(hot.cache_put(key, value.clone(), ttl).await, "cache_put");
    assert_eq!(ok(hot.cache_get(key).await, "cache_get"), Some(value));
}

/// Put, overwrite, read, delete.
pub async fn cache_round_trip(hot: &dyn HotState) {
    let key = fresh_key("cache");
    assert_eq!(ok(hot.cache_get(&key).await, "cache_get"), None);
    put_and_read_back(hot, &key, Bytes::from_static(b"one"), LONG).await;
    put_and_read_back(hot, &key, Bytes::from(vec![0u8, 255, 10, 13]), LONG).await;
    ok(hot.cache_del(&key).await, "cache_del");
    assert_eq!(ok(hot.cache_get(&key).await, "cache_get"), None);
    ok(hot.cache_del(&key).await, "cache_del of a missing key");
}

/// Cached values disappear after their TTL.
pub async fn cache_entries_expire(hot: &dyn HotState) {
    let key = fresh_key("cache-ttl");
    put_and_read_back(hot, &key, Bytes::from_static(b"v"), TTL).await;
    tokio::time::sleep(PAST_TTL).await;
    assert_eq!(
        ok(hot.cache_get(&key).await, "cache_get"),
        None,
        "a cached value outlived its TTL"
    );
}
