//! The LiveOps [`Bus`](liveops_core::Bus) over AMQP 1.0: Azure Service Bus
//! (`BUS_KIND=servicebus`), or a plain AMQP 1.0 broker for tests and local runs.
//!
//! # Entities
//!
//! A LiveOps topic is a Service Bus topic (entity path = the topic name); a consumer group is a
//! subscription, `<topic>/Subscriptions/<group>`; its dead letters are its
//! `<topic>/Subscriptions/<group>/$deadletterqueue`. On Azure, Terraform owns these entities
//! (topics with duplicate detection; subscriptions with `RequiresSession`, `MaxDeliveryCount` ≥
//! `max_deliveries`, a lock duration ≥ the visibility timeout, and the SQL filter
//! `NOT EXISTS([liveops-replay-group]) OR [liveops-replay-group] = '<group>'`, so that a replayed
//! dead letter reaches its own group only); `ensure_group` attaches to the subscription and fails
//! when it is missing. On a plain broker the addresses are created on first use.
//!
//! # Connection
//!
//! [`ServiceBusConfig::parse`] reads the connection string (`BUS_CONN`). With a
//! `SharedAccessKey` it is Azure: TLS (rustls, Mozilla's roots), SASL ANONYMOUS, then for every
//! entity a SAS token ([`sas::token`]) put to `$cbs` ([`frames::put_token`]) before its links
//! attach, renewed when a fifth of its lifetime is left. Without a key it is a plain broker:
//! no `$cbs`, no sessions, no duplicate detection.
//!
//! # Publish
//!
//! One sender link per topic; a publish sends every message on it without waiting
//! (pipelined) and then waits for every outcome: `Ok` once the broker accepted each one
//! (one round trip per publish, whatever its size). A publish holds the link only while its
//! transfers go out, not while their outcomes come back, so concurrent publishes are pipelined
//! on it too; its wait for the link, its transfers and its outcomes end within one call
//! timeout (`Unavailable` past it). `message-id` = `Message.id` (Service Bus
//! drops a duplicate within the topic's duplicate-detection window); on Azure `session-id`
//! (AMQP `group-id`) and the `x-opt-partition-key` annotation are the player key
//! ([`frames::outgoing`]).
//!
//! # Poll, ack, redelivery, dead letters
//!
//! Peek-lock receiver links (unsettled deliveries, manual credit). Without sessions, one link
//! per group and process. With sessions (Azure) each link carries the session filter
//! ([`frames::source`]) and holds one player's session at a time, which keeps a player's
//! messages with one link, in order; a group keeps a pool of up to
//! [`ServiceBusConfig::session_links`] of them per process (`BUS_SB_SESSIONS`, default 8),
//! each holding another player's session. A session receiver attaches on an AMQP session of its
//! own with `com.microsoft:timeout` ([`frames::session_wait`]), in the background: a poll never
//! waits for an attach while it has links to read, and takes the links attached since into the
//! pool (`bus_session_links{topic,group}` counts those held). A refusal for lack of a free
//! session leaves the slot empty until the next poll (and answers `ensure_group` `Ok`);
//! `ensure_group` closes the session link it attached before it answers, so a process that
//! never polls the group holds no player's session. A
//! session link that has had credit for 250 ms without receiving anything, with nothing
//! buffered or un-acked, is closed, and an attach started in its place takes the next player's
//! session. A poll raises the credit of every link of the pool to `max`, waits up to `wait` for
//! the first message from any of them and a moment for more, and hands out at most `max` (the
//! rest stays buffered for the next poll). Without sessions it then takes the credit back; a
//! session link keeps it (only its player's messages can come), as `fe2o3-amqp` drops a
//! transfer beyond the credit it last set. Each delivery is settled, abandoned and renewed on
//! the link it came on. `deliveries` is the header's `delivery-count` + 1; a message
//! whose count reached `max_deliveries` is rejected with `com.microsoft:dead-letter`
//! ([`frames::dead_letter_error`]) instead of being handed out, which moves it to the
//! dead-letter queue (Service Bus does the same by itself at `MaxDeliveryCount`). Delivery ids
//! are message ids, stable across redeliveries. `ack` settles `accepted` (complete). A delivery
//! not acked within the visibility timeout is abandoned (`modified`, `delivery-failed`) and
//! comes back with its count raised; buffered messages of the same player are `released` with
//! it, so the broker hands them out again in order. While a consumer holds a delivery the bus
//! renews its lock (`com.microsoft:renew-lock` with the lock token [`frames::lock_token`], or
//! `com.microsoft:renew-session-lock` with sessions, on the subscription's `$management` node)
//! for up to `max_hold`.
//!
//! `dead_letters` receives from the dead-letter queue and releases what it got (a peek);
//! `replay_dead_letters` sends each dead letter back to the topic with a fresh message id and
//! the `liveops-replay-group` property (so only its group gets it), then completes it in the
//! dead-letter queue. A delivery whose `liveops-replay-group` names another group (a
//! subscription without the rule above) is completed unread, logged at debug and counted
//! (`bus_replays_skipped_total{topic,group}`): that group may have forgotten the event's id, and
//! would apply it twice. `lag` asks the broker's `$management` node for the subscription's count
//! on the plain test broker (`liveops:message-count`, an extension of that broker); on Azure
//! it answers `Unavailable`: Service Bus reports counts over HTTPS and Azure Monitor only.
//!
//! # Failures
//!
//! Every broker round trip is bounded by `call_timeout` and fails with
//! `PortError::Unavailable`; the failed connection is dropped (a failed publish drops the one
//! its sender was on, only if it is still current, and a publish whose time ran out only when
//! the broker has answered nothing on its link for half a call timeout, counting its answers to
//! transfers whose publish gave up on them) and the next call opens
//! a new one (what was
//! in flight on it is handed out again by the broker). A receiver link that fails alone is
//! replaced; what it handed out is forgotten (each attach has its own id). A poll fails with it
//! only when it was the group's last link; the other links of a session pool go on. Before a
//! poll grants a session link credit it reads what the link received since the last poll, so a
//! detach that came meanwhile is seen without sending a flow on the detached link. Without
//! sessions a poll first grants the credit the last one took back, then reads what came since
//! (`fe2o3-amqp` refuses a transfer the broker sent before it had the lower credit if it is
//! read before), and a retired link is closed in the background, not only dropped.
//!
//! # Known limits
//!
//! * A plain broker hands a group's messages to every receiver round robin: per-player order
//!   holds with one consumer process per group there (within a process the bus keeps it).
//! * With sessions, a process reads at most `session_links` players of a group at once; a
//!   player whose messages keep coming (never 250 ms without one) keeps its link.

mod bus;
mod config;
pub mod frames;
pub mod sas;

pub use bus::ServiceBusBus;
pub use config::{BusError, Mode, ServiceBusConfig, DEFAULT_SESSION_LINKS};
