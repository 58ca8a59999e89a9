//! The caps on the active webhooks (`WEBHOOK_MAX`) and the active API keys (`API_KEY_MAX`) as a
//! store keeps them: a create past the cap writes nothing and leaves its key unused, a retry of a
//! create that stands is answered whatever the count, deleted webhooks and revoked keys do not
//! count, and creates at the same moment at the cap's edge take exactly the room left. The
//! checks count every active row, so they run alone (`live::run_alone`).

use std::sync::Arc;

use async_trait::async_trait;

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

/// A set of rows a setting caps, as the checks create, remove and count its members.
#[async_trait]
trait CappedSet: Send + Sync + 'static {
    /// A member, before it is written.
    type Member: Send + Sync + 'static;
    /// A new member, not written yet.
    fn member() -> Self::Member;
    /// Its id.
    fn id(member: &Self::Member) -> &str;
    /// Creates `member` under `key` (if any), `max` at most active.
    async fn create(
        repo: &dyn LiveStores,
        key: Option<(&RequestKey, &str)>,
        member: &Self::Member,
        max: u32,
    ) -> CappedOutcome;
    /// Takes member `id`, which is active, out of the count (deleted, revoked).
    async fn remove(repo: &dyn LiveStores, id: &str);
    /// The ids of the active members.
    async fn active(repo: &dyn LiveStores) -> Vec<String>;
}

/// The active webhooks (`WEBHOOK_MAX`).
struct Webhooks;

#[async_trait]
impl CappedSet for Webhooks {
    type Member = Webhook;

    fn member() -> Webhook {
        webhook()
    }

    fn id(hook: &Webhook) -> &str {
        &hook.id
    }

    async fn create(
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

    async fn remove(repo: &dyn LiveStores, id: &str) {
        let deleted = repo.delete_webhook(id, &audit("webhook.delete", id)).await;
        assert!(ok(deleted, "delete_webhook"), "{id} was active");
    }

    async fn active(repo: &dyn LiveStores) -> Vec<String> {
        let hooks = ok(repo.webhooks().await, "webhooks");
        hooks.into_iter().map(|h| h.id).collect()
    }
}

/// The active API keys (`API_KEY_MAX`).
struct ApiKeys;

#[async_trait]
impl CappedSet for ApiKeys {
    type Member = ApiKeyInfo;

    fn member() -> ApiKeyInfo {
        ApiKeyInfo {
            key_id: format!("ak_{}", suffix()),
            name: "capped".into(),
            created_by: "admin@example.com".into(),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        }
    }

    fn id(key: &ApiKeyInfo) -> &str {
        &key.key_id
    }

    async fn create(
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

    /// Revoked a minute ahead of now: the most recently revoked keys of the database are this
    /// check's (the listing check counts on it).
    async fn remove(repo: &dyn LiveStores, id: &str) {
        let entry = AuditEntry {
            at_ms: now_ms() + 60_000,
            ..audit("api_key.revoke", id)
        };
        let revoked = ok(repo.revoke_api_key(id, &entry).await, "revoke_api_key");
        assert!(revoked.is_some(), "{id} was active");
    }

    async fn active(repo: &dyn LiveStores) -> Vec<String> {
        let keys = ok(repo.active_api_keys().await, "active_api_keys");
        keys.into_iter().map(|(id, _)| id).collect()
    }
}

/// What [`holds_its_cap`] leaves: the members active before it, the one it removed and the two
/// it left active (`b` created under a key, `c` refused at the cap and written on retry).
struct Left {
    before: Vec<String>,
    removed: String,
    b: String,
    c: String,
}

/// The count as the cap sees it: past the cap a create writes nothing and leaves its key for a
/// retry once there is room; a retry of a create that stands gets its answer, also past a cap
/// lowered since; a removed member does not count.
async fn holds_its_cap<C: CappedSet>(r: &dyn LiveStores, name: &str) -> Left {
    let before = C::active(r).await;
    let max = u32::try_from(before.len()).expect("few") + 2;
    let (a, b) = (C::member(), C::member());
    assert_eq!(C::create(r, None, &a, max).await, WRITTEN);
    let key_b = request_key("op_cap", &format!("{name}-b"));
    let b_id = C::id(&b);
    assert_eq!(C::create(r, Some((&key_b, b_id)), &b, max).await, WRITTEN);

    // Full: a third writes nothing and leaves its key for a retry once there is room.
    let c = C::member();
    let (key_c, c_id) = (request_key("op_cap", &format!("{name}-c")), C::id(&c));
    let refused = C::create(r, Some((&key_c, c_id)), &c, max).await;
    assert_eq!(refused, CappedOutcome::Full);
    assert_eq!(ok(r.answered(&key_c).await, "answered"), None, "key unused");
    assert!(!C::active(r).await.iter().any(|id| id == c_id));
    // A retry of a create that stands gets its answer, at the cap and past a cap lowered since.
    for cap in [max, max - 1] {
        let retry = C::member();
        let again = C::create(r, Some((&key_b, C::id(&retry))), &retry, cap).await;
        let first = keyed(&key_b, &b_id).answer;
        assert_eq!(again, CappedOutcome::Keyed(KeyedOutcome::Replayed(first)));
    }
    let lowered = C::create(r, None, &C::member(), max - 1).await;
    assert_eq!(lowered, CappedOutcome::Full, "more than the cap active");

    // A removed member does not count: c's retry now has room.
    C::remove(r, C::id(&a)).await;
    assert_eq!(C::create(r, Some((&key_c, c_id)), &c, max).await, WRITTEN);
    assert_eq!(C::active(r).await.len(), before.len() + 2);
    Left {
        before,
        removed: C::id(&a).to_owned(),
        b: b_id.to_owned(),
        c: c_id.to_owned(),
    }
}

/// Creates at the same moment at the cap's edge, with room for [`ROOM`] once `left`'s two are
/// removed: [`ROOM`] are written, the others refused, none past the cap; then removed again.
async fn creates_at_once_take_the_room_left<C: CappedSet, S: LiveStores + 'static>(
    repo: Arc<S>,
    name: &str,
    left: Left,
) {
    let r = repo.as_ref();
    C::remove(r, &left.b).await;
    C::remove(r, &left.c).await;
    let max = u32::try_from(left.before.len()).expect("few") + ROOM;
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|i| {
            let repo = repo.clone();
            let member = C::member();
            // Half of them under a key of their own.
            let key = request_key("op_cap_race", &format!("{name}-{i}"));
            tokio::spawn(async move {
                let key = (i % 2 == 0).then_some((&key, C::id(&member)));
                let got = C::create(repo.as_ref(), key, &member, max).await;
                (C::id(&member).to_owned(), got)
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
    let now = C::active(r).await;
    assert_eq!(now.len(), left.before.len() + ROOM as usize, "{now:?}");
    for id in &written {
        assert!(now.contains(id), "{id} active");
        C::remove(r, id).await;
    }
    assert_eq!(C::active(r).await, left.before, "as found");
}

/// The cap on the active webhooks, deleted ones aside.
pub async fn active_webhooks_stay_within_their_cap<S: LiveStores + 'static>(repo: Arc<S>) {
    let left = holds_its_cap::<Webhooks>(repo.as_ref(), "webhook").await;
    creates_at_once_take_the_room_left::<Webhooks, S>(repo, "webhook", left).await;
}

/// The cap on the active API keys, revoked ones aside; and the listing holds every active key
/// and as many of the most recently revoked as asked.
pub async fn active_api_keys_stay_within_their_cap<S: LiveStores + 'static>(repo: Arc<S>) {
    let r = repo.as_ref();
    let left = holds_its_cap::<ApiKeys>(r, "api-key").await;
    let (before, a) = (&left.before, &left.removed);
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
    assert_eq!(gone, std::slice::from_ref(a), "the one revoked last");

    creates_at_once_take_the_room_left::<ApiKeys, S>(repo.clone(), "api-key", left).await;
}
