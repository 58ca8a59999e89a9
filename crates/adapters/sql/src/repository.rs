//! [`SqlRepository`]: the durable [`Repository`](crate::Repository) on SQL, written once for
//! every backend: SQLite (the embedded default), PostgreSQL and MySQL/MariaDB.
//!
//! The statements are shared; what a backend spells its own way (upserts, row locks, how a
//! transaction starts, placeholders) comes from its [`Dialect`]. Every batch write is one
//! transaction and every `IN (..)` list or `VALUES` list is chunked to stay under the backend's
//! bound-parameter limit. Batches are summed per key before writing, so no statement touches a
//! row twice (PostgreSQL refuses that in an upsert) and rows are locked in key order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use liveops_core::ports::{Board, RankEntry, ScoreDelta, ScoreTotal};
use liveops_core::sealing::SealerCell;
use liveops_core::stores::{
    FairnessCommit, Flag, InventoryItem, ListedReward, PendingReward, PlayerProgress,
    ProgressCommit, PurgeRound, PurgeWalk, RewardClaim, Snapshot, PROGRESS_COUNT_LIMIT,
    PROGRESS_INVENTORY_LIMIT, PROGRESS_PENDING_LIMIT,
};
use liveops_core::{EventType, PortError, PortResult, Receipt, Welford, Window};
use sqlx::migrate::Migrate;
use sqlx::{
    ColumnIndex, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Transaction, Type,
};
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use super::dialect::{db_error, to_i64, to_u64, Dialect, SessionLock, Text};
use super::replica::{MaybeReplica, Replica};
use super::statement::{Statement, Tuple};

/// Runs `$call` (an expression using the pool named `$pool`) on the replica while it is usable,
/// and on the primary otherwise or when the replica fails it (it is then set aside until the
/// probe finds it usable again).
macro_rules! on_reader {
    ($self:ident, |$pool:ident| $call:expr) => {{
        if let Some(r) = $self.replica.as_ref().filter(|r| r.usable()) {
            let $pool = &r.pool;
            match $call {
                Ok(v) => return Ok(v),
                Err(PortError::Unavailable(e)) => r.failed(&e),
                Err(e) => return Err(e),
            }
        }
        let $pool = &$self.pool;
        $call
    }};
}

/// How many inventory lines a player has, counted up to the limit given as the second parameter:
/// the subquery stops there, so at most that many entries of the key (player_id, item) are read.
const COUNT_INVENTORY: &str =
    "SELECT COUNT(*) FROM (SELECT 1 FROM inventory WHERE player_id = ? LIMIT ?) AS counted";

/// How many pending rewards a player has, counted up to the limit given as the second parameter:
/// at most that many entries of `rewards_pending` (player_id, claimed, id) are read.
const COUNT_PENDING: &str = "SELECT COUNT(*) FROM \
     (SELECT 1 FROM rewards WHERE player_id = ? AND claimed = 0 LIMIT ?) AS counted";

/// A player's first inventory lines by item, at most the limit given as the second parameter
/// (along inventory's key (player_id, item)): the progress view's and the first page's read.
const FIRST_ITEMS: &str =
    "SELECT item, quantity FROM inventory WHERE player_id = ? ORDER BY item LIMIT ?";

/// A player's oldest pending rewards, at most the limit given as the second parameter (along
/// `rewards_pending` (player_id, claimed, id)): the progress view's read.
const FIRST_PENDING: &str = "SELECT reward_id, item, source, adds_to_inventory FROM rewards \
     WHERE player_id = ? AND claimed = 0 ORDER BY id LIMIT ?";

/// An inventory line as selected: item, quantity.
type ItemRow = (Text, i64);

/// An inventory line as read.
fn item_of((item, quantity): ItemRow) -> InventoryItem {
    InventoryItem {
        item: item.0,
        quantity: to_u64(quantity),
    }
}

/// A pending reward as selected: reward id, item, source, whether it adds to the inventory.
type PendingRow = (Text, Text, Text, i16);

/// A pending reward as read.
fn reward_of((reward_id, item, source, adds): PendingRow) -> PendingReward {
    PendingReward {
        reward_id: reward_id.0,
        item: item.0,
        source: source.0,
        adds_to_inventory: adds != 0,
    }
}

/// A batch's XP for one `(player, season)`: the sum and the latest time earned.
type XpSum<'a> = ((&'a str, i64), (u64, i64));

/// `player_xp` rows `(player, season, xp)` by `(player, season)`.
fn xp_map(rows: Vec<(Text, i64, i64)>) -> HashMap<(String, i64), u64> {
    rows.into_iter()
        .map(|(p, s, xp)| ((p.0, s), to_u64(xp)))
        .collect()
}

/// Every store trait on a SQL database; `DB` picks the backend.
///
/// Open it through [`super::connect_repository`] by URL scheme, or with a backend's own
/// constructor (`SqliteRepository::connect`, `PgRepository::open`, `MySqlRepository::open`).
pub struct SqlRepository<DB: Dialect> {
    pool: Pool<DB>,
    /// Where this process's write transactions wait for their turn, if the dialect wants turns
    /// ([`Dialect::write_turn`]).
    writes: Arc<tokio::sync::Mutex<()>>,
    /// Claims and entries waiting for the write turn, to be written together
    /// ([`Dialect::GROUP_WRITES`]).
    pub(crate) groups: Arc<crate::live::WriteQueue>,
    /// Where reads that may be a little stale go while it is usable (`DB_READ_URL`).
    replica: MaybeReplica<DB>,
    /// Seals the secrets rows hold and opens them (`SECRETS_KEYS_FILE`; ADR 0032), as the keys
    /// stand when each call starts.
    pub(crate) sealer: Arc<SealerCell>,
}

impl<DB: Dialect> Clone for SqlRepository<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            writes: self.writes.clone(),
            groups: self.groups.clone(),
            replica: self.replica.clone(),
            sealer: self.sealer.clone(),
        }
    }
}

impl<DB: Dialect> std::fmt::Debug for SqlRepository<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlRepository")
            .field("backend", &DB::NAME)
            .field("connections", &self.pool.size())
            .finish()
    }
}

impl<DB: Dialect> SqlRepository<DB> {
    /// Wraps a pool the caller set up. Its acquire timeout bounds how long a call waits for a
    /// connection when the database is down. Call [`SqlRepository::migrate`] next.
    pub fn from_pool(pool: Pool<DB>) -> Self {
        Self {
            pool,
            writes: Arc::default(),
            groups: Arc::default(),
            replica: None,
            sealer: Arc::default(),
        }
    }

    /// Seals the secrets written from now on with the current key of the sealer `sealer` holds
    /// at each call, and opens those sealed with any of its keys; without it they are written
    /// in the clear.
    pub fn with_sealer(mut self, sealer: Arc<SealerCell>) -> Self {
        self.sealer = sealer;
        self
    }

    /// Sends the reads that may be a little stale (progress views, snapshots, flags) to
    /// `replica` while it is reachable and at most `max_lag` behind; see [`crate::replica`].
    /// Until [`SqlRepository::replica_watch`] runs, reads stay on the primary.
    pub fn with_replica(mut self, replica: Pool<DB>, max_lag: std::time::Duration) -> Self {
        self.replica = Some(Arc::new(Replica::new(replica, max_lag)));
        self
    }

    /// The replica's state when it does not serve reads (for `/readyz`); `None` without a
    /// replica or while it serves them.
    pub fn replica_note(&self) -> Option<String> {
        self.replica.as_ref().and_then(|r| r.note())
    }

    /// The connection pool.
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// The `pool` label of `pool`: `replica` when it is the read replica's, else `primary`.
    fn which(&self, pool: &Pool<DB>) -> &'static str {
        match &self.replica {
            Some(r) if std::ptr::eq(&r.pool, pool) => "replica",
            _ => "primary",
        }
    }
}

fn parse_uuid(s: &str) -> PortResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| PortError::Corrupt(format!("event id {s:?}: {e}")))
}

fn parse_window(s: &str) -> PortResult<Window> {
    Window::parse(s).ok_or_else(|| PortError::Corrupt(format!("unknown window {s:?}")))
}

fn parse_event_type(s: &str) -> PortResult<EventType> {
    EventType::parse(s).ok_or_else(|| PortError::Corrupt(format!("unknown event type {s:?}")))
}

/// Runs repository call `call` (the store method's name) on the primary: [`within_on`].
pub(crate) async fn within<DB: Dialect, T>(
    call: &'static str,
    work: impl Future<Output = PortResult<T>>,
) -> PortResult<T> {
    within_on::<DB, T>(call, "primary", work).await
}

/// Runs repository call `call` on pool `pool` (`primary` or `replica`) within the dialect's time
/// bound, and records it: its duration in `db_call_seconds` and, unless it succeeds,
/// `db_errors_total` by kind (`unavailable`, `timeout`, `corrupt`, or `cancelled` when the
/// caller gave up first), both labelled with the backend, the pool and the call.
pub(crate) async fn within_on<DB: Dialect, T>(
    call: &'static str,
    pool: &'static str,
    work: impl Future<Output = PortResult<T>>,
) -> PortResult<T> {
    within_limit::<DB, T>(call, pool, DB::CALL_TIMEOUT, work).await
}

/// The bound on a call whose work grows with a board or a campaign, where the dialect bounds
/// calls: a whole board (rebuilds, reloads, final snapshots), a campaign's entrants, its outcome
/// (one row holding every entrant) and the scores of its entrants. A million rows took 0.5 s in
/// PostgreSQL alone here, more decoded, so the 5 s of a request's call would fail a large board
/// every time, and leave a large campaign undecided or unsettled for good.
const BULK_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// [`within`] with [`BULK_READ_TIMEOUT`] instead of the dialect's bound (none stays none).
pub(crate) async fn within_bulk<DB: Dialect, T>(
    call: &'static str,
    work: impl Future<Output = PortResult<T>>,
) -> PortResult<T> {
    let limit = DB::CALL_TIMEOUT.map(|_| BULK_READ_TIMEOUT);
    within_limit::<DB, T>(call, "primary", limit, work).await
}

/// [`within_on`] with `limit` instead of the dialect's bound.
async fn within_limit<DB: Dialect, T>(
    call: &'static str,
    pool: &'static str,
    limit: Option<Duration>,
    work: impl Future<Output = PortResult<T>>,
) -> PortResult<T> {
    let mut observed = Observed {
        labels: [DB::NAME, pool, call],
        started: Instant::now(),
        kind: Some("cancelled"),
    };
    let result = match limit {
        None => work.await,
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => {
                observed.kind = Some("timeout");
                return Err(PortError::Unavailable(format!(
                    "{}: no answer within {limit:?}",
                    DB::NAME
                )));
            }
        },
    };
    observed.kind = match &result {
        Ok(_) => None,
        Err(PortError::Unavailable(_)) => Some("unavailable"),
        Err(error @ PortError::Corrupt(_)) => {
            tracing::error!(backend = DB::NAME, pool, call, %error, "stored data could not be read");
            Some("corrupt")
        }
    };
    result
}

/// One repository call being timed; recorded when dropped, so a call whose caller gave up
/// (a client gone, a probe timed out) is counted too.
struct Observed {
    /// Backend, pool and call.
    labels: [&'static str; 3],
    started: Instant,
    /// How it failed; `None` once it succeeded.
    kind: Option<&'static str>,
}

impl Drop for Observed {
    fn drop(&mut self) {
        let [backend, pool, call] = self.labels;
        metrics::histogram!("db_call_seconds", "backend" => backend, "pool" => pool, "call" => call)
            .record(self.started.elapsed().as_secs_f64());
        if let Some(kind) = self.kind {
            metrics::counter!("db_errors_total", "backend" => backend, "pool" => pool, "call" => call, "kind" => kind)
                .increment(1);
        }
    }
}

/// How often [`SqlRepository::pool_watch`] reports the pools.
pub const POOL_EVERY: Duration = Duration::from_secs(5);

/// Sets the gauges of `pool` (`primary` or `replica`) of backend `DB`.
fn report_pool<DB: Dialect>(pool: &Pool<DB>, which: &'static str) {
    let (size, idle) = (
        pool.size(),
        u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
    );
    let backend = DB::NAME;
    let gauge = |state: &'static str, n: u32| {
        metrics::gauge!("db_pool_connections", "backend" => backend, "pool" => which, "state" => state)
            .set(f64::from(n));
    };
    gauge("in_use", size.saturating_sub(idle));
    gauge("idle", idle);
    metrics::gauge!("db_pool_max_connections", "backend" => backend, "pool" => which)
        .set(f64::from(pool.options().get_max_connections()));
}

/// The statements of one step of a purge: `step` reads the next [`PURGE_STEP`] keys (after a
/// key) for the last of them, the earliest `done_at` among them and how many there are, and
/// only a step holding a row written before the cutoff runs `delete` (in a write transaction),
/// so a walk over rows still kept holds up no writer. Placeholders: the key after which the
/// step starts, the step's last key (`delete` only), the consumer (`processed_events` only), the
/// cutoff (`delete` only).
struct PurgeSql {
    step: &'static str,
    delete: &'static str,
}

/// A retention purge, as [`SqlRepository::purge_alone`] runs it.
#[derive(Clone, Copy, Debug)]
pub struct Purge<'a> {
    /// The table it walks: its lock's name (`purge_<table>`) and the `table` label of its
    /// metrics.
    pub table: &'static str,
    /// What its walks are written as in `purge_runs`: the table, or the part of it walked
    /// (`scores_daily`), with [`Purge::keep_ms`].
    pub name: &'a str,
    /// The round it runs in.
    pub round: PurgeRound,
    /// How long before its round the rows it deletes were written, for a purge by a time
    /// cutoff: processes keeping their rows for different spans (one target's `EVENT_RETENTION`
    /// shorter than another's, leaderboard pods with different `LB_SCORES_RETENTION_DAYS`)
    /// record their walks apart, so none is spared its walk by a walk that left its rows in
    /// place.
    pub keep_ms: Option<i64>,
}

impl Purge<'static> {
    /// The purge of the whole of `table` in `round`.
    pub fn of(table: &'static str, round: PurgeRound) -> Self {
        Self {
            table,
            name: table,
            round,
            keep_ms: None,
        }
    }
}

impl Purge<'_> {
    /// This purge, deleting the rows written before `cutoff_ms`.
    pub fn before(self, cutoff_ms: i64) -> Self {
        Self {
            keep_ms: Some(self.round.at_ms.saturating_sub(cutoff_ms)),
            ..self
        }
    }

    /// Its row in `purge_runs`: its name, and the span its rows are kept (`processed_events@604800s`).
    fn row_name(&self) -> String {
        match self.keep_ms {
            Some(keep) => format!("{}@{}s", self.name, keep.div_euclid(1000)),
            None => self.name.to_owned(),
        }
    }
}

/// Why a purge's run did not walk, as the `reason` label of `retention_purges_skipped_total`
/// says it: another process was walking the table; it was walked less than a period ago.
const SKIPPED: [&str; 2] = ["busy", "recent"];

/// Counts a run of `table`'s purge: skipped for `reason` (one of [`SKIPPED`]), or walked (`None`,
/// which only makes sure the counters are there).
fn count_purge(table: &'static str, reason: Option<&'static str>) {
    for r in SKIPPED {
        metrics::counter!("retention_purges_skipped_total", "table" => table, "reason" => r)
            .increment(u64::from(reason == Some(r)));
    }
}

/// Keys per step of a purge, as a literal for the `LIMIT` of each [`PurgeSql::step`].
macro_rules! purge_step {
    () => {
        2000
    };
}
pub(crate) use purge_step;

/// Keys per step of a purge (a step read shorter than this is taken as the table's end).
pub(crate) const PURGE_STEP: i64 = purge_step!();

/// The head of the score upsert; rows bound by `SqlRepository::bind_sum`.
const INSERT_SCORES: &str = "INSERT INTO scores (board_window, period, player_id, score) ";

const PURGE_PROCESSED: PurgeSql = PurgeSql {
    step: concat!(
        "SELECT MAX(event_id), MIN(done_at), COUNT(*) FROM (SELECT event_id, done_at \
         FROM processed_events WHERE event_id > ? AND consumer = ? \
         ORDER BY event_id LIMIT ",
        purge_step!(),
        ") AS step"
    ),
    delete: "DELETE FROM processed_events WHERE event_id > ? AND event_id <= ? \
             AND consumer = ? AND done_at < ?",
};

const PURGE_VERDICTS: PurgeSql = PurgeSql {
    step: concat!(
        "SELECT MAX(event_id), MIN(done_at), COUNT(*) FROM (SELECT event_id, done_at \
         FROM fairness_verdicts WHERE event_id > ? ORDER BY event_id LIMIT ",
        purge_step!(),
        ") AS step"
    ),
    delete: "DELETE FROM fairness_verdicts WHERE event_id > ? AND event_id <= ? \
             AND done_at < ?",
};

/// The statements of a purge along an indexed time column (unix ms), oldest first: `step`
/// reads the time [`PURGE_STEP`] rows past the oldest (of those before the cutoff), `through`
/// deletes every row up to that time, `before` the rows left before the cutoff. Each reads and
/// deletes a range of the column's index, never the whole table.
struct PurgeByTime {
    /// The repository call its statements are timed and counted under (`db_call_seconds`).
    call: &'static str,
    step: &'static str,
    through: &'static str,
    before: &'static str,
}

/// The operators' request keys, along `created_at` (its index `operator_requests_created`).
const PURGE_REQUEST_KEYS: PurgeByTime = PurgeByTime {
    call: "purge_before",
    step: concat!(
        "SELECT created_at FROM operator_requests WHERE created_at < ? \
         ORDER BY created_at LIMIT 1 OFFSET ",
        purge_step!()
    ),
    through: "DELETE FROM operator_requests WHERE created_at <= ?",
    before: "DELETE FROM operator_requests WHERE created_at < ?",
};

/// The fairness flags, along `at_ms` (its index `fairness_flags_recent`, migration 0001).
const PURGE_FLAGS: PurgeByTime = PurgeByTime {
    call: "purge_flags",
    step: concat!(
        "SELECT at_ms FROM fairness_flags WHERE at_ms < ? ORDER BY at_ms LIMIT 1 OFFSET ",
        purge_step!()
    ),
    through: "DELETE FROM fairness_flags WHERE at_ms <= ?",
    before: "DELETE FROM fairness_flags WHERE at_ms < ?",
};

/// A reward as a claim sees it: item, claimed, adds to inventory, and the receipt if claimed.
type RewardRow = (Text, i16, i16, Option<Text>, Option<i64>, Option<Text>);

impl<DB> SqlRepository<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'q> i16: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Text: Decode<'q, DB> + Type<DB>,
    DB::Connection: Migrate,
{
    /// A write transaction, after this process's turn to write where the dialect wants turns.
    pub(crate) async fn begin_write(
        &self,
    ) -> PortResult<(Transaction<'static, DB>, Option<OwnedMutexGuard<()>>)> {
        let turn = self.write_turn().await;
        Ok((self.begin(DB::BEGIN_WRITE).await?, turn))
    }

    /// Waits for this process's turn to write, where the dialect wants turns
    /// ([`Dialect::write_turn`]), and records the wait.
    pub(crate) async fn write_turn(&self) -> Option<OwnedMutexGuard<()>> {
        let asked = Instant::now();
        let turn = DB::write_turn(&self.writes).await;
        if turn.is_some() {
            metrics::histogram!("db_write_turn_wait_seconds", "backend" => DB::NAME)
                .record(asked.elapsed().as_secs_f64());
        }
        turn
    }

    pub(crate) async fn begin(
        &self,
        statement: Option<&'static str>,
    ) -> PortResult<Transaction<'static, DB>> {
        Self::begin_on(&self.pool, statement).await
    }

    async fn begin_on(
        pool: &Pool<DB>,
        statement: Option<&'static str>,
    ) -> PortResult<Transaction<'static, DB>> {
        match statement {
            Some(s) => pool.begin_with(s).await,
            None => pool.begin().await,
        }
        .map_err(db_error::<DB>)
    }

    /// Inserts `rows`, `width` values each, in statements under the bound-parameter limit:
    /// `head` names the table and columns, `bind` binds one row, `tail` says what a conflict does.
    pub(crate) async fn insert_rows<T>(
        conn: &mut DB::Connection,
        (head, width, tail): (&str, usize, &str),
        rows: &[T],
        bind: impl for<'q> Fn(&mut Tuple<'_, 'q, DB>, &'q T),
        on_error: impl Fn(sqlx::Error) -> PortError,
    ) -> PortResult<u64> {
        let mut affected = 0;
        for chunk in rows.chunks(DB::MAX_BIND / width) {
            let mut qb = Statement::<DB>::new(head);
            qb.values(chunk, &bind).push(tail);
            let (sql, args) = qb.finish()?;
            let done = sqlx::query_with(&sql, args)
                .persistent(false)
                .execute(&mut *conn)
                .await
                .map_err(&on_error)?;
            affected += DB::rows_affected(&done);
        }
        Ok(affected)
    }

    /// [`SqlRepository::insert_rows`] with `returning` after the conflict clause: the rows as
    /// the statements left them.
    async fn upsert_fetch<T, R>(
        conn: &mut DB::Connection,
        (head, width, tail): (&str, usize, &str),
        returning: &str,
        rows: &[T],
        bind: impl for<'q> Fn(&mut Tuple<'_, 'q, DB>, &'q T),
    ) -> PortResult<Vec<R>>
    where
        R: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    {
        Self::fetch_chunked(conn, rows, DB::MAX_BIND / width, |qb, chunk| {
            qb.push(head)
                .values(chunk, &bind)
                .push(tail)
                .push(returning);
        })
        .await
    }

    /// Runs one query per chunk of `keys` (`write` puts a chunk into the statement) and gathers
    /// the rows of all.
    pub(crate) async fn select_chunked<K, R>(
        &self,
        keys: &[K],
        per_chunk: usize,
        write: impl for<'q> Fn(&mut Statement<'q, DB>, &'q [K]),
    ) -> PortResult<Vec<R>>
    where
        R: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    {
        let mut conn = self.pool.acquire().await.map_err(db_error::<DB>)?;
        Self::fetch_chunked(&mut conn, keys, per_chunk, write).await
    }

    /// [`SqlRepository::select_chunked`] on one connection (a transaction's, to read its own
    /// writes).
    pub(crate) async fn fetch_chunked<K, R>(
        conn: &mut DB::Connection,
        keys: &[K],
        per_chunk: usize,
        write: impl for<'q> Fn(&mut Statement<'q, DB>, &'q [K]),
    ) -> PortResult<Vec<R>>
    where
        R: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    {
        let mut all = Vec::new();
        for chunk in keys.chunks(per_chunk) {
            let mut qb = Statement::<DB>::new("");
            write(&mut qb, chunk);
            let (sql, args) = qb.finish()?;
            let rows: Vec<R> = sqlx::query_as_with(&sql, args)
                .persistent(false)
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error::<DB>)?;
            all.extend(rows);
        }
        Ok(all)
    }

    /// The replica probe's loop, to run while the process runs; `None` without a replica.
    pub fn replica_watch(&self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        let replica = Arc::downgrade(self.replica.as_ref()?);
        Some(Box::pin(super::replica::Replica::watch(
            replica,
            self.pool.clone(),
        )))
    }

    /// Reports the connection pools every [`POOL_EVERY`] while the process runs, the primary's
    /// and the read replica's if any: `db_pool_connections{backend, pool, state}` (`in_use`:
    /// checked out or being opened; `idle`) and `db_pool_max_connections{backend, pool}`. A pool
    /// in use up to its maximum makes calls wait, then fail after the acquire timeout.
    pub fn pool_watch(&self) -> futures_util::future::BoxFuture<'static, ()> {
        let primary = self.pool.clone();
        let replica = self.replica.as_ref().map(Arc::downgrade);
        Box::pin(async move {
            let mut tick = tokio::time::interval(POOL_EVERY);
            loop {
                tick.tick().await;
                report_pool(&primary, "primary");
                if let Some(replica) = &replica {
                    match replica.upgrade() {
                        Some(r) => report_pool(&r.pool, "replica"),
                        None => return,
                    }
                }
            }
        })
    }

    /// Records `ids` as processed by `consumer`; fails (leaving the transaction to roll back)
    /// if any is already recorded.
    async fn insert_processed(
        conn: &mut DB::Connection,
        consumer: &str,
        ids: &[Uuid],
    ) -> PortResult<()> {
        let now = liveops_core::now_ms();
        Self::insert_rows(
            conn,
            (
                "INSERT INTO processed_events (consumer, event_id, done_at) ",
                3,
                "",
            ),
            ids,
            |row, id| {
                row.bind(consumer.to_owned()).bind(id.to_string()).bind(now);
            },
            |e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    PortError::Unavailable(format!(
                        "an event of this batch was already processed by {consumer}; \
                         nothing was applied"
                    ))
                }
                other => db_error::<DB>(other),
            },
        )
        .await
        .map(drop)
    }

    async fn add_inventory(
        conn: &mut DB::Connection,
        grants: &[((&str, &str), u64)],
    ) -> PortResult<()> {
        Self::insert_rows(
            conn,
            (
                "INSERT INTO inventory (player_id, item, quantity) ",
                3,
                DB::UPSERTS.add_items,
            ),
            grants,
            |row, ((player, item), qty)| {
                row.bind(*player).bind(*item).bind(to_i64(*qty));
            },
            db_error::<DB>,
        )
        .await
        .map(drop)
    }

    /// Applies this backend's pending schema migrations (`migrations/<backend>`), under a lock
    /// where several processes may start at once.
    pub async fn migrate(&self) -> PortResult<()> {
        self.migrate_by(DB::apply_migrations).await
    }

    /// [`Self::migrate`] with `apply` applying the migrations on the connection holding the lock.
    pub(crate) async fn migrate_by<F>(&self, apply: F) -> PortResult<()>
    where
        F: for<'c> FnOnce(
            &'c mut DB::Connection,
        ) -> futures_util::future::BoxFuture<'c, PortResult<()>>,
    {
        // On a connection of its own, closed afterwards: the migrator holds session locks and
        // may change session settings, none of which may go back to the pool.
        let mut conn = self.pool.acquire().await.map_err(db_error::<DB>)?;
        conn.close_on_drop();
        if let Some(setup) = DB::MIGRATION_SESSION {
            sqlx::query(setup)
                .execute(&mut *conn)
                .await
                .map_err(db_error::<DB>)?;
        }
        if let Some(lock) = DB::MIGRATION_LOCK {
            if !Self::take_lock(&mut conn, lock, "migrate").await? {
                return Err(PortError::Unavailable(format!(
                    "{}: the migration lock was not granted: another process is still migrating",
                    DB::NAME
                )));
            }
        }
        apply(&mut *conn).await?;
        if let Some(lock) = DB::MIGRATION_LOCK {
            Self::release_lock(&mut conn, lock, "migrate").await?;
        }
        Ok(())
    }

    /// Takes `lock` named `name` on `conn` (as long as its statement waits); whether it is held.
    async fn take_lock(
        conn: &mut DB::Connection,
        lock: &SessionLock,
        name: &str,
    ) -> PortResult<bool> {
        let take = DB::placeholders(lock.take);
        let (held,): (Option<i64>,) = sqlx::query_as(&take)
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error::<DB>)?;
        Ok(held == Some(1))
    }

    /// Releases `lock` named `name`, which `conn` holds.
    async fn release_lock(
        conn: &mut DB::Connection,
        lock: &SessionLock,
        name: &str,
    ) -> PortResult<()> {
        let release = DB::placeholders(lock.release);
        sqlx::query(&release)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(db_error::<DB>)
    }

    /// Runs `walk`, the retention purge `purge`, in one process of the deployment at a time, and
    /// only when its round is due: under the dialect's purge lock (taken without waiting, on a
    /// connection of its own, released after the walk however it ends, and the connection closed
    /// rather than returned to the pool: a walk given up midway drops it, and the lock with it),
    /// the last walk of the purge that ran to its end is read from `purge_runs`, and one within
    /// its round's period, or one longer than the period that ended within it
    /// ([`PurgeRound::walked_recently`]), spares this run the walk; a walk that runs to its end is
    /// written there (unless a walk of a later round was written first). So the processes sharing the database walk a table about
    /// once a period between them. `None`: not walked, counted in
    /// `retention_purges_skipped_total{table, reason}` (`busy`: another process is walking the
    /// table; `recent`: it was walked less than a period ago), and the next run may walk.
    pub async fn purge_alone<T>(
        &self,
        purge: Purge<'_>,
        walk: impl Future<Output = PortResult<T>>,
    ) -> PortResult<Option<T>> {
        let table = purge.table;
        let Some(lock) = DB::PURGE_LOCK else {
            return self.walk_when_due(purge, walk).await;
        };
        let name = format!("purge_{table}");
        let (mut conn, held) = within::<DB, _>("purge_lock", async {
            let mut conn = self.pool.acquire().await.map_err(db_error::<DB>)?;
            conn.close_on_drop();
            let held = Self::take_lock(&mut conn, lock, &name).await?;
            Ok((conn, held))
        })
        .await?;
        if !held {
            count_purge(table, Some("busy"));
            tracing::debug!(
                table,
                "another process is purging the table: this run skipped"
            );
            return Ok(None);
        }
        let walked = self.walk_when_due(purge, walk).await;
        let released =
            within::<DB, _>("purge_lock", Self::release_lock(&mut conn, lock, &name)).await;
        if let Err(error) = released {
            // Closing the connection ends its session, and the lock with it.
            tracing::debug!(table, %error, "purge lock not released: its connection closes");
        }
        walked
    }

    /// Runs `walk` unless the last walk of `purge` that ran to its end spares its round, and
    /// writes it as the last walk once it ran to its end (see [`Self::purge_alone`]).
    async fn walk_when_due<T>(
        &self,
        purge: Purge<'_>,
        walk: impl Future<Output = PortResult<T>>,
    ) -> PortResult<Option<T>> {
        let row = purge.row_name();
        let read = DB::placeholders("SELECT round_ms, finished_ms FROM purge_runs WHERE name = ?");
        let last: Option<(i64, i64)> = within::<DB, _>("purge_runs", async {
            sqlx::query_as(&read)
                .bind(row.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error::<DB>)
        })
        .await?;
        let last = last.map(|(round_ms, finished_ms)| PurgeWalk {
            round_ms,
            finished_ms,
        });
        if let Some(last) = last.filter(|l| purge.round.walked_recently(*l)) {
            count_purge(purge.table, Some("recent"));
            tracing::debug!(
                table = purge.table,
                purge = row,
                last_round_ms = last.round_ms,
                last_finished_ms = last.finished_ms,
                "walked less than a period ago: this run skipped"
            );
            return Ok(None);
        }
        count_purge(purge.table, None);
        let walked = walk.await?;
        if let Err(error) = self.record_walk(&row, purge.round).await {
            tracing::warn!(
                purge = row,
                %error,
                "the purge's walk was not recorded: the next run walks again"
            );
        }
        Ok(Some(walked))
    }

    /// Writes that a walk recorded as `row` (a [`Purge::row_name`]) in `round` ran to its end now,
    /// unless the walk written there belonged to a later round (a newer walk that ended first).
    async fn record_walk(&self, row: &str, round: PurgeRound) -> PortResult<()> {
        let finished_ms = liveops_core::now_ms();
        within::<DB, _>("purge_runs", async {
            let (mut tx, _turn) = self.begin_write().await?;
            Self::insert_rows(
                &mut tx,
                (
                    "INSERT INTO purge_runs (name, round_ms, finished_ms) ",
                    3,
                    DB::UPSERTS.purge_run,
                ),
                &[(row, round.at_ms)],
                |sql, (row, at_ms)| {
                    sql.bind(*row).bind(*at_ms).bind(finished_ms);
                },
                db_error::<DB>,
            )
            .await?;
            tx.commit().await.map_err(db_error::<DB>)
        })
        .await
    }

    /// [`Self::purge_alone`] of a walk counting rows: none when not walked.
    pub(crate) async fn purge_rows_alone(
        &self,
        purge: Purge<'_>,
        walk: impl Future<Output = PortResult<u64>>,
    ) -> PortResult<u64> {
        Ok(self.purge_alone(purge, walk).await?.unwrap_or(0))
    }

    /// Whether the database answers now, within the call bound.
    pub async fn healthcheck(&self) -> PortResult<()> {
        within::<DB, _>("healthcheck", async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(db_error::<DB>)
        })
        .await
    }

    pub(crate) async fn processed(
        &self,
        consumer: &str,
        ids: &[Uuid],
    ) -> PortResult<HashSet<Uuid>> {
        within::<DB, _>("processed", async {
            let rows: Vec<(Text,)> = self
                .select_chunked(ids, DB::MAX_BIND - 1, |qb, chunk| {
                    qb.push("SELECT event_id FROM processed_events WHERE consumer = ")
                        .bind(consumer.to_owned())
                        .push(" AND event_id")
                        .in_list(chunk.iter().map(Uuid::to_string));
                })
                .await?;
            rows.into_iter().map(|(id,)| parse_uuid(&id.0)).collect()
        })
        .await
    }

    /// A player's progress for display: on the replica while it is usable.
    pub(crate) async fn progress(
        &self,
        player_id: &str,
        season: i64,
    ) -> PortResult<PlayerProgress> {
        on_reader!(self, |pool| self.progress_on(pool, player_id, season).await)
    }

    /// A player's progress as last committed: always on the primary.
    pub(crate) async fn progress_latest(
        &self,
        player_id: &str,
        season: i64,
    ) -> PortResult<PlayerProgress> {
        self.progress_on(&self.pool, player_id, season).await
    }

    pub(crate) async fn pending_reward(
        &self,
        player_id: &str,
        reward_id: &str,
    ) -> PortResult<Option<PendingReward>> {
        within::<DB, _>("pending_reward", async {
            let sql = DB::placeholders(
                "SELECT item, source, adds_to_inventory FROM rewards \
                 WHERE player_id = ? AND reward_id = ? AND claimed = 0",
            );
            let row: Option<(Text, Text, i16)> = sqlx::query_as(&sql)
                .bind(player_id)
                .bind(reward_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error::<DB>)?;
            Ok(row.map(|(item, source, adds)| PendingReward {
                reward_id: reward_id.to_owned(),
                item: item.0,
                source: source.0,
                adds_to_inventory: adds != 0,
            }))
        })
        .await
    }

    async fn progress_on(
        &self,
        pool: &Pool<DB>,
        player_id: &str,
        season: i64,
    ) -> PortResult<PlayerProgress> {
        within_on::<DB, _>("progress", self.which(pool), async {
            // One read transaction: a consistent view of the three tables.
            let mut tx = Self::begin_on(pool, DB::BEGIN_READ).await?;
            let sql = DB::placeholders(
                "SELECT xp, updated_at FROM player_xp WHERE player_id = ? AND season = ?",
            );
            let xp: Option<(i64, i64)> = sqlx::query_as(&sql)
                .bind(player_id)
                .bind(season)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            // Every drop adds an inventory line keyed by its client-chosen `dropId` and a
            // pending reward, so a player may have ever more of both: the first lines and the
            // oldest rewards, and counts that stop at PROGRESS_COUNT_LIMIT rows, each along its
            // index (inventory's key (player_id, item), rewards_pending (player_id, claimed, id)).
            // A first page shorter than its limit is all there is: its length is the count.
            let inventory: Vec<ItemRow> =
                Self::player_rows(&mut tx, FIRST_ITEMS, player_id, PROGRESS_INVENTORY_LIMIT)
                    .await?;
            let inventory_count = if inventory.len() < PROGRESS_INVENTORY_LIMIT {
                inventory.len() as u64
            } else {
                Self::player_count(&mut tx, COUNT_INVENTORY, player_id).await?
            };
            let pending: Vec<PendingRow> =
                Self::player_rows(&mut tx, FIRST_PENDING, player_id, PROGRESS_PENDING_LIMIT)
                    .await?;
            let pending_count = if pending.len() < PROGRESS_PENDING_LIMIT {
                pending.len() as u64
            } else {
                Self::player_count(&mut tx, COUNT_PENDING, player_id).await?
            };
            tx.rollback().await.map_err(db_error::<DB>)?;
            let (xp, updated_at_ms) = xp.unwrap_or((0, 0));
            Ok(PlayerProgress {
                from_replica: !std::ptr::eq(pool, &self.pool),
                xp: to_u64(xp),
                updated_at_ms,
                inventory: inventory.into_iter().map(item_of).collect(),
                inventory_count,
                pending: pending.into_iter().map(reward_of).collect(),
                pending_count,
            })
        })
        .await
    }

    /// The rows `sql` selects on `conn` for `player_id`, its placeholders the player and then a
    /// row limit, bound to `limit`: a player's first rows ([`FIRST_ITEMS`], [`FIRST_PENDING`]).
    async fn player_rows<R>(
        conn: &mut DB::Connection,
        sql: &'static str,
        player_id: &str,
        limit: usize,
    ) -> PortResult<Vec<R>>
    where
        R: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    {
        sqlx::query_as(&DB::placeholders(sql))
            .bind(player_id)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error::<DB>)
    }

    /// How many rows `count` ([`COUNT_INVENTORY`] or [`COUNT_PENDING`]) finds on `conn` for
    /// `player_id`, up to [`PROGRESS_COUNT_LIMIT`].
    async fn player_count(
        conn: &mut DB::Connection,
        count: &'static str,
        player_id: &str,
    ) -> PortResult<u64> {
        sqlx::query_scalar(&DB::placeholders(count))
            .bind(player_id)
            .bind(to_i64(PROGRESS_COUNT_LIMIT))
            .fetch_one(&mut *conn)
            .await
            .map(to_u64)
            .map_err(db_error::<DB>)
    }

    /// A page of a player's pending rewards for display: on the replica while it is usable.
    pub(crate) async fn pending_rewards(
        &self,
        player_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> PortResult<Vec<ListedReward>> {
        on_reader!(self, |pool| {
            self.pending_rewards_on(pool, player_id, after, limit).await
        })
    }

    async fn pending_rewards_on(
        &self,
        pool: &Pool<DB>,
        player_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> PortResult<Vec<ListedReward>> {
        within_on::<DB, _>("pending_rewards", self.which(pool), async {
            // Along the index (player_id, claimed, id), from the cursor on: `limit` rows read.
            // Row ids start at 1, so every one is above 0.
            let sql = DB::placeholders(
                "SELECT id, reward_id, item, source, adds_to_inventory FROM rewards \
                 WHERE player_id = ? AND claimed = 0 AND id > ? ORDER BY id LIMIT ?",
            );
            let rows: Vec<(i64, Text, Text, Text, i16)> = sqlx::query_as(&sql)
                .bind(player_id)
                .bind(after.unwrap_or(0))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(db_error::<DB>)?;
            Ok(rows
                .into_iter()
                .map(|(position, reward_id, item, source, adds)| ListedReward {
                    position,
                    reward: reward_of((reward_id, item, source, adds)),
                })
                .collect())
        })
        .await
    }

    /// A page of a player's inventory for display: on the replica while it is usable.
    pub(crate) async fn inventory(
        &self,
        player_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> PortResult<Vec<InventoryItem>> {
        on_reader!(self, |pool| {
            self.inventory_on(pool, player_id, after, limit).await
        })
    }

    async fn inventory_on(
        &self,
        pool: &Pool<DB>,
        player_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> PortResult<Vec<InventoryItem>> {
        within_on::<DB, _>("inventory", self.which(pool), async {
            // Along the key (player_id, item), from the cursor's item on: `limit` rows read.
            let first = DB::placeholders(FIRST_ITEMS);
            let next = DB::placeholders(
                "SELECT item, quantity FROM inventory \
                 WHERE player_id = ? AND item > ? ORDER BY item LIMIT ?",
            );
            let read = match after {
                None => sqlx::query_as(&first).bind(player_id),
                Some(after) => sqlx::query_as(&next).bind(player_id).bind(after),
            };
            let rows: Vec<ItemRow> = read
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(db_error::<DB>)?;
            Ok(rows.into_iter().map(item_of).collect())
        })
        .await
    }

    pub(crate) async fn xp_of(&self, players: &[(String, i64)]) -> PortResult<Vec<u64>> {
        within::<DB, _>("xp_of", async {
            let unique: Vec<&str> = players
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let mut conn = self.pool.acquire().await.map_err(db_error::<DB>)?;
            let found = Self::xp_rows(&mut conn, &unique).await?;
            Ok(players
                .iter()
                .map(|key| found.get(key).copied().unwrap_or(0))
                .collect())
        })
        .await
    }

    /// The XP rows of `players` in every season, as `conn` sees them.
    async fn xp_rows(
        conn: &mut DB::Connection,
        players: &[&str],
    ) -> PortResult<HashMap<(String, i64), u64>> {
        let rows: Vec<(Text, i64, i64)> =
            Self::fetch_chunked(conn, players, DB::MAX_BIND, |qb, chunk| {
                qb.push("SELECT player_id, season, xp FROM player_xp WHERE player_id")
                    .in_list(chunk.iter().copied());
            })
            .await?;
        Ok(xp_map(rows))
    }

    pub(crate) async fn commit_progress(
        &self,
        consumer: &str,
        commit: &ProgressCommit,
    ) -> PortResult<bool> {
        // Sum per key first: one upsert row per key, in key order.
        let mut xp: BTreeMap<(&str, i64), (u64, i64)> = BTreeMap::new();
        for g in &commit.xp {
            let e = xp.entry((g.player_id.as_str(), g.season)).or_default();
            e.0 = e.0.saturating_add(g.xp);
            e.1 = e.1.max(g.at_ms);
        }
        let mut items: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for g in &commit.items {
            let q = items
                .entry((g.player_id.as_str(), g.item.as_str()))
                .or_default();
            *q = q.saturating_add(g.quantity);
        }
        let xp: Vec<_> = xp.into_iter().collect();
        let items: Vec<_> = items.into_iter().collect();
        let now = liveops_core::now_ms();

        within::<DB, _>("commit_progress", async {
            let (mut tx, _turn) = self.begin_write().await?;
            Self::insert_processed(&mut tx, consumer, &commit.event_ids).await?;
            let upsert = (
                "INSERT INTO player_xp (player_id, season, xp, updated_at) ",
                4,
                DB::UPSERTS.add_xp,
            );
            let bind = Self::bind_xp;
            // The rows as the upsert left them where it can answer them, else read back.
            let held = match DB::UPSERTS.returning_xp {
                Some(returning) => {
                    let rows: Vec<(Text, i64, i64)> =
                        Self::upsert_fetch(&mut tx, upsert, returning, &xp, bind).await?;
                    Some(xp_map(rows))
                }
                None => {
                    Self::insert_rows(&mut tx, upsert, &xp, bind, db_error::<DB>).await?;
                    None
                }
            };
            if !Self::xp_as_planned(&mut tx, &commit.xp_before, &xp, held).await? {
                tx.rollback().await.map_err(db_error::<DB>)?;
                return Ok(false);
            }
            Self::add_inventory(&mut tx, &items).await?;
            Self::insert_rows(
                &mut tx,
                (
                    "INSERT INTO rewards \
                     (player_id, reward_id, item, source, adds_to_inventory, earned_at) ",
                    6,
                    DB::UPSERTS.keep_reward,
                ),
                &commit.rewards,
                |row, (player, r)| {
                    row.bind(player.as_str())
                        .bind(r.reward_id.as_str())
                        .bind(r.item.as_str())
                        .bind(r.source.as_str())
                        .bind(i16::from(r.adds_to_inventory))
                        .bind(now);
                },
                db_error::<DB>,
            )
            .await?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(true)
        })
        .await
    }

    /// Whether every XP in `before`, plus this transaction's `gains` (summed per key), is what
    /// the rows hold now (`held`, as the upsert answered them, or read back after it): the
    /// upsert's row locks (or SQLite's single writer) keep them so until commit.
    async fn xp_as_planned(
        tx: &mut DB::Connection,
        before: &[((String, i64), u64)],
        gains: &[XpSum<'_>],
        held: Option<HashMap<(String, i64), u64>>,
    ) -> PortResult<bool> {
        if before.is_empty() {
            return Ok(true);
        }
        let now = match held {
            Some(held) if before.iter().all(|(key, _)| held.contains_key(key)) => held,
            _ => {
                let players: Vec<&str> = before
                    .iter()
                    .map(|((p, _), _)| p.as_str())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                Self::xp_rows(tx, &players).await?
            }
        };
        let gains: HashMap<(&str, i64), u64> =
            gains.iter().map(|(key, (gain, _))| (*key, *gain)).collect();
        Ok(before.iter().all(|(key, xp)| {
            let gain = gains.get(&(key.0.as_str(), key.1)).copied().unwrap_or(0);
            now.get(key).copied().unwrap_or(0) == xp.saturating_add(gain)
        }))
    }

    pub(crate) async fn claim_reward(
        &self,
        player_id: &str,
        reward_id: &str,
        receipt: Receipt,
    ) -> PortResult<RewardClaim> {
        within::<DB, _>("claim_reward", async {
            let (mut tx, _turn) = self.begin_write().await?;
            // Lock the reward: a concurrent claim of it waits here, then sees this one's receipt.
            let sql = format!(
                "{}{}",
                DB::placeholders(
                    "SELECT item, claimed, adds_to_inventory, receipt_id, receipt_ts, receipt_sig \
                     FROM rewards WHERE player_id = ? AND reward_id = ?"
                ),
                DB::LOCK_ROWS
            );
            let row: Option<RewardRow> = sqlx::query_as(&sql)
                .bind(player_id)
                .bind(reward_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            let adds = match row {
                Some((item, 0, adds, ..)) if item.0 == receipt.item => adds != 0,
                other => {
                    tx.rollback().await.map_err(db_error::<DB>)?;
                    return match other {
                        // Not earned, or earned under another item than the caller signed.
                        None | Some((_, 0, ..)) => Ok(RewardClaim::NotEarned),
                        Some((item, _, _, Some(receipt_id), Some(timestamp), Some(sig))) => {
                            Ok(RewardClaim::AlreadyClaimed(Receipt {
                                receipt_id: receipt_id.0,
                                player_id: player_id.to_owned(),
                                item: item.0,
                                timestamp,
                                sig: sig.0,
                            }))
                        }
                        Some(_) => Err(PortError::Corrupt(format!(
                            "reward {reward_id:?} of {player_id:?} is claimed without a receipt"
                        ))),
                    };
                }
            };
            let sql = DB::placeholders(
                "UPDATE rewards SET claimed = 1, receipt_id = ?, receipt_ts = ?, receipt_sig = ? \
                 WHERE player_id = ? AND reward_id = ?",
            );
            sqlx::query(&sql)
                .bind(receipt.receipt_id.as_str())
                .bind(receipt.timestamp)
                .bind(receipt.sig.as_str())
                .bind(player_id)
                .bind(reward_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            if adds {
                Self::add_inventory(&mut tx, &[((player_id, receipt.item.as_str()), 1)]).await?;
            }
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(RewardClaim::Issued(receipt))
        })
        .await
    }

    pub(crate) async fn commit_scores(
        &self,
        consumer: &str,
        event_ids: &[Uuid],
        deltas: &[ScoreDelta],
    ) -> PortResult<Vec<ScoreTotal>> {
        let mut sums: BTreeMap<(Window, &str, &str), i64> = BTreeMap::new();
        for d in deltas {
            let s = sums
                .entry((
                    d.board.window,
                    d.board.period.as_str(),
                    d.player_id.as_str(),
                ))
                .or_default();
            *s = s.saturating_add(d.delta);
        }
        let sums: Vec<_> = sums.into_iter().collect();
        within::<DB, _>("commit_scores", async {
            let (mut tx, _turn) = self.begin_write().await?;
            Self::insert_processed(&mut tx, consumer, event_ids).await?;
            let totals = match DB::UPSERTS.returning_scores {
                Some(returning) => Self::upsert_returning(&mut tx, returning, &sums).await?,
                None => {
                    let upsert = (INSERT_SCORES, 4, DB::UPSERTS.add_score);
                    Self::insert_rows(&mut tx, upsert, &sums, Self::bind_sum, db_error::<DB>)
                        .await?;
                    Self::read_back(&mut tx, &sums).await?
                }
            };
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(totals)
        })
        .await
    }

    /// Binds one summed XP gain as a row of `player_xp`.
    fn bind_xp<'q>(row: &mut Tuple<'_, 'q, DB>, sum: &'q XpSum<'_>) {
        let ((player, season), (gain, at)) = sum;
        let player: &'q str = player;
        row.bind(player).bind(*season).bind(to_i64(*gain)).bind(*at);
    }

    /// Binds one summed score, `((window, period, player), delta)`, as a row of [`INSERT_SCORES`].
    fn bind_sum<'q>(row: &mut Tuple<'_, 'q, DB>, sum: &'q ((Window, &str, &str), i64)) {
        let ((window, period, player), delta) = sum;
        let (period, player): (&'q str, &'q str) = (period, player);
        row.bind(window.as_str())
            .bind(period)
            .bind(player)
            .bind(*delta);
    }

    /// Adds `sums` to the scores and answers the rows as the upsert left them (`returning`).
    async fn upsert_returning(
        tx: &mut DB::Connection,
        returning: &str,
        sums: &[((Window, &str, &str), i64)],
    ) -> PortResult<Vec<ScoreTotal>> {
        let upsert = (INSERT_SCORES, 4, DB::UPSERTS.add_score);
        let rows: Vec<(Text, Text, Text, i64)> =
            Self::upsert_fetch(tx, upsert, returning, sums, Self::bind_sum).await?;
        rows.into_iter()
            .map(|(window, period, player, total)| {
                let window = Window::parse(&window.0).ok_or_else(|| {
                    PortError::Corrupt(format!("scores: unknown window {:?}", window.0))
                })?;
                Ok(ScoreTotal {
                    board: Board {
                        window,
                        period: period.0,
                    },
                    player_id: player.0,
                    total,
                })
            })
            .collect()
    }

    /// The scores of `players` on `board`, as `conn` sees them, `(player, score)`.
    async fn scores_on(
        conn: &mut DB::Connection,
        (window, period): (Window, &str),
        players: &[&str],
    ) -> PortResult<Vec<(String, i64)>> {
        let period = period.to_owned();
        let rows: Vec<(Text, i64)> =
            Self::fetch_chunked(conn, players, DB::MAX_BIND - 2, |qb, chunk| {
                qb.push("SELECT player_id, score FROM scores WHERE board_window = ")
                    .bind(window.as_str())
                    .push(" AND period = ")
                    .bind(period.clone())
                    .push(" AND player_id")
                    .in_list(chunk.iter().copied());
            })
            .await?;
        Ok(rows.into_iter().map(|(p, s)| (p.0, s)).collect())
    }

    /// The rows of `sums` as this transaction left them, read back (where the upsert cannot
    /// answer them).
    async fn read_back(
        tx: &mut DB::Connection,
        sums: &[((Window, &str, &str), i64)],
    ) -> PortResult<Vec<ScoreTotal>> {
        let mut totals = Vec::with_capacity(sums.len());
        // `sums` is in key order: each board's players are together.
        let same_board = |((w1, p1, _), _): &_, ((w2, p2, _), _): &_| w1 == w2 && p1 == p2;
        for board in sums.chunk_by(same_board) {
            let ((window, period, _), _) = &board[0];
            let players: Vec<&str> = board.iter().map(|((_, _, p), _)| *p).collect();
            let rows = Self::scores_on(tx, (*window, period), &players).await?;
            totals.extend(rows.into_iter().map(|(player_id, total)| ScoreTotal {
                board: Board {
                    window: *window,
                    period: (*period).to_owned(),
                },
                player_id,
                total,
            }));
        }
        Ok(totals)
    }

    pub(crate) async fn board_size(&self, board: &Board) -> PortResult<u64> {
        within::<DB, _>("board_size", async {
            let sql = DB::placeholders(
                "SELECT COUNT(*) FROM scores WHERE board_window = ? AND period = ?",
            );
            let (n,): (i64,) = sqlx::query_as(&sql)
                .bind(board.window.as_str())
                .bind(board.period.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(db_error::<DB>)?;
            Ok(to_u64(n))
        })
        .await
    }

    pub(crate) async fn board_scores(&self, board: &Board) -> PortResult<Vec<(String, i64)>> {
        if let Some(read) = DB::bulk_board_scores(&self.pool, board) {
            return within::<DB, _>("board_scores", read).await;
        }
        within_bulk::<DB, _>("board_scores", async {
            let sql = DB::placeholders(
                // Unordered: every caller ranks the scores itself, and sorting a million rows
                // in the database would double a restart's rebuild time.
                "SELECT player_id, score FROM scores WHERE board_window = ? AND period = ?",
            );
            let rows: Vec<(Text, i64)> = sqlx::query_as(&sql)
                .bind(board.window.as_str())
                .bind(board.period.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(db_error::<DB>)?;
            Ok(rows.into_iter().map(|(p, s)| (p.0, s)).collect())
        })
        .await
    }

    pub(crate) async fn top_scores(
        &self,
        board: &Board,
        limit: u64,
    ) -> PortResult<Vec<(String, i64)>> {
        within::<DB, _>("top_scores", async {
            // The rank store's order, read down the scores_by_rank index: `limit` rows.
            let sql = DB::placeholders(
                "SELECT player_id, score FROM scores WHERE board_window = ? AND period = ? \
                 ORDER BY score DESC, player_id DESC LIMIT ?",
            );
            let rows: Vec<(Text, i64)> = sqlx::query_as(&sql)
                .bind(board.window.as_str())
                .bind(board.period.as_str())
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(db_error::<DB>)?;
            Ok(rows.into_iter().map(|(p, s)| (p.0, s)).collect())
        })
        .await
    }

    pub(crate) async fn scores_of(
        &self,
        board: &Board,
        players: &[String],
    ) -> PortResult<Vec<(String, i64)>> {
        within_bulk::<DB, _>("scores_of", async {
            let players: Vec<&str> = players.iter().map(String::as_str).collect();
            let mut conn = self.pool.acquire().await.map_err(db_error::<DB>)?;
            Self::scores_on(&mut conn, (board.window, &board.period), &players).await
        })
        .await
    }

    pub(crate) async fn boards(&self) -> PortResult<Vec<Board>> {
        within::<DB, _>("boards", async {
            let rows: Vec<(Text, Text)> = sqlx::query_as(
                "SELECT DISTINCT board_window, period FROM scores ORDER BY board_window, period",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(db_error::<DB>)?;
            rows.into_iter()
                .map(|(w, period)| {
                    Ok(Board {
                        window: parse_window(&w.0)?,
                        period: period.0,
                    })
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn save_snapshot(&self, snapshot: &Snapshot) -> PortResult<()> {
        let entries = serde_json::to_string(&snapshot.entries)
            .map_err(|e| PortError::Corrupt(format!("snapshot entries: {e}")))?;
        within::<DB, _>("save_snapshot", async {
            let sql = format!(
                "{}{}",
                DB::placeholders(
                    "INSERT INTO snapshots (board_window, period, taken_at, is_final, entries) \
                     VALUES (?, ?, ?, ?, ?)"
                ),
                DB::UPSERTS.replace_snapshot
            );
            sqlx::query(&sql)
                .bind(snapshot.window.as_str())
                .bind(snapshot.period.as_str())
                .bind(snapshot.taken_at_ms)
                .bind(i16::from(snapshot.is_final))
                .bind(entries.as_str())
                .execute(&self.pool)
                .await
                .map(|_| ())
                .map_err(db_error::<DB>)
        })
        .await
    }

    pub(crate) async fn snapshot(&self, board: &Board) -> PortResult<Option<Snapshot>> {
        on_reader!(self, |pool| self.snapshot_on(pool, board).await)
    }

    async fn snapshot_on(&self, pool: &Pool<DB>, board: &Board) -> PortResult<Option<Snapshot>> {
        within_on::<DB, _>("snapshot", self.which(pool), async {
            let sql = DB::placeholders(
                "SELECT taken_at, is_final, entries FROM snapshots \
                 WHERE board_window = ? AND period = ?",
            );
            let row: Option<(i64, i16, Text)> = sqlx::query_as(&sql)
                .bind(board.window.as_str())
                .bind(board.period.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db_error::<DB>)?;
            row.map(|(taken_at_ms, is_final, entries)| {
                let entries: Vec<RankEntry> = serde_json::from_str(&entries.0)
                    .map_err(|e| PortError::Corrupt(format!("snapshot entries: {e}")))?;
                Ok(Snapshot {
                    window: board.window,
                    period: board.period.clone(),
                    taken_at_ms,
                    is_final: is_final != 0,
                    entries,
                })
            })
            .transpose()
        })
        .await
    }

    pub(crate) async fn snapshot_periods(
        &self,
        window: Window,
        limit: u32,
    ) -> PortResult<Vec<String>> {
        on_reader!(self, |pool| self
            .snapshot_periods_on(pool, window, limit)
            .await)
    }

    async fn snapshot_periods_on(
        &self,
        pool: &Pool<DB>,
        window: Window,
        limit: u32,
    ) -> PortResult<Vec<String>> {
        within_on::<DB, _>("snapshot_periods", self.which(pool), async {
            // Newest period first, whenever each snapshot was taken (a final taken again after
            // late scores stays in its place): day and week ids order as text, seasons by number.
            let mut qb = Statement::<DB>::new("SELECT period FROM snapshots WHERE board_window = ");
            qb.bind(window.as_str()).push(&format!(
                " ORDER BY CASE WHEN period LIKE 'season-%' THEN CAST(SUBSTR(period, 8) AS {}) \
                 ELSE 0 END DESC, period DESC LIMIT ",
                DB::INTEGER
            ));
            qb.bind(i64::from(limit));
            let (sql, args) = qb.finish()?;
            let rows: Vec<(Text,)> = sqlx::query_as_with(&sql, args)
                .fetch_all(pool)
                .await
                .map_err(db_error::<DB>)?;
            Ok(rows.into_iter().map(|(p,)| p.0).collect())
        })
        .await
    }

    pub(crate) async fn fairness_stats(&self) -> PortResult<Vec<(EventType, Welford)>> {
        within::<DB, _>("fairness_stats", async {
            let rows: Vec<(Text, i64, f64, f64)> = sqlx::query_as(
                "SELECT event_type, samples, mean, m2 FROM fairness_stats ORDER BY event_type",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(db_error::<DB>)?;
            rows.into_iter()
                .map(|(t, count, mean, m2)| {
                    Ok((
                        parse_event_type(&t.0)?,
                        Welford {
                            count: to_u64(count),
                            mean,
                            m2,
                        },
                    ))
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn verdicts(&self, ids: &[Uuid]) -> PortResult<Vec<(Uuid, bool, i64)>> {
        within::<DB, _>("verdicts", async {
            let mut conn = self.pool.acquire().await.map_err(db_error::<DB>)?;
            let rows: Vec<(Text, i16, i64)> =
                Self::fetch_chunked(&mut conn, ids, DB::MAX_BIND, |qb, chunk| {
                    qb.push(
                        "SELECT event_id, flagged, done_at FROM fairness_verdicts WHERE event_id",
                    )
                    .in_list(chunk.iter().map(Uuid::to_string));
                })
                .await?;
            rows.into_iter()
                .map(|(id, flagged, at)| Ok((parse_uuid(&id.0)?, flagged != 0, at)))
                .collect()
        })
        .await
    }

    pub(crate) async fn commit_fairness(&self, commit: &FairnessCommit) -> PortResult<bool> {
        // One row per type per statement: a type given twice is merged first.
        let mut by_type: BTreeMap<EventType, Welford> = BTreeMap::new();
        for (t, w) in commit.stats.iter().filter(|(_, w)| w.count > 0) {
            by_type.entry(*t).or_default().merge(w);
        }
        let stats: Vec<(EventType, Welford)> = by_type.into_iter().collect();
        within::<DB, _>("commit_fairness", async {
            let (mut tx, _turn) = self.begin_write().await?;
            let (head, tail) = DB::UPSERTS.keep_verdict;
            let inserted = Self::insert_rows(
                &mut tx,
                (head, 3, tail),
                &commit.verdicts,
                |row, (id, flagged)| {
                    row.bind(id.to_string())
                        .bind(i16::from(*flagged))
                        .bind(commit.at_ms);
                },
                db_error::<DB>,
            )
            .await?;
            // Another replica (or this one's earlier commit that timed out yet went through) may
            // have judged some of these events since they were read: its verdict stands and its
            // samples are stored, so this batch is judged again from it, even if they agree.
            if usize::try_from(inserted).ok() != Some(commit.verdicts.len()) {
                tx.rollback().await.map_err(db_error::<DB>)?;
                return Ok(false);
            }
            Self::insert_rows(
                &mut tx,
                (
                    "INSERT INTO fairness_flags \
                     (event_id, player_id, event_type, flag_value, z_score, at_ms) ",
                    6,
                    DB::UPSERTS.keep_flag,
                ),
                &commit.flags,
                |row, f| {
                    row.bind(f.event_id.to_string())
                        .bind(f.player_id.as_str())
                        .bind(f.event_type.as_str())
                        .bind(f.value)
                        .bind(f.z_score)
                        .bind(f.at_ms);
                },
                db_error::<DB>,
            )
            .await?;
            Self::insert_rows(
                &mut tx,
                (
                    "INSERT INTO fairness_stats (event_type, samples, mean, m2) ",
                    4,
                    DB::UPSERTS.merge_stats,
                ),
                &stats,
                |row, (t, w)| {
                    row.bind(t.as_str())
                        .bind(to_i64(w.count))
                        .bind(w.mean)
                        .bind(w.m2);
                },
                db_error::<DB>,
            )
            .await?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(true)
        })
        .await
    }

    /// Deletes the processed event ids and fairness verdicts written before `cutoff_ms`, walking
    /// each table in key order 2000 keys a step, each step with rows to delete in a write
    /// transaction of its own (writers are held up for one step at a time, and not by steps
    /// with nothing to delete), then the operators' request keys, then the operators' sessions
    /// expired by now (their own expiry, not the cutoff). Returns how many rows went: none when
    /// another process is walking them or `round` is spared the walk ([`Self::purge_alone`]).
    pub(crate) async fn purge_before(&self, cutoff_ms: i64, round: PurgeRound) -> PortResult<u64> {
        let purge = Purge::of("processed_events", round).before(cutoff_ms);
        self.purge_rows_alone(purge, self.walk_before(cutoff_ms))
            .await
    }

    /// [`Self::purge_before`]'s walk.
    async fn walk_before(&self, cutoff_ms: i64) -> PortResult<u64> {
        let mut purged = 0;
        let mut consumer = String::new();
        loop {
            let sql =
                DB::placeholders("SELECT MIN(consumer) FROM processed_events WHERE consumer > ?");
            let next: Option<Text> = within::<DB, _>("purge_before", async {
                sqlx::query_scalar(&sql)
                    .bind(consumer.as_str())
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_error::<DB>)
            })
            .await?;
            let Some(next) = next else { break };
            consumer = next.0;
            purged += self.purge_table(Some(&consumer), cutoff_ms).await?;
        }
        purged += self.purge_table(None, cutoff_ms).await?;
        purged += self.purge_request_keys(cutoff_ms).await?;
        // Until a release drops the table (ADR 0021): the keyed sends kept for processes of the
        // release before 0007 (a rolling upgrade), a few per operator and day.
        let legacy = DB::placeholders("DELETE FROM inbox_sends WHERE sent_at < ?");
        purged += self
            .write_in_turn("purge_before", sqlx::query(&legacy).bind(cutoff_ms))
            .await?;
        // Sessions past their expiry open nothing any more: a few per operator and day, so one
        // step deletes them.
        let expired = DB::placeholders("DELETE FROM operator_sessions WHERE expires_at <= ?");
        let now = liveops_core::now_ms();
        purged += self
            .write_in_turn("purge_before", sqlx::query(&expired).bind(now))
            .await?;
        Ok(purged)
    }

    /// Deletes the scores of `window`'s boards whose period sorts before `before` (the period
    /// running at `cutoff_ms`), oldest board first, in steps along its players; how many rows
    /// went (none when another process is walking them or `round` is spared the walk:
    /// [`Self::purge_alone`], each window's and each span kept apart, `scores_daily@<s>s`).
    pub(crate) async fn purge_scores(
        &self,
        window: Window,
        before: &str,
        cutoff_ms: i64,
        round: PurgeRound,
    ) -> PortResult<u64> {
        let name = format!("scores_{window}");
        let purge = Purge {
            table: "scores",
            name: &name,
            round,
            keep_ms: None,
        }
        .before(cutoff_ms);
        self.purge_rows_alone(purge, self.walk_scores(window, before))
            .await
    }

    /// [`Self::purge_scores`]'s walk.
    async fn walk_scores(&self, window: Window, before: &str) -> PortResult<u64> {
        let oldest = DB::placeholders(
            "SELECT MIN(period) FROM scores WHERE board_window = ? AND period < ?",
        );
        let step = DB::placeholders(concat!(
            "SELECT MAX(player_id), COUNT(*) FROM (SELECT player_id FROM scores \
             WHERE board_window = ? AND period = ? AND player_id > ? ORDER BY player_id LIMIT ",
            purge_step!(),
            ") AS step"
        ));
        let delete = DB::placeholders(
            "DELETE FROM scores WHERE board_window = ? AND period = ? \
             AND player_id > ? AND player_id <= ?",
        );
        let mut purged = 0;
        // One board at a time, oldest first, in steps along its players.
        loop {
            let period: Option<Text> = within::<DB, _>("purge_scores", async {
                sqlx::query_scalar(&oldest)
                    .bind(window.as_str())
                    .bind(before)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_error::<DB>)
            })
            .await?;
            let Some(period) = period else {
                return Ok(purged);
            };
            let mut after = String::new();
            loop {
                let (end, keys): (Option<Text>, i64) = within::<DB, _>("purge_scores", async {
                    sqlx::query_as(&step)
                        .bind(window.as_str())
                        .bind(period.0.as_str())
                        .bind(after.as_str())
                        .fetch_one(&self.pool)
                        .await
                        .map_err(db_error::<DB>)
                })
                .await?;
                let Some(end) = end else { break };
                let q = sqlx::query(&delete)
                    .bind(window.as_str())
                    .bind(period.0.as_str())
                    .bind(after.as_str())
                    .bind(end.0.as_str());
                purged += self.write_in_turn("purge_scores", q).await?;
                if keys < PURGE_STEP {
                    break;
                }
                after = end.0;
                // Let the writers in between steps.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Deletes the fairness flags raised before `cutoff_ms` (`FLAG_RETENTION`), oldest first
    /// along their index on `at_ms`, about 2000 per write transaction; returns how many went
    /// (none when another process is walking them or `round` is spared the walk).
    pub(crate) async fn purge_flags(&self, cutoff_ms: i64, round: PurgeRound) -> PortResult<u64> {
        self.purge_rows_alone(
            Purge::of("fairness_flags", round).before(cutoff_ms),
            self.purge_by_time(&PURGE_FLAGS, cutoff_ms),
        )
        .await
    }

    /// Deletes the operators' request keys taken before `cutoff_ms`, oldest first.
    async fn purge_request_keys(&self, cutoff_ms: i64) -> PortResult<u64> {
        self.purge_by_time(&PURGE_REQUEST_KEYS, cutoff_ms).await
    }

    /// Deletes the rows of `sql`'s table written before `cutoff_ms`, oldest first along its
    /// time column, about 2000 per write transaction (every row of one instant at once).
    async fn purge_by_time(&self, sql: &PurgeByTime, cutoff_ms: i64) -> PortResult<u64> {
        let step = DB::placeholders(sql.step);
        let through = DB::placeholders(sql.through);
        let before = DB::placeholders(sql.before);
        let mut purged = 0;
        loop {
            let end: Option<i64> = within::<DB, _>(sql.call, async {
                sqlx::query_scalar(&step)
                    .bind(cutoff_ms)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error::<DB>)
            })
            .await?;
            let Some(end) = end else {
                let rest = sqlx::query(&before).bind(cutoff_ms);
                return Ok(purged + self.write_in_turn(sql.call, rest).await?);
            };
            purged += self
                .write_in_turn(sql.call, sqlx::query(&through).bind(end))
                .await?;
            // Let the writers in between steps.
            tokio::task::yield_now().await;
        }
    }

    /// Runs the `DELETE` or `UPDATE` `query` in a write transaction of its own (repository call
    /// `call`); how many rows it changed.
    pub(crate) async fn write_in_turn<'q>(
        &self,
        call: &'static str,
        query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    ) -> PortResult<u64> {
        within::<DB, _>(call, async {
            let (mut tx, _turn) = self.begin_write().await?;
            let done = query.execute(&mut *tx).await.map_err(db_error::<DB>)?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(DB::rows_affected(&done))
        })
        .await
    }

    /// [`SqlRepository::purge_before`] on `processed_events` of `consumer`, or with `None` on
    /// `fairness_verdicts`.
    async fn purge_table(&self, consumer: Option<&str>, cutoff_ms: i64) -> PortResult<u64> {
        let sql = if consumer.is_some() {
            &PURGE_PROCESSED
        } else {
            &PURGE_VERDICTS
        };
        let step = DB::placeholders(sql.step);
        let delete = DB::placeholders(sql.delete);
        let mut after = String::new();
        let mut purged = 0;
        loop {
            let (end, earliest, keys): (Option<Text>, Option<i64>, i64) =
                within::<DB, _>("purge_before", async {
                    let mut q = sqlx::query_as(&step).bind(after.as_str());
                    if let Some(c) = consumer {
                        q = q.bind(c);
                    }
                    q.fetch_one(&self.pool).await.map_err(db_error::<DB>)
                })
                .await?;
            let Some(end) = end else {
                return Ok(purged);
            };
            // Rows written after the read are newer than the cutoff: the delete leaves them.
            if earliest.is_some_and(|done_at| done_at < cutoff_ms) {
                let q = sqlx::query(&delete)
                    .bind(after.as_str())
                    .bind(end.0.as_str());
                let q = match consumer {
                    Some(c) => q.bind(c),
                    None => q,
                };
                purged += self
                    .write_in_turn("purge_before", q.bind(cutoff_ms))
                    .await?;
            }
            if keys < PURGE_STEP {
                return Ok(purged);
            }
            after = end.0;
            // Let the writers in between steps.
            tokio::task::yield_now().await;
        }
    }

    pub(crate) async fn flags(&self, player_id: Option<&str>, limit: u32) -> PortResult<Vec<Flag>> {
        on_reader!(self, |pool| self.flags_on(pool, player_id, limit).await)
    }

    async fn flags_on(
        &self,
        pool: &Pool<DB>,
        player_id: Option<&str>,
        limit: u32,
    ) -> PortResult<Vec<Flag>> {
        within_on::<DB, _>("flags", self.which(pool), async {
            let mut qb = Statement::<DB>::new(
                "SELECT event_id, player_id, event_type, flag_value, z_score, at_ms \
                 FROM fairness_flags",
            );
            if let Some(p) = player_id {
                qb.push(" WHERE player_id = ").bind(p);
            }
            qb.push(" ORDER BY at_ms DESC, id DESC LIMIT ")
                .bind(i64::from(limit));
            let (sql, args) = qb.finish()?;
            let rows: Vec<(Text, Text, Text, f64, f64, i64)> = sqlx::query_as_with(&sql, args)
                .persistent(false)
                .fetch_all(pool)
                .await
                .map_err(db_error::<DB>)?;
            rows.into_iter()
                .map(|(id, player_id, t, value, z_score, at_ms)| {
                    Ok(Flag {
                        event_id: parse_uuid(&id.0)?,
                        player_id: player_id.0,
                        event_type: parse_event_type(&t.0)?,
                        value,
                        z_score,
                        at_ms,
                    })
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll};

    use liveops_core::PortError;
    use liveops_testkit::served::metric_sum;
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::within;

    /// Polls `call` once (no runtime: SQLite calls have no timer) and drops it if still pending.
    fn poll_once<T>(call: impl Future<Output = T>) -> Poll<T> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        pin!(call).as_mut().poll(&mut cx)
    }

    #[test]
    fn every_call_is_timed_and_each_failure_counted_by_kind() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let ok = poll_once(within::<sqlx::Sqlite, _>("progress", async { Ok(1) }));
            assert!(matches!(ok, Poll::Ready(Ok(1))));
            let down = within::<sqlx::Sqlite, ()>("progress", async {
                Err(PortError::Unavailable("down".into()))
            });
            assert!(matches!(poll_once(down), Poll::Ready(Err(_))));
            let corrupt = within::<sqlx::Sqlite, ()>("boards", async {
                Err(PortError::Corrupt("unknown window".into()))
            });
            assert!(matches!(poll_once(corrupt), Poll::Ready(Err(_))));
            // A caller that gives up (a client gone) drops the call unfinished.
            let abandoned = within::<sqlx::Sqlite, ()>("boards", std::future::pending());
            assert!(poll_once(abandoned).is_pending());
        });
        let text = handle.render();
        let sum = |name: &str, labels: &[&str]| metric_sum(&text, name, labels);
        let (progress, boards) = ("call=\"progress\"", "call=\"boards\"");
        let primary = ["backend=\"SQLite\"", "pool=\"primary\""];
        assert_eq!(sum("db_call_seconds_count", &primary), 4.0, "{text}");
        assert_eq!(sum("db_call_seconds_count", &[progress]), 2.0, "{text}");
        assert_eq!(sum("db_errors_total", &[progress]), 1.0, "{text}");
        assert_eq!(
            sum("db_errors_total", &[progress, "kind=\"unavailable\""]),
            1.0
        );
        assert_eq!(
            sum("db_errors_total", &[boards, "kind=\"corrupt\""]),
            1.0,
            "{text}"
        );
        assert_eq!(
            sum("db_errors_total", &[boards, "kind=\"cancelled\""]),
            1.0,
            "{text}"
        );
    }

    /// A server backend's call bound (5 s) ends a call that does not answer: counted once, as a
    /// timeout, not also as cancelled.
    #[cfg(feature = "postgres")]
    #[test]
    fn a_call_past_the_bound_is_one_timeout() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let hung = within::<sqlx::Postgres, ()>("commit_scores", std::future::pending());
            let answer = runtime.block_on(hung);
            assert!(
                matches!(answer, Err(PortError::Unavailable(_))),
                "{answer:?}"
            );
        });
        let text = handle.render();
        let call = ["backend=\"PostgreSQL\"", "call=\"commit_scores\""];
        assert_eq!(
            metric_sum(&text, "db_call_seconds_count", &call),
            1.0,
            "{text}"
        );
        assert_eq!(metric_sum(&text, "db_errors_total", &call), 1.0, "{text}");
        let timeouts = [call[0], call[1], "kind=\"timeout\""];
        assert_eq!(
            metric_sum(&text, "db_errors_total", &timeouts),
            1.0,
            "{text}"
        );
    }
}
