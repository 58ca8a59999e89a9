//! Work a client's disconnect must not cut short.

use std::future::Future;

use tracing::Instrument;

use crate::Problem;

/// Runs `work` on its own task, in the request's span, and answers what it answers: a client
/// that goes away drops the handler, not `work`, so a change and the step that completes or
/// undoes it (an answer stored, an attempt taken back, a cache entry dropped, an audit row) are
/// never parted. A task that fails answers 500 and is logged.
pub async fn uninterrupted<F, T>(work: F) -> Result<T, Problem>
where
    F: Future<Output = Result<T, Problem>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(work.instrument(tracing::Span::current()))
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "request task failed");
            Err(Problem::internal())
        })
}
