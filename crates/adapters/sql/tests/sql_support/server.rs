//! The tests of a server backend (PostgreSQL, MySQL), written once over [`Server`]: what differs
//! between the two is the URL variable, how a migration lock is held from another session, how
//! tables are counted and how a database in use is dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use liveops_core::ports::PortError;
use liveops_core::stores::{FairnessStore, PurgeRound};
use liveops_sql::{Purge, Repository};
use liveops_testkit::conformance;
use liveops_testkit::conformance::live::LiveStores;

use super::{
    address, server_url, suffix, walking, with_address, with_database, Proxy, ReleaseBefore,
    Upgrade,
};

/// What lets a held migration lock go.
pub type Release = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A purge's walk, as `SqlRepository::purge_alone` runs it.
pub type Walk<'a> = BoxFuture<'a, Result<(), PortError>>;

/// What `SqlRepository::purge_alone` answers: `None` when another process was walking.
pub type Walked<'a> = BoxFuture<'a, Result<Option<()>, PortError>>;

/// A server backend, as its tests see it.
pub trait Server {
    /// Its sqlx driver.
    type DB: sqlx::Database;
    /// Its repository.
    type Repo: Repository + LiveStores + 'static;
    /// The variable holding its test server's URL.
    const VAR: &'static str;
    /// Its migrations' folder, under the crate.
    const MIGRATIONS: &'static str;
    /// The versions of its migrations (a version is the same change on every backend that has it).
    const VERSIONS: &'static [i64];
    /// The URL schemes that pick it.
    const SCHEMES: &'static [&'static str];
    /// The other server backend's scheme, when this build has it (it must not speak to this one).
    const FOREIGN: Option<&'static str>;
    /// Counts the tables of the current database, the migration history aside.
    const TABLES: &'static str;
    /// Opens the repository at `url` (no migration).
    fn open(url: String) -> BoxFuture<'static, Result<Self::Repo, PortError>>;
    /// The repository's pool.
    fn pool(repo: &Self::Repo) -> &sqlx::Pool<Self::DB>;
    /// Takes the migration lock of the database at `url` in a session of its own.
    fn hold_migrations(url: String) -> BoxFuture<'static, Release>;
    /// `SqlRepository::purge_alone` of `repo`.
    fn purge_alone<'a>(repo: &'a Self::Repo, purge: Purge<'a>, walk: Walk<'a>) -> Walked<'a>;
    /// The statement dropping database `db` though sessions may still be open on it.
    fn drop_database(db: &str) -> String;
    /// What asks for a statement's plan, put before it.
    const EXPLAIN: &'static str;
    /// What updates the statistics the planner reads of the tables named after it.
    const ANALYZE: &'static str;
    /// The name under which plans show the inventory's key (player_id, item).
    const INVENTORY_KEY: &'static str;
    /// Whether `plan` stops at its statement's `LIMIT`: it reads rows in the order asked (along
    /// `index` where the planner says which) and neither sorts nor gathers all of them first.
    fn stops_at_its_limit(plan: &str, index: &str) -> bool;
    /// Whether `plan`, an inbox page's, reads each side of the page (the player's messages,
    /// everyone's) down an index in the listing's order, to stop at the page's size, and sorts
    /// only what the two sides read.
    fn reads_each_inbox_side_in_order(plan: &str) -> bool;
}

/// The tests of the server backend `$server` (a [`Server`]): one per check of this module.
#[allow(unused_macros)] // the SQLite tests include this module too and run none of these
macro_rules! server_tests {
    ($server:ty) => {
        server::server_tests!(@each $server:
            repository_passes_the_repository_suite => passes_the_repository_suite,
            repository_passes_the_live_event_suite => passes_the_live_event_suite,
            migrations_of_a_fresh_database_apply_once_and_wait_for_each_other
                => migrations_apply_once_and_wait_for_each_other,
            migration_0007_carries_keyed_sends_over
                => carried_over(sql_support::Upgrade::KeyedSends),
            migration_0010_keeps_the_inbox_order => carried_over(sql_support::Upgrade::InboxOrder),
            connect_repository_picks_it_by_scheme => picks_it_by_scheme,
            ids_are_case_sensitive_and_large_snapshots_fit
                => ids_are_case_sensitive_and_large_snapshots_fit,
            opening_a_server_that_is_not_there_fails_fast => opening_a_missing_server_fails_fast,
            an_outage_answers_unavailable_quickly_and_the_pool_recovers => outage_then_recovery,
            a_players_counts_and_pages_stop_at_their_limits => reads_stop_at_their_limits,
            an_inbox_page_reads_each_side_down_to_its_size => inbox_pages_read_each_side_in_order,
            a_database_a_newer_release_migrated_still_opens => newer_release_migrated,
            a_table_is_purged_by_one_process_at_a_time => purges_walk_one_at_a_time,
            a_table_is_walked_once_a_period_between_processes => purges_walk_once_a_period,
            secrets_are_sealed_at_rest_and_sealed_again => secrets_are_sealed_at_rest,
        );
    };
    (@each $server:ty: $($test:ident => $check:ident $(($arg:expr))?,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            server::$check::<$server>($($arg)?).await;
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use server_tests;

/// A new, empty database on the test server, dropped by [`FreshDb::drop`].
pub struct FreshDb<S: Server> {
    /// A pool on the server, not on this database.
    admin: sqlx::Pool<S::DB>,
    /// Its name.
    name: String,
    /// Its URL.
    pub url: String,
}

impl<S: Server> FreshDb<S>
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
{
    /// Creates a database named after `tag` and this run.
    pub async fn new(tag: &str) -> Self {
        let url = server_url(S::VAR);
        let admin = sqlx::Pool::<S::DB>::connect(&url).await.unwrap();
        let name = format!("liveops_{tag}_{}", suffix());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let url = with_database(&url, &name);
        Self { admin, name, url }
    }

    /// Closes `pool`, the last one open on the database, and drops the database.
    pub async fn drop(self, pool: &sqlx::Pool<S::DB>) {
        pool.close().await;
        sqlx::query(&S::drop_database(&self.name))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}

async fn migrated<S: Server>(url: &str) -> S::Repo {
    let repo = S::open(url.to_owned()).await.unwrap();
    repo.migrate().await.unwrap();
    repo
}

/// The repository suite passes, twice: its shared checks on the test server's database, which
/// every run shares (other processes' runs among them, at the same time); those that need a
/// database to themselves on a fresh one.
pub async fn passes_the_repository_suite<S: Server>()
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
{
    let repo = migrated::<S>(&server_url(S::VAR)).await;
    conformance::stores::run_shared(&repo).await;
    conformance::stores::run_shared(&repo).await;
    let db = FreshDb::<S>::new("stores_alone").await;
    let alone = migrated::<S>(&db.url).await;
    conformance::stores::run_alone(&alone).await;
    conformance::stores::run_alone(&alone).await;
    db.drop(S::pool(&alone)).await;
}

/// The live-event suite passes, twice: its shared checks on the test server's database, which
/// every run shares (other processes' runs among them, at the same time); those that need a
/// database to themselves on a fresh one.
pub async fn passes_the_live_event_suite<S: Server>()
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
{
    let repo = Arc::new(migrated::<S>(&server_url(S::VAR)).await);
    conformance::live::run_shared(repo.clone()).await;
    conformance::live::run_shared(repo).await;
    let db = FreshDb::<S>::new("live_alone").await;
    let alone = Arc::new(migrated::<S>(&db.url).await);
    conformance::live::run_alone(alone.clone()).await;
    conformance::live::run_alone(alone.clone()).await;
    db.drop(S::pool(&alone)).await;
}

/// A database a newer release migrated (a version this one does not know is applied) still
/// migrates and serves: during a rolling update the old release's pods start after the first new
/// one migrated.
pub async fn newer_release_migrated<S: Server>()
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
{
    let db = FreshDb::<S>::new("newer").await;
    let repo = migrated::<S>(&db.url).await;
    sqlx::query(super::A_NEWER_MIGRATION)
        .execute(S::pool(&repo))
        .await
        .unwrap();
    let again = S::open(db.url.clone()).await.unwrap();
    again.migrate().await.unwrap();
    conformance::stores::healthcheck(&again).await;
    S::pool(&repo).close().await;
    db.drop(S::pool(&again)).await;
}

/// Migrations of a fresh database apply once, however many migrate at once, and a migration
/// waits for another migrator holding the lock.
pub async fn migrations_apply_once_and_wait_for_each_other<S: Server>()
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
    (i64, bool): for<'r> sqlx::FromRow<'r, <S::DB as sqlx::Database>::Row>,
    (i64,): for<'r> sqlx::FromRow<'r, <S::DB as sqlx::Database>::Row>,
{
    let db = FreshDb::<S>::new("migrate").await;

    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let open = S::open(db.url.clone());
            tokio::spawn(async move {
                let repo = open.await?;
                repo.migrate().await?;
                Ok::<_, PortError>(repo)
            })
        })
        .collect();
    let mut repos = Vec::new();
    for t in tasks {
        repos.push(t.await.unwrap().unwrap());
    }
    // And again, now that everything is applied.
    repos[0].migrate().await.unwrap();

    let pool = S::pool(&repos[0]);
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap();
    let all: Vec<(i64, bool)> = S::VERSIONS.iter().map(|v| (*v, true)).collect();
    assert_eq!(applied, all);
    let (tables,): (i64,) = sqlx::query_as(S::TABLES).fetch_one(pool).await.unwrap();
    assert_eq!(
        tables,
        9 + 14 + 2 + 1 + 1 + 1 + 1,
        "0001's tables, 0003's, 0006's, 0007's, 0010's, 0018's, 0019's and 0020's"
    );
    conformance::stores::healthcheck(&repos[1]).await;
    super::purge_removes_only_rows_past_the_cutoff(&repos[1]).await;

    // Another migrator holding the lock for 3 s (longer than the 2 s row-lock bound of
    // ordinary sessions): migrating waits for it, then succeeds.
    let release = S::hold_migrations(db.url.clone()).await;
    let started = Instant::now();
    let (waited, _) = tokio::join!(repos[2].migrate(), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        release().await;
    });
    waited.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(2_900),
        "{:?}",
        started.elapsed()
    );

    for r in &repos[1..] {
        S::pool(r).close().await;
    }
    db.drop(S::pool(&repos[0])).await;
}

/// A retention purge walks in one process of a deployment at a time: while one process walks a
/// table, another's purge of it skips the run (its rows stay, none counted), and other tables'
/// purges go on; once the walk ends (done, failed midway or given up), a purge walks again.
pub async fn purges_walk_one_at_a_time<S: Server>()
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
{
    let db = FreshDb::<S>::new("purge_lock").await;
    // Two processes on one database.
    let (a, b) = (migrated::<S>(&db.url).await, migrated::<S>(&db.url).await);
    let rows = super::PurgeRows::new(&a, &b, "purge_lock");
    let cutoff = || liveops_core::now_ms() + 60_000;

    // A's walk under way: B's purge of the table skips, and A's own from another connection.
    let ids = rows.written().await;
    a.commit_fairness(&rows.flagged(1)).await.unwrap();
    let walked = S::purge_alone(
        &a,
        Purge::of("processed_events", walking()),
        Box::pin(async {
            assert_eq!(b.purge_before(cutoff(), walking()).await.unwrap(), 0);
            assert_eq!(a.purge_before(cutoff(), walking()).await.unwrap(), 0);
            assert_eq!(rows.left(ids.clone()).await, 3, "skipped: every row stays");
            // Another table's purge is not held up.
            assert_eq!(b.purge_flags(cutoff(), walking()).await.unwrap(), 1);
            Ok(())
        }),
    )
    .await;
    assert_eq!(walked.unwrap(), Some(()));
    // Two purges at once: one walks, the other skips.
    let (first, second) = tokio::join!(
        S::purge_alone(
            &a,
            Purge::of("scores", walking()),
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(())
            })
        ),
        S::purge_alone(
            &b,
            Purge::of("scores", walking()),
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(())
            })
        ),
    );
    let mut outcomes = [first.unwrap(), second.unwrap()];
    outcomes.sort();
    assert_eq!(outcomes, [None, Some(())]);
    // The walk over, the lock is free: B walks, and so does A after it.
    assert_eq!(b.purge_before(cutoff(), walking()).await.unwrap(), 3);
    assert_eq!(rows.left(ids).await, 0);
    let ids = rows.written().await;
    assert_eq!(a.purge_before(cutoff(), walking()).await.unwrap(), 3);
    assert_eq!(rows.left(ids).await, 0);

    // A walk failing midway lets the lock go.
    let ids = rows.written().await;
    let failed = S::purge_alone(
        &a,
        Purge::of("processed_events", walking()),
        Box::pin(async { Err(PortError::Unavailable("midway".into())) }),
    )
    .await;
    assert!(
        matches!(failed, Err(PortError::Unavailable(_))),
        "{failed:?}"
    );
    assert_eq!(b.purge_before(cutoff(), walking()).await.unwrap(), 3);
    assert_eq!(rows.left(ids).await, 0);

    // So does a walk given up (its task stopped): its connection closes.
    let ids = rows.written().await;
    let given_up = tokio::time::timeout(
        Duration::from_millis(500),
        S::purge_alone(
            &a,
            Purge::of("processed_events", walking()),
            Box::pin(std::future::pending()),
        ),
    )
    .await;
    assert!(given_up.is_err(), "the walk never ends");
    let purged = super::eventually(Duration::from_secs(10), || async {
        b.purge_before(cutoff(), walking()).await.unwrap() == 3
    })
    .await;
    assert!(purged, "the lock of a walk given up is let go");
    assert_eq!(rows.left(ids).await, 0);

    S::pool(&b).close().await;
    db.drop(S::pool(&a)).await;
}

/// Secrets at rest ([`super::sealed::secrets_are_sealed_at_rest`]) on a fresh database.
pub async fn secrets_are_sealed_at_rest<S: Server>()
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
    usize: sqlx::ColumnIndex<<S::DB as sqlx::Database>::Row>,
    for<'q> liveops_sql::dialect::Text: sqlx::Decode<'q, S::DB> + sqlx::Type<S::DB>,
{
    let db = FreshDb::<S>::new("sealed").await;
    let pool = S::pool(&migrated::<S>(&db.url).await).clone();
    super::sealed::secrets_are_sealed_at_rest(&db.url, &pool).await;
    db.drop(&pool).await;
}

/// A table is walked once a period between the processes on the database
/// ([`super::purges_walk_once_a_period`]), and a walk that failed or was given up does not count:
/// the next round walks.
pub async fn purges_walk_once_a_period<S: Server>()
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
{
    let db = FreshDb::<S>::new("purge_period").await;
    let (a, b) = (migrated::<S>(&db.url).await, migrated::<S>(&db.url).await);
    super::purges_walk_once_a_period(&a, &b).await;

    let round = PurgeRound {
        at_ms: liveops_core::now_ms(),
        every: Duration::from_secs(3600),
    };
    let purge = Purge::of("campaign_events", round);
    let failed = S::purge_alone(
        &a,
        purge,
        Box::pin(async { Err(PortError::Unavailable("midway".into())) }),
    )
    .await;
    assert!(
        matches!(failed, Err(PortError::Unavailable(_))),
        "{failed:?}"
    );
    let given_up = tokio::time::timeout(
        Duration::from_millis(500),
        S::purge_alone(&a, purge, Box::pin(std::future::pending())),
    )
    .await;
    assert!(given_up.is_err(), "the walk never ends");
    let walked = super::eventually(Duration::from_secs(10), || async {
        S::purge_alone(&b, purge, Box::pin(async { Ok(()) }))
            .await
            .unwrap()
            .is_some()
    })
    .await;
    assert!(walked, "walked after a failed walk and one given up");
    let again = S::purge_alone(&b, purge, Box::pin(async { Ok(()) })).await;
    assert_eq!(again.unwrap(), None, "and that walk counts");

    S::pool(&b).close().await;
    db.drop(S::pool(&a)).await;
}

/// `upgrade`'s check on a fresh database, dropped after.
pub async fn carried_over<S: Server>(upgrade: Upgrade)
where
    <S::DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
{
    let db = FreshDb::<S>::new("carry").await;
    let repo = S::open(db.url.clone()).await.unwrap();
    let pool = S::pool(&repo);
    let before = ReleaseBefore {
        pool,
        dir: S::MIGRATIONS,
    };
    before.carries_over(upgrade, repo.migrate(), &repo).await;
    db.drop(pool).await;
}

/// `connect_repository` picks this backend by its schemes, and the other server backend does not
/// speak to it.
pub async fn picks_it_by_scheme<S: Server>() {
    let url = server_url(S::VAR);
    let direct = migrated::<S>(&url).await;
    super::picks_backend_by_scheme(&url, S::SCHEMES, &direct, S::FOREIGN).await;
}

/// Ids compare case-sensitively and by bytes; a large snapshot round-trips.
pub async fn ids_are_case_sensitive_and_large_snapshots_fit<S: Server>() {
    let repo = migrated::<S>(&server_url(S::VAR)).await;
    super::ids_are_case_sensitive_and_sorted_by_bytes(&repo).await;
    super::large_snapshots_round_trip(&repo).await;
}

/// Opening a server that is not there fails within the connect bound.
pub async fn opening_a_missing_server_fails_fast<S: Server>() {
    super::opening_a_missing_server_fails_fast(&server_url(S::VAR), S::open).await;
}

/// Through a proxy that plays an outage: calls answer `Unavailable` quickly, and the pool
/// recovers when the server is back.
pub async fn outage_then_recovery<S: Server>() {
    let url = server_url(S::VAR);
    migrated::<S>(&url).await;
    let proxy = Proxy::start(&address(&url)).await;
    let repo = S::open(with_address(&url, &proxy.address)).await.unwrap();
    super::outage_then_recovery(&repo, &proxy).await;
}

/// The player whose rows outnumber the counts' limit in [`reads_stop_at_their_limits`].
const HOARDER: &str = "hoarder_plans";

/// A progress read's statements and the pages', for [`HOARDER`], each with the index it reads
/// along (`{key}`: the inventory's key).
const PLANNED: [(&str, &str); 6] = [
    (
        "SELECT item, quantity FROM inventory WHERE player_id = 'hoarder_plans' \
         ORDER BY item LIMIT 100",
        "{key}",
    ),
    (
        "SELECT item, quantity FROM inventory \
         WHERE player_id = 'hoarder_plans' AND item > 'item_05000' ORDER BY item LIMIT 101",
        "{key}",
    ),
    (
        "SELECT COUNT(*) FROM \
         (SELECT 1 FROM inventory WHERE player_id = 'hoarder_plans' LIMIT 10000) AS counted",
        "{key}",
    ),
    (
        "SELECT reward_id, item, source, adds_to_inventory FROM rewards \
         WHERE player_id = 'hoarder_plans' AND claimed = 0 ORDER BY id LIMIT 100",
        "rewards_pending",
    ),
    (
        "SELECT id, reward_id, item, source, adds_to_inventory FROM rewards \
         WHERE player_id = 'hoarder_plans' AND claimed = 0 AND id > 7 ORDER BY id LIMIT 101",
        "rewards_pending",
    ),
    (
        "SELECT COUNT(*) FROM (SELECT 1 FROM rewards \
         WHERE player_id = 'hoarder_plans' AND claimed = 0 LIMIT 10000) AS counted",
        "rewards_pending",
    ),
];

/// A player with more items and pending rewards than the counts' limit, among players with a few
/// each: the planner, with fresh statistics, reads each of their lists and counts so that it
/// stops at the statement's `LIMIT` ([`Server::stops_at_its_limit`]), never sorting or gathering
/// every row of the player first.
pub async fn reads_stop_at_their_limits<S: Server>()
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
    (String,): for<'r> sqlx::FromRow<'r, <S::DB as sqlx::Database>::Row>,
{
    use liveops_core::stores::{
        ItemGrant, PendingReward, ProgressCommit, ProgressStore, PROGRESS_COUNT_LIMIT,
    };
    let db = FreshDb::<S>::new("plans").await;
    let repo = migrated::<S>(&db.url).await;
    let hoard = usize::try_from(PROGRESS_COUNT_LIMIT).unwrap() + 2_000;
    let players = std::iter::repeat_n(HOARDER.to_owned(), hoard)
        .chain((0..40).flat_map(|p| std::iter::repeat_n(format!("player_{p}"), 50)));
    let mut commit = ProgressCommit {
        event_ids: vec![uuid::Uuid::now_v7()],
        ..Default::default()
    };
    for (i, player) in players.enumerate() {
        let item = format!("item_{i:05}");
        let reward = PendingReward {
            reward_id: format!("drop:{i}"),
            item: item.clone(),
            source: "raid_chest".into(),
            adds_to_inventory: false,
        };
        commit.rewards.push((player.clone(), reward));
        commit.items.push(ItemGrant {
            player_id: player,
            item,
            quantity: 1,
        });
    }
    assert!(repo.commit_progress("plans", &commit).await.unwrap());
    let pool = S::pool(&repo);
    let analyze = format!("{} inventory, rewards", S::ANALYZE);
    sqlx::raw_sql(&analyze).execute(pool).await.unwrap();
    for (sql, index) in PLANNED {
        let index = index.replace("{key}", S::INVENTORY_KEY);
        let rows: Vec<(String,)> = sqlx::query_as(&format!("{} {sql}", S::EXPLAIN))
            .fetch_all(pool)
            .await
            .unwrap();
        let plan: Vec<String> = rows.into_iter().map(|r| r.0).collect();
        let plan = plan.join("\n");
        assert!(S::stops_at_its_limit(&plan, &index), "{sql}:\n{plan}");
    }
    db.drop(pool).await;
}

/// An inbox page, among many more messages of other players, reads the player's messages and
/// everyone's each down its index in the listing's order ([`Server::reads_each_inbox_side_in_order`]),
/// whichever page it is; never every message of the two first.
pub async fn inbox_pages_read_each_side_in_order<S: Server>()
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
    (String,): for<'r> sqlx::FromRow<'r, <S::DB as sqlx::Database>::Row>,
{
    inbox_page_plans::<S>("inbox_plans", None).await;
}

/// An inbox page with thousands of expired messages to every player above the live ones (kept
/// for retention) still reads each side down its index in order, and passes the expired ones
/// over in the index, their rows never read (`passes_expired_over`, a backend's check).
pub async fn expired_broadcasts_in_the_index<S: Server>(passes_expired_over: fn(&str) -> bool)
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
    (String,): for<'r> sqlx::FromRow<'r, <S::DB as sqlx::Database>::Row>,
{
    inbox_page_plans::<S>("inbox_expired", Some(passes_expired_over)).await;
}

/// The plan of every inbox page over filled inboxes (and expired broadcasts, with
/// `passes_expired_over`, which each plan must then pass too) reads each side in order.
async fn inbox_page_plans<S: Server>(tag: &str, passes_expired_over: Option<fn(&str) -> bool>)
where
    for<'c> &'c mut <S::DB as sqlx::Database>::Connection: sqlx::Executor<'c, Database = S::DB>,
    for<'q> <S::DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, S::DB>,
    (String,): for<'r> sqlx::FromRow<'r, <S::DB as sqlx::Database>::Row>,
{
    let db = FreshDb::<S>::new(tag).await;
    let repo = migrated::<S>(&db.url).await;
    super::fill_inboxes(&repo).await;
    if passes_expired_over.is_some() {
        super::fill_expired_broadcasts(&repo).await;
    }
    let pool = S::pool(&repo);
    let analyze = format!("{} inbox_messages, inbox_claims", S::ANALYZE);
    sqlx::raw_sql(&analyze).execute(pool).await.unwrap();
    for sql in super::inbox_pages() {
        let explain = format!("{} {sql}", S::EXPLAIN);
        let rows: Vec<(String,)> = sqlx::query_as(&explain).fetch_all(pool).await.unwrap();
        let plan: Vec<String> = rows.into_iter().map(|r| r.0).collect();
        let plan = plan.join("\n");
        assert!(S::reads_each_inbox_side_in_order(&plan), "{sql}:\n{plan}");
        if let Some(passes) = passes_expired_over {
            assert!(passes(&plan), "{sql}:\n{plan}");
        }
    }
    db.drop(pool).await;
}

/// A [`Release`] that runs `f`.
pub fn release_with<F, Fut>(f: F) -> Release
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move || Box::pin(f()))
}
