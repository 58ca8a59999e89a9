//! Runs a process's background work beside its HTTP server: the modules' tasks until shutdown (a
//! task that ends on its own stops the process), then the adapters' upkeep, which must outlive
//! every consumer (the local bus writes its group positions last).
//!
//! Shutdown on request (SIGTERM) goes in three steps, so a rolling update loses no request:
//! 1. draining: `/readyz` answers 503 at once and responses ask clients to close their
//!    connections, while every request is still served for `SHUTDOWN_DELAY`, the time endpoints
//!    and load balancers take to stop sending here;
//! 2. the listener closes: requests in flight finish, consumers finish their batch;
//! 3. the adapters' upkeep stops. Steps 2 and 3 have [`SHUTDOWN_GRACE`] together, so the pod's
//!    `terminationGracePeriodSeconds` must be at least `SHUTDOWN_DELAY` + 15 s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use liveops_core::PortError;
use liveops_module::Task;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

mod lag;
pub use lag::lag_gauges;

/// How long the drain (step 2 and 3) may take before the process gives up waiting.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

/// How often the upkeep of adapters opened since is looked for.
const UPKEEP_LOOKED_FOR: Duration = Duration::from_secs(1);

type Running = JoinSet<(&'static str, Result<(), PortError>)>;

/// Whether the process is shutting down; `/readyz` answers 503 from the moment it is set.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Marks the process as shutting down.
    pub fn start(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the process is shutting down.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// How a requested shutdown goes: the readiness it turns off and how long it keeps serving
/// before it drains.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Set when shutdown starts.
    pub draining: Draining,
    /// How long the process keeps serving, not ready, before the listener closes.
    pub delay: Duration,
}

fn start(set: &mut Running, tasks: Vec<Task>, stop: &CancellationToken) {
    for task in tasks {
        let name = task.name;
        let work = task.start(stop.clone());
        set.spawn(async move { (name, work.await) });
    }
}

/// Serves `router` on `listener` over HTTP/1 until `stop`, each connection given the peer's
/// address (`ConnectInfo`: login limits count per address) and closed when a request's head
/// takes longer than `header_timeout` to arrive (a kept-alive connection's next one included);
/// then stops accepting, lets each connection finish the request it is serving, and returns
/// once all are closed.
async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connections = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let with_peer = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(with_peer));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client gone or too slow (the header timeout) is its own affair.
                tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// After a failed accept: a connection the client abandoned before it was accepted costs
/// nothing; anything else (out of file descriptors) is logged and waited out for a second, as
/// retrying at once would spin.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves `router` and runs `tasks` and `upkeep` until `shutdown`, then drains them in order;
/// `Err` names the task whose end stopped the process (a fatal error: the process exits with
/// a failure, so whatever restarts it on failure does). A request's head must arrive within
/// `header_timeout`.
pub async fn run(
    listener: TcpListener,
    (router, header_timeout): (Router, Duration),
    tasks: Vec<Task>,
    upkeep: impl Fn() -> Vec<Task>,
    shutdown: CancellationToken,
    how: Shutdown,
) -> Result<(), String> {
    let workers = CancellationToken::new();
    let maintainers = CancellationToken::new();
    let mut running = JoinSet::new();
    start(&mut running, tasks, &workers);
    let mut upkeeping = JoinSet::new();
    start(&mut upkeeping, upkeep(), &maintainers);
    // Adapters opened after start (a database away then, opened by a retry) bring theirs later.
    let mut opened_later = tokio::time::interval(UPKEEP_LOOKED_FOR);

    let http_stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, router, header_timeout, http_stop.clone()));

    // Run until asked to stop, or until a task ends on its own (a fatal error).
    let fatal = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break None,
            Some(ended) = running.join_next() => {
                let why = match ended {
                    Ok((name, Ok(()))) => format!("background task {name} ended early"),
                    Ok((name, Err(e))) => format!("background task {name} failed: {e}"),
                    Err(e) => format!("a background task panicked: {e}"),
                };
                tracing::error!(reason = %why, "shutting down");
                shutdown.cancel();
                break Some(why);
            }
            _ = opened_later.tick() => start(&mut upkeeping, upkeep(), &maintainers),
        }
    };
    how.draining.start();
    if fatal.is_none() && !how.delay.is_zero() {
        tracing::info!(
            delay_s = how.delay.as_secs_f64(),
            "shutting down: not ready any more, still serving until load balancers stop sending"
        );
        tokio::time::sleep(how.delay).await;
    }
    http_stop.cancel();
    workers.cancel();
    tracing::info!("shutting down: draining requests and consumers");
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        drain(&mut running).await;
        match server.await {
            Ok(()) => tracing::info!("http server stopped"),
            Err(e) => tracing::warn!(error = %e, "http server task failed"),
        }
        maintainers.cancel();
        drain(&mut upkeeping).await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "shutdown grace exceeded; exiting anyway"
        );
    }
    tracing::info!("liveops stopped");
    fatal.map_or(Ok(()), Err)
}

async fn drain(set: &mut Running) {
    while let Some(ended) = set.join_next().await {
        match ended {
            Ok((name, Ok(()))) => tracing::info!(task = name, "stopped"),
            Ok((name, Err(e))) => tracing::warn!(task = name, error = %e, "stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "task panicked while stopping"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    async fn run_with(tasks: Vec<Task>, shutdown: CancellationToken) -> Result<(), String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let how = Shutdown {
            draining: Draining::default(),
            delay: Duration::ZERO,
        };
        let serving = (Router::new(), Duration::from_secs(5));
        run(listener, serving, tasks, Vec::new, shutdown, how).await
    }

    #[tokio::test]
    async fn a_failed_task_stops_the_process_as_a_failure_and_a_requested_stop_does_not() {
        let failing = Task::new("consumer", |_| async {
            Err(PortError::Unavailable("the store is gone".into()))
        });
        let waiting = Task::new("waiting", |stop| async move {
            stop.cancelled().await;
            Ok(())
        });
        let why = run_with(vec![waiting, failing], CancellationToken::new()).await;
        let why = why.unwrap_err();
        assert!(
            why.contains("consumer") && why.contains("the store is gone"),
            "{why}"
        );

        let stop = CancellationToken::new();
        let waiting = Task::new("waiting", |stop| async move {
            stop.cancelled().await;
            Ok(())
        });
        let asked = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            asked.cancel();
        });
        assert_eq!(run_with(vec![waiting], stop).await, Ok(()));
    }

    /// The upkeep of an adapter opened after start (its database away then) runs once opened.
    #[tokio::test]
    async fn upkeep_handed_out_after_start_runs_too() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ran = Arc::new(tokio::sync::Notify::new());
        let told = ran.clone();
        let later = std::sync::Mutex::new(vec![Vec::new(), Vec::new()]);
        later.lock().unwrap()[0].push(Task::new("opened later", move |stop| async move {
            told.notify_one();
            stop.cancelled().await;
            Ok(())
        }));
        // The first call (at start) hands out nothing; a later one the task.
        let upkeep = || later.lock().unwrap().pop().unwrap_or_default();
        let stop = CancellationToken::new();
        let how = Shutdown::default();
        let serving = (Router::new(), Duration::from_secs(5));
        let running = run(listener, serving, Vec::new(), upkeep, stop.clone(), how);
        let checked = async {
            let within = tokio::time::timeout(Duration::from_secs(5), ran.notified()).await;
            stop.cancel();
            within
        };
        let (ended, within) = tokio::join!(running, checked);
        assert!(within.is_ok(), "the later upkeep never ran");
        assert_eq!(ended, Ok(()));
    }
}
