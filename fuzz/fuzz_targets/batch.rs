//! A batch body (`{"events": [...]}` or a bare array): each item judged on its own, as
//! `POST /events/batch` does, with refusals naming `events[i].<field>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveops_core::event::{validate_event, Limits};
use serde_json::Value;

const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove("events") {
            Some(Value::Array(items)) => items,
            _ => return,
        },
        _ => return,
    };
    let limits = Limits::default();
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("events[{i}].");
        if let Err(e) = validate_event(item, &prefix, &limits, NOW) {
            assert!(e.field.starts_with(&prefix), "{}", e.field);
        }
    }
});
