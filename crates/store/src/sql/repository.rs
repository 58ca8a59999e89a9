//! [`SqlRepository`]: the durable [`Repository`] on SQLite (sqlx), the embedded default.
//!
//! The SQL is kept to what PostgreSQL and MySQL share (`INSERT .. ON CONFLICT` aside, which
//! PostgreSQL shares and MySQL spells `ON DUPLICATE KEY`); connection set-up, error mapping and
//! the transaction opener live in [`super::sqlite`]. Every batch write is one transaction, every
//! `IN (..)` list is chunked to stay under the bound-parameter limit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use liveops_core::ports::{
    Board, Claim, FairnessCommit, Flag, InventoryItem, PendingReward, PlayerProgress,
    ProgressCommit, RankEntry, ScoreDelta, Snapshot,
};
use liveops_core::{EventType, PortError, PortResult, Receipt, Repository, Welford, Window};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use super::sqlite::{db_error, migrate_error, options, to_i64, to_u64, BEGIN_WRITE, MAX_BIND};

/// The [`Repository`] on a SQLite file.
#[derive(Clone, Debug)]
pub struct SqlRepository {
    pool: SqlitePool,
}

impl SqlRepository {
    /// Opens (creating if missing) the database at `url`: a `sqlite:` URL
    /// (`sqlite://data/liveops.db?mode=rwc`) or a file path. WAL mode, `synchronous=FULL`, and a
    /// busy timeout so concurrent writers wait for each other. Call [`Repository::migrate`] next.
    ///
    /// An in-memory URL gives every pooled connection its own empty database: use a file.
    pub async fn connect(url: &str) -> Result<Self, PortError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options(Path::new(url))?)
            .await
            .map_err(db_error)?;
        Ok(Self { pool })
    }

    async fn write(&self) -> PortResult<Transaction<'static, Sqlite>> {
        self.pool.begin_with(BEGIN_WRITE).await.map_err(db_error)
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

/// Appends ` IN (?, ?, ..)` binding every item.
fn push_in<'args, T>(qb: &mut QueryBuilder<'args, Sqlite>, items: impl IntoIterator<Item = T>)
where
    T: 'args + sqlx::Encode<'args, Sqlite> + sqlx::Type<Sqlite>,
{
    qb.push(" IN (");
    let mut sep = qb.separated(", ");
    for item in items {
        sep.push_bind(item);
    }
    sep.push_unseparated(")");
}

/// Records `ids` as processed by `consumer`; fails (leaving the transaction to roll back) if any
/// is already recorded.
async fn insert_processed(
    conn: &mut SqliteConnection,
    consumer: &str,
    ids: &[Uuid],
) -> PortResult<()> {
    for chunk in ids.chunks(MAX_BIND / 2) {
        let mut qb =
            QueryBuilder::<Sqlite>::new("INSERT INTO processed_events (consumer, event_id) ");
        qb.push_values(chunk, |mut row, id| {
            row.push_bind(consumer).push_bind(id.to_string());
        });
        qb.build().execute(&mut *conn).await.map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => PortError::Unavailable(format!(
                "an event of this batch was already processed by {consumer}; nothing was applied"
            )),
            other => db_error(other),
        })?;
    }
    Ok(())
}

async fn add_inventory(
    conn: &mut SqliteConnection,
    grants: &[((&str, &str), u64)],
) -> PortResult<()> {
    for chunk in grants.chunks(MAX_BIND / 3) {
        let mut qb =
            QueryBuilder::<Sqlite>::new("INSERT INTO inventory (player_id, item, quantity) ");
        qb.push_values(chunk, |mut row, ((player, item), qty)| {
            row.push_bind(*player)
                .push_bind(*item)
                .push_bind(to_i64(*qty));
        });
        qb.push(
            " ON CONFLICT (player_id, item) DO UPDATE SET quantity = inventory.quantity + excluded.quantity",
        );
        qb.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// A reward as a claim sees it: item, claimed, and the receipt if claimed.
type RewardRow = (String, i64, Option<String>, Option<i64>, Option<String>);

#[async_trait]
impl Repository for SqlRepository {
    async fn migrate(&self) -> PortResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(migrate_error)
    }

    async fn healthcheck(&self) -> PortResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(db_error)
    }

    async fn processed(&self, consumer: &str, ids: &[Uuid]) -> PortResult<HashSet<Uuid>> {
        let mut done = HashSet::new();
        for chunk in ids.chunks(MAX_BIND - 1) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT event_id FROM processed_events WHERE consumer = ",
            );
            qb.push_bind(consumer).push(" AND event_id");
            push_in(&mut qb, chunk.iter().map(Uuid::to_string));
            let rows: Vec<(String,)> = qb
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
            for (id,) in rows {
                done.insert(parse_uuid(&id)?);
            }
        }
        Ok(done)
    }

    async fn progress(&self, player_id: &str, season: i64) -> PortResult<PlayerProgress> {
        // One read transaction: a consistent view of the three tables.
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let xp: Option<(i64, i64)> = sqlx::query_as(
            "SELECT xp, updated_at FROM player_xp WHERE player_id = ? AND season = ?",
        )
        .bind(player_id)
        .bind(season)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let inventory: Vec<(String, i64)> = sqlx::query_as(
            "SELECT item, quantity FROM inventory WHERE player_id = ? ORDER BY item",
        )
        .bind(player_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let pending: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT reward_id, item, source, adds_to_inventory FROM rewards \
             WHERE player_id = ? AND claimed = 0 ORDER BY id",
        )
        .bind(player_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.rollback().await.map_err(db_error)?;
        let (xp, updated_at_ms) = xp.unwrap_or((0, 0));
        Ok(PlayerProgress {
            xp: to_u64(xp),
            updated_at_ms,
            inventory: inventory
                .into_iter()
                .map(|(item, quantity)| InventoryItem {
                    item,
                    quantity: to_u64(quantity),
                })
                .collect(),
            pending: pending
                .into_iter()
                .map(|(reward_id, item, source, adds)| PendingReward {
                    reward_id,
                    item,
                    source,
                    adds_to_inventory: adds != 0,
                })
                .collect(),
        })
    }

    async fn xp_of(&self, players: &[(String, i64)]) -> PortResult<Vec<u64>> {
        let unique: Vec<&str> = players
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut found: HashMap<(String, i64), u64> = HashMap::new();
        for chunk in unique.chunks(MAX_BIND) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT player_id, season, xp FROM player_xp WHERE player_id",
            );
            push_in(&mut qb, chunk.iter().copied());
            let rows: Vec<(String, i64, i64)> = qb
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
            for (p, s, xp) in rows {
                found.insert((p, s), to_u64(xp));
            }
        }
        Ok(players
            .iter()
            .map(|key| found.get(key).copied().unwrap_or(0))
            .collect())
    }

    async fn commit_progress(&self, consumer: &str, commit: &ProgressCommit) -> PortResult<()> {
        // Sum per key first: one upsert row per key (PostgreSQL refuses a key twice per statement).
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

        let mut tx = self.write().await?;
        insert_processed(&mut tx, consumer, &commit.event_ids).await?;
        for chunk in xp.chunks(MAX_BIND / 4) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO player_xp (player_id, season, xp, updated_at) ",
            );
            qb.push_values(chunk, |mut row, ((player, season), (gain, at))| {
                row.push_bind(*player)
                    .push_bind(*season)
                    .push_bind(to_i64(*gain))
                    .push_bind(*at);
            });
            qb.push(
                " ON CONFLICT (player_id, season) DO UPDATE SET xp = player_xp.xp + excluded.xp, \
                 updated_at = CASE WHEN excluded.updated_at > player_xp.updated_at \
                 THEN excluded.updated_at ELSE player_xp.updated_at END",
            );
            qb.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        add_inventory(&mut tx, &items).await?;
        for chunk in commit.rewards.chunks(MAX_BIND / 6) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO rewards (player_id, reward_id, item, source, adds_to_inventory, earned_at) ",
            );
            qb.push_values(chunk, |mut row, (player, r)| {
                row.push_bind(player.as_str())
                    .push_bind(r.reward_id.as_str())
                    .push_bind(r.item.as_str())
                    .push_bind(r.source.as_str())
                    .push_bind(i64::from(r.adds_to_inventory))
                    .push_bind(now);
            });
            qb.push(" ON CONFLICT (player_id, reward_id) DO NOTHING");
            qb.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn claim_reward(
        &self,
        player_id: &str,
        reward_id: &str,
        receipt: Receipt,
    ) -> PortResult<Claim> {
        let mut tx = self.write().await?;
        let claimed = sqlx::query(
            "UPDATE rewards SET claimed = 1, receipt_id = ?, receipt_ts = ?, receipt_sig = ? \
             WHERE player_id = ? AND reward_id = ? AND claimed = 0 AND item = ?",
        )
        .bind(receipt.receipt_id.as_str())
        .bind(receipt.timestamp)
        .bind(receipt.sig.as_str())
        .bind(player_id)
        .bind(reward_id)
        .bind(receipt.item.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if claimed == 1 {
            let adds: i64 = sqlx::query_scalar(
                "SELECT adds_to_inventory FROM rewards WHERE player_id = ? AND reward_id = ?",
            )
            .bind(player_id)
            .bind(reward_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            if adds != 0 {
                add_inventory(&mut tx, &[((player_id, receipt.item.as_str()), 1)]).await?;
            }
            tx.commit().await.map_err(db_error)?;
            return Ok(Claim::Issued(receipt));
        }
        let row: Option<RewardRow> = sqlx::query_as(
            "SELECT item, claimed, receipt_id, receipt_ts, receipt_sig FROM rewards \
             WHERE player_id = ? AND reward_id = ?",
        )
        .bind(player_id)
        .bind(reward_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.rollback().await.map_err(db_error)?;
        match row {
            Some((item, 1, Some(receipt_id), Some(timestamp), Some(sig))) => {
                Ok(Claim::AlreadyClaimed(Receipt {
                    receipt_id,
                    player_id: player_id.to_owned(),
                    item,
                    timestamp,
                    sig,
                }))
            }
            Some((_, 1, ..)) => Err(PortError::Corrupt(format!(
                "reward {reward_id:?} of {player_id:?} is claimed without a receipt"
            ))),
            // Unknown, or known under another item than the caller signed.
            _ => Ok(Claim::NotEarned),
        }
    }

    async fn commit_scores(
        &self,
        consumer: &str,
        event_ids: &[Uuid],
        deltas: &[ScoreDelta],
    ) -> PortResult<()> {
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
        let mut tx = self.write().await?;
        insert_processed(&mut tx, consumer, event_ids).await?;
        for chunk in sums.chunks(MAX_BIND / 4) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO scores (board_window, period, player_id, score) ",
            );
            qb.push_values(chunk, |mut row, ((window, period, player), delta)| {
                row.push_bind(window.as_str())
                    .push_bind(*period)
                    .push_bind(*player)
                    .push_bind(*delta);
            });
            qb.push(
                " ON CONFLICT (board_window, period, player_id) \
                 DO UPDATE SET score = scores.score + excluded.score",
            );
            qb.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn board_scores(&self, board: &Board) -> PortResult<Vec<(String, i64)>> {
        sqlx::query_as(
            "SELECT player_id, score FROM scores WHERE board_window = ? AND period = ? \
             ORDER BY score DESC, player_id DESC",
        )
        .bind(board.window.as_str())
        .bind(board.period.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn boards(&self) -> PortResult<Vec<Board>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT board_window, period FROM scores ORDER BY board_window, period",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(w, period)| {
                Ok(Board {
                    window: parse_window(&w)?,
                    period,
                })
            })
            .collect()
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> PortResult<()> {
        let entries = serde_json::to_string(&snapshot.entries)
            .map_err(|e| PortError::Corrupt(format!("snapshot entries: {e}")))?;
        sqlx::query(
            "INSERT INTO snapshots (board_window, period, taken_at, is_final, entries) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (board_window, period) DO UPDATE SET \
             taken_at = excluded.taken_at, is_final = excluded.is_final, entries = excluded.entries",
        )
        .bind(snapshot.window.as_str())
        .bind(snapshot.period.as_str())
        .bind(snapshot.taken_at_ms)
        .bind(i64::from(snapshot.is_final))
        .bind(entries)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(db_error)
    }

    async fn snapshot(&self, board: &Board) -> PortResult<Option<Snapshot>> {
        let row: Option<(i64, i64, String)> = sqlx::query_as(
            "SELECT taken_at, is_final, entries FROM snapshots WHERE board_window = ? AND period = ?",
        )
        .bind(board.window.as_str())
        .bind(board.period.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|(taken_at_ms, is_final, entries)| {
            let entries: Vec<RankEntry> = serde_json::from_str(&entries)
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
    }

    async fn snapshot_periods(&self, window: Window, limit: u32) -> PortResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT period FROM snapshots WHERE board_window = ? \
             ORDER BY taken_at DESC, period DESC LIMIT ?",
        )
        .bind(window.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn fairness_stats(&self) -> PortResult<Vec<(EventType, Welford)>> {
        let rows: Vec<(String, i64, f64, f64)> = sqlx::query_as(
            "SELECT event_type, samples, mean, m2 FROM fairness_stats ORDER BY event_type",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(t, count, mean, m2)| {
                Ok((
                    parse_event_type(&t)?,
                    Welford {
                        count: to_u64(count),
                        mean,
                        m2,
                    },
                ))
            })
            .collect()
    }

    async fn verdicts(&self, ids: &[Uuid]) -> PortResult<Vec<(Uuid, bool)>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_BIND) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT event_id, flagged FROM fairness_verdicts WHERE event_id",
            );
            push_in(&mut qb, chunk.iter().map(Uuid::to_string));
            let rows: Vec<(String, i64)> = qb
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
            for (id, flagged) in rows {
                out.push((parse_uuid(&id)?, flagged != 0));
            }
        }
        Ok(out)
    }

    async fn commit_fairness(&self, commit: &FairnessCommit) -> PortResult<()> {
        let mut tx = self.write().await?;
        for chunk in commit.verdicts.chunks(MAX_BIND / 2) {
            let mut qb =
                QueryBuilder::<Sqlite>::new("INSERT INTO fairness_verdicts (event_id, flagged) ");
            qb.push_values(chunk, |mut row, (id, flagged)| {
                row.push_bind(id.to_string()).push_bind(i64::from(*flagged));
            });
            qb.push(" ON CONFLICT (event_id) DO NOTHING");
            qb.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        for chunk in commit.flags.chunks(MAX_BIND / 6) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO fairness_flags (event_id, player_id, event_type, flag_value, z_score, at_ms) ",
            );
            qb.push_values(chunk, |mut row, f| {
                row.push_bind(f.event_id.to_string())
                    .push_bind(f.player_id.as_str())
                    .push_bind(f.event_type.as_str())
                    .push_bind(f.value)
                    .push_bind(f.z_score)
                    .push_bind(f.at_ms);
            });
            qb.push(" ON CONFLICT (event_id) DO NOTHING");
            qb.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        for chunk in commit.stats.chunks(MAX_BIND / 4) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO fairness_stats (event_type, samples, mean, m2) ",
            );
            qb.push_values(chunk, |mut row, (t, w)| {
                row.push_bind(t.as_str())
                    .push_bind(to_i64(w.count))
                    .push_bind(w.mean)
                    .push_bind(w.m2);
            });
            qb.push(
                " ON CONFLICT (event_type) DO UPDATE SET samples = excluded.samples, \
                 mean = excluded.mean, m2 = excluded.m2",
            );
            qb.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn flags(&self, player_id: Option<&str>, limit: u32) -> PortResult<Vec<Flag>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT event_id, player_id, event_type, flag_value, z_score, at_ms FROM fairness_flags",
        );
        if let Some(p) = player_id {
            qb.push(" WHERE player_id = ").push_bind(p);
        }
        qb.push(" ORDER BY at_ms DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<(String, String, String, f64, f64, i64)> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, player_id, t, value, z_score, at_ms)| {
                Ok(Flag {
                    event_id: parse_uuid(&id)?,
                    player_id,
                    event_type: parse_event_type(&t)?,
                    value,
                    z_score,
                    at_ms,
                })
            })
            .collect()
    }
}
