//! Operators, sessions, the audit log and API keys on SQL.

use liveops_core::stores::{
    ApiKeyInfo, AuditEntry, CappedOutcome, Keyed, ListedAudit, OperatorRecord, OperatorUpdate,
    Role, Session,
};
use liveops_core::{PortError, PortResult};

use super::requests::Cap;
use super::sealed::{api_key_row, opened_or_passed_over, sealed};
use super::{bind_audit, sql_impl, with_tail, INSERT_AUDIT};
use crate::dialect::{db_error, to_u64, Text};
use crate::repository::within;

/// An audit row as selected: id, at, actor, action, target, before, after.
type AuditRow = (i64, i64, Text, Text, Text, Option<Text>, Option<Text>);

/// An operator row: id, email, hash, role, disabled, created, updated.
type OperatorRow = (Text, Text, Text, Text, i16, i64, i64);

/// `SELECT` of an operator row, with `$tail` after the table.
macro_rules! select_operators {
    ($tail:literal) => {
        concat!(
            "SELECT id, email, password_hash, role, disabled, created_at, updated_at \
             FROM operators",
            $tail
        )
    };
}

fn parse_role(s: &str) -> PortResult<Role> {
    Role::parse(s).ok_or_else(|| PortError::Corrupt(format!("unknown role {s:?}")))
}

fn operator_of(row: OperatorRow) -> PortResult<OperatorRecord> {
    let (id, email, password_hash, role, disabled, created_at_ms, updated_at_ms) = row;
    Ok(OperatorRecord {
        id: id.0,
        email: email.0,
        password_hash: password_hash.0,
        role: parse_role(&role.0)?,
        disabled: disabled != 0,
        created_at_ms,
        updated_at_ms,
    })
}

/// An API key row without its secret: id, name, creator, created, revoked.
type ApiKeyRow = (Text, Text, Text, i64, Option<i64>);

fn api_key_of(
    (key_id, name, created_by, created_at_ms, revoked_at_ms): ApiKeyRow,
) -> PortResult<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        key_id: key_id.0,
        name: name.0,
        created_by: created_by.0,
        created_at_ms,
        revoked_at_ms,
    })
}

/// `SELECT` of an API key row without its secret, with `$tail` after the table.
macro_rules! select_api_keys {
    ($tail:literal) => {
        concat!(
            "SELECT key_id, name, created_by, created_at, revoked_at FROM api_keys",
            $tail
        )
    };
}

sql_impl! {
    pub(crate) async fn operator_count(&self) -> PortResult<u64> {
        let count = sqlx::query_as("SELECT COUNT(*) FROM operators");
        let n = self.optional_row("operator_count", count, |(n,): (i64,)| Ok(to_u64(n))).await?;
        Ok(n.unwrap_or(0))
    }

    pub(crate) async fn create_operator(
        &self,
        op: &OperatorRecord,
        audit: &AuditEntry,
    ) -> PortResult<bool> {
        within::<DB, _>("create_operator", async {
            let (mut tx, _turn) = self.begin_write().await?;
            let sql = with_tail::<DB>(
                "INSERT INTO operators \
                 (id, email, password_hash, role, disabled, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                DB::keep_existing("email", "email"),
            );
            let insert = sqlx::query(&sql)
                .bind(op.id.as_str())
                .bind(op.email.as_str())
                .bind(op.password_hash.as_str())
                .bind(op.role.as_str())
                .bind(i16::from(op.disabled))
                .bind(op.created_at_ms)
                .bind(op.updated_at_ms);
            Self::run(&mut tx, insert).await?;
            let sql = DB::placeholders("SELECT id FROM operators WHERE email = ?");
            let (id,): (Text,) =
                Self::row_on(&mut tx, sqlx::query_as(&sql).bind(op.email.as_str())).await?;
            if id.0 != op.id {
                return Self::rolled_back(tx, false).await;
            }
            Self::commit_audited(tx, audit).await?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn operator_by_email(&self, email: &str) -> PortResult<Option<OperatorRecord>> {
        let sql = DB::placeholders(select_operators!(" WHERE email = ?"));
        self.optional_row("operator_by_email", sqlx::query_as(&sql).bind(email), operator_of).await
    }

    pub(crate) async fn operator(&self, id: &str) -> PortResult<Option<OperatorRecord>> {
        let sql = DB::placeholders(select_operators!(" WHERE id = ?"));
        self.optional_row("operator", sqlx::query_as(&sql).bind(id), operator_of).await
    }

    pub(crate) async fn operators(&self) -> PortResult<Vec<OperatorRecord>> {
        let all = sqlx::query_as(select_operators!(" ORDER BY created_at, id"));
        self.all_rows("operators", all, operator_of).await
    }

    pub(crate) async fn update_operator(
        &self,
        before: &OperatorRecord,
        after: &OperatorRecord,
        audit: &AuditEntry,
    ) -> PortResult<OperatorUpdate> {
        let active_admin = |o: &OperatorRecord| o.role == Role::Admin && !o.disabled;
        within::<DB, _>("update_operator", async {
            let (mut tx, _turn) = self.begin_write().await?;
            if active_admin(before) && !active_admin(after) {
                // Every enabled admin's row, locked in id order (writes on SQLite take turns):
                // a concurrent change of another admin waits here and then sees this one.
                let sql = with_tail::<DB>(
                    "SELECT id FROM operators WHERE role = 'admin' AND disabled = 0 ORDER BY id",
                    DB::LOCK_ROWS,
                );
                let admins: Vec<(Text,)> = sqlx::query_as(&sql)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_error::<DB>)?;
                if !admins.iter().any(|(id,)| id.0 != before.id) {
                    return Self::rolled_back(tx, OperatorUpdate::LastAdmin).await;
                }
            }
            let sql = DB::placeholders(
                "UPDATE operators SET role = ?, disabled = ?, password_hash = ?, updated_at = ? \
                 WHERE id = ? AND updated_at = ?",
            );
            let update = sqlx::query(&sql)
                .bind(after.role.as_str())
                .bind(i16::from(after.disabled))
                .bind(after.password_hash.as_str())
                .bind(after.updated_at_ms)
                .bind(before.id.as_str())
                .bind(before.updated_at_ms);
            if !Self::changed_one(&mut tx, update).await? {
                return Self::rolled_back(tx, OperatorUpdate::ChangedMeanwhile).await;
            }
            if after.disabled || after.password_hash != before.password_hash {
                let sql = DB::placeholders("DELETE FROM operator_sessions WHERE operator_id = ?");
                Self::run(&mut tx, sqlx::query(&sql).bind(before.id.as_str())).await?;
            }
            Self::commit_audited(tx, audit).await?;
            Ok(OperatorUpdate::Updated)
        })
        .await
    }

    pub(crate) async fn any_operator(&self) -> PortResult<bool> {
        let first = sqlx::query_as("SELECT id FROM operators LIMIT 1");
        let row = self.optional_row("any_operator", first, |(id,): (Text,)| Ok(id)).await?;
        Ok(row.is_some())
    }

    pub(crate) async fn open_session(
        &self,
        token_hash: &str,
        operator_id: &str,
        password_hash: &str,
        expires_at_ms: i64,
    ) -> PortResult<bool> {
        within::<DB, _>("open_session", async {
            let (mut tx, _turn) = self.begin_write().await?;
            // Under a shared lock on the operator: a disable or a new password (an update of the
            // row, deleting the operator's sessions in the same transaction) runs wholly before
            // or after this; SQLite's writers take turns.
            let sql = with_tail::<DB>(
                "SELECT disabled, password_hash FROM operators WHERE id = ?",
                DB::LOCK_SHARED,
            );
            let read = sqlx::query_as(&sql).bind(operator_id);
            let state: Option<(i16, Text)> = Self::optional_on(&mut tx, read).await?;
            if state.is_none_or(|(disabled, hash)| disabled != 0 || hash.0 != password_hash) {
                return Self::rolled_back(tx, false).await;
            }
            let sql = DB::placeholders(
                "INSERT INTO operator_sessions (token_hash, operator_id, created_at, expires_at) \
                 VALUES (?, ?, ?, ?)",
            );
            let insert = sqlx::query(&sql)
                .bind(token_hash)
                .bind(operator_id)
                .bind(liveops_core::now_ms())
                .bind(expires_at_ms);
            Self::run(&mut tx, insert).await?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn session(&self, token_hash: &str) -> PortResult<Option<Session>> {
        let sql = DB::placeholders(
            "SELECT s.operator_id, o.email, o.role, o.disabled, s.expires_at \
             FROM operator_sessions s JOIN operators o ON o.id = s.operator_id \
             WHERE s.token_hash = ?",
        );
        let query = sqlx::query_as(&sql).bind(token_hash);
        self.optional_row("session",
            query,
            |(operator_id, email, role, disabled, expires_at_ms): (Text, Text, Text, i16, i64)| {
                Ok(Session {
                    operator_id: operator_id.0,
                    email: email.0,
                    role: parse_role(&role.0)?,
                    disabled: disabled != 0,
                    expires_at_ms,
                })
            },
        )
        .await
    }

    pub(crate) async fn close_session(&self, token_hash: &str) -> PortResult<()> {
        let sql = DB::placeholders("DELETE FROM operator_sessions WHERE token_hash = ?");
        self.run_alone("close_session", sqlx::query(&sql).bind(token_hash)).await
    }

    pub(crate) async fn record_audit(&self, entry: &AuditEntry) -> PortResult<()> {
        let sql = DB::placeholders(INSERT_AUDIT);
        self.run_alone("record_audit", bind_audit(sqlx::query(&sql), entry)).await
    }

    pub(crate) async fn audit(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> PortResult<Vec<ListedAudit>> {
        macro_rules! page {
            ($below:literal) => {
                concat!(
                    "SELECT id, at_ms, actor, action, target, before_json, after_json \
                     FROM audit_log",
                    $below,
                    " ORDER BY id DESC LIMIT ?"
                )
            };
        }
        let sql = DB::placeholders(match before {
            Some(_) => page!(" WHERE id < ?"),
            None => page!(""),
        });
        let mut query = sqlx::query_as(&sql);
        if let Some(below) = before {
            query = query.bind(below);
        }
        let query = query.bind(i64::from(limit));
        let row = |(id, at_ms, actor, action, target, before, after): AuditRow| {
            Ok(ListedAudit {
                position: id,
                entry: AuditEntry {
                    at_ms,
                    actor: actor.0,
                    action: action.0,
                    target: target.0,
                    before: before.map(String::from),
                    after: after.map(String::from),
                },
            })
        };
        self.all_rows("audit", query, row).await
    }

    pub(crate) async fn create_api_key(
        &self,
        keyed: Option<&Keyed>,
        key: &ApiKeyInfo,
        secret: &str,
        audit: &AuditEntry,
        max: u32,
    ) -> PortResult<CappedOutcome> {
        let sql = DB::placeholders(
            "INSERT INTO api_keys (key_id, name, secret, secret_key, created_by, created_at, \
             revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        );
        let secret = sealed(&self.sealer.load(), &api_key_row(&key.key_id), secret)?;
        let insert = sqlx::query(&sql)
            .bind(key.key_id.as_str())
            .bind(key.name.as_str())
            .bind(secret.text.as_str())
            .bind(secret.key_id.as_deref())
            .bind(key.created_by.as_str())
            .bind(key.created_at_ms)
            .bind(key.revoked_at_ms);
        let cap = Cap {
            name: "api_keys",
            count: "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL",
            max,
        };
        self.run_capped("create_api_key", keyed, cap, insert, audit).await
    }

    pub(crate) async fn api_keys(&self, revoked: u32) -> PortResult<Vec<ApiKeyInfo>> {
        // One statement, so a key revoked meanwhile is listed once, as one or the other.
        let sql = DB::placeholders(concat!(
            "SELECT key_id, name, created_by, created_at, revoked_at FROM (",
            select_api_keys!(" WHERE revoked_at IS NULL"),
            " UNION ALL SELECT key_id, name, created_by, created_at, revoked_at FROM (",
            select_api_keys!(
                " WHERE revoked_at IS NOT NULL ORDER BY revoked_at DESC, key_id DESC LIMIT ?"
            ),
            ") revoked) listed ORDER BY created_at DESC, key_id DESC"
        ));
        let query = sqlx::query_as(&sql).bind(i64::from(revoked));
        self.all_rows("api_keys", query, api_key_of).await
    }

    pub(crate) async fn revoke_api_key(
        &self,
        key_id: &str,
        audit: &AuditEntry,
    ) -> PortResult<Option<ApiKeyInfo>> {
        within::<DB, _>("revoke_api_key", async {
            let (mut tx, _turn) = self.begin_write().await?;
            let sql = DB::placeholders(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            );
            let revoke = sqlx::query(&sql).bind(audit.at_ms).bind(key_id);
            if !Self::changed_one(&mut tx, revoke).await? {
                return Self::rolled_back(tx, None).await;
            }
            let sql = DB::placeholders(select_api_keys!(" WHERE key_id = ?"));
            let row: ApiKeyRow = Self::row_on(&mut tx, sqlx::query_as(&sql).bind(key_id)).await?;
            Self::commit_audited(tx, audit).await?;
            api_key_of(row).map(Some)
        })
        .await
    }

    pub(crate) async fn active_api_keys(&self) -> PortResult<Vec<(String, Vec<u8>)>> {
        let active = sqlx::query_as(
            "SELECT key_id, secret, secret_key FROM api_keys WHERE revoked_at IS NULL \
             ORDER BY created_at, key_id",
        );
        let rows: Vec<(Text, Text, Option<Text>)> =
            self.all_rows("active_api_keys", active, Ok).await?;
        // A key that does not open (sealed under a key no longer configured, or altered) signs
        // nothing; the others still do.
        let sealer = self.sealer.load();
        Ok(rows
            .into_iter()
            .filter_map(|(id, secret, key)| {
                let row = api_key_row(&id.0);
                let secret = opened_or_passed_over(&sealer, "api_keys", &row, secret, key)?;
                Some((id.0, secret.into_bytes()))
            })
            .collect())
    }
}
