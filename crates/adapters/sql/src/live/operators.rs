//! Operators, sessions, the audit log and API keys on SQL.

use liveops_core::stores::{ApiKeyInfo, AuditEntry, OperatorRecord, Role, Session};
use liveops_core::{PortError, PortResult};

use super::{bind_audit, sql_impl, INSERT_AUDIT};
use crate::dialect::{db_error, to_u64, Text};
use crate::repository::within;

/// An audit row as selected: at, actor, action, target, before, after.
type AuditRow = (i64, Text, Text, Text, Option<Text>, Option<Text>);

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

fn api_key_of((key_id, name, created_by, created_at_ms, revoked_at_ms): ApiKeyRow) -> ApiKeyInfo {
    ApiKeyInfo {
        key_id: key_id.0,
        name: name.0,
        created_by: created_by.0,
        created_at_ms,
        revoked_at_ms,
    }
}

sql_impl! {
    pub(crate) async fn operator_count(&self) -> PortResult<u64> {
        within::<DB, _>(async {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM operators")
                .fetch_one(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            Ok(to_u64(n))
        })
        .await
    }

    pub(crate) async fn create_operator(
        &self,
        op: &OperatorRecord,
        audit: &AuditEntry,
    ) -> PortResult<bool> {
        within::<DB, _>(async {
            let (mut tx, _turn) = self.begin_write().await?;
            let sql = format!(
                "{}{}",
                DB::placeholders(
                    "INSERT INTO operators \
                     (id, email, password_hash, role, disabled, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                DB::keep_existing("email", "email")
            );
            sqlx::query(&sql)
                .bind(op.id.as_str())
                .bind(op.email.as_str())
                .bind(op.password_hash.as_str())
                .bind(op.role.as_str())
                .bind(i16::from(op.disabled))
                .bind(op.created_at_ms)
                .bind(op.updated_at_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            let sql = DB::placeholders("SELECT id FROM operators WHERE email = ?");
            let (id,): (Text,) = sqlx::query_as(&sql)
                .bind(op.email.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            if id.0 != op.id {
                tx.rollback().await.map_err(db_error::<DB>)?;
                return Ok(false);
            }
            bind_audit(sqlx::query(&DB::placeholders(INSERT_AUDIT)), audit)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn operator_by_email(&self, email: &str) -> PortResult<Option<OperatorRecord>> {
        self.operator_where(select_operators!(" WHERE email = ?"), email)
            .await
    }

    pub(crate) async fn operator(&self, id: &str) -> PortResult<Option<OperatorRecord>> {
        self.operator_where(select_operators!(" WHERE id = ?"), id).await
    }

    async fn operator_where(
        &self,
        sql: &'static str,
        value: &str,
    ) -> PortResult<Option<OperatorRecord>> {
        within::<DB, _>(async {
            let sql = DB::placeholders(sql);
            let row: Option<OperatorRow> = sqlx::query_as(&sql)
                .bind(value)
                .fetch_optional(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            row.map(operator_of).transpose()
        })
        .await
    }

    pub(crate) async fn operators(&self) -> PortResult<Vec<OperatorRecord>> {
        within::<DB, _>(async {
            let rows: Vec<OperatorRow> =
                sqlx::query_as(select_operators!(" ORDER BY created_at, id"))
                .fetch_all(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            rows.into_iter().map(operator_of).collect()
        })
        .await
    }

    pub(crate) async fn update_operator(
        &self,
        before: &OperatorRecord,
        after: &OperatorRecord,
        audit: &AuditEntry,
    ) -> PortResult<bool> {
        within::<DB, _>(async {
            let (mut tx, _turn) = self.begin_write().await?;
            let sql = DB::placeholders(
                "UPDATE operators SET role = ?, disabled = ?, password_hash = ?, updated_at = ? \
                 WHERE id = ? AND updated_at = ?",
            );
            let done = sqlx::query(&sql)
                .bind(after.role.as_str())
                .bind(i16::from(after.disabled))
                .bind(after.password_hash.as_str())
                .bind(after.updated_at_ms)
                .bind(before.id.as_str())
                .bind(before.updated_at_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            if DB::rows_affected(&done) != 1 {
                tx.rollback().await.map_err(db_error::<DB>)?;
                return Ok(false);
            }
            if after.disabled {
                let sql = DB::placeholders("DELETE FROM operator_sessions WHERE operator_id = ?");
                sqlx::query(&sql)
                    .bind(before.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error::<DB>)?;
            }
            bind_audit(sqlx::query(&DB::placeholders(INSERT_AUDIT)), audit)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn any_operator(&self) -> PortResult<bool> {
        within::<DB, _>(async {
            let row: Option<(Text,)> = sqlx::query_as("SELECT id FROM operators LIMIT 1")
                .fetch_optional(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            Ok(row.is_some())
        })
        .await
    }

    pub(crate) async fn open_session(
        &self,
        token_hash: &str,
        operator_id: &str,
        expires_at_ms: i64,
    ) -> PortResult<()> {
        within::<DB, _>(async {
            let sql = DB::placeholders(
                "INSERT INTO operator_sessions (token_hash, operator_id, created_at, expires_at) \
                 VALUES (?, ?, ?, ?)",
            );
            sqlx::query(&sql)
                .bind(token_hash)
                .bind(operator_id)
                .bind(liveops_core::now_ms())
                .bind(expires_at_ms)
                .execute(self.pool())
                .await
                .map(drop)
                .map_err(db_error::<DB>)
        })
        .await
    }

    pub(crate) async fn session(&self, token_hash: &str) -> PortResult<Option<Session>> {
        within::<DB, _>(async {
            let sql = DB::placeholders(
                "SELECT s.operator_id, o.email, o.role, o.disabled, s.expires_at \
                 FROM operator_sessions s JOIN operators o ON o.id = s.operator_id \
                 WHERE s.token_hash = ?",
            );
            let row: Option<(Text, Text, Text, i16, i64)> = sqlx::query_as(&sql)
                .bind(token_hash)
                .fetch_optional(self.pool())
                .await
                .map_err(db_error::<DB>)?;
            row.map(|(operator_id, email, role, disabled, expires_at_ms)| {
                Ok(Session {
                    operator_id: operator_id.0,
                    email: email.0,
                    role: parse_role(&role.0)?,
                    disabled: disabled != 0,
                    expires_at_ms,
                })
            })
            .transpose()
        })
        .await
    }

    pub(crate) async fn close_session(&self, token_hash: &str) -> PortResult<()> {
        within::<DB, _>(async {
            let sql = DB::placeholders("DELETE FROM operator_sessions WHERE token_hash = ?");
            sqlx::query(&sql)
                .bind(token_hash)
                .execute(self.pool())
                .await
                .map(drop)
                .map_err(db_error::<DB>)
        })
        .await
    }

    pub(crate) async fn record_audit(&self, entry: &AuditEntry) -> PortResult<()> {
        within::<DB, _>(async {
            bind_audit(sqlx::query(&DB::placeholders(INSERT_AUDIT)), entry)
                .execute(self.pool())
                .await
                .map(drop)
                .map_err(db_error::<DB>)
        })
        .await
    }

    pub(crate) async fn audit(&self, limit: u32) -> PortResult<Vec<AuditEntry>> {
        within::<DB, _>(async {
            let sql = DB::placeholders(
                "SELECT at_ms, actor, action, target, before_json, after_json FROM audit_log \
                 ORDER BY id DESC LIMIT ?",
            );
            let rows: Vec<AuditRow> =
                sqlx::query_as(&sql)
                    .bind(i64::from(limit))
                    .fetch_all(self.pool())
                    .await
                    .map_err(db_error::<DB>)?;
            Ok(rows
                .into_iter()
                .map(|(at_ms, actor, action, target, before, after)| AuditEntry {
                    at_ms,
                    actor: actor.0,
                    action: action.0,
                    target: target.0,
                    before: before.map(String::from),
                    after: after.map(String::from),
                })
                .collect())
        })
        .await
    }

    pub(crate) async fn create_api_key(
        &self,
        key: &ApiKeyInfo,
        secret: &str,
        audit: &AuditEntry,
    ) -> PortResult<()> {
        within::<DB, _>(async {
            let (mut tx, _turn) = self.begin_write().await?;
            let sql = DB::placeholders(
                "INSERT INTO api_keys (key_id, name, secret, created_by, created_at, revoked_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            );
            sqlx::query(&sql)
                .bind(key.key_id.as_str())
                .bind(key.name.as_str())
                .bind(secret)
                .bind(key.created_by.as_str())
                .bind(key.created_at_ms)
                .bind(key.revoked_at_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            bind_audit(sqlx::query(&DB::placeholders(INSERT_AUDIT)), audit)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            tx.commit().await.map_err(db_error::<DB>)
        })
        .await
    }

    pub(crate) async fn api_keys(&self) -> PortResult<Vec<ApiKeyInfo>> {
        within::<DB, _>(async {
            let rows: Vec<ApiKeyRow> = sqlx::query_as(
                "SELECT key_id, name, created_by, created_at, revoked_at FROM api_keys \
                 ORDER BY created_at DESC, key_id DESC",
            )
            .fetch_all(self.pool())
            .await
            .map_err(db_error::<DB>)?;
            Ok(rows.into_iter().map(api_key_of).collect())
        })
        .await
    }

    pub(crate) async fn revoke_api_key(
        &self,
        key_id: &str,
        audit: &AuditEntry,
    ) -> PortResult<Option<ApiKeyInfo>> {
        within::<DB, _>(async {
            let (mut tx, _turn) = self.begin_write().await?;
            let sql = DB::placeholders(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            );
            let done = sqlx::query(&sql)
                .bind(audit.at_ms)
                .bind(key_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            if DB::rows_affected(&done) != 1 {
                tx.rollback().await.map_err(db_error::<DB>)?;
                return Ok(None);
            }
            let sql = DB::placeholders(
                "SELECT key_id, name, created_by, created_at, revoked_at FROM api_keys \
                 WHERE key_id = ?",
            );
            let row: ApiKeyRow = sqlx::query_as(&sql)
                .bind(key_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            bind_audit(sqlx::query(&DB::placeholders(INSERT_AUDIT)), audit)
                .execute(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(Some(api_key_of(row)))
        })
        .await
    }

    pub(crate) async fn active_api_keys(&self) -> PortResult<Vec<(String, Vec<u8>)>> {
        within::<DB, _>(async {
            let rows: Vec<(Text, Text)> = sqlx::query_as(
                "SELECT key_id, secret FROM api_keys WHERE revoked_at IS NULL \
                 ORDER BY created_at, key_id",
            )
            .fetch_all(self.pool())
            .await
            .map_err(db_error::<DB>)?;
            Ok(rows
                .into_iter()
                .map(|(k, s)| (k.0, s.0.into_bytes()))
                .collect())
        })
        .await
    }
}
