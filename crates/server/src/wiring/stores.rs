//! Durable stores: the SQL adapter on the backend `DB_URL`'s scheme names, migrated on open, with
//! the read replica `DB_READ_URL` if one is set.

use std::sync::Arc;

use liveops_core::stores::{FairnessStore, ProcessedEvents, ProgressStore, ScoreStore};
use liveops_module::ports::Opened;
use liveops_module::{Adapter, Ports, Task};
use liveops_sql::Repository;

use super::named;

/// Registers the repository for every store trait.
pub(super) fn provide(ports: &mut Ports, s: &crate::config::Settings) {
    let (url, reads) = (s.db_url.clone(), s.reads.clone());
    let repo: Arc<Adapter<dyn Repository>> = Adapter::new_dyn(
        "repository",
        |a| a,
        move || {
            let (url, reads) = (url.clone(), reads.clone());
            async move {
                let repo = match &reads {
                    None => liveops_sql::connect_repository(&url).await,
                    Some(r) => {
                        liveops_sql::connect_repository_with_replica(&url, &r.url, r.max_lag).await
                    }
                }
                .map_err(named("DB_URL"))?;
                repo.migrate().await.map_err(named("DB_URL"))?;
                // The replica is measured while the process runs; reads use it once it is.
                let upkeep = repo.replica_watch().map(|watch| {
                    Task::new("read-replica", move |stop| async move {
                        tokio::select! {
                            () = watch => {}
                            () = stop.cancelled() => {}
                        }
                        Ok(())
                    })
                });
                Ok(Opened {
                    adapter: repo,
                    upkeep: upkeep.into_iter().collect(),
                })
            }
        },
    );
    ports.provide::<_, dyn ProgressStore>(&repo, |a| a);
    ports.provide::<_, dyn ScoreStore>(&repo, |a| a);
    ports.provide::<_, dyn FairnessStore>(&repo, |a| a);
    ports.provide::<_, dyn ProcessedEvents>(&repo, |a| a);
    ports.provide::<_, dyn Repository>(&repo, |a| a);
}
