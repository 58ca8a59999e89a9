//! Trace export over OTLP/gRPC (feature `otel`).
//!
//! gRPC rather than HTTP/protobuf: the collector endpoints of the deployment (Grafana Alloy, an
//! OpenTelemetry Collector) listen on 4317, and tonic runs on the hyper 1 and tower this binary
//! already has (HTTP/protobuf would bring a second reqwest); TLS for `https://` endpoints is
//! rustls on ring, like every other connection, so no OpenSSL. Spans are batched and sent from
//! the SDK's own thread; the gRPC channel runs on this runtime, so the provider is built inside
//! it. Sampling follows the standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default:
//! every trace), batching `OTEL_BSP_*`.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{filter_fn, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use super::gate::Gate;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The tracer provider exporting to `endpoint` as service `service` (`OTEL_SERVICE_NAME` wins).
pub(super) fn provider(
    endpoint: &str,
    service: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Ours among spans and events: what is exported even when not logged (spans at info and above;
/// warnings and errors inside them as span events; lines logged inside them are span events too).
fn ours(meta: &tracing::Metadata<'_>) -> bool {
    let level = *meta.level();
    meta.target().starts_with("liveops")
        && if meta.is_span() {
            level <= tracing::Level::INFO
        } else {
            level <= tracing::Level::WARN
        }
}

/// The subscriber exporting our spans through `provider` and logging what `filter` (a list of
/// `target=level` directives, `info` when it does not parse) lets through, each log line inside
/// a traced span led by its trace and span ids. Filtering is global plus [`Gate`]s, never
/// per-layer filters (see the `gate` module).
pub(super) fn subscriber(filter: &str, provider: &SdkTracerProvider) -> Dispatch {
    let logged: Targets = filter
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let for_lines = logged.clone();
    let enabled =
        filter_fn(move |meta| logged.would_enable(meta.target(), meta.level()) || ours(meta));
    let lines = fmt::layer()
        .event_format(TraceIds(super::json_lines()))
        .fmt_fields(JsonFields::new())
        .with_writer(std::io::stderr);
    let lines = Gate::new(lines, move |meta: &tracing::Metadata<'_>| {
        for_lines.would_enable(meta.target(), meta.level())
    });
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("liveops"))
        .with_threads(false);
    Dispatch::new(
        tracing_subscriber::registry()
            .with(enabled)
            .with(lines)
            .with(traces),
    )
}

/// Flushes and stops the exporter, off the runtime's workers (it blocks).
pub(super) async fn shutdown(provider: SdkTracerProvider) {
    let done = tokio::task::spawn_blocking(move || provider.shutdown());
    match tokio::time::timeout(EXPORT_TIMEOUT + Duration::from_secs(1), done).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "trace export did not shut down cleanly"),
        Ok(Err(error)) => tracing::warn!(%error, "trace export shutdown failed"),
        Err(_) => tracing::warn!("trace export shutdown timed out"),
    }
}

/// W3C trace context for the bus (`traceparent` in envelopes).
struct W3c(TraceContextPropagator);

impl W3c {
    fn context(&self, traceparent: &str) -> opentelemetry::Context {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        self.0.extract(&carrier)
    }
}

impl liveops_module::trace::Propagation for W3c {
    fn traceparent(&self, span: &Span) -> Option<String> {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        (sc.is_valid() && sc.is_sampled()).then(|| {
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            )
        })
    }

    fn set_parent(&self, span: &Span, traceparent: &str) {
        let cx = self.context(traceparent);
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }

    fn add_link(&self, span: &Span, traceparent: &str) {
        let cx = self.context(traceparent);
        span.add_link(cx.span().span_context().clone());
    }
}

/// Installs W3C propagation for the bus.
pub(super) fn install_propagation() {
    liveops_module::trace::install(Box::new(W3c(TraceContextPropagator::new())));
}

/// Reads trace context from request headers.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Runs a request in a server span named after its route (`POST /events`), continuing the
/// trace of a `traceparent` header when there is one.
pub(super) async fn http_span(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!(parent: None, "http request",
        otel.name = %format_args!("{method} {route}"), otel.kind = "server",
        http.request.method = %method, http.route = %route,
        http.response.status_code = tracing::field::Empty);
    let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let res = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", res.status().as_u16());
    res
}

/// The process's subscriber, for the log lines to find the trace of their span.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// Remembers the subscriber `dispatch` (the one installed) for the trace ids of log lines.
pub(super) fn remember(dispatch: &Dispatch) {
    let _ = DISPATCH.set(dispatch.downgrade());
}

/// A JSON event format with the current span's trace and span ids added in front.
struct TraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for TraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // The registry's current span, whatever the log filter says about spans.
        let traced = ctx
            .current_span()
            .id()
            .zip(DISPATCH.get().and_then(WeakDispatch::upgrade))
            .and_then(|(id, dispatch)| tracing_opentelemetry::get_otel_context(id, &dispatch))
            .map(|cx| cx.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        let Some(sc) = traced else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                sc.trace_id(),
                sc.span_id()
            ),
            None => writer.write_str(&line),
        }
    }
}
