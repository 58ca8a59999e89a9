//! The attack suite on the embedded default (issue 14, docs/RELIABILITY.md): forged and replayed
//! requests on every signed route, honest repeats, tampered receipts, a hundred concurrent
//! copies of one request, and a flood beside an honest player. Every attack is followed by a
//! check that nothing was published, counted, entered or claimed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::campaign::{open_campaign, read, Live, LiveUrls, ADMIN_EMAIL, ADMIN_PASSWORD};
use common::{eventually, now, spawn_app, xp, Answer, TestApp, SECRET};
use liveops_core::{AuthError, Keyring, Receipt};
use liveops_distribution::{ClaimAnswer, MessageView};
use liveops_gateway::BatchAnswer;
use liveops_participation::EntrantList;
use liveops_testkit::served::metric_sum;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// The bootstrap admin, quick campaign ticks.
const LIVE: &[&str] = &[
    "--admin-email",
    ADMIN_EMAIL,
    "--admin-password",
    ADMIN_PASSWORD,
    "--campaign-tick-ms",
    "200",
];

/// A running app with a live campaign, an inbox message and a pending reward for `player`.
struct Arena {
    app: TestApp,
    live: Live,
    admin: String,
    player: String,
    campaign: String,
    message: String,
    reward: String,
}

async fn arena(tag: &str, extra: &[&str]) -> Arena {
    let mut flags = LIVE.to_vec();
    flags.extend_from_slice(extra);
    let app = spawn_app(&flags).await;
    let live = Live::new(LiveUrls::all(&app.base));
    let admin = live.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let player = format!("target_{tag}");
    // Level 2, so a level reward is pending.
    accepted(&app, xp(&player, 1200)).await;
    let progress = eventually(WAIT, "level 2", || async {
        Some(app.progress(&player).await).filter(|p| p.level == 2)
    })
    .await;
    let reward = progress
        .pending_rewards
        .first()
        .expect("a pending reward")
        .reward_id
        .clone();
    let campaign = live_campaign(&live, &admin, tag).await;
    let message = send_message(&app, &live, &admin, &player, "abc:gem").await;
    Arena {
        app,
        live,
        admin,
        player,
        campaign,
        message,
        reward,
    }
}

/// Sends `event` and asserts it is accepted (202).
async fn accepted(app: &TestApp, event: Value) {
    let a = app.send_event(&event).await;
    assert_eq!(a.status, 202, "{}", a.body);
}

/// A campaign open to every level that is live now.
async fn live_campaign(live: &Live, admin: &str, tag: &str) -> String {
    let campaign = open_campaign(
        &format!("Open {tag}"),
        chrono::Utc::now(),
        chrono::Duration::hours(1),
        "once",
        json!({"kind": "draw", "winners": 1, "item": "chest"}),
    );
    live.schedule_live(admin, campaign).await
}

/// An inbox message to `player` with one attachment; its id.
async fn send_message(app: &TestApp, live: &Live, admin: &str, player: &str, item: &str) -> String {
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let (s, b) = live
        .post(
            format!("{}/inbox/messages", app.base),
            admin,
            json!({"players": [player], "title": "Gift", "attachments": [{"item": item}],
                   "expiresAt": expires.to_rfc3339()}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let sent: liveops_distribution::Sent = read(&b);
    let id = sent.message_ids.into_iter().next().expect("message id");
    // The audit log says who got it.
    let (s, audit) = live
        .get(format!("{}/audit?limit=5", app.base), Some(admin))
        .await;
    assert_eq!(s, 200, "{audit}");
    let audit: liveops_operators::AuditList = read(&audit);
    let entry = audit.entries.iter().find(|e| e.action == "inbox.send");
    let after = entry.and_then(|e| e.after.clone()).expect("inbox.send");
    assert_eq!(
        after["messages"],
        json!([{"messageId": id, "playerId": player}]),
        "{after}"
    );
    id
}

/// One signed route: where it is and a valid body for it.
struct Route {
    name: &'static str,
    path: String,
    body: Vec<u8>,
}

impl Arena {
    fn routes(&self, player: &str) -> Vec<Route> {
        let p = player;
        let event = json!({"type": "progression", "playerId": p, "ts": now(),
                           "payload": {"deltaXp": 40, "activity": "forged"}});
        let bytes = |v: Value| serde_json::to_vec(&v).expect("json");
        vec![
            Route {
                name: "events",
                path: "/events".into(),
                body: bytes(event.clone()),
            },
            Route {
                name: "batch",
                path: "/events/batch".into(),
                body: bytes(json!({"events": [event]})),
            },
            Route {
                name: "reward claim",
                path: "/rewards/claim".into(),
                body: bytes(json!({"playerId": p, "rewardId": self.reward})),
            },
            Route {
                name: "campaign entry",
                path: format!("/campaigns/{}/entries", self.campaign),
                body: bytes(json!({"playerId": p})),
            },
            Route {
                name: "inbox claim",
                path: format!("/players/{p}/inbox/{}/claim", self.message),
                body: bytes(json!({"playerId": p})),
            },
        ]
    }

    async fn entrants(&self) -> Vec<String> {
        let a = self
            .app
            .get(&format!("/campaigns/{}/entrants", self.campaign))
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.json::<EntrantList>().entrants
    }

    async fn message_view(&self, player: &str, message: &str) -> MessageView {
        let inbox = self.live.inbox(player).await;
        inbox
            .messages
            .into_iter()
            .find(|m| m.message_id == message)
            .expect("the message")
    }
}

/// Posts `body` to `path` with exactly these headers (name, raw bytes), repeats allowed.
async fn post_with(app: &TestApp, path: &str, body: &[u8], headers: &[(&str, Vec<u8>)]) -> Answer {
    let mut map = reqwest::header::HeaderMap::new();
    map.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_bytes(v).expect("value"),
        );
    }
    let res = app
        .client
        .post(format!("{}{path}", app.base))
        .headers(map)
        .body(body.to_vec())
        .send()
        .await
        .expect("request");
    common::answer(res).await
}

/// The `v2=` signature of a POST of `body` to `path` with `secret` at `ts`.
fn sign(secret: &[u8], ts: i64, path: &str, body: &[u8]) -> Vec<u8> {
    Keyring::single(secret.to_vec())
        .expect("key")
        .sign_request(None, ts, "POST", path, body)
        .expect("sign")
        .into_bytes()
}

/// The first scheme's signature (`sha256=`, timestamp and body only) of `body` at `ts`.
fn sign_v1(ts: i64, body: &[u8]) -> String {
    Keyring::single(SECRET.as_bytes().to_vec())
        .expect("key")
        .sign_request_v1(None, ts, body)
        .expect("sign")
}

/// Headers as sent: name and raw bytes, a name may repeat.
type Headers = Vec<(&'static str, Vec<u8>)>;

/// Every way to get a signature wrong, for `body` sent to `path` (named, with the headers to
/// send).
fn forgeries(path: &str, body: &[u8], revoked: &(String, String)) -> Vec<(String, Headers)> {
    let ts = now();
    let t = |ts: i64| ts.to_string().into_bytes();
    let good = sign(SECRET.as_bytes(), ts, path, body);
    let other_body = sign(
        SECRET.as_bytes(),
        ts,
        path,
        b"{\"playerId\":\"someone_else\"}",
    );
    let other_path = sign(SECRET.as_bytes(), ts, "/events/elsewhere", body);
    let (rk, rs) = revoked;
    vec![
        (
            "wrong key".into(),
            vec![
                ("x-timestamp", t(ts)),
                (
                    "x-signature",
                    sign(b"not-the-key-0123456789abcdef-0123456", ts, path, body),
                ),
            ],
        ),
        (
            "unknown key id".into(),
            vec![
                ("x-timestamp", t(ts)),
                ("x-signature", good.clone()),
                ("x-key-id", b"no_such_key".to_vec()),
            ],
        ),
        (
            "revoked key id".into(),
            vec![
                ("x-timestamp", t(ts)),
                ("x-signature", sign(rs.as_bytes(), ts, path, body)),
                ("x-key-id", rk.clone().into_bytes()),
            ],
        ),
        (
            "signature over another body".into(),
            vec![("x-timestamp", t(ts)), ("x-signature", other_body)],
        ),
        (
            "signature for another path".into(),
            vec![("x-timestamp", t(ts)), ("x-signature", other_path)],
        ),
        (
            "stale timestamp".into(),
            vec![
                ("x-timestamp", t(ts - 330)),
                ("x-signature", sign(SECRET.as_bytes(), ts - 330, path, body)),
            ],
        ),
        (
            "future timestamp".into(),
            vec![
                ("x-timestamp", t(ts + 330)),
                ("x-signature", sign(SECRET.as_bytes(), ts + 330, path, body)),
            ],
        ),
        ("no signature".into(), vec![("x-timestamp", t(ts))]),
        ("no timestamp".into(), vec![("x-signature", good.clone())]),
        (
            "doubled signature".into(),
            vec![
                ("x-timestamp", t(ts)),
                ("x-signature", good.clone()),
                ("x-signature", good.clone()),
            ],
        ),
        (
            "doubled timestamp".into(),
            vec![
                ("x-timestamp", t(ts)),
                ("x-timestamp", t(ts)),
                ("x-signature", good.clone()),
            ],
        ),
        (
            "non-ASCII signature".into(),
            vec![
                ("x-timestamp", t(ts)),
                ("x-signature", "sha256=é".as_bytes().to_vec()),
            ],
        ),
        (
            "non-ASCII timestamp".into(),
            vec![
                ("x-timestamp", "1é".as_bytes().to_vec()),
                ("x-signature", good.clone()),
            ],
        ),
        (
            "non-ASCII key id".into(),
            vec![
                ("x-timestamp", t(ts)),
                ("x-signature", good),
                ("x-key-id", "clé".as_bytes().to_vec()),
            ],
        ),
    ]
}

/// An API key that worked and was then revoked (and is refused everywhere now): (id, secret).
async fn revoked_key(a: &Arena) -> (String, String) {
    let key = a.live.create_key(&a.admin, "soon revoked").await;
    a.live.wait_key_works(&key).await;
    let (s, b) = a
        .live
        .call(
            reqwest::Method::DELETE,
            format!("{}/api-keys/{}", a.app.base, key.key_id),
            Some(&a.admin),
            None,
        )
        .await;
    assert!(s == 204 || s == 200, "{s} {b}");
    eventually(
        Duration::from_secs(10),
        "the revoked key refused",
        || async {
            let body = serde_json::to_vec(&json!({"type": "progression", "playerId": "key_probe",
            "ts": now(), "payload": {"deltaXp": 1, "activity": "probe"}}))
            .expect("json");
            let ts = now();
            let a = post_with(
                &a.app,
                "/events",
                &body,
                &[
                    ("x-timestamp", ts.to_string().into_bytes()),
                    (
                        "x-signature",
                        sign(key.secret.as_bytes(), ts, "/events", &body),
                    ),
                    ("x-key-id", key.key_id.clone().into_bytes()),
                ],
            )
            .await;
            (a.status == 401).then_some(())
        },
    )
    .await;
    (key.key_id, key.secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_requests_on_every_signed_route_are_401_and_change_nothing() {
    let a = arena("forge", &[]).await;
    let revoked = revoked_key(&a).await;
    let victim = a.player.clone();
    let mut tried = 0;
    for route in a.routes(&victim) {
        for (fault, headers) in forgeries(&route.path, &route.body, &revoked) {
            let ans = post_with(&a.app, &route.path, &route.body, &headers).await;
            assert_eq!(
                ans.status.as_u16(),
                401,
                "{} / {fault}: {}",
                route.name,
                ans.body
            );
            ans.assert_problem(401);
            tried += 1;
        }
    }
    assert_eq!(tried, 5 * 14);

    // Nothing was published: a genuine event after them is the only one counted (one partition
    // per player, so a forged event, had it been published, would have been applied first).
    let genuine = json!({"type": "progression", "playerId": victim, "ts": now(),
                         "payload": {"deltaXp": 1, "activity": "genuine"}});
    accepted(&a.app, genuine).await;
    let p = eventually(WAIT, "the genuine event applied", || async {
        Some(a.app.progress(&victim).await).filter(|p| p.xp != 1200)
    })
    .await;
    assert_eq!(p.xp, 1201, "{p:?}");
    assert_eq!(a.app.score("seasonal", &victim).await, Some(1201));
    // Nothing claimed, entered or taken from the inbox.
    assert!(
        p.pending_rewards.iter().any(|r| r.reward_id == a.reward),
        "the reward is still pending: {p:?}"
    );
    assert!(a.entrants().await.is_empty());
    assert_eq!(a.message_view(&victim, &a.message).await.claimed_at, None);
    // And each route still works for the genuine request.
    for route in a.routes(&victim) {
        let ans = a
            .app
            .post_signed(&route.path, &route.body, now(), &[])
            .await;
        assert!(
            [200, 201, 202].contains(&ans.status.as_u16()),
            "{}: {}",
            route.name,
            ans.body
        );
    }
    assert_eq!(a.entrants().await, vec![victim.clone()]);
    a.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_repeats_count_and_byte_identical_replays_count_once() {
    let a = arena("honest", &[]).await;
    let app = &a.app;
    let player = "ticker_honest";
    let ts = now();
    let tick = |m: &str| {
        serde_json::to_vec(&json!({"type": "progression", "playerId": player, "ts": ts,
            "messageId": m, "payload": {"deltaXp": 10, "activity": "tick"}}))
        .expect("json")
    };
    // Two equal ticks in the same second, told apart by their messageId: both count.
    let t1 = app.post_signed("/events", &tick("t-1"), ts, &[]).await;
    let t2 = app.post_signed("/events", &tick("t-2"), ts, &[]).await;
    assert_eq!((t1.status.as_u16(), t2.status.as_u16()), (202, 202));
    // The first again, byte for byte (a retry, or a replay by someone who saw it): the first
    // answer, marked as a repeat, and no second effect.
    let again = app.post_signed("/events", &tick("t-1"), ts, &[]).await;
    assert_eq!((again.status.as_u16(), &again.body), (208, &t1.body));
    // A keyed request captured and sent again under keys of the sender's choosing (the key is
    // not signed), or under none: the first answer each time, no second effect.
    let keyed = tick("k-1");
    let key = |k| [("idempotency-key", k)];
    let k1 = app.post_signed("/events", &keyed, ts, &key("key-1")).await;
    assert_eq!(k1.status.as_u16(), 202, "{}", k1.body);
    for headers in [&key("key-2")[..], &key("key-3"), &[]] {
        let r = app.post_signed("/events", &keyed, ts, headers).await;
        assert_eq!((r.status.as_u16(), &r.body), (208, &k1.body), "{headers:?}");
    }
    // The client's own retry, signed anew under its key, gets the first answer too.
    let retry = app
        .post_signed("/events", &keyed, ts + 1, &key("key-1"))
        .await;
    assert_eq!((retry.status.as_u16(), &retry.body), (208, &k1.body));
    // A batch of two equal items with their own messageIds, sent twice.
    let item = |m: &str| {
        json!({"type": "progression", "playerId": player, "ts": ts, "messageId": m,
               "payload": {"deltaXp": 10, "activity": "tick"}})
    };
    let batch = serde_json::to_vec(&json!({"events": [item("b-1"), item("b-2")]})).expect("json");
    let b1 = app.post_signed("/events/batch", &batch, ts, &[]).await;
    assert_eq!(b1.status.as_u16(), 200, "{}", b1.body);
    assert_eq!(b1.json::<BatchAnswer>().accepted, 2, "{}", b1.body);
    let b2 = app.post_signed("/events/batch", &batch, ts, &[]).await;
    assert_eq!((b2.status.as_u16(), &b2.body), (208, &b1.body));
    // The same messageId resent in a new request (signed a second later): one event.
    let resent = serde_json::to_vec(&json!({"type": "progression", "playerId": player,
        "ts": ts + 1, "messageId": "t-2", "payload": {"deltaXp": 10, "activity": "tick"}}))
    .expect("json");
    let r = app.post_signed("/events", &resent, ts + 1, &[]).await;
    assert_eq!((r.status.as_u16(), &r.body), (202, &t2.body));

    let xp = eventually(WAIT, "ticks applied", || async {
        Some(app.progress(player).await.xp).filter(|xp| *xp == 50)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.progress(player).await.xp, xp, "50 once, never more");
    assert_eq!(app.score("seasonal", player).await, Some(50));

    // Entries: one player enters two campaigns in the same second; naming the campaign in the
    // body makes the two requests different.
    let second = live_campaign(&a.live, &a.admin, "honest-2").await;
    let entry = |c: &str| {
        serde_json::to_vec(&json!({"playerId": a.player, "campaignId": c})).expect("json")
    };
    let e1 = app
        .post_signed(
            &format!("/campaigns/{}/entries", a.campaign),
            &entry(&a.campaign),
            ts,
            &[],
        )
        .await;
    let e2 = app
        .post_signed(
            &format!("/campaigns/{second}/entries"),
            &entry(&second),
            ts,
            &[],
        )
        .await;
    assert_eq!(
        (e1.status.as_u16(), e2.status.as_u16()),
        (201, 201),
        "{} {}",
        e1.body,
        e2.body
    );
    // The same request again gets its entry; sent to the other campaign it is a reuse (409).
    let path1 = format!("/campaigns/{}/entries", a.campaign);
    let e1b = app.post_signed(&path1, &entry(&a.campaign), ts, &[]).await;
    assert_eq!((e1b.status.as_u16(), &e1b.body), (200, &e1.body));
    // A first-scheme signature covers no path: the one entry it made stands for it.
    let plain = serde_json::to_vec(&json!({"playerId": "entrant_3"})).expect("json");
    let (t, sig) = (ts.to_string(), sign_v1(ts, &plain));
    let v1 = [("x-timestamp", t.as_str()), ("x-signature", sig.as_str())];
    assert_eq!(app.post_raw(&path1, plain.clone(), &v1).await.status, 201);
    app.post_raw(&format!("/campaigns/{second}/entries"), plain, &v1)
        .await
        .assert_problem(409);
    app.post_signed(
        &format!("/campaigns/{second}/entries"),
        &entry(&a.campaign),
        ts,
        &[],
    )
    .await
    .assert_problem(422);
    assert_eq!(a.entrants().await.len(), 2);

    // Inbox: two messages claimed in the same second, each naming its message.
    let m2 = send_message(app, &a.live, &a.admin, &a.player, "gem").await;
    let claim =
        |m: &str| serde_json::to_vec(&json!({"playerId": a.player, "messageId": m})).expect("json");
    let c_path = |m: &str| format!("/players/{}/inbox/{m}/claim", a.player);
    let c1 = app
        .post_signed(&c_path(&a.message), &claim(&a.message), ts, &[])
        .await;
    let c2 = app.post_signed(&c_path(&m2), &claim(&m2), ts, &[]).await;
    assert_eq!(
        (c1.status.as_u16(), c2.status.as_u16()),
        (200, 200),
        "{} {}",
        c1.body,
        c2.body
    );
    assert_ne!(
        c1.json::<ClaimAnswer>().receipts,
        c2.json::<ClaimAnswer>().receipts
    );
    let c1b = app
        .post_signed(&c_path(&a.message), &claim(&a.message), ts, &[])
        .await;
    assert_eq!((c1b.status.as_u16(), &c1b.body), (200, &c1.body));
    app.post_signed(&c_path(&m2), &claim(&a.message), ts, &[])
        .await
        .assert_problem(422);
    // A malformed id in the body is malformed (400 naming it), not another message (422).
    let malformed =
        serde_json::to_vec(&json!({"playerId": a.player, "messageId": "bad id!"})).expect("json");
    let bad = app.post_signed(&c_path(&m2), &malformed, ts, &[]).await;
    assert_eq!(bad.assert_problem(400).field.as_deref(), Some("messageId"));

    // Reward claims: the same request again is the same receipt.
    let rc =
        serde_json::to_vec(&json!({"playerId": a.player, "rewardId": a.reward})).expect("json");
    let r1 = app.post_signed("/rewards/claim", &rc, ts, &[]).await;
    let r2 = app.post_signed("/rewards/claim", &rc, ts, &[]).await;
    assert_eq!(
        (r1.status.as_u16(), r2.status.as_u16()),
        (200, 200),
        "{}",
        r1.body
    );
    assert_eq!(r1.body, r2.body);
    a.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receipt_with_any_field_altered_is_invalid() {
    let a = arena("receipt", &[]).await;
    let body = serde_json::to_vec(&json!({"playerId": a.player})).expect("json");
    let path = format!("/players/{}/inbox/{}/claim", a.player, a.message);
    // The claim reads as a `ClaimAnswer`: its receipts are a list.
    let claimed: ClaimAnswer = a.app.post_signed(&path, &body, now(), &[]).await.json();
    let reward = a.app.claim(&a.player, &a.reward).await;
    assert_eq!(reward.status, 200, "{}", reward.body);
    let mut receipts = claimed.receipts.clone();
    receipts.push(reward.json());
    let mut tried = 0;
    for receipt in receipts {
        assert!(a.live.verify_receipt(&receipt).await.valid, "{receipt:?}");
        let altered = |alter: &dyn Fn(&mut Receipt)| {
            let mut r = receipt.clone();
            alter(&mut r);
            r
        };
        let sig = receipt.sig.as_str();
        let flipped = format!(
            "{}{}",
            if sig.starts_with('0') { '1' } else { '0' },
            &sig[1..]
        );
        for bad in [
            altered(&|r| r.receipt_id.push('x')),
            altered(&|r| r.player_id = "someone_else".into()),
            altered(&|r| r.item.push('x')),
            altered(&|r| r.timestamp += 1),
            altered(&|r| r.sig = flipped.clone()),
            altered(&|r| r.sig = sig.to_uppercase() + "00"),
        ] {
            let v = a.live.verify_receipt(&bad).await;
            assert!(!v.valid, "{bad:?} -> {v:?}");
            tried += 1;
        }
    }
    assert_eq!(tried, 12);
    // Fields shifted across the ':' that joins them in the signed text: refused too.
    let r = &claimed.receipts[0];
    assert_eq!(r.item, "abc:gem");
    let shifted = Receipt {
        receipt_id: format!("{}:{}", r.receipt_id, a.player),
        player_id: "abc".into(),
        item: "gem".into(),
        ..r.clone()
    };
    assert!(!a.live.verify_receipt(&shifted).await.valid);
    a.app.shutdown().await;
}

/// Runs `n` copies of `make(i)` at once; the answers.
async fn at_once<F, Fut>(n: usize, make: F) -> Vec<Answer>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(make(i))).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("join"));
    }
    out
}

fn statuses(answers: &[Answer]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for a in answers {
        *m.entry(a.status.as_u16()).or_default() += 1;
    }
    m
}

/// Asserts every one of `answers` has `status`.
fn assert_all(answers: &[Answer], status: u16) {
    let counts = statuses(answers);
    assert_eq!(counts.get(&status), Some(&answers.len()), "{counts:?}");
}

/// `body` posted to `path` 100 times at once, copy `i` signed at `ts - i` (so each differs).
async fn hundred_signed(a: &Arc<Arena>, path: String, body: Value, ts: i64) -> Vec<Answer> {
    let body = serde_json::to_vec(&body).expect("json");
    at_once(100, |i| {
        let (a, path, body) = (a.clone(), path.clone(), body.clone());
        async move { a.app.post_signed(&path, &body, ts - (i as i64), &[]).await }
    })
    .await
}

/// `n` progression events of 1 XP from `player` sent at once, with message ids `{prefix}{i}`.
async fn burst(
    app: &Arc<TestApp>,
    n: usize,
    player: &str,
    prefix: &str,
    activity: &str,
) -> Vec<Answer> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"type": "progression", "playerId": player, "ts": now(),
                   "messageId": format!("{prefix}{i}"), "payload": {"deltaXp": 1, "activity": activity}})
        })
        .collect();
    at_once(n, |i| {
        let (app, event) = (app.clone(), events[i].clone());
        async move { app.send_event(&event).await }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_copies_have_one_effect() {
    let a = Arc::new(arena("race", &[]).await);

    // One signed event without a key, sent 100 times at once: one 202, the rest its answer.
    let body = serde_json::to_vec(&json!({"type": "progression", "playerId": "racer_1",
        "ts": now(), "payload": {"deltaXp": 5, "activity": "race"}}))
    .expect("json");
    let ts = now();
    let sig = String::from_utf8(sign(SECRET.as_bytes(), ts, "/events", &body)).expect("ascii");
    let copies = at_once(100, |_| {
        let (a, body, sig) = (a.clone(), body.clone(), sig.clone());
        async move {
            let ts = ts.to_string();
            a.app
                .post_raw(
                    "/events",
                    body,
                    &[("x-timestamp", ts.as_str()), ("x-signature", sig.as_str())],
                )
                .await
        }
    })
    .await;
    let counts = statuses(&copies);
    assert_eq!(counts.get(&202), Some(&1), "{counts:?}");
    assert!(
        counts.keys().all(|s| [202, 208, 409].contains(s)),
        "{counts:?}"
    );
    let first = copies.iter().find(|c| c.status == 202).expect("the 202");
    assert!(copies
        .iter()
        .filter(|c| c.status == 208)
        .all(|c| c.body == first.body));

    // 100 claims of one reward at once, each signed differently: one receipt.
    let base = now();
    let claim = json!({"playerId": a.player, "rewardId": a.reward});
    let claims = hundred_signed(&a, "/rewards/claim".into(), claim, base).await;
    assert_all(&claims, 200);
    let ids: std::collections::HashSet<_> = claims
        .iter()
        .map(|c| c.json::<Receipt>().receipt_id)
        .collect();
    assert_eq!(ids.len(), 1, "one receipt");

    // 100 entries of one player into one campaign at once, each signed differently: one entry.
    let path = format!("/campaigns/{}/entries", a.campaign);
    let entries = hundred_signed(&a, path, json!({"playerId": a.player}), base).await;
    let counts = statuses(&entries);
    assert_eq!(counts.get(&201), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&409), Some(&99), "{counts:?}");
    assert_eq!(a.entrants().await.len(), 1);

    // 100 claims of one inbox message at once: the same receipts for all.
    let path = format!("/players/{}/inbox/{}/claim", a.player, a.message);
    let inbox = hundred_signed(&a, path, json!({"playerId": a.player}), base).await;
    assert_all(&inbox, 200);
    let first = inbox[0].json::<ClaimAnswer>().receipts;
    assert!(inbox
        .iter()
        .all(|c| c.json::<ClaimAnswer>().receipts == first));

    let xp = eventually(WAIT, "the race event", || async {
        Some(a.app.progress("racer_1").await.xp).filter(|xp| *xp == 5)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.app.progress("racer_1").await.xp, xp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_signed_request_sent_for_two_targets_at_once_gets_one_effect_and_a_409() {
    let a = Arc::new(arena("twice", &[]).await);
    let app = &a.app;
    // First-scheme signatures cover no path and the bodies name no target, so one signature
    // fits both paths; sent to both at once, both pass the signature's lookup and the second
    // write clashes on its unique key. A player per round keeps each round's signature its own.
    for round in 0..8 {
        let player = format!("twice_claim_{round}");
        let (m1, m2) = (
            send_message(app, &a.live, &a.admin, &player, "gem").await,
            send_message(app, &a.live, &a.admin, &player, "gem").await,
        );
        let paths = [m1, m2].map(|m| format!("/players/{player}/inbox/{m}/claim"));
        let refused = one_effect(app, &paths, &player, 200).await;
        refused.assert_problem(409);
    }
    for round in 0..4 {
        let (k1, k2) = (
            live_campaign(&a.live, &a.admin, &format!("twice{round}a")).await,
            live_campaign(&a.live, &a.admin, &format!("twice{round}b")).await,
        );
        let paths = [k1, k2].map(|k| format!("/campaigns/{k}/entries"));
        one_effect(app, &paths, &format!("twice_entry_{round}"), 201).await;
    }
}

/// A `v2=` signature covers its method and path: a signed entry refused by one campaign cannot
/// be sent to another, nor used as an inbox claim; with `SIG_ACCEPT_V1=false` a first-scheme
/// signature is refused whatever it signs, and the schemes are counted apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_v2_signature_fits_only_its_own_route_and_v1_can_be_turned_off() {
    let a = arena("bound", &["--sig-accept-v1", "false"]).await;
    let app = &a.app;
    let player = a.player.clone();
    let body = serde_json::to_vec(&json!({"playerId": player})).expect("json");
    let ts = now();
    let for_path = |path: &str| {
        let sig = String::from_utf8(sign(SECRET.as_bytes(), ts, path, &body)).expect("ascii");
        [
            ("x-timestamp".to_owned(), ts.to_string()),
            ("x-signature".to_owned(), sig),
        ]
    };
    let send = |path: String, headers: [(String, String); 2]| {
        let body = body.clone();
        async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            app.post_raw(&path, body, &h).await
        }
    };
    // A campaign not live yet refuses the entry (nothing stored) ...
    let later = open_campaign(
        "Later",
        chrono::Utc::now() + chrono::Duration::hours(1),
        chrono::Duration::hours(1),
        "once",
        json!({"kind": "draw", "winners": 1, "item": "chest"}),
    );
    let closed = a.live.schedule_new(&a.admin, later).await.id;
    let closed_path = format!("/campaigns/{closed}/entries");
    let entry = for_path(&closed_path);
    send(closed_path.clone(), entry.clone())
        .await
        .assert_problem(409);
    // ... and its signature fits neither another campaign nor the player's inbox claim.
    let live_path = format!("/campaigns/{}/entries", a.campaign);
    let claim_path = format!("/players/{player}/inbox/{}/claim", a.message);
    for path in [&live_path, &claim_path] {
        let refused = send(path.clone(), entry.clone()).await;
        refused.assert_problem(401);
    }
    assert!(a.entrants().await.is_empty());
    assert_eq!(a.message_view(&player, &a.message).await.claimed_at, None);
    // Signed for its own path, each goes through.
    let before = app.metrics().await;
    assert_eq!(
        send(live_path.clone(), for_path(&live_path)).await.status,
        201
    );
    assert_eq!(
        send(claim_path.clone(), for_path(&claim_path)).await.status,
        200
    );
    assert_eq!(a.entrants().await, vec![player.clone()]);
    // The first scheme is refused here, also for a body and path it would otherwise fit.
    let event = serde_json::to_vec(&xp("bound_v1", 5)).expect("json");
    let (t, sig) = (ts.to_string(), sign_v1(ts, &event));
    let v1 = app
        .post_raw(
            "/events",
            event,
            &[("x-timestamp", t.as_str()), ("x-signature", sig.as_str())],
        )
        .await;
    v1.assert_problem(401);
    assert_eq!(
        v1.body["detail"].as_str(),
        Some(AuthError::V1Refused.to_string().as_str()),
        "{}",
        v1.body
    );
    let after = app.metrics().await;
    let count = |m: &str, scheme: &str| {
        metric_sum(
            m,
            "signatures_verified_total",
            &[&format!("scheme=\"{scheme}\"")],
        )
    };
    assert_eq!(count(&after, "v2") - count(&before, "v2"), 2.0);
    assert_eq!(count(&after, "v1") - count(&before, "v1"), 0.0);
    // Only the first scheme is counted by key id: API keys made without limit add no v2 series.
    let keyed_v2 = after.lines().find(|l| {
        l.starts_with("signatures_verified_total{")
            && l.contains("scheme=\"v2\"")
            && l.contains("key=")
    });
    assert_eq!(keyed_v2, None);
    a.app.shutdown().await;
}

/// `{"playerId": player}` signed once (first scheme) and sent to both `paths` at the same
/// moment: asserts one answer is `done` and the other 409; the refused one.
async fn one_effect(app: &TestApp, paths: &[String; 2], player: &str, done: u16) -> Answer {
    let (body, ts) = (
        serde_json::to_vec(&json!({"playerId": player})).expect("json"),
        now(),
    );
    let (t, sig) = (ts.to_string(), sign_v1(ts, &body));
    let headers = [("x-timestamp", t.as_str()), ("x-signature", sig.as_str())];
    let (a1, a2) = tokio::join!(
        app.post_raw(&paths[0], body.clone(), &headers),
        app.post_raw(&paths[1], body.clone(), &headers),
    );
    let mut got = [a1.status.as_u16(), a2.status.as_u16()];
    got.sort_unstable();
    assert_eq!(got, [done, 409], "{paths:?}: {} {}", a1.body, a2.body);
    if a1.status == 409 {
        a1
    } else {
        a2
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_player_gets_429_and_another_player_is_not_slowed() {
    let app = Arc::new(spawn_app(&["--rate-limit-max", "20"]).await);
    // 200 events at once from one player, and an honest player's 10 in the same second.
    let flood = burst(&app, 200, "flooder_1", "f", "spam");
    let honest = burst(&app, 10, "honest_1", "h", "play");
    let (flood, honest) = tokio::join!(flood, honest);
    let counts = statuses(&flood);
    let accepted = counts.get(&202).copied().unwrap_or(0);
    assert!(counts.keys().all(|s| [202, 429].contains(s)), "{counts:?}");
    assert!(counts.get(&429).copied().unwrap_or(0) >= 100, "{counts:?}");
    for a in flood.iter().filter(|a| a.status == 429) {
        a.assert_retry_later();
    }
    assert_all(&honest, 202);
    // What was accepted is counted, exactly.
    eventually(WAIT, "the accepted flood counted", || async {
        let p = app.progress("flooder_1").await;
        (p.xp == accepted as u64).then_some(())
    })
    .await;
    eventually(WAIT, "the honest player counted", || async {
        (app.progress("honest_1").await.xp == 10).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_a_4xx_problem_never_a_5xx() {
    let a = arena("malformed", &[]).await;
    let app = &a.app;
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let event = |payload: &str| {
        format!(
            r#"{{"type":"progression","playerId":"player_1","ts":{},"payload":{payload}}}"#,
            now()
        )
    };
    let tiny =
        r#"{"type":"progression","playerId":"p_1","ts":0,"payload":{"deltaXp":1,"activity":"a"}}"#;
    let ten_thousand = format!("[{}]", vec![tiny; 10_000].join(","));
    let ten_thousand_ints = format!("[{}]", vec!["1"; 10_000].join(","));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("deep array", deep_array.clone().into_bytes()),
        ("deep object", deep_object.clone().into_bytes()),
        (
            "huge float",
            event(r#"{"deltaXp":1e400,"activity":"a"}"#).into_bytes(),
        ),
        (
            "u64 overflow",
            event(r#"{"deltaXp":18446744073709551616,"activity":"a"}"#).into_bytes(),
        ),
        (
            "2^53+1",
            event(r#"{"deltaXp":9007199254740993.0,"activity":"a"}"#).into_bytes(),
        ),
        (
            "negative zero",
            event(r#"{"deltaXp":-0.0,"activity":"a"}"#).into_bytes(),
        ),
        (
            "wrong types",
            br#"{"type":7,"playerId":["x"],"ts":"now","payload":[]}"#.to_vec(),
        ),
        ("payload array", event("[1,2]").into_bytes()),
        (
            "invalid UTF-8",
            b"{\"type\":\"progression\xff\xfe\"}".to_vec(),
        ),
        (
            "lone surrogate",
            event(r#"{"deltaXp":1,"activity":"\ud800"}"#).into_bytes(),
        ),
        ("NUL", b"\0".to_vec()),
        ("empty", Vec::new()),
        ("whitespace", b"   ".to_vec()),
        ("null", b"null".to_vec()),
        ("ten thousand events", ten_thousand.into_bytes()),
        ("ten thousand ints", ten_thousand_ints.into_bytes()),
        ("two MiB", vec![b' '; 2 * 1024 * 1024]),
    ];
    let mut tried = 0;
    for path in [
        "/events".to_owned(),
        "/events/batch".to_owned(),
        "/rewards/claim".to_owned(),
        format!("/campaigns/{}/entries", a.campaign),
        format!("/players/{}/inbox/{}/claim", a.player, a.message),
    ] {
        for (what, body) in &bodies {
            // Over the body limit the server answers 413 from the Content-Length alone and
            // closes the connection: a client still writing the body may see the pipe break, and
            // the next request may find its pooled connection closed. A second try on a fresh
            // connection must get an answer; only the body over every limit may break it again.
            let mut sent = app.try_post_signed(&path, body, now(), &[]).await;
            if matches!(&sent, Err(e) if e.is_request()) {
                sent = app.try_post_signed(&path, body, now(), &[]).await;
            }
            let ans = match sent {
                Ok(ans) => ans,
                Err(e) if body.len() > 1024 * 1024 && e.is_request() => {
                    tried += 1;
                    continue;
                }
                Err(e) => panic!("{path} {what}: {e}"),
            };
            let s = ans.status.as_u16();
            // A batch judges items one by one: a 200 with every item refused is fine.
            if path == "/events/batch" && s == 200 {
                assert_eq!(
                    ans.json::<BatchAnswer>().accepted,
                    0,
                    "{what}: {}",
                    ans.body
                );
            } else {
                assert!((400..500).contains(&s), "{path} {what}: {s} {}", ans.body);
                ans.assert_problem(s);
            }
            tried += 1;
        }
    }
    assert_eq!(tried, 5 * bodies.len());
    // Out-of-range path and query values on the read routes.
    let long = "p".repeat(51);
    for path in [
        "/leaderboard?limit=0".to_owned(),
        "/leaderboard?limit=99999999999999999999999".to_owned(),
        "/leaderboard?limit=-1".to_owned(),
        "/leaderboard?limit=1.5".to_owned(),
        "/leaderboard?window=%FF".to_owned(),
        "/leaderboard?window=daily&window=weekly".to_owned(),
        "/leaderboard?nope=1".to_owned(),
        "/leaderboard/players/player_1?around=51".to_owned(),
        "/leaderboard/players/player_1?around=-1".to_owned(),
        format!("/leaderboard/players/{long}"),
        "/leaderboard/players/%FF%FE".to_owned(),
        "/leaderboard/history?period=%00".to_owned(),
        format!("/players/{long}/progress"),
        "/players/a%20b/progress".to_owned(),
        format!("/players/{long}/inbox"),
        format!("/campaigns/{}/entrants", "c".repeat(65)),
        format!("/players/{}/campaigns", "%FF"),
    ] {
        // The last body above got a 413 and its connection closed: the first read may find
        // that pooled connection dead, and a second try goes out on a fresh one.
        let ans = match app.try_get(&path).await {
            Err(e) if e.is_request() => app.get(&path).await,
            sent => sent.expect("request"),
        };
        let s = ans.status.as_u16();
        assert!((400..500).contains(&s), "{path}: {s} {}", ans.body);
        ans.assert_problem(s);
    }
    // Nothing got through.
    assert_eq!(app.progress("player_1").await.xp, 0);
    // And deep nesting on an operator route, with a token.
    // No body, then a deeply nested one: each a problem, not the framework's plain text.
    let campaigns = format!("{}/campaigns", app.base);
    for body in [None, Some(deep_object)] {
        let mut req = app.client.post(&campaigns).bearer_auth(&a.admin);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let ans = common::answer(req.send().await.expect("post")).await;
        let s = ans.status.as_u16();
        assert!((400..500).contains(&s), "{s} {}", ans.body);
        ans.assert_problem(s);
    }
}
