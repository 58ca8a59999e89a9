//! `liveops`: one binary, many targets (ARCHITECTURE §2).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use liveops::config::{RawConfig, Settings};
use liveops::telemetry;

/// mimalloc instead of the system allocator: the event path allocates many small short-lived
/// values, and glibc's malloc spent a fifth of the CPU on them under load (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// LiveOps: ingest gameplay events, keep play fair, track progression, rank players, pay rewards.
#[derive(Parser)]
#[command(name = "liveops", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the services of `--target` (default: all of them in one process).
    Serve {
        #[command(flatten)]
        config: RawConfig,
    },
    /// Signs and posts event files to a running gateway.
    Send {
        #[command(flatten)]
        config: RawConfig,
        #[command(flatten)]
        opts: liveops::send::SendOpts,
        /// Event files (one JSON event each, or `{"events":[...]}` / a JSON array for a batch).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Applies database migrations and creates the bus, then exits.
    Migrate {
        #[command(flatten)]
        config: RawConfig,
    },
    /// Measures the running system (or an in-process one with `--spawn`) under load.
    Bench {
        #[command(flatten)]
        config: RawConfig,
        #[command(flatten)]
        opts: liveops::bench::BenchOpts,
    },
    /// Checks a receipt file's signature with the configured keys.
    /// Lists a consumer group's dead letters, or puts them back for delivery with `--replay`.
    DeadLetters {
        #[command(flatten)]
        config: RawConfig,
        /// The topic (`events.ingested`, `events.accepted`).
        #[arg(long, default_value = "events.accepted")]
        topic: String,
        /// The consumer group (`fairness`, `progression`, `leaderboard`).
        #[arg(long)]
        group: String,
        /// Put every dead letter of the group back for delivery.
        #[arg(long)]
        replay: bool,
        /// How many to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    VerifyReceipt {
        #[command(flatten)]
        config: RawConfig,
        /// A receipt as issued by `POST /rewards/claim`.
        file: PathBuf,
    },
}

fn settings(raw: RawConfig) -> Result<Settings, ExitCode> {
    Settings::resolve(raw).map_err(|e| {
        eprintln!("liveops: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("liveops: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve { config } => {
                let s = match settings(config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                telemetry::init_logs(&s.raw.log_level);
                if let Some(path) = &s.dev_secret_path {
                    tracing::warn!(path = %path.display(), "ENV=dev and no HMAC secret: using a generated dev secret");
                }
                if let Some(endpoint) = &s.raw.otel_exporter_otlp_endpoint {
                    tracing::warn!(%endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT is set but trace export is not built into this version");
                }
                serve(s).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Send { config, opts, files } => {
                let s = match settings(config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                liveops::send::run(&s, &opts, &files).await
            }
            Command::Migrate { config } => {
                let s = match settings(config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                telemetry::init_logs(&s.raw.log_level);
                liveops::app::Ports::open(&s).await?;
                println!("migrations applied; bus ready at {}", s.bus_path.display());
                Ok(ExitCode::SUCCESS)
            }
            Command::Bench { config, opts } => liveops::bench::run(config, &opts).await,
            Command::DeadLetters { config, topic, group, replay, limit } => {
                let s = match settings(config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                liveops::app::dead_letters(&s, &topic, &group, replay, limit).await
            }
            Command::VerifyReceipt { config, file } => {
                let s = match settings(config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                liveops::send::verify_receipt_file(&s, &file)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("liveops: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(s: Settings) -> anyhow::Result<()> {
    let app = liveops::Application::build(s).await?;
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received");
        stop.cancel();
    });
    app.run_until_stopped().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
