//! The keys of operator writes (`operator_requests`): each key's row is written in its write's
//! transaction, so concurrent retries under one key write once.

use liveops_core::stores::{AuditEntry, CappedOutcome, Keyed, KeyedOutcome, RequestKey};
use liveops_core::{PortError, PortResult};
use sqlx::query::{Query, QueryAs};
use sqlx::Transaction;

use liveops_core::sealing::Sealer;

use super::sealed::{answer_row, opened, sealed};
use super::{sql_impl, with_tail};
use crate::dialect::Text;
use crate::repository::within;

/// A key's row: request hash, answer as stored, the key that sealed it.
type RequestRow = (Text, Text, Option<Text>);

const SELECT_REQUEST: &str = "SELECT request_hash, answer, answer_key FROM operator_requests \
     WHERE operator_id = ? AND idem_key = ?";

/// The route whose keys `inbox_sends` kept before migration 0007.
const INBOX_SEND: &str = "POST /inbox/messages";

/// The request hash migration 0007 gave the keys it carried over from `inbox_sends` (their
/// digests were taken another way): any send under such a key is its retry.
const LEGACY_INBOX_SEND: &str = "legacy:POST /inbox/messages";

/// What a write under `key` meets in the row kept for it: the same request's answer
/// (`Replayed`; for a key carried over from `inbox_sends`, any send's), or another request's
/// (`KeyReused`).
fn outcome(key: &RequestKey, hash: &str, answer: String) -> KeyedOutcome {
    let legacy = hash == LEGACY_INBOX_SEND && key.route == INBOX_SEND;
    if hash == key.request_hash || legacy {
        KeyedOutcome::Replayed(answer)
    } else {
        KeyedOutcome::KeyReused
    }
}

/// The answer a key's row holds, opened (a new API key's answer holds its secret).
fn answer_of(
    sealer: &Sealer,
    key: &RequestKey,
    (hash, answer, sealed_by): RequestRow,
) -> PortResult<(Text, String)> {
    let row = answer_row(&key.operator_id, &key.key);
    Ok((hash, opened(sealer, &row, answer, sealed_by)?))
}

/// A set of rows whose size a setting caps: the name of its row in `cap_locks`, how its
/// members are counted, and the cap.
pub(crate) struct Cap {
    /// Its lock row's name (`webhooks`).
    pub(crate) name: &'static str,
    /// `SELECT COUNT(*)` of its members (the active rows).
    pub(crate) count: &'static str,
    /// Most members.
    pub(crate) max: u32,
}

sql_impl! {
    /// Takes `keyed`'s key in `tx` before its write: `None` if this write now holds it,
    /// otherwise what an earlier write under it left (then `tx` must be rolled back). The row
    /// comes first: a concurrent write under the key waits for this transaction, then finds it.
    pub(crate) async fn take_key(
        tx: &mut Transaction<'static, DB>,
        sealer: &Sealer,
        keyed: &Keyed,
        at_ms: i64,
    ) -> PortResult<Option<KeyedOutcome>> {
        let key = &keyed.key;
        let insert_sql = with_tail::<DB>(
            "INSERT INTO operator_requests \
             (operator_id, idem_key, request_hash, answer, answer_key, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
            DB::keep_existing("operator_id, idem_key", "request_hash"),
        );
        let answer = sealed(sealer, &answer_row(&key.operator_id, &key.key), &keyed.answer)?;
        let select_sql = DB::placeholders(SELECT_REQUEST);
        let insert = || {
            sqlx::query(&insert_sql)
                .bind(key.operator_id.as_str())
                .bind(key.key.as_str())
                .bind(key.request_hash.as_str())
                .bind(answer.text.as_str())
                .bind(answer.key_id.as_deref())
                .bind(at_ms)
        };
        let read = || {
            sqlx::query_as(&select_sql)
                .bind(key.operator_id.as_str())
                .bind(key.key.as_str())
        };
        let row: RequestRow = Self::keep_then_read(tx, "operator_requests", insert, read).await?;
        let (hash, stored) = answer_of(sealer, key, row)?;
        // The answer holds the ids this write minted: equal only if the row is this write's.
        if hash.0 == key.request_hash && stored == keyed.answer {
            return Ok(None);
        }
        Ok(Some(outcome(key, &hash.0, stored)))
    }

    /// Runs `insert` (which keeps a row already under its key) and then `read` of the key's row,
    /// in `tx`: this insert's row or an earlier one's. Twice at most: a row kept but purged (past
    /// the retention) between the two is gone, and the insert then takes the key.
    pub(crate) async fn keep_then_read<'q, R>(
        tx: &mut Transaction<'static, DB>,
        table: &str,
        insert: impl Fn() -> Query<'q, DB, DB::Arguments<'q>>,
        read: impl Fn() -> QueryAs<'q, DB, R, DB::Arguments<'q>>,
    ) -> PortResult<R>
    where
        R: for<'r> sqlx::FromRow<'r, DB::Row> + Send + Unpin,
    {
        for _ in 0..2 {
            Self::run(tx, insert()).await?;
            if let Some(row) = Self::optional_on(tx, read()).await? {
                return Ok(row);
            }
        }
        Err(PortError::Unavailable(format!(
            "{}: conflicting write, retry: the key's row in {table} came and went",
            DB::NAME
        )))
    }

    /// Runs `query` and writes `audit` in one write transaction, once per key if `keyed`: an
    /// audited, keyed insert (`call`: the store method, for [`within`]'s metrics).
    pub(crate) async fn run_keyed<'q>(
        &self,
        call: &'static str,
        keyed: Option<&Keyed>,
        query: Query<'q, DB, DB::Arguments<'q>>,
        audit: &AuditEntry,
    ) -> PortResult<KeyedOutcome> {
        within::<DB, _>(call, async {
            let (mut tx, _turn) = self.begin_write().await?;
            if let Some(keyed) = keyed {
                if let Some(before) = Self::take_key(&mut tx, &self.sealer.load(), keyed, audit.at_ms).await? {
                    return Self::rolled_back(tx, before).await;
                }
            }
            Self::run(&mut tx, query).await?;
            Self::commit_audited(tx, audit).await?;
            Ok(KeyedOutcome::Written)
        })
        .await
    }

    /// [`Self::run_keyed`] adding a member to `cap`'s set, unless it holds `cap.max` already
    /// (`Full`: rolled back, the key left unused). After the key, the set's lock row is taken
    /// and the set counted: a concurrent create waits for this transaction there, then counts
    /// what it wrote (each statement reads what is committed when it starts, READ COMMITTED on
    /// the servers; SQLite's writers take turns). A retry under the key of a create that stands
    /// is answered before the count.
    pub(crate) async fn run_capped<'q>(
        &self,
        call: &'static str,
        keyed: Option<&Keyed>,
        cap: Cap,
        query: Query<'q, DB, DB::Arguments<'q>>,
        audit: &AuditEntry,
    ) -> PortResult<CappedOutcome> {
        within::<DB, _>(call, async {
            let (mut tx, _turn) = self.begin_write().await?;
            if let Some(keyed) = keyed {
                if let Some(before) = Self::take_key(&mut tx, &self.sealer.load(), keyed, audit.at_ms).await? {
                    return Self::rolled_back(tx, CappedOutcome::Keyed(before)).await;
                }
            }
            let lock = with_tail::<DB>(
                "INSERT INTO cap_locks (name) VALUES (?)",
                DB::UPSERTS.take_cap,
            );
            Self::run(&mut tx, sqlx::query(&lock).bind(cap.name)).await?;
            let (members,): (i64,) = Self::row_on(&mut tx, sqlx::query_as(cap.count)).await?;
            if members >= i64::from(cap.max) {
                return Self::rolled_back(tx, CappedOutcome::Full).await;
            }
            Self::run(&mut tx, query).await?;
            Self::commit_audited(tx, audit).await?;
            Ok(CappedOutcome::Keyed(KeyedOutcome::Written))
        })
        .await
    }

    pub(crate) async fn answered(&self, key: &RequestKey) -> PortResult<Option<KeyedOutcome>> {
        let sql = DB::placeholders(SELECT_REQUEST);
        let query = sqlx::query_as(&sql)
            .bind(key.operator_id.as_str())
            .bind(key.key.as_str());
        let found = self
            .optional_row("answered", query, |row| {
                let (hash, answer) = answer_of(&self.sealer.load(), key, row)?;
                Ok(outcome(key, &hash.0, answer))
            })
            .await?;
        if found.is_some() || key.route != INBOX_SEND {
            return Ok(found);
        }
        // A send that a process of the release before 0007 wrote during a rolling upgrade,
        // after the migration copied the table (`inbox_sends` is dropped one release later).
        let sql = DB::placeholders(
            "SELECT message_ids FROM inbox_sends WHERE operator_id = ? AND idem_key = ?",
        );
        let query = sqlx::query_as(&sql)
            .bind(key.operator_id.as_str())
            .bind(key.key.as_str());
        // Its own call name: the old table's reads (one per new keyed send) are seen apart.
        self.optional_row("answered_inbox_sends", query, |(ids,): (Text,)| {
            Ok(KeyedOutcome::Replayed(format!("{{\"messageIds\":{}}}", ids.0)))
        })
        .await
    }
}
