//! Traces across the bus. The gateway writes the W3C `traceparent` of the request's span into
//! each event's envelope; every consumer opens, per event that carries one, a span that is a
//! child of it, and fairness forwards its own span's `traceparent`, so one trace runs gateway →
//! fairness → progression and leaderboard. A batch mixes events of many traces, so a batch's span
//! is a root of its own, *linked* to the traces of its events rather than a child of any of them.
//!
//! The binary installs a [`Propagation`] when it exports traces; until then every function here
//! is a cheap no-op and envelopes carry no `traceparent`.

use std::sync::OnceLock;

use liveops_core::Envelope;
use tracing::Span;

/// How spans meet W3C trace context: provided by the binary's trace exporter.
pub trait Propagation: Send + Sync {
    /// The `traceparent` of `span`, if it is sampled (recorded and exported).
    fn traceparent(&self, span: &Span) -> Option<String>;
    /// Makes `span` (not entered yet) a child of the remote span `traceparent`.
    fn set_parent(&self, span: &Span, traceparent: &str);
    /// Links `span` to the remote span `traceparent`.
    fn add_link(&self, span: &Span, traceparent: &str);
}

static PROPAGATION: OnceLock<Box<dyn Propagation>> = OnceLock::new();

/// Installs the propagation of the process; `false` if one was installed already.
pub fn install(propagation: Box<dyn Propagation>) -> bool {
    PROPAGATION.set(propagation).is_ok()
}

/// Whether traces are exported (a [`Propagation`] is installed).
pub fn enabled() -> bool {
    PROPAGATION.get().is_some()
}

/// The `traceparent` of the current span, when traces are exported and it is sampled.
pub fn current_traceparent() -> Option<String> {
    PROPAGATION.get()?.traceparent(&Span::current())
}

/// Most links a batch span records (one per event, the first ones).
const MAX_LINKS: usize = 128;

/// The spans of one consumed batch: the batch's own (a root, linked to its events' traces) and,
/// for each event that carries a trace context, a span that continues that trace. They end when
/// this is dropped (after the ack). Empty, and free, when traces are not exported.
#[derive(Debug)]
pub struct BatchSpans {
    batch: Span,
    events: Vec<Option<Span>>,
}

impl BatchSpans {
    /// Opens the spans of `group`'s batch of `events` (in the order given).
    pub fn start<'a>(group: &'static str, events: impl IntoIterator<Item = &'a Envelope>) -> Self {
        let Some(propagation) = PROPAGATION.get() else {
            return Self {
                batch: Span::none(),
                events: Vec::new(),
            };
        };
        let batch = tracing::info_span!(parent: None, "consume batch",
            otel.name = %format_args!("{group} batch"), otel.kind = "consumer",
            messaging.consumer.group.name = group, messaging.batch.message_count = tracing::field::Empty);
        let mut spans = Vec::new();
        for env in events {
            let Some(parent) = env.traceparent.as_deref() else {
                spans.push(None);
                continue;
            };
            let span = tracing::info_span!(parent: None, "consume event",
                otel.name = %format_args!("{group} {}", env.event.kind().as_str()),
                otel.kind = "consumer", messaging.consumer.group.name = group,
                event_id = %env.event_id, player = %env.event.player_id);
            propagation.set_parent(&span, parent);
            if spans.len() < MAX_LINKS {
                propagation.add_link(&batch, parent);
            }
            spans.push(Some(span));
        }
        batch.record("messaging.batch.message_count", spans.len());
        Self {
            batch,
            events: spans,
        }
    }

    /// The batch's span: run the batch's work in it.
    pub fn batch(&self) -> &Span {
        &self.batch
    }

    /// The `traceparent` to forward with the `i`-th event: its own span's, when it has one.
    pub fn traceparent(&self, i: usize) -> Option<String> {
        let span = self.events.get(i)?.as_ref()?;
        PROPAGATION.get()?.traceparent(span)
    }
}
