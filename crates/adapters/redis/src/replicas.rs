//! Which replicas of the bus's Redis are attached and caught up, read from `INFO replication`
//! about once a second, so that a publish waits for every replica that is there and not for one
//! being patched (`BUS_REDIS_REPLICAS_AWAY`, ADR 0022).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use liveops_core::{now_ms, PortResult};
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::bus::{bounded, lock};

/// How often the upkeep task reads `INFO replication`.
const READ_EVERY: Duration = Duration::from_secs(1);

/// Longest a read of `INFO replication` may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A replica whose last acknowledgement is older than this many seconds is not waited for.
/// Replicas acknowledge every second; a link that has stalled stops them.
const LAG_MAX_SECS: u64 = 3;

/// A replica counts once its acknowledged offset reaches where the primary was this long ago
/// (twice the acknowledgement interval): a replica resyncing after a restart is `online` long
/// before it has caught up.
const BEHIND: Duration = Duration::from_secs(2);

/// Not read yet.
const UNKNOWN: u32 = u32::MAX;

/// One replica as the primary reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Replica {
    /// `state=online`: the initial copy is done and the stream flows.
    pub(crate) online: bool,
    /// Replication offset the replica last acknowledged.
    pub(crate) offset: u64,
    /// Seconds since its last acknowledgement.
    pub(crate) lag: u64,
}

/// The parts of an `INFO replication` answer the count needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Replication {
    /// The primary's replication id (`master_replid`): another one after a failover.
    pub(crate) replid: String,
    /// The primary's own replication offset.
    pub(crate) primary_offset: u64,
    /// Its attached replicas.
    pub(crate) replicas: Vec<Replica>,
}

impl Replication {
    /// Reads an `INFO replication` answer; lines it does not know are passed over.
    pub(crate) fn parse(info: &str) -> Self {
        let mut out = Self::default();
        for line in info.lines() {
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            if key == "master_replid" {
                value.clone_into(&mut out.replid);
            } else if key == "master_repl_offset" {
                out.primary_offset = value.parse().unwrap_or(0);
            } else if key
                .strip_prefix("slave")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                let field = |name: &str| {
                    value
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v)
                };
                out.replicas.push(Replica {
                    online: field("state") == Some("online"),
                    offset: field("offset").and_then(|v| v.parse().ok()).unwrap_or(0),
                    lag: field("lag")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(u64::MAX),
                });
            }
        }
        out
    }
}

/// Counts caught-up replicas over successive reads, remembering the primary's recent offsets.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The replication id the offsets belong to.
    replid: String,
    /// The primary's offset at each read, oldest first; none older than the newest one that is
    /// at least [`BEHIND`] old.
    offsets: VecDeque<(Instant, u64)>,
}

impl Tracker {
    /// The replicas of `now` (read at `at`) that are online, acknowledged within
    /// [`LAG_MAX_SECS`], and have reached where the primary was [`BEHIND`] before (any offset,
    /// before a read that old).
    pub(crate) fn count(&mut self, now: &Replication, at: Instant) -> u32 {
        // Another primary (a failover): offsets of the old one say nothing of the new one's.
        if now.replid != self.replid {
            self.offsets.clear();
            now.replid.clone_into(&mut self.replid);
        }
        let old_enough = |&(read, _): &(Instant, u64)| at.saturating_duration_since(read) >= BEHIND;
        while self.offsets.get(1).is_some_and(old_enough) {
            self.offsets.pop_front();
        }
        let reference = self
            .offsets
            .front()
            .filter(|e| old_enough(e))
            .map_or(0, |&(_, offset)| offset);
        self.offsets.push_back((at, now.primary_offset));
        let counted = now
            .replicas
            .iter()
            .filter(|r| r.online && r.lag <= LAG_MAX_SECS && r.offset >= reference)
            .count();
        u32::try_from(counted).unwrap_or(UNKNOWN - 1)
    }
}

/// The replicas a publish waits for, kept current by a task of its own ([`Followers::start`]).
#[derive(Debug)]
pub(crate) struct Followers {
    /// `BUS_REDIS_REPLICAS`: how many the cache has (the gauge `bus_replicas_expected`).
    expected: u32,
    counted: AtomicU32,
    tracker: Mutex<Tracker>,
    /// The task is running (or being started); reset by the task as it ends.
    running: AtomicBool,
    /// The last read failed (logged once when reads start and stop failing).
    failing: AtomicBool,
}

impl Followers {
    /// Followers of a cache with `expected` replicas, none read yet.
    pub(crate) fn new(expected: u32) -> Self {
        Self {
            expected,
            counted: AtomicU32::new(UNKNOWN),
            tracker: Mutex::default(),
            running: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        }
    }

    /// Caught-up replicas at the last good read, or `None` before the first.
    pub(crate) fn counted(&self) -> Option<u32> {
        Some(self.counted.load(Ordering::Relaxed)).filter(|&n| n != UNKNOWN)
    }

    /// Starts the task that reads every [`READ_EVERY`] on `conn` until `self` is dropped, once;
    /// outside a Tokio runtime it waits for the next call from inside one.
    pub(crate) fn start(self: &Arc<Self>, conn: &ConnectionManager) {
        if self.running.load(Ordering::Acquire) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(Self::run(Arc::downgrade(self), conn.clone()))),
            Err(_) => self.running.store(false, Ordering::Release),
        }
    }

    /// Reads `INFO replication` on `conn` and counts again; records the gauges
    /// `bus_replicas_expected`, `bus_replicas_attached`, `bus_replicas_followed` and
    /// `bus_replicas_read_at_seconds`. A failed read keeps the last count (the replicas waited for
    /// until then), counts `bus_replicas_read_failures_total` and is logged when failures start.
    pub(crate) async fn refresh(&self, conn: &mut ConnectionManager) -> PortResult<u32> {
        let read = bounded(
            "INFO replication",
            READ_TIMEOUT,
            redis::cmd("INFO")
                .arg("replication")
                .query_async::<String>(conn),
        )
        .await;
        let info = match read {
            Ok(info) => info,
            Err(error) => {
                metrics::counter!("bus_replicas_read_failures_total").increment(1);
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(%error, "redis bus: INFO replication failed; waiting for the \
                        replicas of the last read until it answers again");
                }
                return Err(error);
            }
        };
        if self.failing.swap(false, Ordering::AcqRel) {
            tracing::info!("redis bus: INFO replication answers again");
        }
        let now = Replication::parse(&info);
        let counted = {
            // The time is taken under the lock, so the history's reads stay in order.
            let mut tracker = lock(&self.tracker);
            let counted = tracker.count(&now, Instant::now());
            self.counted.store(counted, Ordering::Relaxed);
            counted
        };
        metrics::gauge!("bus_replicas_read_at_seconds").set(now_ms() as f64 / 1000.0);
        metrics::gauge!("bus_replicas_expected").set(f64::from(self.expected));
        metrics::gauge!("bus_replicas_attached").set(now.replicas.len() as f64);
        metrics::gauge!("bus_replicas_followed").set(f64::from(counted));
        Ok(counted)
    }

    /// Refreshes every [`READ_EVERY`] until the bus holding `followers` is dropped; however it
    /// ends (a runtime shut down), the next [`Followers::start`] starts it again.
    async fn run(followers: Weak<Self>, mut conn: ConnectionManager) {
        /// Clears `running` when the task ends or is dropped.
        struct Ended(Weak<Followers>);
        impl Drop for Ended {
            fn drop(&mut self) {
                if let Some(f) = self.0.upgrade() {
                    f.running.store(false, Ordering::Release);
                }
            }
        }
        let _ended = Ended(followers.clone());
        loop {
            let Some(f) = followers.upgrade() else {
                return;
            };
            // Failures are logged by `refresh` and leave the last count.
            let _ = f.refresh(&mut conn).await;
            drop(f);
            tokio::time::sleep(READ_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
        slave0:ip=10.0.0.5,port=6379,state=online,offset=1000,lag=0\r\n\
        slave1:ip=10.0.0.6,port=6379,state=wait_bgsave,offset=0,lag=7\r\n\
        master_failover_state:no-failover\r\nmaster_replid:abc\r\n\
        master_repl_offset:1200\r\nsecond_repl_offset:-1\r\n";

    fn replica(online: bool, offset: u64, lag: u64) -> Replica {
        Replica {
            online,
            offset,
            lag,
        }
    }

    /// The primary `abc` at `primary_offset`, with `replicas`.
    fn at(primary_offset: u64, replicas: Vec<Replica>) -> Replication {
        Replication {
            replid: "abc".into(),
            primary_offset,
            replicas,
        }
    }

    #[test]
    fn an_info_answer_is_read_replica_by_replica() {
        assert_eq!(
            Replication::parse(INFO),
            at(1200, vec![replica(true, 1000, 0), replica(false, 0, 7)])
        );
        // A replica line without its numbers is not caught up; unknown lines are passed over.
        let odd = Replication::parse("slave0:state=online\nslaves:9\nmaster_repl_offset:x\n");
        let want = Replication {
            replid: String::new(),
            ..at(0, vec![replica(true, 0, u64::MAX)])
        };
        assert_eq!(odd, want);
    }

    #[test]
    fn a_replica_counts_once_online_recent_and_caught_up() {
        let start = Instant::now();
        let sec = |s: u64| start + Duration::from_secs(s);
        let mut t = Tracker::default();
        // Before a read 2 s old: every online replica that acknowledged lately counts.
        assert_eq!(t.count(&Replication::parse(INFO), sec(0)), 1);
        assert_eq!(t.count(&at(1500, vec![replica(true, 1400, 0)]), sec(1)), 1);
        // Reads close together (a publish's own read) do not make the reference newer.
        assert_eq!(t.count(&at(1600, vec![replica(true, 1400, 0)]), sec(1)), 1);
        // From then on, a replica must have reached the primary's offset of 2 s before (1200).
        assert_eq!(t.count(&at(1900, vec![replica(true, 1199, 0)]), sec(2)), 0);
        assert_eq!(t.count(&at(2000, vec![replica(true, 1600, 1)]), sec(3)), 1);
        assert_eq!(t.count(&at(2000, vec![replica(true, 1599, 1)]), sec(3)), 0);
        // Silent for too long: a stalled link.
        assert_eq!(t.count(&at(2000, vec![replica(true, 2000, 4)]), sec(4)), 0);
        // Resyncing: online but far behind.
        assert_eq!(t.count(&at(9000, vec![replica(true, 10, 0)]), sec(7)), 0);
        // Not online at all.
        assert_eq!(t.count(&at(9000, vec![replica(false, 9000, 0)]), sec(8)), 0);
        // Another primary (a failover) starts a new history, even at a higher offset: its
        // replicas are not measured against the old one's offsets (9000 two seconds ago).
        let two = vec![replica(true, 100, 0), replica(true, 90, 1)];
        let promoted = Replication {
            replid: "def".into(),
            ..at(9100, two)
        };
        assert_eq!(t.count(&promoted, sec(9)), 2);
    }
}
