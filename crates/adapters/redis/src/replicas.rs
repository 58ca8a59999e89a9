//! Which replicas of the bus's Redis are attached and caught up, read from `INFO replication`
//! about once a second, so that a publish waits for every replica that is there and not for one
//! being patched (`BUS_REDIS_REPLICAS_AWAY`, ADR 0022). A publish that a replica did not confirm
//! in time stops the others waiting for it at once, not only once `INFO` shows it behind.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use liveops_core::{now_ms, PortError, PortResult};
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
    /// `role:master`: the node answered as the primary (a demoted one answers `role:slave`, and
    /// lists no replicas of the primary's).
    pub(crate) primary: bool,
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
            if key == "role" {
                out.primary = value == "master";
            } else if key == "master_replid" {
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

/// A publish's `WAIT` saw fewer replicas than were followed: one stalled, silently so far.
#[derive(Clone, Copy, Debug)]
struct Shortfall {
    /// When the publish found out.
    at: Instant,
    /// How many replicas it did see confirm (the fewest, over shortfalls since).
    confirmed: u32,
    /// The primary's offset at the first read asked after `at`: past it, a replica is back.
    mark: Option<u64>,
}

/// Counts caught-up replicas over successive reads, remembering the primary's recent offsets.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The replication id the offsets belong to.
    replid: String,
    /// The primary's offset at each read, oldest first; none older than the newest one that is
    /// at least [`BEHIND`] old.
    offsets: VecDeque<(Instant, u64)>,
    /// The last shortfall, until every replica counted has acknowledged past its mark.
    shortfall: Option<Shortfall>,
}

impl Tracker {
    /// The replicas of `now` (asked for at `asked`, read at `at`) that are online, acknowledged
    /// within [`LAG_MAX_SECS`], and have reached where the primary was [`BEHIND`] before (any
    /// offset, before a read that old); during a shortfall, `min(that, max(past its mark,
    /// confirmed))`.
    pub(crate) fn count(&mut self, now: &Replication, asked: Instant, at: Instant) -> u32 {
        // Another primary (a failover): offsets of the old one say nothing of the new one's. A
        // shortfall may be the new one's (a publish may have met it first): it stays, marked
        // anew on this primary's offsets.
        if now.replid != self.replid {
            self.offsets.clear();
            if let Some(short) = &mut self.shortfall {
                short.mark = None;
            }
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
        let followed = |r: &&Replica| r.online && r.lag <= LAG_MAX_SECS && r.offset >= reference;
        let counted = now.replicas.iter().filter(followed).count();
        let counted = u32::try_from(counted).unwrap_or(UNKNOWN - 1);
        let Some(short) = &mut self.shortfall else {
            return counted;
        };
        // A read answered before the shortfall may show the stalled replica still acknowledging.
        if short.mark.is_none() && asked >= short.at {
            short.mark = Some(now.primary_offset);
        }
        let Some(mark) = short.mark else {
            return counted.min(short.confirmed);
        };
        let past = now.replicas.iter().filter(followed);
        let past = u32::try_from(past.filter(|r| r.offset >= mark).count()).unwrap_or(0);
        if past >= counted {
            // Each replica still counted has caught up since; one that has not is left out by
            // its offset or lag from now on.
            self.shortfall = None;
            return counted;
        }
        counted.min(past.max(short.confirmed))
    }

    /// Records that a publish at `at` saw `confirmed` replicas, fewer than were followed; true if
    /// none was recorded before (the first of a stall).
    pub(crate) fn fell_short(&mut self, confirmed: u32, at: Instant) -> bool {
        let first = self.shortfall.is_none();
        let confirmed = self
            .shortfall
            .map_or(confirmed, |s| s.confirmed.min(confirmed));
        self.shortfall = Some(Shortfall {
            at,
            confirmed,
            mark: None,
        });
        first
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

    /// Replicas a publish waits for now: those caught up at the last good read, fewer after a
    /// shortfall since; `None` before the first read.
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
    /// `bus_replicas_read_at_seconds`. A failed read keeps the count as it stands, counts
    /// `bus_replicas_read_failures_total` and is logged when failures start.
    pub(crate) async fn refresh(&self, conn: &mut ConnectionManager) -> PortResult<u32> {
        let asked = Instant::now();
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
                self.read_failed(&error);
                return Err(error);
            }
        };
        let now = Replication::parse(&info);
        if !now.primary {
            // A demoted primary behind the same address, the connection kept: its count is not
            // the primary's. Closed, so the next read reaches the node that is.
            let error = PortError::Unavailable(
                "INFO replication: the node is not the primary (a failover demoted it)".into(),
            );
            self.read_failed(&error);
            let _ = bounded(
                "QUIT",
                READ_TIMEOUT,
                redis::cmd("QUIT").query_async::<()>(conn),
            )
            .await;
            return Err(error);
        }
        if self.failing.swap(false, Ordering::AcqRel) {
            tracing::info!("redis bus: INFO replication answers again");
        }
        let counted = self.read(&now, asked);
        metrics::gauge!("bus_replicas_read_at_seconds").set(now_ms() as f64 / 1000.0);
        metrics::gauge!("bus_replicas_expected").set(f64::from(self.expected));
        metrics::gauge!("bus_replicas_attached").set(now.replicas.len() as f64);
        Ok(counted)
    }

    /// Counts the replicas of `now` (asked for at `asked`) and keeps the count for publishes
    /// and in the gauge `bus_replicas_followed`.
    fn read(&self, now: &Replication, asked: Instant) -> u32 {
        // The time is taken under the lock, so the history's reads stay in order; the gauge is
        // set under it, so that a shortfall's lower count is not overwritten by an older one.
        let mut tracker = lock(&self.tracker);
        let counted = tracker.count(now, asked, Instant::now());
        self.counted.store(counted, Ordering::Relaxed);
        metrics::gauge!("bus_replicas_followed").set(f64::from(counted));
        counted
    }

    /// A read of `INFO` failed: the count stays as it stands (the last good read's, or lower by
    /// a shortfall since, which no read can end until one answers); logged when failures start.
    fn read_failed(&self, error: &PortError) {
        metrics::counter!("bus_replicas_read_failures_total").increment(1);
        if !self.failing.swap(true, Ordering::AcqRel) {
            tracing::warn!(%error, "redis bus: INFO replication failed; keeping the count of \
                replicas as it stands (a shortfall still lowers it) until it answers again");
        }
    }

    /// A publish's `WAIT`, begun with `followed` replicas followed, saw `confirmed` confirm. Fewer
    /// than were followed then and are now is a shortfall (one stalled, and the primary has not
    /// noticed yet): the next publishes wait for only that many, until reads show the others
    /// caught up ([`Tracker::count`]); counted in `bus_replica_shortfalls_total`. Below the
    /// minimum alone is not one, nor fewer than a count raised meanwhile (`WAIT` returns once
    /// the number it was given confirmed), nor a publish that waited alongside one that already
    /// fell short.
    pub(crate) fn waited(&self, followed: u32, confirmed: u32) {
        let first = {
            let mut tracker = lock(&self.tracker);
            let now = self.counted.load(Ordering::Relaxed);
            if confirmed >= followed.min(now) {
                return;
            }
            metrics::counter!("bus_replica_shortfalls_total").increment(1);
            self.counted.store(confirmed, Ordering::Relaxed);
            metrics::gauge!("bus_replicas_followed").set(f64::from(confirmed));
            tracker.fell_short(confirmed, Instant::now())
        };
        if first {
            tracing::warn!(
                confirmed,
                "redis bus: a replica did not confirm a publish in time; not waited for until \
                 it has caught up"
            );
        }
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
            primary: true,
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
            primary: false,
            replid: String::new(),
            ..at(0, vec![replica(true, 0, u64::MAX)])
        };
        assert_eq!(odd, want);
        // A demoted primary answers as a replica: not one whose count may be followed.
        let demoted = Replication::parse("# Replication\r\nrole:slave\r\nmaster_host:10.0.0.6\r\n");
        assert!(!demoted.primary && demoted.replicas.is_empty());
    }

    /// A tracker on a clock of milliseconds since the test's start.
    struct Clocked {
        t: Tracker,
        start: Instant,
    }

    impl Default for Clocked {
        fn default() -> Self {
            Self {
                t: Tracker::default(),
                start: Instant::now(),
            }
        }
    }

    impl Clocked {
        /// `m` ms after the start.
        fn ms(&self, m: u64) -> Instant {
            self.start + Duration::from_millis(m)
        }

        /// [`Tracker::count`] of `now`, asked for at `asked` ms and read at `at` ms.
        fn read(&mut self, now: &Replication, asked: u64, at: u64) -> u32 {
            let (asked, at) = (self.ms(asked), self.ms(at));
            self.t.count(now, asked, at)
        }

        /// [`Tracker::fell_short`] at `at` ms.
        fn short(&mut self, confirmed: u32, at: u64) -> bool {
            let at = self.ms(at);
            self.t.fell_short(confirmed, at)
        }
    }

    #[test]
    fn a_replica_counts_once_online_recent_and_caught_up() {
        let mut t = Clocked::default();
        // A read asked and answered at second `s`.
        let mut read = |now: &Replication, s: u64| t.read(now, s * 1000, s * 1000);
        // Before a read 2 s old: every online replica that acknowledged lately counts.
        assert_eq!(read(&Replication::parse(INFO), 0), 1);
        assert_eq!(read(&at(1500, vec![replica(true, 1400, 0)]), 1), 1);
        // Reads close together (a publish's own read) do not make the reference newer.
        assert_eq!(read(&at(1600, vec![replica(true, 1400, 0)]), 1), 1);
        // From then on, a replica must have reached the primary's offset of 2 s before (1200).
        assert_eq!(read(&at(1900, vec![replica(true, 1199, 0)]), 2), 0);
        assert_eq!(read(&at(2000, vec![replica(true, 1600, 1)]), 3), 1);
        assert_eq!(read(&at(2000, vec![replica(true, 1599, 1)]), 3), 0);
        // Silent for too long: a stalled link.
        assert_eq!(read(&at(2000, vec![replica(true, 2000, 4)]), 4), 0);
        // Resyncing: online but far behind.
        assert_eq!(read(&at(9000, vec![replica(true, 10, 0)]), 7), 0);
        // Not online at all.
        assert_eq!(read(&at(9000, vec![replica(false, 9000, 0)]), 8), 0);
        // Another primary (a failover) starts a new history, even at a higher offset: its
        // replicas are not measured against the old one's offsets (9000 two seconds ago).
        let two = vec![replica(true, 100, 0), replica(true, 90, 1)];
        let promoted = Replication {
            replid: "def".into(),
            ..at(9100, two)
        };
        assert_eq!(read(&promoted, 9), 2);
    }

    #[test]
    fn a_shortfall_leaves_a_stalled_replica_out_until_it_has_caught_up() {
        let mut t = Clocked::default();
        // Two replicas, `a` and `b` at those offsets (lags), the primary at `primary`.
        let two = |primary: u64, (a, lag_a): (u64, u64), (b, lag_b): (u64, u64)| {
            at(
                primary,
                vec![replica(true, a, lag_a), replica(true, b, lag_b)],
            )
        };
        assert_eq!(t.read(&two(5000, (5000, 0), (5000, 0)), 0, 0), 2);
        // A publish at 1.5 s saw one of the two confirm. A read asked before it does not set
        // the mark and counts only the one confirmed.
        assert!(t.short(1, 1500));
        assert_eq!(t.read(&two(5000, (5000, 0), (5000, 0)), 1400, 1600), 1);
        // The first read asked after it marks the primary's offset (6000); `a`, stalled, still
        // looks recent (lag 1) but never gets past the mark; one is counted, the one confirmed.
        assert_eq!(t.read(&two(6000, (5000, 1), (5900, 0)), 2000, 2000), 1);
        assert_eq!(t.read(&two(6000, (5000, 1), (6000, 0)), 3000, 3000), 1);
        // Another shortfall (none confirmed) lowers the floor to none: a read asked before it
        // counts none; the next one marks 6000 again, which `b` has passed.
        assert!(!t.short(0, 3100));
        assert_eq!(t.read(&two(6000, (5000, 1), (6000, 0)), 3050, 3150), 0);
        assert_eq!(t.read(&two(6000, (5000, 1), (6000, 0)), 3200, 3200), 1);
        // `a` acknowledges again, past the mark: the shortfall is over (the next one is a first).
        assert_eq!(t.read(&two(8000, (7000, 0), (8000, 0)), 4000, 4000), 2);
        assert!(t.short(1, 4100));

        // `a` stalls again; the mark is 9000. Two seconds on, its offset is below the primary's
        // of two seconds before: left out by the count itself, which ends the shortfall.
        assert_eq!(t.read(&two(9000, (8000, 1), (9000, 0)), 4200, 4200), 1);
        assert_eq!(t.read(&two(10000, (8000, 3), (10000, 0)), 6300, 6300), 1);
        assert!(t.short(0, 6400));

        // Back and caught up by the count's rules, but not past the mark (10500): still out;
        // past it, counted, and the shortfall is over.
        assert_eq!(t.read(&two(10500, (9800, 0), (10500, 0)), 6500, 6500), 1);
        assert_eq!(t.read(&two(11000, (10600, 0), (11000, 0)), 7500, 7500), 2);
        assert!(t.short(0, 7600));
        assert_eq!(t.read(&two(11500, (11000, 0), (11500, 0)), 7650, 7650), 1);

        // A failover: the shortfall stays, marked anew on the new primary's offsets (its replica
        // at 90 of 100 is not past it; 200 is, though far below the old mark of 11500).
        let promoted = |primary: u64, offset: u64| Replication {
            replid: "def".into(),
            ..at(primary, vec![replica(true, offset, 0)])
        };
        assert_eq!(t.read(&promoted(100, 90), 7700, 7700), 0);
        assert_eq!(t.read(&promoted(200, 200), 8700, 8700), 1);
        assert!(t.short(0, 8800));
    }

    #[test]
    fn a_shortfall_lowers_the_count_at_once_and_a_failed_read_keeps_it() {
        let f = Followers::new(2);
        let both = at(5000, vec![replica(true, 5000, 0), replica(true, 5000, 0)]);
        assert_eq!(f.counted(), None);
        assert_eq!(f.read(&both, Instant::now()), 2);
        // A publish saw one of them confirm: the next ones wait for one.
        f.waited(2, 1);
        assert_eq!(f.counted(), Some(1));
        // A read fails: the count stays as it is, and a shortfall still lowers it.
        f.read_failed(&PortError::Unavailable("INFO timed out".into()));
        assert_eq!(f.counted(), Some(1));
        let before_it = Instant::now() - Duration::from_millis(1);
        f.waited(1, 0);
        assert_eq!(f.counted(), Some(0));
        // Reads answer again: one asked before the last shortfall does not mark it; one asked
        // after it does, and both replicas past the mark end it.
        assert_eq!(f.read(&both, before_it), 0);
        assert_eq!(f.read(&both, Instant::now()), 2);
    }

    #[test]
    fn a_wait_is_a_shortfall_only_below_the_count_it_began_with_and_the_count_now() {
        let f = Followers::new(2);
        let one = at(5000, vec![replica(true, 5000, 0), replica(false, 0, 9)]);
        let both = at(6000, vec![replica(true, 6000, 0), replica(true, 6000, 0)]);
        assert_eq!(f.read(&one, Instant::now()), 1);
        // A publish begins with one followed; a read raises the count to two while its `WAIT 1`
        // runs, which returns once one confirmed: not a shortfall.
        let began = f.counted().unwrap_or_default();
        assert_eq!(f.read(&both, Instant::now()), 2);
        f.waited(began, 1);
        assert_eq!(f.counted(), Some(2));
        assert!(lock(&f.tracker).shortfall.is_none());
        // Three publishes begin with two followed and a replica stalls: the first to return is
        // a shortfall; the next, seeing as many as the count now, is not one more (it would
        // move the shortfall's time on); one seeing fewer still is.
        f.waited(2, 1);
        assert_eq!(f.counted(), Some(1));
        let first = lock(&f.tracker).shortfall.map(|s| s.at);
        std::thread::sleep(Duration::from_millis(2));
        f.waited(2, 1);
        assert_eq!(lock(&f.tracker).shortfall.map(|s| s.at), first);
        f.waited(2, 0);
        assert_eq!(f.counted(), Some(0));
        assert_ne!(lock(&f.tracker).shortfall.map(|s| s.at), first);
    }

    use proptest::prelude::*;

    /// One step of a run: a read of two replicas, or a publish falling short.
    #[derive(Clone, Debug)]
    enum Step {
        /// `dt` ms on, the primary `advance` further; asked `early` ms before it was answered;
        /// each replica `(online, lag, behind the primary)`.
        Read {
            dt: u64,
            early: u64,
            advance: u64,
            replicas: [(bool, u64, u64); 2],
        },
        /// `dt` ms on, a publish saw `confirmed` replicas.
        Short { dt: u64, confirmed: u32 },
    }

    /// Reads three times as often as shortfalls; offsets may go back (a resync).
    fn step() -> impl Strategy<Value = Step> {
        let replica = (any::<bool>(), 0..6_u64, 0..3000_u64);
        prop_oneof![
            3 => (1..1500_u64, 0..1500_u64, 0..2000_u64, [replica.clone(), replica]).prop_map(
                |(dt, early, advance, replicas)| Step::Read { dt, early, advance, replicas }
            ),
            1 => (1..1500_u64, 0..3_u32).prop_map(|(dt, confirmed)| Step::Short { dt, confirmed }),
        ]
    }

    proptest! {
        /// Whatever the reads and shortfalls, a shortfall never counts more than the rules do,
        /// and once both replicas have acknowledged past the primary's offset at the first read
        /// asked after the last shortfall, the count is the rules' again.
        #[test]
        fn a_shortfall_only_lowers_the_count_and_ends_once_replicas_are_past_its_mark(
            steps in prop::collection::vec(step(), 1..60)
        ) {
            let (mut t, mut rules) = (Clocked::default(), Clocked::default());
            let (mut now_ms, mut primary) = (0_u64, 10_000_u64);
            // The last shortfall's time, the primary's offset at the first read asked after
            // it, and whether a read has since shown both replicas past that.
            let (mut short_at, mut mark, mut over) = (None::<u64>, None::<u64>, true);
            for s in steps {
                match s {
                    Step::Short { dt, confirmed } => {
                        now_ms += dt;
                        t.short(confirmed, now_ms);
                        (short_at, mark, over) = (Some(now_ms), None, false);
                    }
                    Step::Read { dt, early, advance, replicas } => {
                        now_ms += dt;
                        primary += advance;
                        let asked = now_ms.saturating_sub(early);
                        let read = at(primary, replicas.iter().map(|&(online, lag, behind)| {
                            replica(online, primary.saturating_sub(behind), lag)
                        }).collect());
                        let counted = t.read(&read, asked, now_ms);
                        let by_rules = rules.read(&read, asked, now_ms);
                        prop_assert!(counted <= by_rules, "{counted} > {by_rules}");
                        let asked_after = short_at.is_some_and(|at| asked >= at);
                        match mark {
                            None if asked_after => mark = Some(primary),
                            Some(m) if read.replicas.iter().all(|r| r.offset >= m) => over = true,
                            _ => {}
                        }
                        if over {
                            prop_assert_eq!(counted, by_rules);
                        }
                    }
                }
            }
        }
    }
}
