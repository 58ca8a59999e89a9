//! Hot state and ranks: in process (the embedded default) or on Redis (`REDIS_URL`).

use std::sync::Arc;
use std::time::Duration;

use liveops_core::ports::{Attempts, Blocklist, Idempotency, RateLimiter, ViewCache};
use liveops_core::RankStore;
use liveops_memory::{MemoryHotState, MemoryRankStore};
use liveops_module::ports::Opened;
use liveops_module::{Adapter, Ports, Task};

/// How often in-process hot state frees expired entries.
const PURGE_EVERY: Duration = Duration::from_secs(30);

/// Registers the hot-state and rank-store adapters `REDIS_URL` selects.
pub(super) fn provide(ports: &mut Ports, s: &crate::config::Settings) {
    match &s.redis_url {
        Some(url) => redis(ports, url.clone(), s.redis_ca.clone()),
        None => memory(
            ports,
            usize::try_from(s.raw.idemp_max_keys).unwrap_or(usize::MAX),
        ),
    }
}

/// Registers every hot-state concern on one adapter.
fn provide_hot<H>(ports: &mut Ports, hot: &Arc<Adapter<H>>)
where
    H: Idempotency + RateLimiter + Blocklist + Attempts + ViewCache + 'static,
{
    ports.provide::<_, dyn Idempotency>(hot, |a| a);
    ports.provide::<_, dyn RateLimiter>(hot, |a| a);
    ports.provide::<_, dyn Blocklist>(hot, |a| a);
    ports.provide::<_, dyn Attempts>(hot, |a| a);
    ports.provide::<_, dyn ViewCache>(hot, |a| a);
}

/// In-process hot state keeping up to `idem_limit` idempotency holds, and ranks.
fn memory(ports: &mut Ports, idem_limit: usize) {
    let hot = Adapter::new("hot_state", move || async move {
        let hot = Arc::new(MemoryHotState::with_idempotency_limit(idem_limit));
        let purged = hot.clone();
        Ok(Opened {
            adapter: hot,
            upkeep: vec![Task::new("hot state expiry", move |stop| async move {
                let purger = purged.spawn_purger(PURGE_EVERY);
                stop.cancelled().await;
                purger.abort();
                Ok(())
            })],
        })
    });
    provide_hot(ports, &hot);
    let ranks = Adapter::new("rank_store", || async {
        Ok(Opened::plain(Arc::new(MemoryRankStore::new())))
    });
    ports.provide::<_, dyn RankStore>(&ranks, |a| a);
}

#[cfg(feature = "redis")]
fn redis(ports: &mut Ports, url: String, ca: Option<Vec<u8>>) {
    use liveops_core::PortError;
    use liveops_redis::{RedisConn, RedisHotState, RedisRankStore};
    use tokio::sync::OnceCell;

    // One connection (or cluster client) shared by both adapters, made on first use.
    type Shared = (Arc<OnceCell<RedisConn>>, String, Option<Arc<[u8]>>);
    async fn connect((conn, url, ca): Shared) -> Result<RedisConn, PortError> {
        conn.get_or_try_init(|| async {
            RedisConn::connect_with_ca(&url, ca.as_deref())
                .await
                .map_err(|e| PortError::Unavailable(format!("REDIS_URL: {e}")))
        })
        .await
        .cloned()
    }
    let shared: Shared = (Arc::default(), url, ca.map(Arc::from));
    let for_hot = shared.clone();
    let hot = Adapter::new("hot_state", move || {
        let shared = for_hot.clone();
        async move {
            Ok(Opened::plain(Arc::new(RedisHotState::new(
                connect(shared).await?,
            ))))
        }
    });
    provide_hot(ports, &hot);
    let ranks = Adapter::new("rank_store", move || {
        let shared = shared.clone();
        async move {
            Ok(Opened::plain(Arc::new(RedisRankStore::new(
                connect(shared).await?,
            ))))
        }
    });
    ports.provide::<_, dyn RankStore>(&ranks, |a| a);
}

#[cfg(not(feature = "redis"))]
fn redis(_ports: &mut Ports, _url: String, _ca: Option<Vec<u8>>) {
    // Settings::resolve refuses REDIS_URL in a build without Redis.
}
