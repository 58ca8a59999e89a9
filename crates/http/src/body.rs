//! Request bodies under a size limit: 413 with a problem above it.

use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;

use crate::Problem;

/// The body limit of a route, in bytes, as a request extension (for the 413 message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// Sets the body limit of `router`'s routes: axum's [`DefaultBodyLimit`] plus the [`BodyLimit`]
/// extension.
pub fn body_limit<S: Clone + Send + Sync + 'static>(
    router: OpenApiRouter<S>,
    limit: usize,
) -> OpenApiRouter<S> {
    router
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::Extension(BodyLimit(limit)))
}

/// Why a request body stopped: the server's deadline on it (`HTTP_BODY_TIMEOUT`) passed. The
/// edge raises it; whoever reads the body answers 408 for it, not a malformed body.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl BodyTimedOut {
    /// 408 `request-timeout`, as the edge answers a body that did not arrive in time.
    pub fn problem(detail: impl Into<String>) -> Problem {
        Problem::new(408, "request-timeout", "Request timeout", detail)
    }
}

/// Whether `error`, or an error it was caused by, is an `E` (a body's errors come wrapped by
/// each layer they cross).
pub fn caused_by<E: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<E>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Reads the whole body, refusing more than `limit` bytes with 413 (408 for a body that did not
/// arrive in time).
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if caused_by::<http_body_util::LengthLimitError>(inner.as_ref()) {
            Problem::too_large(limit)
        } else if caused_by::<BodyTimedOut>(inner.as_ref()) {
            BodyTimedOut::problem("the request body did not arrive in time")
        } else {
            tracing::debug!(error = %inner, "request body could not be read");
            Problem::invalid("body", "the request body could not be read")
        }
    })
}
