//! `POST /auth/login`, `POST /auth/logout`, `GET /auth/me`, `POST /auth/password`.
//!
//! A login answers an opaque token (32 random bytes, hex) that only its SHA-256 is stored of.
//! Attempts are limited per client address (every attempt) and per account and address
//! (failures), so failures from one address never lock the account out for the others; past a
//! bound on an account's failures from everywhere, only addresses it signed in from lately may
//! still try. Guesses of the current password on `POST /auth/password` count as failed logins
//! on both. Past a bound on the failures of the whole process per minute (`login_cap`), only
//! such addresses may try, so guesses spread over countless addresses cannot keep every
//! password-hashing turn busy. A failure is counted (checked against its limits and recorded in
//! one step) before the password is checked, so guesses sent at once cannot all pass a count read
//! before any of them failed; a right password takes its attempt back.

use liveops_http::responses::{
    BadRequest, TooLarge, TooManyRequests, Unauthenticated, Unavailable,
};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use liveops_core::now_ms;
use liveops_core::ports::Attempt;
use liveops_core::stores::{AuditEntry, OperatorRecord, OperatorUpdate};
use liveops_http::{rfc3339, token_hash, Json, Operator, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{new_hash, write_operator, OperatorView};
use crate::client_addr::ClientAddr;
use crate::email::Email;
use crate::password::MAX_LEN;
use crate::{OperatorsConfig, OperatorsState, ACCOUNT_WINDOW, ADDRESS_WINDOW, MAX_LOGIN_LIMIT};

/// The body of `POST /auth/login`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// The operator's email: as `POST /operators` takes it.
    email: Email,
    /// Their password.
    #[schema(min_length = 1, max_length = 256)]
    password: String,
}

/// A session: the bearer token and when it expires.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginAnswer {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// When the token stops working (RFC 3339).
    pub expires_at: String,
    /// Who is signed in.
    pub operator: OperatorView,
}

/// A fresh id for one attempt: what it is counted under, so that it alone can be taken back.
fn attempt_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Whether an attempt refused by its limit is counted all the same.
#[derive(Clone, Copy)]
enum Refused {
    /// Counted: every attempt of an address, so a flood keeps its own window full.
    Counted,
    /// Not counted: failures, counted before the password is checked, so refusals do not keep
    /// the window full (it empties `window` after the failures that filled it).
    Left,
}

/// Counts `attempt` on `key`: past its `max`, 429 naming `what`, the attempt counted or not as
/// `refused` says.
async fn count(
    state: &OperatorsState,
    key: &str,
    attempt: Attempt<'_>,
    (what, refused): (&str, Refused),
) -> Result<(), Problem> {
    let asked = match refused {
        Refused::Counted => Attempt {
            max: u32::MAX,
            ..attempt
        },
        Refused::Left => attempt,
    };
    match state.attempts.attempt(key, asked).await? {
        Some(n) if n <= attempt.max => Ok(()),
        _ => Err(throttled(what, attempt.window)),
    }
}

/// The 429 of a login refused by a limit on `what` over `window`.
fn throttled(what: &str, window: Duration) -> Problem {
    metrics::counter!("operator_logins_total", "result" => "throttled").increment(1);
    Problem::too_many(
        format!("too many login attempts {what}; wait and retry"),
        window.as_secs(),
    )
}

/// What the attempts counted per client address are limited on.
const PER_ADDRESS: &str = "from this address";

/// What the failures counted under [`failures_key`] are limited on.
const PER_ACCOUNT: &str = "on this account from this address";

/// The key failed logins on the account `email` from the client address `addr` are counted
/// under (neither has white space in it).
fn failures_key(email: &str, addr: &str) -> String {
    format!("login:account:{email} {addr}")
}

/// How many failed logins on one account, from all addresses together, within [`ACCOUNT_WINDOW`]
/// stop its logins from every address it was not signed in from lately: ten times the
/// per-address limit, so that guessing from many addresses stays bounded.
fn account_wide(cfg: &OperatorsConfig) -> u32 {
    cfg.max_failures.saturating_mul(10).min(MAX_LOGIN_LIMIT)
}

/// How long an address the operator signed in from stays theirs: failures from elsewhere (an
/// IPv6 /56 holds 256 /64s, a botnet more) do not lock them out of it.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 86_400);

/// The key of the account `email`'s sign-ins from the client address `addr`.
fn known_key(email: &str, addr: &str) -> String {
    format!("login:known:{email} {addr}")
}

/// The key failed logins on the account `email` from every address are counted under.
fn account_key(email: &str) -> String {
    format!("login:account:{email}")
}

/// Counts the attempt `id` among the failures on the account (`all`, an [`account_key`]) from
/// every address, unless [`account_wide`] are counted already and the account was not signed
/// in from this address lately (`known`, a [`known_key`]): then 429, nothing counted.
async fn count_account_wide(
    state: &OperatorsState,
    (all, known, id): (&str, &str, &str),
    now: i64,
) -> Result<(), Problem> {
    let mut attempt = Attempt {
        id,
        at_ms: now,
        window: ACCOUNT_WINDOW,
        max: account_wide(&state.config),
    };
    if state.attempts.attempt(all, attempt).await?.is_some() {
        return Ok(());
    }
    if state.attempts.attempts(known, now, KNOWN_FOR).await? == 0 {
        return Err(throttled("on this account", ACCOUNT_WINDOW));
    }
    // The owner's address: past the bound it may still try, and its failures still count.
    attempt.max = u32::MAX;
    state.attempts.attempt(all, attempt).await?;
    Ok(())
}

/// A password sent to be checked, within the bounds any password is set within (1 to
/// [`MAX_LEN`] characters), or 400 naming `field`.
fn sent_password(password: &str, field: &str) -> Result<(), Problem> {
    if (1..=MAX_LEN).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(Problem::invalid(
            field,
            format!("must be 1 to {MAX_LEN} characters"),
        ))
    }
}

fn bad_login() -> Problem {
    Problem::new(
        401,
        "bad-login",
        "Authentication failed",
        "the email or the password is wrong",
    )
}

/// Logs an operator in: an opaque bearer token valid for `SESSION_TTL_SEC` (12 h by default).
#[utoipa::path(
    post, path = "/auth/login", tag = "operators",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginAnswer),
        BadRequest,
        (status = 401, description = "Wrong email or password, a disabled operator, or a password changed while it was checked", body = Problem, content_type = "application/problem+json"),
        TooLarge,
        TooManyRequests,
        (status = 503, description = "Too many passwords are being checked, or a backend is unavailable; retry after Retry-After", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
#[tracing::instrument(skip_all, fields(address = %addr.0))]
pub(crate) async fn login(
    State(state): State<OperatorsState>,
    addr: ClientAddr,
    Json(body): Json<LoginRequest>,
) -> Result<Json<LoginAnswer>, Problem> {
    // The attempt is counted before the password is checked and taken back after: a client
    // that goes away meanwhile must not leave it counted.
    liveops_http::uninterrupted(login_to_end(state, addr, body)).await
}

/// [`login`], on a task of its own.
async fn login_to_end(
    state: OperatorsState,
    addr: ClientAddr,
    body: LoginRequest,
) -> Result<Json<LoginAnswer>, Problem> {
    let now = now_ms();
    let cfg = &state.config;
    let id = attempt_id();
    let address_key = format!("login:address:{}", addr.0);
    let per_address = Attempt {
        id: &id,
        at_ms: now,
        window: ADDRESS_WINDOW,
        max: cfg.max_per_address,
    };
    let refused = (PER_ADDRESS, Refused::Counted);
    count(&state, &address_key, per_address, refused).await?;
    // Out of the bounds the document declares: refused as such (no password of that length
    // can be set, so none is checked).
    let email = body.email.normalized()?;
    sent_password(&body.password, "password")?;
    // Failures are counted per account *and* address: someone guessing from one address can
    // only lock that address out of the account, never its owner elsewhere.
    let failures = failures_key(&email, &addr.0);
    let per_account = Attempt {
        window: ACCOUNT_WINDOW,
        max: cfg.max_failures,
        ..per_address
    };
    count(&state, &failures, per_account, (PER_ACCOUNT, Refused::Left)).await?;
    // And for the account as a whole (a right password takes back only its own attempt: the
    // other failures there are someone else's guesses, which this count bounds).
    let (all, known) = (account_key(&email), known_key(&email, &addr.0));
    if let Err(refused) = count_account_wide(&state, (&all, &known, &id), now).await {
        state.attempts.forget_attempts(&failures, Some(&id)).await?;
        return Err(refused);
    }
    // And for the whole process, before any password is hashed (see `login_cap`).
    let counted = match state.failed_logins.count(now) {
        Ok(()) => true,
        Err(_) if state.attempts.attempts(&known, now, KNOWN_FOR).await? > 0 => false,
        Err(wait_s) => {
            for key in [&failures, &all] {
                state.attempts.forget_attempts(key, Some(&id)).await?;
            }
            metrics::counter!("operator_logins_total", "result" => "throttled").increment(1);
            let detail = "too many failed logins on this server; wait and retry";
            return Err(Problem::too_many(detail, wait_s));
        }
    };
    // Nothing checked (a backend failed, no turn at hashing) or found right: not a failure.
    let attempt = Counted {
        keys: [failures.as_str(), all.as_str()],
        id: &id,
        process: counted,
        at_ms: now,
    };
    let op = match state.operators.operator_by_email(&email).await {
        Ok(op) => op,
        Err(e) => return Err(attempt.taken_back(&state, e.into()).await),
    };
    let hash = op.as_ref().map(|o| o.password_hash.clone());
    let matches = match state.hashing.verify(body.password, hash).await {
        Ok(matches) => matches,
        Err(busy) => {
            metrics::counter!("operator_logins_total", "result" => "busy").increment(1);
            return Err(attempt.taken_back(&state, busy.into()).await);
        }
    };
    let op = match op {
        Some(op) if matches => op,
        _ => {
            metrics::counter!("operator_logins_total", "result" => "failed").increment(1);
            tracing::info!("login failed");
            return Err(bad_login());
        }
    };
    if op.disabled {
        // Answered, and counted, as a wrong password: a guess must not learn it was right.
        metrics::counter!("operator_logins_total", "result" => "disabled").increment(1);
        tracing::info!(operator = %op.id, "login of a disabled operator");
        return Err(bad_login());
    }
    let answer = match open_session(&state, &op, now).await {
        Ok(answer) => answer,
        Err(problem) => return Err(attempt.taken_back(&state, problem).await),
    };
    if counted {
        state.failed_logins.take_back(now);
    }
    state.attempts.forget_attempts(&failures, None).await?;
    state.attempts.forget_attempts(&all, Some(&id)).await?;
    let known_here = Attempt {
        id: &id,
        at_ms: now,
        window: KNOWN_FOR,
        max: u32::MAX,
    };
    state.attempts.attempt(&known, known_here).await?;
    signed(&state, &op.email, &op.id, "session.open", &addr.0, now).await?;
    metrics::counter!("operator_logins_total", "result" => "ok").increment(1);
    tracing::info!(operator = %op.id, "operator signed in");
    Ok(Json(answer))
}

/// One password attempt's counts: per account and address and account-wide (`keys`, under
/// `id`), and in the process's cap if `process`.
struct Counted<'a> {
    keys: [&'a str; 2],
    id: &'a str,
    process: bool,
    at_ms: i64,
}

impl Counted<'_> {
    /// Takes the attempt back, as one that checked no password or found it right, and answers
    /// `problem` (a take-back that fails is logged: the hot state may be what failed).
    async fn taken_back(&self, state: &OperatorsState, problem: Problem) -> Problem {
        if self.process {
            state.failed_logins.take_back(self.at_ms);
        }
        for key in self.keys {
            if let Err(error) = state.attempts.forget_attempts(key, Some(self.id)).await {
                tracing::warn!(%error, "an attempt that checked no password stays counted");
            }
        }
        problem
    }
}

/// Audits a sign-in or sign-out (`action`) of the operator `id` (`email`) from `addr`: who
/// was signed in when something was done is a question the audit log answers.
async fn signed(
    state: &OperatorsState,
    email: &str,
    id: &str,
    action: &str,
    addr: &str,
    now: i64,
) -> Result<(), Problem> {
    let entry = AuditEntry {
        at_ms: now,
        actor: email.to_owned(),
        action: action.to_owned(),
        target: id.to_owned(),
        before: None,
        after: Some(serde_json::json!({ "address": addr }).to_string()),
    };
    Ok(state.audit.record(&entry).await?)
}

/// Opens a session for `op` at `now`: its token, once; 401 (as a wrong password) if they were
/// disabled, removed or given a new password since `op` was read and its password checked.
async fn open_session(
    state: &OperatorsState,
    op: &OperatorRecord,
    now: i64,
) -> Result<LoginAnswer, Problem> {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let ttl = i64::try_from(state.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires = now.saturating_add(ttl);
    let hash = token_hash(&token);
    let opened = state
        .sessions
        .open_session(&hash, &op.id, &op.password_hash, expires);
    if !opened.await? {
        metrics::counter!("operator_logins_total", "result" => "changed").increment(1);
        tracing::info!(operator = %op.id, "login refused: the operator changed meanwhile");
        return Err(bad_login());
    }
    Ok(LoginAnswer {
        token,
        expires_at: rfc3339(expires),
        operator: OperatorView::from(op),
    })
}

/// The body of `POST /auth/password`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PasswordChange {
    /// The password now.
    #[schema(min_length = 1, max_length = 256)]
    current_password: String,
    /// The new one.
    #[schema(min_length = 12, max_length = 256)]
    new_password: String,
}

/// Changes the signed-in operator's password. Every session of theirs is closed, this one
/// included (a leaked password may have opened one), and a new one is opened for the caller.
#[utoipa::path(
    post, path = "/auth/password", tag = "operators", security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Changed: a new session; every earlier token of theirs no longer works", body = LoginAnswer),
        BadRequest,
        Unauthenticated,
        (status = 403, description = "The current password is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The operator changed meanwhile", body = Problem, content_type = "application/problem+json"),
        TooLarge,
        TooManyRequests,
        (status = 503, description = "Too many passwords are being checked, or a backend is unavailable; retry after Retry-After", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
#[tracing::instrument(skip_all, fields(operator = %op.id, address = %addr.0))]
pub(crate) async fn change_password(
    State(state): State<OperatorsState>,
    addr: ClientAddr,
    op: Operator,
    Json(body): Json<PasswordChange>,
) -> Result<Json<LoginAnswer>, Problem> {
    // Counted and taken back as a login's attempt: run to the end whoever waits.
    liveops_http::uninterrupted(change_password_to_end(state, addr, op, body)).await
}

/// [`change_password`], on a task of its own.
async fn change_password_to_end(
    state: OperatorsState,
    addr: ClientAddr,
    op: Operator,
    body: PasswordChange,
) -> Result<Json<LoginAnswer>, Problem> {
    sent_password(&body.current_password, "currentPassword")?;
    let now = now_ms();
    // Guesses of the current password with a token someone else holds are bounded as a
    // login's are, on the same count.
    let (failures, id) = (failures_key(&op.email, &addr.0), attempt_id());
    let limit = Attempt {
        id: &id,
        at_ms: now,
        window: ACCOUNT_WINDOW,
        max: state.config.max_failures,
    };
    count(&state, &failures, limit, (PER_ACCOUNT, Refused::Left)).await?;
    // And for the account as a whole, as a login's: a token in other hands, used from many
    // addresses, gets no more guesses than logins from them would.
    let (all, known) = (account_key(&op.email), known_key(&op.email, &addr.0));
    if let Err(refused) = count_account_wide(&state, (&all, &known, &id), now).await {
        state.attempts.forget_attempts(&failures, Some(&id)).await?;
        return Err(refused);
    }
    let attempt = Counted {
        keys: [failures.as_str(), all.as_str()],
        id: &id,
        process: false,
        at_ms: now,
    };
    let before = match state.operators.operator(&op.id).await {
        Ok(Some(before)) => before,
        Ok(None) => {
            let gone = Problem::unauthorized("this operator no longer exists");
            return Err(attempt.taken_back(&state, gone).await);
        }
        Err(e) => return Err(attempt.taken_back(&state, e.into()).await),
    };
    let current = Some(before.password_hash.clone());
    let matches = state.hashing.verify(body.current_password, current).await;
    if matches == Ok(false) {
        tracing::info!("password change refused: wrong current password");
        return Err(
            Problem::forbidden("the current password is wrong").with_field("currentPassword")
        );
    }
    // Right, or not checked (no turn at hashing: 503 below): not a failure.
    for key in [&failures, &all] {
        state.attempts.forget_attempts(key, Some(&id)).await?;
    }
    matches?;
    let mut after = before.clone();
    after.password_hash = new_hash(&state.hashing, body.new_password, "newPassword").await?;
    let (store, action) = (state.operators.as_ref(), "operator.password");
    match write_operator(store, &op.email, action, &before, &mut after, now).await? {
        OperatorUpdate::Updated => {}
        OperatorUpdate::ChangedMeanwhile | OperatorUpdate::LastAdmin => {
            return Err(Problem::conflict(
                "changed-meanwhile",
                "the operator changed meanwhile: retry",
            ))
        }
    }
    state.attempts.forget_attempts(&failures, None).await?;
    tracing::info!("operator changed their password");
    Ok(Json(open_session(&state, &after, now).await?))
}

/// Closes the session of the token sent.
#[utoipa::path(
    post, path = "/auth/logout", tag = "operators", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out: the token no longer works"),
        Unauthenticated,
        Unavailable,
    )
)]
#[tracing::instrument(skip_all, fields(operator = %op.id))]
pub(crate) async fn logout(
    State(state): State<OperatorsState>,
    addr: ClientAddr,
    op: Operator,
) -> Result<StatusCode, Problem> {
    // The session closed and its audit row are not parted by a client that goes away.
    liveops_http::uninterrupted(async move {
        state.sessions.close_session(&op.token_hash).await?;
        let now = now_ms();
        signed(&state, &op.email, &op.id, "session.close", &addr.0, now).await?;
        tracing::info!("operator signed out");
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Who the token belongs to.
#[utoipa::path(
    get, path = "/auth/me", tag = "operators", security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in operator", body = OperatorView),
        Unauthenticated,
        Unavailable,
    )
)]
pub(crate) async fn get_current_operator(
    State(state): State<OperatorsState>,
    op: Operator,
) -> Result<Json<OperatorView>, Problem> {
    let record = state
        .operators
        .operator(&op.id)
        .await?
        .ok_or_else(|| Problem::not_found("this operator no longer exists"))?;
    Ok(Json(OperatorView::from(&record)))
}
