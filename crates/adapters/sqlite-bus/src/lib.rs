//! [`SqliteBus`]: the durable local event log, the embedded default [`Bus`]: one SQLite file, one
//! writer thread committing queued commands together (group commit), delivery state in memory and
//! each group's position in the file. The design: `docs/adr/0011-local-bus.md`.
//!
//! [`SqliteBus::backup`] copies a live bus file consistently (see [`backup`]).

pub mod backup;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use liveops_core::ports::{
    long_poll, BusOptions, DeadLetterRequest, Delivery, Health, Message, PollRequest,
};
use liveops_core::{Bus, PortError, PortResult};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

/// How often a waiting poll re-checks for messages whose visibility timeout has passed.
const RECHECK: Duration = Duration::from_millis(50);

/// How long a first poll of a group waits for another process to give up its lock.
const CONSUMER_LOCK_WAIT: Duration = Duration::from_secs(1);

/// How long a statement waits for another process's write lock before giving up with "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Page cache (`PRAGMA cache_size`; negative is KiB): 16 MiB keeps the hot indexes in memory.
const CACHE_SIZE: &str = "-16384";

/// Bytes of the file read through a memory map (`PRAGMA mmap_size`), sparing a copy per page.
const MMAP_SIZE: &str = "268435456";

/// How often [`SqliteBus::run_upkeep`] deletes what every group has consumed.
const COMPACT_EVERY: Duration = Duration::from_secs(30);

/// `name` with every character but `[A-Za-z0-9_-]` as `_`, for a file name.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The map of consumed groups, whatever a panicking holder left in it.
fn lock_map<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A count read from SQL (never negative in our tables) as `u64`.
fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A `u64` stored in a signed column, saturating.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The file a bus location names: a path, or a `sqlite:` URL (`sqlite://data/bus.db?mode=rwc`).
/// Its parent directories are created.
fn bus_file(location: &Path) -> Result<PathBuf, PortError> {
    let text = location.to_string_lossy();
    let path = match text.strip_prefix("sqlite:") {
        Some(rest) => {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            PathBuf::from(rest.split('?').next().unwrap_or_default())
        }
        None => location.to_path_buf(),
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| {
                PortError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
    }
    Ok(path)
}

/// Most messages written by one group commit.
pub const MAX_BATCH: usize = 4096;

/// Commands waiting for the writer before publishers are made to wait for room.
const QUEUE: usize = 4096;

/// Most messages one compaction step deletes per topic (bounds the time the write lock is held).
const COMPACT_STEP: i64 = 10_000;

/// Messages kept of a topic no group reads (the quarantine, `events.flagged`), newest first:
/// enough for a group that comes later to read back the recent ones, without the file
/// growing for as long as the process runs.
pub const UNGROUPED_KEEP: u64 = 100_000;

/// Longest time a group's moved position stays unwritten (what a crash may redeliver).
pub const PERSIST_EVERY: Duration = Duration::from_millis(200);

/// The most unread messages a lag counts one by one (a few milliseconds); a larger backlog
/// reads as the span of its message numbers, an upper bound that grows as it grows.
pub const LAG_COUNTED: i64 = 100_000;

/// How often a consuming group looks for dead letters another process put back.
const REPLAY_CHECK: Duration = Duration::from_secs(1);

/// Schema version this code writes (`PRAGMA user_version`). The bus file has its own, simpler
/// migration step rather than the repository's sqlx migrator: it is driven by rusqlite on the
/// writer thread, which holds the file's only write connection, and its schema is two tables
/// upgraded in one transaction at open.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bus_messages (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT    NOT NULL,
    msg_key TEXT    NOT NULL,
    payload BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_messages_topic ON bus_messages (topic, seq);
CREATE TABLE IF NOT EXISTS bus_groups (
    topic    TEXT    NOT NULL,
    grp      TEXT    NOT NULL,
    next_seq INTEGER NOT NULL,
    PRIMARY KEY (topic, grp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_dead (
    topic      TEXT    NOT NULL,
    grp        TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    dead_at_ms INTEGER NOT NULL,
    replayed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bus_dead_seq ON bus_dead (topic, seq);
";

/// From schema 1, which stored every in-flight delivery: a group's position becomes its oldest
/// in-flight message, so those are delivered again.
const UPGRADE_FROM_1: &str = "
ALTER TABLE bus_dead ADD COLUMN replayed INTEGER NOT NULL DEFAULT 0;
UPDATE bus_groups SET next_seq = MIN(next_seq, COALESCE(
    (SELECT MIN(p.seq) FROM bus_pending p WHERE p.topic = bus_groups.topic AND p.grp = bus_groups.grp),
    next_seq));
DROP TABLE bus_pending;
";

fn stopped() -> PortError {
    PortError::Unavailable("the bus writer has stopped".into())
}

/// Maps a SQLite error: a damaged file is `Corrupt`, anything else (busy, I/O, full disk)
/// `Unavailable`, which callers retry.
fn db_error(e: rusqlite::Error) -> PortError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            PortError::Corrupt(format!("bus file: {e}"))
        }
        _ => PortError::Unavailable(format!("bus file: {e}")),
    }
}

/// A request for the writer thread.
#[derive(Debug)]
enum Op {
    Publish {
        topic: String,
        messages: Vec<Message>,
    },
    EnsureGroup {
        topic: String,
        group: String,
    },
    Poll {
        topic: String,
        group: String,
        max: usize,
    },
    Ack {
        topic: String,
        group: String,
        seqs: Vec<i64>,
    },
    Reclaim {
        topic: String,
        group: String,
    },
    Replay {
        topic: String,
        group: String,
    },
    Lag {
        topic: String,
        group: String,
    },
    DeadLetters {
        topic: String,
        group: String,
        limit: usize,
    },
    Compact {
        ungrouped_keep: i64,
    },
    Flush,
    Health,
}

impl Op {
    /// How much of a batch's budget this op takes.
    fn weight(&self) -> usize {
        match self {
            Op::Publish { messages, .. } => messages.len().max(1),
            Op::Poll { max, .. } => *max / 4 + 1,
            _ => 1,
        }
    }
}

/// What the writer answers, once the batch is committed.
#[derive(Debug)]
enum Answer {
    Done,
    Count(u64),
    Deliveries(Vec<Delivery>),
}

struct Command {
    op: Op,
    reply: oneshot::Sender<PortResult<Answer>>,
}

/// Side effects to announce after a commit.
#[derive(Default)]
struct Effects {
    /// Something became deliverable: wake waiting polls.
    wake: bool,
    /// Messages moved to dead letters: (topic, group, how many).
    dead: Vec<(String, String, u64)>,
    /// Messages appended.
    published: u64,
}

/// The durable local bus on a SQLite file. See the module docs.
#[derive(Debug)]
pub struct SqliteBus {
    commands: mpsc::Sender<Command>,
    published: Arc<Notify>,
    /// The bus file, beside which each consumed group's lock file lies.
    path: PathBuf,
    /// The groups this handle consumes, each with its lock file held (see [`SqliteBus::consume`]).
    consuming: std::sync::Mutex<HashMap<(String, String), std::fs::File>>,
}

impl SqliteBus {
    /// Opens (creating if missing, parent directories included) the bus file at `location` (a
    /// path, or a `sqlite:` URL) and starts its writer thread.
    pub async fn open(location: impl AsRef<Path>, opts: BusOptions) -> Result<Self, PortError> {
        let path = bus_file(location.as_ref())?;
        let file = path.clone();
        let (commands, queue) = mpsc::channel(QUEUE);
        let published = Arc::new(Notify::new());
        let (ready, opened) = oneshot::channel();
        let wake = published.clone();
        std::thread::Builder::new()
            .name("liveops-bus".into())
            .spawn(move || match Writer::open(&file, opts, wake) {
                Ok(writer) => {
                    let _ = ready.send(Ok(()));
                    writer.run(queue);
                }
                Err(error) => {
                    let _ = ready.send(Err(error));
                }
            })
            .map_err(|e| PortError::Unavailable(format!("cannot start the bus writer: {e}")))?;
        opened.await.map_err(|_| stopped())??;
        Ok(Self {
            commands,
            published,
            path,
            consuming: std::sync::Mutex::default(),
        })
    }

    /// Takes `group`'s lock on `topic` for this handle, once: the delivery state of a group lives
    /// in the memory of the one process consuming it (ADR 0011), so a second process consuming
    /// the same group from the same file (a second `serve` on one `DATA_DIR`) is refused, not
    /// served the same messages. A lock held elsewhere is tried again for a second (a process
    /// handing over as it stops); the operating system drops it with its holder, however it ends.
    async fn consume(&self, topic: &str, group: &str) -> PortResult<()> {
        let key = (topic.to_owned(), group.to_owned());
        if self.path == Path::new(":memory:") || lock_map(&self.consuming).contains_key(&key) {
            return Ok(());
        }
        let name = format!("{}.{}.lock", safe_name(topic), safe_name(group));
        let lock = self.path.with_extension(format!("db.consumer.{name}"));
        let deadline = Instant::now() + CONSUMER_LOCK_WAIT;
        loop {
            let io = |e: std::io::Error| {
                PortError::Unavailable(format!("bus: cannot lock {}: {e}", lock.display()))
            };
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {
                    lock_map(&self.consuming).insert(key, file);
                    return Ok(());
                }
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(RECHECK).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(PortError::Unavailable(format!(
                        "bus: another process consumes group {group} of {topic} from {} (one \
                         process per group on a bus file: is a second liveops running on this \
                         DATA_DIR?)",
                        self.path.display()
                    )))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
    }

    async fn call(&self, op: Op) -> PortResult<Answer> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command { op, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn count(&self, op: Op) -> PortResult<u64> {
        match self.call(op).await? {
            Answer::Count(n) => Ok(n),
            other => Err(PortError::Corrupt(format!("bus writer answered {other:?}"))),
        }
    }

    /// Makes every message `group` has in flight in this process deliverable now, instead of
    /// after its visibility timeout. Returns how many messages.
    pub async fn reclaim(&self, topic: &str, group: &str) -> PortResult<u64> {
        self.count(Op::Reclaim {
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
        .await
    }

    /// Writes every group's position now (it is also written every [`PERSIST_EVERY`] and when
    /// the last handle goes): call it at shutdown, after the consumers stopped.
    pub async fn flush(&self) -> PortResult<()> {
        self.call(Op::Flush).await.map(|_| ())
    }

    /// Compacts the file every 30 s until `stop`, then writes the groups' positions: the upkeep
    /// the supervisor runs after every consumer of this process stopped.
    pub async fn run_upkeep(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(COMPACT_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(error) = self.compact().await {
                        tracing::warn!(%error, "bus compaction failed");
                    }
                }
            }
        }
        if let Err(error) = self.flush().await {
            tracing::warn!(%error, "writing the bus positions failed");
        }
    }

    /// Deletes messages below every group's position on their topic (dead letters are kept),
    /// and of a topic no group reads (the quarantine, `events.flagged`) all but the newest
    /// [`UNGROUPED_KEEP`]. Call it periodically. Returns how many were deleted.
    pub async fn compact(&self) -> PortResult<u64> {
        self.compact_keeping(UNGROUPED_KEEP).await
    }

    /// [`SqliteBus::compact`], keeping `ungrouped_keep` messages of each topic no group reads.
    pub async fn compact_keeping(&self, ungrouped_keep: u64) -> PortResult<u64> {
        let ungrouped_keep = i64::try_from(ungrouped_keep).unwrap_or(i64::MAX);
        let mut total = 0;
        loop {
            let n = self.count(Op::Compact { ungrouped_keep }).await?;
            total += n;
            if n < COMPACT_STEP as u64 {
                return Ok(total);
            }
        }
    }
}

#[async_trait]
impl Bus for SqliteBus {
    async fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()> {
        self.call(Op::EnsureGroup {
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
        .await
        .map(|_| ())
    }

    async fn publish(&self, topic: &str, messages: Vec<Message>) -> PortResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.call(Op::Publish {
            topic: topic.to_owned(),
            messages,
        })
        .await
        .map(|_| ())
    }

    async fn receive(&self, request: PollRequest<'_>) -> PortResult<Vec<Delivery>> {
        self.consume(request.topic, request.group).await?;
        // Another process may publish to the same file, and in-flight messages time out:
        // the long poll looks again every so often even without a wake-up.
        long_poll(&self.published, request.wait, RECHECK, || async {
            let poll = Op::Poll {
                topic: request.topic.to_owned(),
                group: request.group.to_owned(),
                max: request.max,
            };
            match self.call(poll).await? {
                Answer::Deliveries(d) => Ok(d),
                other => Err(PortError::Corrupt(format!("bus writer answered {other:?}"))),
            }
        })
        .await
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> PortResult<()> {
        let seqs: Vec<i64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
        if seqs.is_empty() {
            return Ok(());
        }
        self.call(Op::Ack {
            topic: topic.to_owned(),
            group: group.to_owned(),
            seqs,
        })
        .await
        .map(|_| ())
    }

    /// Gives up the group's lock (a process stopping gracefully hands it over at once); a
    /// consumer of this handle still polling takes it again.
    async fn leave(&self, topic: &str, group: &str, _consumer: &str) -> PortResult<()> {
        lock_map(&self.consuming).remove(&(topic.to_owned(), group.to_owned()));
        Ok(())
    }

    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
        self.count(Op::Lag {
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
        .await
    }

    async fn read_dead_letters(&self, request: DeadLetterRequest<'_>) -> PortResult<Vec<Delivery>> {
        let (topic, group, limit) = (request.topic, request.group, request.limit);
        match self
            .call(Op::DeadLetters {
                topic: topic.to_owned(),
                group: group.to_owned(),
                limit,
            })
            .await?
        {
            Answer::Deliveries(d) => Ok(d),
            other => Err(PortError::Corrupt(format!("bus writer answered {other:?}"))),
        }
    }

    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64> {
        self.count(Op::Replay {
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
        .await
    }
}

#[async_trait]
impl Health for SqliteBus {
    async fn healthcheck(&self) -> PortResult<()> {
        self.call(Op::Health).await.map(|_| ())
    }
}

fn delivery(seq: i64, key: String, payload: Vec<u8>, deliveries: u32) -> Delivery {
    Delivery {
        id: seq.to_string(),
        key,
        payload: payload.into(),
        deliveries,
    }
}

/// A delivered, unacked message.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    deliveries: u32,
    /// When it is delivered again unless acked: a monotonic instant, so a step of the wall
    /// clock neither holds it back nor hands every message out again at once.
    due: Instant,
}

/// A group this process consumes.
#[derive(Debug)]
struct GroupState {
    /// Next sequence number to hand out for the first time.
    next: i64,
    /// Delivered and not acked.
    pending: BTreeMap<i64, InFlight>,
    /// Dead letters put back: their rows stay (marked) until acked, so a crash keeps them.
    replayed: HashSet<i64>,
    /// The position last written to the file.
    stored: i64,
    /// When the position was last written.
    stored_at: Instant,
    /// When the file was last checked for dead letters put back by another process.
    replay_checked: Instant,
}

impl GroupState {
    /// Every message below this is acked or dead (put-back dead letters are kept by their rows).
    fn position(&self) -> i64 {
        self.pending
            .keys()
            .find(|s| !self.replayed.contains(s))
            .map_or(self.next, |&s| s.min(self.next))
    }
}

type GroupKey = (String, String);

/// Owns the connection and the groups' delivery state; applies queued commands in batches.
struct Writer {
    conn: Connection,
    opts: BusOptions,
    published: Arc<Notify>,
    groups: HashMap<GroupKey, GroupState>,
}

impl Writer {
    fn open(path: &Path, opts: BusOptions, published: Arc<Notify>) -> Result<Self, PortError> {
        let conn = Connection::open(path).map_err(db_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_error)?;
        if !mode.eq_ignore_ascii_case("wal") && path != Path::new(":memory:") {
            return Err(PortError::Unavailable(format!(
                "bus file {} cannot use WAL (journal mode {mode})",
                path.display()
            )));
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA cache_size = {CACHE_SIZE}; PRAGMA mmap_size = {MMAP_SIZE};"
        ))
        .map_err(db_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db_error)?;
        if version > SCHEMA_VERSION {
            return Err(PortError::Corrupt(format!(
                "bus file has schema version {version}; this build knows up to {SCHEMA_VERSION}"
            )));
        }
        if version < SCHEMA_VERSION {
            let upgrade = if version == 1 { UPGRADE_FROM_1 } else { "" };
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {upgrade} {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(db_error)?;
        }
        Ok(Self {
            conn,
            opts,
            published,
            groups: HashMap::new(),
        })
    }

    fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        while let Some(first) = queue.blocking_recv() {
            let mut budget = first.op.weight();
            let mut batch = vec![first];
            while budget < MAX_BATCH {
                match queue.try_recv() {
                    Ok(cmd) => {
                        budget += cmd.op.weight();
                        batch.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            self.apply(batch);
        }
        // Every handle is gone: write the groups' positions, then close (checkpoints the WAL).
        if let Err(error) = self.transaction(|w, _| w.store_positions(true)) {
            tracing::warn!(%error, "writing the bus groups' positions at close failed");
        }
        if let Err((_, error)) = self.conn.close() {
            tracing::warn!(%error, "closing the bus file failed");
        }
    }

    fn apply(&mut self, batch: Vec<Command>) {
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|c| (c.op, c.reply)).unzip();
        let result = self.transaction(|w, fx| {
            let mut answers = Vec::with_capacity(ops.len());
            for op in &ops {
                answers.push(w.execute(op, fx)?);
            }
            w.store_positions(false)?;
            Ok(answers)
        });
        match result {
            Ok((answers, fx)) => {
                if fx.published > 0 {
                    metrics::counter!("bus_published_total").increment(fx.published);
                    metrics::histogram!("bus_group_commit_messages").record(fx.published as f64);
                }
                for (topic, group, n) in fx.dead {
                    tracing::warn!(%topic, %group, messages = n, "moved to dead letters");
                    metrics::counter!("bus_dead_letters_total", "topic" => topic, "group" => group)
                        .increment(n);
                }
                if fx.wake {
                    self.published.notify_waiters();
                }
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that stopped waiting is fine: polled messages come back later.
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(error) => {
                tracing::warn!(%error, commands = replies.len(), "bus batch failed");
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Runs `body` in one write transaction. On failure the groups' delivery state is dropped
    /// and reloaded from the file on next use, so memory never runs ahead of what was committed
    /// (in-flight messages are delivered again).
    fn transaction<T>(
        &mut self,
        body: impl FnOnce(&mut Self, &mut Effects) -> PortResult<T>,
    ) -> PortResult<(T, Effects)> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(db_error)?;
        let mut fx = Effects::default();
        let result = body(self, &mut fx).and_then(|v| {
            self.conn.execute_batch("COMMIT").map_err(db_error)?;
            Ok(v)
        });
        match result {
            Ok(v) => Ok((v, fx)),
            Err(error) => {
                if !self.conn.is_autocommit() {
                    if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                        tracing::warn!(error = %e, "bus rollback failed");
                    }
                }
                self.groups.clear();
                Err(error)
            }
        }
    }

    fn execute(&mut self, op: &Op, fx: &mut Effects) -> PortResult<Answer> {
        Ok(match op {
            Op::Publish { topic, messages } => {
                let mut insert = self
                    .conn
                    .prepare_cached(
                        "INSERT INTO bus_messages (topic, msg_key, payload) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(db_error)?;
                for m in messages {
                    insert
                        .execute(params![topic, m.key, m.payload.as_ref()])
                        .map_err(db_error)?;
                }
                fx.published += messages.len() as u64;
                fx.wake = true;
                Answer::Done
            }
            Op::EnsureGroup { topic, group } => {
                self.ensure_group(topic, group)?;
                Answer::Done
            }
            Op::Poll { topic, group, max } => {
                Answer::Deliveries(self.take(topic, group, *max, fx)?)
            }
            Op::Ack { topic, group, seqs } => {
                self.ack(topic, group, seqs)?;
                Answer::Done
            }
            Op::Reclaim { topic, group } => {
                let key = (topic.clone(), group.clone());
                let n = self.groups.get_mut(&key).map_or(0, |g| {
                    let now = Instant::now();
                    g.pending.values_mut().for_each(|f| f.due = now);
                    g.pending.len() as u64
                });
                fx.wake |= n > 0;
                Answer::Count(n)
            }
            Op::Replay { topic, group } => {
                let n = self.replay(topic, group)?;
                fx.wake |= n > 0;
                Answer::Count(n)
            }
            Op::Lag { topic, group } => Answer::Count(self.lag(topic, group)?),
            Op::DeadLetters {
                topic,
                group,
                limit,
            } => Answer::Deliveries(self.dead_letters(topic, group, *limit)?),
            Op::Flush => {
                self.store_positions(true)?;
                Answer::Done
            }
            Op::Compact { ungrouped_keep } => {
                self.store_positions(true)?;
                Answer::Count(self.compact(*ungrouped_keep)?)
            }
            Op::Health => {
                self.conn
                    .query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(db_error)?;
                Answer::Done
            }
        })
    }

    /// A new group starts at sequence 0, that is at the oldest retained message.
    fn ensure_group(&self, topic: &str, group: &str) -> PortResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO bus_groups (topic, grp, next_seq) VALUES (?1, ?2, 0) \
                 ON CONFLICT (topic, grp) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![topic, group]))
            .map(|_| ())
            .map_err(db_error)
    }

    /// The stored position of a group, creating the group if missing.
    fn stored_position(&self, topic: &str, group: &str) -> PortResult<i64> {
        self.ensure_group(topic, group)?;
        self.conn
            .prepare_cached("SELECT next_seq FROM bus_groups WHERE topic = ?1 AND grp = ?2")
            .and_then(|mut s| s.query_row(params![topic, group], |r| r.get(0)))
            .map_err(db_error)
    }

    /// The delivery state of a group this process consumes, loaded from the file on first use,
    /// beside the connection.
    fn group(&mut self, topic: &str, group: &str) -> PortResult<(&Connection, &mut GroupState)> {
        let key = (topic.to_owned(), group.to_owned());
        if !self.groups.contains_key(&key) {
            let stored = self.stored_position(topic, group)?;
            let now = Instant::now();
            let mut state = GroupState {
                next: stored,
                pending: BTreeMap::new(),
                replayed: HashSet::new(),
                stored,
                stored_at: now,
                replay_checked: now,
            };
            put_back(&mut state, replayed_rows(&self.conn, topic, group)?);
            self.groups.insert(key.clone(), state);
        }
        let state = self
            .groups
            .get_mut(&key)
            .ok_or_else(|| PortError::Corrupt("bus group state vanished".into()))?;
        Ok((&self.conn, state))
    }

    /// One poll: timed-out messages first (or to the dead letters after their last delivery),
    /// then new ones from the group's cursor, in sequence order.
    fn take(
        &mut self,
        topic: &str,
        group: &str,
        max: usize,
        fx: &mut Effects,
    ) -> PortResult<Vec<Delivery>> {
        let now = Instant::now();
        let deadline = now + self.opts.visibility_timeout;
        let max_deliveries = self.opts.max_deliveries;
        let (conn, g) = self.group(topic, group)?;

        if g.replay_checked.elapsed() >= REPLAY_CHECK {
            put_back(g, replayed_rows(conn, topic, group)?);
            g.replay_checked = Instant::now();
        }

        let expired: Vec<(i64, InFlight)> = g
            .pending
            .iter()
            .filter(|(_, f)| f.due <= now)
            .map(|(&s, &f)| (s, f))
            .collect();
        let (dead, again): (Vec<_>, Vec<_>) = expired
            .into_iter()
            .partition(|(_, f)| f.deliveries >= max_deliveries);
        if !dead.is_empty() {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO bus_dead (topic, grp, seq, deliveries, dead_at_ms, replayed) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 0) \
                     ON CONFLICT (topic, grp, seq) DO UPDATE SET \
                     deliveries = excluded.deliveries, dead_at_ms = excluded.dead_at_ms, replayed = 0",
                )
                .map_err(db_error)?;
            let dead_at_ms = liveops_core::now_ms();
            for (seq, f) in &dead {
                insert
                    .execute(params![topic, group, seq, f.deliveries, dead_at_ms])
                    .map_err(db_error)?;
                g.pending.remove(seq);
                g.replayed.remove(seq);
            }
            fx.dead
                .push((topic.to_owned(), group.to_owned(), dead.len() as u64));
        }

        let mut out = Vec::new();
        let mut fetch = conn
            .prepare_cached("SELECT msg_key, payload FROM bus_messages WHERE seq = ?1")
            .map_err(db_error)?;
        for (seq, f) in again.into_iter().take(max) {
            let row: Option<(String, Vec<u8>)> = fetch
                .query_row(params![seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db_error)?;
            let Some((key, payload)) = row else {
                tracing::error!(seq, %topic, %group, "an in-flight message vanished from the bus file");
                g.pending.remove(&seq);
                g.replayed.remove(&seq);
                continue;
            };
            let again = InFlight {
                deliveries: f.deliveries + 1,
                due: deadline,
            };
            g.pending.insert(seq, again);
            out.push(delivery(seq, key, payload, again.deliveries));
        }

        let room = max.saturating_sub(out.len());
        if room > 0 {
            // Never a message the group holds a dead letter of: dead stays dead until replayed
            // (then it is put back by its row), also when the group's position read back from
            // the file is below it (a crash, or a failed batch, before the position was written).
            let mut select = conn
                .prepare_cached(
                    "SELECT seq, msg_key, payload FROM bus_messages m \
                     WHERE topic = ?1 AND seq >= ?2 AND NOT EXISTS (SELECT 1 FROM bus_dead d \
                       WHERE d.topic = ?1 AND d.grp = ?4 AND d.seq = m.seq) \
                     ORDER BY seq LIMIT ?3",
                )
                .map_err(db_error)?;
            let rows = select
                .query_map(params![topic, g.next, to_i64(room as u64), group], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(db_error)?;
            for row in rows {
                let (seq, key, payload): (i64, String, Vec<u8>) = row.map_err(db_error)?;
                g.next = seq + 1;
                g.pending.insert(
                    seq,
                    InFlight {
                        deliveries: 1,
                        due: deadline,
                    },
                );
                out.push(delivery(seq, key, payload, 1));
            }
        }
        Ok(out)
    }

    fn ack(&mut self, topic: &str, group: &str, seqs: &[i64]) -> PortResult<()> {
        let (conn, g) = self.group(topic, group)?;
        for seq in seqs {
            // A put-back dead letter's row goes once it is acked; one the group has not read
            // past yet (its position came back from the file below it) stays, marked done
            // (`replayed = 2`), so it is not read again as new, until the stored position passes.
            if g.pending.remove(seq).is_some() && g.replayed.remove(seq) {
                let sql = if *seq < g.next {
                    "DELETE FROM bus_dead WHERE topic = ?1 AND grp = ?2 AND seq = ?3"
                } else {
                    "UPDATE bus_dead SET replayed = 2 WHERE topic = ?1 AND grp = ?2 AND seq = ?3"
                };
                conn.prepare_cached(sql)
                    .and_then(|mut s| s.execute(params![topic, group, seq]))
                    .map_err(db_error)?;
            }
        }
        Ok(())
    }

    /// Puts the group's dead letters back for delivery (in this process if it consumes the
    /// group, else in the one that does, within [`REPLAY_CHECK`]).
    fn replay(&mut self, topic: &str, group: &str) -> PortResult<u64> {
        let seqs: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT seq FROM bus_dead WHERE topic = ?1 AND grp = ?2 AND replayed = 0",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![topic, group], |r| r.get(0))
                .map_err(db_error)?;
            rows.collect::<Result<_, _>>().map_err(db_error)?
        };
        self.conn
            .prepare_cached(
                "UPDATE bus_dead SET replayed = 1 WHERE topic = ?1 AND grp = ?2 AND replayed = 0",
            )
            .and_then(|mut s| s.execute(params![topic, group]))
            .map_err(db_error)?;
        let n = seqs.len() as u64;
        if let Some(g) = self.groups.get_mut(&(topic.to_owned(), group.to_owned())) {
            put_back(g, seqs);
        }
        Ok(n)
    }

    /// Messages the group has not acked yet (new plus in flight).
    fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
        let (from, in_flight) = match self.groups.get(&(topic.to_owned(), group.to_owned())) {
            Some(g) => (g.next, g.pending.len() as u64),
            None => {
                let stored: Option<i64> = self
                    .conn
                    .prepare_cached("SELECT next_seq FROM bus_groups WHERE topic = ?1 AND grp = ?2")
                    .and_then(|mut s| s.query_row(params![topic, group], |r| r.get(0)).optional())
                    .map_err(db_error)?;
                (stored.unwrap_or(0), 0)
            }
        };
        // Counted on the writer's thread, so at most LAG_COUNTED of them (a few milliseconds):
        // a backlog of millions would otherwise hold publishes for a second every poll. Past
        // that, the span of message numbers (other topics' messages among them) bounds it and
        // still grows with the backlog.
        let mut fresh: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM (SELECT 1 FROM bus_messages WHERE topic = ?1 AND seq >= ?2 \
                 LIMIT ?3)",
            )
            .and_then(|mut s| s.query_row(params![topic, from, LAG_COUNTED], |r| r.get(0)))
            .map_err(db_error)?;
        if fresh >= LAG_COUNTED {
            let last: Option<i64> = self
                .conn
                .prepare_cached("SELECT MAX(seq) FROM bus_messages WHERE topic = ?1")
                .and_then(|mut s| s.query_row(params![topic], |r| r.get(0)))
                .map_err(db_error)?;
            fresh = fresh.max(last.unwrap_or(0).saturating_sub(from) + 1);
        }
        Ok(to_u64(fresh) + in_flight)
    }

    fn dead_letters(&self, topic: &str, group: &str, limit: usize) -> PortResult<Vec<Delivery>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.seq, m.msg_key, m.payload, d.deliveries FROM bus_dead d \
                 JOIN bus_messages m ON m.seq = d.seq \
                 WHERE d.topic = ?1 AND d.grp = ?2 AND d.replayed = 0 ORDER BY d.seq LIMIT ?3",
            )
            .map_err(db_error)?;
        let rows = stmt
            .query_map(params![topic, group, to_i64(limit as u64)], |r| {
                Ok(delivery(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    u32::try_from(r.get::<_, i64>(3)?).unwrap_or(u32::MAX),
                ))
            })
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    /// Writes the positions that moved, if [`PERSIST_EVERY`] passed since their last write (or
    /// at once when `all`).
    fn store_positions(&mut self, all: bool) -> PortResult<()> {
        let mut moved: Vec<(&GroupKey, &mut GroupState, i64)> = self
            .groups
            .iter_mut()
            .filter_map(|(k, g)| {
                let at = g.position();
                (at > g.stored && (all || g.stored_at.elapsed() >= PERSIST_EVERY))
                    .then_some((k, g, at))
            })
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        let mut upsert = self
            .conn
            .prepare_cached(
                "INSERT INTO bus_groups (topic, grp, next_seq) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (topic, grp) DO UPDATE SET next_seq = MAX(next_seq, excluded.next_seq)",
            )
            .map_err(db_error)?;
        let mut done = self
            .conn
            .prepare_cached(
                "DELETE FROM bus_dead WHERE topic = ?1 AND grp = ?2 AND replayed = 2 AND seq < ?3",
            )
            .map_err(db_error)?;
        let now = Instant::now();
        for (key, g, at) in &mut moved {
            upsert
                .execute(params![key.0, key.1, *at])
                .map_err(db_error)?;
            // Replayed letters acked before the group read past them, now behind it.
            done.execute(params![key.0, key.1, *at]).map_err(db_error)?;
            // Were the commit to fail, every group is reloaded from the file anyway.
            g.stored = *at;
            g.stored_at = now;
        }
        Ok(())
    }

    /// The topics that hold messages, each found by one index seek.
    fn topics(&self) -> PortResult<Vec<String>> {
        let mut next = self
            .conn
            .prepare_cached("SELECT MIN(topic) FROM bus_messages WHERE topic > ?1")
            .map_err(db_error)?;
        let mut topics: Vec<String> = Vec::new();
        loop {
            let after = topics.last().map_or("", String::as_str);
            let topic: Option<String> = next.query_row([after], |r| r.get(0)).map_err(db_error)?;
            match topic {
                Some(t) => topics.push(t),
                None => return Ok(topics),
            }
        }
    }

    /// One step of retention: per topic, deletes up to [`COMPACT_STEP`] messages below every
    /// group's stored position that are not dead letters; of a topic no group reads, those
    /// older than its newest `ungrouped_keep`.
    fn compact(&self, ungrouped_keep: i64) -> PortResult<u64> {
        let mut floors: Vec<(String, i64)> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT topic, MIN(next_seq) FROM bus_groups GROUP BY topic")
                .map_err(db_error)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_error)?;
            rows.collect::<Result<_, _>>().map_err(db_error)?
        };
        for topic in self.topics()? {
            if floors.iter().any(|(t, _)| *t == topic) {
                continue;
            }
            let mut newest = self
                .conn
                .prepare_cached(
                    "SELECT seq FROM bus_messages WHERE topic = ?1 \
                     ORDER BY seq DESC LIMIT 1 OFFSET ?2",
                )
                .map_err(db_error)?;
            let floor: Option<i64> = newest
                .query_row(params![topic, ungrouped_keep.saturating_sub(1)], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_error)?;
            if let Some(floor) = floor {
                floors.push((topic, floor));
            }
        }
        let mut delete = self
            .conn
            .prepare_cached(
                "DELETE FROM bus_messages WHERE seq IN ( \
                   SELECT m.seq FROM bus_messages m WHERE m.topic = ?1 AND m.seq < ?2 \
                   AND NOT EXISTS (SELECT 1 FROM bus_dead d WHERE d.topic = m.topic AND d.seq = m.seq) \
                   ORDER BY m.seq LIMIT ?3)",
            )
            .map_err(db_error)?;
        let mut deleted = 0;
        for (topic, floor) in floors {
            deleted += delete
                .execute(params![topic, floor, COMPACT_STEP])
                .map_err(db_error)? as u64;
        }
        Ok(deleted)
    }
}

/// Sequence numbers of the group's put-back dead letters.
fn replayed_rows(conn: &Connection, topic: &str, group: &str) -> PortResult<Vec<i64>> {
    let mut stmt = conn
        .prepare_cached("SELECT seq FROM bus_dead WHERE topic = ?1 AND grp = ?2 AND replayed = 1")
        .map_err(db_error)?;
    let rows = stmt
        .query_map(params![topic, group], |r| r.get(0))
        .map_err(db_error)?;
    rows.collect::<Result<Vec<i64>, _>>().map_err(db_error)
}

/// Adds put-back dead letters to a group's in-flight set, deliverable now, delivery count reset.
fn put_back(g: &mut GroupState, seqs: Vec<i64>) {
    let now = Instant::now();
    for seq in seqs {
        if g.replayed.insert(seq) {
            g.pending.insert(
                seq,
                InFlight {
                    deliveries: 0,
                    due: now,
                },
            );
        }
    }
}
