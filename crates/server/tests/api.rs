//! End-to-end: the real application on a random port, every route, every bad-input class.

mod common;

use std::time::Duration;

use common::*;
use liveops_core::{Receipt, Verification};
use liveops_fairness::{FlagList, PlayerFairness};
use liveops_gateway::{BatchAnswer, EventAccepted, ItemResult};
use liveops_leaderboard::{HistoryView, PlayerRankView};
use liveops_testkit::served::metric_sum;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// A receipt's field and how a forger alters it.
type Tampering = (&'static str, fn(&mut Receipt));

#[tokio::test]
async fn sample_events_flow_to_progression_and_leaderboards() {
    let app = spawn_app(&[]).await;
    for name in ["progression", "boss_kill", "drop_claimed"] {
        let a = app.send_event(&sample(name)).await;
        assert_eq!(a.status, 202, "{name}: {}", a.body);
        let id = a.json::<EventAccepted>().event_id;
        // Derived from the signed request (ADR 0017): a repeat carries the same id.
        assert_eq!(id.get_version_num(), 8);
    }
    // A `ProgressView` has a numeric season: reading the answer as one checks it.
    let p = eventually(WAIT, "xp of player_12345", || async {
        Some(app.progress("player_12345").await).filter(|p| p.xp == 150)
    })
    .await;
    assert_eq!(p.level, 1);
    assert_eq!(p.player_id, "player_12345");
    assert!(p.updated_at.is_some(), "{p:?}");

    let drop = eventually(WAIT, "drop in inventory", || async {
        Some(app.progress("player_abcde").await).filter(|p| !p.inventory.is_empty())
    })
    .await;
    assert_eq!(drop.inventory[0].item, "epic_sword_001");
    assert!(
        drop.pending_rewards
            .iter()
            .any(|r| r.item == "epic_sword_001" && r.source == "raid_chest"),
        "{drop:?}"
    );

    for window in ["daily", "weekly", "seasonal"] {
        let score = eventually(WAIT, "boss kill on the board", || {
            app.score(window, "player_67890")
        })
        .await;
        assert_eq!(score, 2500, "{window}");
        assert_eq!(
            app.score(window, "player_12345").await,
            Some(150),
            "{window}"
        );
        // Its period, from and to are strings: a `LeaderboardView` reads them as such.
        let board = app.leaderboard(window).await;
        assert_eq!(board.window.as_str(), window);
        assert_eq!(board.entries[0].rank, 1);
        assert_eq!(board.entries[0].player_id, "player_67890");
    }
    let a = app
        .get("/leaderboard/players/player_12345?window=weekly&around=1")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let me: PlayerRankView = a.json();
    assert_eq!((me.rank, me.score), (2, 150));
    assert!(
        me.neighbours.iter().any(|n| n.player_id == "player_67890"),
        "{me:?}"
    );
    app.shutdown().await;
}

/// With `EVENT_RETENTION` under a day, the gateway takes no event older than consumers
/// remember ids for (less the 5 min a first copy may run ahead): a resend could not be told
/// from the first and would be applied twice.
#[tokio::test]
async fn a_short_retention_bounds_how_old_an_event_may_be() {
    let app = spawn_app(&["--event-retention", "11m"]).await;
    let mut old = xp("player_old", 10);
    old["ts"] = json!(now() - 7 * 60);
    let p = app.send_event(&old).await.assert_problem(400);
    assert_eq!(p.field.as_deref(), Some("ts"));
    old["ts"] = json!(now() - 5 * 60);
    assert_eq!(app.send_event(&old).await.status, 202);
}

#[tokio::test]
async fn batch_gives_a_result_per_item() {
    let app = spawn_app(&[]).await;
    let mut bad = xp("player_batch_2", 1);
    bad["payload"]["deltaXp"] = json!(0);
    let a = app
        .send_batch(&[
            xp("player_batch_1", 10),
            bad,
            kill("player_batch_1", 5),
            json!({"type": "nope"}),
        ])
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let batch: BatchAnswer = a.json();
    assert_eq!((batch.accepted, batch.rejected), (2, 2), "{batch:?}");
    let results = &batch.results;
    assert_eq!(results.len(), 4);
    // An accepted item has an event id: `ItemResult::Accepted` requires one.
    assert!(
        matches!(&results[0], ItemResult::Accepted(i) if i.status == 202),
        "{batch:?}"
    );
    assert!(
        matches!(&results[1], ItemResult::Rejected(i)
            if i.status == 400 && i.error.field.as_deref().unwrap_or_default().contains("deltaXp")),
        "{batch:?}"
    );
    assert!(
        matches!(&results[3], ItemResult::Rejected(i) if i.status == 400),
        "{batch:?}"
    );
    let score = eventually(WAIT, "batch scores", || async {
        app.score("daily", "player_batch_1")
            .await
            .filter(|s| *s == 15)
    })
    .await;
    assert_eq!(score, 15);

    // Too many events, and too large a body.
    let many: Vec<Value> = (0..501)
        .map(|i| xp(&format!("player_many_{i}"), 1))
        .collect();
    app.send_batch(&many).await.assert_problem(413);
    // Every event of the batch was refused, and counted; a body too large to read counts one.
    let too_large = [r#"reason="too_large""#];
    let m = app.metrics().await;
    assert_eq!(metric_sum(&m, "dropped_events_total", &too_large), 501.0);
    let huge = vec![b' '; 1024 * 1024 + 10];
    app.post_signed("/events/batch", &huge, now(), &[])
        .await
        .assert_problem(413);
    let m = app.metrics().await;
    assert_eq!(metric_sum(&m, "dropped_events_total", &too_large), 502.0);
    app.send_batch(&[]).await.assert_problem(400);

    // A batch answered again (the same signed request) drops each of its events as a duplicate,
    // as does one refused at the idempotency step (a key reused with another body).
    let events = [xp("player_batch_3", 1), xp("player_batch_4", 1)];
    let body = serde_json::to_vec(&json!({ "events": events })).expect("json");
    let key = [("idempotency-key", "batch-counted-1")];
    let (ts, duplicate) = (now(), [r#"reason="duplicate""#]);
    assert_eq!(
        app.post_signed("/events/batch", &body, ts, &key)
            .await
            .status,
        200
    );
    let before = metric_sum(&app.metrics().await, "dropped_events_total", &duplicate);
    let again = app.post_signed("/events/batch", &body, ts, &key).await;
    assert_eq!(again.status, 208);
    let m = app.metrics().await;
    assert_eq!(
        metric_sum(&m, "dropped_events_total", &duplicate),
        before + 2.0
    );
    let other =
        serde_json::to_vec(&json!({ "events": vec![xp("player_batch_5", 1); 3] })).expect("json");
    let invalid = [r#"reason="invalid""#];
    let before = metric_sum(&m, "dropped_events_total", &invalid);
    let reused = app.post_signed("/events/batch", &other, now(), &key).await;
    reused.assert_problem(422);
    let m = app.metrics().await;
    assert_eq!(
        metric_sum(&m, "dropped_events_total", &invalid),
        before + 3.0
    );
    app.shutdown().await;
}

#[tokio::test]
async fn every_bad_input_class_is_a_problem_never_a_500() {
    let app = spawn_app(&[]).await;
    let good = serde_json::to_vec(&sample("progression")).expect("json");

    // Malformed JSON, wrong types, out of range, unknown type, bad player id: 400 naming the field.
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "progression", "playerId": "player_1", "ts": now(), "payload": {"deltaXp": "150", "activity": "a"}}),
            "payload.deltaXp",
        ),
        (
            json!({"type": "progression", "playerId": "player_1", "ts": now(), "payload": {"deltaXp": 100_001, "activity": "a"}}),
            "payload.deltaXp",
        ),
        (
            json!({"type": "boss_kill", "playerId": "player_1", "ts": now(), "payload": {"bossId": "b", "tier": 0, "points": 1}}),
            "payload.tier",
        ),
        (
            json!({"type": "boss_kill", "playerId": "player_1", "ts": now(), "payload": {"bossId": "b", "tier": 1, "points": 1_000_001}}),
            "payload.points",
        ),
        (
            json!({"type": "drop_claimed", "playerId": "player_1", "ts": now(), "payload": {"dropId": "d", "weight": -0.1, "source": "s"}}),
            "payload.weight",
        ),
        (
            json!({"type": "drop_claimed", "playerId": "player_1", "ts": now(), "payload": {"dropId": "", "weight": 0.1, "source": "s"}}),
            "payload.dropId",
        ),
        (
            json!({"type": "cheat", "playerId": "player_1", "ts": now(), "payload": {}}),
            "type",
        ),
        (
            json!({"type": "progression", "playerId": "no", "ts": now(), "payload": {"deltaXp": 1, "activity": "a"}}),
            "playerId",
        ),
        (
            json!({"type": "progression", "playerId": "bad id!", "ts": now(), "payload": {"deltaXp": 1, "activity": "a"}}),
            "playerId",
        ),
        (
            json!({"type": "progression", "playerId": "player_1", "ts": now() - 90_000, "payload": {"deltaXp": 1, "activity": "a"}}),
            "ts",
        ),
        (
            json!({"type": "progression", "playerId": "player_1", "ts": now() + 600, "payload": {"deltaXp": 1, "activity": "a"}}),
            "ts",
        ),
        (
            json!({"type": "progression", "playerId": "player_1", "ts": now()}),
            "payload",
        ),
    ];
    for (body, field) in cases {
        let a = app.send_event(&body).await;
        let problem = a.assert_problem(400);
        assert_eq!(
            problem.field.as_deref(),
            Some(field),
            "{body} -> {problem:?}"
        );
    }
    app.post_signed("/events", b"{not json", now(), &[])
        .await
        .assert_problem(400);
    app.post_signed("/events", b"", now(), &[])
        .await
        .assert_problem(400);

    // Oversized single event.
    let mut big = sample("progression");
    big["payload"]["activity"] = json!("a".repeat(70 * 1024));
    app.post_signed(
        "/events",
        &serde_json::to_vec(&big).expect("json"),
        now(),
        &[],
    )
    .await
    .assert_problem(413);

    // Unsigned, badly signed, stale, future, unknown key: 401.
    let ts = now().to_string();
    for signature in [None, Some("sha256=00"), Some("garbage")] {
        let headers = match signature {
            Some(sig) => vec![("x-timestamp", ts.as_str()), ("x-signature", sig)],
            None => vec![],
        };
        app.post_raw("/events", good.clone(), &headers)
            .await
            .assert_problem(401);
    }
    let unknown_key: &[(&str, &str)] = &[("x-key-id", "nope")];
    for (ts, headers) in [
        (now() - 301, &[][..]),
        (now() + 301, &[][..]),
        (now(), unknown_key),
    ] {
        app.post_signed("/events", &good, ts, headers)
            .await
            .assert_problem(401);
    }
    // Signed with the rotated-in second key and named by X-Key-Id: accepted.
    let ts = now();
    let sig = app
        .keyring
        .sign_request(Some("k2"), ts, "POST", "/events", &good)
        .expect("k2");
    let ts = ts.to_string();
    let k2 = [
        ("x-timestamp", ts.as_str()),
        ("x-signature", sig.as_str()),
        ("x-key-id", "k2"),
    ];
    let a = app.post_raw("/events", good.clone(), &k2).await;
    assert_eq!(a.status, 202, "{}", a.body);
    // The exact same signed request again without an Idempotency-Key: the first answer.
    let again = app.post_raw("/events", good.clone(), &k2).await;
    assert_eq!((again.status.as_u16(), &again.body), (208, &a.body));

    // Reads: bad ids and out-of-range parameters are 400; unknown routes 404; wrong method 405.
    for path in [
        "/leaderboard?window=hourly",
        "/leaderboard?window=weekly&limit=0",
        "/leaderboard?window=weekly&limit=1001",
        "/leaderboard?window=weekly&limit=abc",
        "/leaderboard?window=weekly&period=2026-W99",
        "/leaderboard/players/player_1?window=weekly&around=-1",
        "/leaderboard/players/bad!id?window=weekly",
        "/leaderboard/history?window=yearly",
        "/players/x/progress",
        "/fairness/players/bad!id",
        "/fairness/flags?limit=0",
        "/fairness/flags?limit=many",
    ] {
        app.get(path).await.assert_problem(400);
    }
    app.get("/leaderboard/players/player_unranked?window=weekly")
        .await
        .assert_problem(404);
    app.get("/no/such/route").await.assert_problem(404);
    app.post_raw("/healthz", vec![], &[])
        .await
        .assert_problem(405);

    // Claims: unsigned 401, malformed 400, unearned 409; verify: malformed 400.
    app.post_raw(
        "/rewards/claim",
        br#"{"playerId":"player_1","rewardId":"r"}"#.to_vec(),
        &[],
    )
    .await
    .assert_problem(401);
    app.post_signed("/rewards/claim", b"{", now(), &[])
        .await
        .assert_problem(400);
    app.post_signed(
        "/rewards/claim",
        br#"{"playerId":"x","rewardId":"r"}"#,
        now(),
        &[],
    )
    .await
    .assert_problem(400);
    app.claim("player_nobody", "level:1:2")
        .await
        .assert_problem(409);
    app.post_raw("/receipts/verify", b"[]".to_vec(), &[])
        .await
        .assert_problem(400);
    app.shutdown().await;
}

#[tokio::test]
async fn a_hundred_concurrent_repeats_give_exactly_one_202() {
    let app = std::sync::Arc::new(spawn_app(&[]).await);
    let ev = xp("player_idem", 77);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let app = app.clone();
        let ev = ev.clone();
        tasks.push(tokio::spawn(async move {
            app.send_event_with_key(&ev, "idem-key-1").await
        }));
    }
    let mut created = 0;
    let mut repeats = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let a = t.await.expect("join");
        match a.status.as_u16() {
            202 => created += 1,
            208 => repeats += 1,
            other => panic!("unexpected {other}: {}", a.body),
        }
        ids.insert(a.json::<EventAccepted>().event_id);
    }
    assert_eq!(created, 1);
    assert_eq!(repeats, 99);
    assert_eq!(ids.len(), 1, "every answer carries the first eventId");
    // The same key with another body is refused.
    app.send_event_with_key(&xp("player_idem", 78), "idem-key-1")
        .await
        .assert_problem(422);
    let xp_now = eventually(WAIT, "idempotent xp", || async {
        Some(app.progress("player_idem").await.xp).filter(|xp| *xp == 77)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.progress("player_idem").await.xp, xp_now, "counted once");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let app = spawn_app(&["--rate-limit-max", "5"]).await;
    let mut limited = None;
    for i in 0..20 {
        let a = app.send_event(&xp("player_rate", 1 + i)).await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.status, 202, "{}", a.body);
    }
    let a = limited.expect("a 429 within 20 fast events");
    a.assert_retry_later();
    assert!(app.metrics().await.contains("reason=\"rate\""));
    app.shutdown().await;
}

#[tokio::test]
async fn anomalies_are_quarantined_and_repeat_offenders_blocked() {
    let app = spawn_app(&["--anomaly-warmup", "20", "--block-sec", "60"]).await;
    // Warm-up: ordinary kills from many players.
    let normal: Vec<Value> = (0..40)
        .map(|i| kill(&format!("player_norm_{i}"), 900 + (i % 7) * 40))
        .collect();
    assert_eq!(
        app.send_batch(&normal).await.json::<BatchAnswer>().accepted,
        40
    );
    eventually(WAIT, "warm-up applied", || async {
        app.score("weekly", "player_norm_39").await
    })
    .await;

    // A cheater: three absurd kills.
    for i in 0..3 {
        let a = app.send_event(&kill("player_cheat", 1_000_000 - i)).await;
        assert_eq!(a.status, 202, "{}", a.body);
    }
    let f = eventually(WAIT, "cheater blocked", || async {
        let a = app.get("/fairness/players/player_cheat").await;
        a.try_json::<PlayerFairness>().filter(|f| f.blocked)
    })
    .await;
    assert_eq!(f.strikes, 3, "{f:?}");
    assert!(f.blocked_until.is_some(), "{f:?}");
    assert_eq!(f.flags.len(), 3, "{f:?}");
    assert!(f.flags[0].z_score > 3.5, "{f:?}");

    // The gateway now refuses the player.
    app.send_event(&kill("player_cheat", 10))
        .await
        .assert_problem(403);
    // Quarantined events never reach the leaderboard or progression.
    assert_eq!(app.score("weekly", "player_cheat").await, None);
    let flags = app.get("/fairness/flags?limit=10").await;
    assert_eq!(flags.status, 200);
    assert!(flags
        .json::<FlagList>()
        .flags
        .iter()
        .any(|f| f.player_id == "player_cheat"));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("anomaly_flags_total{type=\"boss_kill\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("dropped_events_total"), "{metrics}");
    app.shutdown().await;
}

#[tokio::test]
async fn rewards_are_claimed_once_with_a_verifiable_receipt() {
    let app = spawn_app(&[]).await;
    assert_eq!(app.send_event(&xp("player_lvl", 600)).await.status, 202);
    assert_eq!(app.send_event(&xp("player_lvl", 650)).await.status, 202);
    let p = eventually(WAIT, "level up", || async {
        Some(app.progress("player_lvl").await).filter(|p| p.level == 2)
    })
    .await;
    assert_eq!(p.xp, 1250);
    let reward = p.pending_rewards[0].clone();
    let reward_id = reward.reward_id.clone();
    assert_eq!(reward.source, "level_up");

    let first = app.claim("player_lvl", &reward_id).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let receipt: Receipt = first.json();
    assert_eq!(receipt.player_id, "player_lvl");
    assert_eq!(receipt.item, reward.item);
    let again = app.claim("player_lvl", &reward_id).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json::<Receipt>(),
        receipt,
        "claiming twice returns the same receipt"
    );
    // Claimed rewards leave the pending list and land in the inventory.
    let p = app.progress("player_lvl").await;
    assert!(p.pending_rewards.iter().all(|r| r.reward_id != reward_id));
    assert!(p.inventory.iter().any(|i| i.item == reward.item));
    // Someone else cannot claim it.
    app.claim("player_other", &reward_id)
        .await
        .assert_problem(409);

    let ok = app.verify_receipt(&receipt).await;
    assert_eq!(ok.status, 200);
    assert!(ok.json::<Verification>().valid, "{}", ok.body);
    let tamperings: [Tampering; 5] = [
        ("receiptId", |r| r.receipt_id = "forged".into()),
        ("playerId", |r| r.player_id = "player_thief".into()),
        ("item", |r| r.item = "legendary_crown".into()),
        ("timestamp", |r| r.timestamp += 1),
        ("sig", |r| r.sig = "00".repeat(32)),
    ];
    for (field, tamper) in tamperings {
        let mut t = receipt.clone();
        tamper(&mut t);
        let a = app.verify_receipt(&t).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(!a.json::<Verification>().valid, "tampered {field}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn operations_routes_answer() {
    let app = spawn_app(&[]).await;
    let h = app.get("/healthz").await;
    assert_eq!(h.status, 200);
    let r = app.get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // `/readyz` has no view type: its checks are a JSON object built on the spot.
    assert_eq!(r.body["checks"]["repository"], "ok");
    // What the event adds to the repository's metrics (the recorder is per process: nextest
    // runs each test alone; under `cargo test` another app may add to them as well).
    let commits = [
        "backend=\"SQLite\"",
        "pool=\"primary\"",
        "call=\"commit_scores\"",
    ];
    let counted = |m: &str| {
        (
            metric_sum(m, "db_call_seconds_count", &commits),
            metric_sum(
                m,
                "db_write_turn_wait_seconds_count",
                &["backend=\"SQLite\""],
            ),
        )
    };
    let before = counted(&app.metrics().await);
    assert_eq!(app.send_event(&sample("boss_kill")).await.status, 202);
    eventually(WAIT, "bus lag gauge", || async {
        let m = app.metrics().await;
        m.contains("bus_lag{").then_some(())
    })
    .await;
    let m = app.get("/metrics").await;
    let text = m.body.as_str().expect("text");
    for needle in [
        "http_requests_total{",
        "http_request_duration_seconds_bucket{",
        "service=\"gateway\"",
        "route=\"/events\"",
        "status=\"202\"",
        "events_ingested_total{type=\"boss_kill\"}",
        // The gateway's publish, timed by bus kind with the latency buckets (100 µs first).
        "bus_publish_seconds_bucket{bus=\"sqlite\",le=\"0.0001\"}",
        "bus_lag{",
        // Set by the /readyz answer above (the value is shared with other tests in this process).
        "\nliveops_ready ",
    ] {
        assert!(text.contains(needle), "missing {needle} in metrics");
    }
    // The repository's calls, timed by call, the waits for SQLite's one writer, and its pool.
    eventually(WAIT, "the leaderboard's commit timed", || async {
        let m = app.metrics().await;
        let (timed, turns) = counted(&m);
        let primary = ["backend=\"SQLite\"", "pool=\"primary\""];
        let pool = metric_sum(&m, "db_pool_max_connections", &primary) == 4.0;
        (timed > before.0 && turns > before.1 && pool).then_some(())
    })
    .await;
    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.status, 200);
    // The served document itself, read as JSON.
    let paths = spec.body["paths"].as_object().expect("paths");
    for p in [
        "/events",
        "/events/batch",
        "/leaderboard",
        "/leaderboard/players/{id}",
        "/leaderboard/history",
        "/players/{id}/progress",
        "/players/{id}/rewards",
        "/players/{id}/inventory",
        "/rewards/claim",
        "/receipts/verify",
        "/fairness/players/{id}",
        "/fairness/flags",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    let took = app.shutdown().await;
    assert!(
        took < Duration::from_secs(10),
        "graceful shutdown took {took:?}"
    );
}

/// What a client generator needs of the document: every operation has its own operationId, no
/// parameter is declared twice, and the path parameters are exactly those of the path template.
#[tokio::test]
async fn the_openapi_document_is_well_formed() {
    let app = spawn_app(&[]).await;
    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.status, 200);
    // About the served document's JSON itself: its members, as a client generator reads them.
    let paths = spec.body["paths"].as_object().expect("paths");
    let mut ids = std::collections::BTreeMap::<String, String>::new();
    let (mut operations, mut cursors) = (0, 0);
    for (path, item) in paths {
        let template: std::collections::BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().expect("path item") {
            operations += 1;
            let at = format!("{method} {path}");
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no operationId"));
            if let Some(other) = ids.insert(id.to_owned(), at.clone()) {
                panic!("operationId {id:?} of {at} is also that of {other}");
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let mut seen = std::collections::BTreeSet::new();
            let mut in_path = std::collections::BTreeSet::new();
            for p in &params {
                let (name, place) = (
                    p["name"].as_str().expect("name"),
                    p["in"].as_str().expect("in"),
                );
                assert!(
                    seen.insert((name, place)),
                    "{at}: {place} parameter {name:?} declared twice"
                );
                if place == "path" {
                    in_path.insert(name);
                }
            }
            assert_eq!(
                in_path, template,
                "{at}: path parameters against the template"
            );
            // A page cursor is documented as what `parse_cursor` (`parse_inbox_cursor` for the
            // inbox) takes; the entrants' as a player id, the inventory's as an item (a label).
            for p in params.iter().filter(|p| p["name"] == "cursor") {
                let takes = if path.ends_with("/inbox") {
                    liveops_http::INBOX_CURSOR_PATTERN
                } else if path.ends_with("/entrants") {
                    liveops_core::event::PLAYER_ID_PATTERN
                } else if path.ends_with("/inventory") {
                    liveops_core::event::LABEL_PATTERN
                } else {
                    liveops_http::CURSOR_PATTERN
                };
                assert_eq!(p["schema"]["pattern"].as_str(), Some(takes), "{at}: cursor");
                cursors += 1;
            }
        }
    }
    assert!(operations >= 40, "only {operations} operations");
    // Numbers declared as wide as what the server sends or reads: a level goes up to
    // u32::MAX (not int32's bound), a receipt's timestamp written as 1e16 is read only within
    // 2^53; a route that takes no body may still refuse one, as its forwarder does.
    let schemas = &spec.body["components"]["schemas"];
    for owner in ["ProgressView", "PlayerCampaigns"] {
        let level = &schemas[owner]["properties"]["level"];
        let declared = (level["format"].as_str(), level["maximum"].as_f64());
        assert_eq!(
            declared,
            (Some("int64"), Some(f64::from(u32::MAX))),
            "{owner}"
        );
    }
    let ts = &schemas["Receipt"]["properties"]["timestamp"];
    let bounds = (ts["minimum"].as_f64(), ts["maximum"].as_f64());
    assert_eq!(bounds, (Some(-(2f64.powi(53))), Some(2f64.powi(53))));
    let read = &paths["/leaderboard"]["get"]["responses"];
    assert!(read["413"].is_object() && read["408"].is_object(), "{read}");
    assert_eq!(
        cursors, 7,
        "the inbox's, the campaigns', the deliveries', the entrants', the rewards', the \
         inventory's and the audit log's cursors"
    );
}

/// The README's route table (`| service | port | routes |`) names every operation the document
/// serves, and no other (`/openapi.json` serves the document itself).
#[tokio::test]
async fn the_readme_route_table_matches_the_served_operations() {
    let app = spawn_app(&[]).await;
    let spec = app.get("/openapi.json").await;
    let served: std::collections::BTreeSet<String> = spec.body["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("path item").keys();
            methods.map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let table = readme
        .split("| service | port | routes |")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the route table");
    // Cells list routes as `METHOD /path` or `POST/GET /path`.
    let mut listed = std::collections::BTreeSet::new();
    for code in table.split('`').skip(1).step_by(2) {
        if let Some((methods, path)) = code.split_once(' ') {
            for method in methods.split('/') {
                listed.insert(format!("{method} {path}"));
            }
        }
    }
    listed.remove("GET /openapi.json");
    assert_eq!(
        listed, served,
        "README route table against the served operations"
    );
}

#[tokio::test]
async fn leaderboard_history_holds_snapshots() {
    // A snapshot every second makes the current period appear in the history quickly.
    let app = spawn_app(&["--snapshot-cron", "* * * * * *"]).await;
    assert_eq!(app.send_event(&kill("player_hist", 4242)).await.status, 202);
    let period = app.leaderboard("daily").await.period;
    let snap = eventually(WAIT, "snapshot", || async {
        let a = app
            .get(&format!(
                "/leaderboard/history?window=daily&period={period}"
            ))
            .await;
        let snap: HistoryView = (a.status == 200).then(|| a.json())?;
        (!snap.entries.is_empty()).then_some(snap)
    })
    .await;
    assert_eq!(snap.entries[0].player_id, "player_hist");
    assert_eq!(snap.entries[0].score, 4242);
    app.get("/leaderboard/history?window=daily&period=2020-01-01")
        .await
        .assert_problem(404);
    app.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_in(dir.path().to_path_buf(), &[]).await;
    assert_eq!(
        app.send_event(&kill("player_restart", 321)).await.status,
        202
    );
    assert_eq!(
        app.send_event(&xp("player_restart", 1500)).await.status,
        202
    );
    eventually(WAIT, "applied", || async {
        app.score("weekly", "player_restart")
            .await
            .filter(|s| *s == 1821)
    })
    .await;
    app.shutdown().await;

    let app = spawn_app_in(dir.path().to_path_buf(), &[]).await;
    assert_eq!(
        app.score("weekly", "player_restart").await,
        Some(1821),
        "ranks rebuilt from the repository"
    );
    let p = app.progress("player_restart").await;
    assert_eq!((p.xp, p.level), (1500, 2));
    app.shutdown().await;
}

#[tokio::test]
async fn the_shared_scenario_passes_on_the_embedded_default() {
    let app = spawn_app(&["--anomaly-warmup", "50"]).await;
    play_scenario(&Urls::all(&app.base), &app.keyring, "embedded").await;
    app.shutdown().await;
}
