//! The live-event story, told through the HTTP contract whatever the deployment shape: the
//! bootstrap admin signs in, creates an operator and an API key; a draw campaign opens, takes
//! 30 signed entries (some ineligible, some repeated), closes, draws, settles into inboxes; the
//! winners claim receipts that verify; the draw re-runs identically in an independent
//! implementation; webhooks receive every event, signed; a revoked key is refused everywhere
//! within 5 s.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use liveops_campaigns::{CampaignView, PlayerCampaigns};
use liveops_core::draw::PublishedDraw;
use liveops_core::stores::CampaignState;
use liveops_core::{Keyring, Receipt, Verification};
use liveops_distribution::{ClaimAnswer, InboxView, MessageView};
use liveops_http::Problem;
use liveops_operators::{ApiKeyView, AuditList, CreatedApiKey, LoginAnswer};
use liveops_participation::{EntrantList, EntryView};
use liveops_progression::ProgressView;
use liveops_testkit::fixtures::reference_draw;
use serde_json::{json, Value};

use super::{eventually, now, succeed, BIN};

/// The bootstrap admin every story starts from (`ADMIN_EMAIL`, `ADMIN_PASSWORD`).
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// Their password.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// Where each service answers.
#[derive(Clone, Debug)]
pub struct LiveUrls {
    pub gateway: String,
    pub progression: String,
    pub operators: String,
    pub campaigns: String,
    pub participation: String,
    pub distribution: String,
}

impl LiveUrls {
    /// Everything on one base (the embedded default).
    pub fn all(base: &str) -> Self {
        Self {
            gateway: base.into(),
            progression: base.into(),
            operators: base.into(),
            campaigns: base.into(),
            participation: base.into(),
            distribution: base.into(),
        }
    }
}

/// A client of the live-event API.
#[derive(Clone)]
pub struct Live {
    pub urls: LiveUrls,
    pub http: reqwest::Client,
}

/// An answer: status and JSON body (or the text as a JSON string).
pub type Answer = (u16, Value);

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub use liveops_testkit::served::read;

/// The refusal an answer's `body` carries.
pub fn problem(body: &Value) -> Problem {
    read(body)
}

/// A key game servers sign with: its id and secret.
#[derive(Clone, Debug)]
pub struct ApiKey {
    pub key_id: String,
    pub secret: String,
}

impl ApiKey {
    fn ring(&self) -> Keyring {
        Keyring::new(vec![(
            self.key_id.clone(),
            self.secret.clone().into_bytes(),
        )])
        .expect("key")
    }
}

/// A signed request, kept so it can be sent again byte for byte.
#[derive(Clone, Debug)]
pub struct SignedRequest {
    pub url: String,
    pub body: Vec<u8>,
    pub ts: i64,
    pub sig: String,
    pub key_id: String,
}

impl Live {
    pub fn new(urls: LiveUrls) -> Self {
        Self {
            urls,
            http: reqwest::Client::new(),
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        let url = format!("{}/auth/login", self.urls.operators);
        answer(
            self.http
                .post(url)
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .expect("login"),
        )
        .await
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let (s, b) = self.login(email, password).await;
        assert_eq!(s, 200, "login {email}: {b}");
        read::<LoginAnswer>(&b).token
    }

    /// A request with a bearer token (or none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.expect("request")).await
    }

    pub async fn get(&self, url: String, token: Option<&str>) -> Answer {
        self.call(reqwest::Method::GET, url, token, None).await
    }

    pub async fn post(&self, url: String, token: &str, body: Value) -> Answer {
        self.call(reqwest::Method::POST, url, Some(token), Some(body))
            .await
    }

    /// Signs `body` for `url` with `key` now.
    pub fn sign(&self, url: String, key: &ApiKey, body: &Value) -> SignedRequest {
        self.sign_at(url, key, body, now())
    }

    /// Signs `body` for `url` with `key` at `ts` (unix seconds).
    pub fn sign_at(&self, url: String, key: &ApiKey, body: &Value, ts: i64) -> SignedRequest {
        let body = serde_json::to_vec(body).expect("json");
        let sig = super::sign_post(&key.ring(), Some(&key.key_id), ts, &url, &body);
        SignedRequest {
            url,
            body,
            ts,
            sig,
            key_id: key.key_id.clone(),
        }
    }

    pub async fn send_signed(&self, r: &SignedRequest) -> Answer {
        self.try_send_signed(r).await.expect("signed request")
    }

    /// [`Live::send_signed`], `None` when no answer came (the server went away).
    pub async fn try_send_signed(&self, r: &SignedRequest) -> Option<Answer> {
        let sent = self
            .http
            .post(&r.url)
            .header("content-type", "application/json")
            .header("x-timestamp", r.ts.to_string())
            .header("x-signature", &r.sig)
            .header("x-key-id", &r.key_id)
            .body(r.body.clone())
            .send()
            .await
            .ok()?;
        Some(answer(sent).await)
    }

    pub async fn signed(&self, url: String, key: &ApiKey, body: &Value) -> Answer {
        self.send_signed(&self.sign(url, key, body)).await
    }

    /// The signed request to `url` for `player` (entries and claims): `None` when no answer came.
    pub async fn try_signed_for(&self, url: String, key: &ApiKey, player: &str) -> Option<Answer> {
        let request = self.sign(url, key, &json!({"playerId": player}));
        self.try_send_signed(&request).await
    }

    /// Asks, as `admin`, for an operator `email` with `password` and `role`.
    pub async fn add_operator(
        &self,
        admin: &str,
        email: &str,
        password: &str,
        role: &str,
    ) -> Answer {
        let body = json!({"email": email, "password": password, "role": role});
        self.post(format!("{}/operators", self.urls.operators), admin, body)
            .await
    }

    /// Asks, as `token`, for a webhook to `url` signed with `secret` for `events`.
    pub async fn add_webhook(
        &self,
        token: &str,
        url: &str,
        secret: &str,
        events: &[&str],
    ) -> Answer {
        let body = json!({"url": url, "secret": secret, "events": events});
        self.post(format!("{}/webhooks", self.urls.distribution), token, body)
            .await
    }

    /// Subscribes a receiver at `http://{addr}/hook` to `events` (asserting 201); its id.
    pub async fn hook_at(
        &self,
        token: &str,
        addr: impl std::fmt::Display,
        secret: &str,
        events: &[&str],
    ) -> String {
        let url = format!("http://{addr}/hook");
        let (s, hook) = self.add_webhook(token, &url, secret, events).await;
        assert_eq!(s, 201, "{hook}");
        hook["id"].as_str().expect("a webhook id").to_owned()
    }

    /// Sends `event` to the gateway, signed with `key`.
    pub async fn send_event(&self, key: &ApiKey, event: &Value) -> Answer {
        self.signed(format!("{}/events", self.urls.gateway), key, event)
            .await
    }

    pub async fn create_key(&self, admin: &str, name: &str) -> ApiKey {
        let (s, b) = self
            .post(
                format!("{}/api-keys", self.urls.operators),
                admin,
                json!({"name": name}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let created: CreatedApiKey = read(&b);
        ApiKey {
            key_id: created.key_id,
            secret: created.secret,
        }
    }

    /// Waits until `key` is known to every process that checks signatures (each reads new keys
    /// within a second or two, on its own tick): the gateway accepts an event signed with it, and
    /// participation and distribution answer 404, not 401, to a request signed with it for a
    /// campaign and an inbox message that do not exist.
    pub async fn wait_key_works(&self, key: &ApiKey) {
        let u = &self.urls;
        eventually(Duration::from_secs(10), "the API key works", || async {
            let probes = [
                (
                    format!("{}/events", u.gateway),
                    json!({"type": "progression", "playerId": "key_probe", "ts": now(),
                           "payload": {"deltaXp": 1, "activity": "probe"}}),
                    202,
                ),
                (
                    format!("{}/campaigns/cmp_key_probe/entries", u.participation),
                    json!({"playerId": "key_probe"}),
                    404,
                ),
                (
                    format!(
                        "{}/players/key_probe/inbox/msg_key_probe/claim",
                        u.distribution
                    ),
                    json!({"playerId": "key_probe"}),
                    404,
                ),
            ];
            for (url, body, want) in probes {
                if self.signed(url, key, &body).await.0 != want {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    /// The campaign `id` as operators see it (asserts a 200).
    pub async fn campaign(&self, token: &str, id: &str) -> CampaignView {
        let (s, b) = self
            .get(
                format!("{}/campaigns/{id}", self.urls.campaigns),
                Some(token),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        read(&b)
    }

    /// Creates `campaign` (a draft, 201) and schedules it (200); the campaign as scheduled.
    pub async fn schedule_new(&self, token: &str, campaign: Value) -> CampaignView {
        let base = &self.urls.campaigns;
        let (s, c) = self
            .post(format!("{base}/campaigns"), token, campaign)
            .await;
        assert_eq!(s, 201, "{c}");
        let id = read::<CampaignView>(&c).id;
        let (s, c) = self.act(token, &id, "schedule").await;
        assert_eq!(s, 200, "{c}");
        read(&c)
    }

    /// Asks, as `token`, to `action` (`schedule`, `cancel`) the campaign `id`.
    pub async fn act(&self, token: &str, id: &str, action: &str) -> Answer {
        let url = format!("{}/campaigns/{id}/{action}", self.urls.campaigns);
        self.post(url, token, json!({})).await
    }

    /// Creates and schedules `campaign`, then waits (30 s at most) until it is live; its id.
    pub async fn schedule_live(&self, token: &str, campaign: Value) -> String {
        let id = self.schedule_new(token, campaign).await.id;
        let live = Duration::from_secs(30);
        self.wait_state(token, &id, CampaignState::Live, live).await;
        id
    }

    /// Polls the campaign `id` until it is in `state`; the campaign then.
    pub async fn wait_state(
        &self,
        token: &str,
        id: &str,
        state: CampaignState,
        within: Duration,
    ) -> CampaignView {
        let what = format!("campaign {id} {}", state.as_str());
        eventually(within, &what, || async {
            Some(self.campaign(token, id).await).filter(|c| c.state == state)
        })
        .await
    }

    /// The player's progression this season, if the service answers with it.
    pub async fn progress(&self, player: &str) -> Option<ProgressView> {
        let url = format!("{}/players/{player}/progress", self.urls.progression);
        let (s, b) = self.get(url, None).await;
        (s == 200).then(|| read(&b))
    }

    /// The player's inbox (asserts a 200).
    pub async fn inbox(&self, player: &str) -> InboxView {
        self.inbox_at(player, "").await
    }

    /// `player`'s whole inbox, the messages past their expiry included (asserts a 200).
    pub async fn inbox_with_expired(&self, player: &str) -> InboxView {
        self.inbox_at(player, "?expired=true").await
    }

    /// `GET /players/{player}/inbox` with `query` (asserts a 200).
    pub async fn inbox_at(&self, player: &str, query: &str) -> InboxView {
        let url = format!("{}/players/{player}/inbox{query}", self.urls.distribution);
        let (s, b) = self.get(url, None).await;
        assert_eq!(s, 200, "{b}");
        read(&b)
    }

    /// The messages of `campaign` in `player`'s inbox.
    pub async fn prizes(&self, player: &str, campaign: &str) -> Vec<MessageView> {
        self.inbox(player)
            .await
            .messages
            .into_iter()
            .filter(|m| m.campaign_id.as_deref() == Some(campaign))
            .collect()
    }

    /// The campaigns `player` may enter, as the player's client lists them (asserts a 200).
    pub async fn player_campaigns(&self, player: &str) -> PlayerCampaigns {
        let url = format!("{}/players/{player}/campaigns", self.urls.campaigns);
        let (s, b) = self.get(url, None).await;
        assert_eq!(s, 200, "{b}");
        read(&b)
    }

    /// `player` enters `campaign`, signed with `key`.
    pub async fn enter(&self, key: &ApiKey, campaign: &str, player: &str) -> Answer {
        let url = format!("{}/campaigns/{campaign}/entries", self.urls.participation);
        self.signed(url, key, &json!({"playerId": player})).await
    }

    pub async fn claim(&self, key: &ApiKey, player: &str, message: &str) -> Answer {
        self.signed(
            format!(
                "{}/players/{player}/inbox/{message}/claim",
                self.urls.distribution
            ),
            key,
            &json!({"playerId": player}),
        )
        .await
    }

    /// Claims a prize message that must pay (asserts a 200) and reads its receipts.
    pub async fn claim_paid(&self, key: &ApiKey, player: &str, message: &str) -> ClaimAnswer {
        let (s, answer) = self.claim(key, player, message).await;
        assert_eq!(s, 200, "{player} claims {message}: {answer}");
        read(&answer)
    }

    /// What `/receipts/verify` says of `receipt` (asserts a 200).
    pub async fn verify_receipt(&self, receipt: &impl serde::Serialize) -> Verification {
        let (s, b) = answer(
            self.http
                .post(format!("{}/receipts/verify", self.urls.progression))
                .json(receipt)
                .send()
                .await
                .expect("verify"),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        read(&b)
    }
}

/// A campaign `title` open to every level from `start` for `length`, entered once or daily
/// (`entry_limit`), paying `reward`.
pub fn open_campaign(
    title: &str,
    start: chrono::DateTime<chrono::Utc>,
    length: chrono::Duration,
    entry_limit: &str,
    reward: Value,
) -> Value {
    json!({"title": title, "startsAt": start.to_rfc3339(),
           "endsAt": (start + length).to_rfc3339(),
           "eligibility": {"minLevel": 1}, "entryLimit": entry_limit, "reward": reward})
}

/// What a webhook receiver got: (event type, body, signature valid).
pub type Received = Arc<Mutex<Vec<(String, Value, bool)>>>;

/// A webhook receiver on 127.0.0.1 checking `X-LiveOps-Signature` with `secret`; answers
/// `status` to everything.
pub async fn receiver(secret: &'static str, status: u16) -> (SocketAddr, Received) {
    receiver_answering(secret, Arc::new(AtomicU16::new(status))).await
}

/// [`receiver`] answering whatever `status` holds at the time (a receiver that recovers).
pub async fn receiver_answering(
    secret: &'static str,
    status: Arc<AtomicU16>,
) -> (SocketAddr, Received) {
    let open = tokio::sync::Semaphore::MAX_PERMITS;
    gated_receiver(secret, status, Arc::new(tokio::sync::Semaphore::new(open))).await
}

/// [`receiver_answering`] that answers a post it has recorded only once it takes a permit of
/// `gate` (the test decides when).
pub async fn gated_receiver(
    secret: &'static str,
    status: Arc<AtomicU16>,
    gate: Arc<tokio::sync::Semaphore>,
) -> (SocketAddr, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (keep, status, gate) = (keep.clone(), status.clone(), gate.clone());
            async move {
                let sig = headers
                    .get("x-liveops-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let t: i64 = sig
                    .split(',')
                    .find_map(|p| p.strip_prefix("t="))
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&body).to_string();
                let valid = sig == liveops_distribution::signature(secret, t, &text)
                    && (now() - t).abs() < 300;
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let kind = v["type"].as_str().unwrap_or_default().to_owned();
                keep.lock().expect("lock").push((kind, v, valid));
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst)).expect("status")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

/// The whole story; `tag` keeps players unique per run.
pub async fn campaign_story(urls: LiveUrls, tag: &str) {
    let live = Live::new(urls.clone());
    let u = &live.urls;
    let p = |i: usize| format!("p{i:02}_{tag}");

    // The bootstrap admin signs in and adds an operator; roles are enforced.
    let admin = live.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (s, _) = live.login(ADMIN_EMAIL, "wrong password!!").await;
    assert_eq!(s, 401);
    let ops_email = format!("ops_{tag}@example.com");
    let (s, b) = live
        .add_operator(&admin, &ops_email, "operator password 1", "operator")
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = live
        .add_operator(&admin, &ops_email, "operator password 2", "viewer")
        .await;
    assert_eq!(s, 409, "the email is taken");
    let ops = live.token(&ops_email, "operator password 1").await;
    let (s, _) = live
        .post(
            format!("{}/api-keys", u.operators),
            &ops,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(s, 403, "operators cannot make API keys");
    let (s, _) = live.get(format!("{}/campaigns", u.campaigns), None).await;
    assert_eq!(s, 401, "no token");

    // An API key for the game server; it signs events and entries.
    let key = live.create_key(&admin, &format!("game server {tag}")).await;
    live.wait_key_works(&key).await;

    // Twenty players reach level 2 (1200 XP); five stay at level 1.
    for i in 0..20 {
        let (s, b) = live
            .send_event(
                &key,
                &json!({"type": "progression", "playerId": p(i), "ts": now(),
                        "payload": {"deltaXp": 1200, "activity": "quest"}}),
            )
            .await;
        assert_eq!(s, 202, "{b}");
    }
    eventually(Duration::from_secs(30), "players levelled up", || async {
        let v = live.progress(&p(19)).await?;
        (v.level == 2).then_some(())
    })
    .await;

    // Webhooks: a receiver for every event.
    let (addr, received) = receiver("whsec_story_0123456789", 200).await;
    let events = [
        "campaign.live",
        "campaign.ended",
        "draw.completed",
        "campaign.settled",
    ];
    live.hook_at(&ops, addr, "whsec_story_0123456789", &events)
        .await;

    // A draw campaign: bad ones are refused, the good one is scheduled with a commitment.
    let start = chrono::Utc::now() + chrono::Duration::seconds(3);
    let end = start + chrono::Duration::seconds(9);
    let campaign = json!({
        "title": format!("Winter draw {tag}"),
        "description": "Five golden chests",
        "startsAt": start.to_rfc3339(),
        "endsAt": end.to_rfc3339(),
        "eligibility": {"minLevel": 2},
        "entryLimit": "once",
        "reward": {"kind": "draw", "winners": 5, "item": "gold_chest"},
    });
    let mut bad = campaign.clone();
    bad["reward"]["winners"] = json!(0);
    let (s, b) = live
        .post(format!("{}/campaigns", u.campaigns), &ops, bad)
        .await;
    assert_eq!(
        (s, problem(&b).field.as_deref()),
        (400, Some("reward.winners")),
        "{b}"
    );
    let (s, c) = live
        .post(format!("{}/campaigns", u.campaigns), &ops, campaign)
        .await;
    assert_eq!(s, 201, "{c}");
    let c: CampaignView = read(&c);
    assert_eq!(c.state, CampaignState::Draft, "{c:?}");
    let id = c.id;
    let (s, c) = live.act(&ops, &id, "schedule").await;
    assert_eq!(s, 200, "{c}");
    let c: CampaignView = read(&c);
    assert_eq!(c.state, CampaignState::Scheduled, "{c:?}");
    let commitment = c.commitment.expect("commitment");
    let (s, d) = live
        .get(format!("{}/campaigns/{id}/draw", u.participation), None)
        .await;
    assert_eq!(s, 200, "{d}");
    let d: PublishedDraw = read(&d);
    assert_eq!((&d.commitment, &d.seed), (&commitment, &None));

    // Not live yet: entries are refused.
    let entries_url = format!("{}/campaigns/{id}/entries", u.participation);
    let (s, b) = live
        .signed(entries_url.clone(), &key, &json!({"playerId": p(0)}))
        .await;
    assert_eq!(
        (s, problem(&b).kind.as_str()),
        (409, "/problems/campaign-not-live"),
        "{b}"
    );

    live.wait_state(&ops, &id, CampaignState::Live, Duration::from_secs(15))
        .await;
    let mine = live.player_campaigns(&p(0)).await;
    assert!(
        mine.campaigns
            .iter()
            .any(|c| c.campaign_id == id && !c.entered),
        "{mine:?}"
    );
    let low = live.player_campaigns(&p(20)).await;
    assert!(
        !low.campaigns.iter().any(|c| c.campaign_id == id),
        "level 1 may not enter"
    );

    // 30 signed entries: 20 eligible players, 5 ineligible, 5 repeats of earlier requests.
    let mut first: HashMap<usize, (SignedRequest, EntryView)> = HashMap::new();
    let mut statuses: Vec<u16> = Vec::new();
    for i in 0..25 {
        let req = live.sign(entries_url.clone(), &key, &json!({"playerId": p(i)}));
        let (s, b) = live.send_signed(&req).await;
        statuses.push(s);
        if i < 20 {
            assert_eq!(s, 201, "{}: {b}", p(i));
            first.insert(i, (req, read(&b)));
        } else {
            assert_eq!(
                (s, problem(&b).kind.as_str()),
                (409, "/problems/not-eligible"),
                "{b}"
            );
        }
    }
    for i in [0, 3, 7, 11, 19] {
        let (req, entry) = &first[&i];
        let (s, b) = live.send_signed(req).await;
        statuses.push(s);
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            &read::<EntryView>(&b),
            entry,
            "a repeat gets the same entry"
        );
    }
    assert_eq!(statuses.len(), 30);
    // Another request for an entered player (not a retry: the same body signed in the same
    // second would be the very same request, so this one is stamped a second before it).
    let again = live.sign_at(
        entries_url.clone(),
        &key,
        &json!({"playerId": p(1)}),
        first[&1].0.ts - 1,
    );
    let (s, b) = live.send_signed(&again).await;
    assert_eq!(
        (s, problem(&b).kind.as_str()),
        (409, "/problems/entry-limit-reached"),
        "{b}"
    );
    let mine = live.player_campaigns(&p(0)).await;
    assert!(
        mine.campaigns
            .iter()
            .any(|c| c.campaign_id == id && c.entered),
        "{mine:?}"
    );

    // It closes, draws and settles by itself.
    live.wait_state(&ops, &id, CampaignState::Settled, Duration::from_secs(40))
        .await;
    let (s, draw) = live
        .get(format!("{}/campaigns/{id}/draw", u.participation), None)
        .await;
    assert_eq!(s, 200, "{draw}");
    let published: PublishedDraw = read(&draw);
    let entrants: Vec<String> = (0..20).map(p).collect();
    let mut sorted = entrants.clone();
    sorted.sort();
    assert_eq!(published.entrants.as_ref(), Some(&sorted));
    assert_eq!(published.entrant_count, Some(20));
    let winners = published.winners.clone().expect("winners");
    assert_eq!(winners.len(), 5);

    // An independent implementation of liveops-draw-v1 agrees, and the seed is the one
    // committed to before anyone entered. (The reference answers plain JSON: no view type.)
    let seed = published.seed.as_deref().expect("seed");
    let reference = reference_draw(&json!({"seed": seed, "entrants": entrants, "winners": 5}));
    assert_eq!(
        reference["winners"],
        json!(winners),
        "the reference draw agrees"
    );
    assert_eq!(reference["commitment"], json!(commitment));
    assert_eq!(reference["entrantsHash"], json!(published.entrants_hash));
    // And so does `liveops verify-draw`; a tampered draw is caught.
    let dir = tempfile::tempdir().expect("tmp");
    let (draw_file, entrants_file) = (
        dir.path().join("draw.json"),
        dir.path().join("entrants.txt"),
    );
    std::fs::write(&draw_file, draw.to_string()).expect("write");
    std::fs::write(&entrants_file, entrants.join("\n")).expect("write");
    let verify_draw = || {
        let mut cmd = Command::new(BIN);
        cmd.arg("verify-draw").arg(&draw_file).arg(&entrants_file);
        cmd
    };
    let out = succeed(&mut verify_draw());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid"));
    let mut forged = published.clone();
    let loser = sorted
        .iter()
        .find(|e| !winners.contains(e))
        .expect("a loser");
    forged.winners.as_mut().expect("winners")[0] = loser.clone();
    let forged = serde_json::to_string(&forged).expect("json");
    std::fs::write(&draw_file, forged).expect("write");
    let out = verify_draw().output().expect("verify-draw");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("invalid"));
    // As a large campaign's verifier would: the draw without its list, and the entrants' pages
    // one after another in one file.
    let (s, listless) = live
        .get(
            format!("{}/campaigns/{id}/draw?entrants=false", u.participation),
            None,
        )
        .await;
    assert_eq!(s, 200, "{listless}");
    assert!(listless.get("entrants").is_none(), "{listless}");
    std::fs::write(&draw_file, listless.to_string()).expect("write");
    let (mut pages, mut after) = (String::new(), String::new());
    loop {
        let url = format!("{}/campaigns/{id}/entrants?limit=7{after}", u.participation);
        let (s, page) = live.get(url, None).await;
        assert_eq!(s, 200, "{page}");
        pages.push_str(&page.to_string());
        match read::<EntrantList>(&page).next_cursor {
            Some(next) => after = format!("&cursor={next}"),
            None => break,
        }
    }
    std::fs::write(&entrants_file, pages).expect("write");
    let out = succeed(&mut verify_draw());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("valid: 5 winner(s) re-drawn from 20 "),
        "{said}"
    );

    // Every winner has one message, claims it for a receipt that verifies, and gets the same
    // receipt on a second claim; nobody else has one.
    for w in &winners {
        let prizes = live.prizes(w, &id).await;
        assert_eq!(prizes.len(), 1, "{w}: {prizes:?}");
        let m = prizes[0].message_id.as_str();
        let items: Vec<&str> = prizes[0]
            .attachments
            .iter()
            .map(|a| a.item.as_str())
            .collect();
        assert_eq!(items, ["gold_chest"]);
        let claim = live.claim_paid(&key, w, m).await;
        let receipt: &Receipt = &claim.receipts[0];
        assert_eq!(
            (receipt.player_id.as_str(), receipt.item.as_str()),
            (w.as_str(), "gold_chest")
        );
        assert!(live.verify_receipt(receipt).await.valid);
        let mut tampered = receipt.clone();
        tampered.item = "platinum_chest".into();
        assert!(!live.verify_receipt(&tampered).await.valid);
        assert_eq!(
            live.claim_paid(&key, w, m).await.receipts,
            claim.receipts,
            "the same receipt"
        );
        let loser = sorted.iter().find(|e| !winners.contains(e)).expect("loser");
        let (s, _) = live.claim(&key, loser, m).await;
        assert_eq!(s, 404, "not in their inbox");
    }
    for e in sorted.iter().filter(|e| !winners.contains(e)) {
        assert!(live.prizes(e, &id).await.is_empty(), "{e} did not win");
    }

    // The webhook saw the campaign's life, each delivery signed.
    let hook_events = eventually(Duration::from_secs(15), "webhook deliveries", || async {
        let got = received.lock().expect("lock").clone();
        // A delivery's body as the receiver got it (the wire format: no view type).
        let mine: Vec<(String, bool)> = got
            .iter()
            .filter(|(_, v, _)| v["data"]["campaignId"] == id.as_str())
            .map(|(k, _, ok)| (k.clone(), *ok))
            .collect();
        (mine.len() >= 4).then_some(mine)
    })
    .await;
    let kinds: Vec<&str> = hook_events.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "campaign.live",
        "campaign.ended",
        "draw.completed",
        "campaign.settled",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    assert!(
        hook_events.iter().all(|(_, ok)| *ok),
        "every delivery signed"
    );

    // The audit log has it all; metrics count it.
    let (s, audit) = live
        .get(format!("{}/audit?limit=200", u.operators), Some(&admin))
        .await;
    assert_eq!(s, 200, "{audit}");
    let audit: AuditList = read(&audit);
    let actions: Vec<&str> = audit.entries.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "operator.create",
        "api_key.create",
        "campaign.create",
        "campaign.schedule",
        "webhook.create",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }

    // A revoked key stops working everywhere within 5 s.
    let revoked = Instant::now();
    let (s, b) = live
        .call(
            reqwest::Method::DELETE,
            format!("{}/api-keys/{}", u.operators, key.key_id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(!read::<ApiKeyView>(&b).active, "{b}");
    let probes = [
        (
            format!("{}/events", u.gateway),
            json!({"type": "progression", "playerId": p(0), "ts": now(), "payload": {"deltaXp": 1, "activity": "quest"}}),
        ),
        (entries_url.clone(), json!({"playerId": p(5)})),
        (
            format!("{}/players/{}/inbox/msg_x/claim", u.distribution, p(0)),
            json!({"playerId": p(0)}),
        ),
    ];
    for (url, body) in probes {
        eventually(
            Duration::from_secs(5),
            &format!("{url} refuses the revoked key"),
            || async {
                let (s, _) = live.signed(url.clone(), &key, &body).await;
                (s == 401).then_some(())
            },
        )
        .await;
    }
    assert!(
        revoked.elapsed() < Duration::from_secs(5),
        "{:?}",
        revoked.elapsed()
    );
}
