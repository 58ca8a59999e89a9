//! `liveops bench`: the load generator and report live in `liveops-bench`; this is the binary's
//! side: the settings of a product started in-process (`--spawn`), preloading its boards for the
//! read benchmark, and the command that prints the report.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use liveops_bench::{own_runtime, BenchError, Product, Served, Signer, Spawn, Startup};
use liveops_core::now_ms;
use liveops_core::ports::{Board, ScoreDelta};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

pub use liveops_bench::{BenchOpts, Mode, Phase, Report};

use crate::config::{BusKind, Given, RawConfig};
use crate::{Application, Settings};

/// The settings of an in-process product: the given configuration, on a free local port, with
/// its files in `dir`: an embedded repository or bus named by the configuration (`DB_URL`,
/// `BUS_CONN`, or the files holding them) is never the one used, which may be a running
/// server's, and it takes no backups.
fn spawn_settings(config: &Given, dir: &std::path::Path) -> Result<Settings, BenchError> {
    let mut raw = config.raw.clone();
    raw.port = Some(0);
    raw.bind = "127.0.0.1".into();
    raw.data_dir = dir.to_path_buf();
    // Nor the server's backups: a set of the bench's files would go to its BACKUP_DIR and
    // archive, and prune its oldest real set.
    raw.backup.backup_every = "0".into();
    (raw.backup.backup_dir, raw.backup.backup_azure_url) = (None, None);
    (
        raw.backup.backup_azure_key,
        raw.backup.backup_azure_key_file,
    ) = (None, None);
    let resolve = |raw| {
        let args = config.args.clone();
        let resolved = Given { raw, args }.resolve();
        resolved.map_err(|e| BenchError::Config(e.to_string()))
    };
    let given = resolve(raw.clone())?;
    if liveops_sql::Backend::of_url(&given.db_url).ok() == Some(liveops_sql::Backend::Sqlite) {
        (raw.db_url, raw.db_url_file) = (None, None);
    }
    if given.bus_kind == BusKind::Sqlite {
        (raw.bus.bus_conn, raw.bus.bus_conn_file) = (None, None);
    }
    resolve(raw)
}

/// The product started in-process, its files in a temporary directory.
struct InProcess {
    settings: Settings,
    _dir: tempfile::TempDir,
}

#[async_trait]
impl Spawn for InProcess {
    async fn spawn(&self, preload: usize) -> Result<(Served, Startup), BenchError> {
        spawn_product(self.settings.clone(), preload).await
    }
}

/// The operator the bench logs in as (`ADMIN_EMAIL` and its password), if configured.
fn operator(config: &Given) -> Result<Option<(String, String)>, BenchError> {
    use clap::FromArgMatches;
    let args = liveops_operators::OperatorsArgs::from_arg_matches(&config.args)
        .map_err(|e| BenchError::Config(e.to_string()))?;
    args.first_admin()
        .map_err(|e| BenchError::Config(e.to_string()))
}

/// Runs the bench as `config` and `opts` say and returns its report.
pub async fn measure(config: &Given, opts: &BenchOpts) -> Result<Report, BenchError> {
    // Only the claims and entries modes log in: a bad password file fails nothing else.
    let operator = if matches!(opts.mode, Mode::Claims | Mode::Entries) {
        operator(config)?
    } else {
        None
    };
    let (product, signer) = if opts.spawn {
        let dir = tempfile::tempdir()
            .map_err(|e| BenchError::Server(format!("cannot create a temp dir: {e}")))?;
        let settings = spawn_settings(config, dir.path())?;
        let signer = Signer {
            keyring: settings.keyring.clone(),
            tolerance_s: settings.raw.sig_tolerance_sec,
            operator,
        };
        let spawned = InProcess {
            settings,
            _dir: dir,
        };
        (Product::Spawned(Box::new(spawned)), signer)
    } else {
        let settings = config
            .clone()
            .resolve()
            .map_err(|e| BenchError::Config(e.to_string()))?;
        let url = opts
            .url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", settings.port));
        let signer = Signer {
            keyring: settings.keyring.clone(),
            tolerance_s: settings.raw.sig_tolerance_sec,
            operator,
        };
        (Product::Url(url), signer)
    };
    liveops_bench::measure(product, signer, opts).await
}

/// `liveops bench`: runs the bench and prints the table (or JSON with `--json`). Fails if no
/// request at all was answered.
pub async fn run(
    config: RawConfig,
    args: clap::ArgMatches,
    opts: &BenchOpts,
) -> anyhow::Result<ExitCode> {
    let config = Given { raw: config, args };
    if opts.spawn {
        // The in-process product logs warnings and errors only (JSON on stderr).
        crate::telemetry::init_logs("warn");
    }
    let report = measure(&config, opts).await?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    // A request that met a transport error was sent but never answered.
    let answered = report
        .system
        .iter()
        .all(|p| p.requests > p.transport_errors);
    Ok(if answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
    let now = now_ms();
    let boards: Vec<Board> = settings
        .windows
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
async fn spawn_product(
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
    let served = Served::new(port, stop, thread);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    /// The spawned product takes no backups, whatever the configuration says of a server's.
    #[test]
    fn a_spawned_product_takes_no_backups() {
        let args = ["--hmac-secret", "0123456789abcdef0123456789abcdef"];
        let backups = ["--backup-dir", "/srv/backups", "--backup-every", "10m"];
        let given = Given::from_args(args.into_iter().chain(backups)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let settings = spawn_settings(&given, dir.path()).unwrap();
        assert_eq!(settings.backup.every, None);
        assert!(settings.backup.azure.is_none());
        assert!(
            settings.backup.dir.starts_with(dir.path()),
            "{:?}",
            settings.backup.dir
        );
    }
}
