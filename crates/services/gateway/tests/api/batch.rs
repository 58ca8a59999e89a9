//! `POST /events/batch`.

use std::sync::atomic::Ordering;

use liveops_core::now_ms;
use liveops_core::ports::Blocklist;
use liveops_gateway::BatchAnswer;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn a_mixed_batch_gets_a_result_per_event_and_one_publish() {
    let app = spawn_with(|c| c.rate_limit_max = 2);
    app.hot
        .block("player_banned", now_ms(), now_ms() + 60_000)
        .await
        .unwrap();
    // Request bodies are raw JSON: invalid ones must be sendable.
    let mut invalid = boss_kill("player_ok", 1);
    invalid["payload"]["tier"] = json!(0);
    let batch = json!({"events": [
        boss_kill("player_ok", 10),      // 0: accepted
        invalid,                         // 1: 400
        boss_kill("player_banned", 10),  // 2: 403
        boss_kill("player_fast", 1),     // 3: accepted
        boss_kill("player_fast", 2),     // 4: accepted
        boss_kill("player_fast", 3),     // 5: 429 (third in one second, limit 2)
        sample("progression"),           // 6: accepted
    ]});
    fresh_second().await;
    let res = app.post_batch(&batch).await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    assert_eq!(res.content_type(), "application/json");
    let answer: BatchAnswer = res.view();
    assert_eq!((answer.accepted, answer.rejected), (4, 3));
    let results = &answer.results;
    let statuses: Vec<u16> = results.iter().map(BatchItem::status).collect();
    assert_eq!(statuses, [202, 400, 403, 202, 202, 429, 202]);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
    let invalid = results[1].error().unwrap();
    assert_eq!(invalid.field.as_deref(), Some("events[1].payload.tier"));
    assert_eq!(invalid.status, 400);
    assert_eq!(results[2].error().unwrap().kind, "/problems/blocked");
    assert_eq!(results[5].error().unwrap().kind, "/problems/rate-limited");

    let on_bus = app.ingested().await;
    let ids: Vec<_> = [0, 3, 4, 6]
        .iter()
        .map(|&i| results[i].event_id().unwrap())
        .collect();
    let bus_ids: Vec<_> = on_bus.iter().map(|(_, e)| e.event_id).collect();
    assert_eq!(
        bus_ids, ids,
        "accepted events are published in request order"
    );
    let points: Vec<i64> = on_bus.iter().map(|(_, e)| e.event.score()).collect();
    assert_eq!(points, [10, 1, 2, 150]);
}

#[tokio::test]
async fn a_bare_array_is_a_batch_too() {
    let app = spawn_app();
    let res = app
        .post_batch(&json!([sample("boss_kill"), sample("drop_claimed")]))
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    assert_eq!(res.view::<BatchAnswer>().accepted, 2);
    assert_eq!(app.ingested().await.len(), 2);
}

#[tokio::test]
async fn malformed_or_oversized_batches_are_refused_whole() {
    let app = spawn_app();
    let too_many: Vec<Value> = (0..501).map(|i| boss_kill("player_1", i)).collect();
    let res = app.post_batch(&json!({ "events": too_many })).await;
    assert_eq!(res.problem(413).field.as_deref(), Some("events"));
    app.post_batch(&json!({"events": []})).await.problem(400);
    app.post_batch(&json!({"events": {}})).await.problem(400);
    app.post_batch(&json!({"evts": [sample("boss_kill")]}))
        .await
        .problem(400);
    app.send_signed("/events/batch", b"{\"events\": [", &[])
        .await
        .problem(400);
    // Over 1 MiB of bytes.
    let mut big = boss_kill("player_1", 1);
    big["pad"] = json!("x".repeat(1024 * 1024));
    app.post_batch(&json!([big])).await.problem(413);
    // A bad signature refuses the whole batch.
    let body = serde_json::to_vec(&json!([sample("boss_kill")])).unwrap();
    let mut headers = app.sign("/events/batch", &body, now_s(), None);
    headers[0].1 = (now_s() - 1000).to_string();
    app.send("/events/batch", body, &headers).await.problem(401);
    assert!(app.ingested().await.is_empty());
}

#[tokio::test]
async fn an_idempotent_batch_retry_gets_208_and_the_same_answer() {
    let app = spawn_app();
    let batch = json!([sample("boss_kill"), sample("progression")]);
    let body = serde_json::to_vec(&batch).unwrap();
    let key = [("idempotency-key", "batch-1".to_owned())];
    let first = app.send_signed("/events/batch", &body, &key).await;
    assert_eq!(first.status, 200);
    let again = app.send_signed("/events/batch", &body, &key).await;
    assert_eq!(again.status, 208);
    assert_eq!(again.body, first.body);
    assert_eq!(app.ingested().await.len(), 2);
    // Without a key, the same signed request again gets its first answer too, refused items,
    // messageIds and all.
    let mut tagged = sample("progression");
    tagged["messageId"] = json!("m-1");
    let batch = json!([sample("boss_kill"), {"type": "nope"}, tagged]);
    let body = serde_json::to_vec(&batch).unwrap();
    let headers = app.sign("/events/batch", &body, now_s(), None);
    let first = app.send("/events/batch", body.clone(), &headers).await;
    assert_eq!(first.status, 200);
    let again = app.send("/events/batch", body, &headers).await;
    assert_eq!(again.status, 208);
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.body, first.body);
    let answer: BatchAnswer = first.view();
    assert_eq!(answer.accepted, 2);
    assert_eq!(answer.results[1].status(), 400);
    assert_eq!(app.ingested().await.len(), 2, "two more, once");
}

/// The same signed batch is the same request under any key or none (ADR 0017): a repeat that
/// adds or drops the `Idempotency-Key` gets the first answer, each item's result and id as
/// they were.
#[tokio::test]
async fn a_batch_repeated_with_or_without_a_key_gets_the_first_answer() {
    let app = spawn_app();
    for (first_key, again_key) in [(Some("batch-a"), None), (None, Some("batch-b"))] {
        let (mut kill, mut xp) = (sample("boss_kill"), sample("progression"));
        let player = json!(if first_key.is_some() {
            "player_keyed"
        } else {
            "player_unkeyed"
        });
        (kill["playerId"], xp["playerId"]) = (player.clone(), player);
        let batch = json!([kill, {"type": "nope"}, xp]);
        let body = serde_json::to_vec(&batch).unwrap();
        let signed = app.sign("/events/batch", &body, now_s(), None);
        let with = |key: Option<&str>| {
            let mut headers = signed.clone();
            headers.extend(key.map(|k| ("idempotency-key", k.to_owned())));
            headers
        };
        let first = app
            .send("/events/batch", body.clone(), &with(first_key))
            .await;
        assert_eq!(first.status, 200, "{:?}", first.body);
        let again = app.send("/events/batch", body, &with(again_key)).await;
        assert_eq!(again.status, 208, "{:?}", again.body);
        assert_eq!(again.body, first.body, "first key {first_key:?}");
        let answer: BatchAnswer = again.view();
        assert_eq!(answer.results[1].status(), 400);
    }
    assert_eq!(app.ingested().await.len(), 4, "two from each, once");
}

/// A keyed batch of 500 retried a minute later, signed again (another signature), under the same
/// key gets the first answer, every id as it was; what is kept for a day under the key is the
/// compact form (counts, refusals, the key), not 500 results.
#[tokio::test]
async fn a_keyed_batch_signed_again_gets_its_ids_back_from_a_compact_answer() {
    use liveops_core::ports::{IdemState, Idempotency};
    use sha2::{Digest, Sha256};

    let app = spawn_with(|c| c.rate_limit_max = 1000);
    let mut items: Vec<Value> = (0..499)
        .map(|i| boss_kill(&format!("player_{}", i % 50), 10))
        .collect();
    items.insert(7, json!({"type": "nope"}));
    let body = serde_json::to_vec(&json!({ "events": items })).unwrap();
    let key = ("idempotency-key", "big-batch-1".to_owned());
    let mut first_headers = app.sign("/events/batch", &body, now_s() - 60, None);
    first_headers.push(key.clone());
    let first = app
        .send("/events/batch", body.clone(), &first_headers)
        .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let mut again_headers = app.sign("/events/batch", &body, now_s(), None);
    assert_ne!(again_headers[1], first_headers[1], "another signature");
    again_headers.push(key);
    let again = app
        .send("/events/batch", body.clone(), &again_headers)
        .await;
    assert_eq!(again.status, 208, "{:?}", again.body);
    assert_eq!(
        again.body, first.body,
        "each result and id as the first time"
    );
    let answer: BatchAnswer = again.view();
    assert_eq!((answer.accepted, answer.results[7].status()), (499, 400));
    assert_eq!(app.ingested().await.len(), 499, "published once");

    // What the key holds for its day.
    let print = hex::encode(Sha256::digest(&body));
    let held = app
        .hot
        .idem_begin(
            "gateway:events.batch:big-batch-1",
            &print,
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let IdemState::Done(stored) = held else {
        panic!("the key holds the answer: {held:?}");
    };
    assert!(stored.body.len() < 1024, "{} bytes kept", stored.body.len());
}

/// A batch whose publish outlasts the 5 s hold keeps its holds: the same signed bytes under
/// another key 5.2 s in, whose ids would differ, get its answer, and each event is published once.
#[tokio::test]
async fn a_slow_batch_keeps_its_holds_from_a_copy_under_another_key() {
    let app = spawn_app();
    let body = serde_json::to_vec(&json!([sample("boss_kill"), sample("progression")])).unwrap();
    let (first, copy) = app.send_slow_then_copy("/events/batch", &body).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.view::<BatchAnswer>().accepted, 2);
    assert_eq!(copy.status, 208, "{:?}", copy.body);
    assert_eq!(copy.body, first.body);
    assert_eq!(app.ingested().await.len(), 2, "each event published once");
}

#[tokio::test]
async fn a_bus_outage_fails_the_whole_batch_with_503() {
    let app = spawn_app();
    app.bus.down.store(true, Ordering::SeqCst);
    let batch = json!([sample("boss_kill"), sample("progression")]);
    app.post_batch(&batch).await.problem(503);
    app.bus.down.store(false, Ordering::SeqCst);
    assert!(app.ingested().await.is_empty());
}
