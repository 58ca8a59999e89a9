//! Creating webhooks over HTTP past `WEBHOOK_MAX`: refused with a problem naming the setting
//! until one is deleted. Real adapters: the SQLite repository.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use liveops_distribution::{router, WebhookView};
use liveops_testkit::served;
use serde_json::json;

/// `POST /webhooks` to path `/{name}` on a loopback receiver, under `idempotency_key` if any.
async fn create(
    app: &Router,
    token: &str,
    name: &str,
    idempotency_key: Option<&str>,
) -> served::Reply {
    let body = json!({
        "url": format!("http://127.0.0.1:9/{name}"),
        "events": ["campaign.live"],
        "secret": "whsec_0123456789abcdef",
    });
    let req = served::bearer_post("/webhooks", token, idempotency_key, &body);
    served::call(app, req).await
}

/// The id of the webhook a `POST /webhooks` answer created (201).
fn created(reply: served::Reply) -> String {
    assert_eq!(reply.0, 201, "{}", reply.2);
    served::read::<WebhookView>(&reply.2).id
}

/// `GET /webhooks`: the ids listed, sorted (webhooks created in the same millisecond are
/// listed in no set order).
async fn listed(app: &Router, token: &str) -> Vec<String> {
    let req = Request::get("/webhooks")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = served::call(app, req).await;
    assert_eq!(status, 200, "{body}");
    let hooks: Vec<WebhookView> = served::read(&body["webhooks"]);
    let mut ids: Vec<String> = hooks.into_iter().map(|h| h.id).collect();
    ids.sort();
    ids
}

/// At most `WEBHOOK_MAX` webhooks are active: one more is refused 409 `webhook-limit-reached`
/// naming the setting, and nothing is created (its `Idempotency-Key` is left for a retry once
/// one is deleted); a retry of a create that stands is answered at the cap; deleted webhooks
/// do not count.
#[tokio::test]
async fn webhooks_past_webhook_max_are_refused_until_one_is_deleted() {
    let (_dir, repo) = common::repo().await;
    let token = "hooks-operator-session-token";
    liveops_testkit::operators::signed_in(repo.as_ref(), "op_hooks", token).await;
    let app = router(common::state(&repo, std::time::Duration::from_secs(1)));
    let mut made = Vec::new();
    for i in 0..common::MAX_WEBHOOKS {
        made.push(created(create(&app, token, &format!("h{i}"), None).await));
    }
    let last = create(&app, token, "last", Some("last")).await;
    assert_eq!(last.0, 409, "{}", last.2);
    let refused = served::problem(last);
    assert_eq!(refused.kind, "/problems/webhook-limit-reached");
    let detail = refused.detail.unwrap_or_default();
    assert!(detail.contains("WEBHOOK_MAX"), "{detail}");
    assert!(
        detail.contains(&common::MAX_WEBHOOKS.to_string()),
        "{detail}"
    );
    made.sort();
    assert_eq!(listed(&app, token).await, made, "nothing created");

    // Deleted, one leaves room: the refused create, retried under its key, goes through; its
    // retry is answered with it while the webhooks are at the cap again.
    let req = Request::delete(format!("/webhooks/{}", made[0]))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(served::call(&app, req).await.0, 204);
    let first = create(&app, token, "last", Some("last")).await;
    let first_body = first.2.clone();
    let last = created(first);
    let again = create(&app, token, "last", Some("last")).await;
    assert_eq!(
        (again.0.as_u16(), &again.2),
        (201, &first_body),
        "the retry"
    );
    let refused = create(&app, token, "more", None).await;
    assert_eq!(served::problem(refused).status, 409);
    let mut now = made[1..].to_vec();
    now.push(last);
    now.sort();
    assert_eq!(listed(&app, token).await, now);
}
