//! RFC 9457 problem details: the one error body every route answers with.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use liveops_core::PortError;

/// An `application/problem+json` body plus the status and headers it travels with (clients and
/// tests read it back with `Deserialize`; `retry_after` travels as a header, not in the body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`/problems/invalid-event`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong this time, for a human.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The offending request field (`payload.deltaXp`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before retrying (sent as `Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of kind `/problems/<slug>`.
    pub fn new(status: u16, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status,
            detail: Some(detail.into()),
            field: None,
            retry_after: None,
        }
    }

    /// Names the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        // A member with an empty name (`{"": 1}`) is shown quoted, so `field` always names it.
        self.field = Some(if field.is_empty() {
            "\"\"".into()
        } else {
            field
        });
        self
    }

    /// 400: the request is malformed or out of range.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(400, "invalid-request", "Invalid request", detail).with_field(field)
    }

    /// 422: a well-formed body whose `field` names another resource than the path: the schema
    /// cannot say "equal to the path", so it is not a malformed request (400).
    pub fn path_mismatch(field: &str, detail: impl Into<String>) -> Self {
        Self::new(422, "path-mismatch", "Body contradicts the path", detail).with_field(field)
    }

    /// 422: an `Idempotency-Key` used before with another request (the IETF draft's answer).
    pub fn key_reused() -> Self {
        Self::new(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was already used with another request (another body or route)",
        )
        .with_field("Idempotency-Key")
    }

    /// 401: unsigned, badly signed or stale.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", "Signature check failed", detail)
    }

    /// 403: signed in, but the role does not allow it.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, "forbidden", "Forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not-found", "Not found", detail)
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed(detail: impl Into<String>) -> Self {
        Self::new(405, "method-not-allowed", "Method not allowed", detail)
    }

    /// 409.
    pub fn conflict(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(409, slug, "Conflict", detail)
    }

    /// 410: it existed and is gone for good (an expired message).
    pub fn gone(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(410, slug, "Gone", detail)
    }

    /// 429: too many attempts; retry after `retry_after_s` seconds.
    pub fn too_many(detail: impl Into<String>, retry_after_s: u64) -> Self {
        let mut p = Self::new(429, "too-many-requests", "Too many requests", detail);
        p.retry_after = Some(retry_after_s.max(1));
        p
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "payload-too-large",
            "Payload too large",
            format!("body exceeds {limit} bytes"),
        )
    }

    /// 503: a dependency is down; retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Self::new(503, "unavailable", "Service unavailable", detail);
        p.retry_after = Some(1);
        p
    }

    /// 500: a bug on our side; the detail stays in the logs.
    pub fn internal() -> Self {
        Self::new(
            500,
            "internal",
            "Internal error",
            "an internal error occurred; it has been logged",
        )
    }
}

impl From<PortError> for Problem {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Unavailable(_) => {
                Self::unavailable("a backend is unavailable; retry shortly")
            }
            PortError::Corrupt(_) => Self::internal(),
        }
    }
}

impl From<liveops_core::InvalidEvent> for Problem {
    fn from(e: liveops_core::InvalidEvent) -> Self {
        Self::new(400, "invalid-event", "Invalid event", e.reason).with_field(e.field)
    }
}

mod http {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};

    use super::Problem;

    impl IntoResponse for Problem {
        fn into_response(self) -> Response {
            let status =
                StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = serde_json::to_vec(&self).unwrap_or_default();
            let mut res = (status, body).into_response();
            let headers = res.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            if let Some(s) = self.retry_after {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            res
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_reads_back_as_written_with_or_without_its_optional_members() {
        let p = Problem::invalid("payload.deltaXp", "must be positive");
        let text = serde_json::to_string(&p).expect("json");
        let back: Problem = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, p);
        let bare: Problem =
            serde_json::from_str(r#"{"type":"/problems/x","title":"T","status":503}"#)
                .expect("no detail, no field");
        assert_eq!((bare.status, bare.detail, bare.field), (503, None, None));
    }
}
