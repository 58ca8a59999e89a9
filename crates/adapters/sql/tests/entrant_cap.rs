//! The entrant cap on every backend where the live-event suite cannot set a campaign up: players
//! whose ids all fall in one stripe of the count (past its share of the cap, each is counted in
//! another stripe, mostly with the campaign's row held alone), and a campaign recounted into one
//! stripe as `docs/DEPLOY.md` says (a stripe past its share). Many enter at once; the campaign
//! takes exactly its cap of players. A campaign whose stripes are full but three: new players of
//! the full stripes are counted in those three without holding the campaign's row alone, exactly
//! up to the cap. And a daily campaign full on one day: its players enter again the next day at
//! once, each taken without holding the campaign's row alone.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use liveops_core::stores::{CampaignState, Entered, Entry, EntryLimit};
use liveops_core::PortResult;
use liveops_testkit::conformance::live::{campaign, create_in, LiveStores};
use tokio::sync::oneshot;
use uuid::Uuid;

/// A day, in ms.
const DAY_MS: i64 = 86_400_000;

/// The stripe of the count a player's id falls in (FNV-1a of its bytes, modulo 16), as the
/// adapter computes it.
fn stripe_of(player_id: &str) -> u32 {
    let hash = player_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % 16
}

/// `n` player ids of this run (`tag` in each), every one in stripe `stripe`.
fn players_of_stripe(tag: &str, stripe: u32, n: usize) -> Vec<String> {
    let run = Uuid::now_v7().simple().to_string();
    (0..)
        .map(|i| format!("{tag}_{}_{i}", &run[20..]))
        .filter(|p| stripe_of(p) == stripe)
        .take(n)
        .collect()
}

/// `n` player ids of this run, every one in stripe 15.
fn players_of_stripe_15(n: usize) -> Vec<String> {
    players_of_stripe("cap", 15, n)
}

/// An entry of `player` into campaign `campaign_id` at `at_ms`, in the slot `limit` gives it.
fn entry_at(campaign_id: &str, player: &str, limit: EntryLimit, at_ms: i64) -> Entry {
    let id = Uuid::now_v7().simple();
    Entry {
        entry_id: format!("ent_{id}"),
        campaign_id: campaign_id.into(),
        player_id: player.into(),
        slot: limit.slot(at_ms),
        entered_at_ms: at_ms,
        request_sig: format!("sha256=cap_{id}"),
    }
}

fn entry(campaign_id: &str, player: &str) -> Entry {
    entry_at(
        campaign_id,
        player,
        EntryLimit::Once,
        liveops_core::now_ms(),
    )
}

/// Writes `entries` at once, capped at `cap`: each player with what entering did.
async fn enter_all<S: LiveStores + 'static>(
    repo: &Arc<S>,
    entries: Vec<Entry>,
    cap: u64,
) -> Vec<(String, PortResult<Entered>)> {
    let tasks: Vec<_> = entries
        .into_iter()
        .map(|e| {
            let repo = Arc::clone(repo);
            tokio::spawn(async move { (e.player_id.clone(), repo.enter(&e, cap).await) })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Enters each of `players` into campaign `id` at once, capped at `cap`: the players taken.
async fn at_once<S: LiveStores + 'static>(
    repo: &Arc<S>,
    id: &str,
    players: &[String],
    cap: u64,
) -> Vec<String> {
    let entries = players.iter().map(|p| entry(id, p)).collect();
    let mut taken = Vec::new();
    for answer in enter_all(repo, entries, cap).await {
        match answer {
            (p, Ok(Entered::Created(_))) => taken.push(p),
            (_, Ok(Entered::Full)) => {}
            (p, other) => panic!("{p}: {other:?}"),
        }
    }
    taken
}

/// The campaign `id` holds exactly `cap` players: its count, and its entrants (`taken`).
async fn holds<S: LiveStores>(repo: &S, id: &str, cap: u64, mut taken: Vec<String>) {
    taken.sort();
    assert_eq!(repo.entrant_count(id).await.unwrap(), cap, "{id}");
    let mut entrants = repo.entrants(id).await.unwrap();
    entrants.sort();
    assert_eq!(entrants, taken, "{id}");
}

/// A campaign's row held shared by the test in a transaction of its own, until released.
struct Held {
    release: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Held {
    /// Lets the row go (its transaction rolled back).
    async fn release(self) {
        let _gone = self.release.send(());
        self.done.await.unwrap();
    }
}

/// A daily campaign of a cap of 32 fills on one day (every stripe of its count then at its
/// share); the next day its 32 players enter again at once while `hold` holds the campaign's row
/// shared (where rows are locked): each is taken in today's slot, counted again nowhere, and
/// none waits for the row (an entry writing with the row held alone would, past the 2 s lock
/// wait, and answer 503). A new player is still refused.
async fn returning_players_enter_without_the_row_alone<S, H, HFut>(repo: &Arc<S>, hold: H)
where
    S: LiveStores + 'static,
    H: Fn(String) -> HFut,
    HFut: Future<Output = Option<Held>>,
{
    let cap = 32;
    let mut c = campaign("cap_daily");
    c.entry_limit = EntryLimit::Daily;
    create_in(repo.as_ref(), &c, CampaignState::Live).await;
    let today = liveops_core::now_ms();
    let yesterday = today - DAY_MS;
    let players: Vec<String> = (0..64).map(|i| format!("daily_{i}")).collect();
    let day = |players: &[String], at_ms: i64| -> Vec<Entry> {
        let e = |p: &String| entry_at(&c.id, p, EntryLimit::Daily, at_ms);
        players.iter().map(e).collect()
    };
    let mut taken = Vec::new();
    for answer in enter_all(repo, day(&players, yesterday), cap).await {
        match answer {
            (p, Ok(Entered::Created(_))) => taken.push(p),
            (_, Ok(Entered::Full)) => {}
            (p, other) => panic!("{p}: {other:?}"),
        }
    }
    holds(repo.as_ref(), &c.id, cap, taken.clone()).await;

    let held = hold(c.id.clone()).await;
    let again = enter_all(repo, day(&taken, today), cap);
    let again = tokio::time::timeout(Duration::from_secs(30), again).await;
    if let Some(held) = held {
        held.release().await;
    }
    let again = again.expect("the entries of the next day waited 30 s");
    let slot = EntryLimit::Daily.slot(today);
    for (p, answer) in &again {
        let today_s = matches!(answer, Ok(Entered::Created(e)) if e.slot == slot);
        assert!(
            today_s,
            "{p}, entered yesterday, is taken today at once: {answer:?}"
        );
    }
    assert_eq!(again.len(), taken.len());
    holds(repo.as_ref(), &c.id, cap, taken).await;

    let new = day(&["daily_new".to_owned()], today);
    let answers = enter_all(repo, new, cap).await;
    assert!(
        matches!(answers[..], [(_, Ok(Entered::Full))]),
        "{answers:?}"
    );
}

/// The stripes of [`full_stripes_lend`]'s campaigns with room: 1 entrant each of their 4.
const OPEN_STRIPES: [u32; 3] = [3, 8, 13];

/// A live campaign of a cap of 64 (a share of 4 a stripe) whose stripes hold their share each,
/// but [`OPEN_STRIPES`], which hold one entrant (9 places left): its id and entrants.
async fn all_but_three_full<S: LiveStores + 'static>(repo: &Arc<S>) -> (String, Vec<String>) {
    let c = campaign("cap_lend");
    create_in(repo.as_ref(), &c, CampaignState::Live).await;
    let players: Vec<String> = (0..16)
        .flat_map(|s| {
            let n = if OPEN_STRIPES.contains(&s) { 1 } else { 4 };
            players_of_stripe("lend_in", s, n)
        })
        .collect();
    let taken = at_once(repo, &c.id, &players, 64).await;
    assert_eq!(taken.len(), players.len(), "every stripe takes its own");
    (c.id, taken)
}

/// `n` new players, each in one of the full stripes of [`all_but_three_full`], in turn.
fn of_full_stripes(tag: &str, n: usize) -> Vec<String> {
    let full: Vec<u32> = (0..16).filter(|s| !OPEN_STRIPES.contains(s)).collect();
    let each = n.div_ceil(full.len());
    let mut players: Vec<Vec<String>> = full
        .iter()
        .map(|&s| players_of_stripe(tag, s, each))
        .collect();
    (0..n).map(|i| players[i % full.len()].remove(0)).collect()
}

/// A campaign whose stripes are full but three, with 9 places left: 9 new players of the full
/// stripes enter at once while `hold` holds the campaign's row shared (where rows are locked);
/// each is taken, none waiting for the row (counted in a stripe with room; an entry writing
/// with the row held alone would wait past the 2 s lock wait, and answer 503). Then more new
/// players are refused. And another such campaign takes exactly 9 of 30 such players entering
/// at once, refusing the others.
async fn full_stripes_lend<S, H, HFut>(repo: &Arc<S>, hold: H)
where
    S: LiveStores + 'static,
    H: Fn(String) -> HFut,
    HFut: Future<Output = Option<Held>>,
{
    let (id, mut taken) = all_but_three_full(repo).await;
    let crowd = of_full_stripes("lend_held", 9);
    let entries = crowd.iter().map(|p| entry(&id, p)).collect();
    let held = hold(id.clone()).await;
    let answers = enter_all(repo, entries, 64);
    let answers = tokio::time::timeout(Duration::from_secs(30), answers).await;
    if let Some(held) = held {
        held.release().await;
    }
    let answers = answers.expect("the new players of full stripes waited 30 s");
    for (p, answer) in &answers {
        let created = matches!(answer, Ok(Entered::Created(_)));
        assert!(
            created,
            "{p}, of a full stripe, is taken at once: {answer:?}"
        );
    }
    taken.extend(crowd);
    holds(repo.as_ref(), &id, 64, taken.clone()).await;
    let more = of_full_stripes("lend_more", 4);
    assert!(at_once(repo, &id, &more, 64).await.is_empty());
    holds(repo.as_ref(), &id, 64, taken).await;

    let (id, mut taken) = all_but_three_full(repo).await;
    let crowd = of_full_stripes("lend_crowd", 30);
    let crowd_taken = at_once(repo, &id, &crowd, 64).await;
    assert_eq!(crowd_taken.len(), 9, "{crowd_taken:?}");
    taken.extend(crowd_taken);
    holds(repo.as_ref(), &id, 64, taken).await;
}

/// The checks on `repo`; `recount` runs the recount of `docs/DEPLOY.md` on a campaign, `hold`
/// holds a campaign's row shared (`None` where rows are not locked).
async fn the_cap_holds<S, F, Fut, H, HFut>(repo: Arc<S>, recount: F, hold: H)
where
    S: LiveStores + 'static,
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
    H: Fn(String) -> HFut,
    HFut: Future<Output = Option<Held>>,
{
    // One stripe's players: the stripe's share of 5 is none, of 40 two.
    for (cap, n) in [(5, 40), (40, 100)] {
        let c = campaign("cap_one_stripe");
        create_in(repo.as_ref(), &c, CampaignState::Live).await;
        let taken = at_once(&repo, &c.id, &players_of_stripe_15(n), cap).await;
        holds(repo.as_ref(), &c.id, cap, taken).await;
    }

    // Three players counted, then recounted into stripe 0 (past its share of 5, which is one).
    let c = campaign("cap_recounted");
    create_in(repo.as_ref(), &c, CampaignState::Live).await;
    let first: Vec<String> = (0..3).map(|i| format!("recounted_{i}")).collect();
    let mut taken = at_once(&repo, &c.id, &first, u64::MAX).await;
    recount(c.id.clone()).await;
    assert_eq!(repo.entrant_count(&c.id).await.unwrap(), 3);
    let more: Vec<String> = (0..40).map(|i| format!("recounted_more_{i}")).collect();
    taken.extend(at_once(&repo, &c.id, &more, 5).await);
    holds(repo.as_ref(), &c.id, 5, taken).await;

    full_stripes_lend(&repo, &hold).await;
    returning_players_enter_without_the_row_alone(&repo, hold).await;
}

/// The recount of `docs/DEPLOY.md`, campaign `id` written in.
fn recount_sql(id: &str) -> [String; 2] {
    [
        format!("DELETE FROM campaign_entrant_counts WHERE campaign_id = '{id}'"),
        format!(
            "INSERT INTO campaign_entrant_counts (campaign_id, stripe, entrants) \
             SELECT campaign_id, 0, COUNT(DISTINCT player_id) FROM campaign_entries \
             WHERE campaign_id = '{id}' GROUP BY campaign_id"
        ),
    ]
}

/// The recount [`the_cap_holds`] takes, run in one transaction on `$pool` (any of sqlx's pools:
/// a function would restate sqlx's executor bounds for each database).
macro_rules! recount_on {
    ($pool:expr) => {{
        let pool = $pool;
        move |id: String| {
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin().await.unwrap();
                for sql in recount_sql(&id) {
                    sqlx::query(&sql).execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
        }
    }};
}

/// The hold [`the_cap_holds`] takes: campaign `id`'s row read with `$lock` (the backend's shared
/// row lock) in a transaction on `$pool`, in a task of its own, until released.
macro_rules! hold_shared_on {
    ($pool:expr, $lock:literal) => {{
        let pool = $pool;
        move |id: String| {
            let pool = pool.clone();
            async move {
                let (held, is_held) = oneshot::channel();
                let (release, released) = oneshot::channel::<()>();
                let done = tokio::spawn(async move {
                    let mut tx = pool.begin().await.unwrap();
                    let sql = format!("SELECT id FROM campaigns WHERE id = '{id}'{}", $lock);
                    let row = sqlx::query(&sql).fetch_optional(&mut *tx).await.unwrap();
                    held.send(row.is_some()).unwrap();
                    let _either = released.await;
                    tx.rollback().await.unwrap();
                });
                assert!(is_held.await.unwrap(), "the campaign's row is there");
                Some(Held { release, done })
            }
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_entries_at_once_keep_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liveops.db");
    let repo = liveops_sql::SqliteRepository::open_migrated(&path)
        .await
        .unwrap();
    let recount = recount_on!(repo.pool().clone());
    // Writers take turns: no entry holds a row, alone or shared.
    let hold = |_id: String| async { None };
    the_cap_holds(Arc::new(repo), recount, hold).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_entries_at_once_keep_the_cap() {
    let url = std::env::var("LIVEOPS_TEST_PG_URL").expect("LIVEOPS_TEST_PG_URL");
    let repo = liveops_sql::PgRepository::open(&url).await.unwrap();
    repo.migrate().await.unwrap();
    let recount = recount_on!(repo.pool().clone());
    let hold = hold_shared_on!(repo.pool().clone(), " FOR SHARE");
    the_cap_holds(Arc::new(repo), recount, hold).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_entries_at_once_keep_the_cap() {
    let url = std::env::var("LIVEOPS_TEST_MYSQL_URL").expect("LIVEOPS_TEST_MYSQL_URL");
    let repo = liveops_sql::MySqlRepository::open(&url).await.unwrap();
    repo.migrate().await.unwrap();
    let recount = recount_on!(repo.pool().clone());
    let hold = hold_shared_on!(repo.pool().clone(), " LOCK IN SHARE MODE");
    the_cap_holds(Arc::new(repo), recount, hold).await;
}
