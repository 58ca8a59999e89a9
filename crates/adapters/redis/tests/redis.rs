//! The Redis adapters against real servers: both conformance suites on a single node
//! (`LIVEOPS_TEST_REDIS_URL`) and on a Redis Cluster (`LIVEOPS_TEST_REDIS_CLUSTER`), plus round
//! trips, unreachable servers, a server restart, a primary demoted behind its address,
//! idempotency claims run again by a client that lost the reply, and claims extended.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use liveops_core::ports::{
    Blocklist, Board, Health, IdemState, Idempotency, PortError, RankStore, RateDecision,
    RateLimiter, ScoreTotal, StoredAnswer, ViewCache,
};
use liveops_core::Window;
use liveops_redis::{ClaimNonce, RedisConn, RedisHotState, RedisRankStore};
use liveops_testkit::conformance;
use liveops_testkit::fixtures::score_total as total;
use liveops_testkit::redis_server::{closed_port, redis_cli, BehindOneAddress, OwnRedis};

fn env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set: start the test servers (scripts/services.sh start) and \
             `source /tmp/liveops-services/env` before running the Redis tests"
        ),
    }
}

fn single_url() -> String {
    env("LIVEOPS_TEST_REDIS_URL")
}

fn cluster_urls() -> String {
    env("LIVEOPS_TEST_REDIS_CLUSTER")
}

/// A key prefix no other run uses.
fn prefix(tag: &str) -> String {
    format!("test-{tag}-{:016x}:", rand::random::<u64>())
}

async fn connect(url: &str) -> RedisConn {
    let conn = RedisConn::connect(url).await.unwrap();
    // `connect` is lazy about reachability; make sure this one is really up.
    conn.ping()
        .await
        .unwrap_or_else(|e| panic!("redis at {url} is not answering: {e}"));
    conn
}

/// A hot state on the single node under a fresh key prefix for `tag`, with its connection (to
/// read and write its keys directly) and that prefix.
async fn single_hot_state(tag: &str) -> (RedisConn, RedisHotState, String) {
    let conn = connect(&single_url()).await;
    let prefix = prefix(tag);
    let hot = RedisHotState::new(conn.clone()).with_prefix(&prefix);
    (conn, hot, prefix)
}

fn board(window: Window, tag: &str) -> Board {
    Board {
        window,
        period: format!("{tag}-{:016x}", rand::random::<u64>()),
    }
}

// ---- conformance ----

/// The hot-state suite passes on the server(s) at `url`, a cluster or not as `cluster` says.
async fn hot_state_conforms(url: &str, cluster: bool) {
    let conn = connect(url).await;
    assert_eq!(conn.is_cluster(), cluster);
    let hot = RedisHotState::new(conn).with_prefix(&prefix("hot"));
    conformance::hot::run_all(Arc::new(hot)).await;
}

/// The rank-store suite passes on the server(s) at `url`.
async fn rank_store_conforms(url: &str) {
    let conn = connect(url).await;
    let store = RedisRankStore::new(conn).with_prefix(&prefix("rank"));
    conformance::rank::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_hot_state_conforms() {
    hot_state_conforms(&single_url(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_hot_state_conforms() {
    hot_state_conforms(&cluster_urls(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_rank_store_conforms() {
    rank_store_conforms(&single_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_rank_store_conforms() {
    rank_store_conforms(&cluster_urls()).await;
}

#[tokio::test]
async fn the_cluster_is_reached_through_any_url_form() {
    let urls = cluster_urls();
    let first = urls.split(',').next().unwrap().trim().to_owned();
    let host = first.trim_start_matches("redis://").trim_end_matches('/');
    for url in [
        format!("redis+cluster://{host}"),
        format!("{first}?cluster=true"),
    ] {
        let conn = connect(&url).await;
        assert!(conn.is_cluster(), "{url}");
        // Boards land on different masters: the cluster routes each to its slot.
        let store = RedisRankStore::new(conn).with_prefix(&prefix("forms"));
        let boards: Vec<Board> = (0..8).map(|_| board(Window::Daily, "forms")).collect();
        let totals: Vec<ScoreTotal> = boards.iter().map(|b| total(b, "a", 5)).collect();
        store.raise(&totals).await.unwrap();
        for b in &boards {
            assert_eq!(store.rank(b, "a").await.unwrap().unwrap().score, 5);
            store.drop_board(b).await.unwrap();
        }
    }
}

// ---- unblocks at once ----

/// Two unblocks at once, each forgetting strikes then marking the block: the mark of the one
/// that forgot up to the later time stays whichever lands last, so a block being decided on
/// strikes it forgot stays refused.
#[tokio::test]
async fn of_two_unblocks_the_later_mark_stays_whichever_lands_last() {
    let (conn, hot, prefix) = single_hot_state("unblock").await;
    // The other unblock forgot up to an hour ahead (its replica's clock) and marked first.
    let later = liveops_core::now_ms() + 3_600_000;
    let mut set = redis::cmd("SET");
    set.arg(format!("{prefix}hot:block:p"))
        .arg(-later)
        .arg("PX")
        .arg(60_000);
    conn.query::<()>("test", &set).await.unwrap();
    hot.unblock("p", Duration::from_secs(60)).await.unwrap();
    let until = later + 7_200_000;
    assert!(
        !hot.block("p", later, until).await.unwrap(),
        "a block on strikes the later unblock forgot"
    );
    assert!(hot.block("p", later + 1, until).await.unwrap());
}

// ---- round trips ----

#[tokio::test]
async fn a_batch_of_500_totals_on_one_board_is_one_round_trip() {
    let conn = connect(&single_url()).await;
    let store = RedisRankStore::new(conn.clone()).with_prefix(&prefix("trips"));
    let b = board(Window::Weekly, "trips");
    let totals: Vec<ScoreTotal> = (0..500)
        .map(|i| total(&b, &format!("p{:03}", i % 250), i))
        .collect();
    let before = conn.round_trips();
    store.raise(&totals).await.unwrap();
    assert_eq!(conn.round_trips() - before, 1, "one batch, one round trip");
    // Each player holds its highest total: p000 250 (not 0), p249 499.
    assert_eq!(store.size(&b).await.unwrap(), 250);
    let top = store.top(&b, 0, 1).await.unwrap();
    assert_eq!((top[0].player_id.as_str(), top[0].score), ("p249", 499));
    assert_eq!(store.rank(&b, "p000").await.unwrap().unwrap().score, 250);
    // A whole board of 25 000 (a reload) takes three round trips, and lowers nobody.
    let reload: Vec<ScoreTotal> = (0..25_000)
        .map(|i| total(&b, &format!("p{i:03}"), 1))
        .collect();
    let before = conn.round_trips();
    store.raise(&reload).await.unwrap();
    assert_eq!(conn.round_trips() - before, 3);
    assert_eq!(store.size(&b).await.unwrap(), 25_000);
    assert_eq!(store.rank(&b, "p249").await.unwrap().unwrap().rank, 1);
    store.drop_board(&b).await.unwrap();
}

/// What screening a batch of 500 players costs: their blocks and rate windows one player at a
/// time (as the gateway did), then in one call each; the round trips of each way.
async fn screening_500_players(conn: &RedisConn, hot: &RedisHotState) -> (u64, u64) {
    let names: Vec<String> = (0..500).map(|i| format!("p{i:03}")).collect();
    let players: Vec<&str> = names.iter().map(String::as_str).collect();
    let now = liveops_core::now_ms();
    hot.block("p007", now, now + 60_000).await.unwrap();
    // Every master loads the script first (a load is a round trip of its own).
    let warm: Vec<String> = (0..64).map(|i| format!("w{i}")).collect();
    let warm: Vec<(&str, u32)> = warm.iter().map(|w| (w.as_str(), 1)).collect();
    hot.rate_hits(&warm, 100).await.unwrap();
    let before = conn.round_trips();
    for player in &players {
        if hot.blocked_until(player).await.unwrap().is_none() {
            hot.rate_hit(player, 1, 100).await.unwrap();
        }
    }
    let one_by_one = conn.round_trips() - before;
    let before = conn.round_trips();
    let blocks = hot.blocked_until_each(&players).await.unwrap();
    let hits: Vec<(&str, u32)> = players.iter().map(|&p| (p, 1)).collect();
    let decisions = hot.rate_hits(&hits, 100).await.unwrap();
    let batched = conn.round_trips() - before;
    assert_eq!(blocks.iter().filter(|b| b.is_some()).count(), 1);
    assert_eq!(blocks[7], Some(now + 60_000));
    assert!(decisions.iter().all(|d| *d == RateDecision::Allowed));
    (one_by_one, batched)
}

#[tokio::test]
async fn screening_a_batch_of_500_players_is_two_round_trips_not_a_thousand() {
    let (conn, hot, _) = single_hot_state("screen").await;
    assert_eq!(screening_500_players(&conn, &hot).await, (999, 2));
}

#[tokio::test]
async fn on_the_cluster_screening_500_players_reads_their_blocks_in_one_call() {
    let conn = connect(&cluster_urls()).await;
    let hot = RedisHotState::new(conn.clone()).with_prefix(&prefix("screen"));
    // The MGET counts once (the client splits it by slot, side by side); the rate windows lie
    // in 500 slots: one script call per player, side by side.
    assert_eq!(screening_500_players(&conn, &hot).await, (999, 1 + 500));
}

#[tokio::test]
async fn on_the_cluster_a_batch_is_one_pipeline_per_board_plus_the_registry() {
    let conn = connect(&cluster_urls()).await;
    let store = RedisRankStore::new(conn.clone()).with_prefix(&prefix("trips"));
    let boards = [
        board(Window::Daily, "trips"),
        board(Window::Weekly, "trips"),
        board(Window::Seasonal, "trips"),
    ];
    let totals: Vec<ScoreTotal> = (0..500)
        .map(|i| total(&boards[i % 3], &format!("p{i}"), 1))
        .collect();
    let before = conn.round_trips();
    store.raise(&totals).await.unwrap();
    assert_eq!(conn.round_trips() - before, 4);
    let sizes = [167, 167, 166];
    for (b, size) in boards.iter().zip(sizes) {
        assert_eq!(store.size(b).await.unwrap(), size);
        store.drop_board(b).await.unwrap();
    }
}

// ---- expiry of old boards ----

#[tokio::test]
async fn an_expired_board_disappears_from_boards() {
    for url in [single_url(), cluster_urls()] {
        let conn = connect(&url).await;
        let store = RedisRankStore::new(conn).with_prefix(&prefix("expire"));
        let (old, live) = (board(Window::Daily, "old"), board(Window::Daily, "live"));
        store
            .raise(&[total(&old, "a", 1), total(&live, "a", 2)])
            .await
            .unwrap();
        store
            .expire_board(&old, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(
            store.size(&old).await.unwrap(),
            1,
            "readable until it expires"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(store.size(&old).await.unwrap(), 0);
        assert_eq!(store.boards().await.unwrap(), vec![live.clone()]);
        store.drop_board(&live).await.unwrap();
        assert!(store.boards().await.unwrap().is_empty());
    }
}

// ---- unreachable and restarted servers ----

fn unavailable<T: std::fmt::Debug>(result: Result<T, PortError>, what: &str) {
    assert!(
        matches!(result, Err(PortError::Unavailable(_))),
        "{what} gave {result:?}, expected Unavailable"
    );
}

async fn every_call_is_unavailable_promptly(url: &str) {
    let started = Instant::now();
    let conn = RedisConn::connect(url).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "connect hung");
    let hot = RedisHotState::new(conn.clone());
    let rank = RedisRankStore::new(conn);
    let b = board(Window::Daily, "down");
    let calls: Vec<(&str, Duration)> = vec![
        ("healthcheck", {
            let t = Instant::now();
            unavailable(hot.healthcheck().await, "healthcheck");
            t.elapsed()
        }),
        ("idem_begin", {
            let t = Instant::now();
            unavailable(
                hot.idem_begin("k", "fp", Duration::from_secs(5)).await,
                "idem_begin",
            );
            t.elapsed()
        }),
        ("rate_hit", {
            let t = Instant::now();
            unavailable(hot.rate_hit("p", 1, 5).await, "rate_hit");
            t.elapsed()
        }),
        ("raise", {
            let t = Instant::now();
            unavailable(rank.raise(&[total(&b, "a", 1)]).await, "raise");
            t.elapsed()
        }),
        ("top", {
            let t = Instant::now();
            unavailable(rank.top(&b, 0, 10).await, "top");
            t.elapsed()
        }),
    ];
    for (what, took) in calls {
        assert!(took < Duration::from_secs(3), "{what} took {took:?}");
    }
}

#[tokio::test]
async fn a_closed_port_gives_unavailable_within_three_seconds() {
    every_call_is_unavailable_promptly(&format!("redis://127.0.0.1:{}/", closed_port())).await;
}

#[tokio::test]
async fn a_closed_cluster_gives_unavailable_within_three_seconds() {
    let (a, b) = (closed_port(), closed_port());
    every_call_is_unavailable_promptly(&format!("redis://127.0.0.1:{a},redis://127.0.0.1:{b}"))
        .await;
}

#[tokio::test]
async fn a_silent_server_gives_unavailable_within_three_seconds() {
    // Accepts connections and never answers: only the call timeout can end the wait.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    every_call_is_unavailable_promptly(&format!("redis://127.0.0.1:{port}/")).await;
    keep.abort();
}

async fn wait_until_healthy(hot: &RedisHotState, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if hot.healthcheck().await.is_ok() {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "no recovery within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn connections_recover_after_a_server_restart() {
    let port = closed_port();
    let url = format!("redis://127.0.0.1:{port}/");
    // Created while the server is still down: the first calls fail, later ones connect.
    let conn = RedisConn::connect(&url).await.unwrap();
    let hot = RedisHotState::new(conn.clone());
    let rank = RedisRankStore::new(conn);
    unavailable(hot.healthcheck().await, "healthcheck before start");

    let server = OwnRedis::start(port, &[]);
    wait_until_healthy(&hot, Duration::from_secs(10)).await;
    let b = board(Window::Daily, "restart");
    rank.raise(&[total(&b, "a", 1)]).await.unwrap();

    server.stop();
    let t = Instant::now();
    unavailable(hot.cache_get("x").await, "cache_get while down");
    unavailable(rank.size(&b).await, "size while down");
    assert!(t.elapsed() < Duration::from_secs(5));

    let _server = OwnRedis::start(port, &[]);
    wait_until_healthy(&hot, Duration::from_secs(10)).await;
    // The new server is empty; the same handles work again without being rebuilt.
    assert_eq!(rank.size(&b).await.unwrap(), 0);
    rank.raise(&[total(&b, "a", 2)]).await.unwrap();
    assert_eq!(rank.rank(&b, "a").await.unwrap().unwrap().score, 2);
    assert_eq!(
        hot.rate_hit("a", 1, 10).await.unwrap(),
        liveops_core::ports::RateDecision::Allowed
    );
}

// ---- a primary demoted behind its address ----

/// Writes through `hot` until one succeeds; how many failed first (each `Unavailable`, the
/// server's "read only replica"), at most `max`.
async fn failures_before_a_write(hot: &RedisHotState, write: &str, max: usize) -> usize {
    let mut failed = 0;
    loop {
        let result = match write {
            "script" => hot
                .idem_begin(&format!("k{failed}"), "A", LONG)
                .await
                .map(|state| assert_eq!(state, IdemState::Fresh)),
            _ => hot.cache_put("c", Bytes::from_static(b"v"), LONG).await,
        };
        match result {
            Ok(()) => return failed,
            Err(PortError::Unavailable(m)) if m.contains("read only") && failed < max => {
                failed += 1;
            }
            Err(other) => panic!("{write} write {failed}: {other:?}"),
        }
    }
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demoted_behind_its_address_fails_one_write_then_the_new_one_takes_them() {
    // A primary and its replica; the connection reaches the primary through the cache's one
    // address.
    let pair = BehindOneAddress::start().await;
    let (a, b) = (pair.first, pair.second);
    let conn = connect(&format!("redis://{}/", pair.address.addr)).await;
    let prefix = prefix("demoted");
    let hot = RedisHotState::new(conn.clone()).with_prefix(&prefix);
    hot.cache_put("before", Bytes::from_static(b"1"), LONG)
        .await
        .unwrap();
    assert_eq!(
        hot.idem_begin("k", "A", LONG).await.unwrap(),
        IdemState::Fresh
    );

    // The replica is promoted and the primary demoted: the kept connection reaches a replica.
    // A script's write fails once at most, then the same store writes on the new primary.
    pair.fail_over(a, b).await;
    assert!(failures_before_a_write(&hot, "script", 1).await <= 1);
    for _ in 0..5 {
        hot.cache_put("after", Bytes::from_static(b"2"), LONG)
            .await
            .unwrap();
    }
    let after = format!("{prefix}hot:cache:after");
    assert_eq!(redis_cli(b, &["get", &after]).await.trim(), "2");
    assert_eq!(
        hot.idem_begin("k", "A", LONG).await.unwrap(),
        IdemState::InFlight
    );

    // And back (the old primary promoted again): a plain command's write fails once at most.
    pair.fail_over(b, a).await;
    assert!(failures_before_a_write(&hot, "command", 1).await <= 1);
    hot.healthcheck().await.unwrap();
    assert!(redis_cli(a, &["info", "replication"])
        .await
        .contains("role:master"));
    assert_eq!(
        hot.cache_get("after").await.unwrap(),
        Some(Bytes::from_static(b"2"))
    );
}

// ---- idempotency claims run again ----

/// The claim script run twice under one nonce (a client retrying it after losing the reply)
/// answers the claimant `Fresh` both times; another call of the same request (another nonce)
/// finds the claim in flight, and an answered key is answered whatever the nonce.
async fn a_claim_run_again_is_the_claimants_own(url: &str) {
    let hot = RedisHotState::new(connect(url).await).with_prefix(&prefix("claim"));
    let nonce = ClaimNonce::new();
    let claim = |fp: &'static str, nonce: ClaimNonce| {
        let hot = &hot;
        async move { hot.idem_claim("k", fp, &nonce, LONG).await.unwrap() }
    };
    assert_eq!(claim("A", nonce.clone()).await, IdemState::Fresh);
    assert_eq!(
        claim("A", nonce.clone()).await,
        IdemState::Fresh,
        "the retried run"
    );
    assert_eq!(claim("A", ClaimNonce::new()).await, IdemState::InFlight);
    assert_eq!(
        hot.idem_begin("k", "A", LONG).await.unwrap(),
        IdemState::InFlight
    );
    // The nonce is the call's, never a pass for another body.
    assert_eq!(claim("B", nonce.clone()).await, IdemState::Mismatch);
    let answer = StoredAnswer {
        status: 202,
        body: r#"{"eventId":"e"}"#.into(),
    };
    hot.idem_complete("k", "A", answer.clone(), LONG)
        .await
        .unwrap();
    assert_eq!(claim("A", nonce).await, IdemState::Done(answer));
}

#[tokio::test]
async fn single_node_claims_run_again_under_their_nonce_are_their_own() {
    a_claim_run_again_is_the_claimants_own(&single_url()).await;
}

#[tokio::test]
async fn cluster_claims_run_again_under_their_nonce_are_their_own() {
    a_claim_run_again_is_the_claimants_own(&cluster_urls()).await;
}

/// The claim script of the release before nonces, word for word.
const PREVIOUS_BEGIN_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

#[tokio::test]
async fn claims_cross_a_rolling_upgrade_both_ways() {
    let (conn, hot, prefix) = single_hot_state("upgrade").await;
    let key = |k: &str| format!("{prefix}hot:idem:{k}");

    // A claim of the previous release (no nonce) is in flight to this one, under any nonce,
    // and this release completes it.
    let mut set = redis::cmd("SET");
    set.arg(key("old"))
        .arg(r#"{"fp":"A"}"#)
        .arg("PX")
        .arg(60_000);
    conn.query::<()>("test", &set).await.unwrap();
    let nonce = ClaimNonce::new();
    for _ in 0..2 {
        let state = hot.idem_claim("old", "A", &nonce, LONG).await.unwrap();
        assert_eq!(state, IdemState::InFlight);
    }
    let answer = StoredAnswer {
        status: 202,
        body: "{}".into(),
    };
    hot.idem_complete("old", "A", answer.clone(), LONG)
        .await
        .unwrap();
    assert_eq!(
        hot.idem_begin("old", "A", LONG).await.unwrap(),
        IdemState::Done(answer)
    );

    // A claim of this release, read by the previous one's script: a claim of that body with
    // no answer (in flight), its extra field read past.
    assert_eq!(
        hot.idem_begin("new", "A", LONG).await.unwrap(),
        IdemState::Fresh
    );
    let script = redis::Script::new(PREVIOUS_BEGIN_LUA);
    let mut call = script.prepare_invoke();
    call.key(key("new")).arg(r#"{"fp":"B"}"#).arg(60_000);
    let found: Option<String> = conn.invoke("test", &call).await.unwrap();
    let found: serde_json::Value = serde_json::from_str(&found.unwrap()).unwrap();
    assert_eq!(found["fp"], "A");
    assert!(found.get("answer").is_none(), "{found}");
    // Its release (the same script in both releases) frees it.
    hot.idem_release("new", "A").await.unwrap();
    assert_eq!(
        hot.idem_begin("new", "A", LONG).await.unwrap(),
        IdemState::Fresh
    );
}

/// An extension changes only a claim's TTL, never shortening it: the record stays as written, a
/// claim of the release before nonces is extended too, and an unreadable record is an error.
#[tokio::test]
async fn an_extension_changes_only_the_claims_ttl() {
    let (conn, hot, prefix) = single_hot_state("extend").await;
    let key = |k: &str| format!("{prefix}hot:idem:{k}");
    let get = |k: &str| {
        let (conn, k) = (conn.clone(), key(k));
        async move {
            let record: Option<String> =
                conn.query("test", redis::cmd("GET").arg(&k)).await.unwrap();
            let left: i64 = conn
                .query("test", redis::cmd("PTTL").arg(&k))
                .await
                .unwrap();
            (record.unwrap(), left)
        }
    };
    let short = Duration::from_secs(1);

    assert_eq!(
        hot.idem_begin("new", "A", short).await.unwrap(),
        IdemState::Fresh
    );
    let (claim, left) = get("new").await;
    assert!(left <= 1000, "{left}");
    assert!(hot.idem_extend("new", "A", LONG).await.unwrap());
    let (extended, left) = get("new").await;
    assert_eq!(extended, claim, "the record was rewritten");
    assert!(left > 50_000, "{left}");
    // A shorter extension leaves the longer TTL.
    assert!(hot.idem_extend("new", "A", short).await.unwrap());
    assert!(get("new").await.1 > 50_000);

    let mut set = redis::cmd("SET");
    set.arg(key("old")).arg(r#"{"fp":"A"}"#).arg("PX").arg(1000);
    conn.query::<()>("test", &set).await.unwrap();
    assert!(hot.idem_extend("old", "A", LONG).await.unwrap());
    assert_eq!(get("old").await.0, r#"{"fp":"A"}"#);
    assert!(get("old").await.1 > 50_000);

    let mut set = redis::cmd("SET");
    set.arg(key("bad")).arg("not json").arg("PX").arg(60_000);
    conn.query::<()>("test", &set).await.unwrap();
    let bad = hot.idem_extend("bad", "A", LONG).await;
    assert!(matches!(bad, Err(PortError::Corrupt(_))), "{bad:?}");
}
