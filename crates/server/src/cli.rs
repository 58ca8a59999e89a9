//! The command line: `serve`, `send`, `migrate`, `bench`, `dead-letters`, `verify-receipt`,
//! `backup`, `restore`, `operators create` and `set-password`, each taking the shared settings and every module's
//! settings as flags (or environment variables), and `verify-draw`, which takes none.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::RawConfig;
use crate::modules::Table;

/// LiveOps: ingest gameplay events, keep play fair, track progression, rank players, run
/// campaigns and pay rewards.
#[derive(Parser)]
#[command(name = "liveops", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Runs the services of `--target` (default: all of them in one process).
    Serve {
        /// Shared settings.
        #[command(flatten)]
        config: RawConfig,
    },
    /// Signs and posts event files to a running gateway.
    Send {
        /// Shared settings.
        #[command(flatten)]
        config: RawConfig,
        /// How to send.
        #[command(flatten)]
        opts: crate::send::SendOpts,
        /// Event files (one JSON event each, or `{"events":[...]}` / a JSON array for a batch).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Applies database migrations and creates the bus, then exits.
    Migrate {
        /// Shared settings.
        #[command(flatten)]
        config: RawConfig,
    },
    /// Measures the running system (or an in-process one with `--spawn`) under load.
    Bench {
        /// Shared settings.
        #[command(flatten)]
        config: RawConfig,
        /// What to measure.
        #[command(flatten)]
        opts: liveops_bench::BenchOpts,
    },
    /// Lists a consumer group's dead letters, or puts them back for delivery with `--replay`.
    DeadLetters {
        /// Shared settings.
        #[command(flatten)]
        config: RawConfig,
        /// The topic (`events.ingested`, `events.accepted`).
        #[arg(long, default_value = "events.accepted")]
        topic: String,
        /// The consumer group (`fairness`, `progression`, `leaderboard`).
        #[arg(long)]
        group: String,
        /// Put every dead letter of the group back for delivery (all of them: not with
        /// `--limit`). Refused while any of them was received more than `EVENT_RETENTION` ago
        /// or is of unknown age, unless `--force`.
        #[arg(long, conflicts_with = "limit")]
        replay: bool,
        /// With `--replay`: replay even dead letters received more than `EVENT_RETENTION` ago
        /// (or of unknown age). The consumers may have purged their ids, so an event among them
        /// that was applied before is applied a second time (XP, score counted twice): check
        /// first that they were not applied.
        #[arg(long, requires = "replay")]
        force: bool,
        /// How many to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Copies the embedded files (the bus, then the repository) into a new set in `BACKUP_DIR`
    /// while the server runs, keeps the newest `BACKUP_KEEP` sets, and uploads the set to
    /// `BACKUP_AZURE_URL` if set.
    Backup {
        /// Shared settings.
        #[command(flatten)]
        config: RawConfig,
    },
    /// Restores a backup set into a `DATA_DIR` (`--data-dir`) with no live file, refused while
    /// another liveops process uses the directory.
    Restore {
        /// Shared settings.
        #[command(flatten)]
        config: RawConfig,
        /// A backup set directory (`BACKUP_DIR/liveops-<time>`, or
        /// `BACKUP_DIR/pre-upgrade-<from>-<to>-<time>` to roll back an upgrade).
        #[arg(
            long,
            required_unless_present = "from_archive",
            conflicts_with = "from_archive"
        )]
        from: Option<PathBuf>,
        /// A set in `BACKUP_AZURE_URL` by name, or `latest` (the newest ordinary set, never a
        /// pre-upgrade one).
        #[arg(long)]
        from_archive: Option<String>,
        /// Restore a set taken more than `EVENT_RETENTION` ago. The first purge after start
        /// (a minute in) deletes every processed event id of the restored database, and events
        /// the restored bus still holds unacked were applied before the backup: each is then
        /// applied a second time (XP, score counted twice). Also a set whose time is more than
        /// 5 minutes in the future (taken while a clock was ahead): its age is unknown.
        #[arg(long)]
        force: bool,
    },
    /// Checks a receipt file's signature with the configured keys.
    VerifyReceipt {
        /// Shared settings.
        #[command(flatten)]
        config: RawConfig,
        /// A receipt as issued by `POST /rewards/claim`.
        file: PathBuf,
    },
    /// Manages operator accounts.
    Operators {
        /// What to do.
        #[command(subcommand)]
        command: crate::live_cli::OperatorsCommand,
    },
    /// Re-runs a published draw (`GET /campaigns/{id}/draw`) against its entrants and says
    /// whether it is valid.
    VerifyDraw {
        /// The draw, as `GET /campaigns/{id}/draw` answers it once drawn (with its list or not).
        draw: PathBuf,
        /// The entrants: one player id per line, or the JSON of `GET /campaigns/{id}/entrants`
        /// (its pages one after another).
        entrants: PathBuf,
    },
}

/// Every subcommand takes the modules' settings too.
const WITH_SETTINGS: [&str; 8] = [
    "serve",
    "send",
    "migrate",
    "bench",
    "dead-letters",
    "verify-receipt",
    "backup",
    "restore",
];

/// Parses the process's arguments with `table`'s module settings; returns the command and the
/// subcommand's whole parse (from which each module reads its own settings). Exits with clap's
/// message on a bad command line.
pub fn parse(table: &Table) -> (Cli, clap::ArgMatches) {
    let mut cmd = Cli::command();
    for name in WITH_SETTINGS {
        cmd = cmd.mut_subcommand(name, |c| table.args(c));
    }
    cmd = cmd.mut_subcommand("operators", |c| {
        c.mut_subcommand("create", |c| table.args(c))
            .mut_subcommand("set-password", |c| table.args(c))
    });
    let matches = cmd.get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The innermost subcommand's parse (`operators create` nests one level deeper).
    let mut sub = matches.clone();
    while let Some((_, m)) = sub.subcommand() {
        sub = m.clone();
    }
    (cli, sub)
}
