//! Durable stores: the SQL adapter on the backend `DB_URL`'s scheme names, migrated on open, with
//! the read replica `DB_READ_URL` if one is set.
//!
//! Two adapters share one repository (opened once, by whichever is used first): `repository`
//! serves every store and counts in `/readyz`; `api_keys` serves only the active-key read every
//! signature-checking process makes each second, and does not count (a gateway keeps verifying
//! with the keys it last read while the database is away, instead of leaving the load balancer).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use liveops_core::sealing::SealerCell;
use liveops_core::stores::{
    ActiveKeys, ApiKeyStore, AuditLog, CampaignStore, DeliveryLog, DistributionRetention,
    EntryStore, FairnessStore, InboxStore, OperatorStore, OutcomeStore, PlayerXp, ProcessedEvents,
    ProgressStore, PurgeRound, RequestKeys, ScoreStore, Sessions, SnapshotStore, WebhookStore,
};
use liveops_core::time::cutoff;
use liveops_core::{Health, PortError, PortResult};
use liveops_module::ports::Opened;
use liveops_module::tick::{every_tick_after, every_tick_or_woken};
use liveops_module::{Adapter, Ports, Task};
use liveops_sql::Repository;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::named;
use crate::config::reads::ReadReplica;
use crate::config::retention::Retention;

/// The repository, connected and migrated once for every adapter over it.
type Shared = Arc<OnceCell<Arc<dyn Repository>>>;

async fn open(
    cell: Shared,
    url: String,
    reads: Option<ReadReplica>,
    sealer: Arc<SealerCell>,
) -> Result<Arc<dyn Repository>, PortError> {
    cell.get_or_try_init(|| async {
        let repo = match &reads {
            None => liveops_sql::connect_sealed(&url, sealer.clone()).await,
            Some(r) => {
                let (read, lag) = (&r.url, r.max_lag);
                liveops_sql::connect_repository_with_replica(&url, read, lag, sealer.clone()).await
            }
        }
        .map_err(named("DB_URL"))?;
        repo.migrate().await.map_err(named("DB_URL"))?;
        if !sealer.load().opens() {
            tracing::warn!(
                "SECRETS_KEYS_FILE is unset: API keys' and webhooks' secrets, campaigns' seeds \
                 and keyed answers are stored in the clear"
            );
        }
        Ok(repo)
    })
    .await
    .cloned()
}

/// How long after start-up the first purge of per-event rows runs (then every
/// `EVENT_PURGE_EVERY`, if that is sooner).
const FIRST_PURGE: Duration = Duration::from_secs(60);

/// Purges per-event rows older than `EVENT_RETENTION` and fairness flags older than
/// `FLAG_RETENTION` every `EVENT_PURGE_EVERY` until `stop` (`events_purged_total`); a failed
/// purge is counted and logged as every background round is, and tried again at the next (the
/// flags' purge runs even when the events' failed). The processes on one database walk each
/// table once an `EVENT_PURGE_EVERY` between them, one at a time: a run finding another walking,
/// or the table walked less than that before, skips it, as 0 rows
/// (`retention_purges_skipped_total{table, reason}`).
async fn purge_old_events(repo: &dyn Repository, retention: Retention, stop: CancellationToken) {
    let first = FIRST_PURGE.min(retention.every);
    let round = || async {
        let now = liveops_core::now_ms();
        let round = PurgeRound {
            at_ms: now,
            every: retention.every,
        };
        let events = repo.purge_before(cutoff(now, retention.keep), round).await;
        if let Ok(rows) = events {
            metrics::counter!("events_purged_total").increment(rows);
            tracing::info!(
                rows,
                "purged processed event ids, verdicts and operator keys past retention, and expired sessions"
            );
        }
        let flags = repo.purge_flags(cutoff(now, retention.flags), round).await;
        if let Ok(rows) = flags {
            metrics::counter!("events_purged_total").increment(rows);
            tracing::info!(rows, "purged fairness flags past FLAG_RETENTION");
        }
        events.and(flags).map(drop)
    };
    let failing = "purging rows past their retention";
    let _ = every_tick_after(first, retention.every, stop, failing, round).await;
}

/// How long after start-up secrets are first sealed again, then how often (ADR 0032).
const RESEAL_FIRST: Duration = Duration::from_secs(10);
/// How often secrets not as the settings want them are written again.
const RESEAL_EVERY: Duration = Duration::from_secs(60);
/// Most secrets written again per table and round.
const RESEAL_MOST: u64 = 1000;

/// Writes again, every [`RESEAL_EVERY`] and as soon as the keys change, the secrets in the
/// clear or under an older key (with `SECRETS_SEAL=false`, the sealed ones, in the clear):
/// `secrets_resealed_total{table}`, `secrets_stale{table}`.
fn reseal(repo: Arc<dyn Repository>, keys: Arc<SealerCell>) -> Task {
    Task::new("secrets at rest", move |stop| async move {
        let round = || async {
            for t in repo.reseal(RESEAL_MOST).await? {
                if t.resealed > 0 || t.unreadable > 0 {
                    tracing::info!(
                        table = t.table,
                        resealed = t.resealed,
                        unreadable = t.unreadable,
                        stale = t.stale,
                        "secrets written again as SECRETS_KEYS_FILE wants them"
                    );
                }
            }
            Ok(())
        };
        let failing = "sealing secrets again";
        let changed = || keys.replaced();
        let _ =
            every_tick_or_woken(RESEAL_FIRST, RESEAL_EVERY, changed, stop, failing, round).await;
        Ok(())
    })
}

/// Health that always answers: the `api_keys` adapter's, which must not take a process out of
/// the load balancer (its staleness is the `api_keys_sync_age_seconds` gauge).
struct Advisory;

#[async_trait]
impl Health for Advisory {
    async fn healthcheck(&self) -> PortResult<()> {
        Ok(())
    }
}

/// A task that runs `work` until it ends or the process stops.
fn until_stopped(name: &'static str, work: impl Future<Output = ()> + Send + 'static) -> Task {
    Task::new(name, move |stop| async move {
        tokio::select! {
            () = work => {}
            () = stop.cancelled() => {}
        }
        Ok(())
    })
}

/// Registers the repository for every store trait.
pub(super) fn provide(ports: &mut Ports, s: &crate::config::Settings) {
    let cell: Shared = Arc::default();
    let (c, url, reads, retention) = (cell.clone(), s.db_url.clone(), s.reads.clone(), s.retention);
    let sealer = s.sealer.clone();
    let repo: Arc<Adapter<dyn Repository>> = Adapter::new_dyn(
        "repository",
        |a| a,
        move || {
            let (c, url, reads, sealer) = (c.clone(), url.clone(), reads.clone(), sealer.clone());
            async move {
                let opens = sealer.load().opens();
                let repo = open(c, url, reads, sealer.clone()).await?;
                // The replica is measured while the process runs; reads use it once it is.
                let upkeep = repo
                    .replica_watch()
                    .map(|w| until_stopped("read-replica", w));
                let pools = until_stopped("database pools", repo.pool_watch());
                let purged = repo.clone();
                let retention = Task::new("event retention", move |stop| async move {
                    purge_old_events(purged.as_ref(), retention, stop).await;
                    Ok(())
                });
                let resealing = opens.then(|| reseal(repo.clone(), sealer));
                let tasks = [Some(pools), Some(retention), resealing];
                Ok(Opened {
                    adapter: repo,
                    upkeep: upkeep
                        .into_iter()
                        .chain(tasks.into_iter().flatten())
                        .collect(),
                })
            }
        },
    );
    ports.provide::<_, dyn ProgressStore>(&repo, |a| a);
    ports.provide::<_, dyn ScoreStore>(&repo, |a| a);
    ports.provide::<_, dyn SnapshotStore>(&repo, |a| a);
    ports.provide::<_, dyn FairnessStore>(&repo, |a| a);
    ports.provide::<_, dyn ProcessedEvents>(&repo, |a| a);
    ports.provide::<_, dyn OperatorStore>(&repo, |a| a);
    ports.provide::<_, dyn Sessions>(&repo, |a| a);
    ports.provide::<_, dyn AuditLog>(&repo, |a| a);
    ports.provide::<_, dyn ApiKeyStore>(&repo, |a| a);
    ports.provide::<_, dyn CampaignStore>(&repo, |a| a);
    ports.provide::<_, dyn EntryStore>(&repo, |a| a);
    ports.provide::<_, dyn OutcomeStore>(&repo, |a| a);
    ports.provide::<_, dyn PlayerXp>(&repo, |a| a);
    ports.provide::<_, dyn InboxStore>(&repo, |a| a);
    ports.provide::<_, dyn WebhookStore>(&repo, |a| a);
    ports.provide::<_, dyn DeliveryLog>(&repo, |a| a);
    ports.provide::<_, dyn DistributionRetention>(&repo, |a| a);
    ports.provide::<_, dyn RequestKeys>(&repo, |a| a);
    ports.provide::<_, dyn Repository>(&repo, |a| a);

    let (url, reads, sealer) = (s.db_url.clone(), s.reads.clone(), s.sealer.clone());
    let keys: Arc<Adapter<dyn Repository>> = Adapter::new_dyn(
        "api_keys",
        |_| Arc::new(Advisory),
        move || {
            let (c, url, reads) = (cell.clone(), url.clone(), reads.clone());
            let sealer = sealer.clone();
            async move { open(c, url, reads, sealer).await.map(Opened::plain) }
        },
    );
    ports.provide::<_, dyn ActiveKeys>(&keys, |a| a);
}
