//! A receipt as `POST /receipts/verify` reads it: never a panic, and no forged receipt is
//! valid; a genuine receipt with one byte of one field changed is invalid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveops_core::{Keyring, Receipt};

fuzz_target!(|data: &[u8]| {
    let Ok(ring) = Keyring::single(b"0123456789abcdef0123456789abcdef".to_vec()) else {
        return;
    };
    if let Ok(r) = serde_json::from_slice::<Receipt>(data) {
        assert!(!ring.verify_receipt(&r).valid, "{r:?}");
        // Sign it for real, then change one field: invalid again.
        let genuine = Receipt {
            sig: ring.sign_receipt(&r.receipt_id, &r.player_id, &r.item, r.timestamp),
            ..r.clone()
        };
        let mut t = genuine.clone();
        t.item.push('x');
        assert!(!ring.verify_receipt(&t).valid);
        let mut t = genuine;
        t.timestamp = t.timestamp.wrapping_add(1);
        assert!(!ring.verify_receipt(&t).valid);
    }
});
