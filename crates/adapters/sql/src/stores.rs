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
            use liveops_core::ports::{Board, Health, ScoreDelta};
            use liveops_core::stores::{
                FairnessCommit, FairnessStore, Flag, PlayerProgress, ProcessedEvents,
                ProgressCommit, ProgressStore, RewardClaim, ScoreStore, Snapshot,
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

            #[async_trait]
            impl ProcessedEvents for Repo {
                async fn processed(
                    &self,
                    consumer: &str,
                    ids: &[Uuid],
                ) -> PortResult<HashSet<Uuid>> {
                    Repo::processed(self, consumer, ids).await
                }
            }

            #[async_trait]
            impl ProgressStore for Repo {
                async fn progress(
                    &self,
                    player_id: &str,
                    season: i64,
                ) -> PortResult<PlayerProgress> {
                    Repo::progress(self, player_id, season).await
                }
                async fn progress_latest(
                    &self,
                    player_id: &str,
                    season: i64,
                ) -> PortResult<PlayerProgress> {
                    Repo::progress_latest(self, player_id, season).await
                }
                async fn xp_of(&self, players: &[(String, i64)]) -> PortResult<Vec<u64>> {
                    Repo::xp_of(self, players).await
                }
                async fn commit_progress(
                    &self,
                    consumer: &str,
                    commit: &ProgressCommit,
                ) -> PortResult<()> {
                    Repo::commit_progress(self, consumer, commit).await
                }
                async fn claim_reward(
                    &self,
                    player_id: &str,
                    reward_id: &str,
                    receipt: Receipt,
                ) -> PortResult<RewardClaim> {
                    Repo::claim_reward(self, player_id, reward_id, receipt).await
                }
            }

            #[async_trait]
            impl ScoreStore for Repo {
                async fn commit_scores(
                    &self,
                    consumer: &str,
                    event_ids: &[Uuid],
                    deltas: &[ScoreDelta],
                ) -> PortResult<()> {
                    Repo::commit_scores(self, consumer, event_ids, deltas).await
                }
                async fn board_scores(&self, board: &Board) -> PortResult<Vec<(String, i64)>> {
                    Repo::board_scores(self, board).await
                }
                async fn boards(&self) -> PortResult<Vec<Board>> {
                    Repo::boards(self).await
                }
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

            #[async_trait]
            impl FairnessStore for Repo {
                async fn fairness_stats(&self) -> PortResult<Vec<(EventType, Welford)>> {
                    Repo::fairness_stats(self).await
                }
                async fn verdicts(&self, ids: &[Uuid]) -> PortResult<Vec<(Uuid, bool)>> {
                    Repo::verdicts(self, ids).await
                }
                async fn commit_fairness(&self, commit: &FairnessCommit) -> PortResult<()> {
                    Repo::commit_fairness(self, commit).await
                }
                async fn flags(
                    &self,
                    player_id: Option<&str>,
                    limit: u32,
                ) -> PortResult<Vec<Flag>> {
                    Repo::flags(self, player_id, limit).await
                }
            }
        };
    };
}

pub(crate) use impl_stores;
