//! `liveops bench`: a load generator for the running system, the ceiling it is compared with,
//! and a read benchmark (see `docs/BENCHMARKS.md`).
//!
//! It signs events like a real client, picks players with a Zipf-like skew (no player above
//! `--player-rate` events per second, as the product's rate limit expects of real clients),
//! drives C keep-alive connections at a fixed rate or flat out, and reports throughput, latency
//! percentiles (HDR histograms), answers per status, and end-to-end visibility: how long after
//! its `202` a probe event shows in progression and on the leaderboard. The claims mode sends one
//! broadcast inbox message as an operator and has the players claim it, as after a live event's
//! gift to everyone; the entries mode opens a campaign as an operator and has the players enter
//! it, as when a live event starts.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::{Args, ValueEnum};
use liveops_core::Keyring;
use tokio::time::Instant;

pub mod ceiling;
pub mod client;
mod load;
mod probe;
pub mod report;
pub mod serve;

use client::{Connection, Endpoint, Outgoing};
use load::{Drive, Players, Work};
pub use report::{Machine, Percentiles, Phase, Pipeline, Ratio, Report, Startup, Visibility};
pub use serve::{own_runtime, Served};

/// Why a bench run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The `--url` is not usable.
    #[error("--url {0}")]
    Url(String),
    /// The configuration (secret, flags) is not usable.
    #[error("configuration: {0}")]
    Config(String),
    /// A server the bench starts or targets failed.
    #[error("server: {0}")]
    Server(String),
    /// The bench itself failed.
    #[error("{0}")]
    Internal(String),
}

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Event ingestion (`POST /events` or `/events/batch`) with end-to-end visibility probes.
    Ingest,
    /// Top-100 and rank-of-player reads on a board of `--players` players.
    Read,
    /// Claims of one broadcast inbox message (sent first, as the operator `ADMIN_EMAIL`) by
    /// `--players` players in turn, each signed.
    Claims,
    /// Entries into one campaign (created and scheduled first, as the operator `ADMIN_EMAIL`,
    /// live within a scheduler tick) by `--players` players in turn, each signed.
    Entries,
}

/// Options of `liveops bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchOpts {
    /// Base URL of a running product (default `http://127.0.0.1:PORT`).
    #[arg(long, conflicts_with = "spawn")]
    pub url: Option<String>,
    /// Start the embedded product in-process, on a random port in a temporary directory, and
    /// measure it (the configuration flags apply to it).
    #[arg(long)]
    pub spawn: bool,
    /// Also measure, in the same run, the ceiling: a bare axum server that only checks the HMAC
    /// and parses the JSON; every result is then also given as a ratio to it.
    #[arg(long)]
    pub ceiling: bool,
    /// `ingest`, `read`, `claims` or `entries`.
    #[arg(long, value_enum, default_value = "ingest")]
    pub mode: Mode,
    /// Players sending events (ingest), on the board (read) or claiming (claims: each in turn,
    /// then again from the first, answered as repeats; give more than the run claims).
    #[arg(long, default_value_t = 10_000)]
    pub players: usize,
    /// Zipf exponent of player activity (0 = uniform).
    #[arg(long, default_value_t = 1.0)]
    pub skew: f64,
    /// Most events one player sends per second (1..=100; keep it under RATE_LIMIT_MAX).
    #[arg(long, default_value_t = 80)]
    pub player_rate: u32,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Events (or reads) per second in total; flat out if absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Events per request: 1 posts to `/events`, more to `/events/batch`.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Visibility probe players (ingest).
    #[arg(long, default_value_t = 4)]
    pub probes: usize,
    /// Longest pause between two events of a probe, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub probe_every_ms: u64,
    /// Read mode against `--url`: the board is already seeded; do not send seeding batches.
    #[arg(long)]
    pub no_seed: bool,
    /// Seconds to wait for the backlog to drain after an ingest load.
    #[arg(long, default_value_t = 120.0)]
    pub drain_timeout: f64,
    /// Claims mode against `--url`: the broadcast goes to every player of that product (a real
    /// message, claimable for a day), so it is sent only with this flag.
    #[arg(long)]
    pub broadcast_to_all: bool,
    /// Entries mode against `--url`: the campaign is a real one every player of that product
    /// sees and may enter (for an hour), so it is opened only with this flag.
    #[arg(long)]
    pub open_campaign: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Default for BenchOpts {
    fn default() -> Self {
        Self {
            url: None,
            spawn: false,
            ceiling: false,
            mode: Mode::Ingest,
            players: 10_000,
            skew: 1.0,
            player_rate: 80,
            connections: 32,
            rate: None,
            batch: 1,
            duration: 10.0,
            warmup: 1.0,
            probes: 4,
            probe_every_ms: 50,
            no_seed: false,
            drain_timeout: 120.0,
            broadcast_to_all: false,
            open_campaign: false,
            json: false,
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `VmRSS` and `VmHWM` of this process in MiB, where `/proc` exists.
fn rss_mib() -> (Option<f64>, Option<f64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Starts the product under test in-process: what `--spawn` runs (the binary provides it).
#[async_trait]
pub trait Spawn: Send + Sync {
    /// Starts the product with `preload` players already ranked and waits until it is ready.
    async fn spawn(&self, preload: usize) -> Result<(Served, Startup), BenchError>;
}

/// What the bench measures: a running product, or one it starts itself.
pub enum Product {
    /// A running product at this base URL.
    Url(String),
    /// A product started in-process.
    Spawned(Box<dyn Spawn>),
}

/// How the bench signs requests: the product's keys and clock tolerance, and the operator it
/// logs in as where a mode sets up through operator routes (claims).
#[derive(Clone, Debug)]
pub struct Signer {
    /// The keys (the primary signs).
    pub keyring: Keyring,
    /// The product's allowed clock difference, seconds.
    pub tolerance_s: i64,
    /// An operator's email and password (`ADMIN_EMAIL`, `ADMIN_PASSWORD`), if given.
    pub operator: Option<(String, String)>,
}

/// The product under test.
struct System {
    endpoint: Endpoint,
    keyring: Keyring,
    tolerance_s: i64,
    operator: Option<(String, String)>,
    served: Option<Served>,
    startup: Option<Startup>,
    /// What spawned the product, kept until the product is stopped: it owns the product's
    /// files (a temporary directory deleted under a running product fails every connection the
    /// database pool opens afterwards).
    _spawner: Option<Box<dyn Spawn>>,
}

async fn open_system(
    product: Product,
    signer: Signer,
    preload: usize,
) -> Result<System, BenchError> {
    let (endpoint, served, startup, spawner) = match product {
        Product::Spawned(spawner) => {
            let (served, startup) = spawner.spawn(preload).await?;
            let endpoint = served.endpoint.clone();
            (endpoint, Some(served), Some(startup), Some(spawner))
        }
        Product::Url(url) => (Endpoint::parse(&url).await?, None, None, None),
    };
    Ok(System {
        endpoint,
        keyring: signer.keyring,
        tolerance_s: signer.tolerance_s,
        operator: signer.operator,
        served,
        startup,
        _spawner: spawner,
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() { s.max(0.0) } else { 0.0 })
}

/// Runs the bench against `product` and returns its report.
pub async fn measure(
    product: Product,
    signer: Signer,
    opts: &BenchOpts,
) -> Result<Report, BenchError> {
    if opts.players == 0 {
        return Err(BenchError::Config("--players must be at least 1".into()));
    }
    if opts.connections == 0 {
        return Err(BenchError::Config(
            "--connections must be at least 1".into(),
        ));
    }
    if !(1..=500).contains(&opts.batch) {
        return Err(BenchError::Config(
            "--batch must be between 1 and 500".into(),
        ));
    }
    if opts.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(BenchError::Config(
            "--rate must be a positive number".into(),
        ));
    }
    if opts.mode == Mode::Claims && !opts.spawn && !opts.broadcast_to_all {
        return Err(BenchError::Config(
            "--mode claims against --url sends every player of that product a real message: \
             add --broadcast-to-all to mean it"
                .into(),
        ));
    }
    if opts.mode == Mode::Entries && !opts.spawn && !opts.open_campaign {
        return Err(BenchError::Config(
            "--mode entries against --url opens a real campaign every player of that product \
             sees: add --open-campaign to mean it"
                .into(),
        ));
    }
    if matches!(opts.mode, Mode::Claims | Mode::Entries) && signer.operator.is_none() {
        return Err(BenchError::Config(
            "--mode claims and --mode entries act as an operator first (a broadcast, a \
             campaign): set ADMIN_EMAIL and ADMIN_PASSWORD (with --spawn, the first admin the \
             product creates)"
                .into(),
        ));
    }
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let loadavg_before = loadavg();
    let preload = if opts.mode == Mode::Read && opts.spawn {
        opts.players
    } else {
        0
    };
    let mut system = open_system(product, signer, preload).await?;
    let result = run_phases(&mut system, opts).await;
    let (rss, peak) = if opts.spawn { rss_mib() } else { (None, None) };
    if let Some(served) = system.served.take() {
        served.stop().await;
    }
    let (ceiling, system_phases, pipeline, startup) = result?;
    let mut report = Report {
        mode: match opts.mode {
            Mode::Ingest => "ingest".into(),
            Mode::Read => "read".into(),
            Mode::Claims => "claims".into(),
            Mode::Entries => "entries".into(),
        },
        target: if opts.spawn {
            "spawn".into()
        } else {
            system.endpoint.base.clone()
        },
        started_at,
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            loadavg_before,
            loadavg_after: loadavg(),
            rss_mib: rss,
            peak_rss_mib: peak,
        },
        players: opts.players as u64,
        skew: opts.skew,
        per_player_rate: opts.player_rate.clamp(1, 100),
        ceiling,
        system: system_phases,
        pipeline,
        startup,
    };
    report.compute_ratios();
    Ok(report)
}

type Phases = (Vec<Phase>, Vec<Phase>, Option<Pipeline>, Option<Startup>);

async fn run_phases(system: &mut System, opts: &BenchOpts) -> Result<Phases, BenchError> {
    let players = Arc::new(Players::new(opts.players, opts.skew, opts.player_rate));
    let seed = rand::random::<u64>();
    let works: Vec<(&str, Work)> = match opts.mode {
        Mode::Ingest if opts.batch > 1 => vec![("ingest", Work::Batch(opts.batch))],
        Mode::Ingest => vec![("ingest", Work::Single)],
        Mode::Read => vec![("top100", Work::Top100), ("rank", Work::Rank)],
        Mode::Claims => vec![("claim", Work::Claim)],
        Mode::Entries => vec![("enter", Work::Enter)],
    };
    // The ceiling answers any message or campaign id; the product's is the broadcast sent, or
    // the campaign opened, below.
    let mut target: Option<Arc<str>> = Some("bench_target".into());
    let drive_of = |name: &str, work: Work, target: &Option<Arc<str>>| Drive {
        name: name.to_owned(),
        work,
        connections: opts.connections,
        rate: opts.rate,
        warmup: secs(opts.warmup),
        duration: secs(opts.duration),
        seed,
        target: target.clone(),
    };

    let mut startup = system.startup.clone();
    if opts.mode == Mode::Read && !opts.spawn && !opts.no_seed {
        startup = Some(seed_over_http(system, opts).await?);
    }

    let mut ceiling = Vec::new();
    if opts.ceiling {
        let served = serve::spawn_ceiling(system.keyring.clone(), system.tolerance_s).await?;
        for (name, work) in &works {
            let driven = load::drive(
                &served.endpoint,
                &system.keyring,
                &players,
                drive_of(name, *work, &target),
            )
            .await;
            match driven {
                Ok(d) => ceiling.push(d.phase),
                Err(e) => {
                    served.stop().await;
                    return Err(e);
                }
            }
        }
        served.stop().await;
    }

    match opts.mode {
        Mode::Claims => target = Some(broadcast(system).await?),
        Mode::Entries => target = Some(open_campaign(system).await?),
        Mode::Ingest | Mode::Read => {}
    }
    let mut phases = Vec::new();
    let mut pipeline = None;
    for (name, work) in &works {
        if opts.mode != Mode::Ingest {
            let d = load::drive(
                &system.endpoint,
                &system.keyring,
                &players,
                drive_of(name, *work, &target),
            )
            .await?;
            phases.push(d.phase);
            continue;
        }
        let (d, pl) =
            ingest_with_probes(system, opts, &players, drive_of(name, *work, &target)).await?;
        phases.push(d);
        pipeline = Some(pl);
    }
    Ok((ceiling, phases, pipeline, startup))
}

/// The 2xx answer to `request` read as a `T`; anything else fails naming `what`.
async fn answer<T: serde::de::DeserializeOwned>(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, BenchError> {
    let refused = |e: reqwest::Error| BenchError::Server(format!("{what}: {e}"));
    let response = request.send().await.map_err(refused)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(BenchError::Server(format!("{what}: {status}: {body}")));
    }
    response.json().await.map_err(refused)
}

/// Logs in as the system's operator: an HTTP client and the session's bearer token.
async fn operator_login(system: &System) -> Result<(reqwest::Client, String), BenchError> {
    #[derive(serde::Deserialize)]
    struct Login {
        token: String,
    }
    let (email, password) = system
        .operator
        .clone()
        .ok_or_else(|| BenchError::Config("no operator to act as".into()))?;
    let client = reqwest::Client::new();
    let login: Login = answer(
        "operator login",
        client
            .post(format!("{}/auth/login", system.endpoint.base))
            .json(&serde_json::json!({"email": email, "password": password})),
    )
    .await?;
    Ok((client, login.token))
}

/// Logs in as the system's operator and sends one message to every player, with one attachment
/// and a day to claim it; its id.
async fn broadcast(system: &System) -> Result<Arc<str>, BenchError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sent {
        message_ids: Vec<String>,
    }
    let (client, token) = operator_login(system).await?;
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let sent: Sent = answer(
        "broadcast send",
        client
            .post(format!("{}/inbox/messages", system.endpoint.base))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "all": true, "title": "Bench gift", "attachments": [{"item": "bench_gift"}],
                "expiresAt": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })),
    )
    .await?;
    sent.message_ids
        .into_iter()
        .next()
        .map(Arc::from)
        .ok_or_else(|| BenchError::Server("the broadcast send returned no message id".into()))
}

/// Logs in as the system's operator, creates a draw campaign open to every level from now for
/// an hour (each player enters once), schedules it and waits until the scheduler has made it
/// live (at most 75 s, then cancels it); its id.
async fn open_campaign(system: &System) -> Result<Arc<str>, BenchError> {
    #[derive(serde::Deserialize)]
    struct Campaign {
        id: String,
        state: String,
    }
    let (client, token) = operator_login(system).await?;
    let base = &system.endpoint.base;
    let now = chrono::Utc::now();
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let created: Campaign = answer(
        "campaign create",
        client
            .post(format!("{base}/campaigns"))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "title": "Bench entries", "startsAt": at(now),
                "endsAt": at(now + chrono::Duration::hours(1)),
                "eligibility": {"minLevel": 1}, "entryLimit": "once",
                "reward": {"kind": "draw", "winners": 1, "item": "bench_prize"},
            })),
    )
    .await?;
    let url = format!("{base}/campaigns/{}", created.id);
    let _: Campaign = answer(
        "campaign schedule",
        client.post(format!("{url}/schedule")).bearer_auth(&token),
    )
    .await?;
    // Longer than the longest scheduler tick (`CAMPAIGN_TICK_MS` up to a minute).
    let deadline = Instant::now() + Duration::from_secs(75);
    loop {
        let c: Campaign = answer("campaign read", client.get(&url).bearer_auth(&token)).await?;
        if c.state == "live" {
            return Ok(Arc::from(c.id));
        }
        if Instant::now() >= deadline {
            // Not left to go live later, unmeasured.
            let cancel = client.post(format!("{url}/cancel")).bearer_auth(&token);
            let cancelled = answer::<Campaign>("campaign cancel", cancel).await;
            return Err(BenchError::Server(format!(
                "campaign {} still {} after 75 s ({})",
                c.id,
                c.state,
                cancelled.map_or_else(|e| e.to_string(), |_| "cancelled".into())
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An ingest phase with visibility probes and bus-lag sampling alongside, then the drain.
async fn ingest_with_probes(
    system: &System,
    opts: &BenchOpts,
    players: &Arc<Players>,
    drive: Drive,
) -> Result<(Phase, Pipeline), BenchError> {
    let start = Instant::now();
    let measure_from = start + drive.warmup;
    let end = measure_from + drive.duration;
    let tag = format!("{:08x}", rand::random::<u32>());
    let base = system.endpoint.base.clone();
    let lag = tokio::spawn(probe::sample_lag(base.clone(), end));
    let probes = {
        let (base, keyring, tag) = (base.clone(), system.keyring.clone(), tag.clone());
        let (n, every) = (opts.probes, Duration::from_millis(opts.probe_every_ms));
        tokio::spawn(async move {
            probe::run_probes(&base, &keyring, &tag, n, every, measure_from, end).await
        })
    };
    let driven = load::drive(&system.endpoint, &system.keyring, players, drive).await?;
    let lag_samples = lag
        .await
        .map_err(|e| BenchError::Internal(format!("lag sampler: {e}")))?;
    let tracker = probes
        .await
        .map_err(|e| BenchError::Internal(format!("probes: {e}")))??;

    // The backlog has drained once an event sent now is visible everywhere.
    let mut last = probe::Probe::new(&base, &system.keyring, &tag, 1_000_000);
    let drain_s = match last.once(secs(opts.drain_timeout)).await {
        probe::Seen::After(..) => Some(driven.ended.elapsed().as_secs_f64()),
        _ => None,
    };
    let sustained = drain_s
        .map(|_| driven.accepted_all as f64 / driven.started.elapsed().as_secs_f64().max(1e-9));
    let pipeline = Pipeline {
        visibility: tracker.visibility(),
        bus_lag_max: lag_samples.iter().copied().max().unwrap_or(0),
        bus_lag_samples: lag_samples,
        drain_s,
        sustained_events_per_s: sustained,
    };
    Ok((driven.phase, pipeline))
}

/// Fills the board of a running product with `--players` players, one event each, in batches
/// of 500 over `--connections` connections, and waits until the last ones are ranked.
async fn seed_over_http(system: &System, opts: &BenchOpts) -> Result<Startup, BenchError> {
    const PER_BATCH: usize = 500;
    let t0 = Instant::now();
    let n = opts.players;
    let c = opts.connections.min(n.div_ceil(PER_BATCH)).max(1);
    let per_task = n.div_ceil(c);
    let tasks: Vec<_> = (0..c)
        .map(|k| {
            let (endpoint, keyring) = (system.endpoint.clone(), system.keyring.clone());
            tokio::spawn(async move {
                let mut conn = Connection::new(endpoint)?;
                let range = (k * per_task)..((k + 1) * per_task).min(n);
                let mut failed = 0u64;
                let mut body = String::new();
                for chunk_start in range.clone().step_by(PER_BATCH) {
                    let chunk_end = (chunk_start + PER_BATCH).min(range.end);
                    let ts = load::unix_s();
                    body.clear();
                    body.push_str(r#"{"events":["#);
                    for p in chunk_start..chunk_end {
                        if p > chunk_start {
                            body.push(',');
                        }
                        load::write_event(
                            &mut body,
                            &format!("bench_{p}"),
                            ts,
                            load::delta_xp(p, 1),
                        );
                    }
                    body.push_str("]}");
                    let sig = keyring
                        .sign_request(None, ts, "POST", "/events/batch", body.as_bytes())
                        .ok_or_else(|| BenchError::Config("no signing key".into()))?;
                    let ok = conn
                        .send(Outgoing {
                            method: hyper::Method::POST,
                            path: "/events/batch",
                            signed: Some((ts.to_string(), sig)),
                            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
                        })
                        .await
                        .is_ok_and(|(status, _)| status == 200);
                    failed += u64::from(!ok);
                }
                Ok::<_, BenchError>((failed, range.end.checked_sub(1)))
            })
        })
        .collect();
    let mut last_players = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (f, last) = t
            .await
            .map_err(|e| BenchError::Internal(format!("seeding task: {e}")))??;
        failed += f;
        last_players.extend(last);
    }
    if failed > 0 {
        return Err(BenchError::Server(format!(
            "{failed} seeding batches were refused"
        )));
    }
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(1800);
    for p in last_players {
        let url = format!(
            "{}/leaderboard/players/bench_{p}?around=0",
            system.endpoint.base
        );
        loop {
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Server(format!(
                    "bench_{p} was not ranked within 30 minutes of seeding"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(Startup {
        seed: "http".into(),
        seeded_players: n as u64,
        seed_s: t0.elapsed().as_secs_f64(),
        ready_s: None,
    })
}
