//! `POST /events`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use liveops_core::ports::Blocklist;
use liveops_core::{now_ms, Event};
use liveops_gateway::EventAccepted;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn sample_events_are_accepted_and_land_on_the_bus() {
    let app = spawn_app();
    let mut ids = Vec::new();
    for name in ["boss_kill", "drop_claimed", "progression"] {
        let event = sample(name);
        let before = now_ms();
        let res = app.post_event(&event).await;
        assert_eq!(res.status, 202, "{name}: {:?}", res.body);
        assert_eq!(res.content_type(), "application/json");
        let id = res.view::<EventAccepted>().event_id;
        // Derived from the request (its signature here), so a repeat carries the same id.
        assert_eq!(id.get_version_num(), 8);
        let sent: Event = serde_json::from_value(event).unwrap();
        ids.push((id, sent, before));
    }
    let on_bus = app.ingested().await;
    assert_eq!(on_bus.len(), 3);
    for ((delivery, env), (id, sent, before)) in on_bus.iter().zip(&ids) {
        assert_eq!(env.event_id, *id);
        assert_eq!(delivery.key, sent.player_id.as_str());
        assert!(env.received_at >= *before && env.received_at <= now_ms());
        assert_eq!(env.event.kind(), sent.kind());
        assert_eq!(env.event.ts, sent.ts);
    }
}

#[tokio::test]
async fn invalid_events_are_400_problems_naming_the_field() {
    let app = spawn_app();
    // Request bodies are raw JSON: each is a valid sample with one member made invalid.
    let mut wrong_type = sample("progression");
    wrong_type["payload"]["deltaXp"] = json!("lots");
    let mut out_of_range = sample("boss_kill");
    out_of_range["payload"]["tier"] = json!(11);
    let mut negative = sample("boss_kill");
    negative["payload"]["points"] = json!(-5);
    let mut unknown_type = sample("boss_kill");
    unknown_type["type"] = json!("teleport");
    let mut bad_player = sample("boss_kill");
    bad_player["playerId"] = json!("x!");
    let mut unknown_field = sample("drop_claimed");
    unknown_field["payload"]["cheat"] = json!(true);
    let mut stale = sample("progression");
    stale["ts"] = json!(now_s() - 2 * 24 * 3600);
    let mut weight = sample("drop_claimed");
    weight["payload"]["weight"] = json!(1.5);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "body"),
        (b"[]".to_vec(), "body"),
        (serde_json::to_vec(&wrong_type).unwrap(), "payload.deltaXp"),
        (serde_json::to_vec(&out_of_range).unwrap(), "payload.tier"),
        (serde_json::to_vec(&negative).unwrap(), "payload.points"),
        (serde_json::to_vec(&unknown_type).unwrap(), "type"),
        (serde_json::to_vec(&bad_player).unwrap(), "playerId"),
        (serde_json::to_vec(&unknown_field).unwrap(), "payload.cheat"),
        (serde_json::to_vec(&stale).unwrap(), "ts"),
        (serde_json::to_vec(&weight).unwrap(), "payload.weight"),
    ];
    for (body, field) in cases {
        let res = app.send_signed("/events", &body, &[]).await;
        let p = res.problem(400);
        assert_eq!(p.field.as_deref(), Some(field), "{p:?}");
    }
    assert!(app.ingested().await.is_empty());
}

#[tokio::test]
async fn bad_signatures_are_401_problems() {
    let app = spawn_app();
    let body = serde_json::to_vec(&sample("boss_kill")).unwrap();
    let now = now_s();
    let good = app.sign("/events", &body, now, None);
    let sig = good[1].1.clone();
    let ts = now.to_string();
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("x-timestamp", ts.clone())], "missing X-Signature"),
        (vec![("x-signature", sig.clone())], "missing X-Timestamp"),
        (
            vec![("x-timestamp", "soon".into()), ("x-signature", sig.clone())],
            "unix seconds",
        ),
        (
            vec![
                ("x-timestamp", ts.clone()),
                ("x-signature", "md5=abc".into()),
            ],
            "v2=<hex>",
        ),
        // Right format, wrong MAC: the body was signed at another time.
        (
            app.sign("/events", &body, now - 1, None)
                .into_iter()
                .map(|(k, v)| {
                    if k == "x-timestamp" {
                        (k, ts.clone())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            "does not match",
        ),
        (
            app.sign("/events", &body, now - 301, None),
            "outside the allowed window",
        ),
        (
            app.sign("/events", &body, now + 301, None),
            "outside the allowed window",
        ),
        (
            vec![
                ("x-timestamp", ts.clone()),
                ("x-signature", sig.clone()),
                ("x-key-id", "k9".into()),
            ],
            "unknown X-Key-Id",
        ),
        // Signed with k2 but not saying so: checked against the primary key.
        (
            app.sign("/events", &body, now, Some("k2"))
                .into_iter()
                .filter(|(k, _)| *k != "x-key-id")
                .collect(),
            "does not match",
        ),
    ];
    for (headers, reason) in cases {
        let res = app.send("/events", body.clone(), &headers).await;
        let p = res.problem(401);
        assert!(
            p.detail.as_deref().unwrap().contains(reason),
            "{p:?} should say {reason}"
        );
    }
    // A tampered body fails too.
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    app.send("/events", tampered, &good).await.problem(401);
    assert!(app.ingested().await.is_empty());
}

#[tokio::test]
async fn a_rotated_key_is_picked_by_key_id() {
    let app = spawn_app();
    for (event, key_id) in [("progression", "k2"), ("boss_kill", "k1")] {
        let body = serde_json::to_vec(&sample(event)).unwrap();
        let res = app
            .send(
                "/events",
                body.clone(),
                &app.sign("/events", &body, now_s(), Some(key_id)),
            )
            .await;
        assert_eq!(res.status, 202, "{key_id}: {:?}", res.body);
    }
    assert_eq!(app.ingested().await.len(), 2);
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = spawn_app();
    let mut event = sample("boss_kill");
    event["pad"] = json!("x".repeat(64 * 1024)); // a raw request: padded with an unknown member
    let res = app.post_event(&event).await;
    let p = res.problem(413);
    assert!(p.detail.as_deref().unwrap().contains("65536"), "{p:?}");
    // A body just under the limit is read (and then judged on its content).
    let app = spawn_with(|c| c.max_body_bytes = 200);
    let small = sample("boss_kill");
    assert!(serde_json::to_vec(&small).unwrap().len() <= 200);
    assert_eq!(app.post_event(&small).await.status, 202);
}

#[tokio::test]
async fn a_blocked_player_gets_403_until_the_block_ends() {
    let app = spawn_app();
    let until = now_ms() + 60_000;
    app.hot
        .block("player_67890", now_ms(), until)
        .await
        .unwrap();
    let res = app.post_event(&sample("boss_kill")).await;
    let p = res.problem(403);
    assert!(
        p.detail.as_deref().unwrap().contains("blocked until"),
        "{p:?}"
    );
    let retry = res.retry_after();
    assert!((59..=60).contains(&retry), "{retry}");
    // Other players are unaffected.
    assert_eq!(app.post_event(&sample("progression")).await.status, 202);
    assert_eq!(app.ingested().await.len(), 1);
}

#[tokio::test]
async fn a_player_over_the_rate_limit_gets_429_with_retry_after() {
    let app = spawn_with(|c| c.rate_limit_max = 2);
    fresh_second().await;
    for points in [1, 2] {
        assert_eq!(
            app.post_event(&boss_kill("player_fast", points))
                .await
                .status,
            202
        );
    }
    let res = app.post_event(&boss_kill("player_fast", 3)).await;
    res.problem(429);
    assert!(res.retry_after() >= 1);
    // The limit is per player.
    assert_eq!(
        app.post_event(&boss_kill("player_slow", 3)).await.status,
        202
    );
    assert_eq!(app.ingested().await.len(), 3);
}

#[tokio::test]
async fn the_same_signed_request_again_gets_the_first_answer_and_publishes_once() {
    let app = spawn_app();
    let body = serde_json::to_vec(&sample("boss_kill")).unwrap();
    let headers = app.sign("/events", &body, now_s(), None);
    let first = app.send("/events", body.clone(), &headers).await;
    assert_eq!(first.status, 202);
    assert!(!first.headers.contains_key("idempotent-replayed"));
    let again = app.send("/events", body.clone(), &headers).await;
    assert_eq!(again.status, 208, "{:?}", again.body);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), "true");
    // Re-casing the hex does not make it a new request.
    let shouted: Vec<(&str, String)> = headers
        .iter()
        .map(|(k, v)| {
            if *k == "x-signature" {
                (*k, format!("v2={}", v[3..].to_uppercase()))
            } else {
                (*k, v.clone())
            }
        })
        .collect();
    let loud = app.send("/events", body, &shouted).await;
    assert_eq!((loud.status.as_u16(), &loud.body), (208, &first.body));
    assert_eq!(app.ingested().await.len(), 1);
}

#[tokio::test]
async fn equal_events_with_different_message_ids_are_two_events() {
    let app = spawn_app();
    fresh_second().await;
    let ts = now_s();
    let tick = |m: &str, ts: i64| {
        json!({"type": "progression", "playerId": "player_1", "ts": ts, "messageId": m,
               "payload": {"deltaXp": 10, "activity": "tick"}})
    };
    let a = app.post_event(&tick("tick-1", ts)).await;
    let b = app.post_event(&tick("tick-2", ts)).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (202, 202));
    let a = a.view::<EventAccepted>();
    assert_ne!(a, b.view::<EventAccepted>());
    // The same messageId again, signed anew: the same event id, so consumers apply it once.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let c = app.post_event(&tick("tick-1", now_s())).await;
    assert_eq!(c.status, 202);
    assert_eq!(c.view::<EventAccepted>(), a);
    let ids: HashSet<_> = app
        .ingested()
        .await
        .into_iter()
        .map(|(_, e)| e.event_id)
        .collect();
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn a_bad_message_id_is_400() {
    let app = spawn_app();
    for bad in [
        json!(""),
        json!("has space"),
        json!("m".repeat(65)),
        json!(7),
    ] {
        let mut e = sample("progression");
        e["messageId"] = bad; // a raw request: the bad value may not even be a string
        let p = app.post_event(&e).await.problem(400);
        assert_eq!(p.field.as_deref(), Some("messageId"));
    }
    assert!(app.ingested().await.is_empty());
}

#[tokio::test]
async fn an_idempotent_retry_gets_208_and_the_same_answer() {
    let app = spawn_app();
    let event = sample("progression");
    let first = app.post_event_with_key(&event, "retry-me-1").await;
    assert_eq!(first.status, 202);
    // A retry is signed again (new signature or not): the key decides.
    let again = app.post_event_with_key(&event, "retry-me-1").await;
    assert_eq!(again.status, 208);
    assert_eq!(again.content_type(), "application/json");
    assert_eq!(again.body, first.body);
    assert_eq!(app.ingested().await.len(), 1);
}

/// A retry of an accepted event whose `ts` has aged past the limit since still gets the first
/// answer: the event was taken once, so refusing the retry would tell the client it was not.
#[tokio::test]
async fn a_retry_of_an_accepted_event_gets_its_answer_after_its_ts_aged_past_the_limit() {
    let app = spawn_with(|c| c.limits.max_age_s = 1);
    let mut event = sample("progression");
    event["ts"] = json!(now_s());
    let first = app.post_event_with_key(&event, "aged-1").await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let again = app.post_event_with_key(&event, "aged-1").await;
    assert_eq!(again.status, 208, "{:?}", again.body);
    assert_eq!(again.body, first.body);
    // A new request with an event that old is refused as it should be.
    event["ts"] = json!(now_s() - 3);
    let p = app.post_event_with_key(&event, "aged-2").await.problem(400);
    assert_eq!(p.field.as_deref(), Some("ts"));
    assert_eq!(app.ingested().await.len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_is_422() {
    let app = spawn_app();
    assert_eq!(
        app.post_event_with_key(&sample("progression"), "k-1")
            .await
            .status,
        202
    );
    let res = app.post_event_with_key(&sample("boss_kill"), "k-1").await;
    let p = res.problem(422);
    assert_eq!(p.field.as_deref(), Some("Idempotency-Key"));
    assert_eq!(app.ingested().await.len(), 1);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400() {
    let app = spawn_app();
    for key in ["", "has space", &"k".repeat(256)] {
        let res = app
            .post_event_with_key(&boss_kill("player_1", 1), key)
            .await;
        let p = res.problem(400);
        assert_eq!(p.field.as_deref(), Some("Idempotency-Key"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_duplicates_publish_once() {
    let app = std::sync::Arc::new(spawn_app());
    let event = sample("boss_kill");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let app = app.clone();
            let event = event.clone();
            tokio::spawn(async move { app.post_event_with_key(&event, "same-key").await })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut ids = HashSet::new();
    for t in tasks {
        let res = t.await.unwrap();
        statuses.push(res.status.as_u16());
        ids.insert(res.view::<EventAccepted>().event_id);
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 208).count(),
        99,
        "{statuses:?}"
    );
    assert_eq!(ids.len(), 1);
    assert_eq!(app.ingested().await.len(), 1);
}

/// A first request whose publish outlasts the 5 s hold (a bus waiting for its replicas) keeps its
/// holds: the same signed bytes under another key 5.2 s in, whose event id would differ, wait for
/// it and get its answer (before, both holds lapsed and the copy was published too: XP twice).
#[tokio::test]
async fn a_slow_request_keeps_its_holds_from_a_copy_under_another_key() {
    let app = spawn_app();
    let body = serde_json::to_vec(&sample("boss_kill")).unwrap();
    let (first, copy) = app.send_slow_then_copy("/events", &body).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(copy.status, 208, "{:?}", copy.body);
    assert_eq!(copy.header("idempotent-replayed"), "true");
    assert_eq!(copy.body, first.body);
    let ingested = app.ingested().await;
    assert_eq!(ingested.len(), 1, "published once");
    assert_eq!(
        ingested[0].1.event_id,
        first.view::<EventAccepted>().event_id
    );
}

/// A captured request sent again once the gateway forgot it (here the embedded default
/// restarted, its hot state in memory), under an `Idempotency-Key` of the sender's choosing or
/// none (the key is not signed), is taken as new but carries the first request's event id: the
/// consumers, which dedupe by event id, apply it once. (Before, the id followed the key, and each
/// copy under a new key was applied again.)
#[tokio::test]
async fn a_copy_under_another_key_after_a_restart_carries_the_first_event_id() {
    let app = spawn_app();
    let body = serde_json::to_vec(&sample("boss_kill")).unwrap();
    let signed = app.sign("/events", &body, now_s(), None);
    let keyed = |key: &str| {
        let mut headers = signed.clone();
        headers.push(("idempotency-key", key.to_owned()));
        headers
    };
    let first = app.send("/events", body.clone(), &keyed("first")).await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let id = first.view::<EventAccepted>().event_id;
    for copy in [keyed("chosen-by-whoever-captured-it"), signed.clone()] {
        let restarted = app.restarted();
        let again = restarted.send("/events", body.clone(), &copy).await;
        assert_eq!(again.status, 202, "{:?}", again.body);
        assert_eq!(again.view::<EventAccepted>().event_id, id);
    }
    let ingested = app.ingested().await;
    assert_eq!(ingested.len(), 3, "taken as new each time");
    assert!(ingested.iter().all(|(_, e)| e.event_id == id), "one event");
}

/// A gateway that dies mid-request (its runtime gone while the publish stalls) stops extending
/// its holds: they lapse within 5 s of its last extension, and the same request then goes through.
#[tokio::test]
async fn the_holds_of_a_gateway_that_died_mid_request_lapse() {
    use liveops_core::ports::{IdemState, Idempotency};
    use sha2::{Digest, Sha256};

    let app = std::sync::Arc::new(spawn_app());
    let body = serde_json::to_vec(&sample("boss_kill")).unwrap();
    let mut headers = app.sign("/events", &body, now_s(), None);
    headers.push(("idempotency-key", "dies-1".to_owned()));
    app.bus.stall_publish_ms.store(60_000, Ordering::SeqCst);
    let gateway = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    gateway.spawn({
        let (app, body, headers) = (app.clone(), body.clone(), headers.clone());
        async move { app.send("/events", body, &headers).await }
    });
    // Past one extension (at 2 s, to 7 s), the gateway dies.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    gateway.shutdown_background();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let print = hex::encode(Sha256::digest(&body));
    let held = app
        .hot
        .idem_begin("gateway:events:dies-1", &print, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(held, IdemState::InFlight, "held past 5 s by its extension");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    app.bus.stall_publish_ms.store(0, Ordering::SeqCst);
    let again = app.send("/events", body, &headers).await;
    assert_eq!(again.status, 202, "{:?}", again.body);
    assert_eq!(app.ingested().await.len(), 1);
}

#[tokio::test]
async fn a_bus_outage_is_503_and_the_key_can_be_retried() {
    let app = spawn_app();
    app.bus.down.store(true, Ordering::SeqCst);
    let event = sample("boss_kill");
    let res = app.post_event_with_key(&event, "outage-1").await;
    res.problem(503);
    assert!(res.headers.contains_key("retry-after"));
    app.bus.down.store(false, Ordering::SeqCst);
    let res = app.post_event_with_key(&event, "outage-1").await;
    assert_eq!(res.status, 202, "{:?}", res.body);
    assert_eq!(app.ingested().await.len(), 1);
}

#[tokio::test]
async fn a_rate_limited_request_releases_its_key() {
    let app = spawn_with(|c| c.rate_limit_max = 1);
    fresh_second().await;
    assert_eq!(app.post_event(&boss_kill("player_1", 1)).await.status, 202);
    let event = boss_kill("player_1", 2);
    app.post_event_with_key(&event, "later").await.problem(429);
    tokio::time::sleep(Duration::from_millis(1000 - (now_ms() % 1000) as u64 + 10)).await;
    let res = app.post_event_with_key(&event, "later").await;
    assert_eq!(res.status, 202, "{:?}", res.body);
}

#[tokio::test]
async fn the_openapi_lists_both_routes() {
    // The document itself, as JSON: its paths and schema names are what is checked.
    let doc: Value =
        serde_json::to_value(liveops_gateway::MODULE.default_openapi().unwrap()).unwrap();
    assert!(doc["paths"]["/events"]["post"].is_object());
    assert!(doc["paths"]["/events/batch"]["post"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}
