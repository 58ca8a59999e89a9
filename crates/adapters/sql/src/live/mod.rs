//! The live-event stores on SQL (operators, API keys, campaigns, participation, distribution),
//! written once for every backend like the rest of the repository: one file per service's
//! stores, all over the same [`crate::Dialect`].

mod campaigns;
mod claims;
mod distribution;
mod entrants;
mod groups;
mod operators;
mod participation;
mod requests;
mod retention;
mod sealed;

use liveops_core::stores::AuditEntry;
use liveops_core::{PortError, PortResult};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::query::{Query, QueryAs};
use sqlx::Transaction;

use crate::dialect::db_error;
use crate::repository::within;

pub use campaigns::DUE_CAMPAIGNS;
pub use distribution::inbox_page_statement;
pub(crate) use groups::WriteQueue;
pub use sealed::Resealed;

/// Opens an `impl SqlRepository<DB>` block with the bounds the generic SQL code needs (the same
/// as the repository's own), so each file states them once.
macro_rules! sql_impl {
    ($($body:tt)*) => {
        impl<DB> $crate::SqlRepository<DB>
        where
            DB: $crate::Dialect,
            for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
            for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
            usize: sqlx::ColumnIndex<DB::Row>,
            for<'q> i16: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
            for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
            for<'q> f64: sqlx::Encode<'q, DB> + sqlx::Decode<'q, DB> + sqlx::Type<DB>,
            for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
            for<'q> $crate::dialect::Text: sqlx::Decode<'q, DB> + sqlx::Type<DB>,
            DB::Connection: sqlx::migrate::Migrate,
        {
            $($body)*
        }
    };
}
pub(crate) use sql_impl;

/// `value` as JSON text for a column.
pub(crate) fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> PortResult<String> {
    serde_json::to_string(value).map_err(|e| PortError::Corrupt(format!("{what}: {e}")))
}

/// A JSON column read back.
pub(crate) fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> PortResult<T> {
    serde_json::from_str(text).map_err(|e| PortError::Corrupt(format!("{what}: {e}")))
}

/// The error of a keyed insert that left no row under its key: MySQL's upsert also absorbs a clash
/// on the unique `request_sig` (one signed request used for another campaign or message at the
/// same moment), answered as the other databases' unique violation is, a conflicting write to
/// retry (the handler then finds what the signature made).
pub(crate) fn request_sig_clash<DB: crate::Dialect>(what: &str) -> PortError {
    PortError::Unavailable(format!(
        "{}: conflicting write, retry: request_sig already {what}",
        DB::NAME
    ))
}

/// `sql` in the dialect's placeholders, followed by `tail` (a lock clause or an upsert's end).
pub(crate) fn with_tail<DB: crate::Dialect>(
    sql: &'static str,
    tail: impl std::fmt::Display,
) -> String {
    format!("{}{}", DB::placeholders(sql), tail)
}

/// The SQL that writes an audit entry; bind with [`bind_audit`].
pub(crate) const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (at_ms, actor, action, target, before_json, after_json) \
     VALUES (?, ?, ?, ?, ?, ?)";

/// Binds an audit entry to [`INSERT_AUDIT`].
pub(crate) fn bind_audit<'q, DB>(
    query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    audit: &'q AuditEntry,
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(audit.at_ms)
        .bind(audit.actor.as_str())
        .bind(audit.action.as_str())
        .bind(audit.target.as_str())
        .bind(audit.before.as_deref())
        .bind(audit.after.as_deref())
}

sql_impl! {
    /// The row `query` selects on the primary, if any, made a value by `of` (`call`: the store
    /// method, for [`within`]'s metrics).
    pub(crate) async fn optional_row<'q, R, T>(
        &self,
        call: &'static str,
        query: QueryAs<'q, DB, R, DB::Arguments<'q>>,
        of: impl FnOnce(R) -> PortResult<T>,
    ) -> PortResult<Option<T>>
    where
        R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    {
        within::<DB, _>(call, async {
            let row = query
                .fetch_optional(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            row.map(of).transpose()
        })
        .await
    }

    /// Every row `query` selects on the primary, each made a value by `of`: repository call
    /// `call` ([`within`]).
    pub(crate) async fn all_rows<'q, R, T>(
        &self,
        call: &'static str,
        query: QueryAs<'q, DB, R, DB::Arguments<'q>>,
        of: impl FnMut(R) -> PortResult<T>,
    ) -> PortResult<Vec<T>>
    where
        R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    {
        within::<DB, _>(call, self.rows(query, of)).await
    }

    /// [`Self::all_rows`] as one step of a call already timed and bounded.
    pub(crate) async fn rows<'q, R, T>(
        &self,
        query: QueryAs<'q, DB, R, DB::Arguments<'q>>,
        of: impl FnMut(R) -> PortResult<T>,
    ) -> PortResult<Vec<T>>
    where
        R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    {
        let rows = query.fetch_all(self.pool()).await.map_err(db_error::<DB>)?;
        rows.into_iter().map(of).collect()
    }

    /// The one row `query` selects on `conn` (a transaction's connection).
    pub(crate) async fn row_on<'q, R>(
        conn: &mut DB::Connection,
        query: QueryAs<'q, DB, R, DB::Arguments<'q>>,
    ) -> PortResult<R>
    where
        R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    {
        query.fetch_one(&mut *conn).await.map_err(db_error::<DB>)
    }

    /// The row `query` selects on `conn` (a transaction's connection), if any.
    pub(crate) async fn optional_on<'q, R>(
        conn: &mut DB::Connection,
        query: QueryAs<'q, DB, R, DB::Arguments<'q>>,
    ) -> PortResult<Option<R>>
    where
        R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    {
        query.fetch_optional(&mut *conn).await.map_err(db_error::<DB>)
    }

    /// Runs `query` on `conn` (a transaction's connection).
    pub(crate) async fn run<'q>(
        conn: &mut DB::Connection,
        query: Query<'q, DB, DB::Arguments<'q>>,
    ) -> PortResult<DB::QueryResult> {
        query.execute(&mut *conn).await.map_err(db_error::<DB>)
    }

    /// Runs `query` on the primary, within the call bound.
    pub(crate) async fn run_alone<'q>(
        &self,
        call: &'static str,
        query: Query<'q, DB, DB::Arguments<'q>>,
    ) -> PortResult<()> {
        within::<DB, _>(call, async {
            query
                .execute(self.pool())
                .await
                .map(drop)
                .map_err(db_error::<DB>)
        })
        .await
    }

    /// Whether `query`, run on `conn`, changed exactly one row (a conditional write that matched).
    pub(crate) async fn changed_one<'q>(
        conn: &mut DB::Connection,
        query: Query<'q, DB, DB::Arguments<'q>>,
    ) -> PortResult<bool> {
        Ok(DB::rows_affected(&Self::run(conn, query).await?) == 1)
    }

    /// Writes `audit` in `tx`, then commits it: every audited change ends this way.
    pub(crate) async fn commit_audited(
        mut tx: Transaction<'static, DB>,
        audit: &AuditEntry,
    ) -> PortResult<()> {
        Self::audited(&mut tx, audit).await?;
        tx.commit().await.map_err(db_error::<DB>)
    }

    /// Writes `audit` in `tx`, which the caller commits.
    pub(crate) async fn audited(
        tx: &mut Transaction<'static, DB>,
        audit: &AuditEntry,
    ) -> PortResult<()> {
        let sql = DB::placeholders(INSERT_AUDIT);
        Self::run(tx, bind_audit(sqlx::query(&sql), audit)).await?;
        Ok(())
    }

    /// Rolls `tx` back and answers `value`: how a write that finds nothing to do ends.
    pub(crate) async fn rolled_back<T>(tx: Transaction<'static, DB>, value: T) -> PortResult<T> {
        tx.rollback().await.map_err(db_error::<DB>)?;
        Ok(value)
    }
}
