//! What distribution's test binaries share: a migrated SQLite repository, and distribution's
//! state over it.

use std::sync::Arc;
use std::time::Duration;

use liveops_core::{KeyStore, Keyring};
use liveops_distribution::{DistributionConfig, DistributionState};
use liveops_http::{OperatorAuth, SignatureCheck};
use liveops_sql::SqliteRepository;

/// `WEBHOOK_MAX` of the tests.
pub const MAX_WEBHOOKS: u32 = 3;

/// Distribution's state with every store `repo`: settled at once, webhooks to private addresses
/// allowed and at most [`MAX_WEBHOOKS`] active, a failed attempt retried after `backoff` and
/// dead-lettered after ten.
pub fn state(repo: &Arc<SqliteRepository>, backoff: Duration) -> DistributionState {
    let keyring = Keyring::single("distribution-test-secret-0123456789").expect("keyring");
    DistributionState {
        config: Arc::new(DistributionConfig {
            claim_window: Duration::from_secs(86_400),
            settle_tick: Duration::from_secs(1),
            settle_delay: Duration::ZERO,
            allow_private: true,
            webhook_timeout: Duration::from_secs(5),
            webhook_backoff: backoff,
            webhook_retry: Duration::ZERO,
            webhook_retention: Duration::from_secs(30 * 86_400),
            inbox_retention: Duration::from_secs(90 * 86_400),
            max_webhooks: MAX_WEBHOOKS,
        }),
        auth: OperatorAuth {
            sessions: repo.clone(),
        },
        signatures: SignatureCheck {
            keys: Arc::new(KeyStore::new(keyring)),
            tolerance_s: 300,
            accept_v1: true,
        },
        campaigns: repo.clone(),
        outcomes: repo.clone(),
        inbox: repo.clone(),
        webhooks: repo.clone(),
        deliveries: repo.clone(),
        requests: repo.clone(),
        retention: repo.clone(),
    }
}

/// A migrated SQLite repository in a directory of its own (kept while the directory lives).
pub async fn repo() -> (tempfile::TempDir, Arc<SqliteRepository>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = SqliteRepository::open_migrated(&dir.path().join("liveops.db"))
        .await
        .expect("migrated");
    (dir, Arc::new(repo))
}
