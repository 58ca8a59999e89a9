//! The store traits on [`SqlRepository`], one backend at a time. The repository's logic is
//! written once, generically over the [`crate::Dialect`], in inherent methods; this macro stamps
//! the trait impls for a concrete backend, so the long list of sqlx bounds the generic code needs
//! is written once instead of once per trait.

/// Implements [`crate::Repository`], every store trait and `Health` for `SqlRepository<$db>` by delegating to its
/// inherent methods.
macro_rules! impl_stores {
    ($db:ty) => {
        const _: () = {
            use std::collections::HashSet;

            use async_trait::async_trait;
            use liveops_core::ports::{Board, Health, ScoreDelta, ScoreTotal};
            use liveops_core::stores::{
                FairnessCommit, FairnessStore, Flag, InventoryItem, ListedReward, PendingReward,
                PlayerProgress, ProcessedEvents, ProgressCommit, ProgressStore, PurgeRound,
                RewardClaim, ScoreStore, Snapshot, SnapshotStore,
            };
            use liveops_core::{EventType, PortResult, Receipt, Welford, Window};
            use uuid::Uuid;

            use $crate::SqlRepository;

            type Repo = SqlRepository<$db>;

            #[async_trait]
            impl $crate::Repository for Repo {
                async fn migrate(&self) -> PortResult<()> {
                    Repo::migrate(self).await
                }
                fn replica_watch(&self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
                    Repo::replica_watch(self)
                }
                fn pool_watch(&self) -> futures_util::future::BoxFuture<'static, ()> {
                    Repo::pool_watch(self)
                }
                async fn purge_before(&self, cutoff_ms: i64, round: PurgeRound) -> PortResult<u64> {
                    Repo::purge_before(self, cutoff_ms, round).await
                }
                async fn reseal(&self, most: u64) -> PortResult<Vec<$crate::Resealed>> {
                    Repo::reseal(self, most).await
                }
            }

            #[async_trait]
            impl Health for Repo {
                async fn healthcheck(&self) -> PortResult<()> {
                    Repo::healthcheck(self).await
                }
                fn note(&self) -> Option<String> {
                    Repo::replica_note(self)
                }
            }

            $crate::stores::delegate! {
                impl ProcessedEvents {
                    fn processed(consumer: &str, ids: &[Uuid]) -> HashSet<Uuid>;
                }

                impl ProgressStore {
                    fn progress(player_id: &str, season: i64) -> PlayerProgress;
                    fn progress_latest(player_id: &str, season: i64) -> PlayerProgress;
                    fn pending_reward(player_id: &str, reward_id: &str) -> Option<PendingReward>;
                    fn pending_rewards(
                        player_id: &str, after: Option<i64>, limit: u32,
                    ) -> Vec<ListedReward>;
                    fn inventory(
                        player_id: &str, after: Option<&str>, limit: u32,
                    ) -> Vec<InventoryItem>;
                    fn xp_of(players: &[(String, i64)]) -> Vec<u64>;
                    fn commit_progress(consumer: &str, commit: &ProgressCommit) -> bool;
                    fn claim_reward(
                        player_id: &str, reward_id: &str, receipt: Receipt,
                    ) -> RewardClaim;
                }

                impl ScoreStore {
                    fn commit_scores(
                        consumer: &str, event_ids: &[Uuid], deltas: &[ScoreDelta],
                    ) -> Vec<ScoreTotal>;
                    fn board_size(board: &Board) -> u64;
                    fn board_scores(board: &Board) -> Vec<(String, i64)>;
                    fn top_scores(board: &Board, limit: u64) -> Vec<(String, i64)>;
                    fn scores_of(board: &Board, players: &[String]) -> Vec<(String, i64)>;
                    fn boards() -> Vec<Board>;
                    fn purge_scores(window: Window, before: &str, cutoff_ms: i64, round: PurgeRound) -> u64;
                }

                impl SnapshotStore {
                    fn save_snapshot(snapshot: &Snapshot) -> ();
                    fn snapshot(board: &Board) -> Option<Snapshot>;
                    fn snapshot_periods(window: Window, limit: u32) -> Vec<String>;
                }

                impl FairnessStore {
                    fn fairness_stats() -> Vec<(EventType, Welford)>;
                    fn verdicts(ids: &[Uuid]) -> Vec<(Uuid, bool, i64)>;
                    fn commit_fairness(commit: &FairnessCommit) -> bool;
                    fn flags(player_id: Option<&str>, limit: u32) -> Vec<Flag>;
                    fn purge_flags(cutoff_ms: i64, round: PurgeRound) -> u64;
                }
            }
        };
    };
}

pub(crate) use impl_stores;

/// Implements each listed store trait for `Repo` (the backend's `SqlRepository`, under that name
/// where this is used), every method delegating to the repository's async inherent method of
/// the same name: `impl PlayerXp { fn season_xp(player_id: &str, season: i64) -> u64; }`.
macro_rules! delegate {
    ($(impl $store:ident {
        $(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;)*
    })*) => {$(
        #[async_trait::async_trait]
        impl $store for Repo {
            $(async fn $name(&self, $($arg: $ty),*) -> liveops_core::PortResult<$ret> {
                Repo::$name(self, $($arg),*).await
            })*
        }
    )*};
}

pub(crate) use delegate;
