//! Campaigns as operators run them: scheduled and cancelled over HTTP, by an operator signed in
//! with a session the repository holds. Real adapters: the SQLite repository; settings changed
//! between writing a draft and scheduling it are two routers over one repository.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use liveops_campaigns::{
    router, CampaignList, CampaignView, CampaignsConfig, CampaignsState, PlayerCampaigns,
    LIVE_FRESH,
};
use liveops_core::stores::{
    Campaign, CampaignState, CampaignStore, Entry, EntryLimit, EntryStore, Reward, Tier,
};
use liveops_core::{now_ms, utc_ms, Calendar, LevelCurve, Window};
use liveops_http::{rfc3339, OperatorAuth, Problem};
use liveops_sql::SqliteRepository;
use liveops_testkit::conformance::live::{campaign, create_in};
use liveops_testkit::served;
use serde_json::{json, Value};

const TOKEN: &str = "campaigns-test-operator-token";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

struct TestApp {
    repo: Arc<SqliteRepository>,
    _dir: tempfile::TempDir,
}

/// A migrated repository holding an operator (role `operator`) signed in as [`TOKEN`].
async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let repo = SqliteRepository::open_migrated(&dir.path().join("liveops.db"))
        .await
        .unwrap();
    liveops_testkit::operators::signed_in(&repo, "op_campaigns_test", TOKEN).await;
    TestApp {
        repo: Arc::new(repo),
        _dir: dir,
    }
}

/// A 2xx answer read as a `T`, or else the problem it was refused with.
fn typed<T: serde::de::DeserializeOwned>(reply: served::Reply) -> Result<T, Problem> {
    if reply.0.is_success() {
        Ok(served::read(&reply.2))
    } else {
        Err(served::problem(reply))
    }
}

impl TestApp {
    /// The campaign routes over this repository, ranking `windows` on `calendar`.
    fn router(&self, calendar: Calendar, windows: Vec<Window>) -> Router {
        router(CampaignsState {
            config: Arc::new(CampaignsConfig {
                calendar,
                windows,
                curve: LevelCurve::default(),
                tick: Duration::from_secs(1),
            }),
            auth: OperatorAuth {
                sessions: self.repo.clone(),
            },
            campaigns: self.repo.clone(),
            entries: self.repo.clone(),
            xp: self.repo.clone(),
            requests: self.repo.clone(),
            live: Default::default(),
        })
    }
}

/// `method uri` on `router` as the signed-in operator, with `body` as JSON if any.
async fn send<T: serde::de::DeserializeOwned>(
    router: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> Result<T, Problem> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json");
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    typed(served::call(router, req.body(body).unwrap()).await)
}

async fn cancel(router: &Router, id: &str) -> Result<CampaignView, Problem> {
    send(router, "POST", &format!("/campaigns/{id}/cancel"), None).await
}

async fn schedule(router: &Router, id: &str) -> Result<CampaignView, Problem> {
    send(router, "POST", &format!("/campaigns/{id}/schedule"), None).await
}

/// Campaign `id` as `GET /campaigns/{id}` answers it.
async fn view(router: &Router, id: &str) -> CampaignView {
    send(router, "GET", &format!("/campaigns/{id}"), None)
        .await
        .unwrap()
}

/// Creates a draft over `POST /campaigns`: a rank campaign on `window` from `starts` to `ends`.
/// Scheduling `draft` on `router` is refused with a 400 naming `field`, and it stays the draft.
async fn schedule_refused(router: &Router, draft: &CampaignView, field: &str) {
    let p = schedule(router, &draft.id).await.expect_err("refused");
    assert_eq!((p.status, p.field.as_deref()), (400, Some(field)), "{p:?}");
    assert_eq!(&view(router, &draft.id).await, draft, "still the draft");
}

async fn create_rank_draft(
    router: &Router,
    window: Window,
    starts: i64,
    ends: i64,
) -> Result<CampaignView, Problem> {
    let reward = Reward::Rank {
        window,
        tiers: vec![Tier {
            from_rank: 1,
            to_rank: 3,
            item: "crown".into(),
        }],
    };
    let body = json!({
        "title": "Winter",
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
        "eligibility": {"minLevel": 1},
        "entryLimit": "once",
        "reward": serde_json::to_value(reward).unwrap(),
    });
    send(router, "POST", "/campaigns", Some(body)).await
}

/// Past its end a live (or scheduled) campaign is over even before the scheduler's next tick
/// marks it ended: cancelling it would void its draw, so it is refused; a draft past its end
/// never ran and may still be cancelled.
#[tokio::test]
async fn a_campaign_past_its_end_is_not_cancelled_before_the_scheduler_ends_it() {
    let app = spawn_app().await;
    let routes = app.router(Calendar::default(), vec![Window::Daily]);
    let now = now_ms();
    // 300 ms after its end: the scheduler has not marked it ended yet.
    let over = |tag| Campaign {
        starts_at_ms: now - HOUR_MS,
        ends_at_ms: now - 300,
        ..campaign(tag)
    };

    for state in [CampaignState::Live, CampaignState::Scheduled] {
        let c = over("over");
        create_in(&*app.repo, &c, state).await;
        let p = cancel(&routes, &c.id).await.expect_err("refused");
        assert_eq!(
            (p.status, p.kind.as_str()),
            (409, "/problems/campaign-over"),
            "{state:?}: {p:?}"
        );
        assert_eq!(view(&routes, &c.id).await.state, state, "left as it was");
    }

    // Before its end it is cancelled; so is a draft past its end, which never ran.
    let running = Campaign {
        starts_at_ms: now - HOUR_MS,
        ends_at_ms: now + HOUR_MS,
        ..campaign("running")
    };
    for (c, state) in [
        (running, CampaignState::Live),
        (over("stale"), CampaignState::Draft),
    ] {
        create_in(&*app.repo, &c, state).await;
        let cancelled = cancel(&routes, &c.id).await.unwrap();
        assert_eq!(cancelled.state, CampaignState::Cancelled, "{state:?}");
        let stored = view(&routes, &c.id).await.state;
        assert_eq!(stored, CampaignState::Cancelled, "{state:?}");
    }
}

/// A scheduled campaign whose start and end both passed before the scheduler ran (it was down)
/// moves straight to ended with `campaign.ended`: it never was live, so no `campaign.live` is
/// told; one whose start only passed goes live as usual.
#[tokio::test]
async fn a_campaign_whose_whole_window_passed_unseen_ends_without_going_live() {
    use liveops_core::stores::WebhookStore;
    let app = spawn_app().await;
    let now = now_ms();
    let missed = Campaign {
        starts_at_ms: now - 2 * HOUR_MS,
        ends_at_ms: now - HOUR_MS,
        ..campaign("missed")
    };
    let starting = Campaign {
        starts_at_ms: now - 1000,
        ..campaign("starting")
    };
    for c in [&missed, &starting] {
        create_in(&*app.repo, c, CampaignState::Scheduled).await;
    }
    assert_eq!(liveops_campaigns::step(&*app.repo, now).await.unwrap(), 2);
    let state = |c: &Campaign| {
        let (repo, id) = (app.repo.clone(), c.id.clone());
        async move { repo.campaign(&id).await.unwrap().unwrap().state }
    };
    assert_eq!(state(&missed).await, CampaignState::Ended);
    assert_eq!(state(&starting).await, CampaignState::Live);
    let waiting = app.repo.undispatched(1000).await.unwrap();
    let ids: Vec<i64> = waiting.iter().map(|e| e.id).collect();
    let told: Vec<(String, String)> = app
        .repo
        .undelivered_events(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.event.campaign_id, u.event.kind))
        .collect();
    assert!(
        told.contains(&(missed.id.clone(), "campaign.ended".into())),
        "{told:?}"
    );
    assert!(
        !told.contains(&(missed.id.clone(), "campaign.live".into())),
        "{told:?}"
    );
    assert!(
        told.contains(&(starting.id.clone(), "campaign.live".into())),
        "{told:?}"
    );
}

/// A draft is checked again when scheduled, against the settings then: one whose rank window is
/// no longer ranked (`LB_WINDOWS`), or that spans two seasons of the calendar now, is refused
/// with 400 naming the field and stays a draft; under the settings it was written for it is
/// scheduled.
#[tokio::test]
async fn scheduling_checks_the_draft_against_the_current_windows_and_calendar() {
    let app = spawn_app().await;
    let now = now_ms();

    // A weekly rank draft, written while weekly boards were ranked; LB_WINDOWS dropped them since.
    let calendar = Calendar::default();
    let week = calendar.period_at_ms(Window::Weekly, now);
    let (starts, ends) = (
        week.from.timestamp_millis(),
        week.to.timestamp_millis().min(now + HOUR_MS),
    );
    let then = app.router(calendar.clone(), vec![Window::Daily, Window::Weekly]);
    let weekly = create_rank_draft(&then, Window::Weekly, starts, ends)
        .await
        .unwrap();
    let daily_only = app.router(calendar, vec![Window::Daily]);
    schedule_refused(&daily_only, &weekly, "reward.window").await;

    // A seasonal rank draft within one season of 90 days, across the next UTC midnight, which
    // ends a season once seasons last a day.
    let midnight = now - now.rem_euclid(DAY_MS) + DAY_MS;
    let long = Calendar {
        season_start: utc_ms(midnight - DAY_MS),
        season_days: 90,
    };
    let short = Calendar {
        season_days: 1,
        ..long.clone()
    };
    let seasonal = app.router(long, vec![Window::Seasonal]);
    let draft = create_rank_draft(
        &seasonal,
        Window::Seasonal,
        midnight - HOUR_MS,
        midnight + HOUR_MS,
    )
    .await
    .expect("valid when written");
    let day_seasons = app.router(short, vec![Window::Seasonal]);
    schedule_refused(&day_seasons, &draft, "endsAt").await;

    // Under the calendar it was written for, it is scheduled.
    let scheduled = schedule(&seasonal, &draft.id).await.unwrap();
    assert_eq!(scheduled.state, CampaignState::Scheduled);
    assert!(scheduled.commitment.is_some());
    assert_eq!(view(&seasonal, &draft.id).await, scheduled);
}

/// `GET /campaigns` a page at a time: each page's `nextCursor` leads to the next until a short
/// page, together every campaign once, newest created first; with a state, only those; a cursor
/// that no page gave is a 400 naming it.
#[tokio::test]
async fn the_campaign_list_pages_through_every_campaign() {
    let app = spawn_app().await;
    let routes = app.router(Calendar::default(), vec![Window::Daily]);
    let mut made = Vec::new();
    for k in 0..7 {
        let c = Campaign {
            created_at_ms: now_ms() - 1000 + k,
            ..campaign(&format!("list{k}"))
        };
        let state = if k == 3 {
            CampaignState::Scheduled
        } else {
            CampaignState::Draft
        };
        create_in(&*app.repo, &c, state).await;
        made.push(c.id);
    }
    made.reverse();
    let pages = |query: &'static str| {
        let routes = routes.clone();
        async move {
            let (mut ids, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
            loop {
                let uri = match &cursor {
                    Some(c) => format!("/campaigns?{query}&cursor={c}"),
                    None => format!("/campaigns?{query}"),
                };
                let page: CampaignList = send(&routes, "GET", &uri, None).await.unwrap();
                pages += 1;
                ids.extend(page.campaigns.into_iter().map(|c| c.id));
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => return (ids, pages),
                }
            }
        }
    };
    assert_eq!(pages("limit=3").await, (made.clone(), 3));
    assert_eq!(
        pages("limit=7").await,
        (made.clone(), 2),
        "a full last page"
    );
    let drafts: Vec<String> = made
        .iter()
        .filter(|id| !id.contains("list3"))
        .cloned()
        .collect();
    assert_eq!(
        pages("limit=2&state=draft").await,
        (drafts, 4),
        "three full pages"
    );
    for bad in ["12", "x:cmp_a", "1:a/b"] {
        let p = send::<CampaignList>(&routes, "GET", &format!("/campaigns?cursor={bad}"), None)
            .await
            .expect_err("refused");
        assert_eq!(
            (p.status, p.field.as_deref()),
            (400, Some("cursor")),
            "{bad}: {p:?}"
        );
    }
}

/// A player's list: each live campaign they may enter, whether they entered in its current slot
/// (today, for a daily one) and when they last entered, however many entries they have in it; a
/// cancelled campaign is gone from it once the live campaigns read are `LIVE_FRESH` old.
#[tokio::test]
async fn a_players_list_shows_their_last_entry_and_drops_a_cancelled_campaign() {
    let app = spawn_app().await;
    let routes = app.router(Calendar::default(), vec![Window::Daily]);
    let daily = Campaign {
        entry_limit: EntryLimit::Daily,
        ..campaign("daily_list")
    };
    let (once, other) = (campaign("once_list"), campaign("other_list"));
    for c in [&daily, &once, &other] {
        create_in(&*app.repo, c, CampaignState::Live).await;
    }
    let now = now_ms();
    let player = "player_list";
    for (c, at_ms) in [
        (&daily, now - 2 * DAY_MS),
        (&daily, now - DAY_MS),
        (&once, now - HOUR_MS),
    ] {
        let entry = Entry {
            entry_id: format!("ent_{}_{at_ms}", c.id),
            campaign_id: c.id.clone(),
            player_id: player.into(),
            slot: c.entry_limit.slot(at_ms),
            entered_at_ms: at_ms,
            request_sig: format!("sig_{}_{at_ms}", c.id),
        };
        app.repo.enter(&entry, u64::MAX).await.unwrap();
    }
    let uri = format!("/players/{player}/campaigns");
    let list: PlayerCampaigns = send(&routes, "GET", &uri, None).await.unwrap();
    let shown = |list: &PlayerCampaigns, c: &Campaign| {
        let found = list.campaigns.iter().find(|p| p.campaign_id == c.id);
        found.map(|p| (p.entered, p.entered_at.clone()))
    };
    assert_eq!(
        shown(&list, &daily),
        Some((false, Some(rfc3339(now - DAY_MS)))),
        "not today; last yesterday"
    );
    assert_eq!(
        shown(&list, &once),
        Some((true, Some(rfc3339(now - HOUR_MS))))
    );
    assert_eq!(shown(&list, &other), Some((false, None)));
    let cancelled = app
        .repo
        .advance(
            &once.id,
            CampaignState::Live,
            CampaignState::Cancelled,
            None,
        )
        .await;
    assert!(cancelled.unwrap());
    tokio::time::sleep(LIVE_FRESH).await;
    let list: PlayerCampaigns = send(&routes, "GET", &uri, None).await.unwrap();
    assert_eq!(shown(&list, &once), None, "{list:?}");
    assert_eq!(list.campaigns.len(), 2, "{list:?}");
}
