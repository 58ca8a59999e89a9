//! The Azure Blob archive against the Storage emulator (Azurite): files go up in blocks and come
//! back byte for byte, listings see them by prefix, a wrong key or a missing object fails with
//! the service's reason.

#![allow(clippy::unwrap_used)] // tests may unwrap

use liveops_azure_blob::{BlobContainer, BLOCK};
use liveops_core::ports::Archive;
use liveops_testkit::azurite::{Azurite, KEY};

fn file_of(dir: &std::path::Path, name: &str, len: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_any_size_round_trip_and_list_by_prefix() {
    let azurite = Azurite::start();
    let url = format!("{}/backups/eu-west", azurite.account_url);
    let archive = BlobContainer::new(&url, Some(KEY)).unwrap();
    archive.create_container().await.unwrap();
    archive.create_container().await.unwrap(); // already there: fine

    let dir = tempfile::tempdir().unwrap();
    // Empty, small, and over two blocks (three Put Block calls).
    for (name, len) in [
        ("empty.db", 0),
        ("small.db", 1000),
        ("big.db", 2 * BLOCK + 12345),
    ] {
        let src = file_of(dir.path(), name, len);
        let sent = archive
            .put_file(&format!("liveops-20261201T101500.000Z/{name}"), &src)
            .await
            .unwrap();
        assert_eq!(sent, len as u64);
        let back = dir.path().join(format!("{name}.back"));
        let got = archive
            .get_file(&format!("liveops-20261201T101500.000Z/{name}"), &back)
            .await
            .unwrap();
        assert_eq!(got, len as u64);
        assert_eq!(
            std::fs::read(&back).unwrap(),
            std::fs::read(&src).unwrap(),
            "{name}"
        );
    }
    // Replacing an object keeps only the new content.
    let small = file_of(dir.path(), "again.db", 10);
    archive
        .put_file("liveops-20261201T101500.000Z/small.db", &small)
        .await
        .unwrap();
    let back = dir.path().join("again.back");
    archive
        .get_file("liveops-20261201T101500.000Z/small.db", &back)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap().len(), 10);

    archive
        .put_file("liveops-20261202T000000.000Z/bus.db", &small)
        .await
        .unwrap();
    assert_eq!(
        archive.list("liveops-").await.unwrap(),
        vec![
            "liveops-20261201T101500.000Z/big.db",
            "liveops-20261201T101500.000Z/empty.db",
            "liveops-20261201T101500.000Z/small.db",
            "liveops-20261202T000000.000Z/bus.db",
        ]
    );
    assert_eq!(archive.list("liveops-20261202").await.unwrap().len(), 1);
    // Another prefix of the same container sees none of it.
    let other = BlobContainer::new(
        &format!("{}/backups/us-east", azurite.account_url),
        Some(KEY),
    )
    .unwrap();
    assert!(other.list("").await.unwrap().is_empty());

    // A missing object and a wrong key fail with the service's reason; nothing is left behind.
    let missing = dir.path().join("missing");
    let err = archive.get_file("nope/bus.db", &missing).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert!(!missing.exists());
    let wrong = BlobContainer::new(&url, Some("d3Jvbmcga2V5")).unwrap();
    let err = wrong.put_file("x/y.db", &small).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    assert!(!err.to_string().contains(KEY));
}
