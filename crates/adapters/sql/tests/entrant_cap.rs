//! The entrant cap on every backend where the live-event suite cannot set a campaign up: players
//! whose ids all fall in one stripe of the count (past its share of the cap, each is counted with
//! the campaign's row held alone, in another stripe), and a campaign recounted into one stripe
//! as `docs/DEPLOY.md` says (a stripe past its share). Many enter at once; the campaign takes
//! exactly its cap of players.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::future::Future;
use std::sync::Arc;

use liveops_core::stores::{CampaignState, Entered, Entry};
use liveops_testkit::conformance::live::{campaign, create_in, LiveStores};
use uuid::Uuid;

/// The stripe of the count a player's id falls in (FNV-1a of its bytes, modulo 16), as the
/// adapter computes it.
fn stripe_of(player_id: &str) -> u32 {
    let hash = player_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % 16
}

/// `n` player ids of this run, every one in stripe 15.
fn players_of_stripe_15(n: usize) -> Vec<String> {
    let run = Uuid::now_v7().simple().to_string();
    (0..)
        .map(|i| format!("cap_{}_{i}", &run[20..]))
        .filter(|p| stripe_of(p) == 15)
        .take(n)
        .collect()
}

fn entry(campaign_id: &str, player: &str) -> Entry {
    let id = Uuid::now_v7().simple();
    Entry {
        entry_id: format!("ent_{id}"),
        campaign_id: campaign_id.into(),
        player_id: player.into(),
        slot: "once".into(),
        entered_at_ms: liveops_core::now_ms(),
        request_sig: format!("sha256=cap_{id}"),
    }
}

/// Enters each of `players` into campaign `id` at once, capped at `cap`: the players taken.
async fn at_once<S: LiveStores + 'static>(
    repo: &Arc<S>,
    id: &str,
    players: &[String],
    cap: u64,
) -> Vec<String> {
    let tasks: Vec<_> = players
        .iter()
        .map(|p| {
            let (repo, e) = (Arc::clone(repo), entry(id, p));
            tokio::spawn(async move { (e.player_id.clone(), repo.enter(&e, cap).await) })
        })
        .collect();
    let mut taken = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
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

/// Both checks on `repo`; `recount` runs the recount of `docs/DEPLOY.md` on a campaign.
async fn the_cap_holds<S, F, Fut>(repo: Arc<S>, recount: F)
where
    S: LiveStores + 'static,
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_entries_at_once_keep_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liveops.db");
    let repo = liveops_sql::SqliteRepository::open_migrated(&path)
        .await
        .unwrap();
    let recount = recount_on!(repo.pool().clone());
    the_cap_holds(Arc::new(repo), recount).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_entries_at_once_keep_the_cap() {
    let url = std::env::var("LIVEOPS_TEST_PG_URL").expect("LIVEOPS_TEST_PG_URL");
    let repo = liveops_sql::PgRepository::open(&url).await.unwrap();
    repo.migrate().await.unwrap();
    let recount = recount_on!(repo.pool().clone());
    the_cap_holds(Arc::new(repo), recount).await;
}

#[cfg(feature = "mysql")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_entries_at_once_keep_the_cap() {
    let url = std::env::var("LIVEOPS_TEST_MYSQL_URL").expect("LIVEOPS_TEST_MYSQL_URL");
    let repo = liveops_sql::MySqlRepository::open(&url).await.unwrap();
    repo.migrate().await.unwrap();
    let recount = recount_on!(repo.pool().clone());
    the_cap_holds(Arc::new(repo), recount).await;
}
