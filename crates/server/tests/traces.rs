//! Traces over OTLP/gRPC from the real binary to a small local receiver: one event sent with a
//! client's `traceparent` makes one trace, from the gateway's request span, through fairness's
//! span for the event (a child of the gateway's, carried on the bus), to progression's and
//! leaderboard's spans for it (children of fairness's). Each consumer's batch span is a root of
//! its own, linked to the event's trace. A log line written while serving a traced request
//! carries that request's trace id; lines outside any trace carry none.
#![cfg(feature = "otel")]

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    eventually, free_port, serve_command, signed_post, wait_ready, xp, Client, Fleet, Urls, SECRET,
};
use liveops_core::Keyring;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;

/// Every span received, with its service name.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Starts on a free loopback port; its endpoint URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream_of(listener)),
        );
        format!("http://{addr}")
    }

    fn spans_of(&self, trace_id: &[u8]) -> Vec<Span> {
        let got = self.0.lock().expect("lock");
        got.iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn all(&self) -> Vec<Span> {
        let got = self.0.lock().expect("lock");
        got.iter().map(|(_, s)| s.clone()).collect()
    }
}

/// The listener as the stream of connections tonic serves.
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let next = listener.accept().await.map(|(s, _)| s);
        Some((next, listener))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_makes_one_trace_from_the_gateway_to_every_consumer() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = dir.path().join("liveops.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut fleet = Fleet::default();
    fleet.0.push(
        serve_command(dir.path(), port)
            .args(["--hmac-secret", SECRET, "--log-level", "info"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_TRACES_SAMPLER")
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn liveops"),
    );
    wait_ready(&base).await;

    // The client's own span: the trace starts there.
    let trace_id: [u8; 16] = rand::random();
    let client_span: [u8; 8] = rand::random();
    let traceparent = format!("00-{}-{}-01", hex(&trace_id), hex(&client_span));
    let ring = Keyring::single(SECRET).expect("key");
    let body = serde_json::to_vec(&xp("player_traced", 1200)).expect("json");
    let client = reqwest::Client::new();
    let res = signed_post(&client, &ring, None, format!("{base}/events"), body)
        .header("traceparent", &traceparent)
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 202);

    let names = |spans: &[Span]| -> Vec<String> { spans.iter().map(|s| s.name.clone()).collect() };
    let wanted = [
        "POST /events",
        "fairness progression",
        "progression progression",
        "leaderboard progression",
    ];
    let spans = eventually(Duration::from_secs(20), "the trace's spans", || async {
        let spans = receiver.spans_of(&trace_id);
        let have = names(&spans);
        wanted
            .iter()
            .all(|w| have.iter().any(|h| h == w))
            .then_some(spans)
    })
    .await;
    let by_name: HashMap<&str, &Span> = spans.iter().map(|s| (s.name.as_str(), s)).collect();
    let http = by_name["POST /events"];
    assert_eq!(
        http.parent_span_id, client_span,
        "the request continues the client's trace"
    );
    // The gateway's handler span runs inside the request span and publishes the event.
    let publisher = spans
        .iter()
        .find(|s| s.parent_span_id == http.span_id)
        .expect("a handler span under the request span");
    let fairness = by_name["fairness progression"];
    assert_eq!(
        fairness.parent_span_id,
        publisher.span_id,
        "fairness continues the span that published the event: {:?}",
        names(&spans)
    );
    for consumer in ["progression progression", "leaderboard progression"] {
        assert_eq!(
            by_name[consumer].parent_span_id, fairness.span_id,
            "{consumer} continues fairness's span"
        );
    }

    // Batches are roots linked to the traces of their events.
    eventually(
        Duration::from_secs(20),
        "batch spans linked to the trace",
        || async {
            let linked: Vec<String> = receiver
                .all()
                .into_iter()
                .filter(|s| s.name.ends_with(" batch") && s.parent_span_id.is_empty())
                .filter(|s| s.links.iter().any(|l| l.trace_id == trace_id))
                .map(|s| s.name)
                .collect();
            ["fairness batch", "progression batch", "leaderboard batch"]
                .iter()
                .all(|group| linked.iter().any(|n| n == group))
                .then_some(())
        },
    )
    .await;

    // A reward claimed in a traced request: its log line carries the request's trace id.
    let game = Client::new(Urls::all(&base), &ring);
    let reward = eventually(Duration::from_secs(20), "a level-up reward", || {
        game.pending_reward("player_traced")
    })
    .await;
    let claim_trace: [u8; 16] = rand::random();
    let body =
        serde_json::to_vec(&serde_json::json!({"playerId": "player_traced", "rewardId": reward}))
            .expect("json");
    let res = signed_post(&client, &ring, None, format!("{base}/rewards/claim"), body)
        .header(
            "traceparent",
            format!("00-{}-{}-01", hex(&claim_trace), hex(&client_span)),
        )
        .send()
        .await
        .expect("claim");
    assert_eq!(res.status(), 200);
    let lines: Vec<serde_json::Value> =
        eventually(Duration::from_secs(10), "the claim's log line", || async {
            let text = std::fs::read_to_string(&log_path).ok()?;
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect();
            lines
                .iter()
                .any(|l| l["message"] == "reward claimed")
                .then_some(lines)
        })
        .await;
    let claimed = lines
        .iter()
        .find(|l| l["message"] == "reward claimed")
        .expect("line");
    assert_eq!(claimed["trace_id"], hex(&claim_trace), "{claimed}");
    assert_eq!(
        claimed["span_id"].as_str().map(str::len),
        Some(16),
        "{claimed}"
    );
    let outside = lines
        .iter()
        .find(|l| l["message"] == "exporting traces over OTLP/gRPC")
        .expect("a line written outside any span");
    assert!(outside.get("trace_id").is_none(), "{outside}");
}
