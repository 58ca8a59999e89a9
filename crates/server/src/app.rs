//! Wiring: picks an adapter for each port, mounts the routers of the services this target runs,
//! starts their consumers, and shuts everything down together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use liveops_core::ports::topics;
use liveops_core::{Bus, HotState, PortError, Problem, RankStore, Repository};
use liveops_store::memory::bus::MemoryBus;
use liveops_store::memory::hot::MemoryHotState;
use liveops_store::memory::rank::MemoryRankStore;
use liveops_store::sql::bus::{BusOptions, SqliteBus};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;

use crate::config::{BusKind, Settings, Target};

/// Most events a consumer takes per poll: under a backlog, bigger batches share one transaction
/// and one round of lookups; when keeping up, polls return what is there at once.
const CONSUMER_BATCH: usize = 2048;

/// How long shutdown may take before the process gives up waiting (SIGTERM grace is 10 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

/// The adapters behind each port, plus the concrete handles maintenance tasks need.
#[derive(Clone)]
pub struct Ports {
    /// Durable state (absent for a gateway-only process).
    pub repo: Option<Arc<dyn Repository>>,
    /// The event bus.
    pub bus: Arc<dyn Bus>,
    /// Hot state.
    pub hot: Arc<dyn HotState>,
    /// Rankings.
    pub ranks: Arc<dyn RankStore>,
    sqlite_bus: Option<Arc<SqliteBus>>,
    memory_hot: Option<Arc<MemoryHotState>>,
}

impl Ports {
    /// Opens the adapters the settings select.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let target = settings.raw.target;
        std::fs::create_dir_all(&settings.raw.data_dir).with_context(|| {
            format!(
                "DATA_DIR: cannot create {}",
                settings.raw.data_dir.display()
            )
        })?;
        let repo = if target != Target::Gateway {
            let repo = open_repository(&settings.db_url).await?;
            repo.migrate()
                .await
                .map_err(|e| anyhow::anyhow!("DB_URL: migration failed: {e}"))?;
            Some(repo)
        } else {
            None
        };
        let opts = BusOptions {
            visibility_timeout: Duration::from_secs(settings.raw.bus_visibility_sec),
            max_deliveries: settings.raw.bus_max_deliveries,
        };
        let (bus, sqlite_bus): (Arc<dyn Bus>, _) = match settings.raw.bus_kind {
            BusKind::Sqlite => {
                let bus = Arc::new(
                    SqliteBus::open(&settings.bus_path, opts)
                        .await
                        .map_err(|e| anyhow::anyhow!("BUS_CONN: {e}"))?,
                );
                (bus.clone(), Some(bus))
            }
            BusKind::Inmem => (Arc::new(MemoryBus::new(opts)), None),
            BusKind::Redis => (open_redis_bus(settings, opts).await?, None),
        };
        let (hot, ranks, memory_hot): (Arc<dyn HotState>, Arc<dyn RankStore>, _) =
            match &settings.raw.redis_url {
                Some(url) => {
                    let (hot, ranks) = open_redis_state(url).await?;
                    (hot, ranks, None)
                }
                None => {
                    let hot = Arc::new(MemoryHotState::new());
                    (hot.clone(), Arc::new(MemoryRankStore::new()), Some(hot))
                }
            };
        Ok(Self {
            repo,
            bus,
            hot,
            ranks,
            sqlite_bus,
            memory_hot,
        })
    }

    fn repo(&self) -> anyhow::Result<Arc<dyn Repository>> {
        self.repo.clone().context("this target needs a repository")
    }

    /// Checks every adapter this process uses; `(name, error)` for each failing one.
    async fn check(&self) -> Vec<(&'static str, Result<(), PortError>)> {
        let mut out = vec![
            ("bus", self.bus.healthcheck().await),
            ("hot_state", self.hot.healthcheck().await),
            ("rank_store", self.ranks.healthcheck().await),
        ];
        if let Some(repo) = &self.repo {
            out.push(("repository", repo.healthcheck().await));
        }
        out
    }
}

/// `liveops dead-letters`: prints a group's dead letters as JSON lines, or replays them.
pub async fn dead_letters(
    settings: &Settings,
    topic: &str,
    group: &str,
    replay: bool,
    limit: usize,
) -> anyhow::Result<std::process::ExitCode> {
    if !GROUPS.iter().any(|(t, g, _)| *t == topic && *g == group) {
        anyhow::bail!("no consumer group {group:?} on topic {topic:?}");
    }
    let ports = Ports::open(settings).await?;
    if replay {
        let n = ports.bus.replay_dead_letters(topic, group).await?;
        println!("{}", json!({"topic": topic, "group": group, "replayed": n}));
    } else {
        for d in ports.bus.dead_letters(topic, group, limit).await? {
            let payload: serde_json::Value = serde_json::from_slice(&d.payload)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&d.payload)));
            println!(
                "{}",
                json!({"id": d.id, "key": d.key, "deliveries": d.deliveries, "payload": payload})
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Opens the repository `DB_URL` names (the scheme picks the backend).
async fn open_repository(url: &str) -> anyhow::Result<Arc<dyn Repository>> {
    liveops_store::sql::connect_repository(url)
        .await
        .map_err(|e| anyhow::anyhow!("DB_URL: {e}"))
}

#[cfg(feature = "redis")]
async fn open_redis_state(url: &str) -> anyhow::Result<(Arc<dyn HotState>, Arc<dyn RankStore>)> {
    use liveops_store::redis::{conn::RedisConn, hot::RedisHotState, rank::RedisRankStore};
    let conn = RedisConn::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
    Ok((
        Arc::new(RedisHotState::new(conn.clone())),
        Arc::new(RedisRankStore::new(conn)),
    ))
}

#[cfg(not(feature = "redis"))]
async fn open_redis_state(_url: &str) -> anyhow::Result<(Arc<dyn HotState>, Arc<dyn RankStore>)> {
    anyhow::bail!("REDIS_URL: this build has no Redis adapters")
}

#[cfg(feature = "redis")]
async fn open_redis_bus(settings: &Settings, opts: BusOptions) -> anyhow::Result<Arc<dyn Bus>> {
    let url = settings
        .bus_url
        .as_deref()
        .context("BUS_CONN: BUS_KIND=redis needs a URL")?;
    let bus = liveops_store::redis::bus::RedisBus::connect(url, opts, settings.raw.bus_partitions)
        .await
        .map_err(|e| anyhow::anyhow!("BUS_CONN: {e}"))?;
    Ok(Arc::new(bus))
}

#[cfg(not(feature = "redis"))]
async fn open_redis_bus(_settings: &Settings, _opts: BusOptions) -> anyhow::Result<Arc<dyn Bus>> {
    anyhow::bail!("BUS_KIND: this build has no Redis bus")
}

/// Every (topic, consumer group) pair of the product; all are created at start so no event
/// published before a consumer first runs is lost.
const GROUPS: [(&str, &str, Target); 3] = [
    (topics::INGESTED, liveops_fairness::GROUP, Target::Fairness),
    (
        topics::ACCEPTED,
        liveops_progression::GROUP,
        Target::Progression,
    ),
    (
        topics::ACCEPTED,
        liveops_leaderboard::GROUP,
        Target::Leaderboard,
    ),
];

/// The state of each service this target runs, built once and shared by its router and consumer.
#[derive(Clone, Default)]
struct Services {
    gateway: Option<liveops_gateway::GatewayState>,
    fairness: Option<liveops_fairness::FairnessState>,
    progression: Option<liveops_progression::ProgressionState>,
    leaderboard: Option<liveops_leaderboard::LeaderboardState>,
}

impl Services {
    fn build(settings: &Settings, ports: &Ports) -> anyhow::Result<Self> {
        let target = settings.raw.target;
        let consumer = consumer_name();
        Ok(Self {
            gateway: target
                .runs(Target::Gateway)
                .then(|| gateway_state(settings, ports)),
            fairness: target
                .runs(Target::Fairness)
                .then(|| fairness_state(settings, ports, &consumer))
                .transpose()?,
            progression: target
                .runs(Target::Progression)
                .then(|| progression_state(settings, ports, &consumer))
                .transpose()?,
            leaderboard: target
                .runs(Target::Leaderboard)
                .then(|| leaderboard_state(settings, ports, &consumer))
                .transpose()?,
        })
    }

    /// Services still warming up (not ready to answer truthfully).
    fn loading(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if let Some(lb) = &self.leaderboard {
            if !lb.loaded.load(std::sync::atomic::Ordering::Acquire) {
                out.push("leaderboard: rebuilding boards");
            }
        }
        out
    }
}

/// What `/readyz` looks at.
#[derive(Clone)]
struct Readiness {
    ports: Ports,
    services: Services,
}

/// A built application: bound listener, router, and the background work it will run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    settings: Settings,
    ports: Ports,
    services: Services,
    shutdown: CancellationToken,
}

impl Application {
    /// Opens the adapters, binds the port (0 picks a free one) and builds the router.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let ports = Ports::open(&settings).await?;
        for (topic, group, _) in GROUPS {
            ports
                .bus
                .ensure_group(topic, group)
                .await
                .map_err(|e| anyhow::anyhow!("bus: cannot create group {group} on {topic}: {e}"))?;
        }
        let services = Services::build(&settings, &ports)?;
        let router = router(&ports, &services);
        let addr: SocketAddr = format!("{}:{}", settings.raw.bind, settings.port)
            .parse()
            .with_context(|| format!("BIND: {:?} is not an address", settings.raw.bind))?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("PORT: cannot listen on {addr}"))?;
        Ok(Self {
            listener,
            router,
            settings,
            ports,
            services,
            shutdown: CancellationToken::new(),
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Cancelling this token stops the application gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves and consumes until the shutdown token is cancelled, then drains within the grace.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            settings,
            ports,
            services,
            shutdown,
        } = self;
        let target = settings.raw.target;
        let mut tasks: JoinSet<(&'static str, Result<(), PortError>)> = JoinSet::new();
        let workers = shutdown.child_token();

        if let Some(state) = services.fairness {
            spawn(
                &mut tasks,
                "fairness consumer",
                liveops_fairness::run_consumer(state, workers.clone()),
            );
        }
        if let Some(state) = services.progression {
            spawn(
                &mut tasks,
                "progression consumer",
                liveops_progression::run_consumer(state, workers.clone()),
            );
        }
        if let Some(state) = services.leaderboard {
            spawn(
                &mut tasks,
                "leaderboard consumer",
                liveops_leaderboard::run_consumer(state.clone(), workers.clone()),
            );
            spawn(
                &mut tasks,
                "leaderboard snapshots",
                liveops_leaderboard::run_snapshots(state, workers.clone()),
            );
        }
        spawn(
            &mut tasks,
            "maintenance",
            maintenance(ports.clone(), target, workers.clone()),
        );

        tracing::info!(
            liveops_target = target.as_str(),
            port = listener.local_addr().map(|a| a.port()).unwrap_or_default(),
            env = ?settings.raw.env,
            bus = ?settings.raw.bus_kind,
            data_dir = %settings.raw.data_dir.display(),
            "liveops started"
        );

        let http_stop = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(http_stop.cancelled_owned())
                .await
        });

        // Run until asked to stop, or until a background task ends on its own (a fatal error).
        tokio::select! {
            _ = shutdown.cancelled() => {}
            Some(ended) = tasks.join_next() => {
                match ended {
                    Ok((name, Ok(()))) if shutdown.is_cancelled() => tracing::info!(task = name, "stopped"),
                    Ok((name, Ok(()))) => tracing::warn!(task = name, "background task ended early; shutting down"),
                    Ok((name, Err(e))) => tracing::error!(task = name, error = %e, "background task failed; shutting down"),
                    Err(e) => tracing::error!(error = %e, "background task panicked; shutting down"),
                }
                shutdown.cancel();
            }
        }
        workers.cancel();
        tracing::info!("shutting down: draining requests and consumers");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(ended) = tasks.join_next().await {
                match ended {
                    Ok((name, Ok(()))) => tracing::info!(task = name, "stopped"),
                    Ok((name, Err(e))) => {
                        tracing::warn!(task = name, error = %e, "stopped with an error")
                    }
                    Err(e) => tracing::warn!(error = %e, "task panicked while stopping"),
                }
            }
            match server.await {
                Ok(Ok(())) => tracing::info!("http server stopped"),
                Ok(Err(e)) => tracing::warn!(error = %e, "http server stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "http server task failed"),
            }
        })
        .await;
        if let Some(bus) = &ports.sqlite_bus {
            // The consumers stopped: write their groups' positions so a restart resumes there.
            if let Err(error) = bus.flush().await {
                tracing::warn!(%error, "writing the bus positions failed");
            }
        }
        if drained.is_err() {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "shutdown grace exceeded; exiting anyway"
            );
        }
        tracing::info!("liveops stopped");
        Ok(())
    }
}

fn spawn<F>(tasks: &mut JoinSet<(&'static str, Result<(), PortError>)>, name: &'static str, fut: F)
where
    F: Future<Output = Result<(), PortError>> + Send + 'static,
{
    tasks.spawn(async move { (name, fut.await) });
}

/// A name for this process's consumers: host and pid.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{host}-{}", std::process::id())
}

fn fairness_state(
    s: &Settings,
    p: &Ports,
    consumer: &str,
) -> anyhow::Result<liveops_fairness::FairnessState> {
    Ok(liveops_fairness::FairnessState {
        config: Arc::new(liveops_fairness::FairnessConfig {
            anomaly_z: s.raw.anomaly_z,
            warmup: s.raw.anomaly_warmup,
            strikes_to_block: s.raw.strikes_to_block,
            strike_window: Duration::from_secs(s.raw.strike_window_sec),
            block: Duration::from_secs(s.raw.block_sec),
            batch_size: CONSUMER_BATCH,
            consumer_name: consumer.to_owned(),
        }),
        bus: p.bus.clone(),
        hot: p.hot.clone(),
        repo: p.repo()?,
    })
}

fn progression_state(
    s: &Settings,
    p: &Ports,
    consumer: &str,
) -> anyhow::Result<liveops_progression::ProgressionState> {
    Ok(liveops_progression::ProgressionState {
        config: Arc::new(liveops_progression::ProgressionConfig {
            keyring: s.keyring.clone(),
            signature_tolerance_s: s.raw.sig_tolerance_sec,
            curve: s.curve.clone(),
            calendar: s.calendar.clone(),
            batch_size: CONSUMER_BATCH,
            consumer_name: consumer.to_owned(),
        }),
        bus: p.bus.clone(),
        hot: p.hot.clone(),
        repo: p.repo()?,
    })
}

fn leaderboard_state(
    s: &Settings,
    p: &Ports,
    consumer: &str,
) -> anyhow::Result<liveops_leaderboard::LeaderboardState> {
    Ok(liveops_leaderboard::LeaderboardState {
        config: Arc::new(liveops_leaderboard::LeaderboardConfig {
            windows: s.windows.clone(),
            top_n: s.raw.lb_topn,
            calendar: s.calendar.clone(),
            snapshot_cron: s.raw.snapshot_cron.clone(),
            batch_size: CONSUMER_BATCH,
            consumer_name: consumer.to_owned(),
        }),
        bus: p.bus.clone(),
        ranks: p.ranks.clone(),
        repo: p.repo()?,
        loaded: Arc::default(),
        top_cache: Arc::default(),
    })
}

fn gateway_state(s: &Settings, p: &Ports) -> liveops_gateway::GatewayState {
    liveops_gateway::GatewayState {
        config: Arc::new(liveops_gateway::GatewayConfig {
            keyring: s.keyring.clone(),
            limits: s.limits.clone(),
            signature_tolerance_s: s.raw.sig_tolerance_sec,
            rate_limit_max: s.raw.rate_limit_max,
            idempotency_ttl: s.idempotency_ttl(),
            max_body_bytes: 64 * 1024,
            max_batch_body_bytes: 1024 * 1024,
            max_batch_events: 500,
        }),
        bus: p.bus.clone(),
        hot: p.hot.clone(),
    }
}

/// Periodic upkeep: bus lag gauges, bus compaction, hot-state expiry.
async fn maintenance(
    ports: Ports,
    target: Target,
    stop: CancellationToken,
) -> Result<(), PortError> {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        n += 1;
        for (topic, group, service) in GROUPS {
            if !target.runs(service) {
                continue;
            }
            match ports.bus.lag(topic, group).await {
                Ok(lag) => {
                    metrics::gauge!("bus_lag", "topic" => topic, "group" => group).set(lag as f64)
                }
                Err(e) => tracing::warn!(topic, group, error = %e, "cannot read bus lag"),
            }
        }
        if n.is_multiple_of(15) {
            if let Some(bus) = &ports.sqlite_bus {
                if let Err(e) = bus.compact().await {
                    tracing::warn!(error = %e, "bus compaction failed");
                }
            }
            if let Some(hot) = &ports.memory_hot {
                hot.purge_expired();
            }
        }
    }
}

/// Operations routes, documented in the OpenAPI spec.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "LiveOps",
        description = "Backend for live online games: events, fairness, progression, leaderboards, rewards."
    ),
    paths(healthz, readyz, metrics_text)
)]
struct OpsDoc;

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: every backend this process uses answers.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "a backend is unreachable", body = Problem, content_type = "application/problem+json")
))]
async fn readyz(State(ready): State<Readiness>) -> Response {
    let checks = ready.ports.check().await;
    let mut failing: Vec<String> = checks
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    let loading = ready.services.loading();
    let only_loading = failing.is_empty();
    failing.extend(loading.into_iter().map(str::to_owned));
    // The last answer, so alerts can see readiness flapping between scrapes of probes.
    metrics::gauge!("liveops_ready").set(if failing.is_empty() { 1.0 } else { 0.0 });
    if failing.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = checks
            .iter()
            .map(|(n, _)| (n.to_string(), json!("ok")))
            .collect();
        Json(json!({"status": "ready", "checks": map})).into_response()
    } else {
        if only_loading {
            // Expected for a few seconds after every start: not worth a warning per probe.
            tracing::info!(failing = ?failing, "not ready yet");
        } else {
            tracing::warn!(failing = ?failing, "not ready");
        }
        Problem::unavailable(format!("not ready: {}", failing.join("; "))).into_response()
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
async fn metrics_text() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::metrics().render(),
    )
        .into_response()
}

/// The OpenAPI document of every service this build contains.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = OpsDoc::openapi();
    doc.merge(liveops_gateway::openapi());
    doc.merge(liveops_fairness::openapi());
    doc.merge(liveops_progression::openapi());
    doc.merge(liveops_leaderboard::openapi());
    doc
}

/// The service a route belongs to, for metric labels.
fn service_of(route: &str) -> &'static str {
    if route.starts_with("/events") {
        "gateway"
    } else if route.starts_with("/fairness") {
        "fairness"
    } else if route.starts_with("/leaderboard") {
        "leaderboard"
    } else if route.starts_with("/players")
        || route.starts_with("/rewards")
        || route.starts_with("/receipts")
    {
        "progression"
    } else {
        "ops"
    }
}

async fn track_http(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let service = service_of(&route);
    let labels = [
        ("service", service.to_owned()),
        ("route", route),
        ("method", method),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    res
}

async fn not_found(req: Request) -> Problem {
    metrics::counter!("http_requests_total", "service" => "ops", "route" => "unmatched", "method" => req.method().as_str().to_owned(), "status" => "404").increment(1);
    Problem::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> Problem {
    Problem::new(
        405,
        "method-not-allowed",
        "Method not allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// The router of the running services plus the operations routes.
fn router(ports: &Ports, services: &Services) -> Router {
    let mut app = Router::new();
    if let Some(s) = &services.gateway {
        app = app.merge(liveops_gateway::router(s.clone()));
    }
    if let Some(s) = &services.fairness {
        app = app.merge(liveops_fairness::router(s.clone()));
    }
    if let Some(s) = &services.progression {
        app = app.merge(liveops_progression::router(s.clone()));
    }
    if let Some(s) = &services.leaderboard {
        app = app.merge(liveops_leaderboard::router(s.clone()));
    }
    let spec = Arc::new(openapi());
    let ops = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move { Json(spec.as_ref().clone()) }
            }),
        )
        .with_state(Readiness {
            ports: ports.clone(),
            services: services.clone(),
        });
    // Make sure the recorder exists before the first request is counted.
    let _ = crate::telemetry::metrics();
    app.merge(ops)
        .route_layer(middleware::from_fn(track_http))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            Problem::internal().into_response()
        }))
}
