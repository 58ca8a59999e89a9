//! `liveops`: one binary, many targets (ARCHITECTURE §2).

use std::process::ExitCode;

use liveops::backup::restore::Source;
use liveops::cli::{self, Command};
use liveops::config::{RawConfig, Settings};
use liveops::data_lock::DataLock;
use liveops::live_cli::OperatorsCommand;
use liveops::modules::Table;
use liveops::telemetry;

/// mimalloc instead of the system allocator: the event path allocates many small short-lived
/// values, and glibc's malloc spent a fifth of the CPU on them under load (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn settings(table: &Table, raw: RawConfig, args: clap::ArgMatches) -> Result<Settings, ExitCode> {
    let s = Settings::resolve(table, raw, args).map_err(|e| {
        eprintln!("liveops: configuration error: {e}");
        ExitCode::from(2)
    })?;
    if let (true, Some(path)) = (s.keys.dev_secret_created, &s.dev_secret_path) {
        // Else `send` from the wrong directory is a bare 401 and `verify-receipt` a mismatch.
        eprintln!(
            "liveops: ENV=dev and no signing key: created a new dev secret at {}; a server \
             with another DATA_DIR signs with its own (run from the directory `serve` runs \
             in, pass its --data-dir, or set HMAC_SECRET)",
            path.display()
        );
    }
    Ok(s)
}

fn main() -> ExitCode {
    let table = Table::standard();
    let (cli, args) = cli::parse(&table);
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
                let s = match settings(&table, config, args) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                let service = match s.target.name.as_str() {
                    "all" => "liveops".to_owned(),
                    name => format!("liveops-{}", name.replace(',', "+")),
                };
                let traces = telemetry::init(
                    &s.raw.log_level,
                    s.raw.otel_exporter_otlp_endpoint.as_deref(),
                    &service,
                );
                if let Some(path) = &s.dev_secret_path {
                    tracing::warn!(path = %path.display(), "ENV=dev and no HMAC secret: using a generated dev secret");
                }
                let served = serve(s).await;
                traces.shutdown().await;
                served.map(|()| ExitCode::SUCCESS)
            }
            Command::Send {
                config,
                opts,
                files,
            } => match settings(&table, config, args) {
                Ok(s) => liveops::send::run(&s, &opts, &files).await,
                Err(code) => Ok(code),
            },
            Command::Migrate { config } => {
                let s = match settings(&table, config, args) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                telemetry::init_logs(&s.raw.log_level);
                let _lock = DataLock::shared(&s)?;
                liveops::wiring::migrate(&s).await?;
                println!("migrations applied; bus ready");
                Ok(ExitCode::SUCCESS)
            }
            Command::Bench { config, opts } => liveops::bench::run(config, args, &opts).await,
            Command::DeadLetters {
                config,
                topic,
                group,
                replay,
                force,
                limit,
            } => match settings(&table, config, args) {
                Ok(s) => {
                    let _lock = DataLock::shared(&s)?;
                    let action = if replay {
                        liveops::dead_letters::Action::Replay { force }
                    } else {
                        liveops::dead_letters::Action::List(limit)
                    };
                    liveops::dead_letters::run(&s, &topic, &group, action).await
                }
                Err(code) => Ok(code),
            },
            Command::Backup { config } => match settings(&table, config, args) {
                Ok(s) => backup(&s).await,
                Err(code) => Ok(code),
            },
            Command::Restore {
                mut config,
                from,
                from_archive,
                force,
            } => {
                // A restore signs nothing, so any key does; without one, the settings would
                // create a dev secret in DATA_DIR.
                if config.hmac_secret.is_none()
                    && config.hmac_secret_file.is_none()
                    && config.hmac_keys.is_none()
                    && config.hmac_keys_file.is_none()
                {
                    config.hmac_secret = Some(hex::encode(rand::random::<[u8; 32]>()));
                }
                let source = match (from, from_archive) {
                    (Some(dir), _) => Source::Dir(dir),
                    (None, Some(name)) => Source::Archive(name),
                    (None, None) => {
                        eprintln!("liveops: restore needs --from or --from-archive");
                        return Ok(ExitCode::from(2));
                    }
                };
                match settings(&table, config, args) {
                    Ok(s) => restore(&s, &source, force).await,
                    Err(code) => Ok(code),
                }
            }
            Command::VerifyReceipt { config, file } => match settings(&table, config, args) {
                Ok(s) => liveops::send::verify_receipt_file(&s, &file),
                Err(code) => Ok(code),
            },
            Command::Operators {
                command:
                    OperatorsCommand::Create {
                        config,
                        email,
                        role,
                    },
            } => match settings(&table, config, args) {
                Ok(s) => {
                    let _lock = DataLock::shared(&s)?;
                    liveops::live_cli::create_operator(&s, &email, role).await
                }
                Err(code) => Ok(code),
            },
            Command::Operators {
                command: OperatorsCommand::SetPassword { config, email },
            } => match settings(&table, config, args) {
                Ok(s) => {
                    let _lock = DataLock::shared(&s)?;
                    liveops::live_cli::set_password(&s, &email).await
                }
                Err(code) => Ok(code),
            },
            Command::VerifyDraw { draw, entrants } => {
                liveops::live_cli::verify_draw(&draw, &entrants)
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

async fn backup(s: &Settings) -> anyhow::Result<ExitCode> {
    telemetry::init_logs(&s.raw.log_level);
    let _lock = DataLock::shared(s)?;
    let report = liveops::backup::Backups::new(s)?.run_once().await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

async fn restore(s: &Settings, source: &Source, force: bool) -> anyhow::Result<ExitCode> {
    telemetry::init_logs(&s.raw.log_level);
    let restored = liveops::backup::restore::run(s, source, force).await?;
    println!("{}", serde_json::to_string(&restored)?);
    Ok(ExitCode::SUCCESS)
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
