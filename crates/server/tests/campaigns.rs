//! Live-event campaigns end to end on the embedded default: the whole story in one process, the
//! webhook queue's retries and dead letters, refused webhook targets, operators on the fairness
//! routes, settlement surviving `kill -9` of the real binary with one message and one receipt
//! per winner, and bursts of entries and claims surviving it with nothing answered lost (both
//! also with the campaigns on PostgreSQL and MariaDB).

mod common;

use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::campaign::{
    campaign_story, gated_receiver, open_campaign, problem, read, receiver, receiver_answering,
    ApiKey, Live, LiveUrls, ADMIN_EMAIL, ADMIN_PASSWORD,
};
use common::{eventually, free_port, spawn_app, spawn_serve, wait_ready, TestApp};
use liveops_campaigns::CampaignView;
use liveops_core::draw::PublishedDraw;
use liveops_core::stores::CampaignState;
use liveops_distribution::{
    ClaimAnswer, DeliveryList, MessageView, RedeliveryView, Sent, WebhookView,
};
use liveops_fairness::PlayerFairness;
use liveops_operators::{AuditList, CreatedApiKey};
use liveops_testkit::served::metric_sum;
use serde_json::json;

/// The flags every in-process app of this file starts with: the bootstrap admin, local
/// webhook receivers, quick ticks.
const LIVE: &[&str] = &[
    "--admin-email",
    ADMIN_EMAIL,
    "--admin-password",
    ADMIN_PASSWORD,
    "--webhook-allow-private",
    "true",
    "--campaign-tick-ms",
    "200",
    "--draw-tick-ms",
    "200",
    "--settle-tick-ms",
    "200",
];

/// An in-process app started with [`LIVE`] and `extra`, a client of it, and the bootstrap admin's
/// token.
async fn live_app(extra: &[&str]) -> (TestApp, Live, String) {
    let app = spawn_app(&[LIVE, extra].concat()).await;
    let live = Live::new(LiveUrls::all(&app.base));
    let admin = live.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    (app, live, admin)
}

/// The whole story with secrets sealed at rest (ADR 0032): the API key signs, the webhook's
/// deliveries verify and the draw opens its seed, while the webhook's secret is nowhere in the
/// database's files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draw_campaign_runs_from_creation_to_claimed_receipts_on_the_embedded_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = common::sealing_keys_in(dir.path());
    let data = dir.path().join("data");
    let flags = ["--secrets-keys-file", keys.to_str().expect("utf-8 path")];
    let app = common::spawn_app_in(data.clone(), &[LIVE, &flags].concat()).await;
    campaign_story(LiveUrls::all(&app.base), "embedded").await;
    app.shutdown().await;
    let held = database_files_holding(&data, b"whsec_story_0123456789");
    assert!(
        held.is_empty(),
        "the webhook secret is in the clear in {held:?}"
    );
}

/// The files of the embedded database under `data` (with its WAL) whose bytes hold `needle`.
fn database_files_holding(data: &Path, needle: &[u8]) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(data).expect("the data directory") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name else { continue };
        if !name.starts_with("liveops.db") {
            continue;
        }
        // The WAL and its index may go as the last connection closes.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if bytes.windows(needle.len()).any(|w| w == needle) {
            files.push(name);
        }
    }
    assert!(
        !files.is_empty() || data.join("liveops.db").exists(),
        "no database under {data:?}"
    );
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_password_guesses_get_no_more_tries_than_the_account_limit() {
    let (app, live, _admin) = live_app(&["--login-max-failures", "3"]).await;
    let guesses = (0..12).map(|i| {
        let live = live.clone();
        tokio::spawn(async move {
            live.login(ADMIN_EMAIL, &format!("not the password {i}"))
                .await
        })
    });
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.expect("join").0);
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (3, 9), "{statuses:?}");
    // Locked: the right password waits out the window too.
    let (s, b) = live.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(s, 429, "{b}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rank_campaigns_pay_only_on_the_windows_the_leaderboard_ranks() {
    let (app, live, admin) = live_app(&["--lb-windows", "daily,weekly"]).await;
    // The document offers a rank reward only the ranked windows...
    let (s, doc) = live.get(format!("{}/openapi.json", app.base), None).await;
    assert_eq!(s, 200);
    let variants = doc["components"]["schemas"]["Reward"]["oneOf"].as_array();
    let rank = variants
        .into_iter()
        .flatten()
        .find_map(|v| v["properties"].get("window"))
        .expect("a rank variant");
    assert_eq!(rank["enum"], json!(["daily", "weekly"]), "{rank}");
    // ...and the server refuses another, naming the field.
    let start = chrono::Utc::now() + chrono::Duration::minutes(1);
    let tiers = json!([{"fromRank": 1, "toRank": 1, "item": "crown"}]);
    for (window, status) in [("seasonal", 400), ("weekly", 201)] {
        let reward = json!({"kind": "rank", "window": window, "tiers": tiers});
        let body = open_campaign(
            "Ranked",
            start,
            chrono::Duration::minutes(5),
            "once",
            reward,
        );
        let (s, b) = live
            .post(format!("{}/campaigns", app.base), &admin, body)
            .await;
        assert_eq!(s, status, "{window}: {b}");
        if s == 400 {
            assert_eq!(problem(&b).field.as_deref(), Some("reward.window"), "{b}");
        }
    }
    app.shutdown().await;
}

/// `POST /inbox/messages` under `key` as `token`: status, `Idempotent-Replayed`, body.
async fn send_keyed(
    live: &Live,
    token: &str,
    key: &str,
    body: &serde_json::Value,
) -> (u16, bool, serde_json::Value) {
    let url = format!("{}/inbox/messages", live.urls.distribution);
    let (status, replayed, text) = post_keyed(live, token, url, key, body.to_string()).await;
    (
        status,
        replayed,
        serde_json::from_str(&text).expect("a JSON answer"),
    )
}

/// POSTs the JSON text `body` to `url` as `token` under the `Idempotency-Key` `key`: the status,
/// whether the answer is marked a replay, and its body as sent.
async fn post_keyed(
    live: &Live,
    token: &str,
    url: String,
    key: &str,
    body: String,
) -> (u16, bool, String) {
    let res = live
        .http
        .post(url)
        .bearer_auth(token)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = res.status().as_u16();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, res.text().await.expect("a body"))
}

/// `body` (an object) spelled otherwise: its keys in reverse order, spaced and on lines.
fn respelled(body: &serde_json::Value) -> String {
    let fields: Vec<String> = body
        .as_object()
        .expect("an object")
        .iter()
        .rev()
        .map(|(k, v)| {
            format!(
                "\n  {k:?} :  {}",
                serde_json::to_string_pretty(v).expect("json")
            )
        })
        .collect();
    format!("{{{}\n}}", fields.join(" ,"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_creates_retried_under_their_idempotency_key_create_once() {
    let (app, live, admin) = live_app(&[]).await;
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    let draft = open_campaign(
        "Keyed",
        start,
        chrono::Duration::hours(2),
        "once",
        json!({"kind": "draw", "winners": 1, "item": "gem"}),
    );
    let (addr, _received) = receiver("whsec_keyed_0123456789", 204).await;
    let hook = json!({"url": format!("http://{addr}/hook"), "events": ["campaign.live"],
                      "secret": "whsec_keyed_0123456789"});
    let mut other_draft = draft.clone();
    other_draft["title"] = json!("Another");
    let mut other_hook = hook.clone();
    other_hook["secret"] = json!("whsec_another_0123456789");
    // (audit action, route, body, another body)
    let creates = [
        ("campaign.create", "campaigns", draft, other_draft),
        ("webhook.create", "webhooks", hook, other_hook),
        (
            "api_key.create",
            "api-keys",
            json!({"name": "eu-1"}),
            json!({"name": "eu-2"}),
        ),
    ];
    let mut firsts = Vec::new();
    for (action, route, body, other) in &creates {
        let (key, url) = (format!("create-{action}"), format!("{}/{route}", app.base));
        let sent = body.to_string();
        let (s, replayed, first) = post_keyed(&live, &admin, url.clone(), &key, sent).await;
        assert_eq!((s, replayed), (201, false), "{action}: {first}");
        // The answer was lost; the client sends the same request again, spelled otherwise (key
        // order, spacing): the same JSON, so the same request.
        let again = respelled(body);
        assert_ne!(again, body.to_string());
        let (s, replayed, again) = post_keyed(&live, &admin, url.clone(), &key, again).await;
        assert_eq!((s, replayed), (201, true), "{action}: {again}");
        assert_eq!(
            again, first,
            "{action}: the first answer again, byte for byte"
        );
        // The key with another request is refused.
        let (s, _, refused) = post_keyed(&live, &admin, url.clone(), &key, other.to_string()).await;
        assert_eq!(s, 422, "{action}: {refused}");
        let refused: serde_json::Value = serde_json::from_str(&refused).expect("a problem");
        assert_eq!(problem(&refused).field.as_deref(), Some("Idempotency-Key"));
        firsts.push(serde_json::from_str::<serde_json::Value>(&first).expect("json"));
    }
    // A key is its operator's across routes, not one per route: the campaign's key on another
    // route is refused.
    let (url, body) = (format!("{}/api-keys", app.base), creates[2].2.to_string());
    let (s, _, refused) = post_keyed(&live, &admin, url, "create-campaign.create", body).await;
    assert_eq!(s, 422, "{refused}");
    let (s, audit) = live
        .get(format!("{}/audit?limit=100", app.base), Some(&admin))
        .await;
    assert_eq!(s, 200, "{audit}");
    let entries = read::<AuditList>(&audit).entries;
    for (action, ..) in &creates {
        let n = entries.iter().filter(|e| e.action == *action).count();
        assert_eq!(n, 1, "{action}: created once");
    }
    let reveals = entries
        .iter()
        .filter(|e| e.action == "api_key.reveal")
        .count();
    assert_eq!(reveals, 1, "the secret shown again once, and audited");
    // Once the webhook is deleted and the key revoked, a retry is told so (410), not handed a
    // webhook or a secret that no longer works; the draft still exists and is answered again.
    let hook_id = read::<WebhookView>(&firsts[1]).id;
    let key_id = read::<CreatedApiKey>(&firsts[2]).key_id;
    for path in [format!("webhooks/{hook_id}"), format!("api-keys/{key_id}")] {
        let (s, b) = live
            .call(
                reqwest::Method::DELETE,
                format!("{}/{path}", app.base),
                Some(&admin),
                None,
            )
            .await;
        assert!(s == 200 || s == 204, "{path}: {s} {b}");
    }
    for (i, (action, route, body, _)) in creates.iter().enumerate() {
        let url = format!("{}/{route}", app.base);
        let key = format!("create-{action}");
        let (s, replayed, b) = post_keyed(&live, &admin, url, &key, body.to_string()).await;
        if i == 0 {
            assert_eq!((s, replayed), (201, true), "{action}: {b}");
        } else {
            assert_eq!(s, 410, "{action}: {b}");
            let b: serde_json::Value = serde_json::from_str(&b).expect("a problem");
            assert_eq!(problem(&b).kind, "/problems/created-then-removed");
        }
    }
    app.shutdown().await;
}

/// A message written without a position, as a process of the release before positions writes
/// one during a rolling upgrade (ADR 0025), is listed at the top once the settler places it.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_written_without_a_position_is_listed_once_placed() {
    let db = database("PG", "liveops_unplaced_pg");
    let (app, live, admin) = live_app(&["--db-url", &db]).await;
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let gift = json!({"players": ["upgraded_player"], "title": "Gift",
                      "attachments": [{"item": "gem"}], "expiresAt": expires.to_rfc3339()});
    let (s, b) = live
        .post(format!("{}/inbox/messages", app.base), &admin, gift)
        .await;
    assert_eq!(s, 201, "{b}");
    let old_release = format!(
        "INSERT INTO inbox_messages (message_id, player_id, campaign_id, title, body, \
         attachments, created_at, expires_at) VALUES ('msg_old_release', 'upgraded_player', \
         NULL, 'Old', 'Old', '[\"gem\"]', 1, {})",
        expires.timestamp_millis()
    );
    common::succeed(
        std::process::Command::new("psql")
            .arg(&db)
            .args(["-qc", &old_release]),
    );
    eventually(
        Duration::from_secs(10),
        "placed and listed first",
        || async {
            let inbox = live.inbox("upgraded_player").await.messages;
            (inbox.len() == 2 && inbox[0].message_id == "msg_old_release").then_some(())
        },
    )
    .await;
    assert_eq!(
        metric_sum(&app.metrics().await, "inbox_messages_placed_total", &[]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_send_retried_under_its_idempotency_key_reaches_the_player_once() {
    let (app, live, admin) = live_app(&[]).await;
    let expires = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let gift = json!({"players": ["keyed_player"], "title": "Gift",
                      "attachments": [{"item": "gem"}], "expiresAt": expires});
    let (s, replayed, first) = send_keyed(&live, &admin, "gift-2026-12", &gift).await;
    assert_eq!((s, replayed), (201, false), "{first}");
    let first: Sent = read(&first);
    // The answer was lost; the client sends the same request again, as often as it likes.
    for _ in 0..2 {
        let (s, replayed, again) = send_keyed(&live, &admin, "gift-2026-12", &gift).await;
        assert_eq!((s, replayed), (201, true), "{again}");
        assert_eq!(read::<Sent>(&again).message_ids, first.message_ids);
    }
    let inbox = live.inbox("keyed_player").await.messages;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0].message_id, first.message_ids[0]);

    // A retry that comes after the first send's expiry still gets its answer.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let brief = json!({"players": ["keyed_player"], "title": "Flash sale",
                       "expiresAt": soon});
    let (s, _, sent) = send_keyed(&live, &admin, "flash-1", &brief).await;
    assert_eq!(s, 201, "{sent}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, replayed, again) = send_keyed(&live, &admin, "flash-1", &brief).await;
    assert_eq!((s, replayed), (201, true), "{again}");
    assert_eq!(
        read::<Sent>(&again).message_ids,
        read::<Sent>(&sent).message_ids
    );
    let (s, _, body) = send_keyed(&live, &admin, "flash-2", &brief).await;
    assert_eq!(s, 400, "a new send must still expire in the future: {body}");
    // The flash sale has expired: listed only on asking for expired messages too.
    assert_eq!(live.inbox("keyed_player").await.messages.len(), 1);
    let all = live.inbox_with_expired("keyed_player").await.messages;
    assert_eq!(all.len(), 2);
    // A page at a time: one message, a cursor to the next, and the last page says no more.
    let (mut paged, mut pages) = (Vec::new(), 0);
    let mut query = "?expired=true&limit=1".to_owned();
    loop {
        let page = live.inbox_at("keyed_player", &query).await;
        pages += 1;
        paged.extend(page.messages);
        let Some(next) = page.next_cursor else { break };
        query = format!("?expired=true&limit=1&cursor={next}");
        assert!(pages < 5, "cursors go on past the last message");
    }
    // Two full pages, then an empty one without a cursor.
    assert_eq!(
        (pages, paged),
        (3, all),
        "the pages list the inbox once, in order"
    );
    let url = format!(
        "{}/players/keyed_player/inbox?cursor=12:a/b",
        live.urls.distribution
    );
    let (s, b) = live.get(url, None).await;
    assert_eq!(
        (s, problem(&b).field.as_deref()),
        (400, Some("cursor")),
        "{b}"
    );

    // The key with another request is refused, and sends nothing.
    let other = json!({"players": ["keyed_player"], "title": "Another gift",
                       "attachments": [{"item": "gem"}], "expiresAt": expires});
    let (s, _, body) = send_keyed(&live, &admin, "gift-2026-12", &other).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(problem(&body).field.as_deref(), Some("Idempotency-Key"));
    for bad in ["two words", ""] {
        let (s, _, body) = send_keyed(&live, &admin, bad, &gift).await;
        assert_eq!(s, 400, "{bad:?}: {body}");
    }
    assert_eq!(
        live.inbox_with_expired("keyed_player").await.messages.len(),
        2
    );

    // Keys are each sender's own: another operator's send under the same key is a new send.
    let (s, b) = live
        .add_operator(
            &admin,
            "keyed-op@example.com",
            "a long operator password",
            "operator",
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let op = live
        .token("keyed-op@example.com", "a long operator password")
        .await;
    let (s, replayed, theirs) = send_keyed(&live, &op, "gift-2026-12", &gift).await;
    assert_eq!((s, replayed), (201, false), "{theirs}");
    assert_ne!(read::<Sent>(&theirs).message_ids, first.message_ids);
    assert_eq!(
        live.inbox_with_expired("keyed_player").await.messages.len(),
        3
    );
    let (s, audit) = live
        .get(format!("{}/audit?limit=50", app.base), Some(&admin))
        .await;
    assert_eq!(s, 200, "{audit}");
    let sends = read::<AuditList>(&audit)
        .entries
        .iter()
        .filter(|e| e.action == "inbox.send")
        .count();
    assert_eq!(sends, 3, "one audit entry per send, none for the repeats");
    app.shutdown().await;
}

/// A live campaign cancelled is announced to webhook subscribers, once and signed, with its
/// state; a draft cancelled is announced to nobody (nobody was told of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_live_campaign_is_announced_to_its_webhooks() {
    let (app, live, admin) = live_app(&[]).await;
    let secret = "whsec_cancel_0123456789";
    let (addr, received) = receiver(secret, 204).await;
    let kinds = ["campaign.live", "campaign.cancelled"];
    let url = format!("http://{addr}/hook");
    let (s, hook) = live.add_webhook(&admin, &url, secret, &kinds).await;
    assert_eq!(s, 201, "{hook}");
    let draw = json!({"kind": "draw", "winners": 1, "item": "chest"});
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let quiet = open_campaign(
        "Quiet",
        later,
        chrono::Duration::hours(1),
        "once",
        draw.clone(),
    );
    let (s, draft) = live
        .post(format!("{}/campaigns", app.base), &admin, quiet)
        .await;
    assert_eq!(s, 201, "{draft}");
    let draft = read::<CampaignView>(&draft).id;
    let now = chrono::Utc::now();
    let flash = open_campaign("Flash", now, chrono::Duration::hours(1), "daily", draw);
    let id = live.schedule_live(&admin, flash).await;
    let of = |kind: &'static str, campaign: String| {
        let received = received.clone();
        move || {
            let got = received.lock().expect("lock").clone();
            got.into_iter()
                .filter(|(k, v, _)| k == kind && v["data"]["campaignId"] == campaign.as_str())
                .collect::<Vec<_>>()
        }
    };
    let announced = of("campaign.live", id.clone());
    eventually(
        Duration::from_secs(30),
        "campaign.live delivered",
        || async { (!announced().is_empty()).then_some(()) },
    )
    .await;
    for c in [&draft, &id] {
        let (s, b) = live.act(&admin, c, "cancel").await;
        assert_eq!(s, 200, "{b}");
    }
    let cancelled = of("campaign.cancelled", id.clone());
    let got = eventually(
        Duration::from_secs(30),
        "campaign.cancelled delivered",
        || async { Some(cancelled()).filter(|got| !got.is_empty()) },
    )
    .await;
    let (_, body, signed) = &got[0];
    assert!(signed, "signed: {body}");
    assert_eq!(body["data"]["state"], "cancelled", "{body}");
    // Another tick of the queue and the outbox: still once, and nothing of the draft.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cancelled().len(), 1, "announced once");
    assert!(
        of("campaign.cancelled", draft)().is_empty(),
        "a draft goes quietly"
    );
    app.shutdown().await;
}

/// Schedules a draw campaign that goes live at once, which produces `campaign.live`; its id.
async fn flash_goes_live(live: &Live, admin: &str) -> String {
    let flash = open_campaign(
        "Flash",
        chrono::Utc::now(),
        chrono::Duration::hours(1),
        "daily",
        json!({"kind": "draw", "winners": 1, "item": "chest"}),
    );
    live.schedule_new(admin, flash).await.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_webhooks_are_retried_with_backoff_then_dead_lettered_after_ten_attempts() {
    let flags = ["--webhook-backoff-ms", "20", "--webhook-retry-sec", "0"];
    let (app, live, admin) = live_app(&flags).await;
    let status = Arc::new(AtomicU16::new(500));
    let (addr, received) = receiver_answering("whsec_failing_0123456789", status.clone()).await;
    let hook_id = live
        .hook_at(&admin, addr, "whsec_failing_0123456789", &["campaign.live"])
        .await;
    flash_goes_live(&live, &admin).await;
    let deliveries_url = format!("{}/webhooks/{hook_id}/deliveries", app.base);
    let deliveries = eventually(Duration::from_secs(60), "ten attempts", || async {
        let (s, d) = live.get(deliveries_url.clone(), Some(&admin)).await;
        assert_eq!(s, 200, "{d}");
        let first = read::<DeliveryList>(&d).deliveries.into_iter().next();
        first.filter(|d| d.state == "dead")
    })
    .await;
    let d = &deliveries;
    assert_eq!(d.attempts, 10);
    let tries = &d.tries;
    assert_eq!(tries.len(), 10, "every attempt is listed");
    assert!(tries.iter().all(|t| t.status == Some(500)));
    // The waits grow: the last gap is far longer than the first.
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(&tries[i].at)
            .expect("time")
            .timestamp_millis()
    };
    assert!(at(9) - at(8) > 4 * (at(1) - at(0)).max(20), "{tries:?}");
    assert_eq!(
        received.lock().expect("lock").len(),
        10,
        "ten posts, then none"
    );
    let (_, text) = live.get(format!("{}/metrics", app.base), None).await;
    let metrics = text.as_str().unwrap_or_default();
    assert!(
        metrics.contains("webhook_deliveries_total{result=\"dead\"")
            || metrics.contains("result=\"dead\""),
        "{metrics}"
    );

    // The receiver is fixed: an operator sends the dead delivery again, and it is delivered.
    status.store(200, Ordering::SeqCst);
    let redeliver_url = format!("{}/webhooks/{hook_id}/redeliver", app.base);
    let redeliver_all = || async {
        let url = redeliver_url.clone();
        let body = Some(json!({}));
        let (s, b) = live
            .call(reqwest::Method::POST, url, Some(&admin), body)
            .await;
        assert_eq!(s, 200, "{b}");
        read::<RedeliveryView>(&b)
    };
    let again = redeliver_all().await;
    assert_eq!(
        (again.redelivered, again.more),
        (vec![d.delivery_id.clone()], false)
    );
    let delivered = eventually(Duration::from_secs(30), "the redelivery", || async {
        let (_, d) = live.get(deliveries_url.clone(), Some(&admin)).await;
        let first = read::<DeliveryList>(&d).deliveries.into_iter().next();
        first.filter(|d| d.state == "delivered")
    })
    .await;
    assert_eq!(delivered.attempts, 11);
    assert_eq!(delivered.tries.last().and_then(|t| t.status), Some(200));
    assert_eq!(received.lock().expect("lock").len(), 11);
    // Nothing dead is left; bad bodies and unknown webhooks are refused.
    assert!(redeliver_all().await.redelivered.is_empty());
    for body in [
        json!({"deliveryIds": []}),
        json!({"deliveryIds": ["dlv/../x"]}),
        json!({"deliveryIds": "dlv_1"}),
        json!({"deliveryIds": null}),
        json!({"ids": []}),
    ] {
        let url = redeliver_url.clone();
        let (s, b) = live
            .call(reqwest::Method::POST, url, Some(&admin), Some(body))
            .await;
        assert_eq!(s, 400, "{b}");
        assert!(problem(&b).field.is_some(), "{b}");
    }
    let unknown = format!("{}/webhooks/whk_unknown/redeliver", app.base);
    let (s, b) = live
        .call(
            reqwest::Method::POST,
            unknown,
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404, "{b}");

    // Deleted, the webhook and its deliveries are gone from the API, like one never made.
    let hook_url = format!("{}/webhooks/{hook_id}", app.base);
    let (s, b) = live
        .call(reqwest::Method::DELETE, hook_url, Some(&admin), None)
        .await;
    assert_eq!(s, 204, "{b}");
    let unknown = format!("{}/webhooks/whk_unknown/deliveries", app.base);
    for url in [deliveries_url, unknown] {
        let (s, b) = live.get(url, Some(&admin)).await;
        assert_eq!(s, 404, "{b}");
        let detail = problem(&b).detail.unwrap_or_default();
        assert!(detail.contains("no webhook"), "{b}");
    }
    // The audit log keeps what was deleted, without its secret.
    let (s, audit) = live
        .get(format!("{}/audit?limit=5", app.base), Some(&admin))
        .await;
    assert_eq!(s, 200, "{audit}");
    let audit: AuditList = read(&audit);
    let deleted = audit.entries.iter().find(|e| e.action == "webhook.delete");
    let before = deleted
        .and_then(|e| e.before.clone())
        .expect("the webhook before");
    assert_eq!(
        before["url"],
        json!(format!("http://{addr}/hook")),
        "{before}"
    );
    assert!(!before.to_string().contains("whsec_"), "{before}");
    app.shutdown().await;
}

/// A webhook deleted while one of its deliveries is on the wire: the sender's attempt, answered
/// after the delete, is not recorded over the dead delivery (its lease is gone) and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_deleted_during_an_attempt_is_not_brought_back_by_its_answer() {
    let (app, live, admin) = live_app(&[]).await;
    let secret = "whsec_deleted_0123456789";
    let ok = Arc::new(AtomicU16::new(200));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (addr, received) = gated_receiver(secret, ok, gate.clone()).await;
    let hook_id = live.hook_at(&admin, addr, secret, &["campaign.live"]).await;
    // Counters are per process (other tests' apps may count too): compare with before.
    let deliveries = |result: &'static str| {
        let app = &app;
        async move {
            let label = format!("result=\"{result}\"");
            metric_sum(&app.metrics().await, "webhook_deliveries_total", &[&label])
        }
    };
    let (lost_before, delivered_before) = (
        deliveries("lease_lost").await,
        deliveries("delivered").await,
    );
    flash_goes_live(&live, &admin).await;
    eventually(Duration::from_secs(30), "the first post", || async {
        (!received.lock().expect("lock").is_empty()).then_some(())
    })
    .await;
    // The post is on the wire, unanswered: the webhook goes, then the receiver answers 200.
    let hook_url = format!("{}/webhooks/{hook_id}", app.base);
    let (s, b) = live
        .call(reqwest::Method::DELETE, hook_url, Some(&admin), None)
        .await;
    assert_eq!(s, 204, "{b}");
    gate.add_permits(1);
    eventually(
        Duration::from_secs(15),
        "the lost lease counted",
        || async { (deliveries("lease_lost").await > lost_before).then_some(()) },
    )
    .await;
    assert_eq!(
        deliveries("delivered").await,
        delivered_before,
        "the answer after the delete counted as delivered"
    );
    assert_eq!(received.lock().expect("lock").len(), 1, "posted once");
    app.shutdown().await;
}

/// A receiver that takes posts but never answers, with a backlog of deliveries, holds up no
/// other webhook: each webhook has a few attempts in flight at most and a slot that frees is
/// filled at once, so a healthy receiver's delivery queued after that backlog goes out within
/// a tick or two, not after rounds of the stalled receiver's timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_holds_up_no_other_webhook() {
    // The stalled receiver's failed deliveries come back in a minute: what is due is its backlog.
    let flags = [
        "--webhook-timeout-ms",
        "5000",
        "--webhook-backoff-ms",
        "60000",
    ];
    let (app, live, admin) = live_app(&flags).await;
    let stalled_secret = "whsec_stalled_0123456789";
    let never = Arc::new(tokio::sync::Semaphore::new(0));
    let ok = Arc::new(AtomicU16::new(200));
    let (stalled_addr, stalled) = gated_receiver(stalled_secret, ok, never).await;
    live.hook_at(&admin, stalled_addr, stalled_secret, &["campaign.live"])
        .await;
    let healthy_secret = "whsec_healthy_0123456789";
    let (healthy_addr, healthy) = receiver(healthy_secret, 200).await;
    live.hook_at(
        &admin,
        healthy_addr,
        healthy_secret,
        &["campaign.cancelled"],
    )
    .await;
    // A backlog for the stalled receiver: four rounds of 16 five-second attempts.
    let mut ids = Vec::new();
    for _ in 0..64 {
        ids.push(flash_goes_live(&live, &admin).await);
    }
    for id in &ids {
        let within = Duration::from_secs(30);
        live.wait_state(&admin, id, CampaignState::Live, within)
            .await;
    }
    eventually(
        Duration::from_secs(15),
        "the stalled receiver posted to",
        || async { (!stalled.lock().expect("lock").is_empty()).then_some(()) },
    )
    .await;
    // Then one event for the healthy receiver, queued after the whole backlog.
    let (s, b) = live.act(&admin, &ids[63], "cancel").await;
    assert_eq!(s, 200, "{b}");
    let queued = std::time::Instant::now();
    eventually(
        Duration::from_secs(60),
        "the healthy receiver's delivery",
        || async { (!healthy.lock().expect("lock").is_empty()).then_some(()) },
    )
    .await;
    let waited = queued.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "the healthy receiver waited {waited:?} behind the stalled one's backlog"
    );
    let got = healthy.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].2, "signed");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_private_addresses_or_for_unknown_events_are_refused() {
    let app = spawn_app(&[
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password",
        ADMIN_PASSWORD,
    ])
    .await;
    let live = Live::new(LiveUrls::all(&app.base));
    let admin = live.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    const PUBLIC: &str = "https://93.184.216.34/hook";
    const LIVE_ONLY: &[&str] = &["campaign.live"];
    // (url, events, the field the problem names)
    let refused: [(&str, &[&str], &str); 8] = [
        ("http://127.0.0.1:9/hook", LIVE_ONLY, "url"),
        ("http://169.254.169.254/latest/meta-data", LIVE_ONLY, "url"),
        ("http://10.0.0.8/hook", LIVE_ONLY, "url"),
        ("http://localhost/hook", LIVE_ONLY, "url"),
        ("http://[::1]/hook", LIVE_ONLY, "url"),
        ("ftp://example.com/hook", LIVE_ONLY, "url"),
        (PUBLIC, &["campaign.nope"], "events[0]"),
        // The document allows at most five names (one of each kind); a sixth is refused even
        // when it repeats one.
        (PUBLIC, &["campaign.live"; 6], "events"),
    ];
    for (url, events, field) in refused {
        let (s, b) = live
            .add_webhook(&admin, url, "whsec_0123456789abcdef", events)
            .await;
        assert_eq!(s, 400, "{url} {events:?}: {b}");
        assert_eq!(problem(&b).field.as_deref(), Some(field), "{url}: {b}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fairness_reads_need_an_operator_once_one_exists_and_unblocks_are_audited() {
    // No operator yet: the reads stay open, as before.
    let open = spawn_app(&[]).await;
    let (s, _) = Live::new(LiveUrls::all(&open.base))
        .get(format!("{}/fairness/flags", open.base), None)
        .await;
    assert_eq!(s, 200);
    open.shutdown().await;

    let app = spawn_app(LIVE).await;
    let live = Live::new(LiveUrls::all(&app.base));
    let url = |path: &str| format!("{}{path}", app.base);
    let (s, b) = live.get(url("/fairness/flags"), None).await;
    assert_eq!(s, 401, "{b}");
    let admin = live.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (s, _) = live
        .add_operator(&admin, "viewer@example.com", "viewer password 1", "viewer")
        .await;
    assert_eq!(s, 201);
    let viewer = live.token("viewer@example.com", "viewer password 1").await;
    let (s, _) = live
        .get(url("/fairness/players/player_x1"), Some(&viewer))
        .await;
    assert_eq!(s, 200, "any role reads");
    let unblock = url("/fairness/players/player_x1/block");
    let (s, _) = live
        .call(
            reqwest::Method::DELETE,
            unblock.clone(),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(s, 403, "a viewer cannot unblock");
    // A role the route refuses is told so whatever the body holds (before, its mistakes first).
    for path in [
        "/campaigns",
        "/webhooks",
        "/operators",
        "/api-keys",
        "/inbox/messages",
    ] {
        let (s, b) = live
            .call(
                reqwest::Method::POST,
                url(path),
                Some(&viewer),
                Some(json!({"unknown": 1})),
            )
            .await;
        assert_eq!(s, 403, "{path}: {b}");
    }
    let (s, b) = live
        .call(reqwest::Method::DELETE, unblock, Some(&admin), None)
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(!read::<PlayerFairness>(&b).blocked, "{b}");
    let (_, audit) = live.get(url("/audit?limit=5"), Some(&admin)).await;
    let audit: AuditList = read(&audit);
    let e = &audit.entries[0];
    assert_eq!(
        (e.action.as_str(), e.target.as_str(), e.actor.as_str()),
        ("player.unblock", "player_x1", ADMIN_EMAIL)
    );

    // Logging out closes the session; disabling an operator closes theirs.
    let (s, _) = live
        .call(
            reqwest::Method::POST,
            url("/auth/logout"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = live.get(url("/auth/me"), Some(&viewer)).await;
    assert_eq!(s, 401);
    app.shutdown().await;
}

fn start(data_dir: &Path, port: u16, extra: &[&str]) -> Child {
    spawn_serve(data_dir, port, &[LIVE, extra].concat())
}

/// The real binary on a free port with its data in `data_dir` ([`start`]), ready: the process,
/// its port, a client, the bootstrap admin's token and an API key that works.
async fn serve_live(data_dir: &Path, extra: &[&str]) -> (Child, u16, Live, String, ApiKey) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = start(data_dir, port, extra);
    wait_ready(&base).await;
    let live = Live::new(LiveUrls::all(&base));
    let admin = live.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let key = live.create_key(&admin, "crash test").await;
    live.wait_key_works(&key).await;
    (child, port, live, admin, key)
}

/// Settlement killed with `kill -9` in the middle (a test-only pause after each winner makes
/// the middle last seconds), then restarted: every winner has one message and one receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_the_middle_of_a_settlement_leaves_one_message_and_one_receipt_per_winner() {
    settlement_through_kill_9(&[]).await;
}

/// [`kill_9_in_the_middle_of_a_settlement_leaves_one_message_and_one_receipt_per_winner`] with
/// the campaigns, outcomes and inbox on PostgreSQL.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_a_settlement_on_postgresql_pays_each_winner_once() {
    settlement_through_kill_9(&["--db-url", &database("PG", "liveops_settle_crash_pg")]).await;
}

/// [`kill_9_in_the_middle_of_a_settlement_leaves_one_message_and_one_receipt_per_winner`] with
/// the campaigns, outcomes and inbox on MariaDB.
#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_a_settlement_on_mariadb_pays_each_winner_once() {
    settlement_through_kill_9(&["--db-url", &database("MYSQL", "liveops_settle_crash_my")]).await;
}

/// A new empty database `name` on the test server `LIVEOPS_TEST_<server>_URL` names; its URL.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn database(server: &str, name: &str) -> String {
    let var = format!("LIVEOPS_TEST_{server}_URL");
    let admin = std::env::var(&var).unwrap_or_else(|_| {
        panic!("{var} is not set: start the servers with scripts/services.sh start")
    });
    common::fresh_database(&admin, name)
}

/// A draw paying 120 winners, the real binary (started with `extra`) killed with `kill -9` in
/// the middle of its settlement, then restarted: each winner has one message and one receipt.
async fn settlement_through_kill_9(extra: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, port, live, admin, key) =
        serve_live(dir.path(), &[extra, &["--settle-delay-ms", "40"]].concat()).await;
    let base = format!("http://127.0.0.1:{port}");

    let players: Vec<String> = (0..120).map(|i| format!("crash_{i:03}")).collect();
    let everyone_wins = open_campaign(
        "Everyone wins",
        chrono::Utc::now() + chrono::Duration::seconds(2),
        chrono::Duration::seconds(6),
        "once",
        json!({"kind": "draw", "winners": 120, "item": "crash_token"}),
    );
    let id = live.schedule_live(&admin, everyone_wins).await;
    for p in &players {
        let (s, b) = live.enter(&key, &id, p).await;
        assert_eq!(s, 201, "{b}");
    }
    // Drawn: the winners in the order they are paid.
    let winners: Vec<String> = eventually(Duration::from_secs(30), "drawn", || async {
        let (_, d) = live.get(format!("{base}/campaigns/{id}/draw"), None).await;
        serde_json::from_value::<PublishedDraw>(d).ok()?.winners
    })
    .await;
    assert_eq!(winners.len(), 120);
    // The first winner is paid, the last is not: kill -9 now.
    eventually(Duration::from_secs(20), "settlement under way", || async {
        (!live.prizes(&winners[5], &id).await.is_empty()).then_some(())
    })
    .await;
    assert!(
        live.prizes(&winners[119], &id).await.is_empty(),
        "still in the middle"
    );
    child.kill().expect("kill -9");
    let _ = child.wait();

    // Restarted (without the pause), it finishes the settlement and writes nothing twice.
    let mut child = start(dir.path(), port, extra);
    wait_ready(&base).await;
    let admin = live.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let c = live
        .wait_state(&admin, &id, CampaignState::Settled, Duration::from_secs(30))
        .await;
    assert_eq!(c.state, CampaignState::Settled);
    for w in &winners {
        let prizes = live.prizes(w, &id).await;
        assert_eq!(prizes.len(), 1, "{w} has one message: {prizes:?}");
        let m = prizes[0].message_id.as_str();
        let first = live.claim_paid(&key, w, m).await;
        let second = live.claim_paid(&key, w, m).await;
        assert_eq!(second.receipts, first.receipts, "one receipt");
        assert_eq!(first.receipts.len(), 1);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Entries and claims sent at once by many players (on the embedded default they share groups
/// of one transaction, ADR 0024) through a `kill -9` of the real binary: after the restart,
/// every entry answered 201 is among the campaign's entrants, and every claim answered 200 is
/// answered again with the very receipts it got; none was lost, none made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_bursts_of_entries_and_claims_loses_nothing_answered() {
    bursts_through_kill_9(&[]).await;
}

/// [`kill_9_during_bursts_of_entries_and_claims_loses_nothing_answered`] with the campaigns,
/// entries and inbox on PostgreSQL (a transaction per entry or claim).
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_bursts_on_postgresql_loses_nothing_answered() {
    bursts_through_kill_9(&["--db-url", &database("PG", "liveops_burst_crash_pg")]).await;
}

/// [`kill_9_during_bursts_of_entries_and_claims_loses_nothing_answered`] with the campaigns,
/// entries and inbox on MariaDB (a transaction per entry or claim).
#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_bursts_on_mariadb_loses_nothing_answered() {
    bursts_through_kill_9(&["--db-url", &database("MYSQL", "liveops_burst_crash_my")]).await;
}

/// Bursts of entries and claims by 16 players at a time, the real binary (started with `extra`)
/// killed with `kill -9` after 300 claims were answered, then restarted: nothing answered lost.
async fn bursts_through_kill_9(extra: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, port, live, admin, key) = serve_live(dir.path(), extra).await;
    let base = format!("http://127.0.0.1:{port}");
    let opens = open_campaign(
        "Everyone enters",
        chrono::Utc::now(),
        chrono::Duration::hours(1),
        "once",
        json!({"kind": "draw", "winners": 1, "item": "crash_prize"}),
    );
    let id = live.schedule_live(&admin, opens).await;
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let gift = json!({"all": true, "title": "Gift", "attachments": [{"item": "crash_gift"}],
                      "expiresAt": expires.to_rfc3339()});
    let (s, b) = live
        .post(format!("{base}/inbox/messages"), &admin, gift)
        .await;
    assert_eq!(s, 201, "{b}");
    let message = read::<Sent>(&b).message_ids[0].clone();

    // 16 players at a time, each entering then claiming, new players until the process dies.
    let entered = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let claimed = Arc::new(std::sync::Mutex::new(Vec::<ClaimAnswer>::new()));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (live, key, id, message) = (live.clone(), key.clone(), id.clone(), message.clone());
            let (entered, claimed) = (entered.clone(), claimed.clone());
            tokio::spawn(async move {
                let urls = &live.urls;
                for i in 0.. {
                    let player = format!("burst_{w:02}_{i:05}");
                    let entry = format!("{}/campaigns/{id}/entries", urls.participation);
                    match live.try_signed_for(entry, &key, &player).await {
                        Some((201, _)) => entered.lock().expect("entered").push(player.clone()),
                        None => return,
                        Some((s, b)) => panic!("{player} enters: {s} {b}"),
                    }
                    let claim = format!(
                        "{}/players/{player}/inbox/{message}/claim",
                        urls.distribution
                    );
                    match live.try_signed_for(claim, &key, &player).await {
                        Some((200, b)) => claimed.lock().expect("claimed").push(read(&b)),
                        None => return,
                        Some((s, b)) => panic!("{player} claims: {s} {b}"),
                    }
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(30), "300 answered", || async {
        (claimed.lock().expect("claimed").len() >= 300).then_some(())
    })
    .await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    for w in workers {
        w.await
            .expect("a worker sees only answers, then the process gone");
    }

    let mut child = start(dir.path(), port, extra);
    wait_ready(&base).await;
    let (s, b) = live
        .get(format!("{base}/campaigns/{id}/entrants?limit=10000"), None)
        .await;
    assert_eq!(s, 200, "{b}");
    let entrants = read::<liveops_participation::EntrantList>(&b).entrants;
    let entered = entered.lock().expect("entered").clone();
    let lost: Vec<_> = entered.iter().filter(|p| !entrants.contains(p)).collect();
    assert!(lost.is_empty(), "entries answered 201, lost: {lost:?}");
    let claimed = claimed.lock().expect("claimed").clone();
    assert!(claimed.len() >= 300 && entered.len() >= claimed.len());
    for before in &claimed {
        let again = live
            .claim_paid(&key, &before.player_id, &before.message_id)
            .await;
        assert_eq!(again.receipts, before.receipts, "{}", before.player_id);
        assert_eq!(again.receipts.len(), 1);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A rank campaign: players who entered are ranked by their scores on the leaderboard window's
/// board of the campaign's period (read `LB_SETTLE_SEC` after it ended), each tier's item lands
/// in their inboxes, and a player who out-scored everyone without entering gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rank_campaign_rewards_the_entrants_by_their_scores_after_its_end() {
    // Ranked on the scores 2 s after the end (`LB_SETTLE_SEC`).
    let flags = ["--lb-settle-sec", "2"];
    let (app, live, admin) = live_app(&flags).await;
    let base = &app.base;
    let key = live.create_key(&admin, "rank test").await;
    live.wait_key_works(&key).await;

    // A tier that overlaps another, and an unknown window, are refused.
    let campaign = open_campaign(
        "Boss week",
        chrono::Utc::now() + chrono::Duration::seconds(2),
        chrono::Duration::seconds(5),
        "once",
        json!({"kind": "rank", "window": "seasonal", "tiers": [
            {"fromRank": 1, "toRank": 1, "item": "gold_trophy"},
            {"fromRank": 2, "toRank": 3, "item": "silver_trophy"}]}),
    );
    for (bad, field) in [
        (
            json!([{"fromRank": 1, "toRank": 2, "item": "a"}, {"fromRank": 2, "toRank": 3, "item": "b"}]),
            "tiers",
        ),
        (json!([{"fromRank": 3, "toRank": 1, "item": "a"}]), "tiers"),
    ] {
        let mut c = campaign.clone();
        c["reward"]["tiers"] = bad;
        let (s, b) = live.post(format!("{base}/campaigns"), &admin, c).await;
        assert_eq!(s, 400, "{field}: {b}");
    }
    let mut unknown = campaign.clone();
    unknown["reward"]["window"] = json!("hourly");
    let (s, b) = live
        .post(format!("{base}/campaigns"), &admin, unknown)
        .await;
    assert_eq!(s, 400, "{b}");

    let id = live.schedule_new(&admin, campaign).await.id;
    live.wait_state(&admin, &id, CampaignState::Live, Duration::from_secs(10))
        .await;

    // Four players enter; they and an outsider score boss kills (the outsider most of all).
    let points = [
        ("rank_a", 500),
        ("rank_b", 900),
        ("rank_c", 100),
        ("rank_d", 300),
    ];
    for (p, _) in points {
        let (s, b) = live.enter(&key, &id, p).await;
        assert_eq!(s, 201, "{b}");
    }
    for (p, pts) in points.iter().copied().chain([("rank_outsider", 5000)]) {
        let (s, b) = live
            .send_event(
                &key,
                &json!({"type": "boss_kill", "playerId": p, "ts": common::now(),
                        "payload": {"bossId": "dragon", "tier": 3, "points": pts}}),
            )
            .await;
        assert_eq!(s, 202, "{b}");
    }

    // Ended, ranked on the scores after the end, settled.
    let c = live
        .wait_state(&admin, &id, CampaignState::Settled, Duration::from_secs(40))
        .await;
    assert_eq!(c.state, CampaignState::Settled);
    let item = |m: &MessageView| m.attachments.first().map(|a| a.item.clone());
    let mut got = Vec::new();
    for p in ["rank_a", "rank_b", "rank_c", "rank_d", "rank_outsider"] {
        let prizes = live.prizes(p, &id).await;
        assert!(prizes.len() <= 1, "{p}: {prizes:?}");
        got.push((p, prizes.first().and_then(item)));
    }
    assert_eq!(
        got,
        vec![
            ("rank_a", Some("silver_trophy".to_owned())),
            ("rank_b", Some("gold_trophy".to_owned())),
            ("rank_c", None),
            ("rank_d", Some("silver_trophy".to_owned())),
            ("rank_outsider", None),
        ]
    );
    app.shutdown().await;
}
