//! Log lines captured in tests, formatted as the binary writes them (one flat JSON object per
//! event, without span fields), and samples read from a Prometheus scrape.

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::layer::SubscriberExt;

/// What a thread logged while its [`Captured`] was in force (a `current_thread` runtime's
/// tasks included).
pub struct Captured {
    written: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Captured {
    /// Captures this thread's events from now until dropped.
    pub fn start() -> Self {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let lines = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(move || Sink(sink.clone()));
        let subscriber = tracing_subscriber::registry().with(lines);
        Self {
            written,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The lines logged so far, each parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let written = self.written.lock().map(|w| w.clone()).unwrap_or_default();
        String::from_utf8_lossy(&written)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The first line whose message starts with `message`.
    pub fn line(&self, message: &str) -> Option<serde_json::Value> {
        self.lines().into_iter().find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
    }
}

/// Appends what is written to the shared buffer.
struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut w) = self.0.lock() {
            w.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The value of `series` (a name with its labels as Prometheus renders them,
/// `name{label="value"}`) in the scrape `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}
