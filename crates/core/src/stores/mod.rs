//! Durable storage, one small trait per concern: what each service keeps (progression, the
//! leaderboard, fairness, operators, campaigns, participation, distribution), and the event ids
//! each consumer already applied. An adapter implements the ones it serves; each service is handed
//! only its own.

pub mod campaigns;
pub mod distribution;
pub mod fairness;
pub mod operators;
pub mod participation;
pub mod processed;
pub mod progress;
pub mod purge;
pub mod requests;
pub mod scores;

pub use campaigns::{
    Campaign, CampaignEvent, CampaignPage, CampaignState, CampaignStore, EntryLimit, Reward, Tier,
};
pub use distribution::{
    Attempt, ClaimOutcome, Delivery, DeliveryLog, DeliveryPage, DeliveryState,
    DistributionRetention, DueDelivery, InboxBelow, InboxClaim, InboxMessage, InboxPage,
    InboxStore, ListedMessage, Redelivery, UndeliveredEvent, Webhook, WebhookStore,
};
pub use fairness::{FairnessCommit, FairnessStore, Flag};
pub use operators::{
    ActiveKeys, ApiKeyInfo, ApiKeyStore, AuditEntry, AuditLog, ListedAudit, OperatorRecord,
    OperatorStore, OperatorUpdate, Role, Session, Sessions,
};
pub use participation::{
    Award, Entered, EntriesSummary, Entry, EntryStore, Outcome, OutcomeStore, OutcomeSummary,
    PlayerXp,
};
pub use processed::ProcessedEvents;
pub use progress::{
    InventoryItem, ItemGrant, ListedReward, PendingReward, PlayerProgress, ProgressCommit,
    ProgressStore, RewardClaim, XpGain, PROGRESS_COUNT_LIMIT, PROGRESS_INVENTORY_LIMIT,
    PROGRESS_PENDING_LIMIT,
};
pub use purge::{PurgeRound, PurgeWalk};
pub use requests::{CappedOutcome, Keyed, KeyedOutcome, RequestKey, RequestKeys};
pub use scores::{ScoreStore, Snapshot, SnapshotStore};

/// Every live-event store (operators, sessions, the audit log, API keys, campaigns, entries,
/// outcomes, the XP read, the inbox, webhooks and their deliveries, distribution's retention,
/// the keys of operator writes): what a backend serving them all declares.
pub trait LiveEventStores:
    OperatorStore
    + Sessions
    + AuditLog
    + ApiKeyStore
    + ActiveKeys
    + CampaignStore
    + EntryStore
    + OutcomeStore
    + PlayerXp
    + InboxStore
    + WebhookStore
    + DeliveryLog
    + DistributionRetention
    + RequestKeys
{
}
