//! A layer that sees only the events a predicate accepts, and every span the subscriber enables.
//!
//! Not tracing-subscriber's per-layer filters: they carry each decision from `enabled` to the
//! event in a thread-local, and a crate that asks `enabled` without emitting (sqlx's query logger
//! does, after every query) leaves that state stale, so the next event is silently dropped from
//! the filtered layer (tokio-rs/tracing#2519). Here the predicate is asked in `on_event` itself.
//! It hides the wrapped layer from downcasts (that would take `unsafe`), so it wraps the log
//! lines, not the trace layer, which span contexts are read through.

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// `inner`, given only the events `keep` accepts.
pub(super) struct Gate<L, F> {
    inner: L,
    keep: F,
}

impl<L, F> Gate<L, F> {
    /// Wraps `inner`.
    pub(super) fn new(inner: L, keep: F) -> Self {
        Self { inner, keep }
    }
}

impl<S, L, F> Layer<S> for Gate<L, F>
where
    S: Subscriber,
    L: Layer<S>,
    F: Fn(&Metadata<'_>) -> bool + Send + Sync + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if (self.keep)(event.metadata()) {
            self.inner.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}
