//! What an in-process strike costs in heap bytes, counted by a global allocator: the figures
//! `DEFAULT_STRIKE_LIMIT`'s documentation gives (docs/OPERATIONS.md, *Hot state evicting*).

use std::time::Duration;

use liveops_core::ports::{Blocklist, Strike};
use liveops_memory::MemoryHotState;

/// dhat's allocator, which counts the bytes live on the heap.
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Players struck once, as a flood of anomalous events under new player ids leaves them.
const PLAYERS: usize = 50_000;

/// Of those, the players struck nine times more.
const REPEAT: usize = 5_000;

/// Heap bytes per player struck once (a 16-character player id, a 36-character event id as the
/// strike's): 243 at 50 000 players, the map's spare room varying with its fill; and per further
/// strike of a player: 68.
#[tokio::test(flavor = "current_thread")]
async fn a_player_struck_once_costs_under_400_heap_bytes() {
    let hot = MemoryHotState::new();
    let (window, keep) = (Duration::from_secs(600), Duration::from_secs(660));
    let now = liveops_core::now_ms();
    let event_id = |i: usize, n: usize| format!("{i:08x}-0000-4000-8000-{n:012x}");
    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().curr_bytes;
    for i in 0..PLAYERS {
        let player = format!("flood_{i:010}");
        let id = event_id(i, 0);
        let strike = Strike {
            id: &id,
            at_ms: now,
            window,
            keep,
        };
        let count = hot.add_strike(&player, strike).await;
        assert_eq!(count.ok(), Some(1));
    }
    let once = dhat::HeapStats::get().curr_bytes;
    let per_player = (once - before) / PLAYERS;
    for i in 0..REPEAT {
        let player = format!("flood_{i:010}");
        for n in 1..10 {
            let id = event_id(i, n);
            let strike = Strike {
                id: &id,
                at_ms: now + n as i64,
                window,
                keep,
            };
            let count = hot.add_strike(&player, strike).await;
            assert!(count.is_ok());
        }
    }
    let per_strike = (dhat::HeapStats::get().curr_bytes - once) / (REPEAT * 9);
    println!("{per_player} heap bytes per player struck once, {per_strike} per further strike");
    assert!(per_player < 400, "{per_player} bytes per player");
    assert!(per_strike < 100, "{per_strike} bytes per further strike");
}
