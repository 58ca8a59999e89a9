//! [`Application`]: builds the modules of the target over the ports the wiring selects, binds the
//! port (0 picks a free one) and runs until stopped.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use liveops_core::Bus;
use liveops_module::{Context, Ports, Readiness, Shared, Task};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::data_lock::DataLock;
use crate::{ops, supervisor, wiring};

/// Most events a consumer takes per poll: under a backlog, bigger batches share one transaction
/// and one round of lookups; when keeping up, polls return what is there at once.
const CONSUMER_BATCH: usize = 2048;

/// A built application: bound listener, router, and the background work it will run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    settings: Settings,
    ports: Arc<Ports>,
    tasks: Vec<Task>,
    shutdown: CancellationToken,
    how: supervisor::Shutdown,
    /// `DATA_DIR`'s shared lock, held until the process stops (see [`DataLock`]).
    data_lock: Option<DataLock>,
}

impl Application {
    /// Takes `DATA_DIR`'s shared lock (refused while a restore runs), takes the pre-upgrade
    /// backup set if the embedded repository has migrations to apply, opens the adapters the
    /// target's modules need, builds the modules, and binds the port.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.raw.data_dir).with_context(|| {
            format!(
                "DATA_DIR: cannot create {}",
                settings.raw.data_dir.display()
            )
        })?;
        let data_lock = DataLock::shared(&settings)?;
        let ports = Arc::new(wiring::ports_after_pre_upgrade_backup(&settings).await?);

        let keys = Arc::new(settings.keys.store()?);
        let ctx = Context::new(
            settings.args.clone(),
            shared(&settings, keys.clone()),
            ports.clone(),
        );
        let mut app = Router::new();
        let mut tasks = Vec::new();
        if let Some((path, _)) = &settings.keys.file {
            let fixed = settings.keys.fixed.iter().map(|(k, _)| k.clone()).collect();
            tasks.push(crate::key_files::watch(keys, path.clone(), fixed));
        }
        // Followed whether or not (or whenever) this process opens the database.
        let sealing =
            crate::key_files::watch_sealing(settings.sealer.clone(), &settings.raw.sealing);
        tasks.extend(sealing);
        let mut readiness: Vec<Readiness> = Vec::new();
        for module in &settings.target.modules {
            let service = module
                .build(&ctx)
                .await
                .with_context(|| format!("{}: cannot start", module.name()))?;
            let routes = crate::telemetry::http_spans(service.router);
            app = app.merge(liveops_http::track(routes, module.name()));
            tasks.extend(service.tasks);
            readiness.extend(service.readiness);
        }
        let how = supervisor::Shutdown {
            draining: supervisor::Draining::default(),
            delay: settings.shutdown_delay,
        };
        // Before anything is served or run: no event published before a consumer first runs
        // is lost.
        ensure_groups(&settings, &ports).await?;
        // What the context started for the modules (the API key sync).
        tasks.extend(ctx.take_tasks());
        readiness.extend(ctx.readiness());
        let checks = ops::Checks {
            ports: ports.clone(),
            modules: readiness,
            runs_on: serde_json::json!({
                "cloud": format!("{:?}", settings.raw.cloud).to_lowercase(),
                "bus": format!("{:?}", settings.bus),
            }),
            draining: how.draining.clone(),
        };
        let mut spec = settings.table.openapi(ops::openapi(), &settings.args);
        crate::edge::document(&mut spec);
        // Make sure the recorder exists before the first request is counted.
        let _ = crate::telemetry::metrics();
        let peers = settings.raw.peer_url_template.as_deref().map(|template| {
            tracing::info!(template, "routes of modules not run here are forwarded");
            Arc::new(crate::peers::Peers::new(
                &settings.table,
                &settings.target,
                template,
                &settings.args,
            ))
        });
        let router = ops::fallbacks(app.merge(ops::router(checks, spec)), peers);
        let router = crate::edge::guard(router, &settings.http)
            .layer(liveops_http::catch_panics())
            .layer(axum::middleware::from_fn_with_state(
                how.draining.clone(),
                ops::close_when_draining,
            ));

        let addr = SocketAddr::new(settings.bind, settings.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("PORT: cannot listen on {addr}"))?;
        Ok(Self {
            listener,
            router,
            settings,
            ports,
            tasks,
            shutdown: CancellationToken::new(),
            how,
            data_lock,
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

    /// Serves and runs the modules' tasks until the shutdown token is cancelled (or a task ends
    /// on its own: then `Err`, and the process exits with a failure); then, not ready any more,
    /// keeps serving for `SHUTDOWN_DELAY` and drains within the grace period.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            settings,
            ports,
            mut tasks,
            shutdown,
            how,
            data_lock,
        } = self;
        let running: Vec<_> = settings
            .table
            .groups()
            .into_iter()
            .filter(|g| {
                settings
                    .target
                    .modules
                    .iter()
                    .any(|m| m.groups().contains(g))
            })
            .collect();
        if !running.is_empty() {
            let bus = ports.get::<dyn Bus>().await?;
            tasks.push(supervisor::lag_gauges(bus, running));
        }
        tracing::info!(
            liveops_target = %settings.target.name,
            port = listener.local_addr().map(|a| a.port()).unwrap_or_default(),
            env = ?settings.raw.env,
            cloud = ?settings.raw.cloud,
            bus = ?settings.bus,
            data_dir = %settings.raw.data_dir.display(),
            "liveops started"
        );
        if let Some(every) = settings.backup.every {
            let backups = crate::backup::Backups::new(&settings)?;
            if !backups.is_empty() {
                tasks.push(backups.task(every));
            }
        }
        let upkeep = || ports.take_upkeep();
        let serving = (router, settings.http.header_timeout);
        let ended = supervisor::run(listener, serving, tasks, upkeep, shutdown, how).await;
        // Released only after the ports, which close the files as they go.
        drop(ports);
        drop(data_lock);
        ended.map_err(|why| anyhow::anyhow!("{why}; the process stopped"))
    }
}

/// The settings every module shares.
fn shared(s: &Settings, keys: Arc<liveops_core::KeyStore>) -> Shared {
    Shared {
        keys,
        signature_tolerance_s: s.raw.sig_tolerance_sec,
        signature_accept_v1: s.raw.sig_accept_v1,
        calendar: s.calendar.clone(),
        level_curve: s.level_curve.clone(),
        windows: s.windows.clone(),
        settle: s.settle,
        consumer_name: consumer_name(),
        batch_size: CONSUMER_BATCH,
        event_retention: s.retention.keep,
        bus: s.bus.label(),
    }
}

/// Creates every consumer group of the table, so no event published before a consumer first
/// runs is lost, in a process whose modules took the bus (they publish or consume). One whose
/// modules never do (operators, campaigns, participation, distribution) leaves the bus alone:
/// neither its start nor its readiness then waits on a bus it does not use.
async fn ensure_groups(settings: &Settings, ports: &Ports) -> anyhow::Result<()> {
    let groups = settings.table.groups();
    if groups.is_empty() || !ports.opened::<dyn Bus>() {
        return Ok(());
    }
    let bus = ports.get::<dyn Bus>().await?;
    for g in groups {
        bus.ensure_group(g.topic, g.group).await.map_err(|e| {
            anyhow::anyhow!("bus: cannot create group {} on {}: {e}", g.group, g.topic)
        })?;
    }
    Ok(())
}

/// A name for this process's consumers: host and pid.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("{host}-{}", std::process::id())
}
