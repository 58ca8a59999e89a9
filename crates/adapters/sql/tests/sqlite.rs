//! The SQLite repository passes the store conformance suite, and its state survives reopening.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;

use liveops_core::stores::{ProcessedEvents, ProgressCommit, ProgressStore, XpGain};
use liveops_sql::SqliteRepository;
use liveops_testkit::conformance;

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
