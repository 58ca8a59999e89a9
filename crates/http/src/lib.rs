//! The HTTP edge every LiveOps service shares, written once: [`Problem`] answers (RFC 9457),
//! signed requests ([`Signed`]), typed paths and queries whose rejections are problems and whose
//! bounds are in the OpenAPI document ([`Path`], [`Query`], [`PlayerPath`]), request bodies under
//! a limit ([`read_body`], [`body_limit`]), page cursors ([`parse_cursor`]), routes and their OpenAPI from one list
//! ([`OpenApiRouter`], [`routes!`]), operators' bearer tokens and roles ([`Operator`], [`Authorized`],
//! [`Reader`], [`BearerScheme`]), a campaign or 404 ([`campaign_or_404`]), and the request
//! metrics layer ([`track`]), and log lines written per request at most once a period
//! ([`Throttled`]), and work a disconnect must not cut short ([`uninterrupted`]).

mod api;
mod auth;
mod body;
mod cursor;
mod detach;
mod extract;
mod idempotency;
mod lookup;
mod metrics_layer;
mod problem;
pub mod responses;
mod signed;
mod text;

pub use api::{add_keyword, close_variants, operator_routes, service_routes};
pub use auth::{
    token_hash, Admins, Authorized, BearerScheme, Operator, OperatorAuth, Reader, Readers, Roles,
    Unauthenticated, Writers, BEARER,
};
pub use body::{body_limit, caused_by, read_body, BodyLimit, BodyTimedOut};
pub use cursor::{
    next_cursor, next_inbox_cursor, parse_cursor, parse_inbox_cursor, CURSOR_PATTERN,
    INBOX_CURSOR_PATTERN,
};
pub use detach::uninterrupted;
pub use extract::{
    check_id, id_param, id_schema, parse_json, path_id, path_param, player_id_schema, Bounded,
    IdPath, Json, Path, PlayerPath, Query,
};
pub use idempotency::{
    created, first_answer, idempotency_key, keyed, replay, replay_if_there, replayed,
    CreateKeyHeader, KeyedJson, IDEMPOTENCY_KEY, REPLAYED,
};
pub use liveops_core::time::{rfc3339, rfc3339_or_never};
pub use liveops_core::Throttled;
pub use lookup::campaign_or_404;
pub use metrics_layer::{catch_panics, count_forwarded, count_unmatched, track, PanicAnswer};
pub use problem::Problem;
pub use signed::{header, Signature, SignatureCheck, SignatureHeaders, Signed};
pub use text::{Text, Title};
/// A service's routes and their OpenAPI operations, from one list of handlers: each route's path
/// and method are written once, in its `#[utoipa::path]`.
pub use utoipa_axum::{router::OpenApiRouter, routes};

#[doc(hidden)]
pub use axum::extract::FromRef;

/// What the crate's macros name in the code they write.
#[doc(hidden)]
pub mod __private {
    pub use axum::extract::FromRequestParts;
    pub use axum::http::request::Parts;
    pub use utoipa::openapi::path::{Parameter, ParameterIn};
    pub use utoipa::IntoParams;
}

/// Lets handlers take parts of a module's state as their own (`State<OperatorAuth>` over a
/// `CampaignsState`): `from_state!(CampaignsState { auth: OperatorAuth })` clones the field.
#[macro_export]
macro_rules! from_state {
    ($state:ty { $($field:ident: $part:ty),+ $(,)? }) => {$(
        impl $crate::FromRef<$state> for $part {
            fn from_ref(state: &$state) -> Self {
                state.$field.clone()
            }
        }
    )+};
}
