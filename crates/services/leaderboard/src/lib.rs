//! The leaderboard service (ARCHITECTURE §3.4): daily, weekly and seasonal rankings from accepted
//! events, snapshots, and the hall of fame.
//!
//! Five tasks over the ports only: [`router`] serves `/leaderboard*`; [`run_consumer`] raises
//! the rank store to the repository's scores and then applies `events.accepted` exactly once per
//! event id (durable scores first, then the rank store raised to the totals they left);
//! [`run_snapshots`] archives boards on `SNAPSHOT_CRON` and `LB_SETTLE_SEC` after every
//! rollover; [`run_reconcile`] raises again what this replica raised lately (a rank store failed
//! over to a replica that missed it) and a live board the rank store holds fewer players of than
//! the repository; [`run_retention`] purges the scores of long-ended daily and weekly boards.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use liveops_core::ports::topics;
use liveops_core::stores::{ProcessedEvents, ScoreStore, SnapshotStore};
use liveops_core::{Bus, Calendar, RankStore, Window};
use liveops_http::{routes, service_routes, OpenApiRouter};
use liveops_module::{
    BuildError, ConfigError, Context, Definition, Group, ModuleArgs, Service, SharedArgs, Task,
};

mod consumer;
mod openapi;
mod recent;
mod retention;
mod routes;
mod scores;
mod snapshots;
mod top_cache;

pub use consumer::{run_consumer, run_reconcile};
pub use recent::Recent;
pub use retention::run_retention;
pub use routes::{HistoryView, LeaderboardView, PeriodsView, PlayerRankView};
pub use snapshots::{parse_cron, run_snapshots, LateBoards};
pub use top_cache::TopCache;

/// The consumer group the leaderboard reads `events.accepted` with.
pub const GROUP: &str = "leaderboard";
/// What the leaderboard consumes: [`topics::ACCEPTED`] as [`GROUP`].
pub const READS: Group = Group::new(topics::ACCEPTED, GROUP);
/// The consumer name under which applied event ids are recorded in the repository.
pub const CONSUMER_ID: &str = "leaderboard";

/// The leaderboard's settings, as flags and environment variables (its windows, `LB_WINDOWS`,
/// are shared: rank campaigns read them too).
#[derive(Args, Clone, Debug)]
pub struct LeaderboardArgs {
    /// Default and snapshot size of a leaderboard.
    #[arg(long, env = "LB_TOPN", default_value_t = 100)]
    pub lb_topn: u64,
    /// Snapshot schedule (cron, UTC: 5 fields, or 6 with seconds first).
    #[arg(long, env = "SNAPSHOT_CRON", default_value = "*/5 * * * *")]
    pub snapshot_cron: String,
    /// Seconds between reconcile passes: each raises again the totals raised lately (a failover
    /// that lost them) and a live board the rank store holds fewer players of than the repository.
    #[arg(long, env = "LB_RECONCILE_SEC", default_value_t = 60)]
    pub lb_reconcile_sec: u64,
    /// Days an ended daily or weekly board's scores are kept (its snapshots stay for good).
    #[arg(long, env = "LB_SCORES_RETENTION_DAYS", default_value_t = 400)]
    pub lb_scores_retention_days: u64,
}

impl LeaderboardArgs {
    /// Checks the values and turns them into settings around the shared calendar, windows (with
    /// how long their rankings settle) and consumer.
    pub fn config(
        &self,
        calendar: Calendar,
        (windows, settle): (Vec<Window>, Duration),
        consumer_name: &str,
        batch_size: usize,
    ) -> Result<LeaderboardConfig, ConfigError> {
        let top_n = ConfigError::within("LB_TOPN", self.lb_topn, 1..=1000)?;
        let reconcile = ConfigError::within("LB_RECONCILE_SEC", self.lb_reconcile_sec, 1..=86_400)?;
        let retention = ConfigError::within(
            "LB_SCORES_RETENTION_DAYS",
            self.lb_scores_retention_days,
            35..=36_500,
        )?;
        parse_cron(&self.snapshot_cron).map_err(|e| ConfigError::new("SNAPSHOT_CRON", e))?;
        Ok(LeaderboardConfig {
            windows,
            top_n,
            calendar,
            snapshot_cron: self.snapshot_cron.clone(),
            reconcile_every: Duration::from_secs(reconcile),
            scores_retention: Duration::from_secs(retention * 86_400),
            settle,
            batch_size,
            consumer_name: consumer_name.to_owned(),
        })
    }
}

/// Settings of the leaderboard service.
#[derive(Clone, Debug)]
pub struct LeaderboardConfig {
    /// Windows ranked (`LB_WINDOWS`); the first is the default of every route.
    pub windows: Vec<Window>,
    /// Default `limit` and size of snapshots (`LB_TOPN`, default 100).
    pub top_n: u64,
    /// Maps receive time to periods.
    pub calendar: Calendar,
    /// When to snapshot the current boards (`SNAPSHOT_CRON`, cron of 5 fields or 6 with seconds,
    /// default `*/5 * * * *`).
    pub snapshot_cron: String,
    /// How often the live boards are checked against the repository (`LB_RECONCILE_SEC`).
    pub reconcile_every: Duration,
    /// How long a daily or weekly board's scores outlive its period (`LB_SCORES_RETENTION_DAYS`).
    pub scores_retention: Duration,
    /// How long after a period ends its final snapshot waits for events received before the
    /// end and still on their way (`LB_SETTLE_SEC`).
    pub settle: Duration,
    /// Most events taken from the bus at once.
    pub batch_size: usize,
    /// This replica's consumer name within [`GROUP`].
    pub consumer_name: String,
}

/// What the handlers, the consumer and the snapshotter share.
#[derive(Clone)]
pub struct LeaderboardState {
    /// Settings.
    pub config: Arc<LeaderboardConfig>,
    /// The event bus.
    pub bus: Arc<dyn Bus>,
    /// Live boards (current and previous period of each window).
    pub ranks: Arc<dyn RankStore>,
    /// Durable scores.
    pub store: Arc<dyn ScoreStore>,
    /// Archived snapshots (the hall of fame).
    pub snapshots: Arc<dyn SnapshotStore>,
    /// Event ids already applied.
    pub processed: Arc<dyn ProcessedEvents>,
    /// Set once the live boards are rebuilt from the repository; until then reads answer 503
    /// and the process is not ready, so nobody is shown an empty board after a restart.
    pub loaded: Arc<AtomicBool>,
    /// Serialized top-N answers of live boards, dropped whenever this process changes one.
    pub top_cache: Arc<TopCache>,
    /// The totals raised lately, raised again by the reconcile (a failover that lost them).
    pub recent: Arc<Recent>,
    /// Ended boards with scores committed after their final snapshot was due.
    pub late: Arc<LateBoards>,
}

impl LeaderboardState {
    /// A leaderboard over `repo` (scores, snapshots and processed ids), not loaded yet.
    pub fn new<R>(
        config: LeaderboardConfig,
        bus: Arc<dyn Bus>,
        ranks: Arc<dyn RankStore>,
        repo: Arc<R>,
    ) -> Self
    where
        R: ScoreStore + SnapshotStore + ProcessedEvents + 'static,
    {
        Self {
            config: Arc::new(config),
            bus,
            ranks,
            store: repo.clone(),
            snapshots: repo.clone(),
            processed: repo,
            loaded: Arc::default(),
            top_cache: Arc::default(),
            recent: Arc::default(),
            late: Arc::default(),
        }
    }
}

liveops_module::from_context!(LeaderboardState(
    config: Arc<LeaderboardConfig>,
    loaded: Arc<AtomicBool>,
    top_cache: Arc<TopCache>,
    recent: Arc<Recent>,
    late: Arc<LateBoards>,
) { bus, ranks, store, snapshots, processed });

/// The leaderboard routes with their OpenAPI operations.
fn api() -> OpenApiRouter<LeaderboardState> {
    service_routes(
        "leaderboard",
        "Rankings per window, snapshots and hall of fame",
    )
    .routes(routes!(routes::get_leaderboard))
    .routes(routes!(routes::get_player_rank))
    .routes(routes!(routes::get_history))
    .routes(routes!(routes::get_history_periods))
}

/// The leaderboard routes, ready to be merged or served.
pub fn router(state: LeaderboardState) -> Router {
    api().split_for_parts().0.with_state(state)
}

/// The leaderboard's row in the module table: `--target leaderboard`, port 8082.
pub static MODULE: Definition<LeaderboardArgs> =
    Definition::new("leaderboard", 8082, &[READS], || api().into_openapi());

impl ModuleArgs for LeaderboardArgs {
    fn check(&self) -> Result<(), ConfigError> {
        self.config(
            Calendar::default(),
            (Vec::new(), Duration::ZERO),
            "check",
            1,
        )
        .map(drop)
    }

    fn openapi(
        &self,
        doc: utoipa::openapi::OpenApi,
        shared: &SharedArgs,
    ) -> utoipa::openapi::OpenApi {
        openapi::for_windows(doc, &shared.windows().unwrap_or_default())
    }

    async fn build(self, ctx: &Context) -> Result<Service, BuildError> {
        let shared = &ctx.shared;
        let config = self.config(
            shared.calendar.clone(),
            (shared.windows.clone(), shared.settle),
            &shared.consumer_name,
            shared.batch_size,
        )?;
        let loaded = Arc::<AtomicBool>::default();
        let state = LeaderboardState::from_context(
            ctx,
            Arc::new(config),
            loaded.clone(),
            Arc::default(),
            Arc::default(),
            Arc::default(),
        )
        .await?;
        let consumer = Task::over("leaderboard consumer", state.clone(), run_consumer);
        let snapshots = Task::over("leaderboard snapshots", state.clone(), run_snapshots);
        let reconcile = Task::over("leaderboard reconcile", state.clone(), run_reconcile);
        let retention = Task::over("leaderboard retention", state.clone(), run_retention);
        let mut service = Service::routes(router(state))
            .with_task(consumer)
            .with_task(snapshots)
            .with_task(reconcile)
            .with_task(retention);
        service.readiness = Some(Arc::new(move || {
            (!loaded.load(Ordering::Acquire)).then(|| "leaderboard: rebuilding boards".into())
        }));
        Ok(service)
    }
}
