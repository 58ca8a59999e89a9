//! What `liveops bench` reports: one JSON document (`--json`) or the same as a human table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest seen.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// A phase's figures divided by the ceiling's figures for the same load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// Accepted events (or reads) per second, system / ceiling.
    pub throughput: f64,
    /// Median latency, system / ceiling.
    pub p50: f64,
    /// 99th percentile latency, system / ceiling.
    pub p99: f64,
}

/// One measured load: a kind of request driven for a duration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `ingest`, `top100`, `rank` (ceiling phases have the same names).
    pub name: String,
    /// The request sent.
    pub work: String,
    /// Keep-alive connections.
    pub connections: usize,
    /// Fixed rate asked for, events (or reads) per second; `None` when flat out.
    pub target_rate: Option<f64>,
    /// Measured seconds (warm-up excluded): the phase's duration, or until its last answer.
    pub duration_s: f64,
    /// Requests completed in the measured window.
    pub requests: u64,
    /// Events carried by those requests (reads count one each).
    pub events_sent: u64,
    /// Events accepted (202, or `accepted` of a batch answer); reads answered 200.
    pub accepted: u64,
    /// Events refused.
    pub rejected: u64,
    /// Requests that got no HTTP answer.
    pub transport_errors: u64,
    /// Times the generator waited because every picked player had used its per-second budget.
    pub throttled: u64,
    /// Requests of a fixed rate never sent because the server was still behind the schedule
    /// when the phase ended (it could not sustain the rate).
    pub missed: u64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Accepted events (or successful reads) per second.
    pub accepted_per_s: f64,
    /// From the intended send time to the answer (includes queueing in the generator when the
    /// server falls behind a fixed rate).
    pub latency_ms: Percentiles,
    /// From the actual send to the answer.
    pub service_ms: Percentiles,
    /// Answers by HTTP status.
    pub status: BTreeMap<String, u64>,
    /// The first transport error, if any.
    pub first_error: Option<String>,
    /// This phase against the ceiling's phase of the same name.
    pub ratio_to_ceiling: Option<Ratio>,
}

/// Time from a `202` until the event shows in progression and on the leaderboard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Visibility {
    /// Probe events accepted and measured.
    pub samples: u64,
    /// Probe events not visible within the probe timeout.
    pub timeouts: u64,
    /// Probe events refused by the gateway.
    pub refused: u64,
    /// The HTTP status of a refused probe event (0: no answer), if any was refused.
    pub refused_status: Option<u16>,
    /// Until `GET /players/{id}/progress` shows the XP.
    pub progress_ms: Percentiles,
    /// Until `GET /leaderboard/players/{id}` shows the score.
    pub leaderboard_ms: Percentiles,
    /// Until both do.
    pub both_ms: Percentiles,
}

/// Whether the consumers kept up with the load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// End-to-end visibility of probe events sent during the load.
    pub visibility: Visibility,
    /// `bus_lag` (summed over topic and group) sampled about every second during the load, from
    /// `GET /metrics` (the server refreshes the gauge every 2 s).
    pub bus_lag_samples: Vec<u64>,
    /// Largest sampled lag.
    pub bus_lag_max: u64,
    /// Seconds after the load stopped until a probe event sent then was visible everywhere
    /// (the backlog drained); `None` if it did not drain within the timeout.
    pub drain_s: Option<f64>,
    /// Events accepted over the whole load (warm-up included) divided by the time from its start
    /// until the backlog drained: the rate the whole pipeline sustained.
    pub sustained_events_per_s: Option<f64>,
}

/// How the board was filled and how long the product took to be ready.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Startup {
    /// `none`, `repository` (scores written before the product started, then rebuilt by it, as
    /// after a restart) or `http` (batches of events through the whole pipeline).
    pub seed: String,
    /// Ranked players put on the board.
    pub seeded_players: u64,
    /// Seconds spent seeding (for `http`: until the last seeded players were ranked).
    pub seed_s: f64,
    /// With `--spawn`: seconds from building the application to `GET /readyz` answering 200
    /// (boards rebuilt from the repository).
    pub ready_s: Option<f64>,
}

/// Where and when the run happened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// `/proc/loadavg` before the run.
    pub loadavg_before: String,
    /// `/proc/loadavg` after the run.
    pub loadavg_after: String,
    /// RSS of this process at the end of the load, MiB (with `--spawn`: product plus generator).
    pub rss_mib: Option<f64>,
    /// Peak RSS of this process, MiB.
    pub peak_rss_mib: Option<f64>,
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `ingest` or `read`.
    pub mode: String,
    /// `spawn` (in-process product) or the URL measured.
    pub target: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// The machine.
    pub machine: Machine,
    /// Players in the load (the board size for `read`).
    pub players: u64,
    /// Zipf exponent of player activity.
    pub skew: f64,
    /// Most events a player sends per second.
    pub per_player_rate: u32,
    /// Phases measured on the ceiling server (empty without `--ceiling`).
    pub ceiling: Vec<Phase>,
    /// Phases measured on the product.
    pub system: Vec<Phase>,
    /// End-to-end figures of an ingest run.
    pub pipeline: Option<Pipeline>,
    /// Start-up figures of `--spawn`.
    pub startup: Option<Startup>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl Report {
    /// Fills `ratio_to_ceiling` of every system phase that has a ceiling phase of the same name.
    pub fn compute_ratios(&mut self) {
        for p in &mut self.system {
            if let Some(c) = self.ceiling.iter().find(|c| c.name == p.name) {
                p.ratio_to_ceiling = Some(Ratio {
                    throughput: ratio(p.accepted_per_s, c.accepted_per_s),
                    p50: ratio(p.latency_ms.p50, c.latency_ms.p50),
                    p99: ratio(p.latency_ms.p99, c.latency_ms.p99),
                });
            }
        }
    }

    /// The report as a human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "liveops bench: {} against {} ({} players, skew {}, ≤ {} events/s per player), started {}",
            self.mode, self.target, self.players, self.skew, self.per_player_rate, self.started_at
        );
        let _ = writeln!(
            out,
            "machine: {} cpus, loadavg before [{}] after [{}]{}",
            self.machine.cpus,
            self.machine.loadavg_before,
            self.machine.loadavg_after,
            self.machine
                .rss_mib
                .map(|r| format!(
                    ", rss {r:.0} MiB (peak {:.0} MiB)",
                    self.machine.peak_rss_mib.unwrap_or(r)
                ))
                .unwrap_or_default()
        );
        if let Some(s) = self.startup.as_ref().filter(|s| s.seeded_players == 0) {
            let _ = writeln!(
                out,
                "product ready {:.2} s after start",
                s.ready_s.unwrap_or_default()
            );
        }
        if let Some(s) = self.startup.as_ref().filter(|s| s.seeded_players > 0) {
            let _ = writeln!(
                out,
                "board: {} players seeded by {} in {:.1} s{}",
                s.seeded_players,
                s.seed,
                s.seed_s,
                s.ready_s
                    .map(|r| format!("; product ready (boards rebuilt) {r:.2} s after start"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "\n{:<9} {:<7} {:>5} {:>9} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}  {:<20} statuses",
            "server",
            "phase",
            "conns",
            "rate",
            "accepted/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "×ceiling",
            "work"
        );
        let rows = self
            .ceiling
            .iter()
            .map(|p| ("ceiling", p))
            .chain(self.system.iter().map(|p| ("liveops", p)));
        for (server, p) in rows {
            let rate = p
                .target_rate
                .map_or_else(|| "max".to_owned(), |r| format!("{r:.0}"));
            let ratio = p
                .ratio_to_ceiling
                .as_ref()
                .map_or_else(|| "-".to_owned(), |r| format!("{:.2}", r.throughput));
            let statuses: Vec<String> = p.status.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            let _ = writeln!(
                out,
                "{:<9} {:<7} {:>5} {:>9} {:>12.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8}  {:<20} {}{}{}{}",
                server,
                p.name,
                p.connections,
                rate,
                p.accepted_per_s,
                p.latency_ms.p50,
                p.latency_ms.p95,
                p.latency_ms.p99,
                p.latency_ms.max,
                ratio,
                p.work,
                statuses.join(" "),
                if p.transport_errors > 0 {
                    format!(" errors:{}", p.transport_errors)
                } else {
                    String::new()
                },
                if p.throttled > 0 {
                    format!(" throttled:{}", p.throttled)
                } else {
                    String::new()
                },
                if p.missed > 0 {
                    format!(" missed:{}", p.missed)
                } else {
                    String::new()
                },
            );
        }
        if let Some(pl) = &self.pipeline {
            let v = &pl.visibility;
            let _ = writeln!(
                out,
                "\nend-to-end visibility ({} probes, {} timeouts, {} refused): progress p50 {:.1} / p99 {:.1} ms; leaderboard p50 {:.1} / p99 {:.1} ms; both p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} ms",
                v.samples, v.timeouts, v.refused, v.progress_ms.p50, v.progress_ms.p99,
                v.leaderboard_ms.p50, v.leaderboard_ms.p99, v.both_ms.p50, v.both_ms.p95,
                v.both_ms.p99, v.both_ms.max
            );
            let _ = writeln!(
                out,
                "bus lag samples {:?} (max {}); drained {} after the load; sustained end to end {}",
                pl.bus_lag_samples,
                pl.bus_lag_max,
                pl.drain_s
                    .map_or_else(|| "NOT".to_owned(), |d| format!("{d:.2} s")),
                pl.sustained_events_per_s
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.0} events/s")),
            );
        }
        out
    }
}
