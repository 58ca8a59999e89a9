//! Structured JSON logs, traces over OTLP (feature `otel`) and the Prometheus recorder.
//!
//! Logs take events only: spans reach no log line (`with_current_span(false)`).
//! When traces are exported, a line written inside a traced span starts with its `trace_id` and
//! `span_id`, so a log line leads to its trace and back.

#[cfg(feature = "otel")]
mod gate;
#[cfg(feature = "otel")]
mod otel;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the JSON log subscriber with `filter` (e.g. `info`). Later calls are no-ops.
pub fn init_logs(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = fmt::layer()
        .event_format(json_lines())
        .fmt_fields(fmt::format::JsonFields::new())
        .with_writer(std::io::stderr);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init();
}

/// One flat JSON object per event, without span fields.
fn json_lines() -> fmt::format::Format<fmt::format::Json> {
    fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
}

/// What to flush before the process exits.
#[derive(Debug, Default)]
#[must_use = "call shutdown() before exiting so the last spans are sent"]
pub struct Tracing {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Tracing {
    /// Sends the spans still buffered (waits up to a few seconds).
    pub async fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            otel::shutdown(provider).await;
        }
    }
}

/// Installs logs and, when `endpoint` is set and this build has the `otel` feature, trace export
/// over OTLP/gRPC as `service` (unless `OTEL_SERVICE_NAME` says otherwise). Without the feature
/// a set endpoint gets a warning.
pub fn init(filter: &str, endpoint: Option<&str>, service: &str) -> Tracing {
    let Some(endpoint) = endpoint else {
        init_logs(filter);
        return Tracing::default();
    };
    #[cfg(feature = "otel")]
    {
        match otel::provider(endpoint, service) {
            Ok(provider) => {
                let dispatch = otel::subscriber(filter, &provider);
                otel::remember(&dispatch);
                let _ = dispatch.try_init();
                otel::install_propagation();
                tracing::info!(%endpoint, service, "exporting traces over OTLP/gRPC");
                Tracing {
                    provider: Some(provider),
                }
            }
            Err(error) => {
                init_logs(filter);
                tracing::error!(%endpoint, %error, "OTEL_EXPORTER_OTLP_ENDPOINT: cannot export traces there; running without");
                Tracing::default()
            }
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        init_logs(filter);
        let _ = service;
        tracing::warn!(%endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT is set but this build has no trace export (cargo build --features otel)");
        Tracing::default()
    }
}

/// Opens a server span per request of `router` (named after its route, continuing a
/// `traceparent` header) when traces are exported; `router` as it is otherwise.
pub fn http_spans(router: axum::Router) -> axum::Router {
    #[cfg(feature = "otel")]
    if liveops_module::trace::enabled() {
        return router.route_layer(axum::middleware::from_fn(otel::http_span));
    }
    router
}

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Batch size buckets (events, messages or writes per batch): 1 to 4096.
const SIZE_BUCKETS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0];

/// How often histogram samples are drained into their buckets between scrapes.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed once; tests start many apps in one process).
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_events".into()), SIZE_BUCKETS))
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_messages".into()), SIZE_BUCKETS)
            })
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_writes".into()), SIZE_BUCKETS))
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is already installed: render from a private one instead.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        // Histograms hold every sample until drained, by a scrape or by this upkeep: without it
        // a process nobody scrapes (the embedded default, a scrape outage) grows by every
        // sample (install_recorder spawns no upkeep of its own).
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(METRICS_UPKEEP);
                upkeep.run_upkeep();
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the metrics upkeep: histograms drain at scrapes only");
        }
        handle
    })
}
