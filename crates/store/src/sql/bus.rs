//! [`SqliteBus`]: the durable local event log, the embedded default [`Bus`].
//!
//! One SQLite file (its own, beside the repository's) holds the messages of every topic under one
//! sequence, a cursor per consumer group, the group's in-flight (delivered, unacked) messages with
//! their visibility deadline, and its dead letters.
//!
//! Every change goes through one writer task that owns the only writing connection. It takes a
//! command, drains whatever else is queued (up to [`MAX_BATCH`] messages), applies it all in ONE
//! transaction, commits once (one fsync) and only then answers every caller: this is the group
//! commit that lets many concurrent publishers share a disk flush. Polls and acks ride in the same
//! batches. Reads that change nothing (`lag`, `dead_letters`) use a small pool of readers.
//!
//! The bus schema is created here rather than by the repository migrations: the file is the bus's
//! own, and only SQLite ever backs this adapter (production buses are Redis Streams and friends).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use liveops_core::ports::{Delivery, Message};
use liveops_core::{Bus, PortError, PortResult};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

pub use crate::memory::bus::BusOptions;
use crate::memory::bus::RECHECK;

use super::sqlite::{db_error, options, to_i64, BEGIN_WRITE, MAX_BIND};

/// Most messages written by one group commit.
pub const MAX_BATCH: usize = 4096;

/// Commands waiting for the writer before publishers are made to wait for room.
const QUEUE: usize = 4096;

/// Most messages one compaction step deletes per topic (bounds the time the write lock is held).
const COMPACT_STEP: i64 = 10_000;

/// Schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

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
CREATE TABLE IF NOT EXISTS bus_pending (
    topic       TEXT    NOT NULL,
    grp         TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    consumer    TEXT    NOT NULL,
    deliveries  INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bus_pending_deadline ON bus_pending (topic, grp, deadline_ms);
CREATE INDEX IF NOT EXISTS bus_pending_seq ON bus_pending (topic, seq);
CREATE TABLE IF NOT EXISTS bus_dead (
    topic      TEXT    NOT NULL,
    grp        TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    dead_at_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bus_dead_seq ON bus_dead (topic, seq);
";

fn stopped() -> PortError {
    PortError::Unavailable("the bus writer has stopped".into())
}

/// A change for the writer.
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
        consumer: String,
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
    Compact,
}

impl Op {
    /// How much of a batch's budget this op takes.
    fn weight(&self) -> usize {
        match self {
            Op::Publish { messages, .. } => messages.len().max(1),
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
    readers: SqlitePool,
    published: Arc<Notify>,
}

impl SqliteBus {
    /// Opens (creating if missing, parent directories included) the bus file at `location` (a
    /// path, or a `sqlite:` URL) and starts its writer task. Must be called inside a Tokio runtime.
    pub async fn open(location: impl AsRef<Path>, opts: BusOptions) -> Result<Self, PortError> {
        let connect = options(location.as_ref())?;
        let mut conn = connect.connect().await.map_err(db_error)?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut conn)
            .await
            .map_err(db_error)?;
        if version > SCHEMA_VERSION {
            return Err(PortError::Corrupt(format!(
                "bus file has schema version {version}; this build knows up to {SCHEMA_VERSION}"
            )));
        }
        sqlx::raw_sql(SCHEMA)
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        sqlx::raw_sql(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await
            .map_err(db_error)?;
        let (commands, queue) = mpsc::channel(QUEUE);
        let published = Arc::new(Notify::new());
        let writer = Writer {
            conn,
            queue,
            opts,
            published: published.clone(),
        };
        tokio::spawn(writer.run());
        Ok(Self {
            commands,
            readers,
            published,
        })
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

    /// Makes every in-flight message of `group` deliverable now, instead of after its visibility
    /// timeout. Call it when the group's only consumer (re)starts: whatever was in flight was
    /// handed to a process that is gone. Returns how many messages.
    pub async fn reclaim(&self, topic: &str, group: &str) -> PortResult<u64> {
        self.count(Op::Reclaim {
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
        .await
    }

    /// Deletes messages every group of their topic has moved past and acked (dead letters are
    /// kept). Call it periodically. Returns how many were deleted.
    pub async fn compact(&self) -> PortResult<u64> {
        let mut total = 0;
        loop {
            let n = self.count(Op::Compact).await?;
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

    async fn poll(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> PortResult<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let until = Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so a publish in between is not missed.
            let published = self.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let got = match self
                .call(Op::Poll {
                    topic: topic.to_owned(),
                    group: group.to_owned(),
                    consumer: consumer.to_owned(),
                    max,
                })
                .await?
            {
                Answer::Deliveries(d) => d,
                other => return Err(PortError::Corrupt(format!("bus writer answered {other:?}"))),
            };
            let now = Instant::now();
            if !got.is_empty() || now >= until {
                return Ok(got);
            }
            // Another process may publish to the same file, and in-flight messages time out:
            // look again every so often even without a wake-up.
            let nap = (until - now).min(RECHECK);
            tokio::select! {
                _ = &mut published => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
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

    async fn lag(&self, topic: &str, group: &str) -> PortResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM bus_messages WHERE topic = ? AND seq >= \
               COALESCE((SELECT next_seq FROM bus_groups WHERE topic = ? AND grp = ?), 0)) \
             + (SELECT COUNT(*) FROM bus_pending WHERE topic = ? AND grp = ?)",
        )
        .bind(topic)
        .bind(topic)
        .bind(group)
        .bind(topic)
        .bind(group)
        .fetch_one(&self.readers)
        .await
        .map_err(db_error)?;
        Ok(super::sqlite::to_u64(n))
    }

    async fn dead_letters(
        &self,
        topic: &str,
        group: &str,
        limit: usize,
    ) -> PortResult<Vec<Delivery>> {
        let rows: Vec<(i64, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT d.seq, m.msg_key, m.payload, d.deliveries FROM bus_dead d \
             JOIN bus_messages m ON m.seq = d.seq \
             WHERE d.topic = ? AND d.grp = ? ORDER BY d.seq LIMIT ?",
        )
        .bind(topic)
        .bind(group)
        .bind(to_i64(limit as u64))
        .fetch_all(&self.readers)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(seq, key, payload, n)| delivery(seq, key, payload, n))
            .collect())
    }

    async fn replay_dead_letters(&self, topic: &str, group: &str) -> PortResult<u64> {
        self.count(Op::Replay {
            topic: topic.to_owned(),
            group: group.to_owned(),
        })
        .await
    }

    async fn healthcheck(&self) -> PortResult<()> {
        if self.commands.is_closed() {
            return Err(stopped());
        }
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map(|_| ())
            .map_err(db_error)
    }
}

fn delivery(seq: i64, key: String, payload: Vec<u8>, deliveries: i64) -> Delivery {
    Delivery {
        id: seq.to_string(),
        key,
        payload: payload.into(),
        deliveries: u32::try_from(deliveries).unwrap_or(u32::MAX),
    }
}

/// Owns the writing connection; applies queued commands in batches, one commit each.
struct Writer {
    conn: SqliteConnection,
    queue: mpsc::Receiver<Command>,
    opts: BusOptions,
    published: Arc<Notify>,
}

impl Writer {
    async fn run(mut self) {
        while let Some(first) = self.queue.recv().await {
            let mut budget = first.op.weight();
            let mut batch = vec![first];
            while budget < MAX_BATCH {
                match self.queue.try_recv() {
                    Ok(cmd) => {
                        budget += cmd.op.weight();
                        batch.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            self.apply(batch).await;
        }
        // Every handle is gone: close the file cleanly (checkpoints the WAL).
        if let Err(error) = self.conn.close().await {
            tracing::warn!(%error, "closing the bus file failed");
        }
    }

    async fn apply(&mut self, batch: Vec<Command>) {
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|c| (c.op, c.reply)).unzip();
        match self.execute(&ops).await {
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

    async fn execute(&mut self, ops: &[Op]) -> PortResult<(Vec<Answer>, Effects)> {
        let mut fx = Effects::default();
        let mut answers = Vec::with_capacity(ops.len());
        let mut tx = self.conn.begin_with(BEGIN_WRITE).await.map_err(db_error)?;
        let now = liveops_core::now_ms();
        let deadline = now.saturating_add(
            i64::try_from(self.opts.visibility_timeout.as_millis()).unwrap_or(i64::MAX),
        );
        for op in ops {
            let answer = match op {
                Op::Publish { topic, messages } => {
                    append(&mut tx, topic, messages).await?;
                    fx.published += messages.len() as u64;
                    fx.wake = true;
                    Answer::Done
                }
                Op::EnsureGroup { topic, group } => {
                    ensure_group(&mut tx, topic, group).await?;
                    Answer::Done
                }
                Op::Poll {
                    topic,
                    group,
                    consumer,
                    max,
                } => {
                    let take = Take {
                        topic,
                        group,
                        consumer,
                        max: *max,
                        now,
                        deadline,
                        max_deliveries: self.opts.max_deliveries,
                    };
                    Answer::Deliveries(take.run(&mut tx, &mut fx).await?)
                }
                Op::Ack { topic, group, seqs } => {
                    for chunk in seqs.chunks(MAX_BIND - 2) {
                        let mut qb =
                            QueryBuilder::<Sqlite>::new("DELETE FROM bus_pending WHERE topic = ");
                        qb.push_bind(topic.as_str())
                            .push(" AND grp = ")
                            .push_bind(group.as_str())
                            .push(" AND seq");
                        push_in(&mut qb, chunk);
                        qb.build().execute(&mut *tx).await.map_err(db_error)?;
                    }
                    Answer::Done
                }
                Op::Reclaim { topic, group } => {
                    let n = sqlx::query(
                        "UPDATE bus_pending SET deadline_ms = 0 WHERE topic = ? AND grp = ?",
                    )
                    .bind(topic.as_str())
                    .bind(group.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?
                    .rows_affected();
                    fx.wake |= n > 0;
                    Answer::Count(n)
                }
                Op::Replay { topic, group } => {
                    let n = sqlx::query(
                        "INSERT INTO bus_pending (topic, grp, seq, consumer, deliveries, deadline_ms) \
                         SELECT topic, grp, seq, '', 0, 0 FROM bus_dead WHERE topic = ? AND grp = ?",
                    )
                    .bind(topic.as_str())
                    .bind(group.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?
                    .rows_affected();
                    sqlx::query("DELETE FROM bus_dead WHERE topic = ? AND grp = ?")
                        .bind(topic.as_str())
                        .bind(group.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    fx.wake |= n > 0;
                    Answer::Count(n)
                }
                Op::Compact => Answer::Count(compact(&mut tx).await?),
            };
            answers.push(answer);
        }
        tx.commit().await.map_err(db_error)?;
        Ok((answers, fx))
    }
}

/// Appends ` IN (?, ?, ..)` binding every sequence number.
fn push_in(qb: &mut QueryBuilder<'_, Sqlite>, seqs: &[i64]) {
    qb.push(" IN (");
    let mut sep = qb.separated(", ");
    for seq in seqs {
        sep.push_bind(*seq);
    }
    sep.push_unseparated(")");
}

async fn append(conn: &mut SqliteConnection, topic: &str, messages: &[Message]) -> PortResult<()> {
    for chunk in messages.chunks(MAX_BIND / 3) {
        let mut qb =
            QueryBuilder::<Sqlite>::new("INSERT INTO bus_messages (topic, msg_key, payload) ");
        qb.push_values(chunk, |mut row, m| {
            row.push_bind(topic)
                .push_bind(m.key.as_str())
                .push_bind(m.payload.as_ref());
        });
        qb.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// A new group starts at sequence 0, that is at the oldest retained message.
async fn ensure_group(conn: &mut SqliteConnection, topic: &str, group: &str) -> PortResult<()> {
    sqlx::query(
        "INSERT INTO bus_groups (topic, grp, next_seq) VALUES (?, ?, 0) \
         ON CONFLICT (topic, grp) DO NOTHING",
    )
    .bind(topic)
    .bind(group)
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(db_error)
}

/// One step of retention: per topic, deletes up to [`COMPACT_STEP`] messages below every group's
/// cursor that no group still has in flight or dead.
async fn compact(conn: &mut SqliteConnection) -> PortResult<u64> {
    let topics: Vec<String> = sqlx::query_scalar("SELECT DISTINCT topic FROM bus_groups")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    let mut deleted = 0;
    for topic in topics {
        deleted += sqlx::query(
            "DELETE FROM bus_messages WHERE seq IN ( \
               SELECT m.seq FROM bus_messages m WHERE m.topic = ? \
               AND m.seq < (SELECT MIN(next_seq) FROM bus_groups WHERE topic = ?) \
               AND NOT EXISTS (SELECT 1 FROM bus_pending p WHERE p.topic = m.topic AND p.seq = m.seq) \
               AND NOT EXISTS (SELECT 1 FROM bus_dead d WHERE d.topic = m.topic AND d.seq = m.seq) \
               ORDER BY m.seq LIMIT ?)",
        )
        .bind(topic.as_str())
        .bind(topic.as_str())
        .bind(COMPACT_STEP)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?
        .rows_affected();
    }
    Ok(deleted)
}

/// One poll inside the writer's transaction.
struct Take<'a> {
    topic: &'a str,
    group: &'a str,
    consumer: &'a str,
    max: usize,
    now: i64,
    deadline: i64,
    max_deliveries: u32,
}

impl Take<'_> {
    async fn run(
        &self,
        conn: &mut SqliteConnection,
        fx: &mut Effects,
    ) -> PortResult<Vec<Delivery>> {
        let (topic, group) = (self.topic, self.group);
        let limit = to_i64(self.max as u64);
        ensure_group(conn, topic, group).await?;

        // Timed-out messages that had their last delivery go to the dead letters.
        let dead = sqlx::query(
            "INSERT INTO bus_dead (topic, grp, seq, deliveries, dead_at_ms) \
             SELECT topic, grp, seq, deliveries, ? FROM bus_pending \
             WHERE topic = ? AND grp = ? AND deadline_ms <= ? AND deliveries >= ?",
        )
        .bind(self.now)
        .bind(topic)
        .bind(group)
        .bind(self.now)
        .bind(i64::from(self.max_deliveries))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?
        .rows_affected();
        if dead > 0 {
            sqlx::query(
                "DELETE FROM bus_pending \
                 WHERE topic = ? AND grp = ? AND deadline_ms <= ? AND deliveries >= ?",
            )
            .bind(topic)
            .bind(group)
            .bind(self.now)
            .bind(i64::from(self.max_deliveries))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            fx.dead.push((topic.to_owned(), group.to_owned(), dead));
        }

        // The other timed-out ones are delivered again.
        let expired: Vec<(i64, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT p.seq, m.msg_key, m.payload, p.deliveries + 1 FROM bus_pending p \
             JOIN bus_messages m ON m.seq = p.seq \
             WHERE p.topic = ? AND p.grp = ? AND p.deadline_ms <= ? ORDER BY p.seq LIMIT ?",
        )
        .bind(topic)
        .bind(group)
        .bind(self.now)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let seqs: Vec<i64> = expired.iter().map(|r| r.0).collect();
        for chunk in seqs.chunks(MAX_BIND - 4) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "UPDATE bus_pending SET deliveries = deliveries + 1, consumer = ",
            );
            qb.push_bind(self.consumer)
                .push(", deadline_ms = ")
                .push_bind(self.deadline)
                .push(" WHERE topic = ")
                .push_bind(topic)
                .push(" AND grp = ")
                .push_bind(group)
                .push(" AND seq");
            push_in(&mut qb, chunk);
            qb.build().execute(&mut *conn).await.map_err(db_error)?;
        }
        let mut out: Vec<Delivery> = expired
            .into_iter()
            .map(|(seq, key, payload, n)| delivery(seq, key, payload, n))
            .collect();

        // Then new messages from the group's cursor, in sequence order.
        let room = self.max.saturating_sub(out.len());
        if room > 0 {
            let cursor: i64 =
                sqlx::query_scalar("SELECT next_seq FROM bus_groups WHERE topic = ? AND grp = ?")
                    .bind(topic)
                    .bind(group)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db_error)?;
            let fresh: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
                "SELECT seq, msg_key, payload FROM bus_messages \
                 WHERE topic = ? AND seq >= ? ORDER BY seq LIMIT ?",
            )
            .bind(topic)
            .bind(cursor)
            .bind(to_i64(room as u64))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
            if let Some(last) = fresh.last().map(|r| r.0) {
                for chunk in fresh.chunks(MAX_BIND / 6) {
                    let mut qb = QueryBuilder::<Sqlite>::new(
                        "INSERT INTO bus_pending (topic, grp, seq, consumer, deliveries, deadline_ms) ",
                    );
                    qb.push_values(chunk, |mut row, (seq, ..)| {
                        row.push_bind(topic)
                            .push_bind(group)
                            .push_bind(*seq)
                            .push_bind(self.consumer)
                            .push_bind(1_i64)
                            .push_bind(self.deadline);
                    });
                    qb.build().execute(&mut *conn).await.map_err(db_error)?;
                }
                sqlx::query("UPDATE bus_groups SET next_seq = ? WHERE topic = ? AND grp = ?")
                    .bind(last + 1)
                    .bind(topic)
                    .bind(group)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
            }
            out.extend(
                fresh
                    .into_iter()
                    .map(|(seq, key, payload)| delivery(seq, key, payload, 1)),
            );
        }
        Ok(out)
    }
}
