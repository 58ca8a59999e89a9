//! In-process adapters: the embedded default for the rank store and hot state, and
//! `BUS_KIND=inmem` (tests only: unconsumed events are lost on a crash).

pub mod bus;
pub mod hot;
pub mod rank;
pub mod ranktree;

pub use bus::MemoryBus;
pub use hot::MemoryHotState;
pub use rank::MemoryRankStore;
pub use ranktree::RankTree;
