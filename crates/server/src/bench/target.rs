//! Servers the bench starts in-process: the ceiling, and the product itself (`--spawn`). Each
//! runs on its own Tokio runtime in its own thread, like a separate process would, so the
//! generator's tasks and the server's never share a scheduler queue.

use std::future::Future;
use std::time::{Duration, Instant};

use liveops_core::ports::{Board, ScoreDelta};
use liveops_core::{now_ms, Keyring};
use liveops_leaderboard::LeaderboardArgs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::client::Endpoint;
use super::report::Startup;
use super::BenchError;
use crate::{Application, Settings};

/// Worker threads of a server runtime: what `liveops serve` gets on this kind of machine.
fn server_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// A server running on its own runtime thread.
pub(crate) struct Served {
    pub(crate) endpoint: Endpoint,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Stops the server and waits for its thread.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Runs `make()` to completion on a fresh multi-thread runtime in a new thread.
fn own_runtime<F, Fut>(name: &str, make: F) -> Result<std::thread::JoinHandle<()>, BenchError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads())
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| BenchError::Server(format!("cannot start a runtime: {e}")))?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || rt.block_on(make()))
        .map_err(|e| BenchError::Server(format!("cannot start a thread: {e}")))
}

/// Starts the ceiling on `127.0.0.1` at a free port.
pub(crate) async fn spawn_ceiling(
    keyring: Keyring,
    tolerance_s: i64,
) -> Result<Served, BenchError> {
    let stop = CancellationToken::new();
    let (tx, rx) = oneshot::channel::<Result<u16, String>>();
    let token = stop.clone();
    let thread = own_runtime("bench-ceiling", move || async move {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let _ = tx.send(Ok(port));
        let app = super::ceiling::router(keyring, tolerance_s);
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    })?;
    let port = rx
        .await
        .map_err(|_| BenchError::Server("the ceiling did not start".into()))?
        .map_err(|e| BenchError::Server(format!("ceiling: {e}")))?;
    Ok(Served {
        endpoint: Endpoint::local(port),
        stop,
        thread: Some(thread),
    })
}

/// Writes `players` scores straight into the repository, on every configured window's current
/// board, as if they had been played: what a restart then rebuilds the boards from.
async fn preload(settings: &Settings, players: usize) -> Result<(), String> {
    std::fs::create_dir_all(&settings.raw.data_dir).map_err(|e| e.to_string())?;
    let repo = liveops_sql::connect_repository(&settings.db_url)
        .await
        .map_err(|e| e.to_string())?;
    repo.migrate().await.map_err(|e| e.to_string())?;
    let windows = liveops_module::settings::<LeaderboardArgs>(&settings.args)
        .and_then(|a| a.config(settings.calendar.clone(), "bench", 1))
        .map_err(|e| e.to_string())?
        .windows;
    let now = now_ms();
    let boards: Vec<Board> = windows
        .iter()
        .map(|&window| Board {
            window,
            period: settings.calendar.period_at_ms(window, now).id,
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(players as u64);
    const CHUNK: usize = 50_000;
    for start in (0..players).step_by(CHUNK) {
        let end = (start + CHUNK).min(players);
        let mut deltas = Vec::with_capacity((end - start) * boards.len());
        for p in start..end {
            let score = rng.gen_range(1..=1_000_000i64);
            for board in &boards {
                deltas.push(ScoreDelta {
                    board: board.clone(),
                    player_id: format!("bench_{p}"),
                    delta: score,
                });
            }
        }
        repo.commit_scores(liveops_leaderboard::CONSUMER_ID, &[], &deltas)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Starts the product in-process (after preloading `preload_players` ranked players, if any)
/// and waits until it is ready; returns it with its start-up timings.
pub(crate) async fn spawn_product(
    settings: Settings,
    preload_players: usize,
) -> Result<(Served, Startup), BenchError> {
    let stop = CancellationToken::new();
    let (tx, rx) = oneshot::channel::<Result<(u16, Duration, Instant), String>>();
    let token = stop.clone();
    let thread = own_runtime("bench-liveops", move || async move {
        let t0 = Instant::now();
        if preload_players > 0 {
            if let Err(e) = preload(&settings, preload_players).await {
                let _ = tx.send(Err(format!("preload: {e}")));
                return;
            }
        }
        let preloaded = t0.elapsed();
        let built_at = Instant::now();
        let app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                let _ = tx.send(Err(format!("{e:#}")));
                return;
            }
        };
        let stopper = app.shutdown_token();
        let _ = tx.send(Ok((app.port(), preloaded, built_at)));
        tokio::spawn(async move {
            token.cancelled().await;
            stopper.cancel();
        });
        if let Err(e) = app.run_until_stopped().await {
            tracing::error!(error = %e, "bench: the product stopped with an error");
        }
    })?;
    let (port, preloaded, built_at) = rx
        .await
        .map_err(|_| BenchError::Server("the product did not start".into()))?
        .map_err(BenchError::Server)?;
    let served = Served {
        endpoint: Endpoint::local(port),
        stop,
        thread: Some(thread),
    };
    let client = reqwest::Client::new();
    let url = format!("{}/readyz", served.endpoint.base);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status() == 200 {
                break;
            }
        }
        if Instant::now() > deadline {
            served.stop().await;
            return Err(BenchError::Server(
                "the product was not ready within 600 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let startup = Startup {
        seed: if preload_players > 0 {
            "repository".into()
        } else {
            "none".into()
        },
        seeded_players: preload_players as u64,
        seed_s: preloaded.as_secs_f64(),
        ready_s: Some(built_at.elapsed().as_secs_f64()),
    };
    Ok((served, startup))
}
