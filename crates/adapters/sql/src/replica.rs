//! Reads that may be a little stale, sent to a read replica (`DB_READ_URL`) while it is usable.
//!
//! A probe measures the replica every [`PROBE_EVERY`]: it asks the primary for its write
//! position, remembers when it asked, and asks the replica whether it has replayed the oldest
//! positions still remembered. The replica's lag is the age of the oldest position it has not
//! replayed yet (zero when it has replayed them all), so an idle primary never looks lagged and
//! a paused or cut-off replica looks more lagged every second. Unreachable, or lagging more than
//! the allowed lag, and reads go to the primary until a probe finds it usable again; a read that
//! fails on the replica is retried on the primary at once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Pool;

use super::dialect::Dialect;

/// Time between two measurements of the replica.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long one probe query may take before the replica counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Positions remembered at most (older ones are dropped: the lag is then at least this many
/// probes, far above any sensible allowed lag).
const REMEMBERED: usize = 600;

/// The replica's pool and what the last probe found.
pub(crate) struct Replica<DB: Dialect> {
    pub(crate) pool: Pool<DB>,
    max_lag: Duration,
    usable: AtomicBool,
    /// What `/readyz` shows: `None` while the replica serves reads.
    note: Mutex<Option<String>>,
    /// Primary write positions not yet seen replayed, oldest first, with when they were read.
    pending: Mutex<VecDeque<(String, Instant)>>,
}

impl<DB: Dialect> Replica<DB> {
    pub(crate) fn new(pool: Pool<DB>, max_lag: Duration) -> Self {
        Self {
            pool,
            max_lag,
            // Unproven until the first probe: reads start on the primary.
            usable: AtomicBool::new(false),
            note: Mutex::new(Some(
                "replica: not measured yet, reads on the primary".into(),
            )),
            pending: Mutex::default(),
        }
    }

    /// Whether reads may go to the replica now.
    pub(crate) fn usable(&self) -> bool {
        self.usable.load(Ordering::Relaxed)
    }

    /// The replica's state for `/readyz`, when it does not serve reads.
    pub(crate) fn note(&self) -> Option<String> {
        self.note.lock().ok().and_then(|n| n.clone())
    }

    /// Records a read that failed on the replica: reads move to the primary until the next
    /// probe finds it usable.
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        if self.usable.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "read replica failed: reads go to the primary");
        }
        self.set(
            false,
            Some(format!("replica: {error}, reads on the primary")),
        );
    }

    fn set(&self, usable: bool, note: Option<String>) {
        let was = self.usable.swap(usable, Ordering::Relaxed);
        if was != usable {
            match &note {
                None => tracing::info!("read replica usable again: reads go to it"),
                Some(n) => tracing::warn!(state = %n, "read replica not used"),
            }
        }
        metrics::gauge!("db_read_replica_usable").set(if usable { 1.0 } else { 0.0 });
        if let Ok(mut slot) = self.note.lock() {
            *slot = note;
        }
    }
}

/// What the probe and its loop need of the backend to read positions on both sides.
impl<DB> Replica<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'q> i64: sqlx::Decode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> super::dialect::Text: sqlx::Decode<'q, DB> + sqlx::Type<DB>,
{
    /// The probe loop: measures `replica` every [`PROBE_EVERY`] until it is dropped.
    pub(crate) async fn watch(replica: std::sync::Weak<Self>, primary: Pool<DB>) {
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(r) = replica.upgrade() else { return };
            r.probe(&primary).await;
        }
    }

    /// One measurement, given the primary's pool; updates what reads use.
    pub(crate) async fn probe(&self, primary: &Pool<DB>) {
        match tokio::time::timeout(PROBE_TIMEOUT, self.lag(primary)).await {
            Err(_) => self.set(
                false,
                Some(format!(
                    "replica: no answer within {PROBE_TIMEOUT:?}, reads on the primary"
                )),
            ),
            Ok(Err(e)) => self.set(false, Some(format!("replica: {e}, reads on the primary"))),
            Ok(Ok(lag)) => {
                metrics::gauge!("db_read_replica_lag_seconds").set(lag.as_secs_f64());
                if lag > self.max_lag {
                    self.set(
                        false,
                        Some(format!(
                            "replica: lagging {:.1}s (allowed {:.1}s), reads on the primary",
                            lag.as_secs_f64(),
                            self.max_lag.as_secs_f64()
                        )),
                    );
                } else {
                    self.set(true, None);
                }
            }
        }
    }

    /// The replica's lag now (see the module docs); an error when either side does not answer.
    async fn lag(&self, primary: &Pool<DB>) -> Result<Duration, String> {
        let Some(position) = DB::REPLICA_POSITION else {
            // No way to compare positions on this backend: reachable is all it can tell.
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(|e| super::dialect::db_error::<DB>(e).to_string())?;
            return Ok(Duration::ZERO);
        };
        let (now,): (super::dialect::Text,) = sqlx::query_as(position.primary)
            .fetch_one(primary)
            .await
            .map_err(|e| format!("primary: {}", super::dialect::db_error::<DB>(e)))?;
        let sql = DB::placeholders(position.replayed);
        let pending: Vec<(String, Instant)> = {
            let Ok(mut p) = self.pending.lock() else {
                return Err("probe state poisoned".into());
            };
            p.push_back((now.0, Instant::now()));
            while p.len() > REMEMBERED {
                p.pop_front();
            }
            p.iter().cloned().collect()
        };
        let mut replayed = 0;
        for (at, _) in &pending {
            let (done,): (i64,) = sqlx::query_as(&sql)
                .bind(at.clone())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| super::dialect::db_error::<DB>(e).to_string())?;
            if done != 1 {
                break;
            }
            replayed += 1;
        }
        let Ok(mut p) = self.pending.lock() else {
            return Err("probe state poisoned".into());
        };
        // Positions are replayed in order: everything up to the newest replayed one is done.
        for _ in 0..replayed.min(p.len()) {
            p.pop_front();
        }
        Ok(p.front().map_or(Duration::ZERO, |(_, at)| at.elapsed()))
    }
}

/// How a backend compares write positions between a primary and its replica.
#[derive(Debug)]
pub struct ReplicaPosition {
    /// On the primary: one row, one text column, its current write position.
    pub primary: &'static str,
    /// On the replica, with that position bound: one row, one BIGINT column, 1 once replayed.
    pub replayed: &'static str,
}

/// Shared by the repository: the replica, if one is configured.
pub(crate) type MaybeReplica<DB> = Option<Arc<Replica<DB>>>;
