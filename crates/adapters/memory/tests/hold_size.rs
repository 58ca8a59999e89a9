//! What an in-process idempotency hold costs in heap bytes, counted by a global allocator: the
//! figure `IDEMP_MAX_KEYS`'s documentation gives (README, `DEFAULT_IDEMPOTENCY_LIMIT`).

use std::time::Duration;

use liveops_core::ports::{IdemState, Idempotency, StoredAnswer};
use liveops_memory::MemoryHotState;

/// dhat's allocator, which counts the bytes live on the heap.
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Holds made like the gateway's for signed single events (key: the scope and the `v2=`
/// signature; fingerprint: the body's hex SHA-256), each answered with a one-event body.
const HOLDS: usize = 50_000;

/// Heap bytes per answered signature hold, the answer's own body included: 161 at 50 000 holds
/// (325 with the keys and fingerprints held as hex text); the map's spare room varies with its fill.
#[tokio::test(flavor = "current_thread")]
async fn an_answered_signature_hold_costs_under_200_heap_bytes() {
    let hot = MemoryHotState::with_idempotency_limit(HOLDS * 2);
    let ttl = Duration::from_secs(601);
    let body = r#"{"accepted":1,"eventIds":["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"]}"#;
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().curr_bytes;
    for i in 0..HOLDS {
        let key = format!("gateway-signed:events:v2={i:064x}");
        let print = format!("{:064x}", i as u128 * 7919);
        let begun = hot.idem_begin(&key, &print, ttl).await;
        assert!(matches!(begun, Ok(IdemState::Fresh)), "{begun:?}");
        let answer = StoredAnswer {
            status: 202,
            body: body.to_owned(),
        };
        hot.idem_complete(&key, &print, answer, ttl)
            .await
            .expect("completes");
    }
    let per_hold = (dhat::HeapStats::get().curr_bytes - before) / HOLDS;
    println!(
        "{per_hold} heap bytes per answered hold ({} of them the answer's body)",
        body.len()
    );
    assert!(per_hold < 200, "{per_hold} bytes per hold");
    // Every hold is still there to answer its repeat.
    let key = format!("gateway-signed:events:v2={:064x}", HOLDS - 1);
    let print = format!("{:064x}", (HOLDS - 1) as u128 * 7919);
    assert!(matches!(
        hot.idem_begin(&key, &print, ttl).await,
        Ok(IdemState::Done(_))
    ));
}
