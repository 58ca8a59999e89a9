//! Durable stores: the SQL adapter on the backend `DB_URL`'s scheme names, migrated on open.

use std::sync::Arc;

use liveops_core::stores::{FairnessStore, ProcessedEvents, ProgressStore, ScoreStore};
use liveops_module::ports::Opened;
use liveops_module::{Adapter, Ports};
use liveops_sql::Repository;

use super::named;

/// Registers the repository for every store trait.
pub(super) fn provide(ports: &mut Ports, s: &crate::config::Settings) {
    let url = s.db_url.clone();
    let repo: Arc<Adapter<dyn Repository>> = Adapter::new_dyn(
        "repository",
        |a| a,
        move || {
            let url = url.clone();
            async move {
                let repo = liveops_sql::connect_repository(&url)
                    .await
                    .map_err(named("DB_URL"))?;
                repo.migrate().await.map_err(named("DB_URL"))?;
                Ok(Opened::plain(repo))
            }
        },
    );
    ports.provide::<_, dyn ProgressStore>(&repo, |a| a);
    ports.provide::<_, dyn ScoreStore>(&repo, |a| a);
    ports.provide::<_, dyn FairnessStore>(&repo, |a| a);
    ports.provide::<_, dyn ProcessedEvents>(&repo, |a| a);
    ports.provide::<_, dyn Repository>(&repo, |a| a);
}
