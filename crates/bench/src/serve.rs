//! Servers the bench starts in-process: the ceiling, and (through [`crate::Spawn`]) the product
//! itself. Each runs on its own Tokio runtime in its own thread, like a separate process would, so
//! the generator's tasks and the server's never share a scheduler queue.

use std::future::Future;

use liveops_core::Keyring;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::client::Endpoint;
use crate::BenchError;

/// Worker threads of a server runtime: what `liveops serve` gets on this kind of machine.
fn server_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// A server running on its own runtime thread.
pub struct Served {
    /// Where it listens.
    pub endpoint: Endpoint,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Stops the server and waits for its thread.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Runs `make()` to completion on a fresh multi-thread runtime in a new thread.
pub fn own_runtime<F, Fut>(name: &str, make: F) -> Result<std::thread::JoinHandle<()>, BenchError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads())
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| BenchError::Server(format!("cannot start a runtime: {e}")))?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || rt.block_on(make()))
        .map_err(|e| BenchError::Server(format!("cannot start a thread: {e}")))
}

/// Starts the ceiling on `127.0.0.1` at a free port.
pub(crate) async fn spawn_ceiling(
    keyring: Keyring,
    tolerance_s: i64,
) -> Result<Served, BenchError> {
    let stop = CancellationToken::new();
    let (tx, rx) = oneshot::channel::<Result<u16, String>>();
    let token = stop.clone();
    let thread = own_runtime("bench-ceiling", move || async move {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let _ = tx.send(Ok(port));
        let app = crate::ceiling::router(keyring, tolerance_s);
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    })?;
    let port = rx
        .await
        .map_err(|_| BenchError::Server("the ceiling did not start".into()))?
        .map_err(|e| BenchError::Server(format!("ceiling: {e}")))?;
    Ok(Served {
        endpoint: Endpoint::local(port),
        stop,
        thread: Some(thread),
    })
}

impl Served {
    /// A server running on `thread`, listening on local `port`, stopped through `stop`.
    pub fn new(port: u16, stop: CancellationToken, thread: std::thread::JoinHandle<()>) -> Self {
        Self {
            endpoint: Endpoint::local(port),
            stop,
            thread: Some(thread),
        }
    }
}
