//! The caps on the active webhooks (`WEBHOOK_MAX`) and the active API keys (`API_KEY_MAX`) as a
//! store keeps them: a create past the cap writes nothing and leaves its key unused, a retry of a
//! create that stands is answered whatever the count, deleted webhooks and revoked keys do not
//! count, and creates at the same moment at the cap's edge take exactly the room left. The
//! checks count every active row, so they run alone (`live::run_alone`).

use std::sync::Arc;

use liveops_core::now_ms;
use liveops_core::stores::{
    ApiKeyInfo, AuditEntry, CappedOutcome, KeyedOutcome, RequestKey, Webhook,
};

use super::live::{audit, keyed, request_key, webhook, LiveStores, WRITTEN};
use super::{ok, suffix};

/// How many creates race for the room left.
const AT_ONCE: usize = 8;

/// How much room the race leaves.
const ROOM: u32 = 3;

/// The ids of the active webhooks.
async fn active_webhooks(repo: &dyn LiveStores) -> Vec<String> {
    let hooks = ok(repo.webhooks().await, "webhooks");
    hooks.into_iter().map(|h| h.id).collect()
}

/// Creates `hook` under `key` (if any), `max` at most active.
async fn create_hook(
    repo: &dyn LiveStores,
    key: Option<(&RequestKey, &str)>,
    hook: &Webhook,
    max: u32,
) -> CappedOutcome {
    let keyed = key.map(|(k, made)| keyed(k, &made));
    let entry = audit("webhook.create", &hook.id);
    let made = repo.create_webhook(keyed.as_ref(), hook, &entry, max).await;
    ok(made, "create_webhook")
}

/// Deletes webhook `id`, which is active.
async fn delete_hook(repo: &dyn LiveStores, id: &str) {
    let deleted = repo.delete_webhook(id, &audit("webhook.delete", id)).await;
    assert!(ok(deleted, "delete_webhook"), "{id} was active");
}

/// The count as the cap sees it: the active webhooks, the deleted ones aside.
pub async fn active_webhooks_stay_within_their_cap<S: LiveStores + 'static>(repo: Arc<S>) {
    let r = repo.as_ref();
    let before = active_webhooks(r).await;
    let max = u32::try_from(before.len()).expect("few") + 2;
    let (a, b) = (webhook(), webhook());
    assert_eq!(create_hook(r, None, &a, max).await, WRITTEN);
    let key_b = request_key("op_cap", "webhook-b");
    assert_eq!(
        create_hook(r, Some((&key_b, &b.id)), &b, max).await,
        WRITTEN
    );

    // Full: a third writes nothing and leaves its key for a retry once there is room.
    let c = webhook();
    let key_c = request_key("op_cap", "webhook-c");
    let refused = create_hook(r, Some((&key_c, &c.id)), &c, max).await;
    assert_eq!(refused, CappedOutcome::Full);
    assert_eq!(ok(r.answered(&key_c).await, "answered"), None, "key unused");
    assert!(!active_webhooks(r).await.contains(&c.id));
    // A retry of a create that stands gets its answer, at the cap and past a cap lowered since.
    for cap in [max, max - 1] {
        let retry = webhook();
        let again = create_hook(r, Some((&key_b, &retry.id)), &retry, cap).await;
        let first = keyed(&key_b, &b.id).answer;
        assert_eq!(again, CappedOutcome::Keyed(KeyedOutcome::Replayed(first)));
    }
    let lowered = create_hook(r, None, &webhook(), max - 1).await;
    assert_eq!(lowered, CappedOutcome::Full, "more than the cap active");

    // A deleted webhook does not count: c's retry now has room.
    delete_hook(r, &a.id).await;
    assert_eq!(
        create_hook(r, Some((&key_c, &c.id)), &c, max).await,
        WRITTEN
    );
    assert_eq!(active_webhooks(r).await.len(), before.len() + 2);

    // At once, with room for ROOM: ROOM are written, the others refused, none past the cap.
    delete_hook(r, &b.id).await;
    delete_hook(r, &c.id).await;
    let max = u32::try_from(before.len()).expect("few") + ROOM;
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            let repo = repo.clone();
            let hook = webhook();
            // Half of them under a key of their own.
            let key = request_key("op_cap_race", &format!("webhook-{i}"));
            tokio::spawn(async move {
                let key = (i % 2 == 0).then_some((&key, hook.id.as_str()));
                let got = create_hook(repo.as_ref(), key, &hook, max).await;
                (hook.id, got)
            })
        })
        .collect();
    let mut written = Vec::new();
    for task in tasks {
        let (id, got) = task.await.expect("join");
        match got {
            CappedOutcome::Full => {}
            got => {
                assert_eq!(got, WRITTEN, "{id}");
                written.push(id);
            }
        }
    }
    assert_eq!(written.len(), ROOM as usize, "{written:?}");
    let now = active_webhooks(r).await;
    assert_eq!(now.len(), before.len() + ROOM as usize, "{now:?}");
    for id in &written {
        assert!(now.contains(id), "{id} listed");
        delete_hook(r, id).await;
    }
    assert_eq!(active_webhooks(r).await, before, "as found");
}

/// A key for a game server, created now.
fn api_key() -> ApiKeyInfo {
    ApiKeyInfo {
        key_id: format!("ak_{}", suffix()),
        name: "capped".into(),
        created_by: "admin@example.com".into(),
        created_at_ms: now_ms(),
        revoked_at_ms: None,
    }
}

/// Creates `key` under `request` (if any), `max` at most active.
async fn create_key(
    repo: &dyn LiveStores,
    request: Option<(&RequestKey, &str)>,
    key: &ApiKeyInfo,
    max: u32,
) -> CappedOutcome {
    let keyed = request.map(|(k, made)| keyed(k, &made));
    let entry = audit("api_key.create", &key.key_id);
    let made = repo.create_api_key(keyed.as_ref(), key, "secret", &entry, max);
    ok(made.await, "create_api_key")
}

/// Revokes key `id`, which is active, at `at_ms`.
async fn revoke_key(repo: &dyn LiveStores, id: &str, at_ms: i64) {
    let entry = AuditEntry {
        at_ms,
        ..audit("api_key.revoke", id)
    };
    let revoked = ok(repo.revoke_api_key(id, &entry).await, "revoke_api_key");
    assert!(revoked.is_some(), "{id} was active");
}

/// The ids of the active keys.
async fn active_keys(repo: &dyn LiveStores) -> Vec<String> {
    let keys = ok(repo.active_api_keys().await, "active_api_keys");
    keys.into_iter().map(|(id, _)| id).collect()
}

/// The count as the cap sees it: the active API keys, the revoked ones aside; and the listing
/// holds every active key and as many of the most recently revoked as asked.
pub async fn active_api_keys_stay_within_their_cap<S: LiveStores + 'static>(repo: Arc<S>) {
    let r = repo.as_ref();
    let before = active_keys(r).await;
    let max = u32::try_from(before.len()).expect("few") + 2;
    let (a, b) = (api_key(), api_key());
    assert_eq!(create_key(r, None, &a, max).await, WRITTEN);
    let key_b = request_key("op_cap", "api-key-b");
    assert_eq!(
        create_key(r, Some((&key_b, &b.key_id)), &b, max).await,
        WRITTEN
    );

    // Full: a third writes nothing and leaves its key for a retry once there is room.
    let c = api_key();
    let key_c = request_key("op_cap", "api-key-c");
    let refused = create_key(r, Some((&key_c, &c.key_id)), &c, max).await;
    assert_eq!(refused, CappedOutcome::Full);
    assert_eq!(ok(r.answered(&key_c).await, "answered"), None, "key unused");
    assert!(!active_keys(r).await.contains(&c.key_id));
    // A retry of a create that stands gets its answer, at the cap and past a cap lowered since.
    for cap in [max, max - 1] {
        let retry = api_key();
        let again = create_key(r, Some((&key_b, &retry.key_id)), &retry, cap).await;
        let first = keyed(&key_b, &b.key_id).answer;
        assert_eq!(again, CappedOutcome::Keyed(KeyedOutcome::Replayed(first)));
    }
    let lowered = create_key(r, None, &api_key(), max - 1).await;
    assert_eq!(lowered, CappedOutcome::Full, "more than the cap active");

    // A revoked key does not count: c's retry now has room. The listing holds every active key
    // and the most recently revoked ones, as many as asked.
    let last_revoked = now_ms() + 60_000;
    revoke_key(r, &a.key_id, last_revoked).await;
    assert_eq!(
        create_key(r, Some((&key_c, &c.key_id)), &c, max).await,
        WRITTEN
    );
    assert_eq!(active_keys(r).await.len(), before.len() + 2);
    let listed = |revoked: u32| async move {
        let keys = ok(r.api_keys(revoked).await, "api_keys");
        let active: Vec<String> = keys
            .iter()
            .filter(|k| k.revoked_at_ms.is_none())
            .map(|k| k.key_id.clone())
            .collect();
        let gone: Vec<String> = keys
            .into_iter()
            .filter(|k| k.revoked_at_ms.is_some())
            .map(|k| k.key_id)
            .collect();
        (active, gone)
    };
    let (active, gone) = listed(0).await;
    assert_eq!(active.len(), before.len() + 2, "every active key");
    assert!(gone.is_empty(), "{gone:?}");
    let (active, gone) = listed(1).await;
    assert_eq!(active.len(), before.len() + 2, "every active key");
    assert_eq!(
        gone,
        std::slice::from_ref(&a.key_id),
        "the one revoked last"
    );

    // At once, with room for ROOM: ROOM are written, the others refused, none past the cap.
    revoke_key(r, &b.key_id, now_ms()).await;
    revoke_key(r, &c.key_id, now_ms()).await;
    let max = u32::try_from(before.len()).expect("few") + ROOM;
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            let repo = repo.clone();
            let key = api_key();
            // Half of them under a request key of their own.
            let request = request_key("op_cap_race", &format!("api-key-{i}"));
            tokio::spawn(async move {
                let request = (i % 2 == 0).then_some((&request, key.key_id.as_str()));
                let got = create_key(repo.as_ref(), request, &key, max).await;
                (key.key_id, got)
            })
        })
        .collect();
    let mut written = Vec::new();
    for task in tasks {
        let (id, got) = task.await.expect("join");
        match got {
            CappedOutcome::Full => {}
            got => {
                assert_eq!(got, WRITTEN, "{id}");
                written.push(id);
            }
        }
    }
    assert_eq!(written.len(), ROOM as usize, "{written:?}");
    let now = active_keys(r).await;
    assert_eq!(now.len(), before.len() + ROOM as usize, "{now:?}");
    for id in &written {
        assert!(now.contains(id), "{id} active");
        revoke_key(r, id, now_ms()).await;
    }
    assert_eq!(active_keys(r).await, before, "as found");
}
