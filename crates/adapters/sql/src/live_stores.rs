//! The live-event store traits on [`crate::SqlRepository`], stamped per backend like
//! [`crate::stores`]: each method delegates to the repository's generic inherent method.

/// Implements the operators', campaigns', participation's and distribution's store traits for
/// `SqlRepository<$db>`.
macro_rules! impl_live_stores {
    ($db:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use liveops_core::stores::{
                ActiveKeys, ApiKeyInfo, ApiKeyStore, Attempt, AuditEntry, AuditLog, Campaign,
                CampaignEvent, CampaignState, CampaignStore, ClaimOutcome, Delivery, DueDelivery,
                Entered, Entry, EntryStore, InboxClaim, InboxMessage, InboxStore, OperatorRecord,
                OperatorStore, Outcome, OutcomeStore, PlayerXp, Session, Sessions, Webhook,
                WebhookStore,
            };
            use liveops_core::PortResult;

            use $crate::SqlRepository;

            type Repo = SqlRepository<$db>;

            #[async_trait]
            impl OperatorStore for Repo {
                async fn operator_count(&self) -> PortResult<u64> {
                    Repo::operator_count(self).await
                }
                async fn create_operator(
                    &self,
                    op: &OperatorRecord,
                    audit: &AuditEntry,
                ) -> PortResult<bool> {
                    Repo::create_operator(self, op, audit).await
                }
                async fn operator_by_email(
                    &self,
                    email: &str,
                ) -> PortResult<Option<OperatorRecord>> {
                    Repo::operator_by_email(self, email).await
                }
                async fn operator(&self, id: &str) -> PortResult<Option<OperatorRecord>> {
                    Repo::operator(self, id).await
                }
                async fn operators(&self) -> PortResult<Vec<OperatorRecord>> {
                    Repo::operators(self).await
                }
                async fn update_operator(
                    &self,
                    before: &OperatorRecord,
                    after: &OperatorRecord,
                    audit: &AuditEntry,
                ) -> PortResult<bool> {
                    Repo::update_operator(self, before, after, audit).await
                }
            }

            #[async_trait]
            impl Sessions for Repo {
                async fn any_operator(&self) -> PortResult<bool> {
                    Repo::any_operator(self).await
                }
                async fn open_session(
                    &self,
                    token_hash: &str,
                    operator_id: &str,
                    expires_at_ms: i64,
                ) -> PortResult<()> {
                    Repo::open_session(self, token_hash, operator_id, expires_at_ms).await
                }
                async fn session(&self, token_hash: &str) -> PortResult<Option<Session>> {
                    Repo::session(self, token_hash).await
                }
                async fn close_session(&self, token_hash: &str) -> PortResult<()> {
                    Repo::close_session(self, token_hash).await
                }
            }

            #[async_trait]
            impl AuditLog for Repo {
                async fn record(&self, entry: &AuditEntry) -> PortResult<()> {
                    Repo::record_audit(self, entry).await
                }
                async fn audit(&self, limit: u32) -> PortResult<Vec<AuditEntry>> {
                    Repo::audit(self, limit).await
                }
            }

            #[async_trait]
            impl ApiKeyStore for Repo {
                async fn create_api_key(
                    &self,
                    key: &ApiKeyInfo,
                    secret: &str,
                    audit: &AuditEntry,
                ) -> PortResult<()> {
                    Repo::create_api_key(self, key, secret, audit).await
                }
                async fn api_keys(&self) -> PortResult<Vec<ApiKeyInfo>> {
                    Repo::api_keys(self).await
                }
                async fn revoke_api_key(
                    &self,
                    key_id: &str,
                    audit: &AuditEntry,
                ) -> PortResult<Option<ApiKeyInfo>> {
                    Repo::revoke_api_key(self, key_id, audit).await
                }
            }

            #[async_trait]
            impl ActiveKeys for Repo {
                async fn active_api_keys(&self) -> PortResult<Vec<(String, Vec<u8>)>> {
                    Repo::active_api_keys(self).await
                }
            }

            #[async_trait]
            impl CampaignStore for Repo {
                async fn create_campaign(
                    &self,
                    campaign: &Campaign,
                    audit: &AuditEntry,
                ) -> PortResult<()> {
                    Repo::create_campaign(self, campaign, audit).await
                }
                async fn campaign(&self, id: &str) -> PortResult<Option<Campaign>> {
                    Repo::campaign(self, id).await
                }
                async fn campaigns(
                    &self,
                    state: Option<CampaignState>,
                    limit: u32,
                ) -> PortResult<Vec<Campaign>> {
                    Repo::campaigns(self, state, limit).await
                }
                async fn update_campaign(
                    &self,
                    before: &Campaign,
                    next: &Campaign,
                    audit: &AuditEntry,
                ) -> PortResult<bool> {
                    Repo::update_campaign(self, before, next, audit).await
                }
                async fn advance(
                    &self,
                    id: &str,
                    from: CampaignState,
                    to: CampaignState,
                    event: Option<&CampaignEvent>,
                ) -> PortResult<bool> {
                    Repo::advance(self, id, from, to, event).await
                }
                async fn due(&self, now_ms: i64, limit: u32) -> PortResult<Vec<Campaign>> {
                    Repo::due(self, now_ms, limit).await
                }
            }

            #[async_trait]
            impl EntryStore for Repo {
                async fn enter(&self, entry: &Entry) -> PortResult<Entered> {
                    Repo::enter(self, entry).await
                }
                async fn entry_by_request(&self, request_sig: &str) -> PortResult<Option<Entry>> {
                    Repo::entry_by_request(self, request_sig).await
                }
                async fn entrants(&self, campaign_id: &str) -> PortResult<Vec<String>> {
                    Repo::entrants(self, campaign_id).await
                }
                async fn entries_of(
                    &self,
                    player_id: &str,
                    campaign_ids: &[String],
                ) -> PortResult<Vec<Entry>> {
                    Repo::entries_of(self, player_id, campaign_ids).await
                }
            }

            #[async_trait]
            impl OutcomeStore for Repo {
                async fn record_outcome(
                    &self,
                    outcome: &Outcome,
                    event: Option<&CampaignEvent>,
                ) -> PortResult<Outcome> {
                    Repo::record_outcome(self, outcome, event).await
                }
                async fn outcome(&self, campaign_id: &str) -> PortResult<Option<Outcome>> {
                    Repo::outcome(self, campaign_id).await
                }
            }

            #[async_trait]
            impl PlayerXp for Repo {
                async fn season_xp(&self, player_id: &str, season: i64) -> PortResult<u64> {
                    Repo::season_xp(self, player_id, season).await
                }
            }

            #[async_trait]
            impl InboxStore for Repo {
                async fn settle(
                    &self,
                    campaign_id: &str,
                    player_id: &str,
                    message: &InboxMessage,
                ) -> PortResult<bool> {
                    Repo::settle(self, campaign_id, player_id, message).await
                }
                async fn send_messages(
                    &self,
                    messages: &[InboxMessage],
                    audit: &AuditEntry,
                ) -> PortResult<()> {
                    Repo::send_messages(self, messages, audit).await
                }
                async fn message(
                    &self,
                    player_id: &str,
                    message_id: &str,
                ) -> PortResult<Option<InboxMessage>> {
                    Repo::message(self, player_id, message_id).await
                }
                async fn inbox(
                    &self,
                    player_id: &str,
                    limit: u32,
                ) -> PortResult<Vec<(InboxMessage, Option<InboxClaim>)>> {
                    Repo::inbox(self, player_id, limit).await
                }
                async fn claim(&self, claim: &InboxClaim, now_ms: i64) -> PortResult<ClaimOutcome> {
                    Repo::claim(self, claim, now_ms).await
                }
                async fn claim_by_request(
                    &self,
                    request_sig: &str,
                ) -> PortResult<Option<InboxClaim>> {
                    Repo::claim_by_request(self, request_sig).await
                }
                async fn claim_of(
                    &self,
                    player_id: &str,
                    message_id: &str,
                ) -> PortResult<Option<InboxClaim>> {
                    Repo::claim_of(self, player_id, message_id).await
                }
            }

            #[async_trait]
            impl WebhookStore for Repo {
                async fn create_webhook(
                    &self,
                    hook: &Webhook,
                    audit: &AuditEntry,
                ) -> PortResult<()> {
                    Repo::create_webhook(self, hook, audit).await
                }
                async fn webhooks(&self) -> PortResult<Vec<Webhook>> {
                    Repo::webhooks(self).await
                }
                async fn delete_webhook(&self, id: &str, audit: &AuditEntry) -> PortResult<bool> {
                    Repo::delete_webhook(self, id, audit).await
                }
                async fn undelivered_events(
                    &self,
                    limit: u32,
                ) -> PortResult<Vec<(i64, CampaignEvent)>> {
                    Repo::undelivered_events(self, limit).await
                }
                async fn enqueue(
                    &self,
                    event_ids: &[i64],
                    deliveries: &[Delivery],
                ) -> PortResult<()> {
                    Repo::enqueue(self, event_ids, deliveries).await
                }
                async fn lease_due(
                    &self,
                    now_ms: i64,
                    until_ms: i64,
                    limit: u32,
                ) -> PortResult<Vec<DueDelivery>> {
                    Repo::lease_due(self, now_ms, until_ms, limit).await
                }
                async fn record_attempt(
                    &self,
                    delivery: &Delivery,
                    attempt: &Attempt,
                ) -> PortResult<()> {
                    Repo::record_attempt(self, delivery, attempt).await
                }
                async fn deliveries(
                    &self,
                    webhook_id: &str,
                    limit: u32,
                ) -> PortResult<Vec<(Delivery, Vec<Attempt>)>> {
                    Repo::deliveries(self, webhook_id, limit).await
                }
            }
        };
    };
}

pub(crate) use impl_live_stores;
