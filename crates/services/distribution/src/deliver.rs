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
//! A tick queues the oldest outbox events up to about [`FAN_OUT_BYTES`] of bodies (one event
//! at least), so events too large to queue together go over several ticks instead of failing
//! together on every one; `webhook_outbox_oldest_undispatched_seconds` is the age of the oldest
//! still waiting. A replica keeps up to [`PARALLEL`] attempts in flight, at most
//! [`PER_WEBHOOK`] to one webhook, and leases another as soon as one ends: a receiver that
//! accepts posts but never answers slows its own deliveries only. The cap is per replica (a
//! lease holds no sender), so with several replicas one webhook holds that many per replica.
//!
//! Each delivery is signed: `X-LiveOps-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
//! "<t>.<body>")>`, with `X-LiveOps-Event` (its kind) and `X-LiveOps-Delivery` (its id, the same
//! on every retry). Receivers drop repeats by the signed body's `id`: the event's public id
//! (`evt_` and 32 hex digits, random), the same in its delivery to every webhook and on every
//! retry and redelivery, and never given again (not after a restore, not by another deployment).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use liveops_core::stores::distribution::OutboxEvent;
use liveops_core::stores::{Attempt, Delivery, DeliveryState, DueDelivery, Webhook, WebhookStore};
use liveops_core::{now_ms, PortError, PortResult};
use liveops_http::rfc3339;
use liveops_module::tick::{every_tick, Failures};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{target, DistributionState};

/// Attempts before a delivery may be dead-lettered (once it is also `WEBHOOK_RETRY_SEC` old).
pub const MAX_ATTEMPTS: u32 = 10;
/// How often the outbox is looked at, and the queue when no attempt ends sooner.
const TICK: Duration = Duration::from_millis(500);
/// Most attempts one replica has in flight.
const PARALLEL: u32 = 16;
/// Most attempts one replica has in flight to one webhook: a receiver that never answers holds
/// this many slots, not all of them.
const PER_WEBHOOK: u32 = 4;
/// Most outbox events turned into deliveries per tick.
const EVENTS: u32 = 200;
/// Bodies (times the webhooks subscribed) queued per tick at most, past the first event: the
/// queueing transaction stays well within its time bound however large the events.
const FAN_OUT_BYTES: u64 = 8 * 1024 * 1024;
/// What a delivery body adds to its event's data (id, type, time).
const ENVELOPE_BYTES: u64 = 128;
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

/// Runs the queue until `stop`: the outbox fanned out every tick, and deliveries sent as
/// attempts end (see `send_due`).
pub async fn run_webhooks(
    state: DistributionState,
    stop: CancellationToken,
) -> Result<(), PortError> {
    // Queued retries go on even while new events cannot be queued (and the reverse).
    let failing = "webhook outbox cannot be queued";
    let webhooks = state.webhooks.clone();
    let fanning = every_tick(TICK, stop.clone(), failing, move || {
        let webhooks = webhooks.clone();
        async move { fan_out(webhooks.as_ref()).await }
    });
    let (fanned, sent) = tokio::join!(fanning, send_due(state, stop));
    fanned.and(sent)
}

/// Turns the oldest outbox events into deliveries, one per webhook subscribed to their kind: as
/// many as fit in [`FAN_OUT_BYTES`] of bodies ([`batch_len`]), at least one. Sets
/// `webhook_outbox_oldest_undispatched_seconds`; the events queued.
async fn fan_out(store: &dyn WebhookStore) -> PortResult<usize> {
    let waiting = store.undispatched(EVENTS).await?;
    let oldest_ms = waiting.first().map_or(0, |e| (now_ms() - e.at_ms).max(0));
    metrics::gauge!("webhook_outbox_oldest_undispatched_seconds").set(oldest_ms as f64 / 1000.0);
    if waiting.is_empty() {
        return Ok(0);
    }
    let hooks = store.webhooks().await?;
    let batch = &waiting[..batch_len(&waiting, &hooks, FAN_OUT_BYTES)];
    let ids: Vec<i64> = batch.iter().map(|e| e.id).collect();
    // Those another replica queued meanwhile are not read again.
    let events = store.undelivered_events(&ids).await?;
    if events.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let mut deliveries = Vec::new();
    for u in &events {
        let e = &u.event;
        let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
        // The event's public id, never its outbox row's key: one body for every webhook, kept
        // with each delivery and sent again as it is on every retry and redelivery.
        let body = json!({
            "id": u.public_id,
            "type": e.kind,
            "createdAt": rfc3339(e.at_ms),
            "data": data,
        })
        .to_string();
        for h in hooks.iter().filter(|h| h.events.contains(&e.kind)) {
            deliveries.push(Delivery {
                id: format!("dlv_{}", uuid::Uuid::now_v7().simple()),
                webhook_id: h.id.clone(),
                event_id: u.id,
                event_public_id: u.public_id.clone(),
                kind: e.kind.clone(),
                body: body.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at_ms: now,
                created_at_ms: now,
            });
        }
    }
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    store.enqueue(&ids, &deliveries).await?;
    Ok(ids.len())
}

/// How many of `waiting` (oldest first) one fan-out queues: those whose bodies, each times the
/// webhooks subscribed to its kind, add up to at most `budget` bytes; at least one.
fn batch_len(waiting: &[OutboxEvent], hooks: &[Webhook], budget: u64) -> usize {
    let mut bytes = 0u64;
    for (i, e) in waiting.iter().enumerate() {
        let subscribed = hooks.iter().filter(|h| h.events.contains(&e.kind)).count();
        let body = e.data_bytes.saturating_add(ENVELOPE_BYTES);
        bytes = bytes.saturating_add(body.saturating_mul(subscribed as u64));
        if i > 0 && bytes > budget {
            return i;
        }
    }
    waiting.len()
}

/// Sends due deliveries until `stop`: up to [`PARALLEL`] attempts in flight, at most
/// [`PER_WEBHOOK`] to one webhook, more leased as soon as one ends (and every tick), so a
/// receiver that never answers slows only its own deliveries. Stopped, the attempts in flight
/// are dropped: their leases run out and they are sent again (at least once).
async fn send_due(state: DistributionState, stop: CancellationToken) -> Result<(), PortError> {
    let mut log = Failures::new("webhook queue cannot reach the repository", TICK);
    let mut flight = InFlight::default();
    let mut timer = tokio::time::interval(TICK);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let filled = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            r = flight.fill(&state) => r,
        };
        log.note(filled);
        // Until an attempt ends (its slot is filled at once) or the next tick.
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            Some(first) = flight.tasks.join_next_with_id() => {
                // That one and any others that ended meanwhile.
                let mut done = Some(first);
                while let Some(d) = done.take().or_else(|| flight.tasks.try_join_next_with_id()) {
                    log.note(flight.ended(d));
                }
            }
            _ = timer.tick() => {}
        }
    }
}

/// One replica's attempts in flight, and the webhook of each.
#[derive(Default)]
struct InFlight {
    /// The attempts.
    tasks: JoinSet<PortResult<()>>,
    /// Each attempt's webhook.
    hooks: HashMap<Id, String>,
    /// Attempts in flight per webhook.
    per_hook: HashMap<String, u32>,
}

impl InFlight {
    /// Leases due deliveries into the free slots and starts their attempts.
    async fn fill(&mut self, state: &DistributionState) -> PortResult<()> {
        let free = PARALLEL.saturating_sub(u32::try_from(self.tasks.len()).unwrap_or(u32::MAX));
        if free == 0 {
            return Ok(());
        }
        let now = now_ms();
        // Long enough for an attempt to finish; a crashed sender's deliveries come back after it.
        let lease = state.config.webhook_timeout + Duration::from_secs(10);
        let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let due = state
            .webhooks
            .lease_due(now, until, free, PER_WEBHOOK, &self.per_hook)
            .await?;
        for d in due {
            let hook = d.delivery.webhook_id.clone();
            let state = state.clone();
            let task = self.tasks.spawn(async move { attempt(&state, d).await });
            *self.per_hook.entry(hook.clone()).or_insert(0) += 1;
            self.hooks.insert(task.id(), hook);
        }
        Ok(())
    }

    /// Frees the slot of an attempt that ended; what it came to (an attempt that panicked is
    /// logged: its lease runs out and it is sent again).
    fn ended(&mut self, done: Result<(Id, PortResult<()>), JoinError>) -> PortResult<()> {
        let (id, outcome) = match done {
            Ok((id, outcome)) => (id, outcome),
            Err(e) => {
                tracing::error!(error = %e, "webhook attempt panicked; it is sent again once its lease runs out");
                (e.id(), Ok(()))
            }
        };
        if let Some(hook) = self.hooks.remove(&id) {
            if let Some(n) = self.per_hook.get_mut(&hook) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_hook.remove(&hook);
                }
            }
        }
        outcome
    }
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

    /// An outbox event of `bytes` bytes of data, of `kind`.
    fn waiting(id: i64, kind: &str, bytes: u64) -> OutboxEvent {
        OutboxEvent {
            id,
            kind: kind.into(),
            campaign_id: "cmp_1".into(),
            at_ms: 0,
            data_bytes: bytes,
        }
    }

    /// A webhook subscribed to `events`.
    fn hook(id: &str, events: &[&str]) -> Webhook {
        Webhook {
            id: id.into(),
            url: "https://hooks.example.com/liveops".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            secret: "whsec_0123456789abcdef".into(),
            created_by: "ops@example.com".into(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_fan_out_batch_counts_each_body_once_per_subscribed_webhook() {
        let mb = 1_000_000 - ENVELOPE_BYTES;
        let hooks = [
            hook("a", &["draw.completed", "campaign.live"]),
            hook("b", &["draw.completed"]),
        ];
        let draws: Vec<OutboxEvent> = (1..=10).map(|i| waiting(i, "draw.completed", mb)).collect();
        // Two bodies of a megabyte per draw: four draws in 8 MB, not five.
        assert_eq!(batch_len(&draws, &hooks, 8_000_000), 4);
        assert_eq!(batch_len(&draws, &hooks, 7_999_999), 3);
        // One is queued however large; nobody subscribed weighs nothing.
        assert_eq!(batch_len(&draws, &hooks, 10), 1);
        let unwatched: Vec<OutboxEvent> =
            (1..=10).map(|i| waiting(i, "campaign.ended", mb)).collect();
        assert_eq!(batch_len(&unwatched, &hooks, 10), 10);
        assert_eq!(batch_len(&[], &hooks, 10), 0);
    }

    /// Draws of about a megabyte each to two webhooks are queued over several ticks, each
    /// within the byte budget, oldest first, until every one has its deliveries; the old
    /// fan-out queued up to 200 events in one transaction whatever their size.
    #[tokio::test]
    async fn large_events_are_fanned_out_in_batches_bounded_by_bytes() {
        use liveops_core::stores::{
            CampaignEvent, CampaignState, CampaignStore, DeliveryLog, DeliveryPage,
        };
        use liveops_testkit::conformance::live::{audit, campaign, create_in, WRITTEN};

        let dir = tempfile::tempdir().expect("tempdir");
        let repo = liveops_sql::SqliteRepository::open_migrated(&dir.path().join("liveops.db"))
            .await
            .expect("repository");
        let hooks = [
            hook("whk_a", &["draw.completed"]),
            hook("whk_b", &["draw.completed"]),
        ];
        for h in &hooks {
            let entry = audit("webhook.create", &h.id);
            let made = repo.create_webhook(None, h, &entry, hooks.len() as u32);
            assert_eq!(made.await.expect("create_webhook"), WRITTEN);
        }
        let awards: Vec<String> = (0..10_000)
            .map(|i| {
                format!("{{\"playerId\":\"player_{i:05}\",\"item\":\"chest_of_gold\",\"tier\":1}}")
            })
            .collect();
        let mut events = Vec::new();
        for _ in 0..12 {
            let c = campaign("drawn");
            create_in(&repo, &c, CampaignState::Live).await;
            let drawn = CampaignEvent {
                kind: "draw.completed".into(),
                campaign_id: c.id.clone(),
                at_ms: now_ms(),
                data: format!(
                    "{{\"campaignId\":\"{}\",\"awards\":[{}]}}",
                    c.id,
                    awards.join(",")
                ),
            };
            let ended = repo.advance(
                &c.id,
                CampaignState::Live,
                CampaignState::Ended,
                Some(&drawn),
            );
            assert!(ended.await.expect("advance"));
            events.push(drawn);
        }
        let size = events[0].data.len() as u64;
        assert!((500_000..1_000_000).contains(&size), "{size}");
        let per_tick = FAN_OUT_BYTES / (2 * (size + ENVELOPE_BYTES));
        let mut ticks = Vec::new();
        loop {
            let queued = fan_out(&repo).await.expect("fan_out");
            if queued == 0 {
                break;
            }
            ticks.push(queued);
            assert!(ticks.len() <= 12, "{ticks:?}");
        }
        assert_eq!(ticks.iter().sum::<usize>(), 12, "{ticks:?}");
        assert!(
            ticks.len() > 1,
            "one batch of {} bytes: {ticks:?}",
            24 * size
        );
        for t in &ticks {
            assert!(*t as u64 <= per_tick, "{t} of {per_tick}: {ticks:?}");
        }
        for h in &hooks {
            let listed = repo.deliveries(&h.id, DeliveryPage::newest(100)).await;
            let listed = listed.expect("deliveries");
            assert_eq!(listed.len(), 12, "every draw queued to {}", h.id);
        }
        assert!(repo
            .undispatched(100)
            .await
            .expect("undispatched")
            .is_empty());
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
