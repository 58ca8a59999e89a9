//! The live-event stores on SQL (operators, API keys, campaigns, participation, distribution),
//! written once for every backend like the rest of the repository: one file per service's
//! stores, all over the same [`crate::Dialect`].

mod campaigns;
mod distribution;
mod operators;
mod participation;

use liveops_core::stores::AuditEntry;
use liveops_core::{PortError, PortResult};
use serde::de::DeserializeOwned;
use serde::Serialize;

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
