//! One event body, as `POST /events` reads it, and an envelope as consumers read it: never a
//! panic; a refusal names a field; what is accepted is within bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveops_core::event::{parse_event, Limits};
use liveops_core::Envelope;

const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match parse_event(data, &limits, NOW) {
        Ok(e) => {
            assert!(e.ts >= NOW - limits.max_age_s && e.ts <= NOW + limits.max_skew_s);
            assert!((0..=1_000_000).contains(&e.score()));
        }
        Err(e) => assert!(!e.field.is_empty()),
    }
    let _ = Envelope::decode(data);
});
