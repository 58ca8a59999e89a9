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
                PlayerProgress, ProcessedEvents, ProgressCommit, ProgressStore, RewardClaim,
                ScoreStore, Snapshot, SnapshotStore,
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
                async fn purge_before(&self, cutoff_ms: i64) -> PortResult<u64> {
                    Repo::purge_before(self, cutoff_ms).await
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
            }

            #[async_trait]
            impl ScoreStore for Repo {
                async fn commit_scores(
                    &self,
                    consumer: &str,
                    event_ids: &[Uuid],
                    deltas: &[ScoreDelta],
                ) -> PortResult<Vec<ScoreTotal>> {
                    Repo::commit_scores(self, consumer, event_ids, deltas).await
                }
                async fn board_size(&self, board: &Board) -> PortResult<u64> {
                    Repo::board_size(self, board).await
                }
                async fn board_scores(&self, board: &Board) -> PortResult<Vec<(String, i64)>> {
                    Repo::board_scores(self, board).await
                }
                async fn top_scores(
                    &self,
                    board: &Board,
                    limit: u64,
                ) -> PortResult<Vec<(String, i64)>> {
                    Repo::top_scores(self, board, limit).await
                }
                async fn scores_of(
                    &self,
                    board: &Board,
                    players: &[String],
                ) -> PortResult<Vec<(String, i64)>> {
                    Repo::scores_of(self, board, players).await
                }
                async fn boards(&self) -> PortResult<Vec<Board>> {
                    Repo::boards(self).await
                }
                async fn purge_scores(&self, window: Window, before: &str) -> PortResult<u64> {
                    Repo::purge_scores(self, window, before).await
                }
            }

            #[async_trait]
            impl SnapshotStore for Repo {
                async fn save_snapshot(&self, snapshot: &Snapshot) -> PortResult<()> {
                    Repo::save_snapshot(self, snapshot).await
                }
                async fn snapshot(&self, board: &Board) -> PortResult<Option<Snapshot>> {
                    Repo::snapshot(self, board).await
                }
                async fn snapshot_periods(
                    &self,
                    window: Window,
                    limit: u32,
                ) -> PortResult<Vec<String>> {
                    Repo::snapshot_periods(self, window, limit).await
                }
            }

            $crate::stores::delegate! {
                impl FairnessStore {
                    fn fairness_stats() -> Vec<(EventType, Welford)>;
                    fn verdicts(ids: &[Uuid]) -> Vec<(Uuid, bool, i64)>;
                    fn commit_fairness(commit: &FairnessCommit) -> bool;
                    fn flags(player_id: Option<&str>, limit: u32) -> Vec<Flag>;
                    fn purge_flags(cutoff_ms: i64) -> u64;
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
