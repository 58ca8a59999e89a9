//! The hot pure functions of ingestion and rewards: request signature check, event validation,
//! the bus encoding of an event, receipt signing, the provably fair draw, and secrets sealed at
//! rest (what every active-key read opens each second).
//!
//! `cargo bench -p liveops-core --bench core` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use liveops_core::draw;
use liveops_core::event::{parse_event, validate_event};
use liveops_core::sealing::Sealer;
use liveops_core::{Envelope, Keyring, Limits, Receipt, SignedRequest};
use serde_json::Value;

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";
const NOW: i64 = 1_767_225_600;

/// The three reference events (`shared/sample_events`), `ts` set to `NOW`.
const EVENTS: [(&str, &str); 3] = [
    (
        "progression",
        r#"{"type":"progression","playerId":"player_12345","ts":1767225600,"payload":{"deltaXp":150,"activity":"quest_completion"}}"#,
    ),
    (
        "boss_kill",
        r#"{"type":"boss_kill","playerId":"player_67890","ts":1767225600,"payload":{"bossId":"dragon_lord","tier":5,"points":2500}}"#,
    ),
    (
        "drop_claimed",
        r#"{"type":"drop_claimed","playerId":"player_abcde","ts":1767225600,"payload":{"dropId":"epic_sword_001","weight":0.05,"source":"raid_chest"}}"#,
    ),
];

fn ring() -> Keyring {
    match Keyring::single(SECRET) {
        Ok(k) => k,
        Err(e) => unreachable!("the bench secret is long enough: {e}"),
    }
}

/// A signed `POST /events` as the server checks it.
fn signed<'a>(ts: &'a str, sig: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
    SignedRequest {
        key_id: None,
        timestamp: Some(ts),
        signature: Some(sig),
        method: "POST",
        path: "/events",
        body,
    }
}

fn signature(c: &mut Criterion) {
    let ring = ring();
    let body = EVENTS[1].1.as_bytes();
    let ts = NOW.to_string();
    let sig = ring
        .sign_request(None, NOW, "POST", "/events", body)
        .unwrap_or_default();
    // The first scheme on the same body: what covering the method and path costs.
    let sig_v1 = ring.sign_request_v1(None, NOW, body).unwrap_or_default();
    let check = |sig: &str, body: &[u8]| {
        ring.verify_request(
            &signed(black_box(&ts), black_box(sig), black_box(body)),
            NOW,
            300,
            true,
        )
    };
    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("verify_request", |b| {
        b.iter(|| black_box(check(&sig, body)))
    });
    g.bench_function("verify_request_v1", |b| {
        b.iter(|| black_box(check(&sig_v1, body)))
    });
    g.bench_function("sign_request", |b| {
        b.iter(|| black_box(ring.sign_request(None, NOW, "POST", "/events", black_box(body))))
    });
    // A 100-event batch body is signed (and checked) as one piece.
    let batch = format!(r#"{{"events":[{}]}}"#, vec![EVENTS[0].1; 100].join(","));
    let batch_sig = ring
        .sign_request(None, NOW, "POST", "/events", batch.as_bytes())
        .unwrap_or_default();
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("verify_request_batch100", |b| {
        b.iter(|| black_box(check(&batch_sig, batch.as_bytes())))
    });
    g.finish();
}

fn validation(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("validation");
    for (name, body) in EVENTS {
        g.bench_function(format!("parse_event/{name}"), |b| {
            b.iter(|| black_box(parse_event(black_box(body.as_bytes()), &limits, NOW)))
        });
    }
    // The two steps of parse_event apart: JSON to a Value, then the field checks.
    let body = EVENTS[0].1.as_bytes();
    g.bench_function("json_to_value/progression", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(body))))
    });
    let value: Value = serde_json::from_slice(body).unwrap_or_default();
    g.bench_function("validate_value/progression", |b| {
        b.iter(|| black_box(validate_event(black_box(&value), "", &limits, NOW)))
    });
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let Ok(event) = parse_event(EVENTS[0].1.as_bytes(), &Limits::default(), NOW) else {
        unreachable!("the reference event is valid");
    };
    let env = Envelope {
        event_id: uuid::Uuid::now_v7(),
        received_at: NOW * 1000,
        event,
        traceparent: None,
    };
    let bytes = env.encode();
    let mut g = c.benchmark_group("envelope");
    g.bench_function("encode", |b| b.iter(|| black_box(black_box(&env).encode())));
    // Every consumer decodes each event it is handed.
    g.bench_function("decode", |b| {
        b.iter(|| black_box(Envelope::decode(black_box(&bytes))))
    });
    g.finish();
}

fn receipts(c: &mut Criterion) {
    let ring = ring();
    let mut g = c.benchmark_group("receipt");
    g.bench_function("sign_receipt", |b| {
        b.iter(|| {
            black_box(ring.sign_receipt(
                black_box("0190f3a2-7b1c-7cc0-9d5e-3f1a2b3c4d5e"),
                "player_abcde",
                "epic_sword_001",
                NOW,
            ))
        })
    });
    let receipt = Receipt {
        receipt_id: "0190f3a2-7b1c-7cc0-9d5e-3f1a2b3c4d5e".into(),
        player_id: "player_abcde".into(),
        item: "epic_sword_001".into(),
        timestamp: NOW,
        sig: ring.sign_receipt(
            "0190f3a2-7b1c-7cc0-9d5e-3f1a2b3c4d5e",
            "player_abcde",
            "epic_sword_001",
            NOW,
        ),
    };
    g.bench_function("verify_receipt", |b| {
        b.iter(|| black_box(ring.verify_receipt(black_box(&receipt))))
    });
    g.finish();
}

/// The draw of a large campaign: 10 000 winners among 200 000 entrants (the most winners a
/// campaign may ask for), and 10 among as many.
fn draws(c: &mut Criterion) {
    let entrants = draw::entrants((0..200_000).map(|i| format!("player_{i:07}")));
    let seed = [7u8; 32];
    let mut g = c.benchmark_group("draw");
    g.sample_size(10);
    for winners in [10, 10_000] {
        g.bench_function(format!("entrants_200k_winners_{winners}"), |b| {
            b.iter(|| black_box(draw::draw(&seed, black_box(&entrants), winners)));
        });
        // The same picks by removing from a list: the cost before the tree.
        g.bench_function(format!("by_list/entrants_200k_winners_{winners}"), |b| {
            b.iter(|| black_box(draw::draw_by_list(&seed, black_box(&entrants), winners)));
        });
    }
    g.finish();
}

/// Secrets at rest (ADR 0032): sealing and opening an API key's 64-character secret, and the
/// active-key read's work for the default cap of 100 keys; the `signature` group of the same run
/// (a request's HMAC check) is what to compare them with.
fn sealing(c: &mut Criterion) {
    let sealer = match Sealer::new([("k1", SECRET.as_bytes())]) {
        Ok(s) => s,
        Err(e) => unreachable!("the bench material is long enough: {e}"),
    };
    let secret = "0123456789abcdef".repeat(4);
    let row = |i: usize| format!("api_keys.secret:ak_{i:04}");
    let keys: Vec<(String, String)> = (0..100)
        .filter_map(|i| {
            let stored = sealer.seal(&row(i), &secret).ok()?;
            Some((row(i), stored.text))
        })
        .collect();
    let mut g = c.benchmark_group("sealing");
    g.bench_function("seal_api_key_secret", |b| {
        b.iter(|| black_box(sealer.seal(black_box(&keys[0].0), black_box(&secret))))
    });
    g.bench_function("open_api_key_secret", |b| {
        b.iter(|| black_box(sealer.open(&keys[0].0, black_box(&keys[0].1), Some("k1"))))
    });
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("open_100_active_keys", |b| {
        b.iter(|| {
            for (row, text) in &keys {
                black_box(sealer.open(row, black_box(text), Some("k1")).ok());
            }
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    signature(&mut c);
    validation(&mut c);
    envelope(&mut c);
    receipts(&mut c);
    draws(&mut c);
    sealing(&mut c);
    c.final_summary();
}
