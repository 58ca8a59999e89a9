//! The live-event commands: `liveops operators create` and `set-password` (the password read
//! from stdin) and `liveops verify-draw` (re-runs a published draw offline).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use liveops_core::draw::{self, PublishedDraw};
use liveops_core::stores::{OperatorStore, Role};
use liveops_operators::password::Hashing;

use crate::config::{RawConfig, Settings};

/// The roles, as the command line names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Everything, including operators and API keys.
    Admin,
    /// Campaigns, messages, webhooks, unblocks.
    Operator,
    /// Reads.
    Analyst,
    /// Reads campaigns and fairness.
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::Analyst => Role::Analyst,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

/// `liveops operators …`.
#[derive(Subcommand)]
pub enum OperatorsCommand {
    /// Creates an operator; the password is read from stdin (one line).
    Create {
        /// Shared settings (the repository is `DB_URL`).
        #[command(flatten)]
        config: RawConfig,
        /// Their email (their login).
        #[arg(long)]
        email: String,
        /// Their role.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Sets an operator's password, read from stdin (one line), closing their sessions: for an
    /// admin who lost theirs with no other admin to reset it.
    SetPassword {
        /// Shared settings (the repository is `DB_URL`).
        #[command(flatten)]
        config: RawConfig,
        /// Their email (their login).
        #[arg(long)]
        email: String,
    },
}

/// The first line of stdin: a password.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("cannot read the password from stdin")?;
    Ok(password.lines().next().unwrap_or_default().to_owned())
}

/// What `operators create` and `set-password` answer: the operator (exit 0), or the reason they
/// were refused (exit 1 for a taken or unknown email, 2 for an unacceptable email or password).
fn answered(
    done: Result<Option<liveops_core::stores::OperatorRecord>, liveops_operators::CreateError>,
    none: &str,
) -> anyhow::Result<ExitCode> {
    match done {
        Ok(Some(op)) => {
            println!(
                "{}",
                serde_json::to_string(&liveops_operators::OperatorView::from(&op))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            eprintln!("liveops: {none}");
            Ok(ExitCode::from(1))
        }
        Err(liveops_operators::CreateError::Invalid(reason)) => {
            eprintln!("liveops: {reason}");
            Ok(ExitCode::from(2))
        }
        Err(liveops_operators::CreateError::Port(e)) => Err(e.into()),
    }
}

/// Creates an operator in the repository `settings` name, with the password on stdin.
pub async fn create_operator(s: &Settings, email: &str, role: RoleArg) -> anyhow::Result<ExitCode> {
    let password = password_from_stdin()?;
    if let Some(path) = missing_repository(s) {
        // The first admin before the first start, or the command run beside another DATA_DIR
        // than the server's: said, so the second does not pass for protection.
        eprintln!(
            "liveops: no repository was at {}: it is created, with this operator (a server on \
             another DATA_DIR or DB_URL does not see it)",
            path.display()
        );
    }
    let ports = crate::wiring::ports_after_pre_upgrade_backup(s).await?;
    let store = ports.get::<dyn OperatorStore>().await?;
    let hashing = Hashing::shared();
    let made = liveops_operators::create_operator(
        store.as_ref(),
        &hashing,
        email,
        password,
        role.into(),
        "cli",
    )
    .await;
    answered(made, "an operator with this email exists")
}

/// Sets the password of the operator with `email`, read from stdin, in the repository
/// `settings` name.
pub async fn set_password(s: &Settings, email: &str) -> anyhow::Result<ExitCode> {
    let password = password_from_stdin()?;
    if let Some(path) = missing_repository(s) {
        anyhow::bail!(
            "no repository at {} (is DATA_DIR or DB_URL right?)",
            path.display()
        );
    }
    let ports = crate::wiring::ports_after_pre_upgrade_backup(s).await?;
    let store = ports.get::<dyn OperatorStore>().await?;
    let hashing = Hashing::shared();
    let set =
        liveops_operators::set_password(store.as_ref(), &hashing, email, password, "cli").await;
    answered(set, "no operator has this email")
}

/// The embedded repository's file, if the settings name one that is not there (opening it
/// would create it, empty).
fn missing_repository(s: &Settings) -> Option<std::path::PathBuf> {
    let files = crate::wiring::backup::local_files(s);
    let repository = files.into_iter().find(|f| f.role == "repository")?;
    (!repository.path.exists()).then_some(repository.path)
}

/// Reads an entrants file: one player id per line, or the JSON of `GET /campaigns/{id}/entrants`
/// (its pages one after another, as a loop over `nextCursor` appends them), or JSON arrays of ids.
fn entrants_of(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let mut all = Vec::new();
        for page in serde_json::Deserializer::from_str(trimmed).into_iter::<serde_json::Value>() {
            let mut v = page.with_context(|| format!("{} is not JSON", path.display()))?;
            let list = match v.get_mut("entrants") {
                Some(list) => list.take(),
                None => v,
            };
            let ids: Vec<String> = serde_json::from_value(list)
                .with_context(|| format!("{}: expected a list of player ids", path.display()))?;
            all.extend(ids);
        }
        return Ok(all);
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// `liveops verify-draw <draw.json> <entrants.txt>`: re-runs `liveops-draw-v1` and says
/// `valid`, or `invalid:` and why (exit status 1).
pub fn verify_draw(draw_file: &Path, entrants_file: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(draw_file)
        .with_context(|| format!("cannot read {}", draw_file.display()))?;
    let published: PublishedDraw = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a draw as GET /campaigns/{{id}}/draw answers it",
            draw_file.display()
        )
    })?;
    let entrants = entrants_of(entrants_file)?;
    let listed = published.entrants.as_ref().map(|e| e.len() as u64);
    match draw::verify(&published, &entrants) {
        Ok(()) => {
            println!(
                "valid: {} winner(s) re-drawn from {} entrant(s) with the committed seed \
                 (algorithm {}, commitment {})",
                published.winners.as_ref().map_or(0, Vec::len),
                published.entrant_count.or(listed).unwrap_or_default(),
                published.algorithm,
                published.commitment
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("invalid: {why}");
            Ok(ExitCode::from(1))
        }
    }
}
