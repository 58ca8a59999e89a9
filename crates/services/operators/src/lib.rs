//! The operators service: accounts with roles (`admin`, `operator`, `analyst`, `viewer`) and
//! argon2id passwords, login sessions as opaque bearer tokens (stored as SHA-256, expiring,
//! revocable), the audit log of every change, and the API keys game servers sign requests with.
//!
//! The first admin comes from `ADMIN_EMAIL` + `ADMIN_PASSWORD` (or `ADMIN_PASSWORD_FILE`) when
//! no operator exists, or from `liveops operators create` ([`create_operator`]). API keys are
//! written here and read by every process that checks signatures (`liveops_module::keys`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use email::normalize_email;
use liveops_core::ports::hot::MAX_STRIKES;
use liveops_core::ports::Attempts;
use liveops_core::stores::{
    ApiKeyStore, AuditEntry, AuditLog, OperatorRecord, OperatorStore, OperatorUpdate, RequestKeys,
    Role, Sessions,
};
use liveops_core::{now_ms, PortError};
use liveops_http::{body_limit, operator_routes, routes, OpenApiRouter, OperatorAuth};
use liveops_module::{BuildError, ConfigError, Context, Definition, ModuleArgs, Service};
use password::{Hashing, PasswordError};

mod accounts;
mod api_keys;
mod client_addr;
mod email;
mod login_cap;
pub mod password;
mod sessions;

pub use accounts::{AuditList, AuditView, OperatorView, OperatorsList};
pub use api_keys::{ApiKeyView, CreatedApiKey};
pub use client_addr::{TrustedProxies, MAX_TRUSTED_PROXIES};
pub use login_cap::{FailedLogins, FAILED_LOGINS_WINDOW};
pub use sessions::LoginAnswer;

/// Largest request body on the operators' routes.
const BODY_LIMIT: usize = 16 * 1024;

/// The operators service's settings, as flags and environment variables (no `Debug`: they
/// hold the first admin's password).
#[derive(Args, Clone)]
pub struct OperatorsArgs {
    /// Email of the first admin, created at start when no operator exists.
    #[arg(long, env = "ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of the first admin (12 to 256 characters).
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// File holding the first admin's password (e.g. a Key Vault CSI mount).
    #[arg(long, env = "ADMIN_PASSWORD_FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// How long a login session lasts, seconds.
    #[arg(long, env = "SESSION_TTL_SEC", default_value_t = 12 * 3600)]
    pub session_ttl_sec: u64,
    /// Login attempts per client address per minute (1 to 255).
    #[arg(long, env = "LOGIN_MAX_PER_ADDRESS", default_value_t = 30)]
    pub login_max_per_address: u32,
    /// Failed logins per account and client address per 15 minutes before that address's
    /// logins to the account are refused for a while (1 to 255).
    #[arg(long, env = "LOGIN_MAX_FAILURES", default_value_t = 10)]
    pub login_max_failures: u32,
    /// Failed logins per minute in the whole process, from every address together (1 to
    /// 100000): past it, logins are refused 429 before their password is checked, except from
    /// an address the account signed in from within 30 days.
    #[arg(long, env = "LOGIN_MAX_FAILED_PER_MINUTE", default_value_t = 60)]
    pub login_max_failed_per_minute: u32,
    /// Proxies in front of the service whose `X-Forwarded-For` entries are trusted for the
    /// client's address (0 to 8; 0: the peer's address).
    #[arg(long, env = "TRUSTED_PROXIES", default_value_t = 0)]
    pub trusted_proxies: u32,
    /// Networks those proxies connect from, comma-separated (`10.40.17.0/24`): an
    /// `X-Forwarded-For` from any other peer is ignored. Needed when `TRUSTED_PROXIES` > 0.
    #[arg(long, env = "TRUSTED_PROXY_CIDRS", default_value = "")]
    pub trusted_proxy_cidrs: String,
    /// Most active API keys (1 to 10000): past it a create is refused (409) until one is
    /// revoked. Every process that checks signatures reads them all each second.
    #[arg(long, env = "API_KEY_MAX", default_value_t = 100)]
    pub api_key_max: u32,
}

/// The operators service's settings, checked.
#[derive(Clone, Debug)]
pub struct OperatorsConfig {
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// Login attempts per address per [`ADDRESS_WINDOW`].
    pub max_per_address: u32,
    /// Failed logins per account and address per [`ACCOUNT_WINDOW`].
    pub max_failures: u32,
    /// Failed logins of the process per [`FAILED_LOGINS_WINDOW`].
    pub max_failed_per_minute: u32,
    /// Who may forward the client's address.
    pub proxies: TrustedProxies,
    /// Most active API keys (and most revoked ones `GET /api-keys` lists).
    pub max_api_keys: u32,
}

/// The window of the per-address login limit.
pub const ADDRESS_WINDOW: Duration = Duration::from_secs(60);
/// The window of the per-account-and-address failure limit.
pub const ACCOUNT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Highest login limit: the hot state counts at most [`MAX_STRIKES`] attempts per key, so a
/// limit of that many or more would never be exceeded.
pub const MAX_LOGIN_LIMIT: u32 = MAX_STRIKES as u32 - 1;

impl OperatorsArgs {
    /// Checks the values (the password file is read when the service starts).
    pub fn config(&self) -> Result<OperatorsConfig, ConfigError> {
        if self.session_ttl_sec < 60 || self.session_ttl_sec > 30 * 86_400 {
            return Err(ConfigError::new(
                "SESSION_TTL_SEC",
                "must be between 60 and 2592000 (30 days)",
            ));
        }
        let limits = 1..=MAX_LOGIN_LIMIT;
        let max_per_address = ConfigError::within(
            "LOGIN_MAX_PER_ADDRESS",
            self.login_max_per_address,
            limits.clone(),
        )?;
        let max_failures =
            ConfigError::within("LOGIN_MAX_FAILURES", self.login_max_failures, limits)?;
        let max_failed_per_minute = ConfigError::within(
            "LOGIN_MAX_FAILED_PER_MINUTE",
            self.login_max_failed_per_minute,
            1..=100_000,
        )?;
        let max_api_keys = ConfigError::within("API_KEY_MAX", self.api_key_max, 1..=10_000)?;
        if self.admin_password.is_some() && self.admin_password_file.is_some() {
            return Err(ConfigError::new(
                "ADMIN_PASSWORD_FILE",
                "set either ADMIN_PASSWORD or ADMIN_PASSWORD_FILE, not both",
            ));
        }
        if let Some(email) = &self.admin_email {
            normalize_email(email)
                .map_err(|p| ConfigError::new("ADMIN_EMAIL", p.detail.unwrap_or_default()))?;
            if self.admin_password.is_none() && self.admin_password_file.is_none() {
                return Err(ConfigError::new(
                    "ADMIN_PASSWORD",
                    "ADMIN_EMAIL needs ADMIN_PASSWORD or ADMIN_PASSWORD_FILE",
                ));
            }
        }
        if let Some(p) = &self.admin_password {
            password::check(p).map_err(|e| ConfigError::new("ADMIN_PASSWORD", e.to_string()))?;
        }
        Ok(OperatorsConfig {
            session_ttl: Duration::from_secs(self.session_ttl_sec),
            max_per_address,
            max_failures,
            max_failed_per_minute,
            proxies: TrustedProxies::new(self.trusted_proxies, &self.trusted_proxy_cidrs)?,
            max_api_keys,
        })
    }

    /// The first admin's email and password, if configured (reading the password file): what
    /// the service creates at start, and what `liveops bench --mode claims` logs in with.
    pub fn first_admin(&self) -> Result<Option<(String, String)>, ConfigError> {
        let Some(email) = &self.admin_email else {
            return Ok(None);
        };
        let password = match (&self.admin_password, &self.admin_password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConfigError::new(
                        "ADMIN_PASSWORD_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            (None, None) => return Ok(None),
        };
        password::check(&password)
            .map_err(|e| ConfigError::new("ADMIN_PASSWORD_FILE", e.to_string()))?;
        Ok(Some((email.clone(), password)))
    }
}

/// What the operators' handlers share.
#[derive(Clone)]
pub struct OperatorsState {
    /// Settings.
    pub config: Arc<OperatorsConfig>,
    /// Checks bearer tokens.
    pub auth: OperatorAuth,
    /// Accounts.
    pub operators: Arc<dyn OperatorStore>,
    /// Login sessions.
    pub sessions: Arc<dyn Sessions>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// API keys.
    pub keys: Arc<dyn ApiKeyStore>,
    /// Login attempts per address and account.
    pub attempts: Arc<dyn Attempts>,
    /// The argon2 computations running at once, bounded ([`Hashing::shared`] in a process).
    pub hashing: Arc<Hashing>,
    /// The failed logins of the process within the last minute.
    pub failed_logins: Arc<FailedLogins>,
    /// The answers of creates under an `Idempotency-Key`.
    pub requests: Arc<dyn RequestKeys>,
}

liveops_http::from_state!(OperatorsState { auth: OperatorAuth });
liveops_module::from_context!(OperatorsState(
    config: Arc<OperatorsConfig>,
    hashing: Arc<Hashing>,
    failed_logins: Arc<FailedLogins>,
) {
    auth, operators, sessions, audit, keys, attempts, requests
});

/// The operators' routes with their OpenAPI operations.
fn api() -> OpenApiRouter<OperatorsState> {
    let routes = operator_routes(
        "operators",
        "Operator accounts, sessions, the audit log and API keys",
    )
    .routes(routes!(sessions::login))
    .routes(routes!(sessions::logout))
    .routes(routes!(sessions::get_current_operator))
    .routes(routes!(sessions::change_password))
    .routes(routes!(accounts::add_operator, accounts::list_operators))
    .routes(routes!(accounts::update_operator))
    .routes(routes!(accounts::list_audit_entries))
    .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
    .routes(routes!(api_keys::revoke_api_key));
    body_limit(routes, BODY_LIMIT)
}

/// The operators' routes.
pub fn router(state: OperatorsState) -> Router {
    api().split_for_parts().0.with_state(state)
}

/// Creates an operator (`POST /operators`, `liveops operators create`, and the first admin at
/// start), its password hashed in a turn of `hashing`: `Ok(None)` if the email is taken. `actor`
/// is who the audit log names.
pub async fn create_operator(
    store: &dyn OperatorStore,
    hashing: &Hashing,
    email: &str,
    password: String,
    role: Role,
    actor: &str,
) -> Result<Option<OperatorRecord>, CreateError> {
    let (email, hash) = checked(hashing, email, password).await?;
    let now = now_ms();
    let op = OperatorRecord {
        id: format!("op_{}", uuid::Uuid::now_v7().simple()),
        email,
        password_hash: hash,
        role,
        disabled: false,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let audit = AuditEntry {
        at_ms: now,
        actor: actor.to_owned(),
        action: "operator.create".into(),
        target: op.id.clone(),
        before: None,
        after: Some(accounts::audit_json(&op)),
    };
    Ok(store.create_operator(&op, &audit).await?.then_some(op))
}

/// The normalized email and the password's hash (in a turn of `hashing`), or why either is not
/// acceptable.
async fn checked(
    hashing: &Hashing,
    email: &str,
    password: String,
) -> Result<(String, String), CreateError> {
    let email =
        normalize_email(email).map_err(|p| CreateError::Invalid(p.detail.unwrap_or_default()))?;
    let hash = hashing.hash(password).await.map_err(|e| match e {
        PasswordError::Busy(busy) => CreateError::Port(PortError::Unavailable(busy.to_string())),
        e => CreateError::Invalid(e.to_string()),
    })?;
    Ok((email, hash))
}

/// Sets the password of the operator with `email` (`liveops operators set-password`: an admin
/// who lost theirs, with no other admin to reset it), closing their sessions; `Ok(None)` if no
/// operator has this email. `actor` is who the audit log names.
pub async fn set_password(
    store: &dyn OperatorStore,
    hashing: &Hashing,
    email: &str,
    password: String,
    actor: &str,
) -> Result<Option<OperatorRecord>, CreateError> {
    let (email, hash) = checked(hashing, email, password).await?;
    // A change racing ours (a role change in the API) moves `updated_at_ms`: read again.
    for _ in 0..5 {
        let Some(before) = store.operator_by_email(&email).await? else {
            return Ok(None);
        };
        let mut after = OperatorRecord {
            password_hash: hash.clone(),
            ..before.clone()
        };
        let action = "operator.password_reset";
        match accounts::write_operator(store, actor, action, &before, &mut after, now_ms()).await? {
            OperatorUpdate::Updated => return Ok(Some(after)),
            OperatorUpdate::ChangedMeanwhile => {}
            // Role and state are unchanged, so the store cannot find fewer admins than before.
            OperatorUpdate::LastAdmin => {
                return Err(CreateError::Invalid("no enabled admin would remain".into()))
            }
        }
    }
    Err(CreateError::Port(PortError::Unavailable(
        "the operator kept changing meanwhile; try again".into(),
    )))
}

/// Why [`create_operator`] or [`set_password`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The email or password is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The repository failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The operators service's row in the module table: `--target operators`, port 8084.
pub static MODULE: Definition<OperatorsArgs> =
    Definition::new("operators", 8084, &[], || api().into_openapi());

impl ModuleArgs for OperatorsArgs {
    fn check(&self) -> Result<(), ConfigError> {
        self.config().map(drop)
    }

    async fn build(self, ctx: &Context) -> Result<Service, BuildError> {
        let config = Arc::new(self.config()?);
        let failed = Arc::new(FailedLogins::new(config.max_failed_per_minute));
        let state = OperatorsState::from_context(ctx, config, Hashing::shared(), failed).await?;
        if let Some((email, password)) = self.first_admin()? {
            bootstrap_admin(state.operators.as_ref(), &state.hashing, &email, password).await?;
        }
        Ok(Service::routes(router(state)))
    }
}

/// Creates the first admin if no operator exists yet.
async fn bootstrap_admin(
    store: &dyn OperatorStore,
    hashing: &Hashing,
    email: &str,
    password: String,
) -> Result<(), BuildError> {
    if store.operator_count().await? > 0 {
        return Ok(());
    }
    match create_operator(store, hashing, email, password, Role::Admin, "bootstrap").await {
        Ok(Some(op)) => tracing::info!(operator = %op.id, email = %op.email, "first admin created"),
        // Another replica created it first.
        Ok(None) => {}
        Err(CreateError::Invalid(reason)) => {
            return Err(ConfigError::new("ADMIN_EMAIL", reason).into())
        }
        Err(CreateError::Port(e)) => return Err(e.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(login_max_per_address: u32, login_max_failures: u32) -> OperatorsArgs {
        OperatorsArgs {
            admin_email: None,
            admin_password: None,
            admin_password_file: None,
            session_ttl_sec: 3600,
            login_max_per_address,
            login_max_failures,
            login_max_failed_per_minute: 60,
            trusted_proxies: 0,
            trusted_proxy_cidrs: String::new(),
            api_key_max: 100,
        }
    }

    /// The routes that check a password declare their 503 (no turn at hashing, or a backend
    /// down) as a problem with `Retry-After`.
    #[test]
    fn password_routes_declare_their_503_with_retry_after() {
        let doc = serde_json::to_value(api().into_openapi()).expect("document");
        for path in ["/auth/login", "/auth/password"] {
            let busy = &doc["paths"][path]["post"]["responses"]["503"];
            let problem = &busy["content"]["application/problem+json"]["schema"];
            assert_eq!(
                problem["$ref"], "#/components/schemas/Problem",
                "{path}: {busy}"
            );
            let retry = &busy["headers"]["Retry-After"]["schema"]["type"];
            assert_eq!(retry, "integer", "{path}: {busy}");
        }
    }

    #[test]
    fn login_limits_the_attempt_counts_cannot_reach_are_refused() {
        let var = |a: OperatorsArgs| a.config().err().map(|e| e.var);
        assert_eq!(var(args(255, 255)), None);
        assert_eq!(var(args(1, 1)), None);
        assert_eq!(var(args(256, 10)), Some("LOGIN_MAX_PER_ADDRESS"));
        assert_eq!(var(args(30, 256)), Some("LOGIN_MAX_FAILURES"));
        assert_eq!(var(args(30, 1000)), Some("LOGIN_MAX_FAILURES"));
        assert_eq!(var(args(0, 10)), Some("LOGIN_MAX_PER_ADDRESS"));
        assert_eq!(var(args(30, 0)), Some("LOGIN_MAX_FAILURES"));
        let mut per_minute = args(30, 10);
        for (bad, refused) in [(0, true), (100_001, true), (1, false), (100_000, false)] {
            per_minute.login_max_failed_per_minute = bad;
            let got = var(per_minute.clone());
            assert_eq!(got == Some("LOGIN_MAX_FAILED_PER_MINUTE"), refused, "{bad}");
        }
    }

    #[test]
    fn api_key_caps_outside_1_to_10000_are_refused() {
        let mut capped = args(30, 10);
        for (max, refused) in [(0, true), (10_001, true), (1, false), (10_000, false)] {
            capped.api_key_max = max;
            let got = capped.config().err().map(|e| e.var);
            assert_eq!(got == Some("API_KEY_MAX"), refused, "{max}");
        }
    }
}
