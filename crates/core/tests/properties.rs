//! Properties of what the edge parses from untrusted input (issue 14): events, envelopes,
//! request signatures and receipts never panic, refuse with a named field, and accept exactly
//! what is within bounds. `PROPTEST_CASES` raises the number of cases (default 256).

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use liveops_core::event::{parse_event, validate_event, Limits, LABEL_PATTERN};
use liveops_core::{Envelope, Keyring, Receipt, Scheme, SignedRequest};
use liveops_testkit::json;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const NOW: i64 = 1_700_000_000;
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// Any JSON value, nested a few levels (a `u64` as likely as each other kind of scalar).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        5 => json::scalar(".{0,70}"),
        1 => any::<u64>().prop_map(Value::from),
    ];
    json::nested(leaf.boxed(), field_name().boxed(), 5, 64, 6)
}

/// The names an event uses, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "playerId",
            "ts",
            "messageId",
            "payload",
            "deltaXp",
            "activity",
            "bossId",
            "tier",
            "points",
            "dropId",
            "weight",
            "source",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z]{1,8}",
    ]
}

/// Something shaped like an event, every field possibly wrong.
fn event_like() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        prop::sample::select(vec!["progression", "boss_kill", "drop_claimed"])
            .prop_map(Value::from),
        any_json(),
    ];
    let payload = prop_oneof![
        prop::collection::btree_map(field_name(), any_json(), 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        any_json(),
    ];
    (
        kind,
        prop_oneof!["[A-Za-z0-9_]{0,60}".prop_map(Value::from), any_json()],
        prop_oneof![
            (NOW - 100_000..NOW + 1_000).prop_map(Value::from),
            any_json()
        ],
        prop::option::of(prop_oneof!["[!-~]{0,70}".prop_map(Value::from), any_json()]),
        payload,
    )
        .prop_map(|(t, p, ts, m, pay)| {
            let mut o = Map::new();
            o.insert("type".into(), t);
            o.insert("playerId".into(), p);
            o.insert("ts".into(), ts);
            if let Some(m) = m {
                o.insert("messageId".into(), m);
            }
            o.insert("payload".into(), pay);
            Value::Object(o)
        })
}

/// A valid event of each type, within every bound.
fn valid_event() -> impl Strategy<Value = Value> {
    let label = "[A-Za-z0-9_.:-]{1,64}";
    let payload = prop_oneof![
        (1u32..=100_000, label)
            .prop_map(|(d, a)| ("progression", json!({"deltaXp": d, "activity": a}))),
        (label, 1u8..=10, 0u32..=1_000_000)
            .prop_map(|(b, t, p)| ("boss_kill", json!({"bossId": b, "tier": t, "points": p}))),
        (label, 0.0f64..=1.0, label).prop_map(|(d, w, s)| (
            "drop_claimed",
            json!({"dropId": d, "weight": w, "source": s})
        )),
    ];
    (
        payload,
        "[A-Za-z0-9_]{3,50}",
        NOW - 86_400..=NOW + 300,
        prop::option::of(label),
    )
        .prop_map(|((kind, payload), player, ts, message)| {
            let mut e = json!({"type": kind, "playerId": player, "ts": ts, "payload": payload});
            if let Some(m) = message {
                e["messageId"] = json!(m);
            }
            e
        })
}

proptest! {
    #[test]
    fn any_bytes_parse_or_are_refused_naming_a_field(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_event(&body, &Limits::default(), NOW) {
            prop_assert!(!e.field.is_empty());
        }
        let _ = Envelope::decode(&body);
    }

    #[test]
    fn any_json_is_judged_without_panic(v in any_json()) {
        if let Err(e) = validate_event(&v, "events[0].", &Limits::default(), NOW) {
            prop_assert!(e.field.starts_with("events[0]."), "{}", e.field);
        }
    }

    #[test]
    fn what_is_accepted_is_within_bounds(v in event_like()) {
        let l = Limits::default();
        match validate_event(&v, "", &l, NOW) {
            Ok(e) => {
                prop_assert!((NOW - l.max_age_s..=NOW + l.max_skew_s).contains(&e.ts));
                prop_assert!(e.score() >= 0 && e.score() <= 1_000_000);
                let m = e.message_id.as_deref().unwrap_or("ok");
                prop_assert!(regex_label(m), "{m}");
                // What the bus carries decodes to the same event.
                let env = Envelope { event_id: uuid::Uuid::nil(), received_at: 0, event: e, traceparent: None };
                prop_assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
            }
            Err(e) => prop_assert!(!e.field.is_empty()),
        }
    }

    #[test]
    fn every_valid_event_is_accepted(v in valid_event()) {
        let e = validate_event(&v, "", &Limits::default(), NOW);
        prop_assert!(e.is_ok(), "{v} -> {e:?}");
    }

    #[test]
    fn a_valid_event_with_one_unknown_field_is_refused(v in valid_event(), name in "[a-z]{1,8}") {
        prop_assume!(!["type", "playerId", "ts", "messageId", "payload"].contains(&name.as_str()));
        let mut v = v;
        v[name.as_str()] = json!(1);
        let e = validate_event(&v, "", &Limits::default(), NOW).unwrap_err();
        prop_assert_eq!(e.field, name);
    }

    #[test]
    fn signature_headers_of_any_shape_are_refused_unless_right(
        kid in prop::option::of(".{0,20}"),
        ts in prop::option::of(".{0,24}"),
        sig in prop::option::of(".{0,90}"),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let ring = Keyring::single(KEY.to_vec()).unwrap();
        let req = SignedRequest {
            key_id: kid.as_deref(),
            timestamp: ts.as_deref(),
            signature: sig.as_deref(),
            method: "POST",
            path: "/events",
            body: &body,
        };
        let ok = ring.verify_request(&req, NOW, 300, true);
        let t = ts.as_deref().and_then(|t| t.trim().parse::<i64>().ok());
        if let Ok(scheme) = ok {
            // Only the signature the key makes (any case, any surrounding space) passes.
            let genuine = match scheme {
                Scheme::V2 => ring.sign_request(None, t.unwrap(), "POST", "/events", &body),
                Scheme::V1 => ring.sign_request_v1(None, t.unwrap(), &body),
            };
            prop_assert_eq!(
                sig.unwrap().trim().to_ascii_lowercase(),
                genuine.unwrap().to_ascii_lowercase()
            );
        }
    }

    #[test]
    fn a_genuine_v2_signature_passes_in_any_hex_case_with_surrounding_space(
        body in prop::collection::vec(any::<u8>(), 0..64),
        upper in prop::collection::vec(any::<bool>(), 64),
        pad in "[ \t]{0,3}",
    ) {
        let ring = Keyring::single(KEY.to_vec()).unwrap();
        let sig = ring.sign_request(None, NOW, "POST", "/events", &body).unwrap();
        let hex: String = sig["v2=".len()..]
            .chars()
            .zip(&upper)
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let sent = format!("{pad}v2={hex}{pad}");
        let t = NOW.to_string();
        let req = SignedRequest {
            key_id: None,
            timestamp: Some(&t),
            signature: Some(&sent),
            method: "POST",
            path: "/events",
            body: &body,
        };
        prop_assert_eq!(ring.verify_request(&req, NOW, 300, false), Ok(Scheme::V2));
    }

    #[test]
    fn a_genuine_request_signature_passes_and_any_other_body_or_path_fails(
        body in prop::collection::vec(any::<u8>(), 0..256),
        other in prop::collection::vec(any::<u8>(), 0..256),
        path in "[A-Za-z0-9_.:-]{1,64}",
        other_path in "/[ -~]{0,80}",
        skew in -300i64..=300,
    ) {
        let ring = Keyring::single(KEY.to_vec()).unwrap();
        let ts = NOW + skew;
        let t = ts.to_string();
        let path = format!("/campaigns/{path}/entries");
        let sig = ring.sign_request(None, ts, "POST", &path, &body).unwrap();
        let req = SignedRequest {
            key_id: None,
            timestamp: Some(&t),
            signature: Some(&sig),
            method: "POST",
            path: &path,
            body: &body,
        };
        prop_assert_eq!(ring.verify_request(&req, NOW, 300, false), Ok(Scheme::V2));
        if other != body {
            let req = SignedRequest { body: &other, ..req };
            prop_assert!(ring.verify_request(&req, NOW, 300, true).is_err());
        }
        // The same signature for any other path fails.
        if other_path != path {
            let req = SignedRequest { path: &other_path, ..req };
            prop_assert!(ring.verify_request(&req, NOW, 300, true).is_err());
        }
    }

    #[test]
    fn a_receipt_with_any_one_field_changed_is_invalid(
        id in "[0-9a-f-]{36}",
        player in "[A-Za-z0-9_]{3,50}",
        item in "[A-Za-z0-9_.:-]{1,64}",
        ts in 0i64..4_000_000_000,
        field in 0usize..5,
        new in "[A-Za-z0-9_.:-]{1,64}",
        new_ts in any::<i64>(),
    ) {
        let ring = Keyring::single(KEY.to_vec()).unwrap();
        let r = Receipt {
            sig: ring.sign_receipt(&id, &player, &item, ts),
            receipt_id: id,
            player_id: player,
            item,
            timestamp: ts,
        };
        prop_assert!(ring.verify_receipt(&r).valid);
        let mut t = r.clone();
        match field {
            0 => t.receipt_id = new,
            1 => t.player_id = new,
            2 => t.item = new,
            3 => t.timestamp = new_ts,
            _ => t.sig = format!("{:0>64}", new),
        }
        prop_assume!(t != r);
        prop_assert!(!ring.verify_receipt(&t).valid, "{t:?}");
    }

    #[test]
    fn any_receipt_json_is_judged_without_panic(v in any_json()) {
        let ring = Keyring::single(KEY.to_vec()).unwrap();
        if let Ok(r) = serde_json::from_value::<Receipt>(v) {
            // Random fields cannot carry the key's signature.
            prop_assert!(!ring.verify_receipt(&r).valid);
        }
    }
}

/// Whether `s` matches [`LABEL_PATTERN`].
fn regex_label(s: &str) -> bool {
    regex::Regex::new(LABEL_PATTERN).unwrap().is_match(s)
}
