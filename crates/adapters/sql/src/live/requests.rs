//! The keys of operator writes (`operator_requests`): each key's row is written in its write's
//! transaction, so concurrent retries under one key write once.

use liveops_core::stores::{AuditEntry, Keyed, KeyedOutcome, RequestKey};
use liveops_core::PortResult;
use sqlx::query::Query;
use sqlx::Transaction;

use super::{sql_impl, with_tail};
use crate::dialect::Text;
use crate::repository::within;

/// A key's row: request hash, answer.
type RequestRow = (Text, Text);

const SELECT_REQUEST: &str =
    "SELECT request_hash, answer FROM operator_requests WHERE operator_id = ? AND idem_key = ?";

/// What a write under `key` meets in the row kept for it: another request's (`KeyReused`), or
/// the same request's answer (`Replayed`).
fn outcome(key: &RequestKey, (hash, answer): RequestRow) -> KeyedOutcome {
    if hash.0 == key.request_hash {
        KeyedOutcome::Replayed(answer.0)
    } else {
        KeyedOutcome::KeyReused
    }
}

sql_impl! {
    /// Takes `keyed`'s key in `tx` before its write: `None` if this write now holds it,
    /// otherwise what an earlier write under it left (then `tx` must be rolled back). The row
    /// comes first: a concurrent write under the key waits for this transaction, then finds it.
    pub(crate) async fn take_key(
        tx: &mut Transaction<'static, DB>,
        keyed: &Keyed,
        at_ms: i64,
    ) -> PortResult<Option<KeyedOutcome>> {
        let key = &keyed.key;
        let sql = with_tail::<DB>(
            "INSERT INTO operator_requests \
             (operator_id, idem_key, request_hash, answer, created_at) VALUES (?, ?, ?, ?, ?)",
            DB::keep_existing("operator_id, idem_key", "request_hash"),
        );
        let insert = sqlx::query(&sql)
            .bind(key.operator_id.as_str())
            .bind(key.key.as_str())
            .bind(key.request_hash.as_str())
            .bind(keyed.answer.as_str())
            .bind(at_ms);
        Self::run(tx, insert).await?;
        let sql = DB::placeholders(SELECT_REQUEST);
        let kept = sqlx::query_as(&sql)
            .bind(key.operator_id.as_str())
            .bind(key.key.as_str());
        let row: RequestRow = Self::row_on(tx, kept).await?;
        // The answer holds the ids this write minted: equal only if the row is this write's.
        if row.0 .0 == key.request_hash && row.1 .0 == keyed.answer {
            return Ok(None);
        }
        Ok(Some(outcome(key, row)))
    }

    /// Runs `query` and writes `audit` in one write transaction, once per key if `keyed`: an
    /// audited, keyed insert.
    pub(crate) async fn run_keyed<'q>(
        &self,
        keyed: Option<&Keyed>,
        query: Query<'q, DB, DB::Arguments<'q>>,
        audit: &AuditEntry,
    ) -> PortResult<KeyedOutcome> {
        within::<DB, _>(async {
            let (mut tx, _turn) = self.begin_write().await?;
            if let Some(keyed) = keyed {
                if let Some(before) = Self::take_key(&mut tx, keyed, audit.at_ms).await? {
                    return Self::rolled_back(tx, before).await;
                }
            }
            Self::run(&mut tx, query).await?;
            Self::commit_audited(tx, audit).await?;
            Ok(KeyedOutcome::Written)
        })
        .await
    }

    pub(crate) async fn answered(&self, key: &RequestKey) -> PortResult<Option<KeyedOutcome>> {
        let sql = DB::placeholders(SELECT_REQUEST);
        let query = sqlx::query_as(&sql)
            .bind(key.operator_id.as_str())
            .bind(key.key.as_str());
        self.optional_row(query, |row| Ok(outcome(key, row))).await
    }
}
