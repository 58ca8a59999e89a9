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

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            Problem::too_large(limit)
        } else {
            tracing::debug!(error = %inner, "request body could not be read");
            Problem::invalid("body", "the request body could not be read")
        }
    })
}
