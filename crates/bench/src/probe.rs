//! End-to-end visibility probes and the bus-lag sampler.
//!
//! A probe is a dedicated player whose expected XP and score the bench tracks: it sends one
//! event, and from the `202` polls `GET /players/{id}/progress` and `GET /leaderboard/players/{id}`
//! until both include it.

use std::time::Duration;

use hdrhistogram::Histogram;
use liveops_core::Keyring;
use rand::Rng;
use serde_json::Value;
use tokio::time::Instant;

use crate::load::{delta_xp, histogram, join_all, micros, percentiles, unix_s, write_event};
use crate::report::Visibility;
use crate::BenchError;

/// Pause between two polls of a probe.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// One probe player.
pub(crate) struct Probe {
    client: reqwest::Client,
    base: String,
    keyring: Keyring,
    player: String,
    index: usize,
    sent: u32,
    expected: u64,
}

/// The outcome of one probe event.
pub(crate) enum Seen {
    /// Visible after (progress, leaderboard) microseconds.
    After(u64, u64),
    /// Accepted but not visible in time.
    Timeout,
    /// Not accepted (HTTP status, 0 for a transport error).
    Refused(u16),
}

impl Probe {
    pub(crate) fn new(base: &str, keyring: &Keyring, tag: &str, index: usize) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: base.to_owned(),
            keyring: keyring.clone(),
            player: format!("bench_probe_{tag}_{index}"),
            index,
            sent: 0,
            expected: 0,
        }
    }

    async fn xp(&self) -> Option<u64> {
        let url = format!("{}/players/{}/progress", self.base, self.player);
        let v: Value = self.client.get(url).send().await.ok()?.json().await.ok()?;
        v["xp"].as_u64()
    }

    async fn score(&self) -> Option<u64> {
        let url = format!("{}/leaderboard/players/{}?around=0", self.base, self.player);
        let res = self.client.get(url).send().await.ok()?;
        if res.status() == 404 {
            return Some(0);
        }
        let v: Value = res.json().await.ok()?;
        v["score"].as_u64()
    }

    /// Sends one event and waits (up to `timeout`) until it is visible.
    pub(crate) async fn once(&mut self, timeout: Duration) -> Seen {
        self.sent += 1;
        let delta = delta_xp(self.index, self.sent % 100 + 1);
        let ts = unix_s();
        let mut body = String::new();
        write_event(&mut body, &self.player, ts, delta);
        // The base is `http://host:port` (no path: `Endpoint`), so the path sent is `/events`.
        let Some(sig) = self
            .keyring
            .sign_request(None, ts, "POST", "/events", body.as_bytes())
        else {
            return Seen::Refused(0);
        };
        let res = self
            .client
            .post(format!("{}/events", self.base))
            .header("content-type", "application/json")
            .header("x-timestamp", ts.to_string())
            .header("x-signature", sig)
            .body(body)
            .send()
            .await;
        match res {
            Ok(r) if r.status() == 202 => {}
            Ok(r) => return Seen::Refused(r.status().as_u16()),
            Err(_) => return Seen::Refused(0),
        }
        let t0 = Instant::now();
        self.expected += u64::from(delta);
        let (mut progress, mut board) = (None, None);
        while t0.elapsed() < timeout {
            if progress.is_none() && self.xp().await.is_some_and(|x| x >= self.expected) {
                progress = Some(micros(t0, Instant::now()));
            }
            if board.is_none() && self.score().await.is_some_and(|s| s >= self.expected) {
                board = Some(micros(t0, Instant::now()));
            }
            if let (Some(p), Some(b)) = (progress, board) {
                return Seen::After(p, b);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        Seen::Timeout
    }
}

/// Visibility histograms of several probes.
pub(crate) struct Tracker {
    progress: Histogram<u64>,
    board: Histogram<u64>,
    both: Histogram<u64>,
    timeouts: u64,
    refused: u64,
    refused_status: Option<u16>,
}

impl Tracker {
    pub(crate) fn new() -> Result<Self, BenchError> {
        Ok(Self {
            progress: histogram()?,
            board: histogram()?,
            both: histogram()?,
            timeouts: 0,
            refused: 0,
            refused_status: None,
        })
    }

    pub(crate) fn add(&mut self, seen: &Seen) {
        match *seen {
            Seen::After(p, b) => {
                self.progress.saturating_record(p.max(1));
                self.board.saturating_record(b.max(1));
                self.both.saturating_record(p.max(b).max(1));
            }
            Seen::Timeout => self.timeouts += 1,
            Seen::Refused(status) => {
                self.refused += 1;
                self.refused_status = Some(status);
            }
        }
    }

    fn merge(&mut self, o: &Tracker) -> Result<(), BenchError> {
        let err = |e: hdrhistogram::AdditionError| BenchError::Internal(e.to_string());
        self.progress.add(&o.progress).map_err(err)?;
        self.board.add(&o.board).map_err(err)?;
        self.both.add(&o.both).map_err(err)?;
        self.timeouts += o.timeouts;
        self.refused += o.refused;
        self.refused_status = self.refused_status.or(o.refused_status);
        Ok(())
    }

    pub(crate) fn visibility(&self) -> Visibility {
        Visibility {
            samples: self.both.len(),
            timeouts: self.timeouts,
            refused: self.refused,
            refused_status: self.refused_status,
            progress_ms: percentiles(&self.progress),
            leaderboard_ms: percentiles(&self.board),
            both_ms: percentiles(&self.both),
        }
    }
}

/// Runs `n` probes, each sending an event every `every` (plus jitter) from `from` until `until`.
pub(crate) async fn run_probes(
    base: &str,
    keyring: &Keyring,
    tag: &str,
    n: usize,
    every: Duration,
    from: Instant,
    until: Instant,
) -> Result<Tracker, BenchError> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut probe = Probe::new(base, keyring, tag, i);
            tokio::spawn(async move {
                let mut tracker = Tracker::new()?;
                tokio::time::sleep_until(from).await;
                while Instant::now() < until {
                    let jitter = rand::thread_rng().gen_range(0..=every.as_millis() as u64);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                    if Instant::now() >= until {
                        break;
                    }
                    let seen = probe.once(Duration::from_secs(10)).await;
                    tracker.add(&seen);
                }
                Ok::<_, BenchError>(tracker)
            })
        })
        .collect();
    let mut all = Tracker::new()?;
    for tracker in join_all(tasks, "probe task").await? {
        all.merge(&tracker)?;
    }
    Ok(all)
}

/// Sum of every `bus_lag` gauge in a Prometheus text page, if there is one.
pub(crate) fn bus_lag(metrics: &str) -> Option<u64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("bus_lag{") || l.starts_with("bus_lag "))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum::<f64>().max(0.0) as u64)
}

/// Samples `bus_lag` from `GET /metrics` about every second until `until`.
pub(crate) async fn sample_lag(base: String, until: Instant) -> Vec<u64> {
    let client = reqwest::Client::new();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        tick.tick().await;
        let page = match client.get(format!("{base}/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => continue,
        };
        if let Some(lag) = bus_lag(&page) {
            samples.push(lag);
        }
    }
    samples
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sums_bus_lag_gauges() {
        let page = "# TYPE bus_lag gauge\nbus_lag{topic=\"events.ingested\",group=\"fairness\"} 12\nbus_lag{topic=\"events.accepted\",group=\"progression\"} 3\nbus_lagging_total 9\n";
        assert_eq!(bus_lag(page), Some(15));
        assert_eq!(bus_lag("http_requests_total 3\n"), None);
    }
}
