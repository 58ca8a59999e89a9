//! The signature headers, path and body of a signed request: the first bytes split into
//! `X-Key-Id`, `X-Timestamp`, `X-Signature` and the path (at `\n`), the rest the body. Never a
//! panic, and nothing but the key's own signature (either scheme) passes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveops_core::{Keyring, Scheme, SignedRequest};

const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |b| *b == b'\n');
    let kid = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let ts = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let sig = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let path = parts
        .next()
        .and_then(|p| std::str::from_utf8(p).ok())
        .unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let Ok(ring) = Keyring::new(vec![(
        "k1".into(),
        b"0123456789abcdef0123456789abcdef".to_vec(),
    )]) else {
        return;
    };
    let req = SignedRequest {
        key_id: kid,
        timestamp: ts,
        signature: sig,
        method: "POST",
        path,
        body,
    };
    if let Ok(scheme) = ring.verify_request(&req, NOW, 300, true) {
        let ts = ts.unwrap_or_default().trim().parse().unwrap_or_default();
        let mine = match scheme {
            Scheme::V2 => ring.sign_request(None, ts, "POST", path, body),
            Scheme::V1 => ring.sign_request_v1(None, ts, body),
        }
        .unwrap_or_default();
        assert_eq!(
            sig.unwrap_or_default().trim().to_ascii_lowercase(),
            mine.to_ascii_lowercase()
        );
    }
});
