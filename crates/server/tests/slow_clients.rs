//! Clients that send slowly, stop half-way or come in crowds, over raw TCP on 127.0.0.1 against
//! the embedded default: a head that trickles in is cut off at `HTTP_HEADER_TIMEOUT`, a body
//! that stops is answered 408 at `HTTP_BODY_TIMEOUT`, requests past `HTTP_MAX_IN_FLIGHT` are
//! answered 503, and a signed route refuses missing signature headers before the body is sent.

mod common;

use std::time::{Duration, Instant};

use common::{now, spawn_app, TestApp};
use liveops_core::AuthError;
use liveops_testkit::served::metric_sum;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection to `app`.
async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// The head of a `POST /events/batch` with a body of `length` bytes, with signature headers
/// that pass every check but the one over the body (which is never sent whole) when `signed`.
fn batch_head(length: usize, signed: bool) -> String {
    let mut head = format!(
        "POST /events/batch HTTP/1.1\r\nhost: liveops\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n"
    );
    if signed {
        let sig = "0".repeat(64);
        head.push_str(&format!(
            "x-timestamp: {}\r\nx-signature: v2={sig}\r\n",
            now()
        ));
    }
    head.push_str("\r\n");
    head
}

/// What the server answered on `stream` (status, head, body), read until it closes the
/// connection or `within` passes (then `None`).
async fn answer(stream: &mut TcpStream, within: Duration) -> Option<(u16, String, String)> {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
            if complete(&bytes) {
                return;
            }
        }
    });
    read.await.ok()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, head.to_ascii_lowercase(), body.to_owned()))
}

/// Whether `bytes` hold a whole answer with a `content-length`.
fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}

/// Whether the server closed `stream` (a read ends) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn slow_heads_and_bodies_are_cut_off_and_unsigned_bodies_are_never_read() {
    let app = spawn_app(&["--http-header-timeout", "1s", "--http-body-timeout", "2s"]).await;

    // A head that trickles in, a header line every 200 ms, never finished: closed at 1 s.
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: liveops\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let (mut reader, mut writer) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer
                .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let ended = tokio::time::timeout(Duration::from_secs(8), reader.read(&mut buf)).await;
    let took = started.elapsed();
    assert!(
        matches!(ended, Ok(Ok(0) | Err(_))),
        "the slow head's connection was not closed within 8 s: {ended:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    trickle.abort();

    // A body that stops half-way: 408 at the body timeout, and the connection closed.
    let before = app.metrics().await;
    let mut half = connect(&app).await;
    half.write_all(batch_head(1000, true).as_bytes())
        .await
        .expect("write");
    half.write_all(br#"{"events": [{"kind": "xp", "pla"#)
        .await
        .expect("write");
    let started = Instant::now();
    let (status, head, body) = answer(&mut half, Duration::from_secs(8))
        .await
        .expect("an answer within 8 s");
    let took = started.elapsed();
    assert_eq!(status, 408, "{head}\n{body}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(body.contains("/problems/request-timeout"), "{body}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
    assert!(closed_within(&mut half, Duration::from_secs(2)).await);
    let after = app.metrics().await;
    let timed_out = |m: &str| {
        metric_sum(
            m,
            "http_requests_refused_total",
            &["reason=\"body_timeout\""],
        )
    };
    assert!(timed_out(&after) - timed_out(&before) >= 1.0);
    // The gateway counts it as a body that did not arrive, not as a malformed one.
    let dropped = |m: &str, reason: &str| {
        let reason = format!("reason=\"{reason}\"");
        metric_sum(m, "dropped_events_total", &[reason.as_str()])
    };
    assert_eq!(
        dropped(&after, "timeout") - dropped(&before, "timeout"),
        1.0
    );
    assert_eq!(dropped(&after, "invalid"), dropped(&before, "invalid"));

    // No signature headers: 401 while the client has sent the head alone, long before the
    // body timeout, naming what is missing; no byte of the announced megabyte was read.
    let mut unsigned = connect(&app).await;
    unsigned
        .write_all(batch_head(1_000_000, false).as_bytes())
        .await
        .expect("write");
    let (status, head, body) = answer(&mut unsigned, Duration::from_millis(1500))
        .await
        .expect("refused before the body is sent");
    assert_eq!(status, 401, "{head}\n{body}");
    let missing = AuthError::MissingSignature.to_string();
    assert!(body.contains(&missing), "{body}");
    // Likewise a timestamp out of the window.
    let mut stale = connect(&app).await;
    let head = batch_head(1_000_000, true).replace(
        &format!("x-timestamp: {}", now()),
        &format!("x-timestamp: {}", now() - 3600),
    );
    stale.write_all(head.as_bytes()).await.expect("write");
    let (status, _, body) = answer(&mut stale, Duration::from_millis(1500))
        .await
        .expect("refused before the body is sent");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("outside the allowed window"), "{body}");

    app.shutdown().await;
}

#[tokio::test]
async fn past_the_in_flight_bound_requests_are_answered_503_and_probes_still_pass() {
    let app = spawn_app(&["--http-max-in-flight", "16", "--http-body-timeout", "3s"]).await;
    let before = app.metrics().await;
    // Sixteen signed batches whose bodies never come: each holds a slot until its body times out.
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut c = connect(&app).await;
        c.write_all(batch_head(1000, true).as_bytes())
            .await
            .expect("write");
        held.push(c);
    }
    // The sixteen are in (a seventeenth is refused), the probes and the metrics are not bound.
    let refused = common::eventually(Duration::from_secs(5), "the bound reached", || async {
        let a = app.get("/leaderboard?window=daily").await;
        (a.status == 503).then_some(a)
    })
    .await;
    refused.assert_problem(503);
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert_eq!(app.get("/healthz").await.status, 200);
    let after = app.metrics().await;
    let busy = |m: &str| metric_sum(m, "http_requests_refused_total", &["reason=\"busy\""]);
    assert!(busy(&after) - busy(&before) >= 1.0);
    // At the body timeout the sixteen are answered 408 and their slots are free again.
    for c in &mut held {
        let (status, _, _) = answer(c, Duration::from_secs(8)).await.expect("answer");
        assert_eq!(status, 408);
    }
    assert_eq!(app.get("/leaderboard?window=daily").await.status, 200);
    app.shutdown().await;
}
