//! Operators signing in over HTTP: the failed-login limit and sessions. Real adapters: the SQLite
//! repository and the in-memory hot state (login attempts); the client's address is the
//! connection's, as the server gives it (`TRUSTED_PROXIES=0`), or what a trusted proxy
//! forwarded.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use liveops_core::now_ms;
use liveops_core::ports::{Attempts, Health};
use liveops_core::stores::{
    AuditEntry, AuditLog, OperatorRecord, OperatorStore, OperatorUpdate, Role, Sessions,
};
use liveops_core::{PortError, PortResult};
use liveops_http::{token_hash, OperatorAuth, Problem};
use liveops_memory::MemoryHotState;
use liveops_operators::password::Hashing;
use liveops_operators::{
    create_operator, router, ApiKeyView, AuditList, CreatedApiKey, FailedLogins, LoginAnswer,
    OperatorView, OperatorsConfig, OperatorsState, TrustedProxies, ACCOUNT_WINDOW,
};
use liveops_sql::{Repository, SqliteRepository};
use liveops_testkit::served;
use serde::de::DeserializeOwned;
use serde_json::json;
use tower::ServiceExt;

const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery";
/// `API_KEY_MAX` of the tests.
const MAX_API_KEYS: u32 = 2;
/// Two client addresses.
const A: &str = "198.51.100.7";
const B: &str = "203.0.113.9";

struct TestApp {
    router: Router,
    repo: Arc<SqliteRepository>,
    hot: Arc<MemoryHotState>,
    _dir: tempfile::TempDir,
}

/// The operators' routes over one admin ([`EMAIL`], [`PASSWORD`]), refusing an address's logins
/// to an account after `max_failures` failures.
async fn spawn_app(max_failures: u32) -> TestApp {
    spawn_app_behind(max_failures, TrustedProxies::default()).await
}

/// [`spawn_app`] behind `proxies`.
async fn spawn_app_behind(max_failures: u32, proxies: TrustedProxies) -> TestApp {
    spawn_app_with(max_failures, proxies, Hashing::shared(), |repo| repo).await
}

/// [`spawn_app_behind`], hashing in the turns of `hashing`, its operators read and changed
/// through what `operators` makes of the repository.
async fn spawn_app_with(
    max_failures: u32,
    proxies: TrustedProxies,
    hashing: Arc<Hashing>,
    operators: impl FnOnce(Arc<SqliteRepository>) -> Arc<dyn OperatorStore>,
) -> TestApp {
    let config = OperatorsConfig {
        session_ttl: Duration::from_secs(3600),
        max_per_address: 30,
        max_failures,
        // Out of the way of the limits per address and account these tests are about.
        max_failed_per_minute: 100_000,
        proxies,
        max_api_keys: MAX_API_KEYS,
    };
    spawn_app_config(config, hashing, operators).await
}

/// [`spawn_app_with`] under `config`.
async fn spawn_app_config(
    config: OperatorsConfig,
    hashing: Arc<Hashing>,
    operators: impl FnOnce(Arc<SqliteRepository>) -> Arc<dyn OperatorStore>,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let repo = SqliteRepository::open_migrated(&dir.path().join("liveops.db"))
        .await
        .unwrap();
    let repo = Arc::new(repo);
    let admin = create_operator(
        &*repo,
        &Hashing::shared(),
        EMAIL,
        PASSWORD.into(),
        Role::Admin,
        "test",
    )
    .await;
    assert!(admin.unwrap().is_some());
    let hot = Arc::new(MemoryHotState::new());
    let failed_logins = Arc::new(FailedLogins::new(config.max_failed_per_minute));
    let state = OperatorsState {
        config: Arc::new(config),
        auth: OperatorAuth {
            sessions: repo.clone(),
        },
        operators: operators(repo.clone()),
        sessions: repo.clone(),
        audit: repo.clone(),
        keys: repo.clone(),
        attempts: hot.clone(),
        hashing,
        failed_logins,
        requests: repo.clone(),
    };
    TestApp {
        router: router(state),
        repo,
        hot,
        _dir: dir,
    }
}

/// `POST /auth/login` as `email` with `password`, over a connection from `peer` carrying
/// `forwarded` as its `X-Forwarded-For`.
fn login_request(
    email: &str,
    peer: &str,
    forwarded: Option<&str>,
    password: &str,
) -> Request<Body> {
    let body = json!({"email": email, "password": password}).to_string();
    let mut req = Request::post("/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    if let Some(forwarded) = forwarded {
        req.headers_mut()
            .insert("x-forwarded-for", forwarded.parse().unwrap());
    }
    let peer = SocketAddr::new(peer.parse().unwrap(), 50_000);
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

/// `POST /auth/password` with the bearer `token`, from `current` to `next`, over a connection
/// from `peer`.
fn password_change(token: &str, peer: &str, current: &str, next: &str) -> Request<Body> {
    let body = json!({"currentPassword": current, "newPassword": next});
    let mut req = Request::post("/auth/password")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let peer = SocketAddr::new(peer.parse().unwrap(), 50_000);
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

/// A 2xx answer read as a `T`, or else the problem it was refused with.
fn typed<T: DeserializeOwned>(reply: served::Reply) -> Result<T, Problem> {
    if reply.0.is_success() {
        Ok(served::read(&reply.2))
    } else {
        Err(served::problem(reply))
    }
}

impl TestApp {
    /// A session of the admin opened without a login (no attempt counted); its token.
    async fn session_without_login(&self) -> String {
        let op = self.repo.operator_by_email(EMAIL).await.unwrap().unwrap();
        let token = format!("a session opened by the test {}", now_ms());
        let expires = now_ms() + 60_000;
        let hash = token_hash(&token);
        let opened = self
            .repo
            .open_session(&hash, &op.id, &op.password_hash, expires);
        assert!(opened.await.unwrap());
        token
    }

    /// The attempts counted under `key` in the last [`ACCOUNT_WINDOW`].
    async fn count(&self, key: String) -> u32 {
        let hot = self.hot.clone();
        hot.attempts(&key, now_ms(), ACCOUNT_WINDOW).await.unwrap()
    }

    /// Creates an operator with `email`, [`PASSWORD`] and the operator role, as the CLI does.
    async fn new_operator(&self, email: &str) -> OperatorRecord {
        let hashing = Hashing::shared();
        let made = create_operator(
            &*self.repo,
            &hashing,
            email,
            PASSWORD.into(),
            Role::Operator,
            "test",
        )
        .await;
        made.unwrap().expect("created")
    }

    /// `POST /auth/login` as [`EMAIL`] with `password`, over a connection from `addr`.
    async fn login(&self, addr: &str, password: &str) -> Result<LoginAnswer, Problem> {
        self.login_as(EMAIL, addr, password).await
    }

    /// `POST /auth/login` as `email` with `password`, over a connection from `addr`.
    async fn login_as(
        &self,
        email: &str,
        addr: &str,
        password: &str,
    ) -> Result<LoginAnswer, Problem> {
        self.login_via(email, addr, None, password).await
    }

    /// `POST /auth/login` as `email` with `password`, over a connection from `peer` carrying
    /// `forwarded` as its `X-Forwarded-For`.
    async fn login_via(
        &self,
        email: &str,
        peer: &str,
        forwarded: Option<&str>,
        password: &str,
    ) -> Result<LoginAnswer, Problem> {
        let req = login_request(email, peer, forwarded, password);
        typed(served::call(&self.router, req).await)
    }

    /// The status of a login with `password` from `addr`.
    async fn status(&self, addr: &str, password: &str) -> u16 {
        self.status_via(addr, None, password).await
    }

    /// The status of a login with `password` from `peer` forwarding `forwarded`.
    async fn status_via(&self, peer: &str, forwarded: Option<&str>, password: &str) -> u16 {
        match self.login_via(EMAIL, peer, forwarded, password).await {
            Ok(_) => 200,
            Err(p) => p.status,
        }
    }

    /// `PATCH /operators/{id}` with `change`, as the holder of `token`.
    async fn patch_operator(
        &self,
        token: &str,
        id: &str,
        change: serde_json::Value,
    ) -> Result<OperatorView, Problem> {
        let req = Request::patch(format!("/operators/{id}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(change.to_string()))
            .unwrap();
        typed(served::call(&self.router, req).await)
    }

    /// `GET /auth/me` with `token`.
    async fn me(&self, token: &str) -> Result<OperatorView, Problem> {
        let req = Request::get("/auth/me")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        typed(served::call(&self.router, req).await)
    }
}

/// Failed logins are counted per account and address: past the limit that address's logins to
/// the account are refused (429), the right password included, while the right password from
/// another address still signs in; and the refusals are not counted, so the refusal lifts
/// `ACCOUNT_WINDOW` after the failures.
#[tokio::test]
async fn failures_from_one_address_do_not_lock_the_account_out_elsewhere() {
    let app = spawn_app(3).await;
    for _ in 0..3 {
        assert_eq!(app.status(A, "wrong password!").await, 401);
    }
    assert_eq!(app.status(A, PASSWORD).await, 429, "A is over the limit");
    let signed_in = app.login(B, PASSWORD).await.expect("B is not");
    assert_eq!(signed_in.operator.email, EMAIL);
    assert_eq!(app.me(&signed_in.token).await.unwrap().email, EMAIL);
    assert_eq!(app.status(A, PASSWORD).await, 429, "A still is");
    // The refusals were not counted: A's failures on the account (the hot-state key the login
    // route counts them under) are the three that filled the window, which empties
    // ACCOUNT_WINDOW after them.
    let key = format!("login:account:{EMAIL} {A}");
    let counted = app.hot.attempts(&key, now_ms(), ACCOUNT_WINDOW).await;
    assert_eq!(counted.unwrap(), 3);
}

/// Behind the Application Gateway each client counts under the address it forwarded; a peer
/// outside `TRUSTED_PROXY_CIDRS` (another pod) counts under its own, whatever it forwards, so it
/// cannot spread its guesses over made-up addresses.
#[tokio::test]
async fn only_a_trusted_proxy_names_the_client_s_address() {
    const GATEWAY: &str = "10.40.17.4";
    const POD: &str = "10.40.0.9";
    let proxies = TrustedProxies::new(1, "10.40.17.0/24").unwrap();
    let app = spawn_app_behind(3, proxies).await;
    for i in 0..3 {
        let forged = format!("192.0.2.{i}");
        let status = app.status_via(POD, Some(&forged), "wrong password!").await;
        assert_eq!(status, 401, "{forged}");
    }
    let status = app.status_via(POD, Some("192.0.2.99"), PASSWORD).await;
    assert_eq!(status, 429, "all three counted under the pod's address");
    for _ in 0..3 {
        let status = app.status_via(GATEWAY, Some(A), "wrong password!").await;
        assert_eq!(status, 401);
    }
    let status = app.status_via(GATEWAY, Some(A), PASSWORD).await;
    assert_eq!(status, 429, "A's failures counted under A");
    let b = format!("{B}:51234");
    let status = app.status_via(GATEWAY, Some(&b), PASSWORD).await;
    assert_eq!(
        status, 200,
        "B, through the same gateway, is another client"
    );
}

/// Guessing from many addresses stays bounded: past ten times the per-address limit of failures
/// on one account, its logins are refused from everywhere for `ACCOUNT_WINDOW`; and the
/// addresses of one IPv6 /64 count as one.
#[tokio::test]
async fn failures_from_many_addresses_are_bounded_per_account() {
    let app = spawn_app(2).await;
    // Two failures from each of ten addresses: twenty, the account-wide bound.
    for i in 0..10 {
        let addr = format!("198.51.100.{}", i + 1);
        for _ in 0..2 {
            assert_eq!(app.status(&addr, "wrong password!").await, 401, "{addr}");
        }
    }
    assert_eq!(app.status("203.0.113.9", PASSWORD).await, 429, "bounded");
    let app = spawn_app(2).await;
    // One /64: two failures from one of its addresses are the limit of all of them.
    for _ in 0..2 {
        assert_eq!(app.status("2001:db8:1:2::1", "wrong password!").await, 401);
    }
    assert_eq!(
        app.status("2001:db8:1:2::99", PASSWORD).await,
        429,
        "same /64"
    );
    assert_eq!(
        app.status("2001:db8:1:3::1", PASSWORD).await,
        200,
        "another /64"
    );
}

/// Wrong logins sent at once from many addresses (each within its own limit) stay within the
/// account-wide bound: each is checked against it and counted in one step before its password
/// is, so at most the bound reach the password check (401) and the others are refused (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_logins_at_once_from_many_addresses_stay_within_the_account_wide_bound() {
    const GATEWAY: &str = "10.40.17.4";
    let proxies = TrustedProxies::new(1, "10.40.17.0/24").unwrap();
    // Checks queue behind each other rather than being refused: only the counts are tested.
    let hashing = Arc::new(Hashing::new(4, Duration::from_secs(120)));
    let app = spawn_app_with(2, proxies, hashing, |repo| repo).await;
    // Two guesses from each of 30 addresses, all at once: 60, three times the bound of 20.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let client = format!("198.51.100.{}", i / 2 + 1);
            let req = login_request(EMAIL, GATEWAY, Some(&client), "wrong password!");
            let router = app.router.clone();
            tokio::spawn(async move { served::call(&router, req).await.0.as_u16() })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for task in tasks {
        *statuses.entry(task.await.unwrap()).or_default() += 1;
    }
    let want = std::collections::BTreeMap::from([(401, 20), (429, 40)]);
    assert_eq!(statuses, want, "the bound reached the password check");
    let all = format!("login:account:{EMAIL}");
    let counted = app.hot.attempts(&all, now_ms(), ACCOUNT_WINDOW).await;
    assert_eq!(counted.unwrap(), 20, "only the checked ones counted");
    let fresh = app
        .status_via(GATEWAY, Some("203.0.113.50"), PASSWORD)
        .await;
    assert_eq!(fresh, 429, "bounded for a new address too");
}

/// The repository's operators, with a new password for the operator read by email written
/// right after the first such read: a reset landing while a login checks the password it read.
/// The repository's operators with something done to their reads: a password reset just after
/// the next read by email (once, while `armed`), or, while `down` is set, every read failing as
/// it does with the database away.
#[derive(Default)]
struct Meddled {
    repo: Option<Arc<SqliteRepository>>,
    new_hash: String,
    armed: AtomicBool,
    down: Arc<AtomicBool>,
}

impl Meddled {
    fn repo(&self) -> &SqliteRepository {
        self.repo.as_deref().unwrap()
    }

    /// An error while the database is `down`.
    fn away(&self) -> PortResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PortError::Unavailable("the database is away".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Health for Meddled {
    async fn healthcheck(&self) -> PortResult<()> {
        self.repo().healthcheck().await
    }
}

#[async_trait]
impl OperatorStore for Meddled {
    async fn operator_count(&self) -> PortResult<u64> {
        self.repo().operator_count().await
    }
    async fn create_operator(&self, op: &OperatorRecord, audit: &AuditEntry) -> PortResult<bool> {
        self.repo().create_operator(op, audit).await
    }
    async fn operator_by_email(&self, email: &str) -> PortResult<Option<OperatorRecord>> {
        self.away()?;
        let read = self.repo().operator_by_email(email).await?;
        if let Some(before) = read
            .as_ref()
            .filter(|_| self.armed.swap(false, Ordering::SeqCst))
        {
            let after = OperatorRecord {
                password_hash: self.new_hash.clone(),
                updated_at_ms: before.updated_at_ms + 1,
                ..before.clone()
            };
            let audit = AuditEntry {
                at_ms: now_ms(),
                actor: "admin@example.com".into(),
                action: "operator.update".into(),
                target: before.id.clone(),
                before: None,
                after: None,
            };
            let updated = self.repo().update_operator(before, &after, &audit).await?;
            assert_eq!(updated, OperatorUpdate::Updated);
        }
        Ok(read)
    }
    async fn operator(&self, id: &str) -> PortResult<Option<OperatorRecord>> {
        self.away()?;
        self.repo().operator(id).await
    }
    async fn operators(&self) -> PortResult<Vec<OperatorRecord>> {
        self.repo().operators().await
    }
    async fn update_operator(
        &self,
        before: &OperatorRecord,
        after: &OperatorRecord,
        audit: &AuditEntry,
    ) -> PortResult<OperatorUpdate> {
        self.repo().update_operator(before, after, audit).await
    }
}

/// A login whose password was reset between its read of the operator and its session (an
/// admin's reset, or the owner's change, while argon2 checked the old one) gets no session:
/// it is answered as a wrong password, and only the new password signs in.
#[tokio::test]
async fn a_login_racing_a_password_reset_gets_no_session() {
    let new = "reset by the admin 1";
    let new_hash = Hashing::shared().hash(new.into()).await.unwrap();
    let armed = AtomicBool::new(true);
    let reset = |repo| -> Arc<dyn OperatorStore> {
        Arc::new(Meddled {
            repo: Some(repo),
            new_hash,
            armed,
            ..Meddled::default()
        })
    };
    let app = spawn_app_with(10, TrustedProxies::default(), Hashing::shared(), reset).await;
    let raced = app.login(A, PASSWORD).await.unwrap_err();
    let wrong = app.login(B, "wrong password!").await.unwrap_err();
    assert_eq!((raced.status, &raced.kind), (401, &wrong.kind));
    assert_eq!(
        raced.detail, wrong.detail,
        "told apart from a wrong password"
    );
    let audit = app.repo.audit(None, 100).await.unwrap();
    assert!(
        audit.iter().all(|l| l.entry.action != "session.open"),
        "no session opened"
    );
    assert_eq!(app.status(A, PASSWORD).await, 401, "the old password");
    assert_eq!(app.status(A, new).await, 200, "the new one");
}

/// Logins and password changes that fail on the database checked no password: they are not
/// failures, so after more of them than the failure bound the right password still signs in.
#[tokio::test]
async fn logins_the_database_fails_are_not_counted_as_failures() {
    let down = Arc::new(AtomicBool::new(true));
    let away = down.clone();
    let meddled = |repo| -> Arc<dyn OperatorStore> {
        Arc::new(Meddled {
            repo: Some(repo),
            down: away,
            ..Meddled::default()
        })
    };
    let app = spawn_app_with(3, TrustedProxies::default(), Hashing::shared(), meddled).await;
    for _ in 0..5 {
        let away = app.login(A, PASSWORD).await.unwrap_err();
        assert_eq!(away.status, 503, "{away:?}");
    }
    let token = app.session_without_login().await;
    for _ in 0..5 {
        let req = password_change(&token, A, PASSWORD, "a much better passphrase");
        let away = served::problem(served::call(&app.router, req).await);
        assert_eq!(away.status, 503, "{away:?}");
    }
    assert_eq!(app.count(format!("login:account:{EMAIL} {A}")).await, 0);
    assert_eq!(app.count(format!("login:account:{EMAIL}")).await, 0);
    down.store(false, Ordering::SeqCst);
    assert_eq!(app.status(A, PASSWORD).await, 200, "the database is back");
}

/// With no turn at hashing free (here: none at all), a login or a password change waits its
/// wait and is answered 503 with a problem, and the failed-login counts are left as they were:
/// nothing was checked.
#[tokio::test]
async fn checks_past_the_hashing_bound_are_answered_503_and_not_counted() {
    let hashing = Arc::new(Hashing::new(0, Duration::from_millis(20)));
    let app = spawn_app_with(10, TrustedProxies::default(), hashing, |repo| repo).await;
    for _ in 0..3 {
        let busy = app.login(A, PASSWORD).await.unwrap_err();
        assert_eq!(busy.status, 503, "{busy:?}");
    }
    assert_eq!(app.count(format!("login:account:{EMAIL} {A}")).await, 0);
    assert_eq!(app.count(format!("login:account:{EMAIL}")).await, 0);
    let token = app.session_without_login().await;
    let req = password_change(&token, A, PASSWORD, "a much better passphrase");
    let busy = served::problem(served::call(&app.router, req).await);
    assert_eq!(busy.status, 503, "{busy:?}");
    assert_eq!(app.count(format!("login:account:{EMAIL} {A}")).await, 0);
    assert_eq!(
        app.me(&token).await.unwrap().email,
        EMAIL,
        "nothing changed"
    );
}

/// A client that goes away while its login or password change waits for a turn at hashing
/// leaves no attempt counted: the request runs on to its end without it (here: no turn comes,
/// so nothing was checked, and the attempt is taken back).
#[tokio::test]
async fn a_check_given_up_while_it_waits_for_hashing_leaves_nothing_counted() {
    let hashing = Arc::new(Hashing::new(0, Duration::from_millis(300)));
    let app = spawn_app_with(10, TrustedProxies::default(), hashing, |repo| repo).await;
    let token = app.session_without_login().await;
    let gone_after = Duration::from_millis(60);
    for _ in 0..2 {
        let req = login_request(EMAIL, A, None, PASSWORD);
        let given_up = tokio::time::timeout(gone_after, served::call(&app.router, req)).await;
        assert!(given_up.is_err(), "the login still waited for a turn");
    }
    let req = password_change(&token, A, PASSWORD, "a much better passphrase");
    let given_up = tokio::time::timeout(gone_after, served::call(&app.router, req)).await;
    assert!(given_up.is_err(), "the change still waited for a turn");
    let here = format!("login:account:{EMAIL} {A}");
    assert_eq!(app.count(here.clone()).await, 3, "counted while they wait");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(app.count(here).await, 0);
    assert_eq!(app.count(format!("login:account:{EMAIL}")).await, 0);
}

/// Past the account-wide bound, an address the operator signed in from lately still signs in:
/// guesses from many addresses (a /56 holds 256 /64s) lock out only the addresses it has not
/// used.
#[tokio::test]
async fn the_owner_s_own_address_signs_in_past_the_account_wide_bound() {
    let app = spawn_app(2).await;
    assert_eq!(app.status(A, PASSWORD).await, 200, "the owner, from A");
    for i in 0..10 {
        let addr = format!("2001:db8:1:{i:x}::1");
        for _ in 0..2 {
            assert_eq!(app.status(&addr, "wrong password!").await, 401, "{addr}");
        }
    }
    assert_eq!(app.status(B, PASSWORD).await, 429, "an address never used");
    assert_eq!(app.status(A, PASSWORD).await, 200, "the owner's");
    // Its own failures are still bounded there.
    for _ in 0..2 {
        assert_eq!(app.status(A, "wrong password!").await, 401);
    }
    assert_eq!(app.status(A, PASSWORD).await, 429, "A over its own limit");
}

/// Past the failed logins the whole process takes per minute, a login from anywhere (a /64
/// never seen, a known account from an address it never used) is refused 429 with Retry-After
/// before its password is hashed, and the refusals are not counted; the owner's own address
/// still signs in, and a right password takes its place back.
#[tokio::test]
async fn failures_spread_over_many_64s_are_bounded_for_the_whole_process() {
    let config = OperatorsConfig {
        session_ttl: Duration::from_secs(3600),
        max_per_address: 30,
        max_failures: 10,
        max_failed_per_minute: 5,
        proxies: TrustedProxies::default(),
        max_api_keys: MAX_API_KEYS,
    };
    let app = spawn_app_config(config, Hashing::shared(), |repo| repo).await;
    assert_eq!(app.status(A, PASSWORD).await, 200, "the owner, from A");
    assert_eq!(
        app.status(B, PASSWORD).await,
        200,
        "a right password is no failure"
    );
    // Five guesses, each from a /64 of its own (one per address limit untouched).
    for i in 0..5 {
        let addr = format!("2001:db8:{i:x}::1");
        assert_eq!(app.status(&addr, "wrong password!").await, 401, "{addr}");
    }
    for i in 5..10 {
        let addr = format!("2001:db8:{i:x}::1");
        let req = login_request(EMAIL, &addr, None, "wrong password!");
        let res = app.router.clone().oneshot(req).await.unwrap();
        let wait: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
        let status = res.status();
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = serde_json::from_slice(&body).unwrap();
        let refused = served::problem((status, content_type, body));
        assert_eq!(refused.status, 429, "{addr}");
        let detail = refused.detail.unwrap_or_default();
        assert!(detail.contains("on this server"), "{detail}");
    }
    assert_eq!(
        app.status("203.0.113.50", PASSWORD).await,
        429,
        "an address never used"
    );
    // The owner's addresses still sign in, and fail like any address (counted past the bound).
    assert_eq!(app.status(A, PASSWORD).await, 200, "the owner's");
    assert_eq!(
        app.status(B, "wrong password!").await,
        401,
        "checked, from a known address"
    );
    assert_eq!(app.status(B, PASSWORD).await, 200);
}

/// A disabled operator's login is answered as a wrong password's, whether the password is
/// right or not, and their token stopped working when they were disabled.
#[tokio::test]
async fn a_disabled_operator_s_right_password_is_not_told_apart() {
    let app = spawn_app(10).await;
    let admin = app.login(A, PASSWORD).await.unwrap();
    let email = "former@example.com";
    let former = app.new_operator(email).await;
    let session = app.login_as(email, B, PASSWORD).await.unwrap();
    let change = json!({"disabled": true});
    let disabled = app.patch_operator(&admin.token, &former.id, change).await;
    let disabled = disabled.unwrap();
    assert!(disabled.disabled);
    assert_eq!(app.me(&session.token).await.unwrap_err().status, 401);
    let right = app.login_as(email, B, PASSWORD).await.unwrap_err();
    let wrong = app.login_as(email, B, "wrong password!").await.unwrap_err();
    assert_eq!((right.status, &right.kind), (wrong.status, &wrong.kind));
    assert_eq!((right.status, right.detail), (401, wrong.detail));
}

/// An operator changes their own password: the wrong current one is refused; then every
/// earlier token of theirs stops working, the answer's new one works, and only the new password
/// signs in. An admin sets a new one for an operator who lost theirs, closing their sessions.
#[tokio::test]
async fn passwords_are_changed_by_their_owner_or_reset_by_an_admin() {
    let app = spawn_app(10).await;
    let first = app.login(A, PASSWORD).await.unwrap();
    let second = app.login(B, PASSWORD).await.unwrap();
    let new = "a much better passphrase";
    let change = |token: String, current: &str, next: &str| {
        let req = password_change(&token, A, current, next);
        let router = app.router.clone();
        async move { typed::<LoginAnswer>(served::call(&router, req).await) }
    };
    let wrong = change(first.token.clone(), "not the password", new).await;
    assert_eq!(wrong.unwrap_err().status, 403);
    // Longer than any password set: refused as out of its bounds, not checked.
    let long = change(first.token.clone(), &"x".repeat(257), new).await;
    let long = long.unwrap_err();
    assert_eq!(
        (long.status, long.field.as_deref()),
        (400, Some("currentPassword"))
    );
    let short = change(first.token.clone(), PASSWORD, "short")
        .await
        .unwrap_err();
    assert_eq!(
        (short.status, short.field.as_deref()),
        (400, Some("newPassword"))
    );
    let changed = change(first.token.clone(), PASSWORD, new).await.unwrap();
    for old in [&first.token, &second.token] {
        assert_eq!(app.me(old).await.unwrap_err().status, 401, "closed");
    }
    assert_eq!(app.me(&changed.token).await.unwrap().email, EMAIL);
    assert_eq!(app.status(B, PASSWORD).await, 401, "the old password");
    assert_eq!(app.status(B, new).await, 200, "the new one");

    let email = "forgetful@example.com";
    let forgetful = app.new_operator(email).await;
    let theirs = app.login_as(email, B, PASSWORD).await.unwrap();
    let reset = json!({"password": "set by the admin 1"});
    let reset = app
        .patch_operator(&changed.token, &forgetful.id, reset)
        .await;
    reset.unwrap();
    assert_eq!(app.me(&theirs.token).await.unwrap_err().status, 401);
    assert_eq!(
        app.login_as(email, B, PASSWORD).await.unwrap_err().status,
        401
    );
    assert!(app.login_as(email, B, "set by the admin 1").await.is_ok());
    let audit = app.repo.audit(None, 100).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|l| l.entry.action.as_str()).collect();
    for action in [
        "operator.password",
        "operator.password_reset",
        "session.open",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(
        audit.iter().all(|e| !format!("{e:?}").contains("argon2")),
        "no hash audited"
    );
    // Sign-ins are audited, with the address: the latest is the forgetful operator's.
    let signed_in = &audit
        .iter()
        .find(|l| l.entry.action == "session.open")
        .unwrap()
        .entry;
    assert_eq!(signed_in.actor, email);
    assert!(signed_in.after.as_deref().unwrap_or_default().contains(B));
}

/// Guesses of the current password with a session token (one someone else holds, used from
/// many addresses) are bounded for the account as a whole, as logins are: past the account-wide
/// bound only an address the operator signed in from lately may try, its right password still
/// changes it, and a login from elsewhere is refused on the same count.
#[tokio::test]
async fn password_change_guesses_from_many_addresses_are_bounded_per_account() {
    let app = spawn_app(2).await;
    let token = app.login(A, PASSWORD).await.unwrap().token;
    let change = |addr: &str, current: &str| {
        let req = password_change(&token, addr, current, "a much better passphrase");
        let router = app.router.clone();
        async move {
            match typed::<LoginAnswer>(served::call(&router, req).await) {
                Ok(_) => 200,
                Err(p) => p.status,
            }
        }
    };
    // Two wrong guesses from each of ten addresses: twenty, the account-wide bound.
    for i in 0..10 {
        let addr = format!("192.0.2.{}", i + 1);
        for _ in 0..2 {
            assert_eq!(change(&addr, "not the password").await, 403, "{addr}");
        }
    }
    assert_eq!(change("192.0.2.200", PASSWORD).await, 429, "bounded");
    assert_eq!(app.status("192.0.2.201", PASSWORD).await, 429, "logins too");
    assert_eq!(change(A, PASSWORD).await, 200, "the owner's address");
}

/// A login whose email or password lies outside the bounds the OpenAPI document declares (an
/// email of 3 to 254 characters, a password of 1 to 256) is refused 400 naming the field, as
/// any other malformed body; within them, a wrong password is 401 and the right one signs in.
#[tokio::test]
async fn logins_out_of_their_declared_bounds_are_refused_as_malformed() {
    let app = spawn_app(10).await;
    let (at_most, past) = ("p".repeat(256), "p".repeat(257));
    let long_email = format!("{}@example.com", "a".repeat(243));
    for (email, password, field) in [
        (EMAIL, past.as_str(), "password"),
        (EMAIL, "", "password"),
        ("a@", PASSWORD, "email"),
        (long_email.as_str(), PASSWORD, "email"),
    ] {
        let refused = app.login_as(email, A, password).await.unwrap_err();
        assert_eq!(
            (refused.status, refused.field.as_deref()),
            (400, Some(field)),
            "{email} / {} characters",
            password.len()
        );
    }
    assert_eq!(app.status(A, &at_most).await, 401);
    assert_eq!(app.status(A, "x").await, 401);
    assert!(app.login(A, PASSWORD).await.is_ok());
}

/// The repository's periodic purge deletes the sessions whose expiry has passed, by the time it
/// runs rather than the retention cutoff it is given, and leaves current ones signed in.
#[tokio::test]
async fn the_purge_deletes_expired_sessions_and_keeps_current_ones() {
    let app = spawn_app(10).await;
    let current = app.login(A, PASSWORD).await.unwrap();
    let expired = "an-expired-session-token";
    let just_now = now_ms() - 1;
    let hash = app
        .repo
        .operator_by_email(EMAIL)
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    let opened = app
        .repo
        .open_session(&token_hash(expired), &current.operator.id, &hash, just_now)
        .await;
    assert!(opened.unwrap());
    assert_eq!(app.me(expired).await.unwrap_err().status, 401);

    // A week's retention: the session expired long after the cutoff, and still goes.
    let cutoff = now_ms() - 7 * 86_400_000;
    let round = liveops_core::stores::PurgeRound::walking(now_ms());
    Repository::purge_before(&*app.repo, cutoff, round)
        .await
        .unwrap();
    assert_eq!(app.repo.session(&token_hash(expired)).await.unwrap(), None);
    let kept = app.repo.session(&token_hash(&current.token)).await.unwrap();
    assert!(kept.is_some(), "the current session stays");
    assert_eq!(app.me(&current.token).await.unwrap().email, EMAIL);
}

/// The audit log pages: newest first, each entry once, down to the first; a page of big
/// entries (an `inbox.send` names up to 1000 recipients) ends at 4 MiB with a cursor, not at
/// the thousand asked for; a cursor no page gave is a 400 problem.
#[tokio::test]
async fn the_audit_log_pages_newest_first_within_its_size() {
    let app = spawn_app(5).await;
    let token = app.login(A, PASSWORD).await.unwrap().token;
    let big = format!("{{\"recipients\":\"{}\"}}", "p".repeat(130_000));
    for i in 0..60 {
        let entry = liveops_core::stores::AuditEntry {
            at_ms: now_ms(),
            actor: EMAIL.into(),
            action: "inbox.send".into(),
            target: format!("batch_{i:02}"),
            before: None,
            after: Some(big.clone()),
        };
        app.repo.record(&entry).await.unwrap();
    }
    let page = |query: String| {
        let req = Request::get(format!("/audit?{query}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let router = app.router.clone();
        async move { typed::<AuditList>(served::call(&router, req).await) }
    };
    let first = page("limit=1000".into()).await.unwrap();
    // 4 MiB of entries, and the one that passed it.
    assert_eq!(first.entries.len(), 33, "{}", first.entries.len());
    assert_eq!(first.entries[0].target, "batch_59", "newest first");
    let mut targets: Vec<String> = first.entries.iter().map(|e| e.target.clone()).collect();
    let mut cursor = first.next_cursor;
    while let Some(c) = cursor {
        let next = page(format!("limit=10&cursor={c}")).await.unwrap();
        assert!(next.entries.len() <= 10);
        targets.extend(next.entries.iter().map(|e| e.target.clone()));
        cursor = next.next_cursor;
    }
    let batches: Vec<&String> = targets.iter().filter(|t| t.starts_with("batch_")).collect();
    let want: Vec<String> = (0..60).rev().map(|i| format!("batch_{i:02}")).collect();
    assert_eq!(
        batches,
        want.iter().collect::<Vec<_>>(),
        "each once, newest first"
    );
    for bad in [
        "cursor=12",
        "cursor=x:audit",
        "limit=0",
        "limit=1001",
        "before=3",
    ] {
        let refused = page(bad.into()).await.unwrap_err();
        assert_eq!(refused.status, 400, "{bad}");
    }
}

/// `POST /api-keys` named `name`, under `idempotency_key` if any, as the holder of `token`.
async fn create_api_key(
    app: &TestApp,
    token: &str,
    name: &str,
    idempotency_key: Option<&str>,
) -> served::Reply {
    let body = json!({ "name": name });
    let req = served::bearer_post("/api-keys", token, idempotency_key, &body);
    served::call(&app.router, req).await
}

/// `GET /api-keys` as the holder of `token`: the listed keys' ids, active ones and revoked ones,
/// each sorted (keys created in the same millisecond are listed in no set order).
async fn listed_api_keys(app: &TestApp, token: &str) -> (Vec<String>, Vec<String>) {
    let req = Request::get("/api-keys")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = served::call(&app.router, req).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<ApiKeyView> = served::read(&body["keys"]);
    let (active, revoked): (Vec<ApiKeyView>, Vec<ApiKeyView>) =
        keys.into_iter().partition(|k| k.active);
    let ids = |keys: Vec<ApiKeyView>| {
        let mut ids: Vec<String> = keys.into_iter().map(|k| k.key_id).collect();
        ids.sort();
        ids
    };
    (ids(active), ids(revoked))
}

/// `DELETE /api-keys/{id}` as the holder of `token`, which must revoke it.
async fn revoke_api_key(app: &TestApp, token: &str, id: &str) {
    let req = Request::delete(format!("/api-keys/{id}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = served::call(&app.router, req).await;
    assert_eq!(status, 200, "{body}");
}

/// The id of the key a `POST /api-keys` answer created (201).
fn created_key(reply: served::Reply) -> String {
    assert_eq!(reply.0, 201, "{}", reply.2);
    served::read::<CreatedApiKey>(&reply.2).key_id
}

/// At most `API_KEY_MAX` keys are active: one more is refused 409 `api-key-limit-reached`
/// naming the setting, and nothing is created (its `Idempotency-Key` is left for a retry once a
/// key is revoked); a retry of a create that stands is answered at the cap; revoked keys do not
/// count, and the listing holds the active keys and the `API_KEY_MAX` most recently revoked.
#[tokio::test]
async fn api_keys_past_api_key_max_are_refused_until_one_is_revoked() {
    let app = spawn_app(10).await;
    let token = app.login(A, PASSWORD).await.unwrap().token;
    let first = created_key(create_api_key(&app, &token, "eu-1", None).await);
    let second = create_api_key(&app, &token, "eu-2", Some("second")).await;
    let second_body = second.2.clone();
    let second = created_key(second);

    let refused = served::problem(create_api_key(&app, &token, "eu-3", Some("third")).await);
    assert_eq!(refused.status, 409);
    assert_eq!(refused.kind, "/problems/api-key-limit-reached");
    let detail = refused.detail.unwrap_or_default();
    assert!(detail.contains("API_KEY_MAX"), "{detail}");
    assert!(detail.contains(&MAX_API_KEYS.to_string()), "{detail}");
    let (active, _) = listed_api_keys(&app, &token).await;
    assert_eq!(active, sorted([&first, &second]), "nothing created");
    let again = create_api_key(&app, &token, "eu-2", Some("second")).await;
    assert_eq!(
        (again.0.as_u16(), &again.2),
        (201, &second_body),
        "the retry"
    );

    // A revoked key does not count: the refused create, retried under its key, goes through.
    revoke_api_key(&app, &token, &first).await;
    // Revoked a millisecond or more before the others, so it is the least recent of them.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let third = created_key(create_api_key(&app, &token, "eu-3", Some("third")).await);
    // Revoked: first, second, third; active: two more. Listed: those two, and the two most
    // recently revoked.
    revoke_api_key(&app, &token, &second).await;
    revoke_api_key(&app, &token, &third).await;
    let fourth = created_key(create_api_key(&app, &token, "eu-4", None).await);
    let fifth = created_key(create_api_key(&app, &token, "eu-5", None).await);
    let (active, revoked) = listed_api_keys(&app, &token).await;
    assert_eq!(active, sorted([&fourth, &fifth]));
    assert_eq!(
        revoked,
        sorted([&second, &third]),
        "first is only in the audit log now"
    );
}

/// `ids`, sorted.
fn sorted<const N: usize>(ids: [&String; N]) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().cloned().collect();
    ids.sort();
    ids
}
