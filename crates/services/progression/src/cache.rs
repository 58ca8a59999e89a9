//! The progress-view cache. Entries are keyed by a per-player version that every change to the
//! player replaces, so a view read before a change and stored after it is never served: a plain
//! delete on change loses that race and left players looking at their old XP for the whole TTL.

use std::time::Duration;

use bytes::Bytes;
use liveops_core::ports::ViewCache;
use liveops_core::PortError;
use liveops_http::Throttled;
use uuid::Uuid;

/// How long a progress view stays cached.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(30);

/// How long a player's version lives after the last change: longer than any entry, so when it
/// lapses no entry cached under the version before it is still alive.
const VERSION_TTL: Duration = Duration::from_secs(2 * CACHE_TTL.as_secs());

fn version_key(player: &str) -> String {
    format!("progress-version:{player}")
}

/// The key under which a view of `player` in `season` is cached now.
pub(crate) async fn view_key(
    cache: &dyn ViewCache,
    player: &str,
    season: i64,
) -> Result<String, PortError> {
    let version = cache.cache_get(&version_key(player)).await?.map_or_else(
        || "0".to_owned(),
        |v| String::from_utf8_lossy(&v).into_owned(),
    );
    // `v3`: views with `inventoryCount` and at most 100 inventory lines (`v2` views, of the
    // release before, list every line; `v2` added `pendingCount`).
    Ok(format!("progress:v3:{player}:{season}:{version}"))
}

/// Makes every cached view of `player` stale (call it after the change is committed).
pub(crate) async fn invalidate(cache: &dyn ViewCache, player: &str) {
    let version = Bytes::from(Uuid::now_v7().to_string());
    if let Err(error) = cache
        .cache_put(&version_key(player), version, VERSION_TTL)
        .await
    {
        static LOG: Throttled = Throttled::new(10_000);
        if let Some(left_out) = LOG.admit() {
            tracing::warn!(%error, player, left_out, "cannot invalidate cached progress");
        }
    }
}

/// Most invalidations in flight at once (each is a round trip on a remote hot state).
const CONCURRENT: usize = 64;

/// [`invalidate`] for many players, side by side rather than one round trip after another.
pub(crate) async fn invalidate_all<'a>(
    cache: &dyn ViewCache,
    players: impl IntoIterator<Item = &'a str>,
) {
    use futures_util::StreamExt;
    futures_util::stream::iter(players)
        .for_each_concurrent(CONCURRENT, |player| invalidate(cache, player))
        .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use liveops_memory::MemoryHotState;

    use super::*;

    #[tokio::test]
    async fn a_view_read_before_a_change_and_stored_after_it_is_never_served() {
        let hot = MemoryHotState::new();
        // A reader picks its key and reads the old view...
        let stale_key = view_key(&hot, "player_1", 4).await.unwrap();
        // ...the consumer commits a change and invalidates...
        invalidate(&hot, "player_1").await;
        // ...then the reader stores the old view.
        hot.cache_put(&stale_key, Bytes::from_static(b"old"), CACHE_TTL)
            .await
            .unwrap();
        let now_key = view_key(&hot, "player_1", 4).await.unwrap();
        assert_ne!(now_key, stale_key);
        assert_eq!(hot.cache_get(&now_key).await.unwrap(), None);
        // Other players and seasons have their own keys.
        assert_ne!(view_key(&hot, "player_2", 4).await.unwrap(), now_key);
        assert_ne!(view_key(&hot, "player_1", 5).await.unwrap(), now_key);
    }
}
