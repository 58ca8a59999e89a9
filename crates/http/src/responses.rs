//! The problem answers routes document, one type per status, so a route lists what it may answer
//! (`responses((status = 200, body = X), BadRequest, Unavailable)`) without spelling each out.

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::IntoResponses;

/// A problem answer with `status`, described by `description`.
fn problem(status: u16, description: &str) -> BTreeMap<String, RefOr<Response>> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", content)
        .build();
    BTreeMap::from([(status.to_string(), RefOr::T(response))])
}

macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident = $status:literal, $description:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problem($status, $description)
            }
        }
    )*};
}

problem_responses! {
    /// 400: malformed or out-of-range input; the problem's `field` names it.
    BadRequest = 400, "Malformed or out-of-range input; `field` names it";
    /// 401: a missing, bad or stale signature.
    Unauthorized = 401, "Missing, bad or stale signature";
    /// 401: an operator route without a valid bearer token (missing, expired or revoked).
    Unauthenticated = 401, "Missing, expired or revoked bearer token";
    /// 403: refused for who is asking (a blocked player, a role that may not).
    Forbidden = 403, "Refused: the player is blocked, or the caller may not do this";
    /// 404: no such resource.
    NotFound = 404, "No such resource";
    /// 409: the request conflicts with the resource's state.
    Conflict = 409, "Conflicts with the current state";
    /// 413: the body is over the route's limit.
    TooLarge = 413, "Body over the route's limit";
    /// 422: an `Idempotency-Key` reused with another body.
    KeyReused = 422, "Idempotency-Key reused with another body";
    /// 422: a well-formed body that contradicts the path (another player, campaign or message).
    PathContradicted = 422, "The body names another resource than the path (`path-mismatch`); `field` names it";
    /// 429: the player is over the rate limit; see `Retry-After`.
    TooManyRequests = 429, "Over the rate limit; see Retry-After";
    /// 503: a backend is unavailable; retry.
    Unavailable = 503, "A backend is unavailable; retry";
}

macro_rules! problem_sets {
    ($($(#[$doc:meta])* $name:ident = [$($part:ident),+];)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                let mut all = BTreeMap::new();
                $(all.extend($part::responses());)+
                all
            }
        }
    )*};
}

problem_sets! {
    /// What any read may answer besides its 200: bad input (400) or a backend down (503).
    ReadFailures = [BadRequest, Unavailable];
    /// A read of one resource: bad input (400), no such resource (404), a backend down (503).
    LookupFailures = [BadRequest, NotFound, Unavailable];
    /// What any operator route may answer besides its 2xx: no valid token (401), a role that may
    /// not (403), a backend down (503).
    OperatorFailures = [Unauthenticated, Forbidden, Unavailable];
    /// An operator route that takes input: bad input (400) besides what any operator route may answer.
    OperatorInputFailures = [BadRequest, OperatorFailures];
    /// An operator route on one resource: no such resource (404) besides bad input and what any
    /// operator route may answer.
    OperatorLookupFailures = [NotFound, OperatorInputFailures];
    /// What any signed write may answer besides its 2xx: bad input (400), a missing or bad
    /// signature (401), a body over the limit (413), a backend down (503).
    SignedFailures = [BadRequest, Unauthorized, TooLarge, Unavailable];
    /// A signed write on the resource its path names: no such resource (404), a body naming
    /// another (422), besides what any signed write may answer.
    SignedLookupFailures = [NotFound, PathContradicted, SignedFailures];
    /// A signed write under an `Idempotency-Key`: the same request still in progress (409), the
    /// key reused with another body (422), besides what any signed write may answer.
    IdempotentFailures = [Conflict, KeyReused, SignedFailures];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses<T: IntoResponses>() -> Vec<String> {
        T::responses().into_keys().collect()
    }

    #[test]
    fn operator_sets_list_exactly_their_statuses() {
        assert_eq!(statuses::<OperatorFailures>(), ["401", "403", "503"]);
        assert_eq!(
            statuses::<OperatorInputFailures>(),
            ["400", "401", "403", "503"]
        );
        assert_eq!(
            statuses::<OperatorLookupFailures>(),
            ["400", "401", "403", "404", "503"]
        );
    }

    #[test]
    fn signed_sets_list_exactly_their_statuses() {
        assert_eq!(statuses::<SignedFailures>(), ["400", "401", "413", "503"]);
        assert_eq!(
            statuses::<SignedLookupFailures>(),
            ["400", "401", "404", "413", "422", "503"]
        );
        assert_eq!(
            statuses::<IdempotentFailures>(),
            ["400", "401", "409", "413", "422", "503"]
        );
    }
}
