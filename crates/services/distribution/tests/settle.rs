//! Settlement as a studio sees it: each winner of a decided campaign finds the prize in their
//! inbox. Real adapters: the SQLite repository.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;
use std::time::Duration;

use liveops_core::stores::{
    Award, Campaign, CampaignEvent, CampaignState, CampaignStore, InboxPage, InboxStore, Outcome,
    OutcomeStore, OutcomeSummary,
};
use liveops_core::{now_ms, Health, PortError, PortResult};
use liveops_distribution::{settle_ended, DistributionState};
use liveops_module::tick::Rotation;
use liveops_sql::SqliteRepository;
use liveops_testkit::conformance::live::{campaign, create_in};

/// Outcomes whose entrant lists cannot be read: only their summaries.
struct ListsUnreadable(Arc<SqliteRepository>);

#[async_trait::async_trait]
impl Health for ListsUnreadable {
    async fn healthcheck(&self) -> PortResult<()> {
        self.0.healthcheck().await
    }
}

#[async_trait::async_trait]
impl OutcomeStore for ListsUnreadable {
    async fn record_outcome(
        &self,
        outcome: &Outcome,
        event: Option<&CampaignEvent>,
    ) -> PortResult<bool> {
        self.0.record_outcome(outcome, event).await
    }
    async fn outcome(&self, _campaign_id: &str) -> PortResult<Option<Outcome>> {
        Err(PortError::Unavailable(
            "a whole entrant list was read".into(),
        ))
    }
    async fn outcome_summary(&self, campaign_id: &str) -> PortResult<Option<OutcomeSummary>> {
        self.0.outcome_summary(campaign_id).await
    }
    async fn decided(&self, campaign_id: &str) -> PortResult<bool> {
        self.0.decided(campaign_id).await
    }
}

/// A decided draw is settled from its summary: every winner's prize is in their inbox and the
/// campaign is settled, without its entrant list (megabytes for a big draw) ever being read.
#[tokio::test]
async fn a_draw_is_settled_without_reading_its_entrants() {
    let (_dir, repo) = common::repo().await;
    let c = Campaign {
        ends_at_ms: now_ms() - 1000,
        ..campaign("settled")
    };
    create_in(&*repo, &c, CampaignState::Ended).await;
    let entrants: Vec<String> = (0..50).map(|i| format!("player_{i:02}")).collect();
    let awards: Vec<Award> = ["player_07", "player_31"]
        .iter()
        .zip(1..)
        .map(|(p, rank)| Award {
            player_id: (*p).into(),
            item: "gold_chest".into(),
            rank,
        })
        .collect();
    let outcome = Outcome {
        campaign_id: c.id.clone(),
        algorithm: "liveops-draw-v1".into(),
        entrants_hash: liveops_core::draw::entrants_hash(&entrants),
        entrants,
        seed: Some(hex::encode([7u8; 32])),
        commitment: None,
        winner_count: Some(2),
        source: None,
        awards,
        decided_at_ms: now_ms(),
    };
    repo.record_outcome(&outcome, None).await.unwrap();
    let state = DistributionState {
        outcomes: Arc::new(ListsUnreadable(repo.clone())),
        ..common::state(&repo, Duration::from_secs(1))
    };
    let settled = settle_ended(&state, &Rotation::default()).await.unwrap();
    assert_eq!(settled, 1);
    let after = repo.campaign(&c.id).await.unwrap().unwrap();
    assert_eq!(after.state, CampaignState::Settled);
    for winner in ["player_07", "player_31"] {
        let page = InboxPage {
            limit: 10,
            live_at_ms: None,
            below: None,
        };
        let inbox = repo.inbox(winner, page).await.unwrap();
        assert_eq!(inbox.len(), 1, "{winner}");
        let message = &inbox[0].message;
        assert_eq!(message.attachments, ["gold_chest"]);
        assert!(
            message.body.contains("drawn as a winner"),
            "{}",
            message.body
        );
    }
}
