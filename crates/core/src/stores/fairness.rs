//! Fairness's storage: running statistics, verdicts and flags.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event::EventType;
use crate::ports::{Health, PortResult};
use crate::scoring::Welford;
use crate::stores::PurgeRound;

/// A quarantined event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Flag {
    /// The event.
    pub event_id: Uuid,
    /// The player who sent it.
    pub player_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The value judged.
    pub value: f64,
    /// How far above the mean, in standard deviations.
    pub z_score: f64,
    /// When flagged, unix ms.
    pub at_ms: i64,
}

/// Everything one fairness batch changes, written atomically.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FairnessCommit {
    /// Decisions taken: event id → flagged.
    pub verdicts: Vec<(Uuid, bool)>,
    /// Flags raised.
    pub flags: Vec<Flag>,
    /// The statistics of this batch's own samples per event type, added to the stored ones (so
    /// replicas judging at once each add theirs instead of replacing the other's).
    pub stats: Vec<(EventType, Welford)>,
    /// When the batch was judged (unix ms): the time its verdicts are stored with, which a
    /// redelivered flag strikes at again.
    pub at_ms: i64,
}

/// Fairness's durable state.
#[async_trait]
pub trait FairnessStore: Health {
    /// Running statistics per event type.
    async fn fairness_stats(&self) -> PortResult<Vec<(EventType, Welford)>>;
    /// Earlier verdicts for any of `ids` already judged: the event, whether it was flagged and
    /// when it was judged (unix ms: a redelivered flag strikes at that time, not now).
    async fn verdicts(&self, ids: &[Uuid]) -> PortResult<Vec<(Uuid, bool, i64)>>;
    /// Stores a fairness batch atomically, merging its statistics into the stored ones; `false`,
    /// storing nothing, if a verdict for one of its events was stored since
    /// [`FairnessStore::verdicts`] was read, even the same one (judge it again: its sample is in
    /// the stored statistics already). The verdicts name distinct events.
    async fn commit_fairness(&self, commit: &FairnessCommit) -> PortResult<bool>;
    /// Recent flags, newest first, optionally for one player.
    async fn flags(&self, player_id: Option<&str>, limit: u32) -> PortResult<Vec<Flag>>;
    /// Deletes the flags raised before `cutoff_ms` (unix ms), oldest first, a bounded step at a
    /// time (`FLAG_RETENTION`); returns how many went (none when `round` is spared the walk:
    /// [`PurgeRound`]).
    async fn purge_flags(&self, cutoff_ms: i64, round: PurgeRound) -> PortResult<u64>;
}
