//! The SQL adapter (sqlx): every store trait (progress, scores, fairness, processed event ids,
//! and the live-event stores: operators, API keys, campaigns, entries, outcomes, inbox, webhooks)
//! on SQLite, PostgreSQL (feature `postgres`) and MySQL/MariaDB (feature `mysql`).
//!
//! The repository's logic is written once ([`repository`]) over a [`Dialect`] per backend
//! (SQLite always, PostgreSQL and MySQL behind their features); each backend has its own
//! numbered migrations in `migrations/<backend>/`, applied by [`SqlRepository::migrate`].

pub mod dialect;
mod live;
mod live_stores;
#[cfg(feature = "mysql")]
pub mod migrate_mysql;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod replica;
pub mod repository;
mod sqlite;
mod statement;
mod stores;

use std::sync::Arc;

use async_trait::async_trait;
use liveops_core::sealing::SealerCell;
use liveops_core::stores::{
    FairnessStore, LiveEventStores, ProcessedEvents, ProgressStore, PurgeRound, ScoreStore,
    SnapshotStore,
};
use liveops_core::{Health, PortError, PortResult};

pub use dialect::Dialect;
pub use live::{inbox_page_statement, Resealed, DUE_CAMPAIGNS};
#[cfg(feature = "mysql")]
pub use mysql::MySqlRepository;
#[cfg(feature = "postgres")]
pub use postgres::PgRepository;
pub use repository::{Purge, SqlRepository};
pub use sqlite::SqliteRepository;

/// A repository on any backend: every store trait this adapter serves, plus its migrations.
#[async_trait]
pub trait Repository:
    ProgressStore
    + ScoreStore
    + SnapshotStore
    + FairnessStore
    + ProcessedEvents
    + LiveEventStores
    + Health
{
    /// Applies pending schema migrations.
    async fn migrate(&self) -> PortResult<()>;
    /// The read replica's probe loop (`DB_READ_URL`), to run while the process runs; `None`
    /// without a replica.
    fn replica_watch(&self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        None
    }
    /// The loop that reports the connection pools' use as gauges, to run while the process runs.
    fn pool_watch(&self) -> futures_util::future::BoxFuture<'static, ()>;
    /// Deletes the per-event rows (processed event ids, fairness verdicts) and the operators'
    /// request keys written before `cutoff_ms` (unix milliseconds), a bounded step at a time,
    /// and the operators' sessions expired by now; returns how many went. Like every retention
    /// purge here, it walks in one process of a deployment at a time, at most about once per
    /// `round`'s period between them: a process that finds another walking, or the last walk
    /// within the period, skips the run and answers 0 (`SqlRepository::purge_alone`).
    async fn purge_before(&self, cutoff_ms: i64, round: PurgeRound) -> PortResult<u64>;
    /// Writes again up to `most` secrets per table that are not as the sealer wants them (in
    /// the clear or under an older key; sealed while sealing is off); see
    /// `SqlRepository::reseal`. Nothing to do without keys.
    async fn reseal(&self, most: u64) -> PortResult<Vec<Resealed>>;
}

/// The backend a database URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:` URLs.
    Sqlite,
    /// `postgres://` and `postgresql://` URLs.
    Postgres,
    /// `mysql://` and `mariadb://` URLs.
    MySql,
}

impl Backend {
    /// The backend's name: its canonical URL scheme and the cargo feature that builds it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::MySql => "mysql",
        }
    }

    /// The backend `url`'s scheme names, or an error naming the scheme. Says nothing of whether
    /// this build includes it (see [`connect_repository`]).
    pub fn of_url(url: &str) -> Result<Self, PortError> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::MySql),
            _ => Err(PortError::Unavailable(format!(
                "unsupported database URL scheme {scheme:?}: \
                 use sqlite://, postgres:// (or postgresql://) or mysql:// (or mariadb://)"
            ))),
        }
    }
}

/// Opens the repository named by `url`'s scheme: sqlite:// (always), postgres:// or postgresql://
/// (feature "postgres"), mysql:// or mariadb:// (feature "mysql"); an error naming the scheme otherwise.
///
/// Connects (within the pool's acquire timeout, about 2 s for servers) but does not migrate:
/// call [`Repository::migrate`] next. The URL, which may hold a password, is never logged nor
/// put in errors.
pub async fn connect_repository(url: &str) -> Result<Arc<dyn Repository>, PortError> {
    connect_sealed(url, Arc::default()).await
}

/// Like [`connect_repository`], with the secrets rows hold sealed and opened by the sealer
/// `sealer` holds at each call (ADR 0032).
pub async fn connect_sealed(
    url: &str,
    sealer: Arc<SealerCell>,
) -> Result<Arc<dyn Repository>, PortError> {
    match Backend::of_url(url)? {
        Backend::Sqlite => Ok(Arc::new(
            SqlRepository::connect(url).await?.with_sealer(sealer),
        )),
        #[cfg(feature = "postgres")]
        Backend::Postgres => Ok(Arc::new(PgRepository::open(url).await?.with_sealer(sealer))),
        #[cfg(feature = "mysql")]
        Backend::MySql => Ok(Arc::new(
            MySqlRepository::open(url).await?.with_sealer(sealer),
        )),
        #[allow(unreachable_patterns)] // with every backend built in
        other => Err(PortError::Unavailable(format!(
            "{name}:// URLs need liveops-sql built with feature \"{name}\"",
            name = other.name()
        ))),
    }
}

/// Like [`connect_repository`], with the reads that may be a little stale sent to the read
/// replica at `read_url` (the same backend) while it is reachable and at most `max_lag` behind.
/// Run [`Repository::replica_watch`]'s loop for the replica to be measured and used.
// `max_lag` is used only by the server databases' arms; a build without them still takes it.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub async fn connect_repository_with_replica(
    url: &str,
    read_url: &str,
    max_lag: std::time::Duration,
    sealer: Arc<SealerCell>,
) -> Result<Arc<dyn Repository>, PortError> {
    let (primary, replica) = (Backend::of_url(url)?, Backend::of_url(read_url)?);
    if primary != replica {
        return Err(PortError::Unavailable(format!(
            "the read replica is {} but the database is {}",
            replica.name(),
            primary.name()
        )));
    }
    match primary {
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let replica = PgRepository::replica_pool(read_url)?;
            let repo = PgRepository::open(url).await?.with_sealer(sealer);
            Ok(Arc::new(repo.with_replica(replica, max_lag)))
        }
        #[cfg(feature = "mysql")]
        Backend::MySql => {
            let replica = MySqlRepository::replica_pool(read_url)?;
            let repo = MySqlRepository::open(url).await?.with_sealer(sealer);
            Ok(Arc::new(repo.with_replica(replica, max_lag)))
        }
        #[allow(unreachable_patterns)] // with every backend built in
        other => Err(PortError::Unavailable(format!(
            "read replicas need a server database (postgres:// or mysql://), not {}",
            other.name()
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn schemes_name_their_backend() {
        for (url, backend) in [
            ("sqlite://data/liveops.db", Backend::Sqlite),
            ("sqlite::memory:", Backend::Sqlite),
            ("postgres://u:p@h/db", Backend::Postgres),
            ("postgresql://h/db", Backend::Postgres),
            ("mysql://u:p@h:3306/db", Backend::MySql),
            ("MariaDB://h/db", Backend::MySql),
        ] {
            assert_eq!(Backend::of_url(url).unwrap(), backend, "{url}");
        }
        for url in ["oracle://h/db", "/var/lib/liveops.db", ""] {
            assert!(Backend::of_url(url).is_err(), "{url}");
        }
    }

    #[tokio::test]
    async fn connect_repository_opens_sqlite_and_names_unknown_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let repo = connect_repository(&url).await.unwrap();
        repo.migrate().await.unwrap();
        repo.healthcheck().await.unwrap();
        assert!(dir.path().join("r.db").exists());

        let err = connect_repository("oracle://scott:tiger@h/db")
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("\"oracle\""), "{err}");
        assert!(!err.to_string().contains("tiger"), "{err}");
    }

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn postgres_urls_need_the_feature() {
        let err = connect_repository("postgresql://h/db").await.err().unwrap();
        assert!(err.to_string().contains("feature \"postgres\""), "{err}");
    }

    #[cfg(not(feature = "mysql"))]
    #[tokio::test]
    async fn mysql_urls_need_the_feature() {
        let err = connect_repository("mariadb://h/db").await.err().unwrap();
        assert!(err.to_string().contains("feature \"mysql\""), "{err}");
    }
}
