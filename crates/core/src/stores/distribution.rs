//! Distribution's storage: the player inbox (with settlement, written once per winner) and the
//! webhooks with their durable queue of deliveries.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::ports::{Health, PortResult};
use crate::signing::Receipt;
use crate::stores::{AuditEntry, CampaignEvent, CappedOutcome, Keyed, KeyedOutcome, PurgeRound};

/// A message in players' inboxes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxMessage {
    /// Stable id (`msg_<uuid>`).
    pub message_id: String,
    /// Whose inbox; `None`: every player's.
    pub player_id: Option<String>,
    /// The campaign that paid it, if any.
    pub campaign_id: Option<String>,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Items granted on claim.
    pub attachments: Vec<String>,
    /// Sent, unix ms.
    pub created_at_ms: i64,
    /// Claimable until, unix ms.
    pub expires_at_ms: i64,
}

/// A message as its player's inbox lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedMessage {
    /// The message.
    pub message: InboxMessage,
    /// Its claim by the player, if claimed.
    pub claim: Option<InboxClaim>,
    /// Where it stands in the listing: given in the order messages were written, so one written
    /// after a read is listed above everything that read listed (ADR 0025).
    pub position: i64,
}

/// A claimed message: the receipts issued for its attachments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxClaim {
    /// Which message.
    pub message_id: String,
    /// Who claimed it.
    pub player_id: String,
    /// When, unix ms.
    pub claimed_at_ms: i64,
    /// One receipt per attachment, in order.
    pub receipts: Vec<Receipt>,
    /// The signature of the request that claimed it.
    pub request_sig: String,
}

/// What claiming did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Claimed now, with these receipts.
    Claimed(InboxClaim),
    /// Claimed before: the receipts issued then.
    AlreadyClaimed(InboxClaim),
    /// No such message in the player's inbox.
    NotFound,
    /// Expired unclaimed, at this time (unix ms).
    Expired(i64),
}

/// The player inbox.
#[async_trait]
pub trait InboxStore: Health {
    /// Pays a group of a campaign's winners in one transaction: each message (its `player_id`
    /// is the winner; one to every player is refused as `Corrupt`) is written and its winner
    /// marked settled for the campaign, unless they were settled before (then nothing of theirs
    /// is written); how many were written.
    async fn settle(&self, campaign_id: &str, messages: &[InboxMessage]) -> PortResult<u64>;
    /// Sends operator messages with their audit entry, once per key if `keyed`: a send under
    /// a key used before writes nothing and says what the first send answered.
    async fn send_messages(
        &self,
        keyed: Option<&Keyed>,
        messages: &[InboxMessage],
        audit: &AuditEntry,
    ) -> PortResult<KeyedOutcome>;
    /// A message in a player's inbox (theirs or everyone's).
    async fn message(&self, player_id: &str, message_id: &str) -> PortResult<Option<InboxMessage>>;
    /// A page of a player's messages (theirs and everyone's), last written first, each with its
    /// claim and position.
    async fn inbox(&self, player_id: &str, page: InboxPage<'_>) -> PortResult<Vec<ListedMessage>>;
    /// Claims a message with `claim`'s receipts unless it was claimed (then the first claim
    /// stands) or expired at `now_ms`.
    async fn claim(&self, claim: &InboxClaim, now_ms: i64) -> PortResult<ClaimOutcome>;
    /// The claim the request with this signature made, if any.
    async fn claim_by_request(&self, request_sig: &str) -> PortResult<Option<InboxClaim>>;
    /// The claim of a player's message, if claimed.
    async fn claim_of(&self, player_id: &str, message_id: &str) -> PortResult<Option<InboxClaim>>;
    /// Places messages written without a position (by a process of the release before positions,
    /// during a rolling upgrade; listed only once placed) above all others, in creation order,
    /// up to `limit`; how many.
    async fn place_messages(&self, limit: u32) -> PortResult<u64>;
}

/// A webhook subscription.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Stable id (`whk_<uuid>`).
    pub id: String,
    /// Where deliveries are posted.
    pub url: String,
    /// Event kinds it receives.
    pub events: Vec<String>,
    /// Signs deliveries (never shown after creation).
    pub secret: String,
    /// Who created it.
    pub created_by: String,
    /// Created, unix ms.
    pub created_at_ms: i64,
}

// The secret stays out of logs.
crate::debug_fields!(Webhook { id, url, events });

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// Answered 2xx.
    Delivered,
    /// Given up after the last attempt (dead-lettered).
    Dead,
}

impl DeliveryState {
    /// Its name (`pending`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// The state called `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// One event to deliver to one webhook: a row of the durable queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Stable id (`dlv_<uuid>`), sent as `X-LiveOps-Delivery`.
    pub id: String,
    /// To which webhook.
    pub webhook_id: String,
    /// The outbox event it carries (its row in the outbox; never shown to receivers).
    pub event_id: i64,
    /// The event's public id, the body's `id` (`evt_…`, the same in every delivery of it).
    pub event_public_id: String,
    /// The event's kind.
    pub kind: String,
    /// The exact body posted.
    pub body: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When it is next tried (or leased until), unix ms.
    pub next_attempt_at_ms: i64,
    /// Queued, unix ms.
    pub created_at_ms: i64,
}

/// One attempt at a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first.
    pub attempt: u32,
    /// Started, unix ms.
    pub at_ms: i64,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// What went wrong, if it did.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

/// A delivery leased for an attempt, with where and how to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    /// The delivery.
    pub delivery: Delivery,
    /// The webhook's URL.
    pub url: String,
    /// The webhook's secret.
    pub secret: String,
}

/// An outbox event not yet turned into deliveries, without its data: what sizes a fan-out batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Its place in the outbox (oldest first).
    pub id: i64,
    /// Its kind (`campaign.live`, `draw.completed`, ...).
    pub kind: String,
    /// The campaign it is about.
    pub campaign_id: String,
    /// When it happened, unix ms.
    pub at_ms: i64,
    /// Its data's length in bytes.
    pub data_bytes: u64,
}

/// An outbox event not yet turned into deliveries, with its data and public id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndeliveredEvent {
    /// Its place in the outbox (oldest first): what deliveries of it are keyed by.
    pub id: i64,
    /// Its public id, the body's `id`: `evt_` and 32 hex digits of a random 128-bit value given
    /// when it was written, or `evt_<id>` for an event written before migration 0014.
    pub public_id: String,
    /// The event.
    pub event: CampaignEvent,
}

/// Which page of an inbox to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InboxPage<'a> {
    /// Most messages.
    pub limit: u32,
    /// Only the messages not expired by then (unix ms); `None`: expired ones too.
    pub live_at_ms: Option<i64>,
    /// Only the messages listed below the last of the previous page; `None`: from the top.
    pub below: Option<InboxBelow<'a>>,
}

/// The last message of an inbox's previous page, as its cursor names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxBelow<'a> {
    /// Its position.
    Position(i64),
    /// Its id (a cursor given before positions named the message, not its position); a
    /// message not found starts the page at the top.
    Message(&'a str),
}

/// Webhooks and their delivery queue.
#[async_trait]
pub trait WebhookStore: Health {
    /// Adds a webhook, once per key if `keyed`, unless `max` webhooks are active (`Full`,
    /// nothing written). The count is taken in the create's transaction after its key, under a
    /// lock every create of a webhook waits for: creates at the same moment never leave more
    /// than `max` active, and a retry of a create that stands is answered whatever the count.
    async fn create_webhook(
        &self,
        keyed: Option<&Keyed>,
        hook: &Webhook,
        audit: &AuditEntry,
        max: u32,
    ) -> PortResult<CappedOutcome>;
    /// Active webhooks, oldest first: as many as the cap of their creates allowed (more only
    /// where it was lowered since).
    async fn webhooks(&self) -> PortResult<Vec<Webhook>>;
    /// Deletes a webhook and marks its pending deliveries dead (the rows stay); `false` if there
    /// is none.
    async fn delete_webhook(&self, id: &str, audit: &AuditEntry) -> PortResult<bool>;
    /// The oldest `limit` outbox events not yet turned into deliveries, oldest first, with their
    /// data's size but not their data.
    async fn undispatched(&self, limit: u32) -> PortResult<Vec<OutboxEvent>>;
    /// Those of the outbox events `ids` not yet turned into deliveries, oldest first, with their
    /// data and public ids.
    async fn undelivered_events(&self, ids: &[i64]) -> PortResult<Vec<UndeliveredEvent>>;
    /// Queues `deliveries` (one per webhook and event at most) and marks `event_ids` as
    /// dispatched, in one transaction.
    async fn enqueue(&self, event_ids: &[i64], deliveries: &[Delivery]) -> PortResult<()>;
    /// Leases until `until_ms` up to `limit` pending deliveries due at `now_ms`, longest due
    /// first, at most `per_webhook` of a webhook counting its `in_flight` (the caller's attempts
    /// still running, by webhook id); the rest are left due. A crashed sender's lease runs out
    /// and another replica tries again.
    async fn lease_due(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: u32,
        per_webhook: u32,
        in_flight: &HashMap<String, u32>,
    ) -> PortResult<Vec<DueDelivery>>;
    /// Records an attempt and the delivery's new state, attempts and next time if it is still
    /// pending under the lease that ends at `leased_until_ms`; `false`, writing nothing, if that
    /// lease was lost (it ran out and another replica leased it, or the webhook was deleted).
    async fn record_attempt(
        &self,
        leased_until_ms: i64,
        delivery: &Delivery,
        attempt: &Attempt,
    ) -> PortResult<bool>;
}

/// What a redelivery set pending again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redelivery {
    /// The deliveries due again, oldest first.
    pub ids: Vec<String>,
    /// Whether more dead deliveries of the webhook wait (a call for all of them takes `limit`).
    pub more: bool,
}

/// Which of a webhook's deliveries a listing shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryPage<'a> {
    /// Only those in this state; `None`: all.
    pub state: Option<DeliveryState>,
    /// Most deliveries.
    pub limit: u32,
    /// Only those after this one in the listing (its creation time and id: the last of the
    /// previous page); `None`: from the newest.
    pub after: Option<(i64, &'a str)>,
}

impl DeliveryPage<'_> {
    /// The newest `limit` deliveries, whatever their state.
    pub fn newest(limit: u32) -> Self {
        Self {
            state: None,
            limit,
            after: None,
        }
    }
}

/// A webhook's deliveries as operators see them, and sending the dead ones again once the
/// receiver is fixed.
#[async_trait]
pub trait DeliveryLog: Health {
    /// A page of a webhook's deliveries, newest first, each with its attempts; their bodies
    /// empty (what was sent is the event's, and a draw's holds every award).
    async fn deliveries(
        &self,
        webhook_id: &str,
        page: DeliveryPage<'_>,
    ) -> PortResult<Vec<(Delivery, Vec<Attempt>)>>;
    /// Sets dead deliveries of the active webhook `webhook_id` pending, due at `now_ms`: those
    /// named in `ids`, or with `ids` empty its oldest `limit`; audited. `None` if the webhook
    /// is not active (never made, or deleted).
    async fn redeliver(
        &self,
        webhook_id: &str,
        ids: &[String],
        limit: u32,
        now_ms: i64,
        audit: &AuditEntry,
    ) -> PortResult<Option<Redelivery>>;
}

/// Retention of distribution's rows: each purge deletes what is past its cutoff (unix ms) a
/// bounded step per write transaction, along an index, and returns how many rows it deleted
/// (their attempts or claims, deleted with them, aside; none when `round` is spared the walk:
/// [`PurgeRound`]).
#[async_trait]
pub trait DistributionRetention: Health {
    /// Deletes the delivered and dead webhook deliveries, with their attempts, whose last
    /// attempt's lease ended (never attempted: whose attempt was due) before `before_ms`.
    async fn purge_deliveries(&self, before_ms: i64, round: PurgeRound) -> PortResult<u64>;
    /// Deletes the outbox events turned into deliveries that happened before `before_ms` and
    /// have no delivery left.
    async fn purge_events(&self, before_ms: i64, round: PurgeRound) -> PortResult<u64>;
    /// Deletes the inbox messages that expired before `before_ms`, with their claims.
    async fn purge_messages(&self, before_ms: i64, round: PurgeRound) -> PortResult<u64>;
}
