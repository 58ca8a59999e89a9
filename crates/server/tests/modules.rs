//! A new service is one crate and one line in the module table: a throw-away module registered
//! with `Table::standard().with(&PROBE)` gets its route served and counted under its name, its
//! path in the OpenAPI document, its consumer group created and consumed, and a say in `/readyz`.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use liveops::Table;
use liveops_core::ports::Message;
use liveops_core::{Bus, BusExt};
use liveops_module::{BuildError, Context, Definition, Group, NoSettings, Service, Task};
use liveops_sqlite_bus::SqliteBus;

use common::*;

/// Messages the probe's consumer received.
static RECEIVED: AtomicU64 = AtomicU64::new(0);
/// Whether the probe says it is ready.
static READY: AtomicBool = AtomicBool::new(false);

/// The throw-away module: one route, one consumer group, a say in readiness.
static PROBE: Definition<NoSettings> = Definition {
    name: "probe",
    port: 8099,
    groups: &[Group {
        topic: "probe.events",
        group: "probe",
    }],
    doc: probe_openapi,
    openapi: |_, doc, _| doc,
    check: |_| Ok(()),
    build: |ctx, _| Box::pin(build_probe(ctx)),
};

fn probe_openapi() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::{OpenApiBuilder, PathsBuilder, ResponseBuilder};
    let op = OperationBuilder::new()
        .response("200", ResponseBuilder::new().description("received so far"))
        .build();
    OpenApiBuilder::new()
        .paths(PathsBuilder::new().path("/probe", PathItem::new(HttpMethod::Get, op)))
        .build()
}

async fn build_probe(ctx: &Context) -> Result<Service, BuildError> {
    let bus = ctx.ports.get::<dyn Bus>().await?;
    let consumer = Task::new("probe consumer", move |stop| async move {
        while !stop.is_cancelled() {
            let got = bus
                .poll("probe.events", "probe", "p", 16, Duration::from_millis(50))
                .await?;
            let ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
            RECEIVED.fetch_add(got.len() as u64, Ordering::SeqCst);
            bus.ack("probe.events", "probe", &ids).await?;
        }
        Ok(())
    });
    Ok(Service {
        router: Router::new()
            .route(
                "/probe",
                get(|| async { RECEIVED.load(Ordering::SeqCst).to_string() }),
            )
            .route("/probe/boom", get(boom)),
        tasks: vec![consumer],
        readiness: Some(std::sync::Arc::new(|| {
            (!READY.load(Ordering::SeqCst)).then(|| "probe: warming up".to_owned())
        })),
    })
}

/// A handler that panics.
async fn boom() -> &'static str {
    panic!("the probe's handler fails")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_registered_in_one_line_is_served_documented_consumed_and_asked() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(Table::standard().with(&PROBE), dir.path().into(), &[]).await;

    // Readiness: the probe's own say counts.
    let not_yet = app.get("/readyz").await.assert_problem(503);
    assert!(not_yet
        .detail
        .expect("detail")
        .contains("probe: warming up"));
    READY.store(true, Ordering::SeqCst);
    wait_ready(&app.base).await;

    // Its route, counted under its own name.
    assert_eq!(app.get("/probe").await.status, 200);
    let text = app.metrics().await;
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total")
            && l.contains("service=\"probe\"")
            && l.contains("route=\"/probe\"")),
        "the probe's requests are labelled with its name"
    );
    // A handler that panics is answered 500 and counted so; a method the route does not take is
    // a counted 405; a method no client library sends is counted as `other`, not as itself
    // (each name would be a series kept for the process's life).
    assert_eq!(app.get("/probe/boom").await.assert_problem(500).status, 500);
    let refused = app
        .client
        .delete(format!("{}/probe", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 405);
    let odd = reqwest::Method::from_bytes(b"XPROBE0123").unwrap();
    let unknown = app
        .client
        .request(odd, format!("{}/nowhere", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let text = app.metrics().await;
    let counted = |route: &str, method: &str, status: &str| {
        text.lines().any(|l| {
            l.starts_with("http_requests_total{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("method=\"{method}\""))
                && l.contains(&format!("status=\"{status}\""))
        })
    };
    assert!(counted("/probe/boom", "GET", "500"), "the panic counted");
    assert!(counted("/probe", "DELETE", "405"), "the 405 counted");
    assert!(
        counted("unmatched", "other", "404"),
        "the odd method counted as other"
    );
    assert!(!text.contains("XPROBE0123"), "no series named by a client");

    // Its path in the one OpenAPI document (the served document's JSON itself).
    let spec = app.get("/openapi.json").await.body;
    assert!(spec["paths"]["/probe"]["get"].is_object());
    assert!(
        spec["paths"]["/events"]["post"].is_object(),
        "beside the others"
    );

    // Its consumer group exists from the start, and its consumer runs: publish from outside.
    let bus = SqliteBus::open(dir.path().join("bus.db"), Default::default())
        .await
        .unwrap();
    let msg = |i: u32| Message {
        id: format!("probe-{i}"),
        key: "k".into(),
        payload: bytes::Bytes::from_static(b"{}"),
    };
    bus.publish("probe.events", (0..3).map(msg).collect())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the probe consumed 3 messages",
        || async { (app.get("/probe").await.body == 3).then_some(()) },
    )
    .await;
    app.shutdown().await;
}

/// A process that checks signatures and started while its database was away has never read the
/// API keys: it is not ready (it would refuse every game server's request with 401), saying
/// why, rather than joining the load balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_never_read_the_api_keys_is_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = redis_db(11);
    let flags = [
        "--target",
        "gateway",
        "--redis-url",
        &redis,
        "--db-url",
        "postgres://liveops@127.0.0.1:1/liveops",
    ];
    let app = start(Table::standard(), dir.path().into(), &flags).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let detail = ready.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("API keys not read yet"), "{detail}");
    app.shutdown().await;
}
