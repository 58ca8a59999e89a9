//! The store traits' contract, as a suite any backend can run: `run_all(&repo).await` on a
//! migrated repository.
//!
//! Players, consumers and periods carry a random suffix, so runs can share a database, also at
//! the same time: the checks of [`run_shared`] read back only what they wrote. The checks of
//! [`run_alone`] read or sweep what every run writes (the fairness statistics, global per event
//! type; purges, which delete any run's rows past their cutoff and skip while another process
//! walks the table): they need a database no other run uses at the same time.

use std::collections::HashSet;

use liveops_core::ports::{rank_entries, Board, Health, RankEntry, ScoreDelta};
use liveops_core::stores::{
    FairnessCommit, FairnessStore, Flag, InventoryItem, ItemGrant, PendingReward, ProcessedEvents,
    ProgressCommit, ProgressStore, RewardClaim, ScoreStore, Snapshot, SnapshotStore, XpGain,
    PROGRESS_COUNT_LIMIT, PROGRESS_INVENTORY_LIMIT, PROGRESS_PENDING_LIMIT,
};
use liveops_core::{EventType, Receipt, Welford, Window};
use uuid::Uuid;

use super::{ok, suffix};
use crate::fixtures::{score_delta, score_total};

/// An adapter serving every store trait, as the suite exercises them together.
pub trait Stores:
    ProgressStore + ScoreStore + SnapshotStore + FairnessStore + ProcessedEvents + Health
{
}

impl<T> Stores for T where
    T: ProgressStore + ScoreStore + SnapshotStore + FairnessStore + ProcessedEvents + Health
{
}

/// Runs every check of the suite on one database: [`run_shared`], then [`run_alone`].
pub async fn run_all(repo: &dyn Stores) {
    run_shared(repo).await;
    run_alone(repo).await;
}

/// Runs the checks that read back only what they wrote: on a database that other runs may use
/// at the same time.
pub async fn run_shared(repo: &dyn Stores) {
    healthcheck(repo).await;
    progress_commits_apply_once(repo).await;
    rewards_are_claimed_once(repo).await;
    concurrent_claims_issue_one_receipt(repo).await;
    pending_rewards_are_listed_a_page_at_a_time(repo).await;
    inventory_is_listed_a_page_at_a_time(repo).await;
    counts_stop_at_their_limit(repo).await;
    scores_commit_once(repo).await;
    top_scores_rank_as_the_board_does(repo).await;
    snapshots_replace_and_list_newest_first(repo).await;
    flags_newest_first(repo).await;
    large_batches_are_chunked(repo).await;
}

/// Runs the checks that read or sweep what every run writes (the fairness statistics, purges):
/// on a database no other run uses at the same time (runs before, and their rows, are welcome).
pub async fn run_alone(repo: &dyn Stores) {
    ended_boards_scores_are_purged(repo).await;
    fairness_state_round_trips(repo).await;
    flags_past_their_retention_are_purged(repo).await;
}

fn id() -> Uuid {
    Uuid::now_v7()
}

fn xp(player: &str, season: i64, xp: u64, at_ms: i64) -> XpGain {
    XpGain {
        player_id: player.to_owned(),
        season,
        xp,
        at_ms,
    }
}

fn item(player: &str, item: &str, quantity: u64) -> ItemGrant {
    ItemGrant {
        player_id: player.to_owned(),
        item: item.to_owned(),
        quantity,
    }
}

fn reward(id: &str, item: &str, source: &str, adds: bool) -> PendingReward {
    PendingReward {
        reward_id: id.to_owned(),
        item: item.to_owned(),
        source: source.to_owned(),
        adds_to_inventory: adds,
    }
}

fn inv(lines: &[(&str, u64)]) -> Vec<InventoryItem> {
    lines
        .iter()
        .map(|(item, quantity)| InventoryItem {
            item: (*item).to_owned(),
            quantity: *quantity,
        })
        .collect()
}

fn receipt(player: &str, item: &str, receipt_id: &str) -> Receipt {
    Receipt {
        receipt_id: receipt_id.to_owned(),
        player_id: player.to_owned(),
        item: item.to_owned(),
        timestamp: 1_700_000_000,
        sig: format!("sig-{receipt_id}"),
    }
}

fn set(ids: &[Uuid]) -> HashSet<Uuid> {
    ids.iter().copied().collect()
}

/// The backend answers its health check.
pub async fn healthcheck(repo: &dyn Stores) {
    ok(repo.healthcheck().await, "healthcheck");
}

/// A progression commit applies XP, items and rewards with its event ids; a commit holding an id
/// already recorded fails and changes nothing.
pub async fn progress_commits_apply_once(repo: &dyn Stores) {
    let s = suffix();
    let p = format!("p{s}_a");
    let consumer = format!("progression_{s}");
    let (e1, e2, e3) = (id(), id(), id());
    let drop = format!("drop:{e2}");
    let first = ProgressCommit {
        event_ids: vec![e1, e2],
        xp: vec![
            xp(&p, 4, 300, 1_000),
            xp(&p, 4, 200, 2_000),
            xp(&p, 5, 50, 1_500),
        ],
        items: vec![
            item(&p, "sword", 1),
            item(&p, "axe", 2),
            item(&p, "sword", 1),
        ],
        rewards: vec![
            (p.clone(), reward("level:4:2", "chest_2", "level_up", true)),
            (p.clone(), reward(&drop, "sword", "raid_chest", false)),
        ],
        xp_before: vec![((p.clone(), 4), 0)],
    };
    assert!(applied(repo, &consumer, &first).await);

    let done = ok(repo.processed(&consumer, &[e1, e2, e3]).await, "processed");
    assert_eq!(done, set(&[e1, e2]));
    let other = ok(
        repo.processed(&format!("other_{s}"), &[e1]).await,
        "processed",
    );
    assert!(other.is_empty(), "processed ids are per consumer");
    assert!(ok(repo.processed(&consumer, &[]).await, "processed").is_empty());

    let pr = ok(repo.progress(&p, 4).await, "progress");
    assert_eq!(pr.xp, 500);
    assert_eq!(pr.updated_at_ms, 2_000);
    assert_eq!(pr.inventory, inv(&[("axe", 2), ("sword", 2)]));
    assert_eq!(pr.inventory_count, 2);
    assert_eq!(
        pr.pending,
        vec![
            reward("level:4:2", "chest_2", "level_up", true),
            reward(&drop, "sword", "raid_chest", false)
        ]
    );
    let s5 = ok(repo.progress(&p, 5).await, "progress");
    assert_eq!((s5.xp, s5.updated_at_ms), (50, 1_500));
    assert_eq!(s5.inventory, pr.inventory, "inventory spans seasons");
    let none = ok(repo.progress(&p, 6).await, "progress");
    assert_eq!((none.xp, none.updated_at_ms), (0, 0));
    let stranger = ok(repo.progress(&format!("p{s}_nobody"), 4).await, "progress");
    assert_eq!(stranger, Default::default());

    // e1 again: the whole commit fails, e3 included.
    let replay = ProgressCommit {
        event_ids: vec![e3, e1],
        xp: vec![xp(&p, 4, 1_000, 9_000)],
        items: vec![item(&p, "gem", 1)],
        rewards: vec![(p.clone(), reward("level:4:3", "chest_3", "level_up", true))],
        xp_before: vec![],
    };
    assert!(
        repo.commit_progress(&consumer, &replay).await.is_err(),
        "a commit with an already processed id must fail"
    );
    assert_eq!(
        ok(repo.processed(&consumer, &[e3]).await, "processed"),
        HashSet::new()
    );
    assert_eq!(
        ok(repo.progress(&p, 4).await, "progress"),
        pr,
        "partial effect"
    );

    // An older gain adds XP but keeps the latest update time; a known reward id is ignored.
    let next = ProgressCommit {
        event_ids: vec![e3],
        xp: vec![xp(&p, 4, 100, 500)],
        items: vec![],
        rewards: vec![
            (p.clone(), reward("level:4:2", "other", "level_up", true)),
            (p.clone(), reward("level:4:3", "chest_3", "level_up", true)),
        ],
        xp_before: vec![],
    };
    assert!(applied(repo, &consumer, &next).await);
    let pr = ok(repo.progress(&p, 4).await, "progress");
    assert_eq!((pr.xp, pr.updated_at_ms), (600, 2_000));
    assert_eq!(
        pr.pending
            .iter()
            .map(|r| r.item.as_str())
            .collect::<Vec<_>>(),
        ["chest_2", "sword", "chest_3"],
        "pending rewards oldest first, first one kept"
    );
    assert_eq!(pr.pending_count, 3);

    let xps = ok(
        repo.xp_of(&[
            (p.clone(), 4),
            (p.clone(), 5),
            (format!("p{s}_nobody"), 4),
            (p.clone(), 99),
            (p.clone(), 4),
        ])
        .await,
        "xp_of",
    );
    assert_eq!(xps, [600, 50, 0, 0, 600]);
    assert!(ok(repo.xp_of(&[]).await, "xp_of").is_empty());

    // Planned from XP another batch has changed since (season 4 held 500 then): `false`, and
    // nothing of it is written.
    let newcomer = format!("p{s}_new");
    let (e4, e5) = (id(), id());
    let stale = ProgressCommit {
        event_ids: vec![e4],
        xp: vec![xp(&p, 4, 400, 3_000), xp(&newcomer, 4, 10, 3_000)],
        items: vec![item(&p, "gem", 1)],
        rewards: vec![(p.clone(), reward("level:4:4", "chest_4", "level_up", true))],
        xp_before: vec![((p.clone(), 4), 500), ((newcomer.clone(), 4), 0)],
    };
    assert!(
        !applied(repo, &consumer, &stale).await,
        "a commit planned from stale XP must not apply"
    );
    assert!(ok(repo.processed(&consumer, &[e4]).await, "processed").is_empty());
    assert_eq!(
        ok(repo.progress(&p, 4).await, "progress"),
        pr,
        "partial effect"
    );
    let keys = [(p.clone(), 4), (newcomer.clone(), 4), (p.clone(), 5)];
    assert_eq!(ok(repo.xp_of(&keys).await, "xp_of"), [600, 0, 50]);

    // Planned from the XP as it is (an absent row is 0, a key without a gain is checked too).
    let current = ProgressCommit {
        event_ids: vec![e5],
        xp_before: vec![
            ((p.clone(), 4), 600),
            ((newcomer.clone(), 4), 0),
            ((p.clone(), 5), 50),
        ],
        ..stale
    };
    assert!(applied(repo, &consumer, &current).await);
    assert_eq!(ok(repo.xp_of(&keys).await, "xp_of"), [1_000, 10, 50]);
    let pending = ok(repo.progress(&p, 4).await, "progress").pending;
    assert_eq!(pending.last().map(|r| r.item.as_str()), Some("chest_4"));
}

/// Claiming issues the caller's receipt once, adds level rewards to the inventory (drops are
/// already there), and answers later claims with the first receipt.
pub async fn rewards_are_claimed_once(repo: &dyn Stores) {
    let s = suffix();
    let p = format!("p{s}_claim");
    let consumer = format!("progression_{s}");
    let commit = ProgressCommit {
        event_ids: vec![id()],
        items: vec![item(&p, "sword", 1)],
        rewards: vec![
            (p.clone(), reward("level:1:2", "chest_2", "level_up", true)),
            (p.clone(), reward("drop:x", "sword", "raid_chest", false)),
            (p.clone(), reward("level:1:3", "chest_3", "level_up", true)),
        ],
        ..Default::default()
    };
    applied(repo, &consumer, &commit).await;
    // One pending reward is read by its id, and only while it waits, and only the player's.
    let one = |who: &str, id: &str| {
        let (who, id) = (who.to_owned(), id.to_owned());
        async move { ok(repo.pending_reward(&who, &id).await, "pending_reward") }
    };
    let chest = reward("level:1:2", "chest_2", "level_up", true);
    assert_eq!(one(&p, "level:1:2").await, Some(chest));
    assert_eq!(one(&p, "level:9:9").await, None, "never earned");
    assert_eq!(one(&format!("p{s}_other"), "level:1:2").await, None);

    let r1 = receipt(&p, "chest_2", &format!("r1{s}"));
    let claim = ok(
        repo.claim_reward(&p, "level:1:2", r1.clone()).await,
        "claim",
    );
    assert_eq!(claim, RewardClaim::Issued(r1.clone()));
    assert_eq!(one(&p, "level:1:2").await, None, "claimed");
    let again = ok(
        repo.claim_reward(&p, "level:1:2", receipt(&p, "chest_2", "other"))
            .await,
        "claim",
    );
    assert_eq!(
        again,
        RewardClaim::AlreadyClaimed(r1),
        "the first receipt, as stored"
    );

    let r2 = receipt(&p, "sword", &format!("r2{s}"));
    assert_eq!(
        ok(repo.claim_reward(&p, "drop:x", r2.clone()).await, "claim"),
        RewardClaim::Issued(r2)
    );
    // A receipt for another item than the reward's, a reward never earned and another player's
    // claim are refused; the reward stays pending.
    let thief = format!("p{s}_thief");
    for (who, reward_id, item, id) in [
        (&p, "level:1:3", "sword", "r3"),
        (&p, "level:9:9", "x", "r4"),
        (&thief, "level:1:3", "chest_3", "r5"),
    ] {
        let claim = repo.claim_reward(who, reward_id, receipt(who, item, id));
        let got = ok(claim.await, "claim");
        assert_eq!(got, RewardClaim::NotEarned, "{who} {reward_id} {item}");
    }

    let pr = ok(repo.progress(&p, 1).await, "progress");
    assert_eq!(pr.inventory, inv(&[("chest_2", 1), ("sword", 1)]));
    assert_eq!(
        pr.pending,
        vec![reward("level:1:3", "chest_3", "level_up", true)]
    );
}

/// Two claims of one reward at the same time: one is issued, the other sees that receipt.
pub async fn concurrent_claims_issue_one_receipt(repo: &dyn Stores) {
    let s = suffix();
    let p = format!("p{s}_race");
    let rewards: Vec<(String, PendingReward)> = (0..5)
        .map(|i| {
            (
                p.clone(),
                reward(&format!("level:2:{i}"), "gem", "level_up", true),
            )
        })
        .collect();
    let commit = ProgressCommit {
        event_ids: vec![id()],
        rewards,
        ..Default::default()
    };
    applied(repo, &format!("progression_{s}"), &commit).await;
    for i in 0..5 {
        let rid = format!("level:2:{i}");
        let (a, b) = (
            receipt(&p, "gem", &format!("a{i}{s}")),
            receipt(&p, "gem", &format!("b{i}{s}")),
        );
        let (ca, cb) = tokio::join!(
            repo.claim_reward(&p, &rid, a.clone()),
            repo.claim_reward(&p, &rid, b.clone())
        );
        match (ok(ca, "claim a"), ok(cb, "claim b")) {
            (RewardClaim::Issued(x), RewardClaim::AlreadyClaimed(y))
            | (RewardClaim::AlreadyClaimed(y), RewardClaim::Issued(x)) => {
                assert_eq!(x, y, "both claims must see the same receipt");
                assert!(x == a || x == b);
            }
            other => panic!("concurrent claims gave {other:?}"),
        }
    }
    let pr = ok(repo.progress(&p, 2).await, "progress");
    assert_eq!(pr.inventory, inv(&[("gem", 5)]), "each reward added once");
    assert!(pr.pending.is_empty());
}

/// Commits `commit` as `consumer`'s: whether it was applied.
async fn applied(repo: &dyn Stores, consumer: &str, commit: &ProgressCommit) -> bool {
    ok(
        repo.commit_progress(consumer, commit).await,
        "commit_progress",
    )
}

/// The lines of a paged list, walked `page` at a time as a client does: `read` answers the
/// page after a cursor (none for the first), each page continuing after the `key` of the last
/// line of the one before, until a short page. Asserts that each page holds `page` lines at
/// most, their keys increasing and all after the cursor.
async fn walk_pages<L, K: PartialOrd + Clone + std::fmt::Debug>(
    page: u32,
    read: impl AsyncFn(Option<K>) -> Vec<L>,
    key: impl Fn(&L) -> K,
) -> Vec<L> {
    let (mut walked, mut after) = (Vec::new(), None::<K>);
    loop {
        let listed = read(after.clone()).await;
        assert!(listed.len() <= page as usize, "a page of {page} at most");
        let keys: Vec<K> = listed.iter().map(&key).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "keys increase along a page: {keys:?}"
        );
        assert!(
            after
                .as_ref()
                .is_none_or(|a| keys.first().is_none_or(|first| first > a)),
            "a page starts after the cursor"
        );
        let full = listed.len() == page as usize;
        after = keys.last().cloned().or(after);
        walked.extend(listed);
        if !full {
            return walked;
        }
    }
}

/// Every pending reward of `player`, walked `page` at a time ([`walk_pages`]): each page
/// continues above the last position of the one before.
async fn walk_pending(repo: &dyn Stores, player: &str, page: u32) -> Vec<String> {
    let read = async |after| {
        let listed = repo.pending_rewards(player, after, page).await;
        ok(listed, "pending_rewards")
    };
    let walked = walk_pages(page, read, |l| l.position).await;
    walked.into_iter().map(|l| l.reward.reward_id).collect()
}

/// A player who never claims has ever more pending rewards: a progress read lists only the
/// oldest [`PROGRESS_PENDING_LIMIT`] of them and counts them all, and pages walk every one once,
/// oldest first (the order earned, not the ids' order), without claimed ones or other players'.
pub async fn pending_rewards_are_listed_a_page_at_a_time(repo: &dyn Stores) {
    let s = suffix();
    let (p, other) = (format!("p{s}_hoard"), format!("p{s}_next"));
    let consumer = format!("progression_{s}");
    let n = PROGRESS_PENDING_LIMIT + 37;
    // Ids sort backwards: the order earned is not the order of the ids.
    let ids: Vec<String> = (0..n).map(|i| format!("drop:{:04}", n - i)).collect();
    let drop_of = |id: &String| (p.clone(), reward(id, "coin", "raid_chest", false));
    // Earned over two batches, another player's rewards between them.
    for (batch, theirs) in [(&ids[..60], 0..2), (&ids[60..], 2..5)] {
        let mut rewards: Vec<(String, PendingReward)> = theirs
            .map(|i| {
                let id = format!("level:1:{i}");
                (other.clone(), reward(&id, "gem", "level_up", true))
            })
            .collect();
        rewards.extend(batch.iter().map(drop_of));
        let commit = ProgressCommit {
            event_ids: vec![id()],
            rewards,
            ..Default::default()
        };
        assert!(applied(repo, &consumer, &commit).await);
    }

    let pr = ok(repo.progress(&p, 1).await, "progress");
    let listed: Vec<&str> = pr.pending.iter().map(|r| r.reward_id.as_str()).collect();
    assert_eq!(
        listed,
        ids[..PROGRESS_PENDING_LIMIT],
        "the oldest, oldest first"
    );
    assert_eq!(pr.pending_count, n as u64, "every pending reward counted");
    let theirs = ok(repo.progress(&other, 1).await, "progress");
    assert_eq!((theirs.pending.len(), theirs.pending_count), (5, 5));
    let nobody = ok(repo.progress(&format!("p{s}_nobody"), 1).await, "progress");
    assert_eq!((nobody.pending.len(), nobody.pending_count), (0, 0));
    // A reward past the listed ones is still read by its id.
    let last = ok(repo.pending_reward(&p, &ids[n - 1]).await, "pending_reward");
    assert_eq!(last.map(|r| r.reward_id), Some(ids[n - 1].clone()));

    // Pages of any size walk every reward once, in the order earned.
    for page in [1, 7, 100, n as u32, 1000] {
        assert_eq!(walk_pending(repo, &p, page).await, ids, "pages of {page}");
    }
    assert_eq!(walk_pending(repo, &other, 2).await.len(), 5);
    assert!(walk_pending(repo, &format!("p{s}_nobody"), 10)
        .await
        .is_empty());

    // Claimed rewards leave the list, the count and the pages; a cursor handed out before a
    // claim still continues where it was.
    let first_page = ok(repo.pending_rewards(&p, None, 10).await, "pending_rewards");
    let after = first_page.last().map(|l| l.position);
    for claimed in [&ids[0], &ids[9], &ids[10], &ids[n - 1]] {
        let r = receipt(&p, "coin", &format!("r{claimed}{s}"));
        let claim = ok(repo.claim_reward(&p, claimed, r).await, "claim");
        assert!(matches!(claim, RewardClaim::Issued(_)), "{claimed}");
    }
    let rest = ok(repo.pending_rewards(&p, after, 3).await, "pending_rewards");
    let rest: Vec<&str> = rest.iter().map(|l| l.reward.reward_id.as_str()).collect();
    assert_eq!(rest, ids[11..14], "after the cursor, without the claimed");
    let left: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 9, 10, n - 1].contains(i))
        .map(|(_, id)| id.clone())
        .collect();
    let pr = ok(repo.progress(&p, 1).await, "progress");
    let listed: Vec<&str> = pr.pending.iter().map(|r| r.reward_id.as_str()).collect();
    assert_eq!(listed, left[..PROGRESS_PENDING_LIMIT]);
    assert_eq!(pr.pending_count, left.len() as u64);
    assert_eq!(walk_pending(repo, &p, 50).await, left);
}

/// Every inventory line of `player`, walked `page` at a time ([`walk_pages`]): each page
/// continues after the last item of the one before.
async fn walk_inventory(repo: &dyn Stores, player: &str, page: u32) -> Vec<InventoryItem> {
    let read = async |after: Option<String>| {
        let listed = repo.inventory(player, after.as_deref(), page).await;
        ok(listed, "inventory")
    };
    walk_pages(page, read, |l: &InventoryItem| l.item.clone()).await
}

/// Each drop may name a new item, so a player may own ever more lines: a progress read lists
/// only the first [`PROGRESS_INVENTORY_LIMIT`] by item (by bytes: case and punctuation too) and
/// counts them, and pages walk every line once, sorted by item, without other players'.
pub async fn inventory_is_listed_a_page_at_a_time(repo: &dyn Stores) {
    let s = suffix();
    let (p, other) = (format!("p{s}_items"), format!("p{s}_them"));
    let consumer = format!("progression_{s}");
    let n = PROGRESS_INVENTORY_LIMIT + 37;
    // Byte order, not a language's: `-` < `.` < digits < `:` < upper case < `_` < lower case.
    let marks = ["-", ".", "0", ":", "A", "Z", "_", "a", "z"];
    let names: Vec<String> = (0..n)
        .map(|i| format!("{}{}_{i}", marks[i % marks.len()], n - i))
        .collect();
    let mut owned: Vec<InventoryItem> = names
        .iter()
        .map(|name| InventoryItem {
            item: name.clone(),
            quantity: 1,
        })
        .collect();
    // Granted over two batches, another player's items (some of the same names) between them.
    for (batch, theirs) in [(&names[..60], 0..2), (&names[60..], 2..5)] {
        let mut items: Vec<ItemGrant> = theirs.map(|i| item(&other, &names[i], 4)).collect();
        items.extend(batch.iter().map(|name| item(&p, name, 1)));
        let commit = ProgressCommit {
            event_ids: vec![id()],
            items,
            ..Default::default()
        };
        assert!(applied(repo, &consumer, &commit).await);
    }
    // More of an item already owned is a quantity, not a line.
    let again = ProgressCommit {
        event_ids: vec![id()],
        items: vec![item(&p, &names[5], 2)],
        ..Default::default()
    };
    assert!(applied(repo, &consumer, &again).await);
    owned[5].quantity = 3;
    owned.sort_by(|a, b| a.item.as_bytes().cmp(b.item.as_bytes()));

    let pr = ok(repo.progress(&p, 1).await, "progress");
    assert_eq!(
        pr.inventory,
        owned[..PROGRESS_INVENTORY_LIMIT],
        "the first, by item"
    );
    assert_eq!(pr.inventory_count, n as u64, "every line counted");
    let theirs = ok(repo.progress(&other, 1).await, "progress");
    assert_eq!((theirs.inventory.len(), theirs.inventory_count), (5, 5));

    // Pages of any size walk every line once, sorted by item.
    for page in [1, 7, 100, n as u32, 1000] {
        assert_eq!(
            walk_inventory(repo, &p, page).await,
            owned,
            "pages of {page}"
        );
    }
    assert_eq!(walk_inventory(repo, &other, 2).await.len(), 5);
    assert!(walk_inventory(repo, &format!("p{s}_nobody"), 10)
        .await
        .is_empty());
    // A cursor names an item, owned or not: the page starts after it.
    let cut = format!("{}~", owned[9].item);
    let rest = ok(repo.inventory(&p, Some(&cut), 3).await, "inventory");
    assert_eq!(rest, owned[10..13]);
    let last = &owned[n - 1].item;
    assert!(ok(repo.inventory(&p, Some(last), 3).await, "inventory").is_empty());

    // A level reward claimed adds a line, on the view, its count and the pages.
    let chest = ProgressCommit {
        event_ids: vec![id()],
        rewards: vec![(p.clone(), reward("level:1:2", "A_chest", "level_up", true))],
        ..Default::default()
    };
    assert!(applied(repo, &consumer, &chest).await);
    let r = receipt(&p, "A_chest", &format!("r{s}_chest"));
    let claim = ok(repo.claim_reward(&p, "level:1:2", r).await, "claim");
    assert!(matches!(claim, RewardClaim::Issued(_)));
    owned.push(InventoryItem {
        item: "A_chest".to_owned(),
        quantity: 1,
    });
    owned.sort_by(|a, b| a.item.as_bytes().cmp(b.item.as_bytes()));
    let pr = ok(repo.progress(&p, 1).await, "progress");
    assert_eq!(pr.inventory, owned[..PROGRESS_INVENTORY_LIMIT]);
    assert_eq!(pr.inventory_count, n as u64 + 1);
    assert_eq!(walk_inventory(repo, &p, 50).await, owned);
}

/// A player's counts stop at [`PROGRESS_COUNT_LIMIT`] (a count of that many means at least that
/// many) and are exact below it; the lists stay at their limits and the pages reach every row.
pub async fn counts_stop_at_their_limit(repo: &dyn Stores) {
    let s = suffix();
    let p = format!("p{s}_hoard");
    let consumer = format!("progression_{s}");
    let n = usize::try_from(PROGRESS_COUNT_LIMIT).unwrap_or(usize::MAX) + 1;
    let commit = ProgressCommit {
        event_ids: vec![id()],
        items: (0..n)
            .map(|i| item(&p, &format!("item_{i:05}"), 1))
            .collect(),
        rewards: (0..n)
            .map(|i| {
                let drop = reward(&format!("drop:{i:05}"), "coin", "raid_chest", false);
                (p.clone(), drop)
            })
            .collect(),
        ..Default::default()
    };
    assert!(applied(repo, &consumer, &commit).await);
    let pr = ok(repo.progress(&p, 1).await, "progress");
    assert_eq!(
        (pr.inventory_count, pr.pending_count),
        (PROGRESS_COUNT_LIMIT, PROGRESS_COUNT_LIMIT),
        "past the limit, the limit"
    );
    assert_eq!(
        (pr.inventory.len(), pr.pending.len()),
        (PROGRESS_INVENTORY_LIMIT, PROGRESS_PENDING_LIMIT)
    );
    assert_eq!(walk_inventory(repo, &p, 1000).await.len(), n);
    assert_eq!(walk_pending(repo, &p, 1000).await.len(), n);

    // Two claimed: one under the limit, counted exactly.
    for claimed in ["drop:00000", "drop:00001"] {
        let r = receipt(&p, "coin", &format!("r{claimed}{s}"));
        let claim = ok(repo.claim_reward(&p, claimed, r).await, "claim");
        assert!(matches!(claim, RewardClaim::Issued(_)), "{claimed}");
    }
    let pr = ok(repo.progress(&p, 1).await, "progress");
    assert_eq!(pr.pending_count, PROGRESS_COUNT_LIMIT - 1);
    assert_eq!(pr.inventory_count, PROGRESS_COUNT_LIMIT, "drops stay owned");
}

/// Score commits add per board and player with their event ids, once, and answer the totals
/// they leave.
pub async fn scores_commit_once(repo: &dyn Stores) {
    let s = suffix();
    let consumer = format!("leaderboard_{s}");
    let daily = Board {
        window: Window::Daily,
        period: format!("t-{s}"),
    };
    let weekly = Board {
        window: Window::Weekly,
        period: format!("t-{s}"),
    };
    let (p1, p2) = (format!("p{s}_1"), format!("p{s}_2"));
    let (e1, e2, e3) = (id(), id(), id());
    let deltas = [
        score_delta(&daily, &p1, 10),
        score_delta(&daily, &p2, 5),
        score_delta(&daily, &p1, 7),
        score_delta(&weekly, &p1, 3),
    ];
    let first = repo.commit_scores(&consumer, &[e1, e2], &deltas).await;
    let mut totals = ok(first, "commit_scores");
    totals.sort_by(|a, b| (&a.board, &a.player_id).cmp(&(&b.board, &b.player_id)));
    assert_eq!(
        totals,
        [
            score_total(&daily, &p1, 17),
            score_total(&daily, &p2, 5),
            score_total(&weekly, &p1, 3)
        ]
    );
    assert_eq!(ok(repo.board_size(&daily).await, "board_size"), 2);
    let mut scores = ok(repo.board_scores(&daily).await, "board_scores");
    scores.sort();
    assert_eq!(scores, [(p1.clone(), 17), (p2.clone(), 5)]);
    assert_eq!(
        ok(repo.board_scores(&weekly).await, "board_scores"),
        [(p1.clone(), 3)]
    );
    let boards = ok(repo.boards().await, "boards");
    assert!(
        boards.contains(&daily) && boards.contains(&weekly),
        "{boards:?}"
    );
    assert_eq!(
        ok(repo.processed(&consumer, &[e1, e2, e3]).await, "processed"),
        set(&[e1, e2])
    );

    assert!(
        repo.commit_scores(&consumer, &[e3, e1], &[score_delta(&daily, &p1, 100)])
            .await
            .is_err(),
        "a commit with an already processed id must fail"
    );
    let mut unchanged = ok(repo.board_scores(&daily).await, "board_scores");
    unchanged.sort();
    assert_eq!(unchanged, scores, "partial effect");
    assert!(ok(repo.processed(&consumer, &[e3]).await, "processed").is_empty());

    let totals = repo
        .commit_scores(&consumer, &[e3], &[score_delta(&daily, &p2, 20)])
        .await;
    assert_eq!(
        ok(totals, "commit_scores"),
        [score_total(&daily, &p2, 25)],
        "the total, not the delta"
    );
    let mut after = ok(repo.board_scores(&daily).await, "board_scores");
    after.sort();
    assert_eq!(after, [(p1.clone(), 17), (p2.clone(), 25)]);
    let asked = [p2.clone(), format!("p{s}_none")];
    let some = ok(repo.scores_of(&daily, &asked).await, "scores_of");
    assert_eq!(
        some,
        [(p2, 25)],
        "only the players asked for who have a score"
    );
    assert!(ok(repo.scores_of(&daily, &[]).await, "scores_of").is_empty());
    let empty = Board {
        window: Window::Seasonal,
        period: format!("t-{s}"),
    };
    assert!(ok(repo.board_scores(&empty).await, "board_scores").is_empty());
    assert_eq!(ok(repo.board_size(&empty).await, "board_size"), 0);
}

/// The top of a board reads in the rank store's order (score descending, then player id
/// descending by bytes: `b` before `a` before `_` before `B`), ties included, `limit` at most.
pub async fn top_scores_rank_as_the_board_does(repo: &dyn Stores) {
    let s = suffix();
    let board = Board {
        window: Window::Daily,
        period: format!("top-{s}"),
    };
    // 60 players over 7 scores (ties), named so that byte order and a case-blind one differ.
    let deltas: Vec<ScoreDelta> = (0..60_i64)
        .map(|i| {
            let name = ["a", "B", "_", "b", "A", "9"][(i % 6) as usize];
            score_delta(&board, &format!("p{s}{name}{:02}", i / 6), 1 + i % 7)
        })
        .collect();
    let ids: Vec<Uuid> = deltas.iter().map(|_| id()).collect();
    ok(
        repo.commit_scores(&format!("top_{s}"), &ids, &deltas).await,
        "commit_scores",
    );
    let all = ok(repo.board_scores(&board).await, "board_scores");
    assert_eq!(all.len(), 60);
    for limit in [0, 1, 3, 13, 60, 1000] {
        let top = ok(repo.top_scores(&board, limit).await, "top_scores");
        assert_eq!(
            rank_entries(top, limit),
            rank_entries(all.clone(), limit),
            "top {limit}"
        );
    }
    let top = ok(repo.top_scores(&board, 3).await, "top_scores");
    assert_eq!(top.len(), 3);
    assert!(
        top.windows(2)
            .all(|w| (w[0].1, &w[0].0) > (w[1].1, &w[1].0)),
        "{top:?}"
    );
    let other = Board {
        window: Window::Weekly,
        period: board.period.clone(),
    };
    assert!(ok(repo.top_scores(&other, 10).await, "top_scores").is_empty());
}

/// Purging scores deletes every row of the window's boards whose period sorts before the cutoff
/// (more rows than one step), and nothing of later periods or of other windows.
pub async fn ended_boards_scores_are_purged(repo: &dyn Stores) {
    let s = suffix();
    // Periods that sort before every real one ('!' before digits), so other runs keep theirs.
    let board = |window: Window, period: &str| Board {
        window,
        period: format!("!{s}-{period}"),
    };
    let (old, older, kept) = (
        board(Window::Weekly, "b"),
        board(Window::Weekly, "a"),
        board(Window::Weekly, "d"),
    );
    let other = board(Window::Daily, "a");
    let mut deltas: Vec<ScoreDelta> = (0..2_500)
        .map(|i| score_delta(&old, &format!("p{s}_{i:04}"), 1 + i))
        .collect();
    for b in [&older, &kept, &other] {
        deltas.push(score_delta(b, &format!("p{s}_x"), 5));
    }
    let ids: Vec<Uuid> = deltas.iter().map(|_| id()).collect();
    ok(
        repo.commit_scores(&format!("purge_{s}"), &ids, &deltas)
            .await,
        "commit_scores",
    );
    let cutoff = format!("!{s}-c");
    // Kept for a day (the span only keys the purge's record; a walking round never skips).
    let purge = || {
        let round = walking();
        repo.purge_scores(Window::Weekly, &cutoff, round.at_ms - 86_400_000, round)
    };
    let purged = ok(purge().await, "purge_scores");
    assert!(purged >= 2_501, "{purged} rows purged");
    for gone in [&old, &older] {
        assert_eq!(ok(repo.board_size(gone).await, "board_size"), 0, "{gone:?}");
    }
    for stays in [&kept, &other] {
        assert_eq!(
            ok(repo.board_size(stays).await, "board_size"),
            1,
            "{stays:?}"
        );
    }
    assert_eq!(
        ok(purge().await, "purge_scores"),
        0,
        "nothing left to purge"
    );
}

/// The snapshot periods of `window` (up to 100 000, newest first) that start with `prefix`.
async fn periods_from(repo: &dyn Stores, window: Window, prefix: &str) -> Vec<String> {
    let all = ok(
        repo.snapshot_periods(window, 100_000).await,
        "snapshot_periods",
    );
    all.into_iter().filter(|p| p.starts_with(prefix)).collect()
}

/// A snapshot replaces the board's older one unless that one is final, which only a later final
/// one replaces; periods list newest first.
pub async fn snapshots_replace_and_list_newest_first(repo: &dyn Stores) {
    let s = suffix();
    let base = liveops_core::now_ms() + 1_000_000;
    let snap = |period: &str, taken_at_ms: i64, is_final: bool, score: i64| Snapshot {
        window: Window::Weekly,
        period: format!("t-{s}-{period}"),
        taken_at_ms,
        is_final,
        entries: vec![
            RankEntry {
                rank: 1,
                player_id: format!("p{s}_1"),
                score,
            },
            RankEntry {
                rank: 2,
                player_id: format!("p{s}_2"),
                score: score - 1,
            },
        ],
    };
    for sn in [
        snap("a", base + 2, false, 10),
        snap("c", base, true, 30),
        snap("b", base + 1, false, 20),
    ] {
        ok(repo.save_snapshot(&sn).await, "save_snapshot");
    }
    let board = |period: &str| Board {
        window: Window::Weekly,
        period: format!("t-{s}-{period}"),
    };
    assert_eq!(
        ok(repo.snapshot(&board("b")).await, "snapshot"),
        Some(snap("b", base + 1, false, 20))
    );
    // Seasons by their number, the latest first: 10 after 9, -2 before both.
    let seasons = ["season-9", "season--2", "season-10"];
    for (i, period) in seasons.iter().enumerate() {
        let mut sn = snap("x", base + i as i64, false, 5);
        sn.window = Window::Seasonal;
        sn.period = (*period).to_owned();
        ok(repo.save_snapshot(&sn).await, "save_snapshot");
    }
    let listed = ok(
        repo.snapshot_periods(Window::Seasonal, 100_000).await,
        "snapshot_periods",
    );
    let listed: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .filter(|p| seasons.contains(p))
        .collect();
    assert_eq!(listed, ["season-10", "season-9", "season--2"]);
    assert_eq!(ok(repo.snapshot(&board("zz")).await, "snapshot"), None);
    let ours = format!("t-{s}-");
    assert_eq!(
        periods_from(repo, Window::Weekly, &ours).await,
        [format!("t-{s}-c"), format!("t-{s}-b"), format!("t-{s}-a")]
    );
    assert_eq!(
        ok(
            repo.snapshot_periods(Window::Weekly, 2).await,
            "snapshot_periods"
        )
        .len(),
        2
    );

    // Saving a board again replaces its snapshot; periods keep their order whenever each
    // snapshot was taken (a final taken again after late scores does not become the newest).
    let newer = snap("a", base + 3, true, 99);
    ok(repo.save_snapshot(&newer).await, "save_snapshot");
    assert_eq!(
        ok(repo.snapshot(&board("a")).await, "snapshot"),
        Some(newer)
    );
    assert_eq!(
        periods_from(repo, Window::Weekly, &ours).await,
        [format!("t-{s}-c"), format!("t-{s}-b"), format!("t-{s}-a")]
    );
    let daily = periods_from(repo, Window::Daily, &ours).await;
    assert!(daily.is_empty(), "periods are per window");

    // A final snapshot stays against a running one, and against a final one taken before it
    // (a replica that read earlier and wrote later).
    for stale in [snap("a", base + 5, false, 7), snap("a", base + 2, true, 5)] {
        ok(repo.save_snapshot(&stale).await, "save_snapshot");
    }
    assert_eq!(
        ok(repo.snapshot(&board("a")).await, "snapshot"),
        Some(snap("a", base + 3, true, 99))
    );
    // A final one taken later replaces it (taken again after late scores), and still no
    // running one does.
    let revised = snap("a", base + 6, true, 120);
    ok(repo.save_snapshot(&revised).await, "save_snapshot");
    ok(
        repo.save_snapshot(&snap("a", base + 7, false, 1)).await,
        "save_snapshot",
    );
    assert_eq!(
        ok(repo.snapshot(&board("a")).await, "snapshot"),
        Some(revised)
    );
}

/// Statistics add up per event type (each commit brings its batch's samples, so replicas judging
/// at once both count); verdicts are written once, a commit naming one stored already stores
/// nothing, and they read back by id.
pub async fn fairness_state_round_trips(repo: &dyn Stores) {
    let w1 = Welford {
        count: 10,
        mean: 2.5,
        m2: 7.25,
    };
    let w2 = Welford {
        count: 3,
        mean: 1e6 / 3.0,
        m2: 0.1,
    };
    let (v1, v2, v3) = (id(), id(), id());
    // What the database holds already (a suite sharing it ran before), and after each commit.
    let (mut boss, mut progression) = (
        stats_of(repo, EventType::BossKill).await,
        stats_of(repo, EventType::Progression).await,
    );
    let commit_of = |verdicts, stats| FairnessCommit {
        verdicts,
        flags: vec![],
        stats,
        at_ms: liveops_core::now_ms(),
    };
    let first = commit_of(
        vec![(v1, true), (v2, false)],
        vec![(EventType::BossKill, w1), (EventType::Progression, w2)],
    );
    assert!(ok(repo.commit_fairness(&first).await, "commit_fairness"));
    boss.merge(&w1);
    progression.merge(&w2);
    assert_near(stats_of(repo, EventType::BossKill).await, boss);
    assert_near(stats_of(repo, EventType::Progression).await, progression);

    // Another verdict on v1 (a second replica judged it): nothing is stored, v3 included.
    let mut batch = Welford::default();
    batch.push(4.0);
    let mut commit = commit_of(
        vec![(v1, false), (v3, true)],
        vec![(EventType::BossKill, batch)],
    );
    assert!(
        !ok(repo.commit_fairness(&commit).await, "commit_fairness"),
        "a verdict other than the stored one must not commit"
    );
    assert_eq!(ok(repo.verdicts(&[v3]).await, "verdicts"), []);
    assert_near(stats_of(repo, EventType::BossKill).await, boss);

    // Even the same verdict as stored does not commit (both replicas agreed, or this one's
    // earlier commit went through unseen): that event's sample is stored already.
    commit.verdicts[0].1 = true;
    assert!(
        !ok(repo.commit_fairness(&commit).await, "commit_fairness"),
        "a verdict stored already must not commit again, nor add its samples twice"
    );
    assert_eq!(ok(repo.verdicts(&[v3]).await, "verdicts"), []);
    assert_near(stats_of(repo, EventType::BossKill).await, boss);

    // Judged again without it, the rest commits and adds its sample.
    commit.verdicts.remove(0);
    assert!(ok(repo.commit_fairness(&commit).await, "commit_fairness"));
    boss.merge(&batch);
    assert_near(stats_of(repo, EventType::BossKill).await, boss);

    // Another replica's batch, judged from the same stored statistics, adds its samples too;
    // one type given twice in a commit counts both.
    let mut other = Welford::default();
    for x in [1.5, 9.0, 0.25] {
        other.push(x);
    }
    let mut more = Welford::default();
    more.push(2.0);
    let both = commit_of(
        vec![(id(), false)],
        vec![(EventType::BossKill, other), (EventType::BossKill, more)],
    );
    assert!(ok(repo.commit_fairness(&both).await, "commit_fairness"));
    boss.merge(&other);
    boss.merge(&more);
    assert_near(stats_of(repo, EventType::BossKill).await, boss);

    let verdicts = ok(repo.verdicts(&[v1, v2, v3, id()]).await, "verdicts");
    // Judged when stored: within this test's run.
    let now = liveops_core::now_ms();
    assert!(
        verdicts
            .iter()
            .all(|(_, _, at)| *at > now - 600_000 && *at <= now),
        "{verdicts:?}"
    );
    let mut verdicts: Vec<(Uuid, bool)> = verdicts.into_iter().map(|(v, f, _)| (v, f)).collect();
    verdicts.sort();
    let mut want = vec![(v1, true), (v2, false), (v3, true)];
    want.sort();
    assert_eq!(verdicts, want, "the first verdict on an event stands");
    assert!(ok(repo.verdicts(&[]).await, "verdicts").is_empty());
}

/// The stored statistics of `kind` (none yet: empty); one row per type.
async fn stats_of(repo: &dyn Stores, kind: EventType) -> Welford {
    let stats = ok(repo.fairness_stats().await, "fairness_stats");
    let rows: Vec<Welford> = stats
        .iter()
        .filter(|(t, _)| *t == kind)
        .map(|(_, w)| *w)
        .collect();
    assert!(rows.len() <= 1, "one row per type: {stats:?}");
    rows.first().copied().unwrap_or_default()
}

/// `got` summarises the same samples as `want`, within rounding.
fn assert_near(got: Welford, want: Welford) {
    assert_eq!(got.count, want.count, "{got:?} against {want:?}");
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + b.abs());
    assert!(
        near(got.mean, want.mean) && near(got.m2, want.m2),
        "{got:?} against {want:?}"
    );
}

/// Flags list newest first, per player or overall; a flag is stored once per event.
pub async fn flags_newest_first(repo: &dyn Stores) {
    let s = suffix();
    let p = format!("p{s}_cheat");
    let now = liveops_core::now_ms();
    let flag = |at_ms: i64, z: f64| Flag {
        event_id: id(),
        player_id: p.clone(),
        event_type: EventType::BossKill,
        value: 900_000.0,
        z_score: z,
        at_ms,
    };
    let (f1, f2, f3) = (flag(now, 4.5), flag(now + 2, 6.25), flag(now + 1, 3.75));
    ok(
        repo.commit_fairness(&FairnessCommit {
            verdicts: vec![
                (f1.event_id, true),
                (f2.event_id, true),
                (f3.event_id, true),
            ],
            flags: vec![f1.clone(), f2.clone(), f3.clone()],
            stats: vec![],
            at_ms: now,
        })
        .await,
        "commit_fairness",
    );
    let mut dup = f1.clone();
    dup.z_score = 99.0;
    ok(
        repo.commit_fairness(&FairnessCommit {
            flags: vec![dup],
            ..Default::default()
        })
        .await,
        "commit_fairness",
    );
    assert_eq!(
        ok(repo.flags(Some(&p), 10).await, "flags"),
        [f2.clone(), f3.clone(), f1.clone()]
    );
    assert_eq!(ok(repo.flags(Some(&p), 2).await, "flags"), [f2.clone(), f3]);
    assert!(ok(repo.flags(Some(&format!("p{s}_clean")), 10).await, "flags").is_empty());
    let recent = ok(repo.flags(None, 50).await, "flags");
    assert!(!recent.is_empty() && recent.len() <= 50);
    assert!(
        recent.windows(2).all(|w| w[0].at_ms >= w[1].at_ms),
        "newest first"
    );
    assert!(recent.iter().any(|f| f.event_id == f2.event_id));
}

/// Purging flags deletes every flag raised before the cutoff, over more than one step and with
/// a step ending among many flags of one instant (a batch's flags share its time), and none
/// raised after it. On a shared database another run's purge may delete this run's old flags
/// first, so what this run's purge counts is not checked, only which flags are left.
pub async fn flags_past_their_retention_are_purged(repo: &dyn Stores) {
    let s = suffix();
    let (old, kept) = (format!("p{s}_old"), format!("p{s}_kept"));
    // Forty days ago: older than the flags of the other checks, and an hour before the kept
    // flags, so a run starting within the hour keeps them too.
    let cutoff = liveops_core::now_ms() - 40 * 86_400_000;
    let flag = |player: &str, at_ms: i64| Flag {
        event_id: id(),
        player_id: player.to_owned(),
        event_type: EventType::BossKill,
        value: 1_000_000.0,
        z_score: 9.5,
        at_ms,
    };
    let mut flags: Vec<Flag> = (0..2_500)
        .map(|i| flag(&old, cutoff - 10_000 + i))
        .collect();
    flags.extend((0..1_000).map(|_| flag(&old, cutoff - 1)));
    let later = [3_600_000, 3_600_001].map(|after| flag(&kept, cutoff + after));
    flags.extend(later.iter().cloned());
    let commit = FairnessCommit {
        flags,
        ..Default::default()
    };
    ok(repo.commit_fairness(&commit).await, "commit_fairness");
    assert_eq!(ok(repo.flags(Some(&old), 10).await, "flags").len(), 10);
    ok(repo.purge_flags(cutoff, walking()).await, "purge_flags");
    assert!(ok(repo.flags(Some(&old), 10).await, "flags").is_empty());
    let newest_first: Vec<Flag> = later.into_iter().rev().collect();
    assert_eq!(ok(repo.flags(Some(&kept), 10).await, "flags"), newest_first);
    ok(repo.purge_flags(cutoff, walking()).await, "purge_flags");
    assert_eq!(ok(repo.flags(Some(&kept), 10).await, "flags"), newest_first);
}

/// A purge's round now that walks whatever walked before: each purge here walks.
fn walking() -> liveops_core::stores::PurgeRound {
    liveops_core::stores::PurgeRound::walking(liveops_core::now_ms())
}

/// Batches above the bound-parameter limit of a single statement still work, all or nothing.
pub async fn large_batches_are_chunked(repo: &dyn Stores) {
    const N: usize = 1_200;
    let s = suffix();
    let consumer = format!("bulk_{s}");
    let ids: Vec<Uuid> = (0..N).map(|_| id()).collect();
    let players: Vec<String> = (0..N).map(|i| format!("p{s}_{i}")).collect();
    let commit = ProgressCommit {
        event_ids: ids.clone(),
        xp: players.iter().map(|p| xp(p, 1, 7, 1)).collect(),
        items: players.iter().map(|p| item(p, "coin", 2)).collect(),
        rewards: (0..300)
            .map(|i| {
                (
                    players[0].clone(),
                    reward(&format!("drop:{i}"), "coin", "bulk", false),
                )
            })
            .collect(),
        // Read back in chunks too.
        xp_before: players.iter().map(|p| ((p.clone(), 1), 0)).collect(),
    };
    assert!(applied(repo, &consumer, &commit).await);

    let mut asked = ids.clone();
    let fresh: Vec<Uuid> = (0..100).map(|_| id()).collect();
    asked.extend(&fresh);
    assert_eq!(
        ok(repo.processed(&consumer, &asked).await, "processed"),
        set(&ids)
    );
    let keys: Vec<(String, i64)> = players.iter().map(|p| (p.clone(), 1)).collect();
    assert_eq!(ok(repo.xp_of(&keys).await, "xp_of"), vec![7; N]);
    let pr = ok(repo.progress(&players[0], 1).await, "progress");
    assert_eq!(pr.inventory, inv(&[("coin", 2)]));
    let order: Vec<String> = pr.pending.into_iter().map(|r| r.reward_id).collect();
    let want: Vec<String> = (0..PROGRESS_PENDING_LIMIT)
        .map(|i| format!("drop:{i}"))
        .collect();
    assert_eq!(order, want, "the oldest, in the order written");
    assert_eq!(pr.pending_count, 300);

    // The last id of a big batch already recorded: nothing of it applies.
    let mut again = fresh.clone();
    again.extend((0..N).map(|_| id()));
    again.push(ids[N - 1]);
    let board = Board {
        window: Window::Daily,
        period: format!("t-{s}"),
    };
    let deltas: Vec<ScoreDelta> = players.iter().map(|p| score_delta(&board, p, 1)).collect();
    let totals = ok(
        repo.commit_scores(&consumer, &fresh, &deltas).await,
        "commit_scores",
    );
    assert_eq!(totals.len(), N, "a total per player");
    assert!(totals.iter().all(|t| t.total == 1 && t.board == board));
    assert_eq!(ok(repo.board_scores(&board).await, "board_scores").len(), N);
    assert_eq!(ok(repo.board_size(&board).await, "board_size"), N as u64);
    assert!(repo
        .commit_progress(
            &consumer,
            &ProgressCommit {
                event_ids: again.clone(),
                xp: keys.iter().map(|(p, _)| xp(p, 1, 1, 2)).collect(),
                ..Default::default()
            }
        )
        .await
        .is_err());
    assert_eq!(
        ok(repo.xp_of(&keys).await, "xp_of"),
        vec![7; N],
        "partial effect"
    );
    assert_eq!(
        ok(repo.processed(&consumer, &again).await, "processed").len(),
        fresh.len() + 1,
        "only the ids recorded before"
    );

    let verdicts: Vec<(Uuid, bool)> = ids.iter().map(|&i| (i, i.as_u128() % 2 == 0)).collect();
    ok(
        repo.commit_fairness(&FairnessCommit {
            verdicts: verdicts.clone(),
            at_ms: liveops_core::now_ms(),
            ..Default::default()
        })
        .await,
        "commit_fairness",
    );
    let read = ok(repo.verdicts(&ids).await, "verdicts");
    let mut read: Vec<(Uuid, bool)> = read.into_iter().map(|(v, f, _)| (v, f)).collect();
    read.sort();
    let mut want = verdicts;
    want.sort();
    assert_eq!(read, want);
}
