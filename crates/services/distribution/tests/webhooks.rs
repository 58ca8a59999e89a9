//! Webhook deliveries as receivers see them: the body's `id`, by which a receiver drops repeats,
//! is the event's public id as stored with it, in the delivery to every webhook and on every
//! retry and redelivery. And what distribution keeps: finished deliveries, their events and
//! expired messages go once past their retention settings, not sooner. Real adapters: the
//! SQLite repository and a local receiver.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use liveops_core::now_ms;
use liveops_core::stores::{
    AuditEntry, CampaignEvent, CampaignState, CampaignStore, Delivery, DeliveryLog, DeliveryPage,
    DeliveryState, InboxMessage, InboxPage, InboxStore, Webhook, WebhookStore,
};
use liveops_distribution::{purge, run_webhooks, DistributionState};
use liveops_sql::SqliteRepository;
use liveops_testkit::conformance::live::{audit, campaign, create_in, finish, WRITTEN};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What a receiver got: the path posted to, the body's `id` and the `X-LiveOps-Delivery` header.
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

/// A receiver on a free loopback port: `/a` answers 200, `/b` whatever `b_status` holds.
async fn receiver(b_status: Arc<AtomicU16>) -> (std::net::SocketAddr, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/{hook}",
        axum::routing::post(
            move |axum::extract::Path(hook): axum::extract::Path<String>,
                  headers: HeaderMap,
                  body: Bytes| {
                let (keep, b_status) = (keep.clone(), b_status.clone());
                async move {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let id = body["id"].as_str().unwrap_or_default().to_owned();
                    let delivery = headers
                        .get("x-liveops-delivery")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    keep.lock().unwrap().push((hook.clone(), id, delivery));
                    let status = if hook == "b" {
                        b_status.load(Ordering::SeqCst)
                    } else {
                        200
                    };
                    StatusCode::from_u16(status).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

/// Distribution's state over `repo`, retrying at once and dead-lettering after ten attempts.
fn state(repo: &Arc<SqliteRepository>) -> DistributionState {
    common::state(repo, Duration::from_millis(1))
}

/// Waits up to 30 s for `done` to hold.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the webhooks `whk_a` and `whk_b`, to `url` of `a` and `b`, subscribed to
/// `campaign.live`.
async fn create_hooks(repo: &SqliteRepository, url: impl Fn(&str) -> String, created_at_ms: i64) {
    for name in ["a", "b"] {
        let hook = Webhook {
            id: format!("whk_{name}"),
            url: url(name),
            events: vec!["campaign.live".into()],
            secret: "whsec_0123456789abcdef".into(),
            created_by: "ops@example.com".into(),
            created_at_ms,
        };
        let entry = audit("webhook.create", &hook.id);
        let made = repo.create_webhook(None, &hook, &entry, common::MAX_WEBHOOKS);
        assert_eq!(made.await.unwrap(), WRITTEN);
    }
}

/// The state of webhook `hook`'s only delivery.
async fn delivery_state(repo: &SqliteRepository, hook: &str) -> Option<DeliveryState> {
    let listed = repo
        .deliveries(hook, DeliveryPage::newest(10))
        .await
        .unwrap();
    listed.first().map(|(d, _)| d.state)
}

/// An event goes to two webhooks: one takes it at once, the other fails ten times (dead), then
/// takes it once redelivered. Every post, to either, carries the event's stored public id as
/// the body's `id` (random, not `evt_<outbox key>`); each webhook's own attempts share its
/// delivery id; the deliveries are listed with that event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_of_an_event_carries_its_stored_id() {
    let (_dir, repo) = common::repo().await;
    let b_status = Arc::new(AtomicU16::new(500));
    let (addr, received) = receiver(b_status.clone()).await;
    create_hooks(&repo, |name| format!("http://{addr}/{name}"), now_ms()).await;
    let c = campaign("announced");
    create_in(&*repo, &c, CampaignState::Scheduled).await;
    let live = CampaignEvent {
        kind: "campaign.live".into(),
        campaign_id: c.id.clone(),
        at_ms: now_ms(),
        data: format!("{{\"campaignId\":\"{}\"}}", c.id),
    };
    let (scheduled, to) = (CampaignState::Scheduled, CampaignState::Live);
    assert!(repo
        .advance(&c.id, scheduled, to, Some(&live))
        .await
        .unwrap());
    let waiting = repo.undispatched(10).await.unwrap();
    let ids: Vec<i64> = waiting.iter().map(|e| e.id).collect();
    let stored = repo.undelivered_events(&ids).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let (key, public_id) = (stored[0].id, stored[0].public_id.clone());
    assert_ne!(public_id, format!("evt_{key}"), "not the outbox key");

    let state = state(&repo);
    let stop = CancellationToken::new();
    let queue = tokio::spawn(run_webhooks(state, stop.clone()));
    until("delivered to a and dead at b", async || {
        let a = delivery_state(&repo, "whk_a").await;
        let b = delivery_state(&repo, "whk_b").await;
        (a, b) == (Some(DeliveryState::Delivered), Some(DeliveryState::Dead))
    })
    .await;
    b_status.store(200, Ordering::SeqCst);
    let entry = AuditEntry {
        at_ms: now_ms(),
        actor: "ops@example.com".into(),
        action: "webhook.redeliver".into(),
        target: "whk_b".into(),
        before: None,
        after: None,
    };
    let again = repo.redeliver("whk_b", &[], 500, now_ms(), &entry).await;
    assert_eq!(again.unwrap().expect("active").ids.len(), 1);
    until("redelivered to b", async || {
        delivery_state(&repo, "whk_b").await == Some(DeliveryState::Delivered)
    })
    .await;
    stop.cancel();
    queue.await.unwrap().unwrap();

    let got = received.lock().unwrap().clone();
    let posts = |hook: &str| got.iter().filter(|(h, _, _)| h == hook).count();
    assert_eq!(posts("a"), 1, "{got:?}");
    assert_eq!(posts("b"), 11, "ten failures, then the redelivery: {got:?}");
    for (hook, id, _) in &got {
        assert_eq!(*id, public_id, "the stored id, to {hook}");
    }
    for hook in ["a", "b"] {
        let listed = repo
            .deliveries(&format!("whk_{hook}"), DeliveryPage::newest(10))
            .await
            .unwrap();
        let (d, _) = &listed[0];
        assert_eq!(d.event_public_id, public_id, "listed for {hook}");
        let sent: Vec<&str> = got
            .iter()
            .filter(|(h, _, _)| h == hook)
            .map(|(_, _, delivery)| delivery.as_str())
            .collect();
        assert!(sent.iter().all(|s| *s == d.id), "{hook}: {sent:?}");
    }
}

/// With the default settings (30 days for finished deliveries, 90 after expiry for messages), a
/// purge deletes a delivery finished 31 days ago and a message expired 91 days ago, and keeps
/// those a day or two younger, a live message and the event whose delivery is left; two days
/// later those go too (the event once its last delivery went), the live message still stays.
#[tokio::test]
async fn what_is_past_its_retention_goes_and_nothing_sooner() {
    const DAY: i64 = 86_400_000;
    let (_dir, repo) = common::repo().await;
    let state = state(&repo);
    let now = now_ms();
    let url = |name: &str| format!("https://hooks.example.com/{name}");
    create_hooks(&repo, url, now - 60 * DAY).await;
    let c = campaign("kept");
    create_in(&*repo, &c, CampaignState::Scheduled).await;
    let live = CampaignEvent {
        kind: "campaign.live".into(),
        campaign_id: c.id.clone(),
        at_ms: now - 40 * DAY,
        data: "{}".into(),
    };
    let (scheduled, to) = (CampaignState::Scheduled, CampaignState::Live);
    assert!(repo
        .advance(&c.id, scheduled, to, Some(&live))
        .await
        .unwrap());
    let event = repo.undispatched(10).await.unwrap()[0].id;
    // Finished 31 days ago at a, 29 days ago at b (its last attempt's lease then).
    let delivery = |hook: &str, ended: i64| Delivery {
        id: format!("dlv_{hook}"),
        webhook_id: format!("whk_{hook}"),
        event_id: event,
        event_public_id: "evt_0123456789abcdef0123456789abcdef".into(),
        kind: "campaign.live".into(),
        body: "{}".into(),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at_ms: ended,
        created_at_ms: now - 40 * DAY,
    };
    let queued = [delivery("a", now - 31 * DAY), delivery("b", now - 29 * DAY)];
    repo.enqueue(&[event], &queued).await.unwrap();
    for (d, state) in queued
        .iter()
        .zip([DeliveryState::Delivered, DeliveryState::Dead])
    {
        assert!(finish(&*repo, d, state, 200).await.unwrap());
    }
    let message = |id: &str, expires_at_ms: i64| InboxMessage {
        message_id: id.into(),
        player_id: Some("player_1".into()),
        campaign_id: None,
        title: "Prize".into(),
        body: "Yours".into(),
        attachments: vec!["gold_chest".into()],
        created_at_ms: now - 120 * DAY,
        expires_at_ms,
    };
    let messages = [
        message("msg_old", now - 91 * DAY),
        message("msg_recent", now - 89 * DAY),
        message("msg_live", now + DAY),
    ];
    let entry = audit("inbox.send", "player_1");
    repo.send_messages(None, &messages, &entry).await.unwrap();
    let listed = async || -> Vec<String> {
        let page = InboxPage {
            limit: 10,
            live_at_ms: None,
            below: None,
        };
        let inbox = repo.inbox("player_1", page).await.unwrap();
        let mut ids: Vec<String> = inbox.into_iter().map(|l| l.message.message_id).collect();
        ids.sort();
        ids
    };
    let left = async |hook: &str| delivery_state(&repo, hook).await;

    assert_eq!(purge(&state, now).await.unwrap(), [1, 0, 1]);
    assert_eq!(left("whk_a").await, None, "finished 31 days ago: gone");
    assert_eq!(
        left("whk_b").await,
        Some(DeliveryState::Dead),
        "29 days: kept"
    );
    assert_eq!(listed().await, ["msg_live", "msg_recent"]);

    assert_eq!(purge(&state, now + 2 * DAY).await.unwrap(), [1, 1, 1]);
    assert_eq!(left("whk_b").await, None);
    assert_eq!(
        listed().await,
        ["msg_live"],
        "a live message stays however old"
    );
    // An hour on (a purge of the hour before is not walked again), nothing is left.
    assert_eq!(
        purge(&state, now + 2 * DAY + DAY / 24).await.unwrap(),
        [0, 0, 0]
    );
}
