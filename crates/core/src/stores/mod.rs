//! Durable storage, one small trait per service: what progression, the leaderboard and fairness
//! keep, and the event ids each consumer already applied. An adapter implements the ones it
//! serves; each service is handed only its own.

pub mod fairness;
pub mod processed;
pub mod progress;
pub mod scores;

pub use fairness::{FairnessCommit, FairnessStore, Flag};
pub use processed::ProcessedEvents;
pub use progress::{
    InventoryItem, ItemGrant, PendingReward, PlayerProgress, ProgressCommit, ProgressStore,
    RewardClaim, XpGain,
};
pub use scores::{ScoreStore, Snapshot};
