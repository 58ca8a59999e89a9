//! The SQLite repository passes the store conformance suite, and its state survives reopening.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;

use liveops_core::stores::{ProcessedEvents, ProgressCommit, ProgressStore, XpGain};
use liveops_sql::SqliteRepository;
use liveops_testkit::conformance;

mod sql_support;

async fn repo_at(path: &Path) -> SqliteRepository {
    let repo = SqliteRepository::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    repo.migrate().await.unwrap();
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_repository_passes_the_repository_suite() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_at(&dir.path().join("liveops.db")).await;
    conformance::stores::run_all(&repo).await;
    // Twice on one database: the suite shares a database between runs.
    conformance::stores::run_all(&repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_repository_passes_the_live_event_suite() {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::sync::Arc::new(repo_at(&dir.path().join("liveops.db")).await);
    conformance::live::run_all(repo.clone()).await;
    conformance::live::run_all(repo).await;
}

/// A new database file, not migrated: its directory, a repository and a pool on it.
async fn unmigrated() -> (tempfile::TempDir, SqliteRepository, sqlx::SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("liveops.db").display()
    );
    let repo = SqliteRepository::connect(&url).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    (dir, repo, pool)
}

/// `upgrade`'s check on a new database file.
async fn carried_over(upgrade: sql_support::Upgrade) {
    let (_dir, repo, pool) = unmigrated().await;
    let before = sql_support::ReleaseBefore {
        pool: &pool,
        dir: "migrations/sqlite",
    };
    before.carries_over(upgrade, repo.migrate(), &repo).await;
}

#[tokio::test]
async fn migration_0007_carries_keyed_sends_over() {
    carried_over(sql_support::Upgrade::KeyedSends).await;
}

/// Migration 0010 numbers the messages already written in the order they were listed in.
#[tokio::test]
async fn migration_0010_keeps_the_inbox_order() {
    carried_over(sql_support::Upgrade::InboxOrder).await;
}

#[tokio::test]
async fn repository_state_survives_reopening_and_migrations_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state.db");
    let event = uuid::Uuid::now_v7();
    {
        // A plain path works too, parent directories included.
        let repo = SqliteRepository::connect(path.to_str().unwrap())
            .await
            .unwrap();
        repo.migrate().await.unwrap();
        let commit = ProgressCommit {
            event_ids: vec![event],
            xp: vec![XpGain {
                player_id: "player_1".into(),
                season: 1,
                xp: 42,
                at_ms: 7,
            }],
            ..Default::default()
        };
        repo.commit_progress("progression", &commit).await.unwrap();
    }
    let repo = repo_at(&path).await;
    assert_eq!(repo.progress("player_1", 1).await.unwrap().xp, 42);
    assert!(repo
        .processed("progression", &[event])
        .await
        .unwrap()
        .contains(&event));
    repo.healthcheck().await.unwrap();
}

/// Released migration files never change (ADR 0031): every file under `migrations/` is listed
/// in `migrations/RELEASED.sha256` with the SHA-256 it was released with. sqlx refuses a
/// database whose applied file changed since, so a mistake is mended by a new migration.
#[test]
fn released_migrations_never_change() {
    use sha2::{Digest, Sha256};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let listed = std::fs::read_to_string(root.join("RELEASED.sha256")).unwrap();
    let listed: std::collections::BTreeMap<String, String> = listed
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (hash, file) = l
                .split_once("  ")
                .expect("`<sha256>  <dialect>/<file>` lines");
            (file.to_owned(), hash.to_owned())
        })
        .collect();
    let mut found = std::collections::BTreeMap::new();
    for dialect in ["mysql", "postgres", "sqlite"] {
        for entry in std::fs::read_dir(root.join(dialect)).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("{dialect}/{}", path.file_name().unwrap().to_string_lossy());
            found.insert(
                name,
                hex::encode(Sha256::digest(std::fs::read(&path).unwrap())),
            );
        }
    }
    for (file, hash) in &listed {
        match found.get(file) {
            None => panic!("{file} was released and is gone: restore it"),
            Some(now) => assert_eq!(
                now, hash,
                "{file} changed after its release: restore it and mend with a new migration"
            ),
        }
    }
    let unlisted: Vec<_> = found.keys().filter(|f| !listed.contains_key(*f)).collect();
    assert!(
        unlisted.is_empty(),
        "not in migrations/RELEASED.sha256: {unlisted:?}; once final, add each with \
         `sha256sum <dialect>/<file> >> RELEASED.sha256` in the migrations folder"
    );
}

/// Secrets at rest ([`sql_support::sealed::secrets_are_sealed_at_rest`]) on the embedded file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_sealed_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sealed.db");
    let pool = repo_at(&path).await.pool().clone();
    let url = format!("sqlite://{}?mode=rwc", path.display());
    sql_support::sealed::secrets_are_sealed_at_rest(&url, &pool).await;
}

/// A database a newer release migrated (a version this one does not know is applied) still
/// migrates and serves: the embedded default rolled back to the release before, its data kept.
#[tokio::test]
async fn a_database_a_newer_release_migrated_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    let repo = repo_at(&path).await;
    sqlx::query(sql_support::A_NEWER_MIGRATION)
        .execute(repo.pool())
        .await
        .unwrap();
    drop(repo);
    let again = repo_at(&path).await;
    again.healthcheck().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_scores_are_committed_holds_whole_commits_only() {
    use liveops_core::ports::{Board, ScoreDelta};
    use liveops_core::stores::ScoreStore;
    use liveops_core::Window;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("liveops.db");
    let repo = Arc::new(repo_at(&live).await);
    let board = Board {
        window: Window::Daily,
        period: "2026-12-01".into(),
    };
    // A consumer commits batches of 5 events, each worth 1 point, with their ids.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (repo, board, stop) = (repo.clone(), board.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<uuid::Uuid> = (0..5).map(|_| uuid::Uuid::now_v7()).collect();
                let deltas: Vec<ScoreDelta> = batch
                    .iter()
                    .map(|_| ScoreDelta {
                        board: board.clone(),
                        player_id: "player_1".into(),
                        delta: 1,
                    })
                    .collect();
                repo.commit_scores("leaderboard", &batch, &deltas)
                    .await
                    .unwrap();
                ids.extend(batch);
            }
            ids
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let copy = dir.path().join("copy.db");
    let (from, to) = (live.clone(), copy.clone());
    let bytes = tokio::task::spawn_blocking(move || SqliteRepository::backup(&from, &to))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let all_ids = writer.await.unwrap();
    assert_eq!(bytes, std::fs::metadata(&copy).unwrap().len());
    SqliteRepository::check_copy(&copy).unwrap();

    // The copy is the database at one commit: its score is exactly the events it records as
    // applied, a whole number of batches, fewer than the writer went on to commit.
    let restored = repo_at(&copy).await;
    let score: i64 = restored
        .board_scores(&board)
        .await
        .unwrap()
        .iter()
        .map(|(_, s)| s)
        .sum();
    let applied = restored
        .processed("leaderboard", &all_ids)
        .await
        .unwrap()
        .len();
    assert_eq!(score as usize, applied);
    assert!(applied > 0 && applied % 5 == 0, "{applied}");
    assert!(
        applied < all_ids.len(),
        "the writer kept going after the copy"
    );

    // A copy never overwrites, and a missing source is an error, not an empty database.
    let again = copy.clone();
    assert!(SqliteRepository::backup(&live, &again).is_err());
    assert!(
        SqliteRepository::backup(&dir.path().join("nope.db"), &dir.path().join("x.db")).is_err()
    );
    assert!(!dir.path().join("nope.db").exists());
    // Anything but a repository fails the check.
    std::fs::write(dir.path().join("junk.db"), b"not a database at all").unwrap();
    assert!(SqliteRepository::check_copy(&dir.path().join("junk.db")).is_err());
    assert_eq!(
        SqliteRepository::database_file("sqlite://data/liveops.db?mode=rwc").unwrap(),
        Path::new("data/liveops.db")
    );
    assert!(SqliteRepository::database_file("sqlite::memory:").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_rows_past_the_retention_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_at(&dir.path().join("liveops.db")).await;
    sql_support::purge_removes_only_rows_past_the_cutoff(&repo).await;
}

/// A table is walked once a period, also by two repositories on one file (a restarted process
/// beside the one before it), each run spared the walk counted
/// (`retention_purges_skipped_total{reason="recent"}`). On one thread, so the purges record to
/// this test's own recorder.
#[test]
fn a_table_is_walked_once_a_period() {
    let recorded = Recorded::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("liveops.db");
    recorded.run(async {
        let (a, b) = (repo_at(&file).await, repo_at(&file).await);
        sql_support::purges_walk_once_a_period(&a, &b).await;
    });
    let skipped = |table: &str, reason: &str| {
        recorded.sample(&format!(
            "retention_purges_skipped_total{{table=\"{table}\",reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(skipped("processed_events", "recent"), 4.0);
    assert_eq!(skipped("processed_events", "busy"), 0.0);
    // The late older walk's check spares one round, the long walk's two.
    assert_eq!(skipped("fairness_flags", "recent"), 3.0);
    assert_eq!(skipped("scores", "recent"), 1.0);
}

/// A runtime on this thread whose work records its metrics to a recorder of its own.
struct Recorded {
    recorder: metrics_exporter_prometheus::PrometheusRecorder,
    runtime: tokio::runtime::Runtime,
}

impl Recorded {
    fn new() -> Self {
        Self {
            recorder: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// Runs `work` to its end, recording to this recorder.
    fn run<F: std::future::Future>(&self, work: F) -> F::Output {
        metrics::with_local_recorder(&self.recorder, || self.runtime.block_on(work))
    }

    /// The value of `series` (name and labels as rendered) recorded so far.
    fn sample(&self, series: &str) -> f64 {
        let text = self.recorder.handle().render();
        liveops_testkit::logs::sample(&text, series)
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    }
}

/// Claims, then entries, sent at once wait for the one writer together and are written in
/// groups, each answered as if it came alone (`db_write_group_writes`: fewer groups than writes,
/// for each burst). On one thread, so the tasks that write the groups record to this test's
/// own recorder.
#[test]
fn claims_and_entries_sent_at_once_are_written_in_groups() {
    let recorded = Recorded::new();
    // Writes and groups so far.
    let written = || {
        (
            recorded.sample("db_write_group_writes_sum{backend=\"SQLite\"}"),
            recorded.sample("db_write_group_writes_count{backend=\"SQLite\"}"),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = recorded.run(async {
        let repo = std::sync::Arc::new(repo_at(&dir.path().join("liveops.db")).await);
        conformance::live::claims_at_once_are_answered_each_alone(repo.clone()).await;
        repo
    });
    let (claims, claim_groups) = written();
    assert_eq!(claims, 31.0, "every claim went through a group");
    assert!(
        claim_groups < claims,
        "{claim_groups} groups for {claims} claims"
    );
    recorded.run(conformance::live::entries_at_once_are_answered_each_alone(
        repo,
    ));
    let (writes, groups) = written();
    let (entries, entry_groups) = (writes - claims, groups - claim_groups);
    assert_eq!(entries, 31.0, "every entry went through a group");
    assert!(
        entry_groups < entries,
        "{entry_groups} groups for {entries} entries"
    );
}

/// A purge of fairness flags reads and deletes along their time (`fairness_flags_recent`), a
/// range of the index, never the whole table, with no sort step.
#[tokio::test]
async fn flags_are_purged_along_their_time_index() {
    let (_dir, repo, pool) = unmigrated().await;
    repo.migrate().await.unwrap();
    for sql in [
        "SELECT at_ms FROM fairness_flags WHERE at_ms < 5 ORDER BY at_ms LIMIT 1 OFFSET 2000",
        "DELETE FROM fairness_flags WHERE at_ms <= 5",
        "DELETE FROM fairness_flags WHERE at_ms < 5",
    ] {
        let plan = plan_of(&pool, sql).await;
        assert!(
            plan.contains("fairness_flags_recent (at_ms<"),
            "{sql}: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "no sort step: {plan}");
    }
}

/// SQLite's plan for `sql` on `pool` (`EXPLAIN QUERY PLAN`): `(id, parent, _, detail)` rows.
async fn plan_rows(pool: &sqlx::SqlitePool, sql: &str) -> Vec<(i64, i64, i64, String)> {
    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
        .fetch_all(pool)
        .await
        .unwrap()
}

/// SQLite's plan for `sql` on `pool`, its details joined by `; `.
async fn plan_of(pool: &sqlx::SqlitePool, sql: &str) -> String {
    let rows = plan_rows(pool, sql).await;
    rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
}

/// A webhook's deliveries in one state, newest first (the listing's `?state=`), are read
/// through their own index, a board's top through `scores_by_rank`, a player's pending rewards
/// through `rewards_pending` and their inventory through its key, with no sort step.
#[tokio::test]
async fn listings_by_state_and_board_tops_are_read_from_their_indexes() {
    let (_dir, repo, pool) = unmigrated().await;
    repo.migrate().await.unwrap();
    let plan = |sql: &'static str| plan_of(&pool, sql);
    let dead = plan(
        "SELECT id FROM webhook_deliveries WHERE webhook_id = 'w' AND state = 'dead' \
         ORDER BY created_at DESC, id DESC LIMIT 100",
    )
    .await;
    assert!(dead.contains("webhook_deliveries_by_state"), "{dead}");
    let top = plan(
        "SELECT player_id, score FROM scores WHERE board_window = 'daily' AND period = 'p' \
         ORDER BY score DESC, player_id DESC LIMIT 100",
    )
    .await;
    assert!(top.contains("scores_by_rank"), "{top}");
    assert!(!top.contains("TEMP B-TREE"), "no sort step: {top}");
    // A player's oldest pending rewards, a page of them and their count: along rewards_pending.
    for sql in [
        "SELECT reward_id, item, source, adds_to_inventory FROM rewards \
         WHERE player_id = 'p' AND claimed = 0 ORDER BY id LIMIT 100",
        "SELECT id, reward_id, item, source, adds_to_inventory FROM rewards \
         WHERE player_id = 'p' AND claimed = 0 AND id > 7 ORDER BY id LIMIT 101",
        "SELECT COUNT(*) FROM \
         (SELECT 1 FROM rewards WHERE player_id = 'p' AND claimed = 0 LIMIT 10000) AS counted",
    ] {
        let pending = plan(sql).await;
        assert!(pending.contains("rewards_pending"), "{sql}: {pending}");
        assert!(!pending.contains("TEMP B-TREE"), "no sort step: {pending}");
    }
    // A player's first items, a page of them and their count: along inventory's key.
    for sql in [
        "SELECT item, quantity FROM inventory WHERE player_id = 'p' ORDER BY item LIMIT 100",
        "SELECT item, quantity FROM inventory \
         WHERE player_id = 'p' AND item > 'gem' ORDER BY item LIMIT 101",
        "SELECT COUNT(*) FROM (SELECT 1 FROM inventory WHERE player_id = 'p' LIMIT 10000) AS counted",
    ] {
        let items = plan(sql).await;
        assert!(
            items.contains("sqlite_autoindex_inventory_1 (player_id=?"),
            "{sql}: {items}"
        );
        assert!(!items.contains("TEMP B-TREE"), "no sort step: {items}");
    }
}

/// An inbox page, among many more messages of other players, reads the player's messages and
/// everyone's each down `inbox_messages_by_position` in the listing's order, stopping at the
/// page's size (no sort inside a side), whichever page it is; never every message of the two
/// first (one `OR` of both: a multi-index read, then a sort).
#[tokio::test]
async fn an_inbox_page_reads_each_side_down_to_its_size() {
    let (_dir, repo, pool) = unmigrated().await;
    repo.migrate().await.unwrap();
    sql_support::fill_inboxes(&repo).await;
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    for sql in sql_support::inbox_pages() {
        let rows = plan_rows(&pool, &sql).await;
        let plan = rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>();
        let sides = plan
            .iter()
            .filter(|d| {
                d.starts_with("SEARCH inbox_messages USING INDEX inbox_messages_by_position")
            })
            .count();
        // The sides are co-routines read as they are asked for; a sort under one would read
        // its side whole.
        let sides_sorted = rows.iter().any(|(_, parent, _, detail)| {
            detail.contains("TEMP B-TREE")
                && rows
                    .iter()
                    .any(|(id, _, _, d)| id == parent && d.starts_with("CO-ROUTINE"))
        });
        let plan = plan.join("; ");
        assert_eq!(sides, 2, "{sql}: {plan}");
        assert!(
            !sides_sorted && !plan.contains("MULTI-INDEX OR"),
            "{sql}: {plan}"
        );
    }
}

/// The scheduler's read, among years of finished campaigns, searches the scheduled ones whose
/// start has come along `campaigns_by_state` and the live ones whose end has along
/// `campaigns_by_end` (0018), never scanning the table, and finds the 20 due.
#[tokio::test]
async fn due_campaigns_are_searched_along_their_indexes() {
    let (_dir, repo, pool) = unmigrated().await;
    repo.migrate().await.unwrap();
    for insert in sql_support::fill_campaigns() {
        sqlx::query(&insert).execute(&pool).await.unwrap();
    }
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    let sql = sql_support::due_statement();
    let plan = plan_of(&pool, &sql).await;
    assert!(
        plan.contains("SEARCH campaigns USING INDEX campaigns_by_state (state=? AND starts_at<?)"),
        "{plan}"
    );
    assert!(
        plan.contains("SEARCH campaigns USING INDEX campaigns_by_end (state=? AND ends_at<?)"),
        "{plan}"
    );
    assert!(!plan.contains("SCAN campaigns"), "{plan}");
    let due: Vec<(String,)> = sqlx::query_as(&format!("SELECT id FROM ({sql}) AS d"))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(due.len(), 20, "{due:?}");
}
