//! Routes nested under another module's prefix, answered through the prefix's owner: in the
//! split deployment the load balancer sends `/campaigns/...` to campaigns and `/players/...` to
//! progression, and a process forwards a request for a route of a module it does not run to
//! that module (`PEER_URL_TEMPLATE`), signature and all.

mod common;

use common::{now, signed_post, start, wait_ready};
use liveops::modules::Table;
use liveops_testkit::served::metric_sum;
use serde_json::json;

/// Participation's routes under `/campaigns/{id}/...` are answered by participation through a
/// campaigns process: a public read gets the owner's answer as it is, a signed entry keeps its
/// signature over the hop (the owner checks it), and a forged one is refused by the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_route_is_answered_by_its_module_through_the_prefix_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let participation = start(
        Table::standard(),
        dir.path().into(),
        &["--target", "participation"],
    )
    .await;
    wait_ready(&participation.base).await;
    // Every module this process does not run is at the participation process here.
    let campaigns = start(
        Table::standard(),
        dir.path().into(),
        &[
            "--target",
            "campaigns",
            "--peer-url-template",
            &participation.base,
        ],
    )
    .await;
    wait_ready(&campaigns.base).await;

    let through = campaigns
        .get("/campaigns/cmp_nowhere/entrants?limit=5")
        .await;
    let direct = participation
        .get("/campaigns/cmp_nowhere/entrants?limit=5")
        .await;
    assert_eq!(through.status, direct.status);
    assert_eq!(through.body, direct.body, "the owner's answer, as it is");
    let detail = through.body["detail"].as_str().unwrap_or_default();
    assert!(!detail.contains("no route"), "{detail}");

    let body = serde_json::to_vec(&json!({"playerId": "player_1", "campaignId": "cmp_nowhere"}))
        .expect("json");
    let url = format!("{}/campaigns/cmp_nowhere/entries", campaigns.base);
    let signed = signed_post(
        &campaigns.client,
        &campaigns.keyring,
        None,
        &url,
        body.clone(),
    )
    .send()
    .await
    .expect("entry");
    assert_eq!(signed.status(), 404, "past the owner's signature check");
    let forged = campaigns
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-timestamp", now().to_string())
        .header("x-signature", format!("v2={}", "0".repeat(64)))
        .body(body)
        .send()
        .await
        .expect("forged entry");
    assert_eq!(forged.status(), 401, "refused by the owner");

    // Its own routes stay its own; a path no module has is still a 404 here.
    assert_eq!(campaigns.get("/campaigns/cmp_nowhere").await.status, 401);
    let nowhere = campaigns.get("/nowhere").await;
    assert_eq!(nowhere.status, 404);
    assert!(nowhere.body["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("no route"));
}

/// An owner that does not answer is a 503 with a retry hint; without a template such a route
/// is a 404, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_owner_is_a_503_and_no_template_a_404() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = format!(
        "http://127.0.0.1:{}",
        liveops_testkit::redis_server::closed_port()
    );
    let forwarding = start(
        Table::standard(),
        dir.path().join("a"),
        &["--target", "campaigns", "--peer-url-template", &closed],
    )
    .await;
    wait_ready(&forwarding.base).await;
    let down = forwarding.get("/campaigns/cmp_x/draw").await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.retry_after.as_deref(), Some("5"));
    // Counted under its own service, which the 5xx alert covers (`ops` is left out of it).
    let m = forwarding.metrics().await;
    let forwarded = [
        r#"service="forward""#,
        r#"route="/campaigns/{id}/draw""#,
        r#"status="503""#,
    ];
    assert_eq!(
        metric_sum(&m, "http_requests_total", &forwarded),
        1.0,
        "{m}"
    );
    let as_ops = [r#"service="ops""#, r#"status="503""#];
    assert_eq!(metric_sum(&m, "http_requests_total", &as_ops), 0.0, "{m}");
    let plain = start(
        Table::standard(),
        dir.path().join("b"),
        &["--target", "campaigns"],
    )
    .await;
    wait_ready(&plain.base).await;
    assert_eq!(plain.get("/campaigns/cmp_x/draw").await.status, 404);
}

/// An owner on loopback whose answers the test holds: `/campaigns/{id}/draw` sends its first
/// 64 KiB at once and the rest when released; `/campaigns/{id}/entrants` answers only when
/// released; `/campaigns/{id}/entries` reads the whole body and answers its length.
struct HeldOwner {
    base: String,
    release: tokio::sync::watch::Sender<bool>,
    arrived: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn held_owner() -> HeldOwner {
    use axum::body::{Body, Bytes};
    use axum::routing::{get, post};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let (release, released) = tokio::sync::watch::channel(false);
    let arrived = Arc::new(AtomicUsize::new(0));
    let wait = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|r| *r).await;
    };
    let (draw_rx, entrants_rx, count) = (released.clone(), released, arrived.clone());
    let app = axum::Router::new()
        .route(
            "/campaigns/{id}/draw",
            get(move || {
                let rx = draw_rx.clone();
                async move {
                    let first = futures_util::stream::once(async {
                        Ok::<_, std::io::Error>(Bytes::from(vec![b'a'; 64 << 10]))
                    });
                    let rest = futures_util::stream::once(async move {
                        wait(rx).await;
                        Ok::<_, std::io::Error>(Bytes::from(vec![b'b'; 1 << 20]))
                    });
                    Body::from_stream(futures_util::StreamExt::chain(first, rest))
                }
            }),
        )
        .route(
            "/campaigns/{id}/entrants",
            get(move || {
                let (rx, count) = (entrants_rx.clone(), count.clone());
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    wait(rx).await;
                    "{}"
                }
            }),
        )
        .route(
            "/campaigns/{id}/entries",
            post(|body: Body| async move {
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .map_or(0, |b| b.len());
                bytes.to_string()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    HeldOwner {
        base,
        release,
        arrived,
    }
}

/// The owner's answer streams back as it comes (a draw lists every entrant: tens of
/// megabytes must not be held whole per request); at most `IN_FLIGHT` requests are on their way
/// at once, the next is a 503; a body past the limit is a 413, declared or streamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_answers_stream_and_forwards_are_bounded() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let owner = held_owner().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let forwarding = start(
        Table::standard(),
        dir.path().into(),
        &["--target", "campaigns", "--peer-url-template", &owner.base],
    )
    .await;
    wait_ready(&forwarding.base).await;
    let client = reqwest::Client::new();

    let mut draw = tokio::time::timeout(
        Duration::from_secs(10),
        client
            .get(format!("{}/campaigns/cmp_1/draw", forwarding.base))
            .send(),
    )
    .await
    .expect("the answer starts before the owner has sent all of it")
    .expect("draw");
    assert_eq!(draw.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), draw.chunk())
        .await
        .expect("first bytes while the owner holds the rest")
        .expect("chunk")
        .expect("some bytes");
    assert_eq!(first[0], b'a');

    let held: Vec<_> = (0..liveops::peers::IN_FLIGHT - 1)
        .map(|_| {
            let url = format!("{}/campaigns/cmp_1/entrants", forwarding.base);
            let client = client.clone();
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while owner.arrived.load(Ordering::SeqCst) < liveops::peers::IN_FLIGHT - 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests reach the owner"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The draw still streaming holds the last slot.
    let refused = forwarding.get("/campaigns/cmp_1/entrants").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    let m = forwarding.metrics().await;
    assert_eq!(
        metric_sum(&m, "http_forwards_refused_total", &[]),
        1.0,
        "{m}"
    );
    let refused_503 = [r#"service="forward""#, r#"status="503""#];
    assert_eq!(
        metric_sum(&m, "http_requests_total", &refused_503),
        1.0,
        "{m}"
    );

    owner.release.send(true).expect("release");
    let mut rest = first.len();
    while let Some(chunk) = draw.chunk().await.expect("chunk") {
        rest += chunk.len();
    }
    assert_eq!(rest, (64 << 10) + (1 << 20), "the whole answer");
    for h in held {
        assert_eq!(h.await.expect("join").expect("answer"), 200);
    }
    assert_eq!(
        forwarding.get("/campaigns/cmp_1/entrants").await.status,
        200,
        "slots given back"
    );

    let url = format!("{}/campaigns/cmp_1/entries", forwarding.base);
    let small = client
        .post(&url)
        .body(vec![b'x'; 1000])
        .send()
        .await
        .expect("post");
    assert_eq!(
        small.text().await.expect("text"),
        "1000",
        "the body as sent"
    );
    // A declared length past the limit is refused before any of the body is read.
    let declared = entry_sent_raw(&forwarding.base, 3 << 20, "").await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    let chunks =
        futures_util::stream::iter((0..34).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 << 10])));
    let streamed = client
        .post(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("post");
    assert_eq!(
        streamed.status(),
        413,
        "a body past the limit without a length"
    );
}

/// A client whose body stops half-way on a forwarded route is answered 408 at the body timeout,
/// and the forward is counted as that, not as an owner that could not be reached (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_body_that_stops_is_the_client_s_timeout_not_the_owner_s_failure() {
    let owner = held_owner().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = [
        "--target",
        "campaigns",
        "--peer-url-template",
        &owner.base,
        "--http-body-timeout",
        "1s",
    ];
    let forwarding = start(Table::standard(), dir.path().into(), &flags).await;
    wait_ready(&forwarding.base).await;
    let answer = entry_sent_raw(&forwarding.base, 1000, "{\"playerId\":").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let metrics = forwarding.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default();
    let forwarded = |status: &str| {
        let status = format!("status=\"{status}\"");
        metric_sum(
            text,
            "http_requests_total",
            &["service=\"forward\"", &status],
        )
    };
    assert_eq!(forwarded("503"), 0.0, "not the owner's failure");
    assert_eq!(forwarded("408"), 1.0);
}

/// The answer to a `POST /campaigns/cmp_1/entries` sent by hand to `base`: a head declaring
/// `length` bytes, then `body` (perhaps less), the connection then left open until answered.
async fn entry_sent_raw(base: &str, length: usize, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /campaigns/cmp_1/entries HTTP/1.1\r\nhost: {addr}\r\n\
         content-length: {length}\r\nconnection: close\r\n\r\n{body}"
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = conn.read_to_end(&mut answer);
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("answered")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}
