//! Loading what a request's path names, or answering 404.

use liveops_core::stores::{Campaign, CampaignStore};

use crate::Problem;

/// The campaign `id` from `campaigns`, or a 404 problem naming it.
pub async fn campaign_or_404(campaigns: &dyn CampaignStore, id: &str) -> Result<Campaign, Problem> {
    campaigns
        .campaign(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no campaign {id:?}")))
}
