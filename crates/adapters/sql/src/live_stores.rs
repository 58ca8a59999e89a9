//! The live-event store traits on [`crate::SqlRepository`], stamped per backend like
//! [`crate::stores`]: each method delegates to the repository's generic inherent method.

/// Implements the operators', campaigns', participation's and distribution's store traits for
/// `SqlRepository<$db>`.
macro_rules! impl_live_stores {
    ($db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use liveops_core::stores::{
                ActiveKeys, ApiKeyInfo, ApiKeyStore, Attempt, AuditEntry, AuditLog, Campaign, CappedOutcome,
                CampaignEvent, CampaignPage, CampaignState, CampaignStore, ClaimOutcome, Delivery, DeliveryLog, DeliveryPage,
                DistributionRetention, DueDelivery, Entered, EntriesSummary, Entry, EntryStore, InboxClaim, InboxMessage, InboxPage, InboxStore,
                Keyed, KeyedOutcome, ListedAudit, ListedMessage, LiveEventStores, OperatorRecord, OperatorStore,
                OperatorUpdate, Outcome, OutcomeStore, OutcomeSummary, PlayerXp, PurgeRound, Redelivery, RequestKey,
                RequestKeys, Session, Sessions, UndeliveredEvent, Webhook, WebhookStore,
            };
            use liveops_core::stores::distribution::OutboxEvent;
            use liveops_core::PortResult;
            use std::collections::HashMap;

            use $crate::SqlRepository;

            type Repo = SqlRepository<$db>;

            impl LiveEventStores for Repo {}

            $crate::stores::delegate! {
                impl OperatorStore {
                    fn operator_count() -> u64;
                    fn create_operator(op: &OperatorRecord, audit: &AuditEntry) -> bool;
                    fn operator_by_email(email: &str) -> Option<OperatorRecord>;
                    fn operator(id: &str) -> Option<OperatorRecord>;
                    fn operators() -> Vec<OperatorRecord>;
                    fn update_operator(
                        before: &OperatorRecord, after: &OperatorRecord, audit: &AuditEntry,
                    ) -> OperatorUpdate;
                }

                impl Sessions {
                    fn any_operator() -> bool;
                    fn open_session(
                        token_hash: &str, operator_id: &str, password_hash: &str, expires_at_ms: i64,
                    ) -> bool;
                    fn session(token_hash: &str) -> Option<Session>;
                    fn close_session(token_hash: &str) -> ();
                }
            }

            #[async_trait]
            impl AuditLog for Repo {
                async fn record(&self, entry: &AuditEntry) -> PortResult<()> {
                    Repo::record_audit(self, entry).await
                }
                async fn audit(
                    &self,
                    before: Option<i64>,
                    limit: u32,
                ) -> PortResult<Vec<ListedAudit>> {
                    Repo::audit(self, before, limit).await
                }
            }

            $crate::stores::delegate! {
                impl ApiKeyStore {
                    fn create_api_key(
                        keyed: Option<&Keyed>, key: &ApiKeyInfo, secret: &str, audit: &AuditEntry,
                        max: u32,
                    ) -> CappedOutcome;
                    fn api_keys(revoked: u32) -> Vec<ApiKeyInfo>;
                    fn revoke_api_key(key_id: &str, audit: &AuditEntry) -> Option<ApiKeyInfo>;
                }

                impl ActiveKeys {
                    fn active_api_keys() -> Vec<(String, Vec<u8>)>;
                }

                impl CampaignStore {
                    fn create_campaign(
                        keyed: Option<&Keyed>, campaign: &Campaign, audit: &AuditEntry,
                    ) -> KeyedOutcome;
                    fn campaign(id: &str) -> Option<Campaign>;
                    fn campaigns(page: CampaignPage<'_>) -> Vec<Campaign>;
                    fn update_campaign(
                        before: &Campaign, next: &Campaign, audit: &AuditEntry,
                        event: Option<&CampaignEvent>,
                    ) -> bool;
                    fn advance(
                        id: &str,
                        from: CampaignState,
                        to: CampaignState,
                        event: Option<&CampaignEvent>,
                    ) -> bool;
                    fn due(now_ms: i64, limit: u32) -> Vec<Campaign>;
                }

                impl EntryStore {
                    fn enter(entry: &Entry, max_entrants: u64) -> Entered;
                    fn entry_by_request(request_sig: &str) -> Option<Entry>;
                    fn entrants(campaign_id: &str) -> Vec<String>;
                    fn entrants_page(campaign_id: &str, after: Option<&str>, limit: u32) -> Vec<String>;
                    fn entrant_count(campaign_id: &str) -> u64;
                    fn entries_of(player_id: &str, campaign_ids: &[String]) -> Vec<Entry>;
                    fn entries_summary(
                        player_id: &str, campaign_ids: &[String], slots: &[String],
                    ) -> Vec<EntriesSummary>;
                }

                impl OutcomeStore {
                    fn record_outcome(outcome: &Outcome, event: Option<&CampaignEvent>) -> bool;
                    fn outcome(campaign_id: &str) -> Option<Outcome>;
                    fn outcome_summary(campaign_id: &str) -> Option<OutcomeSummary>;
                    fn decided(campaign_id: &str) -> bool;
                }

                impl PlayerXp {
                    fn season_xp(player_id: &str, season: i64) -> u64;
                }

                impl InboxStore {
                    fn settle(campaign_id: &str, messages: &[InboxMessage]) -> u64;
                    fn send_messages(
                        keyed: Option<&Keyed>, messages: &[InboxMessage], audit: &AuditEntry,
                    ) -> KeyedOutcome;
                    fn message(player_id: &str, message_id: &str) -> Option<InboxMessage>;
                    fn inbox(player_id: &str, page: InboxPage<'_>) -> Vec<ListedMessage>;
                    fn claim(claim: &InboxClaim, now_ms: i64) -> ClaimOutcome;
                    fn claim_by_request(request_sig: &str) -> Option<InboxClaim>;
                    fn claim_of(player_id: &str, message_id: &str) -> Option<InboxClaim>;
                    fn place_messages(limit: u32) -> u64;
                }

                impl WebhookStore {
                    fn create_webhook(
                        keyed: Option<&Keyed>, hook: &Webhook, audit: &AuditEntry, max: u32,
                    ) -> CappedOutcome;
                    fn webhooks() -> Vec<Webhook>;
                    fn delete_webhook(id: &str, audit: &AuditEntry) -> bool;
                    fn undispatched(limit: u32) -> Vec<OutboxEvent>;
                    fn undelivered_events(ids: &[i64]) -> Vec<UndeliveredEvent>;
                    fn enqueue(event_ids: &[i64], deliveries: &[Delivery]) -> ();
                    fn lease_due(
                        now_ms: i64, until_ms: i64, limit: u32, per_webhook: u32,
                        in_flight: &HashMap<String, u32>,
                    ) -> Vec<DueDelivery>;
                    fn record_attempt(leased_until_ms: i64, delivery: &Delivery, attempt: &Attempt) -> bool;
                }

                impl DeliveryLog {
                    fn deliveries(webhook_id: &str, page: DeliveryPage<'_>) -> Vec<(Delivery, Vec<Attempt>)>;
                    fn redeliver(
                        webhook_id: &str, ids: &[String], limit: u32, now_ms: i64,
                        audit: &AuditEntry,
                    ) -> Option<Redelivery>;
                }

                impl DistributionRetention {
                    fn purge_deliveries(before_ms: i64, round: PurgeRound) -> u64;
                    fn purge_events(before_ms: i64, round: PurgeRound) -> u64;
                    fn purge_messages(before_ms: i64, round: PurgeRound) -> u64;
                }

                impl RequestKeys {
                    fn answered(key: &RequestKey) -> Option<KeyedOutcome>;
                }
            }
        };
    };
}

pub(crate) use impl_live_stores;
