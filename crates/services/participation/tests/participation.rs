//! Participation as a studio sees it: entries while a campaign runs, and winners decided once it
//! ended. Real adapters: the SQLite repository; the decider is called with the time it runs at.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use liveops_core::draw::PublishedDraw;
use liveops_core::ports::{Board, Health, IdemState, PortResult, ScoreDelta};
use liveops_core::stores::{
    Campaign, CampaignEvent, CampaignState, CampaignStore, Entry, EntryStore, Outcome,
    OutcomeStore, OutcomeSummary, Reward, ScoreStore, Tier,
};
use liveops_core::{now_ms, Calendar, Keyring, Window};
use liveops_module::tick::Rotation;
use liveops_participation::{
    decide_ended, decide_key, router, EntrantList, ParticipationConfig, ParticipationState,
    DECIDE_HOLD,
};
use liveops_sql::SqliteRepository;
use liveops_testkit::conformance::live::{campaign, create_in};
use liveops_testkit::served;
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

mod common;

const SECRET: &str = "participation-test-secret-0123456789";
const SETTLE_MS: i64 = 60_000;
/// `CAMPAIGN_MAX_ENTRANTS` of the tests (its default).
const MAX_ENTRANTS: u64 = 1_000_000;

struct TestApp {
    state: ParticipationState,
    repo: Arc<SqliteRepository>,
    keyring: Keyring,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let repo = SqliteRepository::open_migrated(&dir.path().join("liveops.db"))
        .await
        .unwrap();
    let repo = Arc::new(repo);
    let keyring = Keyring::single(SECRET).unwrap();
    let settle = Duration::from_millis(SETTLE_MS.unsigned_abs());
    let state = common::state(&repo, keyring.clone(), settle, MAX_ENTRANTS);
    TestApp {
        state,
        repo,
        keyring,
        _dir: dir,
    }
}

impl TestApp {
    /// A draw campaign tagged `tag` that ended a second ago, `players` its entrants.
    async fn ended_draw(&self, tag: &str, players: &[&str]) -> Campaign {
        let c = ended_draw_campaign(tag);
        self.ended_with(&c, players, now_ms()).await;
        c
    }

    /// Stores campaign `c` live, enters each of `players` at `at_ms`, and ends it.
    async fn ended_with(&self, c: &Campaign, players: &[&str], at_ms: i64) {
        create_in(&*self.repo, c, CampaignState::Live).await;
        for p in players {
            self.entered(c, p, at_ms).await;
        }
        let moved = self
            .repo
            .advance(&c.id, CampaignState::Live, CampaignState::Ended, None)
            .await;
        assert!(moved.unwrap(), "{} ended", c.id);
    }

    /// Enters `player` into campaign `c` straight into the store, as entered at `at_ms`.
    async fn entered(&self, c: &Campaign, player: &str, at_ms: i64) {
        let entry = Entry {
            entry_id: format!("ent_{}", Uuid::now_v7().simple()),
            campaign_id: c.id.clone(),
            player_id: player.into(),
            slot: c.entry_limit.slot(at_ms),
            entered_at_ms: at_ms,
            request_sig: format!("sig_{}", Uuid::now_v7().simple()),
        };
        self.repo.enter(&entry, MAX_ENTRANTS).await.unwrap();
    }

    /// Sends a signed entry of `player` into campaign `id`: the status and the body.
    async fn enter(&self, id: &str, player: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"playerId": player, "campaignId": id});
        self.enter_with(id, &body).await
    }

    /// A signed `POST /campaigns/{id}/entries` with `body`.
    async fn enter_with(&self, id: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let body = serde_json::to_vec(body).unwrap();
        let ts = now_ms() / 1000;
        let path = format!("/campaigns/{id}/entries");
        let sig = self
            .keyring
            .sign_request(None, ts, "POST", &path, &body)
            .unwrap();
        let req = Request::post(path)
            .header("content-type", "application/json")
            .header("X-Timestamp", ts.to_string())
            .header("X-Signature", sig)
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = served::call(&router(self.state.clone()), req).await;
        (status.as_u16(), body)
    }

    /// Adds `points` to each player's score on `board`.
    async fn score(&self, board: &Board, points: &[(&str, i64)]) {
        let deltas: Vec<ScoreDelta> = points
            .iter()
            .map(|&(p, delta)| ScoreDelta {
                board: board.clone(),
                player_id: p.into(),
                delta,
            })
            .collect();
        let ids: Vec<Uuid> = points.iter().map(|_| Uuid::now_v7()).collect();
        self.repo
            .commit_scores("leaderboard", &ids, &deltas)
            .await
            .unwrap();
    }

    /// The (player, item, rank) awards of campaign `id`'s outcome, and its source.
    async fn awards(&self, id: &str) -> (Vec<(String, String, u32)>, String) {
        let o = self.repo.outcome(id).await.unwrap().expect("decided");
        let awards = o
            .awards
            .into_iter()
            .map(|a| (a.player_id, a.item, a.rank))
            .collect();
        (awards, o.source.unwrap_or_default())
    }
}

/// A weekly rank campaign from `starts` to `ends` paying rank 1 gold and ranks 2–3 silver.
fn rank_campaign(tag: &str, starts: i64, ends: i64) -> Campaign {
    let tier = |from_rank, to_rank, item: &str| Tier {
        from_rank,
        to_rank,
        item: item.into(),
    };
    Campaign {
        starts_at_ms: starts,
        ends_at_ms: ends,
        reward: Reward::Rank {
            window: Window::Weekly,
            tiers: vec![tier(1, 1, "gold"), tier(2, 3, "silver")],
        },
        ..campaign(tag)
    }
}

/// The weekly board of the period at `at_ms`.
fn weekly(calendar: &Calendar, at_ms: i64) -> Board {
    Board {
        window: Window::Weekly,
        period: calendar.period_at_ms(Window::Weekly, at_ms).id,
    }
}

/// Entrants are ranked among themselves by their scores on the board, however far down the
/// whole board they stand, once `LB_SETTLE_SEC` has passed since the end; ties go by player id
/// descending, as on the board.
#[tokio::test]
async fn a_rank_campaign_ranks_every_entrant_by_their_scores_once_settled() {
    let app = spawn_app().await;
    let cal = Calendar::default();
    let now = now_ms();
    let week = cal.period_at_ms(Window::Weekly, now);
    let starts = week.from.timestamp_millis();
    // Within this week: it ended a second ago, or just after the week began if that is later.
    let ends = (now - 1000).max(starts + 2);
    let c = rank_campaign("ranked", starts, ends);
    let entrants = ["e_low", "e_mid", "e_tie_a", "e_tie_b", "e_top"];
    app.ended_with(&c, &entrants, ends - 1).await;
    // 150 players who did not enter out-score every entrant: the entrants stand below the
    // board's top 100.
    let board = weekly(&cal, starts);
    let outsiders: Vec<String> = (0..150).map(|i| format!("outsider_{i:03}")).collect();
    let high: Vec<(&str, i64)> = outsiders.iter().map(|p| (p.as_str(), 10_000)).collect();
    app.score(&board, &high).await;
    let points = [
        ("e_low", 10),
        ("e_mid", 50),
        ("e_tie_a", 70),
        ("e_tie_b", 70),
        ("e_top", 90),
    ];
    app.score(&board, &points).await;

    // Not before its settle time; then at once, and once.
    let settled_at = ends + SETTLE_MS;
    assert_eq!(
        decide_ended(&app.state, &Rotation::default(), settled_at - 1)
            .await
            .unwrap(),
        0
    );
    assert!(app.repo.outcome(&c.id).await.unwrap().is_none());
    assert_eq!(
        decide_ended(&app.state, &Rotation::default(), settled_at)
            .await
            .unwrap(),
        1
    );
    let (awards, source) = app.awards(&c.id).await;
    let want = [
        ("e_top", "gold", 1),
        ("e_tie_b", "silver", 2),
        ("e_tie_a", "silver", 3),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|&(p, item, rank)| (p.to_owned(), item.to_owned(), rank))
        .collect();
    assert_eq!(awards, want);
    assert!(source.contains(&board.period), "{source}");
    assert!(!source.contains("after its settle time"), "{source}");
    assert_eq!(
        decide_ended(&app.state, &Rotation::default(), settled_at + 5000)
            .await
            .unwrap(),
        0
    );
}

/// A decider that was down at a campaign's settle time says so in the outcome when the campaign
/// ended before its period did (scores since its end count); not when it ended with its period,
/// whose board takes no later scores.
#[tokio::test]
async fn a_rank_campaign_decided_late_says_so_unless_it_ended_with_its_period() {
    let app = spawn_app().await;
    let cal = Calendar::default();
    // Last week: both campaigns are long over.
    let last_week = cal.period_at_ms(Window::Weekly, now_ms() - 7 * 86_400_000);
    let (from, to) = (
        last_week.from.timestamp_millis(),
        last_week.to.timestamp_millis(),
    );
    let early = rank_campaign("early", from, from + 3_600_000);
    let whole = rank_campaign("whole", from, to);
    for c in [&early, &whole] {
        app.ended_with(c, &["entrant"], from + 1).await;
    }
    app.score(&weekly(&cal, from), &[("entrant", 5)]).await;
    assert_eq!(
        decide_ended(&app.state, &Rotation::default(), now_ms())
            .await
            .unwrap(),
        2
    );
    let (awards, source) = app.awards(&early.id).await;
    let gold = vec![("entrant".to_owned(), "gold".to_owned(), 1)];
    assert_eq!(awards, gold);
    assert!(source.contains("after its settle time"), "{source}");
    let (awards, source) = app.awards(&whole.id).await;
    assert_eq!(awards, gold);
    assert!(!source.contains("after its settle time"), "{source}");
}

/// A campaign that cannot be decided (stored without its seed) is passed over: the others are
/// still decided, and the round reports the failure.
#[tokio::test]
async fn one_campaign_that_cannot_be_decided_does_not_hold_up_the_others() {
    let app = spawn_app().await;
    let ended = |tag| Campaign {
        ends_at_ms: now_ms() - 1000,
        ..campaign(tag)
    };
    let good = Campaign {
        seed: Some(hex::encode([7u8; 32])),
        ..ended("good")
    };
    create_in(&*app.repo, &good, CampaignState::Ended).await;
    // Created last, so listed first.
    let broken = ended("broken");
    create_in(&*app.repo, &broken, CampaignState::Ended).await;
    let round = decide_ended(&app.state, &Rotation::default(), now_ms()).await;
    assert!(round.is_err(), "{round:?}");
    assert!(app.repo.outcome(&good.id).await.unwrap().is_some());
    assert!(app.repo.outcome(&broken.id).await.unwrap().is_none());
}

/// Each round takes the first page of the ended campaigns and the next page past it: a full page
/// of ones that cannot be decided (created last, so listed first) keeps an older one waiting one
/// round, not forever, and one that ends now is still decided in the next round.
#[tokio::test]
async fn ended_campaigns_beyond_a_page_are_decided_in_turn() {
    let app = spawn_app().await;
    let now = now_ms();
    let ended = |tag: &str, created_at_ms| Campaign {
        ends_at_ms: now - 1000,
        created_at_ms,
        ..campaign(tag)
    };
    let seeded = |c: Campaign| Campaign {
        seed: Some(hex::encode([7u8; 32])),
        ..c
    };
    let oldest = seeded(ended("oldest", now - 60_000));
    create_in(&*app.repo, &oldest, CampaignState::Ended).await;
    for k in 0..100 {
        create_in(
            &*app.repo,
            &ended(&format!("broken{k}"), now),
            CampaignState::Ended,
        )
        .await;
    }
    let rotation = Rotation::default();
    let first = decide_ended(&app.state, &rotation, now).await;
    assert!(
        first.is_err(),
        "a page of 100 that cannot be decided: {first:?}"
    );
    assert!(app.repo.outcome(&oldest.id).await.unwrap().is_none());
    let second = decide_ended(&app.state, &rotation, now).await;
    assert!(second.is_err(), "the first page still fails: {second:?}");
    assert!(app.repo.outcome(&oldest.id).await.unwrap().is_some());
    // Created last, so on the first page: decided in the next round, wherever the rotation is.
    let newest = seeded(ended("newest", now + 1));
    create_in(&*app.repo, &newest, CampaignState::Ended).await;
    assert!(decide_ended(&app.state, &rotation, now).await.is_err());
    assert!(app.repo.outcome(&newest.id).await.unwrap().is_some());
}

/// Asserts `(status, body)` is a 409 problem of kind `kind`.
fn refused_as(kind: &str, (status, body): &(u16, serde_json::Value)) {
    assert_eq!(*status, 409, "{body}");
    let got = body["type"].as_str().unwrap_or_default();
    assert!(got.ends_with(kind), "{kind}: {body}");
}

/// An app whose campaigns take at most `max_entrants` players, with a live campaign tagged `tag`.
async fn capped_app(max_entrants: u64, tag: &str) -> (TestApp, Campaign) {
    let mut app = spawn_app().await;
    app.state.config = Arc::new(ParticipationConfig {
        max_entrants,
        ..(*app.state.config).clone()
    });
    let c = campaign(tag);
    create_in(&*app.repo, &c, CampaignState::Live).await;
    (app, c)
}

/// A campaign still live past its end (the scheduler has not moved it yet) takes no entries.
#[tokio::test]
async fn a_live_campaign_past_its_end_takes_no_entries() {
    let app = spawn_app().await;
    let open = campaign("open");
    create_in(&*app.repo, &open, CampaignState::Live).await;
    let (status, body) = app.enter(&open.id, "player_one").await;
    assert_eq!(status, 201, "{body}");
    let over = Campaign {
        ends_at_ms: now_ms() - 1,
        ..campaign("over")
    };
    create_in(&*app.repo, &over, CampaignState::Live).await;
    refused_as(
        "campaign-not-live",
        &app.enter(&over.id, "player_one").await,
    );
}

/// An entry body's ids are checked as the document declares them before they are compared with
/// the path: a malformed one is 400 naming it, only a well-formed other campaign 422.
#[tokio::test]
async fn an_entry_body_with_a_malformed_id_is_refused_as_malformed() {
    let app = spawn_app().await;
    let c = campaign("named");
    create_in(&*app.repo, &c, CampaignState::Live).await;
    let cases = [
        (
            json!({"playerId": "player_one", "campaignId": "bad id!"}),
            400,
            "campaignId",
        ),
        (
            json!({"playerId": "x", "campaignId": c.id}),
            400,
            "playerId",
        ),
        (
            json!({"playerId": "player_one", "campaignId": "cmp_other"}),
            422,
            "campaignId",
        ),
    ];
    for (body, status, field) in cases {
        let (got, problem) = app.enter_with(&c.id, &body).await;
        assert_eq!(
            (got, problem["field"].as_str()),
            (status, Some(field)),
            "{problem}"
        );
    }
}

/// A campaign takes at most `CAMPAIGN_MAX_ENTRANTS` players: once its count (kept as entries are
/// written) reaches them, the next new player is refused 409 `campaign-full`, while one already
/// in is answered by its own entry limit.
#[tokio::test]
async fn a_full_campaign_takes_no_new_player() {
    let (app, c) = capped_app(3, "capped").await;
    for p in ["player_a1", "player_a2", "player_a3"] {
        let (status, body) = app.enter(&c.id, p).await;
        assert_eq!(status, 201, "{body}");
    }
    refused_as("campaign-full", &app.enter(&c.id, "player_b1").await);
    // A new request (signed a second later: the same one again would be a retry, answered 200).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused_as("entry-limit-reached", &app.enter(&c.id, "player_a1").await);
}

/// Many new players entering at once a campaign that takes 3: 3 are taken, every other one is
/// refused 409 `campaign-full`, and the campaign counts 3 (when the cap was checked before the
/// entry's transaction, every one of them read a count below it, and all were taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_entering_at_once_never_pass_the_cap() {
    let (app, c) = capped_app(3, "capped_at_once").await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (app, id) = (Arc::clone(&app), c.id.clone());
            tokio::spawn(async move { app.enter(&id, &format!("player_burst{i}")).await })
        })
        .collect();
    let mut taken = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.0 {
            201 => taken += 1,
            _ => refused_as("campaign-full", &answer),
        }
    }
    assert_eq!(taken, 3);
    assert_eq!(app.repo.entrant_count(&c.id).await.unwrap(), 3);
    assert_eq!(app.repo.entrants(&c.id).await.unwrap().len(), 3);
}

/// A draw campaign that ended a second ago, its seed committed to.
fn ended_draw_campaign(tag: &str) -> Campaign {
    Campaign {
        ends_at_ms: now_ms() - 1000,
        ..draw_campaign(tag)
    }
}

/// A draw campaign live now, its seed committed to.
fn draw_campaign(tag: &str) -> Campaign {
    let seed = [9u8; 32];
    Campaign {
        seed: Some(hex::encode(seed)),
        commitment: Some(liveops_core::draw::commitment(&seed)),
        ..campaign(tag)
    }
}

/// Every page of campaign `id`'s entrants, `limit` at a time, each from the last one's `next`.
async fn pages(router: &axum::Router, id: &str, limit: usize) -> Vec<EntrantList> {
    let (mut pages, mut after) = (Vec::new(), String::new());
    loop {
        let uri = format!("/campaigns/{id}/entrants?limit={limit}{after}");
        let page: EntrantList = served::get_view(router, &uri).await;
        let next = page.next_cursor.clone();
        pages.push(page);
        match next {
            Some(next) => after = format!("&cursor={next}"),
            None => return pages,
        }
        assert!(pages.len() <= 100, "pages without end");
    }
}

/// The entrants of a draw read page by page are the draw's list, once each and in its order (so
/// its hash); the draw without its list publishes that hash and count; bad pages are 400.
#[tokio::test]
async fn entrants_page_through_the_draw_s_list() {
    let app = spawn_app().await;
    let c = draw_campaign("paged");
    create_in(&*app.repo, &c, CampaignState::Live).await;
    // Upper and lower case: byte order puts every `Player_` before every `player_`.
    let players: Vec<String> = (0..25)
        .map(|i| match i % 2 {
            0 => format!("Player_{i:02}"),
            _ => format!("player_{i:02}"),
        })
        .collect();
    for p in &players {
        app.entered(&c, p, now_ms()).await;
    }
    let router = router(app.state.clone());

    let pages = pages(&router, &c.id, 10).await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.entrants.len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    assert!(pages.iter().all(|p| p.count == 25 && p.campaign_id == c.id));
    assert_eq!(pages[2].next_cursor, None, "the last page has no next");
    let paged: Vec<String> = pages.into_iter().flat_map(|p| p.entrants).collect();
    let whole: PublishedDraw =
        served::get_view(&router, &format!("/campaigns/{}/draw", c.id)).await;
    assert_eq!(
        Some(&paged),
        whole.entrants.as_ref(),
        "no repeat, no gap, in order"
    );
    assert_eq!(paged, liveops_core::draw::entrants(players));
    assert_eq!(
        whole.entrants_hash,
        liveops_core::draw::entrants_hash(&paged)
    );
    assert_eq!(whole.entrant_count, Some(25));
    // Without its list: the same hash and count, and no list at all.
    let uri = format!("/campaigns/{}/draw?entrants=false", c.id);
    let (status, _, bare) = served::get(&router, &uri).await;
    assert_eq!(status, 200, "{bare}");
    assert!(bare.get("entrants").is_none(), "{bare}");
    let bare: PublishedDraw = served::read(&bare);
    assert_eq!(
        PublishedDraw {
            entrants: whole.entrants.clone(),
            ..bare
        },
        whole
    );
    // The default page, and one after a cursor that is no entrant.
    let first: EntrantList =
        served::get_view(&router, &format!("/campaigns/{}/entrants", c.id)).await;
    assert_eq!((first.entrants.len(), first.next_cursor), (25, None));
    let uri = format!("/campaigns/{}/entrants?cursor=player_2&limit=2", c.id);
    let tail: EntrantList = served::get_view(&router, &uri).await;
    assert_eq!(tail.entrants, ["player_21", "player_23"]);
    assert_eq!(tail.next_cursor, None, "nothing after the last");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=1.5", "limit"),
        ("cursor=p", "cursor"),
        ("cursor=", "cursor"),
        ("cursor=player%2D1", "cursor"),
        (&format!("cursor={}", "p".repeat(51)), "cursor"),
    ] {
        let uri = format!("/campaigns/{}/entrants?{query}", c.id);
        let refused = served::get_refused(&router, &uri, 400).await;
        assert_eq!(refused.field.as_deref(), Some(field), "{query}");
    }
    let uri = format!("/campaigns/{}/draw?entrants=maybe", c.id);
    let refused = served::get_refused(&router, &uri, 400).await;
    assert_eq!(refused.field.as_deref(), Some("entrants"));
    served::get_refused(&router, "/campaigns/cmp_none/entrants?limit=5", 404).await;
    // No read was repeated: none was served from what was kept.
    assert_eq!(app.state.closed.draw_hits(), 0);
}

/// A campaign another replica holds (it is deciding it) is passed over, not read again; once the
/// hold is given back it is decided, and the decider gives its own hold back, also when a
/// campaign cannot be decided yet.
#[tokio::test]
async fn a_campaign_another_replica_is_deciding_is_passed_over() {
    let app = spawn_app().await;
    let c = app.ended_draw("held", &["entrant_1"]).await;
    let key = decide_key(&c.id);
    let holds = &app.state.holds;
    // The other replica's hold.
    let other = holds.idem_begin(&key, "decide", DECIDE_HOLD).await.unwrap();
    assert_eq!(other, IdemState::Fresh);
    let round = decide_ended(&app.state, &Rotation::default(), now_ms()).await;
    assert_eq!(round.unwrap(), 0, "passed over while held");
    assert!(app.repo.outcome(&c.id).await.unwrap().is_none());
    holds.idem_release(&key, "decide").await.unwrap();
    let round = decide_ended(&app.state, &Rotation::default(), now_ms()).await;
    assert_eq!(round.unwrap(), 1, "decided once given back");
    let after = holds.idem_begin(&key, "decide", DECIDE_HOLD).await.unwrap();
    assert_eq!(after, IdemState::Fresh, "the decider gave its hold back");
    holds.idem_release(&key, "decide").await.unwrap();

    // A rank campaign before its settle time is not decided, and not left held either.
    let now = now_ms();
    let ranked = rank_campaign("unsettled", now - 60_000, now - 1000);
    app.ended_with(&ranked, &["entrant_1"], now - 2000).await;
    let round = decide_ended(&app.state, &Rotation::default(), now).await;
    assert_eq!(round.unwrap(), 0, "not settled yet");
    let key = decide_key(&ranked.id);
    let after = holds.idem_begin(&key, "decide", DECIDE_HOLD).await.unwrap();
    assert_eq!(after, IdemState::Fresh, "not left held");
}

/// Outcomes of `inner` whose recording never ends (a decider stuck deciding, its hold taken);
/// `recording` is told when a decider gets there.
struct StuckRecording {
    inner: Arc<SqliteRepository>,
    recording: Arc<Notify>,
}

#[async_trait::async_trait]
impl Health for StuckRecording {
    async fn healthcheck(&self) -> PortResult<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl OutcomeStore for StuckRecording {
    async fn record_outcome(&self, _: &Outcome, _: Option<&CampaignEvent>) -> PortResult<bool> {
        self.recording.notify_one();
        std::future::pending().await
    }

    async fn outcome(&self, campaign_id: &str) -> PortResult<Option<Outcome>> {
        self.inner.outcome(campaign_id).await
    }

    async fn outcome_summary(&self, campaign_id: &str) -> PortResult<Option<OutcomeSummary>> {
        self.inner.outcome_summary(campaign_id).await
    }

    async fn decided(&self, campaign_id: &str) -> PortResult<bool> {
        self.inner.decided(campaign_id).await
    }
}

/// A decider cancelled while deciding a campaign (its replica shutting down) gives its hold back
/// at once, not [`DECIDE_HOLD`] later: another replica decides the campaign at its next tick.
#[tokio::test]
async fn a_decider_cancelled_mid_decision_gives_its_hold_back() {
    let app = spawn_app().await;
    let c = app.ended_draw("cancelled", &["entrant_1"]).await;
    let recording = Arc::new(Notify::new());
    let stuck = ParticipationState {
        outcomes: Arc::new(StuckRecording {
            inner: Arc::clone(&app.repo),
            recording: Arc::clone(&recording),
        }),
        ..app.state.clone()
    };
    let rotation = Rotation::default();
    tokio::select! {
        _ = decide_ended(&stuck, &rotation, now_ms()) => panic!("the stuck decider finished"),
        () = recording.notified() => {}
    }
    // The decider was dropped holding the campaign: the hold goes back in the background.
    let (key, holds) = (decide_key(&c.id), &app.state.holds);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match holds.idem_begin(&key, "decide", DECIDE_HOLD).await.unwrap() {
            IdemState::Fresh => break,
            held => assert!(
                tokio::time::Instant::now() < deadline,
                "still held after its decider was dropped: {held:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    holds.idem_release(&key, "decide").await.unwrap();
    let round = decide_ended(&app.state, &Rotation::default(), now_ms()).await;
    assert_eq!(round.unwrap(), 1, "decided by the next replica");
}

/// A decided draw's answer, with or without its list, is written once and served again from
/// what was kept; it verifies against the entrants read page by page.
#[tokio::test]
async fn a_decided_draw_is_answered_from_what_was_kept() {
    let app = spawn_app().await;
    let c = ended_draw_campaign("kept");
    let entrants: Vec<String> = (0..12).map(|i| format!("entrant_{i:02}")).collect();
    let entrants: Vec<&str> = entrants.iter().map(String::as_str).collect();
    app.ended_with(&c, &entrants, now_ms()).await;
    assert_eq!(
        decide_ended(&app.state, &Rotation::default(), now_ms())
            .await
            .unwrap(),
        1
    );
    let router = router(app.state.clone());
    let listed: Vec<String> = pages(&router, &c.id, 5)
        .await
        .into_iter()
        .flat_map(|p| p.entrants)
        .collect();
    let closed = &app.state.closed;
    for (n, query) in ["", "?entrants=false"].into_iter().enumerate() {
        let uri = format!("/campaigns/{}/draw{query}", c.id);
        let (status, _, first) = served::get(&router, &uri).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(
            (closed.draw_hits(), closed.draw_misses()),
            (n as u64, n as u64 + 1)
        );
        let (status, _, again) = served::get(&router, &uri).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again, first, "{uri}: served as first written");
        assert_eq!(
            (closed.draw_hits(), closed.draw_misses()),
            (n as u64 + 1, n as u64 + 1)
        );
        let published: PublishedDraw = served::read(&first);
        assert_eq!(published.entrants.is_some(), query.is_empty());
        assert_eq!(published.entrant_count, Some(12));
        assert_eq!(published.winners.as_ref().map(Vec::len), Some(2));
        assert_eq!(liveops_core::draw::verify(&published, &listed), Ok(()));
    }
}

/// An undecided draw's answer is served again for a few seconds (`OPEN_COUNT_FRESH`), so a loop
/// of reads does not read every entrant each time; with and without its list are kept apart.
#[tokio::test]
async fn an_undecided_draw_is_served_again_while_fresh() {
    let app = spawn_app().await;
    let c = draw_campaign("looped");
    create_in(&*app.repo, &c, CampaignState::Live).await;
    for p in ["player_a", "player_b", "player_c"] {
        app.entered(&c, p, now_ms()).await;
    }
    let router = router(app.state.clone());
    let uri = format!("/campaigns/{}/draw", c.id);
    let (status, _, first) = served::get(&router, &uri).await;
    assert_eq!(status, 200, "{first}");
    app.entered(&c, "player_d", now_ms()).await;
    let (status, _, again) = served::get(&router, &uri).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first, "served as first written");
    let closed = &app.state.closed;
    assert_eq!((closed.draw_hits(), closed.draw_misses()), (1, 1));
    // Without its list: read anew, and it counts the entrant who came since.
    let bare: PublishedDraw = served::get_view(&router, &format!("{uri}?entrants=false")).await;
    assert_eq!(bare.entrant_count, Some(4));
    let listed: PublishedDraw = served::read(&first);
    assert_eq!(listed.entrant_count, Some(3));
    assert_eq!((closed.draw_hits(), closed.draw_misses()), (1, 2));
}

/// The OpenAPI document declares the bounds of the entrants' pages and the draw's `entrants`
/// that the routes enforce: the largest page declared is served, one more is refused.
#[tokio::test]
async fn the_openapi_declares_the_bounds_served() {
    let spec = served::openapi_with_paths(
        liveops_participation::MODULE.default_openapi().unwrap(),
        &["/campaigns/{id}/entrants", "/campaigns/{id}/draw"],
    );
    let param = |path: &str, name: &str| {
        let params = spec["paths"][path]["get"]["parameters"].as_array().unwrap();
        let found = params
            .iter()
            .find(|p| p["name"] == name && p["in"] == "query");
        found.unwrap_or_else(|| panic!("{path}: no {name}")).clone()
    };
    let limit = param("/campaigns/{id}/entrants", "limit")["schema"].clone();
    assert_eq!(
        (limit["minimum"].as_f64(), limit["maximum"].as_f64()),
        (Some(1.0), Some(10_000.0))
    );
    let after = param("/campaigns/{id}/entrants", "cursor")["schema"].clone();
    assert_eq!(after["pattern"], liveops_core::event::PLAYER_ID_PATTERN);
    assert_eq!(
        (after["minLength"].as_u64(), after["maxLength"].as_u64()),
        (Some(3), Some(50))
    );
    let entrants = param("/campaigns/{id}/draw", "entrants")["schema"].clone();
    assert_eq!(entrants["type"], "boolean");

    let app = spawn_app().await;
    let c = draw_campaign("bounds");
    create_in(&*app.repo, &c, CampaignState::Live).await;
    let router = router(app.state.clone());
    let max = limit["maximum"].as_f64().unwrap();
    let uri = format!(
        "/campaigns/{}/entrants?limit={max}&cursor={}",
        c.id,
        "z".repeat(50)
    );
    let _: EntrantList = served::get_view(&router, &uri).await;
    let uri = format!("/campaigns/{}/entrants?limit={}", c.id, max + 1.0);
    served::get_refused(&router, &uri, 400).await;
}

/// A live campaign's entrant count says who entered up to the last entry, at once (no count
/// kept for a while), whatever the entrants' number of slots: a player's second day in a daily
/// campaign does not count again; the draw without its list says the same.
#[tokio::test]
async fn a_live_campaigns_count_follows_each_entry_at_once() {
    let app = spawn_app().await;
    let c = Campaign {
        entry_limit: liveops_core::stores::EntryLimit::Daily,
        ..draw_campaign("daily_counted")
    };
    create_in(&*app.repo, &c, CampaignState::Live).await;
    let router = router(app.state.clone());
    let uri = format!("/campaigns/{}/entrants?limit=1", c.id);
    let day = 86_400_000;
    let entrants = [
        ("player_0", 0),
        ("player_1", 0),
        ("player_0", day),
        ("player_2", day),
    ];
    for (n, (player, later)) in entrants.into_iter().enumerate() {
        app.entered(&c, player, now_ms() - 2 * day + later).await;
        let page: EntrantList = served::get_view(&router, &uri).await;
        let distinct = [1, 2, 2, 3][n];
        assert_eq!(page.count, distinct, "after entry {n}");
    }
    let uri = format!("/campaigns/{}/draw?entrants=false", c.id);
    let bare: PublishedDraw = served::get_view(&router, &uri).await;
    assert_eq!(bare.entrant_count, Some(3));
}
