//! The ports services see (ARCHITECTURE §2): the bus, the rank store and hot state, split by
//! concern so each service depends only on what it uses. Durable per-service storage is in
//! [`crate::stores`]. Adapters live in `crates/adapters/*`; only the binary picks which one backs
//! each port.

pub mod archive;
pub mod bus;
pub mod hot;
pub mod rank;

use async_trait::async_trait;

pub use archive::Archive;
pub use bus::{
    drain_in_chunks, every_while_alive, hand_out, held_by_others, long_poll, topics, Bus, BusExt,
    BusOptions, BusSetupError, DeadLetterRequest, Delivery, Message, PollRequest,
};
pub use hot::{
    Attempt, Attempts, Blocklist, IdemState, Idempotency, RateDecision, RateLimiter, StoredAnswer,
    Strike, ViewCache,
};
pub use rank::{rank_entries, Board, RankEntry, RankStore, ScoreDelta, ScoreTotal};

/// Why a port call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The backend cannot be reached or refused the operation for now; callers answer 503 and retry.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back; a bug or corruption, never the caller's input.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Result of a port call.
pub type PortResult<T> = Result<T, PortError>;

/// Reachability of the backend behind a port: every port and store trait has it, so `/readyz`
/// can ask any adapter a process opened.
#[async_trait]
pub trait Health: Send + Sync {
    /// `Ok` when the backend answers now.
    async fn healthcheck(&self) -> PortResult<()>;
    /// What `/readyz` should say of a healthy backend that runs degraded (a read replica set
    /// aside); `None` when all is well.
    fn note(&self) -> Option<String> {
        None
    }
}
