//! Routes nested under another module's prefix, answered through the prefix's owner: in the
//! split deployment the load balancer sends `/campaigns/...` to campaigns and `/players/...` to
//! progression, and a process forwards a request for a route of a module it does not run to
//! that module (`PEER_URL_TEMPLATE`), signature and all.

mod common;

use common::{now, signed_post, start, wait_ready};
use liveops::modules::Table;
use serde_json::json;

/// Participation's routes under `/campaigns/{id}/...` are answered by participation through a
/// campaigns process: a public read gets the owner's answer as it is, a signed entry keeps its
/// signature over the hop (the owner checks it), and a forged one is refused by the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_route_is_answered_by_its_module_through_the_prefix_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let participation = start(
        Table::standard(),
        dir.path().into(),
        &["--target", "participation"],
    )
    .await;
    wait_ready(&participation.base).await;
    // Every module this process does not run is at the participation process here.
    let campaigns = start(
        Table::standard(),
        dir.path().into(),
        &[
            "--target",
            "campaigns",
            "--peer-url-template",
            &participation.base,
        ],
    )
    .await;
    wait_ready(&campaigns.base).await;

    let through = campaigns
        .get("/campaigns/cmp_nowhere/entrants?limit=5")
        .await;
    let direct = participation
        .get("/campaigns/cmp_nowhere/entrants?limit=5")
        .await;
    assert_eq!(through.status, direct.status);
    assert_eq!(through.body, direct.body, "the owner's answer, as it is");
    let detail = through.body["detail"].as_str().unwrap_or_default();
    assert!(!detail.contains("no route"), "{detail}");

    let body = serde_json::to_vec(&json!({"playerId": "player_1", "campaignId": "cmp_nowhere"}))
        .expect("json");
    let url = format!("{}/campaigns/cmp_nowhere/entries", campaigns.base);
    let signed = signed_post(
        &campaigns.client,
        &campaigns.keyring,
        None,
        &url,
        body.clone(),
    )
    .send()
    .await
    .expect("entry");
    assert_eq!(signed.status(), 404, "past the owner's signature check");
    let forged = campaigns
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-timestamp", now().to_string())
        .header("x-signature", format!("v2={}", "0".repeat(64)))
        .body(body)
        .send()
        .await
        .expect("forged entry");
    assert_eq!(forged.status(), 401, "refused by the owner");

    // Its own routes stay its own; a path no module has is still a 404 here.
    assert_eq!(campaigns.get("/campaigns/cmp_nowhere").await.status, 401);
    let nowhere = campaigns.get("/nowhere").await;
    assert_eq!(nowhere.status, 404);
    assert!(nowhere.body["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("no route"));
}

/// An owner that does not answer is a 503 with a retry hint; without a template such a route
/// is a 404, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_owner_is_a_503_and_no_template_a_404() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = format!(
        "http://127.0.0.1:{}",
        liveops_testkit::redis_server::closed_port()
    );
    let forwarding = start(
        Table::standard(),
        dir.path().join("a"),
        &["--target", "campaigns", "--peer-url-template", &closed],
    )
    .await;
    wait_ready(&forwarding.base).await;
    let down = forwarding.get("/campaigns/cmp_x/draw").await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.retry_after.as_deref(), Some("5"));
    let plain = start(
        Table::standard(),
        dir.path().join("b"),
        &["--target", "campaigns"],
    )
    .await;
    wait_ready(&plain.base).await;
    assert_eq!(plain.get("/campaigns/cmp_x/draw").await.status, 404);
}
