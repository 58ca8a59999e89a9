//! Webhook deliveries, a durable queue in the repository: campaign events in the outbox become
//! one delivery per subscribed webhook; due deliveries are leased (so replicas do not send the
//! same one at once, and a crashed sender's lease runs out), posted, and their attempt recorded
//! under that lease only (a sender whose delivery another replica leased after its lease ran
//! out, or whose webhook was deleted meanwhile, changes nothing).
//! A failed attempt is retried after `WEBHOOK_BACKOFF_MS · 2^(attempt−1)` (plus up to 10 %
//! jitter, at most an hour); once it has failed [`MAX_ATTEMPTS`] times and is `WEBHOOK_RETRY_SEC`
//! old (a day by default, so a receiver down for a deploy or a night loses nothing), the
//! delivery is dead-lettered.
//!
//! Each delivery is signed: `X-LiveOps-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`, with `X-LiveOps-Event` (its kind) and `X-LiveOps-Delivery` (its id, the same
//! on every retry, for receivers to drop duplicates).

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hmac::{Hmac, Mac};
use liveops_core::stores::{Attempt, Delivery, DeliveryState, DueDelivery};
use liveops_core::{now_ms, PortError, PortResult};
use liveops_http::rfc3339;
use liveops_module::tick::every_tick;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::{target, DistributionState};

/// Attempts before a delivery may be dead-lettered (once it is also `WEBHOOK_RETRY_SEC` old).
pub const MAX_ATTEMPTS: u32 = 10;
/// How often the queue is looked at.
const TICK: Duration = Duration::from_millis(500);
/// Most deliveries sent at once by one replica.
const PARALLEL: u32 = 16;
/// Most outbox events turned into deliveries per tick.
const EVENTS: u32 = 200;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The `X-LiveOps-Signature` value for `body` sent at unix second `t`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Runs the queue until `stop`.
pub async fn run_webhooks(
    state: DistributionState,
    stop: CancellationToken,
) -> Result<(), PortError> {
    let failing = "webhook queue cannot reach the repository";
    let state = &state;
    every_tick(TICK, stop, failing, move || async move {
        // Queued retries go on even while new events cannot be queued (and the reverse).
        let queued = fan_out(state).await;
        deliver_due(state).await.and(queued)
    })
    .await
}

/// Turns new outbox events into deliveries, one per webhook subscribed to their kind.
async fn fan_out(state: &DistributionState) -> PortResult<()> {
    let events = state.webhooks.undelivered_events(EVENTS).await?;
    if events.is_empty() {
        return Ok(());
    }
    let hooks = state.webhooks.webhooks().await?;
    let now = now_ms();
    let mut deliveries = Vec::new();
    for (id, e) in &events {
        let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
        let body = json!({
            "id": format!("evt_{id}"),
            "type": e.kind,
            "createdAt": rfc3339(e.at_ms),
            "data": data,
        })
        .to_string();
        for h in hooks.iter().filter(|h| h.events.contains(&e.kind)) {
            deliveries.push(Delivery {
                id: format!("dlv_{}", uuid::Uuid::now_v7().simple()),
                webhook_id: h.id.clone(),
                event_id: *id,
                kind: e.kind.clone(),
                body: body.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at_ms: now,
                created_at_ms: now,
            });
        }
    }
    let ids: Vec<i64> = events.iter().map(|(id, _)| *id).collect();
    state.webhooks.enqueue(&ids, &deliveries).await
}

/// Sends every due delivery this replica can lease.
async fn deliver_due(state: &DistributionState) -> PortResult<()> {
    let now = now_ms();
    // Long enough for an attempt to finish; a crashed sender's deliveries come back after it.
    let lease = state.config.webhook_timeout + Duration::from_secs(10);
    let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let due = state.webhooks.lease_due(now, until, PARALLEL).await?;
    for result in join_all(due.into_iter().map(|d| attempt(state, d))).await {
        result?;
    }
    Ok(())
}

/// Whether a delivery `age_ms` old whose attempt `attempts` just failed is dead-lettered.
fn gives_up(attempts: u32, age_ms: i64, retry: Duration) -> bool {
    attempts >= MAX_ATTEMPTS && age_ms >= i64::try_from(retry.as_millis()).unwrap_or(i64::MAX)
}

/// The wait before attempt `attempts + 1`, after `attempts` failed.
fn backoff(base: Duration, attempts: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let jitter = exp.mul_f64(rand::random::<f64>() * 0.1);
    (exp + jitter).min(MAX_BACKOFF)
}

async fn attempt(state: &DistributionState, due: DueDelivery) -> PortResult<()> {
    let started_ms = now_ms();
    let clock = Instant::now();
    // The whole attempt, the name's lookup included, ends well within the lease: a second
    // replica never sends it meanwhile.
    let timeout = state.config.webhook_timeout;
    let result = tokio::time::timeout(timeout, send(state, &due))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())));
    let n = due.delivery.attempts + 1;
    let leased_until = due.delivery.next_attempt_at_ms;
    let mut d = due.delivery;
    d.attempts = n;
    let (status, error, result_label) = match result {
        Ok(status) if (200..300).contains(&status) => {
            d.state = DeliveryState::Delivered;
            (Some(status), None, "delivered")
        }
        other => {
            let (status, error) = match other {
                Ok(s) => (Some(s), format!("answered HTTP {s}")),
                Err(e) => (None, e),
            };
            if gives_up(n, now_ms() - d.created_at_ms, state.config.webhook_retry) {
                d.state = DeliveryState::Dead;
                tracing::warn!(delivery = %d.id, webhook = %d.webhook_id, attempts = n, %error, "webhook delivery dead-lettered");
                (status, Some(error), "dead")
            } else {
                let wait = backoff(state.config.webhook_backoff, n);
                d.next_attempt_at_ms =
                    now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                tracing::info!(delivery = %d.id, attempt = n, %error, retry_in_ms = wait.as_millis() as u64, "webhook delivery failed; will retry");
                (status, Some(error), "failed")
            }
        }
    };
    let a = Attempt {
        attempt: n,
        at_ms: started_ms,
        status,
        error: error.map(|e| e.chars().take(500).collect()),
        duration_ms: i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX),
    };
    let result_label = if state.webhooks.record_attempt(leased_until, &d, &a).await? {
        result_label
    } else {
        // Sent past its lease (a stalled write), or its webhook was deleted meanwhile: what the
        // delivery now holds (another replica's attempt, its dead state) stands.
        tracing::warn!(delivery = %d.id, webhook = %d.webhook_id, attempt = n, "webhook attempt not recorded: its lease was lost");
        "lease_lost"
    };
    metrics::counter!("webhook_deliveries_total", "result" => result_label).increment(1);
    Ok(())
}

/// Posts one delivery; the HTTP status, or why there is none.
async fn send(state: &DistributionState, due: &DueDelivery) -> Result<u16, String> {
    let cfg = &state.config;
    let url = target::parse_url(&due.url)?;
    let addrs = target::resolve(&url, cfg.allow_private).await?;
    let host = url.host_str().unwrap_or_default().to_owned();
    // No timeout of its own: the caller bounds the whole attempt, the lookup above included.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment would resolve the name itself, past the address check.
        .no_proxy()
        .resolve_to_addrs(&host, &addrs)
        .user_agent("liveops-webhooks/1")
        .build()
        .map_err(|e| format!("cannot build a client: {e}"))?;
    let t = now_ms().div_euclid(1000);
    let d = &due.delivery;
    client
        .post(url)
        .header("content-type", "application/json")
        .header("x-liveops-signature", signature(&due.secret, t, &d.body))
        .header("x-liveops-event", &d.kind)
        .header("x-liveops-delivery", &d.id)
        .body(d.body.clone())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| {
            let what = if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            format!("{what}: {}", causes(&e))
        })
}

/// An error and every cause under it, `: `-joined (reqwest's own text names no cause: not a
/// refused connection, a timeout nor a certificate the receiver must renew).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an operator reads of a failed attempt says why: here the refused connection.
    #[tokio::test]
    async fn a_failed_attempt_names_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let Err(e) = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/hook"))
            .send()
            .await
        else {
            panic!("nothing listens on {port}");
        };
        let text = causes(&e).to_lowercase();
        assert!(text.contains("refused"), "{text}");
        assert!(
            !e.to_string().to_lowercase().contains("refused"),
            "reqwest alone: {e}"
        );
    }

    #[test]
    fn signatures_follow_the_documented_form() {
        // printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let base = Duration::from_secs(1);
        for (attempts, want) in [(1, 1), (2, 2), (3, 4), (10, 512)] {
            let got = backoff(base, attempts);
            let want = Duration::from_secs(want);
            assert!(
                got >= want && got <= want.mul_f64(1.1),
                "{attempts}: {got:?}"
            );
        }
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
    }

    #[test]
    fn a_delivery_is_dead_after_ten_failures_once_it_is_old_enough() {
        let day = Duration::from_secs(86_400);
        let day_ms = 86_400_000;
        // Ten failures within minutes (the default backoff): retried on, hourly.
        assert!(!gives_up(10, 511_000, day));
        assert!(!gives_up(30, day_ms - 1, day));
        assert!(gives_up(30, day_ms, day));
        // However old, fewer than ten attempts go on.
        assert!(!gives_up(9, 10 * day_ms, day));
        // With no retry time, ten attempts as before.
        assert!(gives_up(10, 0, Duration::ZERO));
        // The default schedule makes 10 attempts in 8.5 minutes, then one an hour: a receiver
        // down for a day still gets every event.
        let waits: Duration = (1..MAX_ATTEMPTS)
            .map(|n| backoff(Duration::from_secs(1), n))
            .sum();
        assert!(waits < Duration::from_secs(600), "{waits:?}");
    }
}
