//! Operators on the HTTP edge: `Authorization: Bearer <token>` checked against the open sessions
//! ([`Operator`]), role checks ([`Operator::require`]), routes that stay open until the first
//! operator exists ([`Reader`]), and the bearer scheme in the OpenAPI document
//! ([`BearerScheme`]).

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use liveops_core::now_ms;
use liveops_core::stores::{AuditEntry, Role, Sessions};
use sha2::{Digest, Sha256};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::Modify;

use crate::Problem;

/// The name of the bearer scheme in the OpenAPI document (`security(("bearer" = []))`).
pub const BEARER: &str = "bearer";

/// What bearer tokens are checked against: the open sessions.
#[derive(Clone)]
pub struct OperatorAuth {
    /// Open sessions, by the SHA-256 of their token.
    pub sessions: Arc<dyn Sessions>,
}

impl std::fmt::Debug for OperatorAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorAuth").finish_non_exhaustive()
    }
}

/// How a token is stored: `hex(SHA-256(token))`, so a leaked table opens no session.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The signed-in operator making a request. Extracting it answers 401 (with
/// `WWW-Authenticate: Bearer`) for a missing, unknown, expired or disabled operator's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// Their id.
    pub id: String,
    /// Their email (the actor in the audit log).
    pub email: String,
    /// Their role.
    pub role: Role,
    /// The token's hash (logout closes this session).
    pub token_hash: String,
}

impl Operator {
    /// `Ok` if their role is one of `roles`; a 403 problem naming the roles otherwise.
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(Problem::forbidden(format!(
            "this needs the role {}; {} has {}",
            names.join(" or "),
            self.email,
            self.role.as_str()
        )))
    }

    /// The audit-log entry of this operator's `action` on `target` at `at_ms`, with the
    /// target's state (JSON) `before` and `after` it, `None` where there was none.
    pub fn audit(
        &self,
        at_ms: i64,
        action: &str,
        target: impl Into<String>,
        before: Option<String>,
        after: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            at_ms,
            actor: self.email.clone(),
            action: action.to_owned(),
            target: target.into(),
            before,
            after,
        }
    }
}

/// A 401 answer with the bearer challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unauthenticated(pub Problem);

impl Unauthenticated {
    fn new(detail: &str) -> Self {
        Self(Problem::new(
            401,
            "unauthenticated",
            "Authentication required",
            detail,
        ))
    }
}

impl From<Problem> for Unauthenticated {
    fn from(p: Problem) -> Self {
        Self(p)
    }
}

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let challenge = self.0.status == 401;
        let mut res = self.0.into_response();
        if challenge {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer(parts: &Parts) -> Result<Option<&str>, Unauthenticated> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Unauthenticated::new("Authorization is not visible ASCII"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(Unauthenticated::new(
            "Authorization must be `Bearer <token>`",
        )),
    }
}

impl OperatorAuth {
    /// The operator whose token this is, if it is open, unexpired and theirs is enabled.
    pub async fn operator(&self, token: &str) -> Result<Operator, Unauthenticated> {
        let hash = token_hash(token);
        let session = self
            .sessions
            .session(&hash)
            .await
            .map_err(Problem::from)?
            .ok_or_else(|| Unauthenticated::new("unknown or closed session: log in again"))?;
        if session.expires_at_ms <= now_ms() {
            return Err(Unauthenticated::new("the session expired: log in again"));
        }
        if session.disabled {
            return Err(Unauthenticated::new("this operator is disabled"));
        }
        Ok(Operator {
            id: session.operator_id,
            email: session.email,
            role: session.role,
            token_hash: hash,
        })
    }
}

/// The roles a route admits, as a type: checked as the request's head is read, before its body,
/// so a role the route refuses is a 403 whatever the body holds (not a 400 for its mistakes).
pub trait Roles: Send + Sync + 'static {
    /// The roles admitted.
    const ALLOWED: &'static [Role];
}

/// Admins only.
#[derive(Debug)]
pub struct Admins;
/// Admins and operators: who change campaigns, messages, webhooks and blocks.
#[derive(Debug)]
pub struct Writers;
/// Every role: who reads.
#[derive(Debug)]
pub struct Readers;

impl Roles for Admins {
    const ALLOWED: &'static [Role] = &[Role::Admin];
}
impl Roles for Writers {
    const ALLOWED: &'static [Role] = &[Role::Admin, Role::Operator];
}
impl Roles for Readers {
    const ALLOWED: &'static [Role] = &Role::ALL;
}

/// A signed-in operator whose role `R` admits ([`Operator::require`]'s 403 otherwise).
#[derive(Debug)]
pub struct Authorized<R>(pub Operator, PhantomData<R>);

impl<R> std::ops::Deref for Authorized<R> {
    type Target = Operator;

    fn deref(&self) -> &Operator {
        &self.0
    }
}

impl<S: Send + Sync, R: Roles> FromRequestParts<S> for Authorized<R>
where
    OperatorAuth: FromRef<S>,
{
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let op = Operator::from_request_parts(parts, state).await?;
        op.require(R::ALLOWED)?;
        Ok(Self(op, PhantomData))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Operator
where
    OperatorAuth: FromRef<S>,
{
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?.ok_or_else(|| {
            Unauthenticated::new(
                "this route needs `Authorization: Bearer <token>` (POST /auth/login)",
            )
        })?;
        OperatorAuth::from_ref(state).operator(token).await
    }
}

/// Who reads an operator-facing view that was open before operators existed: anyone while no
/// operator exists (`None`), then only a signed-in operator (any role), like [`Operator`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reader(pub Option<Operator>);

impl<S: Send + Sync> FromRequestParts<S> for Reader
where
    OperatorAuth: FromRef<S>,
{
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = OperatorAuth::from_ref(state);
        match bearer(parts)? {
            Some(token) => Ok(Reader(Some(auth.operator(token).await?))),
            None if auth.sessions.any_operator().await.map_err(Problem::from)? => {
                Err(Unauthenticated::new(
                    "operators exist: this route needs `Authorization: Bearer <token>`",
                ))
            }
            None => Ok(Reader(None)),
        }
    }
}

/// Adds the `bearer` security scheme (`Authorization: Bearer <token>` from `POST /auth/login`)
/// to an OpenAPI document; routes that need it say `security(("bearer" = []))`.
#[derive(Debug)]
pub struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("opaque")
                    .description(Some(
                        "An operator's session token from POST /auth/login (12 h by default).",
                    ))
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_as_their_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_outside_the_list_are_403() {
        let op = Operator {
            id: "op_1".into(),
            email: "v@example.com".into(),
            role: Role::Viewer,
            token_hash: String::new(),
        };
        assert!(op.require(&[Role::Viewer, Role::Admin]).is_ok());
        let p = op.require(&[Role::Admin]).expect_err("viewer is not admin");
        assert_eq!(p.status, 403);
    }

    #[test]
    fn only_bearer_authorization_is_read() {
        let parts = |v: &str| {
            let (parts, ()) = axum::http::Request::builder()
                .header("authorization", v)
                .body(())
                .expect("request")
                .into_parts();
            parts
        };
        assert_eq!(bearer(&parts("Bearer abc")).ok().flatten(), Some("abc"));
        assert_eq!(bearer(&parts("bearer  abc ")).ok().flatten(), Some("abc"));
        assert!(bearer(&parts("Basic abc")).is_err());
        assert!(bearer(&parts("Bearer ")).is_err());
    }
}
