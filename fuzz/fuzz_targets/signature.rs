//! The signature headers and body of a signed request: the first bytes split into
//! `X-Key-Id`, `X-Timestamp` and `X-Signature` (at `\n`), the rest the body. Never a panic, and
//! nothing but the key's own signature passes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveops_core::Keyring;

const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let kid = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let ts = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let sig = parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let body = parts.next().unwrap_or_default();
    let Ok(ring) = Keyring::new(vec![(
        "k1".into(),
        b"0123456789abcdef0123456789abcdef".to_vec(),
    )]) else {
        return;
    };
    if ring.verify_request(kid, ts, sig, body, NOW, 300).is_ok() {
        let ts = ts.unwrap_or_default().trim();
        let mine = ring
            .sign_request(None, ts.parse().unwrap_or_default(), body)
            .unwrap_or_default();
        assert_eq!(
            sig.unwrap_or_default().trim().to_ascii_lowercase(),
            mine.to_ascii_lowercase()
        );
    }
});
