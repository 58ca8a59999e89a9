//! The load generator: C keep-alive connections, each a task sending one request at a time, at a
//! fixed rate (latency measured from the *intended* send time, so a slow server cannot hide its
//! queueing: no coordinated omission) or flat out.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use liveops_core::Keyring;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::time::Instant;

use crate::client::{Connection, Endpoint, Outgoing};
use crate::report::{Percentiles, Phase};
use crate::BenchError;

/// Highest latency recorded, in microseconds (an hour).
const MAX_MICROS: u64 = 3_600_000_000;

/// What each of `tasks` returned, in order; the first failure (`what` names the tasks when one
/// panicked).
pub(crate) async fn join_all<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, BenchError>>>,
    what: &str,
) -> Result<Vec<T>, BenchError> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(
            t.await
                .map_err(|e| BenchError::Internal(format!("{what}: {e}")))??,
        );
    }
    Ok(out)
}

/// An empty latency histogram in microseconds, 3 significant digits.
pub(crate) fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).map_err(|e| BenchError::Internal(e.to_string()))
}

/// Percentiles of a microsecond histogram, in milliseconds.
pub(crate) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: ms(h.value_at_quantile(0.50)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

/// Microseconds between two instants (0 if `to` is earlier).
pub(crate) fn micros(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX)
}

/// The unix second now.
pub(crate) fn unix_s() -> i64 {
    liveops_core::now_ms().div_euclid(1000)
}

/// A Zipf-like popularity: the player of rank `k` (0-based) is picked with weight `(k+1)^-s`.
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..n.max(1))
            .map(|k| {
                acc += ((k + 1) as f64).powf(-s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    pub(crate) fn len(&self) -> usize {
        self.cdf.len()
    }

    pub(crate) fn sample(&self, rng: &mut StdRng) -> usize {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Per-player send budget for the current second: real clients do not exceed the per-player
/// rate limit, so neither does the generator (a skewed load would otherwise measure the 429
/// path). Each cell packs `second << 32 | count`.
pub(crate) struct Budget {
    cells: Vec<AtomicU64>,
    cap: u32,
}

impl Budget {
    pub(crate) fn new(n: usize, cap: u32) -> Self {
        Self {
            cells: (0..n).map(|_| AtomicU64::new(0)).collect(),
            cap: cap.max(1),
        }
    }

    /// Takes one send for `player` in unix second `second`; the 1-based count this second, or
    /// `None` if the player's budget is spent.
    pub(crate) fn take(&self, player: usize, second: i64) -> Option<u32> {
        let cell = self.cells.get(player)?;
        let second = second as u64 & 0xffff_ffff;
        let mut cur = cell.load(Ordering::Relaxed);
        loop {
            let next = if cur >> 32 == second {
                if (cur as u32) >= self.cap {
                    return None;
                }
                cur + 1
            } else {
                (second << 32) | 1
            };
            match cell.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(next as u32),
                Err(seen) => cur = seen,
            }
        }
    }
}

/// The bench's players: `bench_0` (the most active) .. `bench_{n-1}`.
pub(crate) struct Players {
    pub(crate) zipf: Zipf,
    budget: Budget,
}

impl Players {
    pub(crate) fn new(n: usize, skew: f64, per_player_rate: u32) -> Self {
        Self {
            zipf: Zipf::new(n, skew),
            // Counts above 100 would repeat a body within a second (see `delta_xp`).
            budget: Budget::new(n.max(1), per_player_rate.clamp(1, 100)),
        }
    }

    /// Picks a player with budget left this second, and the send's count for that player.
    fn pick(&self, rng: &mut StdRng, second: i64) -> Option<(usize, u32)> {
        let n = self.zipf.len();
        for attempt in 0..16 {
            // Popular players first; when they are all spent, anyone.
            let p = if attempt < 8 {
                self.zipf.sample(rng)
            } else {
                rng.gen_range(0..n)
            };
            if let Some(c) = self.budget.take(p, second) {
                return Some((p, c));
            }
        }
        None
    }
}

/// The `deltaXp` of a player's `count`-th event in a second: distinct for counts 1..=100, so no
/// two events of a player signed in the same second have the same body (the second would be
/// answered as a repeat of the first, ADR 0017), and spread evenly over 1..=100 across players,
/// so the fairness z-score never flags them.
pub(crate) fn delta_xp(player: usize, count: u32) -> u32 {
    1 + ((count as usize * 37 + player) % 100) as u32
}

/// Appends one progression event as JSON.
pub(crate) fn write_event(out: &mut String, player: &str, ts: i64, delta: u32) {
    let _ = write!(
        out,
        r#"{{"type":"progression","playerId":"{player}","ts":{ts},"payload":{{"deltaXp":{delta},"activity":"bench_quest_completion"}}}}"#
    );
}

/// What each request of a phase is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    /// `POST /events`.
    Single,
    /// `POST /events/batch` with this many events.
    Batch(usize),
    /// `GET /leaderboard?limit=100`.
    Top100,
    /// `GET /leaderboard/players/{id}?around=0`, players picked by popularity.
    Rank,
    /// `POST /players/{id}/inbox/{messageId}/claim` of one broadcast message ([`Drive::target`]),
    /// each player in turn (`bench_0`, `bench_1`, …, then again from the first: repeats).
    Claim,
    /// `POST /campaigns/{id}/entries` of one live campaign ([`Drive::target`]), each player in
    /// turn like [`Work::Claim`].
    Enter,
}

impl Work {
    /// Events per request (1 for reads).
    pub(crate) fn events(self) -> usize {
        match self {
            Self::Batch(n) => n.max(1),
            _ => 1,
        }
    }
}

/// How to drive one phase.
#[derive(Clone, Debug)]
pub(crate) struct Drive {
    pub(crate) name: String,
    pub(crate) work: Work,
    pub(crate) connections: usize,
    /// Events (or reads) per second in total; `None` for flat out.
    pub(crate) rate: Option<f64>,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) seed: u64,
    /// The broadcast message a [`Work::Claim`] phase claims, or the campaign a [`Work::Enter`]
    /// phase enters.
    pub(crate) target: Option<Arc<str>>,
}

struct Ctx {
    endpoint: Endpoint,
    keyring: Keyring,
    players: Arc<Players>,
    drive: Drive,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// How many claims or entries were built: the next player's index (modulo the players).
    turns: AtomicUsize,
}

/// What one connection saw.
struct Tally {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    status: [u64; 600],
    requests: u64,
    events_sent: u64,
    accepted: u64,
    rejected: u64,
    accepted_all: u64,
    errors: u64,
    throttled: u64,
    missed: u64,
    last_done: Option<Instant>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Result<Self, BenchError> {
        Ok(Self {
            latency: histogram()?,
            service: histogram()?,
            status: [0; 600],
            requests: 0,
            events_sent: 0,
            accepted: 0,
            rejected: 0,
            accepted_all: 0,
            errors: 0,
            throttled: 0,
            missed: 0,
            last_done: None,
            first_error: None,
        })
    }

    fn merge(&mut self, o: &Tally) -> Result<(), BenchError> {
        let err = |e: hdrhistogram::AdditionError| BenchError::Internal(e.to_string());
        self.latency.add(&o.latency).map_err(err)?;
        self.service.add(&o.service).map_err(err)?;
        for (a, b) in self.status.iter_mut().zip(o.status.iter()) {
            *a += b;
        }
        self.requests += o.requests;
        self.events_sent += o.events_sent;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.accepted_all += o.accepted_all;
        self.errors += o.errors;
        self.throttled += o.throttled;
        self.missed += o.missed;
        self.last_done = self.last_done.max(o.last_done);
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
        Ok(())
    }
}

/// The per-event outcome of a batch answer.
#[derive(Deserialize)]
struct BatchCounts {
    accepted: u64,
    rejected: u64,
}

/// The next request: its path (empty when the path is in the buffer), signature headers for a
/// POST whose body is the buffer.
struct Prepared {
    path: Cow<'static, str>,
    signed: Option<(String, String)>,
    method: Method,
}

impl Prepared {
    fn get(path: &'static str) -> Self {
        Self {
            path: Cow::Borrowed(path),
            signed: None,
            method: Method::GET,
        }
    }
}

/// Builds the next request, or `None` when every player's budget is spent this second.
fn next_request(ctx: &Ctx, rng: &mut StdRng, buf: &mut String) -> Option<Prepared> {
    buf.clear();
    let ts = unix_s();
    let mut event = |buf: &mut String| -> Option<()> {
        let (p, count) = ctx.players.pick(rng, ts)?;
        write_event(buf, &format!("bench_{p}"), ts, delta_xp(p, count));
        Some(())
    };
    let path = match ctx.drive.work {
        Work::Single => {
            event(buf)?;
            "/events"
        }
        Work::Batch(n) => {
            buf.push_str(r#"{"events":["#);
            for i in 0..n.max(1) {
                if i > 0 {
                    buf.push(',');
                }
                event(buf)?;
            }
            buf.push_str("]}");
            "/events/batch"
        }
        Work::Top100 => return Some(Prepared::get("/leaderboard?limit=100")),
        Work::Rank => {
            let p = ctx.players.zipf.sample(rng);
            let _ = write!(buf, "/leaderboard/players/bench_{p}?around=0");
            return Some(Prepared::get(""));
        }
        Work::Claim | Work::Enter => {
            let target = ctx.drive.target.as_deref()?;
            let turn = ctx.turns.fetch_add(1, Ordering::Relaxed);
            let player = format!("bench_{}", turn % ctx.players.zipf.len());
            let path = if ctx.drive.work == Work::Claim {
                let _ = write!(buf, r#"{{"playerId":"{player}","messageId":"{target}"}}"#);
                format!("/players/{player}/inbox/{target}/claim")
            } else {
                let _ = write!(buf, r#"{{"playerId":"{player}","campaignId":"{target}"}}"#);
                format!("/campaigns/{target}/entries")
            };
            let sig = ctx
                .keyring
                .sign_request(None, ts, "POST", &path, buf.as_bytes())?;
            return Some(Prepared {
                path: Cow::Owned(path),
                signed: Some((ts.to_string(), sig)),
                method: Method::POST,
            });
        }
    };
    let sig = ctx
        .keyring
        .sign_request(None, ts, "POST", path, buf.as_bytes())?;
    Some(Prepared {
        path: Cow::Borrowed(path),
        signed: Some((ts.to_string(), sig)),
        method: Method::POST,
    })
}

/// Sleeps until the next wall-clock second (when player budgets refill).
async fn until_next_second() {
    let ms = liveops_core::now_ms().rem_euclid(1000);
    tokio::time::sleep(Duration::from_millis((1000 - ms) as u64 + 1)).await;
}

async fn connection(ctx: Arc<Ctx>, k: usize) -> Result<Tally, BenchError> {
    let mut conn = Connection::new(ctx.endpoint.clone())?;
    let mut rng = StdRng::seed_from_u64(ctx.drive.seed.wrapping_add(k as u64 * 7919));
    let mut tally = Tally::new()?;
    let mut buf = String::with_capacity(256 * ctx.drive.work.events());
    let per_request = ctx.drive.work.events() as f64;
    let c = ctx.drive.connections.max(1) as f64;
    let interval = ctx
        .drive
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(c * per_request / r));
    let mut next = ctx.start + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(k as f64 / c));
    loop {
        let intended = match interval {
            Some(iv) => {
                let t = next;
                if t >= ctx.end {
                    break;
                }
                let now = Instant::now();
                if now >= ctx.end {
                    // The server fell behind the schedule: the slots left are not sent (they
                    // would stretch the phase and its throughput past its duration).
                    let left = ctx.end.saturating_duration_since(t).as_secs_f64();
                    tally.missed += (left / iv.as_secs_f64()).ceil() as u64;
                    break;
                }
                next += iv;
                tokio::time::sleep_until(t).await;
                t
            }
            None => {
                let now = Instant::now();
                if now >= ctx.end {
                    break;
                }
                now
            }
        };
        let Some(Prepared {
            path,
            signed,
            method,
        }) = next_request(&ctx, &mut rng, &mut buf)
        else {
            tally.throttled += 1;
            until_next_second().await;
            // Missed slots are dropped, not sent in a burst that would count the wait as latency.
            next = next.max(Instant::now());
            continue;
        };
        let (path, body) = if path.is_empty() {
            (buf.as_str(), Bytes::new())
        } else {
            (path.as_ref(), Bytes::copy_from_slice(buf.as_bytes()))
        };
        let sent = Instant::now();
        let answer = conn
            .send(Outgoing {
                method,
                path,
                signed,
                body,
            })
            .await;
        let done = Instant::now();
        let events = ctx.drive.work.events() as u64;
        let (accepted, rejected) = match &answer {
            Ok((status, body)) => match ctx.drive.work {
                Work::Batch(_) if *status == 200 => serde_json::from_slice::<BatchCounts>(body)
                    .map_or((0, events), |c| (c.accepted, c.rejected)),
                Work::Single if *status == 202 => (1, 0),
                Work::Top100 | Work::Rank | Work::Claim if *status == 200 => (1, 0),
                // A new entry, or the same signed request again answered with it; a player
                // entering again (past the last, from the first) is refused: 409.
                Work::Enter if *status == 201 || *status == 200 => (1, 0),
                _ => (0, events),
            },
            Err(_) => (0, events),
        };
        tally.accepted_all += accepted;
        if intended < ctx.measure_from {
            continue;
        }
        tally.last_done = Some(done);
        tally.requests += 1;
        tally.events_sent += events;
        tally.accepted += accepted;
        tally.rejected += rejected;
        match answer {
            Ok((status, _)) => {
                if let Some(n) = tally.status.get_mut(usize::from(status)) {
                    *n += 1;
                }
                tally
                    .latency
                    .saturating_record(micros(intended, done).max(1));
                tally.service.saturating_record(micros(sent, done).max(1));
            }
            Err(e) => {
                tally.errors += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(e);
                }
                // Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Ok(tally)
}

/// The events accepted over the whole phase (warm-up included), for drain accounting.
pub(crate) struct Driven {
    pub(crate) phase: Phase,
    pub(crate) accepted_all: u64,
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
}

/// Runs one phase against `endpoint` and summarizes it.
pub(crate) async fn drive(
    endpoint: &Endpoint,
    keyring: &Keyring,
    players: &Arc<Players>,
    drive: Drive,
) -> Result<Driven, BenchError> {
    let start = Instant::now() + Duration::from_millis(20);
    let ctx = Arc::new(Ctx {
        endpoint: endpoint.clone(),
        keyring: keyring.clone(),
        players: players.clone(),
        start,
        measure_from: start + drive.warmup,
        end: start + drive.warmup + drive.duration,
        drive,
        turns: AtomicUsize::new(0),
    });
    let tasks: Vec<_> = (0..ctx.drive.connections.max(1))
        .map(|k| tokio::spawn(connection(ctx.clone(), k)))
        .collect();
    let mut total = Tally::new()?;
    for tally in join_all(tasks, "generator task").await? {
        total.merge(&tally)?;
    }
    let ended = Instant::now();
    // Over the measured window, or until the last answer if that came later.
    let secs = total
        .last_done
        .map_or(0.0, |t| {
            t.saturating_duration_since(ctx.measure_from).as_secs_f64()
        })
        .max(ctx.drive.duration.as_secs_f64())
        .max(1e-9);
    let status = total
        .status
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| (code.to_string(), *n))
        .collect();
    let phase = Phase {
        name: ctx.drive.name.clone(),
        work: match ctx.drive.work {
            Work::Single => "POST /events".into(),
            Work::Batch(n) => format!("POST /events/batch ({n} events)"),
            Work::Top100 => "GET /leaderboard?limit=100".into(),
            Work::Rank => "GET /leaderboard/players/{id}?around=0".into(),
            Work::Claim => "POST /players/{id}/inbox/{messageId}/claim (one broadcast)".into(),
            Work::Enter => "POST /campaigns/{id}/entries (one live campaign)".into(),
        },
        connections: ctx.drive.connections,
        target_rate: ctx.drive.rate,
        duration_s: secs,
        requests: total.requests,
        events_sent: total.events_sent,
        accepted: total.accepted,
        rejected: total.rejected,
        transport_errors: total.errors,
        throttled: total.throttled,
        missed: total.missed,
        requests_per_s: total.requests as f64 / secs,
        accepted_per_s: total.accepted as f64 / secs,
        latency_ms: percentiles(&total.latency),
        service_ms: percentiles(&total.service),
        status,
        first_error: total.first_error,
        ratio_to_ceiling: None,
    };
    Ok(Driven {
        phase,
        accepted_all: total.accepted_all,
        started: start,
        ended,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = StdRng::seed_from_u64(1);
        let mut hits = [0u32; 1000];
        for _ in 0..100_000 {
            hits[z.sample(&mut rng)] += 1;
        }
        assert!(
            hits[0] > hits[10] && hits[10] > hits[500],
            "{:?}",
            &hits[..12]
        );
        // Rank 1 gets about 1/H(1000) = 13 % of the picks.
        assert!((10_000..16_000).contains(&hits[0]), "{}", hits[0]);
    }

    #[test]
    fn budget_caps_each_player_per_second() {
        let b = Budget::new(2, 3);
        assert_eq!(b.take(0, 10), Some(1));
        assert_eq!(b.take(0, 10), Some(2));
        assert_eq!(b.take(0, 10), Some(3));
        assert_eq!(b.take(0, 10), None);
        assert_eq!(b.take(1, 10), Some(1));
        assert_eq!(b.take(0, 11), Some(1));
        assert_eq!(b.take(5, 11), None);
    }

    #[test]
    fn a_players_bodies_differ_within_a_second() {
        for p in [0, 1, 99, 12345] {
            let mut seen: Vec<u32> = (1..=100).map(|c| delta_xp(p, c)).collect();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 100);
            assert!(seen.iter().all(|d| (1..=100).contains(d)));
        }
    }

    #[test]
    fn events_are_valid_for_the_product() {
        let mut s = String::new();
        write_event(&mut s, "bench_7", 1_700_000_000, 42);
        let e = liveops_core::event::parse_event(
            s.as_bytes(),
            &liveops_core::Limits::default(),
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(e.score(), 42);
    }
}
