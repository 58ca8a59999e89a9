//! Secrets at rest (ADR 0032), the same check on every backend: what the rows hold, what the
//! stores read back, sealing again after a rotation, a rollback to the clear, a value copied
//! into another row, and a key removed too early.

use std::sync::Arc;

use async_trait::async_trait;
use liveops_core::sealing::{Sealer, SealerCell};
use liveops_core::stores::{
    ApiKeyInfo, CampaignState, CappedOutcome, Keyed, KeyedOutcome, RequestKey, Webhook,
};
use liveops_sql::dialect::Text;
use liveops_sql::Repository;
use liveops_testkit::conformance::live::{audit, campaign};

/// Raw SQL on the database under test, beside the repository.
#[async_trait]
pub trait Raw: Sync {
    /// The value and key columns of the one row `sql` selects.
    async fn stored(&self, sql: &str) -> (String, Option<String>);
    /// Runs `sql`.
    async fn exec(&self, sql: &str);
}

#[async_trait]
impl<DB: sqlx::Database> Raw for sqlx::Pool<DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
    for<'q> Text: sqlx::Decode<'q, DB> + sqlx::Type<DB>,
{
    async fn stored(&self, sql: &str) -> (String, Option<String>) {
        let (value, key): (Text, Option<Text>) = sqlx::query_as(sql).fetch_one(self).await.unwrap();
        (value.0, key.map(|k| k.0))
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(sql).execute(self).await.unwrap();
    }
}

const K1: &str = "k1=0123456789abcdef0123456789abcdef";
const K2: &str = "k2=fedcba9876543210fedcba9876543210";
const K3: &str = "k3=zyxwvutsrqponmlkjihgfedcba012345";

/// A sealer over `entries` (`kid=material`), the first sealing.
fn sealer(entries: &[&str]) -> Sealer {
    let keys: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|e| {
            let (id, m) = e.split_once('=').unwrap();
            (id, m.as_bytes())
        })
        .collect();
    Sealer::new(keys).unwrap()
}

/// A cell holding [`sealer`]`(entries)`, as a process's settings give it.
fn cell(entries: &[&str]) -> Arc<SealerCell> {
    Arc::new(SealerCell::new(sealer(entries)))
}

/// One secret of each kind, written through the stores.
struct Written {
    key_id: String,
    hook: String,
    campaign: String,
    request: RequestKey,
}

const KEY_SECRET: &str = "api-key-secret-0123456789abcdef";
const HOOK_SECRET: &str = "whsec_0123456789abcdef";
const SEED: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

async fn write(repo: &dyn Repository, tag: &str) -> Written {
    let info = ApiKeyInfo {
        key_id: format!("ak_{tag}"),
        name: tag.into(),
        created_by: "admin@example.com".into(),
        created_at_ms: liveops_core::now_ms(),
        revoked_at_ms: None,
    };
    let request = RequestKey {
        operator_id: "op_sealed".into(),
        key: format!("idem_{tag}"),
        route: "POST /api-keys".into(),
        request_hash: format!("hash_{tag}"),
    };
    let keyed = Keyed {
        key: request.clone(),
        answer: format!(
            "{{\"keyId\":\"{}\",\"secret\":\"{KEY_SECRET}\"}}",
            info.key_id
        ),
    };
    let entry = audit("api_key.create", &info.key_id);
    let made = repo.create_api_key(Some(&keyed), &info, KEY_SECRET, &entry, 1000);
    let written = CappedOutcome::Keyed(KeyedOutcome::Written);
    assert_eq!(made.await.unwrap(), written);
    let hook = Webhook {
        id: format!("whk_{tag}"),
        url: "https://hooks.example.com/liveops".into(),
        events: vec!["campaign.live".into()],
        secret: HOOK_SECRET.into(),
        created_by: "ops@example.com".into(),
        created_at_ms: liveops_core::now_ms(),
    };
    let entry = audit("webhook.create", &hook.id);
    let made = repo.create_webhook(None, &hook, &entry, 1000);
    assert_eq!(made.await.unwrap(), written);
    let mut c = campaign(tag);
    c.state = CampaignState::Scheduled;
    c.seed = Some(SEED.into());
    let entry = audit("campaign.create", &c.id);
    let made = repo.create_campaign(None, &c, &entry).await.unwrap();
    assert_eq!(made, KeyedOutcome::Written);
    Written {
        key_id: info.key_id,
        hook: hook.id,
        campaign: c.id,
        request,
    }
}

impl Written {
    /// What the rows hold: `(value, key)` of the API key, the webhook, the seed, the answer.
    async fn stored(&self, raw: &dyn Raw) -> Vec<(String, Option<String>)> {
        let rows = [
            (
                "secret, secret_key FROM api_keys WHERE key_id",
                &self.key_id,
            ),
            ("secret, secret_key FROM webhooks WHERE id", &self.hook),
            ("seed, seed_key FROM campaigns WHERE id", &self.campaign),
            (
                "answer, answer_key FROM operator_requests WHERE idem_key",
                &self.request.key,
            ),
        ];
        let mut held = Vec::new();
        for (select, id) in rows {
            held.push(raw.stored(&format!("SELECT {select} = '{id}'")).await);
        }
        held
    }

    /// Asserts every row holds its value sealed with `key`, or in the clear for `None`.
    async fn held_as(&self, raw: &dyn Raw, key: Option<&str>) {
        for (value, k) in self.stored(raw).await {
            assert_eq!(k.as_deref(), key, "{value}");
            let clear = [KEY_SECRET, HOOK_SECRET, SEED]
                .iter()
                .any(|s| value == *s || value.contains(KEY_SECRET));
            assert_eq!(clear, key.is_none(), "{value} as {key:?}");
        }
    }

    /// Asserts `repo` reads every secret back as written.
    async fn reads_back(&self, repo: &dyn Repository) {
        let active = repo.active_api_keys().await.unwrap();
        let secret = active
            .iter()
            .find(|(k, _)| *k == self.key_id)
            .map(|(_, s)| s);
        assert_eq!(secret.map(Vec::as_slice), Some(KEY_SECRET.as_bytes()));
        let hooks = repo.webhooks().await.unwrap();
        let hook = hooks.iter().find(|h| h.id == self.hook).unwrap();
        assert_eq!(hook.secret, HOOK_SECRET);
        let c = repo.campaign(&self.campaign).await.unwrap().unwrap();
        assert_eq!(c.seed.as_deref(), Some(SEED));
        let Some(KeyedOutcome::Replayed(answer)) = repo.answered(&self.request).await.unwrap()
        else {
            panic!("no answer under {}", self.request.key);
        };
        assert!(answer.contains(KEY_SECRET), "{answer}");
    }
}

/// Seals again until nothing is stale; the number written.
async fn reseal_all(repo: &dyn Repository) -> u64 {
    let report = repo.reseal(1000).await.unwrap();
    assert_eq!(report.len(), 4, "{report:?}");
    assert!(report.iter().all(|t| t.stale == 0), "{report:?}");
    report.iter().map(|t| t.resealed).sum()
}

/// The database at `url`, migrated, its secrets sealed by `sealer`.
async fn open_at(url: &str, sealer: Arc<SealerCell>) -> Arc<dyn Repository> {
    let repo = liveops_sql::connect_sealed(url, sealer).await.unwrap();
    repo.migrate().await.unwrap();
    repo
}

/// The whole check on the database at `url` (migrated), whose rows `raw` reads.
pub async fn secrets_are_sealed_at_rest(url: &str, raw: &dyn Raw) {
    let open = |sealer| open_at(url, sealer);
    // Written before sealing: in the clear, and read as they are by a process with keys.
    let clear = open(Arc::default()).await;
    let before = write(clear.as_ref(), "before").await;
    before.held_as(raw, None).await;
    assert!(
        clear.reseal(1000).await.unwrap().is_empty(),
        "no keys, no work"
    );
    let k1_keys = cell(&[K1]);
    let k1 = open(k1_keys.clone()).await;
    before.reads_back(k1.as_ref()).await;

    // Written with a key: sealed, read back whole.
    let after = write(k1.as_ref(), "after").await;
    after.held_as(raw, Some("k1")).await;
    after.reads_back(k1.as_ref()).await;

    // The upkeep seals what was in the clear, once.
    assert_eq!(reseal_all(k1.as_ref()).await, 4);
    before.held_as(raw, Some("k1")).await;
    before.reads_back(k1.as_ref()).await;
    assert_eq!(reseal_all(k1.as_ref()).await, 0);

    // A sealed value copied into another row does not open there: that API key signs nothing,
    // the other still does, and the campaign read is refused rather than drawn with it.
    let (theirs, _) = after.stored(raw).await[0].clone();
    raw.exec(&format!(
        "UPDATE api_keys SET secret = '{theirs}' WHERE key_id = '{}'",
        before.key_id
    ))
    .await;
    let active = k1.active_api_keys().await.unwrap();
    assert!(
        !active.iter().any(|(k, _)| *k == before.key_id),
        "{active:?}"
    );
    assert!(active.iter().any(|(k, _)| *k == after.key_id));
    let (their_seed, _) = after.stored(raw).await[2].clone();
    raw.exec(&format!(
        "UPDATE campaigns SET seed = '{their_seed}' WHERE id = '{}'",
        before.campaign
    ))
    .await;
    let read = k1.campaign(&before.campaign).await.unwrap().unwrap();
    assert_eq!(
        read.seed, None,
        "a seed that does not open is never drawn with"
    );
    raw.exec(&format!(
        "UPDATE api_keys SET secret = '{KEY_SECRET}', secret_key = NULL WHERE key_id = '{}'",
        before.key_id
    ))
    .await;
    raw.exec(&format!(
        "UPDATE campaigns SET seed = '{SEED}', seed_key = NULL WHERE id = '{}'",
        before.campaign
    ))
    .await;
    assert_eq!(reseal_all(k1.as_ref()).await, 2);

    // Rotation, in the running repository as its keys file changes: the new key first, the
    // old one after it; once sealed again, the old one goes.
    k1_keys.replace(sealer(&[K2, K1]));
    let rotated = write(k1.as_ref(), "rotated").await;
    rotated.held_as(raw, Some("k2")).await;
    assert_eq!(reseal_all(k1.as_ref()).await, 8);
    k1_keys.replace(sealer(&[K2]));
    for w in [&before, &after, &rotated] {
        w.held_as(raw, Some("k2")).await;
        w.reads_back(k1.as_ref()).await;
    }
    let k2 = k1;

    // A key removed too early: what it sealed is passed over, counted, never read as clear.
    let k3 = open(cell(&[K3])).await;
    let active = k3.active_api_keys().await.unwrap();
    assert!(!active
        .iter()
        .any(|(k, _)| *k == before.key_id || *k == after.key_id));
    // Its campaign is still listed, due and cancelled (its seed read as none, kept as stored).
    let c = k3.campaign(&after.campaign).await.unwrap().unwrap();
    assert_eq!(c.seed, None);
    let due = k3.due(liveops_core::now_ms(), 10).await.unwrap();
    assert!(due.iter().any(|d| d.id == after.campaign), "{due:?}");
    let mut cancelled = c.clone();
    cancelled.state = CampaignState::Cancelled;
    cancelled.updated_at_ms = c.updated_at_ms + 1;
    let entry = audit("campaign.cancel", &c.id);
    assert!(k3
        .update_campaign(&c, &cancelled, &entry, None)
        .await
        .unwrap());
    let kept = k2.campaign(&after.campaign).await.unwrap().unwrap();
    assert_eq!(kept.seed.as_deref(), Some(SEED), "the stored seed stays");
    let report = k3.reseal(1000).await.unwrap();
    assert!(
        report.iter().all(|t| t.resealed == 0 && t.unreadable == 3),
        "{report:?}"
    );
    assert!(report.iter().all(|t| t.stale == 3), "{report:?}");

    // Before a rollback: opening only, the upkeep writes everything back in the clear, which a
    // process without keys (the release before) reads.
    let off = open(Arc::new(SealerCell::new(sealer(&[K2]).opening_only()))).await;
    let fresh = write(off.as_ref(), "off").await;
    fresh.held_as(raw, None).await;
    assert_eq!(reseal_all(off.as_ref()).await, 12);
    for w in [&before, &after, &rotated, &fresh] {
        w.held_as(raw, None).await;
        w.reads_back(clear.as_ref()).await;
    }
}
