//! Properties over the whole gateway (issue 14): whatever the body or the signature headers,
//! the answer is a 2xx or a 4xx problem, never a 5xx or a panic, and a refused request
//! publishes nothing. `PROPTEST_CASES` raises the number of cases (default 256).

use liveops_gateway::BatchAnswer;
use liveops_testkit::json;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::helpers::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Any JSON value, nested a few levels (each of two event words as likely as each other kind
/// of scalar).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        5 => json::scalar(".{0,20}"),
        1 => Just(json!("progression")),
        1 => Just(json!("player_1")),
    ];
    let key = prop::sample::select(vec![
        "type", "playerId", "ts", "payload", "deltaXp", "events", "x",
    ])
    .prop_map(str::to_owned);
    json::nested(leaf.boxed(), key.boxed(), 4, 32, 5)
}

/// Checks one answer: 2xx, or a 4xx problem; `Err` describes what is wrong.
fn judged(a: &Answer) -> Result<(), String> {
    let s = a.status.as_u16();
    if (200..300).contains(&s) {
        return Ok(());
    }
    if !(400..500).contains(&s) {
        return Err(format!("{s}: {:?}", a.body));
    }
    let status = a.try_problem().map(|p| p.status);
    if a.content_type() != "application/problem+json" || status != Some(s) {
        return Err(format!("{s} without a problem: {:?}", a.body));
    }
    Ok(())
}

proptest! {
    #[test]
    fn any_signed_body_is_a_2xx_or_a_4xx_problem(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        v in any_json(),
        batch in any::<bool>(),
    ) {
        let app = spawn_app();
        let path = if batch { "/events/batch" } else { "/events" };
        runtime().block_on(async {
            for body in [bytes.clone(), serde_json::to_vec(&v).unwrap()] {
                let a = app.send_signed(path, &body, &[]).await;
                prop_assert!(judged(&a).is_ok(), "{}", judged(&a).unwrap_err());
                if a.status.as_u16() >= 400 {
                    prop_assert!(app.ingested().await.is_empty());
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn any_signature_headers_but_the_right_ones_are_401(
        ts in prop::option::of(prop::collection::vec(any::<u8>(), 0..24)),
        sig in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        kid in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
    ) {
        let app = spawn_app();
        let body = serde_json::to_vec(&sample("progression")).unwrap();
        let mut req = axum::http::Request::post("/events").header("content-type", "application/json");
        for (name, v) in [("x-timestamp", &ts), ("x-signature", &sig), ("x-key-id", &kid)] {
            if let Some(v) = v {
                if let Ok(v) = axum::http::HeaderValue::from_bytes(v) {
                    req = req.header(name, v);
                }
            }
        }
        let req = req.body(axum::body::Body::from(body)).unwrap();
        runtime().block_on(async {
            let a = app.send_request(req).await;
            prop_assert_eq!(a.status.as_u16(), 401, "{:?}", a.body);
            prop_assert!(judged(&a).is_ok());
            prop_assert!(app.ingested().await.is_empty());
            Ok(())
        })?;
    }

    #[test]
    fn a_batch_answers_every_item_and_publishes_exactly_the_accepted(
        items in prop::collection::vec(prop_oneof![any_json(), Just(json!(null))], 1..40),
        good in prop::collection::vec(1u32..1000, 0..10),
    ) {
        let app = spawn_app();
        let mut all = items;
        for (i, d) in good.iter().enumerate() {
            all.push(json!({"type": "progression", "playerId": format!("player_{i}"), "ts": now_s(),
                            "messageId": format!("m{i}"), "payload": {"deltaXp": d, "activity": "a"}}));
        }
        runtime().block_on(async {
            let a = app.post_batch(&json!({"events": all})).await;
            prop_assert_eq!(a.status.as_u16(), 200, "{:?}", a.body);
            let answer: BatchAnswer = a.view();
            prop_assert_eq!(answer.results.len(), all.len());
            prop_assert!(answer.accepted >= good.len());
            prop_assert_eq!(app.ingested().await.len(), answer.accepted);
            for (i, r) in answer.results.iter().enumerate() {
                prop_assert_eq!(r.index(), i);
                let s = r.status();
                prop_assert!(s == 202 || (400..500).contains(&s), "{r:?}");
            }
            Ok(())
        })?;
    }
}
