//! How migrations are applied on MySQL and MariaDB: statement by statement, each run only where
//! its effect is not found yet, a statement that waited too long for a lock tried again after a
//! pause, and the history written as sqlx writes it (`docs/adr/0030-mysql-migrations-resume.md`).
//!
//! MySQL commits each DDL statement on its own, so sqlx's migrator (the whole file in one request,
//! inside a transaction) leaves a migration that fails half-way dirty in `_sqlx_migrations`, and
//! sqlx refuses every later start. Here a start that fails or is killed part-way leaves a
//! migration that the next start completes: before running a statement, the runner looks for
//! what it does (a table, an index, a column, a column's type, or for a data statement a query
//! written for it below); found, the statement is not run again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use liveops_core::{PortError, PortResult};
use sqlx::migrate::{Migrate, MigrateError, Migration, Migrator};
use sqlx::mysql::MySqlDatabaseError;
use sqlx::{Database as _, Executor, MySql, MySqlConnection};

use super::dialect::{db_error, migrate_error_of, Dialect, Text};
use super::repository::SqlRepository;

/// How a start tries again the migration statements that gave up waiting for another's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockRetry {
    /// The pause after a failed attempt, in which the sessions queued behind it get through.
    pub pause: Duration,
    /// How long after the start's first failed attempt another attempt may still begin.
    pub give_up_after: Duration,
}

impl LockRetry {
    /// [`SqlRepository::migrate`]'s: 10 s pauses between attempts of at most 5 s, for 120 s.
    pub const STANDARD: LockRetry = LockRetry {
        pause: Duration::from_secs(10),
        give_up_after: Duration::from_secs(120),
    };
}

impl SqlRepository<MySql> {
    /// [`SqlRepository::migrate`] trying statements blocked by a lock again as `retry` says.
    pub async fn migrate_with(&self, retry: LockRetry) -> PortResult<()> {
        self.migrate_by(move |conn| apply(conn, MySql::migrator(), retry))
            .await
    }
}

/// ER_LOCK_WAIT_TIMEOUT (a row lock or, past `lock_wait_timeout`, a metadata lock) and
/// ER_LOCK_DEADLOCK: the statement was rolled back and can be tried again.
const LOCK_ERRORS: [u16; 2] = [1205, 1213];

/// Applies `migrator`'s pending migrations, and completes any left unfinished, on `conn`, which
/// holds the repository's migration lock.
pub(crate) fn apply<'c>(
    conn: &'c mut MySqlConnection,
    migrator: &'static Migrator,
    retry: LockRetry,
) -> BoxFuture<'c, PortResult<()>> {
    Box::pin(apply_all(conn, migrator, retry))
}

async fn apply_all(
    conn: &mut MySqlConnection,
    migrator: &Migrator,
    retry: LockRetry,
) -> PortResult<()> {
    let history = |e: MigrateError| migrate_error_of(MySql::NAME, e);
    if migrator.locking {
        conn.lock().await.map_err(history)?;
    }
    conn.ensure_migrations_table().await.map_err(history)?;
    let rows: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error::<MySql>)?;
    let known: HashMap<i64, &Migration> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m))
        .collect();
    let mut applied = HashMap::new();
    for (version, checksum, success) in rows {
        match known.get(&version) {
            None if migrator.ignore_missing => {}
            None => return Err(history(MigrateError::VersionMissing(version))),
            Some(m) if *m.checksum != *checksum => {
                return Err(history(MigrateError::VersionMismatch(version)))
            }
            Some(_) => {
                applied.insert(version, success);
            }
        }
    }
    let mut waits = Waits::new(retry);
    for m in migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match applied.get(&m.version) {
            Some(true) => {}
            Some(false) => run(conn, m, true, &mut waits).await?,
            None => run(conn, m, false, &mut waits).await?,
        }
    }
    if migrator.locking {
        conn.unlock().await.map_err(history)?;
    }
    Ok(())
}

/// Runs migration `m`'s statements that have not taken effect, its history row written first
/// (unless `resumed`: it is there, unfinished) and marked successful once every one has.
fn run<'a>(
    conn: &'a mut MySqlConnection,
    m: &'a Migration,
    resumed: bool,
    waits: &'a mut Waits,
) -> BoxFuture<'a, PortResult<()>> {
    Box::pin(async move {
        let steps = plan(m.version, &m.sql).map_err(|why| {
            PortError::Corrupt(format!(
                "MySQL migration {} ({}): {why}; the runner applies only statements whose effect \
                 it can find (docs/adr/0030-mysql-migrations-resume.md)",
                m.version, m.description
            ))
        })?;
        let started = Instant::now();
        if resumed {
            tracing::warn!(
                version = m.version,
                description = %m.description,
                "completing a migration a start left unfinished"
            );
        } else {
            // As sqlx writes it: not successful yet, no execution time.
            sqlx::query(
                "INSERT INTO _sqlx_migrations \
                 (version, description, success, checksum, execution_time) \
                 VALUES (?, ?, FALSE, ?, -1)",
            )
            .bind(m.version)
            .bind(&*m.description)
            .bind(&*m.checksum)
            .execute(&mut *conn)
            .await
            .map_err(db_error::<MySql>)?;
        }
        let mut changed = false;
        for (i, step) in steps.iter().enumerate() {
            let at = At {
                m,
                index: i,
                count: steps.len(),
            };
            if let Err(failed) = step.run(conn, &at, waits, &mut changed).await {
                // A start that changed nothing leaves no trace: the release before (sqlx) still
                // starts, and the database is as it found it. Unless the server said why the
                // statement failed (then it had no effect), the row stays for the next start.
                if !resumed && !changed && failed.answered {
                    let forget = sqlx::query(
                        "DELETE FROM _sqlx_migrations WHERE version = ? AND success = FALSE",
                    )
                    .bind(m.version)
                    .execute(&mut *conn)
                    .await;
                    if let Err(e) = forget {
                        tracing::warn!(
                            version = m.version,
                            error = %e,
                            "unfinished migration kept"
                        );
                    }
                }
                return Err(failed.error);
            }
        }
        let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE _sqlx_migrations SET success = TRUE, execution_time = ? WHERE version = ?",
        )
        .bind(nanos)
        .bind(m.version)
        .execute(&mut *conn)
        .await
        .map_err(db_error::<MySql>)?;
        tracing::info!(
            version = m.version,
            description = %m.description,
            resumed,
            "migration applied"
        );
        Ok(())
    })
}

/// Where a statement stands, for errors and logs.
struct At<'a> {
    m: &'a Migration,
    index: usize,
    count: usize,
}

impl At<'_> {
    fn error(&self, what: impl std::fmt::Display) -> String {
        format!(
            "MySQL migration {} ({}), statement {} of {}: {what}",
            self.m.version,
            self.m.description,
            self.index + 1,
            self.count
        )
    }
}

/// A statement that failed: the error, and whether the server answered it (so it had no effect).
struct Failed {
    error: PortError,
    answered: bool,
}

/// The lock waits of one start, against its [`LockRetry`].
struct Waits {
    retry: LockRetry,
    first: Option<Instant>,
    attempts: u32,
}

impl Waits {
    fn new(retry: LockRetry) -> Self {
        Self {
            retry,
            first: None,
            attempts: 0,
        }
    }

    /// Counts a failed attempt; whether to try again, after the pause.
    fn again(&mut self) -> bool {
        self.attempts += 1;
        let first = *self.first.get_or_insert_with(Instant::now);
        first.elapsed() + self.retry.pause <= self.retry.give_up_after
    }
}

/// A statement of a migration and how the runner knows it took effect.
#[derive(Debug, PartialEq, Eq)]
struct Step {
    /// The statement as the file writes it (comments before and after it left out).
    sql: String,
    kind: Kind,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// `SET SESSION`: run each time, nothing to find afterwards.
    Session,
    /// Schema changes: the statement took effect once every one of them is found.
    Schema(Vec<Effect>),
    /// A data change, and the query answering 1 once it has taken effect ([`DATA`]).
    Data(&'static str),
}

/// A schema change, as `information_schema` shows it.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    Table {
        table: String,
    },
    Index {
        table: String,
        index: String,
    },
    Column {
        table: String,
        column: String,
    },
    /// A column's type (its name, and its length or precision when given) and nullability.
    ColumnType {
        table: String,
        column: String,
        data_type: String,
        column_type: Option<String>,
        nullable: bool,
    },
}

impl Step {
    /// Runs the statement unless its effect is found, trying again while it fails on a lock
    /// within `waits`; `changed` is set once it ran.
    fn run<'a>(
        &'a self,
        conn: &'a mut MySqlConnection,
        at: &'a At<'a>,
        waits: &'a mut Waits,
        changed: &'a mut bool,
    ) -> BoxFuture<'a, Result<(), Failed>> {
        Box::pin(async move {
            loop {
                let attempt = Instant::now();
                let Err(e) = self.attempt(conn, at, changed).await else {
                    return Ok(());
                };
                let answered = matches!(e, Attempt::Db(sqlx::Error::Database(_)));
                let error = match e {
                    Attempt::Db(e) if is_lock_wait(&e) => {
                        if waits.again() {
                            tracing::warn!(
                                version = at.m.version,
                                statement = at.index + 1,
                                waited_ms = u64::try_from(attempt.elapsed().as_millis())
                                    .unwrap_or(u64::MAX),
                                pause_ms = u64::try_from(waits.retry.pause.as_millis())
                                    .unwrap_or(u64::MAX),
                                error = %e,
                                "migration statement waited for a lock another session holds; \
                                 trying again after a pause"
                            );
                            tokio::time::sleep(waits.retry.pause).await;
                            continue;
                        }
                        PortError::Unavailable(at.error(format!(
                            "{e}: a lock another session holds (a transaction left open, or a \
                             long read, on the table) outlasted this start's {} attempts; the \
                             next start completes the migration",
                            waits.attempts
                        )))
                    }
                    Attempt::Db(e) => match db_error::<MySql>(e) {
                        PortError::Unavailable(m) => PortError::Unavailable(at.error(m)),
                        PortError::Corrupt(m) => PortError::Corrupt(at.error(m)),
                    },
                    Attempt::Found(why) => PortError::Corrupt(at.error(why)),
                };
                return Err(Failed { error, answered });
            }
        })
    }

    /// One attempt: look for the effect, run the statement if it is not found, check it is.
    fn attempt<'a>(
        &'a self,
        conn: &'a mut MySqlConnection,
        at: &'a At<'a>,
        changed: &'a mut bool,
    ) -> BoxFuture<'a, Result<(), Attempt>> {
        Box::pin(async move {
            match &self.kind {
                Kind::Session => {
                    conn.execute(self.sql.as_str()).await?;
                }
                Kind::Data(done_when) => {
                    let (done,): (i64,) = sqlx::query_as(done_when).fetch_one(&mut *conn).await?;
                    if done == 1 {
                        tracing::info!(
                            version = at.m.version,
                            statement = at.index + 1,
                            "migration statement skipped: its effect is there"
                        );
                        return Ok(());
                    }
                    conn.execute(self.sql.as_str()).await?;
                    *changed = true;
                }
                Kind::Schema(effects) => {
                    let found = found(conn, effects).await?;
                    if found.iter().all(|f| *f) {
                        tracing::info!(
                            version = at.m.version,
                            statement = at.index + 1,
                            "migration statement skipped: its effect is there"
                        );
                        return Ok(());
                    }
                    if found.iter().any(|f| *f) {
                        return Err(Attempt::Found(format!(
                            "only part of its effect is there ({}): finish it by hand",
                            describe(effects, &found)
                        )));
                    }
                    conn.execute(self.sql.as_str()).await?;
                    *changed = true;
                    let found = self::found(conn, effects).await?;
                    if !found.iter().all(|f| *f) {
                        return Err(Attempt::Found(format!(
                            "ran, but its effect is not found ({})",
                            describe(effects, &found)
                        )));
                    }
                }
            }
            Ok(())
        })
    }
}

/// Why an attempt did not end well.
enum Attempt {
    Db(sqlx::Error),
    /// What `information_schema` shows is not what the statement should leave.
    Found(String),
}

impl From<sqlx::Error> for Attempt {
    fn from(e: sqlx::Error) -> Self {
        Attempt::Db(e)
    }
}

/// Whether `e` says the statement waited too long for a lock, or was chosen to break a deadlock.
fn is_lock_wait(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|d| LOCK_ERRORS.contains(&d.number()))
}

/// Whether each of `effects` is found in the current database. Table names compare by bytes (a
/// table name is case-sensitive where MySQL stores tables as files); column and index names do
/// not, as in MySQL.
fn found<'a>(
    conn: &'a mut MySqlConnection,
    effects: &'a [Effect],
) -> BoxFuture<'a, Result<Vec<bool>, sqlx::Error>> {
    Box::pin(async move {
        const IN_TABLE: &str = "table_schema = DATABASE() \
             AND CAST(table_name AS BINARY) = CAST(? AS BINARY)";
        let mut all = Vec::with_capacity(effects.len());
        for effect in effects {
            let here = match effect {
                Effect::Table { table } => {
                    let sql =
                        format!("SELECT COUNT(*) FROM information_schema.tables WHERE {IN_TABLE}");
                    count(conn, &sql, &[table]).await? > 0
                }
                Effect::Index { table, index } => {
                    let sql = format!(
                        "SELECT COUNT(*) FROM information_schema.statistics \
                         WHERE {IN_TABLE} AND index_name = ?"
                    );
                    count(conn, &sql, &[table, index]).await? > 0
                }
                Effect::Column { table, column } => {
                    let sql = format!(
                        "SELECT COUNT(*) FROM information_schema.columns \
                         WHERE {IN_TABLE} AND column_name = ?"
                    );
                    count(conn, &sql, &[table, column]).await? > 0
                }
                Effect::ColumnType {
                    table,
                    column,
                    data_type,
                    column_type,
                    nullable,
                } => {
                    let sql = format!(
                        "SELECT data_type, column_type, is_nullable \
                         FROM information_schema.columns WHERE {IN_TABLE} AND column_name = ?"
                    );
                    let row: Option<(Text, Text, Text)> = sqlx::query_as(&sql)
                        .bind(table)
                        .bind(column)
                        .fetch_optional(&mut *conn)
                        .await?;
                    row.is_some_and(|(data, full, null)| {
                        data.0.eq_ignore_ascii_case(data_type)
                            && column_type
                                .as_ref()
                                .is_none_or(|t| full.0.eq_ignore_ascii_case(t))
                            && null
                                .0
                                .eq_ignore_ascii_case(if *nullable { "YES" } else { "NO" })
                    })
                }
            };
            all.push(here);
        }
        Ok(all)
    })
}

/// The count `sql` answers with `binds` bound in order.
fn count<'a>(
    conn: &'a mut MySqlConnection,
    sql: &'a str,
    binds: &'a [&'a String],
) -> BoxFuture<'a, Result<i64, sqlx::Error>> {
    Box::pin(async move {
        let mut query = sqlx::query_as::<_, (i64,)>(sql);
        for b in binds {
            query = query.bind(b.as_str());
        }
        Ok(query.fetch_one(&mut *conn).await?.0)
    })
}

/// `effects`, each with whether it was found, for an error.
fn describe(effects: &[Effect], found: &[bool]) -> String {
    effects
        .iter()
        .zip(found)
        .map(|(e, f)| {
            let what = match e {
                Effect::Table { table } => format!("table {table}"),
                Effect::Index { table, index } => format!("index {index} on {table}"),
                Effect::Column { table, column } => format!("column {table}.{column}"),
                Effect::ColumnType {
                    table,
                    column,
                    data_type,
                    ..
                } => format!("column {table}.{column} as {data_type}"),
            };
            format!("{what}: {}", if *f { "found" } else { "missing" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A data statement of a released migration and the query answering 1 once it has taken effect:
/// found so, it is not run again. A migration that holds a data statement not listed here is
/// refused before anything of it runs (a unit test checks every file).
struct DataStep {
    version: i64,
    /// How the statement begins, its words separated by single spaces.
    begins: &'static str,
    done_when: &'static str,
}

/// The data statements of the migrations, each with its check. While a migration is unfinished
/// only processes of the release before serve (a process serves once every migration is), so
/// what they wrote is in the form before the migration: converting it again is what a first run
/// would do now.
const DATA: &[DataStep] = &[
    // Rows written before 0004 count from the migration; rows of the release before, written
    // meanwhile, carry 0 (a run stamps every row, those of an earlier run again).
    DataStep {
        version: 4,
        begins: "UPDATE processed_events SET done_at",
        done_when: "SELECT CAST(NOT EXISTS \
             (SELECT 1 FROM processed_events WHERE done_at = 0) AS SIGNED)",
    },
    DataStep {
        version: 4,
        begins: "UPDATE fairness_verdicts SET done_at",
        done_when: "SELECT CAST(NOT EXISTS \
             (SELECT 1 FROM fairness_verdicts WHERE done_at = 0) AS SIGNED)",
    },
    // Statistics on the old scale: whatever the release before learned since goes too.
    DataStep {
        version: 5,
        begins: "DELETE FROM fairness_stats",
        done_when: "SELECT CAST(NOT EXISTS (SELECT 1 FROM fairness_stats) AS SIGNED)",
    },
    // Every keyed send carried over (the statement skips those already carried).
    DataStep {
        version: 7,
        begins: "INSERT IGNORE INTO operator_requests",
        done_when: "SELECT CAST(NOT EXISTS (SELECT 1 FROM inbox_sends s WHERE NOT EXISTS \
             (SELECT 1 FROM operator_requests r \
              WHERE r.operator_id = s.operator_id AND r.idem_key = s.idem_key)) AS SIGNED)",
    },
    // The counter's one row: the release before never writes the table.
    DataStep {
        version: 10,
        begins: "INSERT INTO inbox_positions",
        done_when: "SELECT CAST(EXISTS (SELECT 1 FROM inbox_positions WHERE id = 1) AS SIGNED)",
    },
    // The numbering: it numbers only while no message has a position, so once one has, it is
    // done (and a run over no message numbers nothing).
    DataStep {
        version: 11,
        begins: "UPDATE inbox_messages JOIN",
        done_when: "SELECT CAST(EXISTS \
             (SELECT 1 FROM inbox_messages WHERE position IS NOT NULL) AS SIGNED)",
    },
    // The entrant counts of the entries written so far, in one statement: once a count is
    // there, it is done (and over no entry there is nothing to count). Processes of this release
    // write counts only once every migration succeeded.
    DataStep {
        version: 18,
        begins: "INSERT INTO campaign_entrant_counts",
        done_when: "SELECT CAST(EXISTS (SELECT 1 FROM campaign_entrant_counts) \
             OR NOT EXISTS (SELECT 1 FROM campaign_entries) AS SIGNED)",
    },
];

/// Migration `version`'s statements (`sql`, its file), each with how its effect is found; an
/// error naming the first statement that cannot be split or checked.
fn plan(version: i64, sql: &str) -> Result<Vec<Step>, String> {
    split(sql)?
        .into_iter()
        .enumerate()
        .map(|(i, statement)| {
            let kind = classify(version, &statement.tokens).ok_or_else(|| {
                format!("statement {} cannot be checked: {}", i + 1, statement.sql)
            })?;
            Ok(Step {
                sql: statement.sql.to_owned(),
                kind,
            })
        })
        .collect()
}

/// A token of a statement, as far as splitting and checking need.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token<'a> {
    /// A keyword, a name or a number, as written.
    Word(&'a str),
    /// A name between backquotes, unquoted.
    Quoted(String),
    /// A string literal (its content is not needed).
    Str,
    Punct(char),
}

/// One statement of a file: its text and its tokens.
struct Statement<'a> {
    sql: &'a str,
    tokens: Vec<Token<'a>>,
}

/// `sql` cut into statements at the semicolons outside string literals, quoted names and
/// comments, as the server reads a multi-statement request. Refused: a backslash in a string
/// literal (read by `sql_mode`), an executable comment (`/*! .. */`), anything unterminated.
/// A compound statement (a procedure's `BEGIN .. END`) is cut too, into statements that no
/// check accepts.
fn split(sql: &str) -> Result<Vec<Statement<'_>>, String> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut tokens = Vec::new();
    let (mut first, mut last) = (None, 0);
    let mut i = 0;
    let line_end = |from: usize| sql[from..].find('\n').map_or(sql.len(), |n| from + n);
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b';' => {
                if let Some(f) = first.take() {
                    statements.push(Statement {
                        sql: &sql[f..last],
                        tokens: std::mem::take(&mut tokens),
                    });
                }
                i += 1;
                continue;
            }
            _ if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-')
                && bytes
                    .get(i + 2)
                    .is_none_or(|n| n.is_ascii_whitespace() || n.is_ascii_control()) =>
            {
                i = line_end(i);
                continue;
            }
            b'#' => {
                i = line_end(i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let rest = &sql[i + 2..];
                if rest.starts_with('!') || rest.starts_with("M!") {
                    return Err("an executable comment (/*! .. */)".into());
                }
                let end = rest.find("*/").ok_or("an unterminated comment")?;
                i += 2 + end + 2;
                continue;
            }
            b'\'' | b'"' => {
                i = quoted(bytes, i, c)?;
                tokens.push(Token::Str);
            }
            b'`' => {
                i = quoted(bytes, i, c)?;
                tokens.push(Token::Quoted(sql[start + 1..i - 1].replace("``", "`")));
            }
            _ if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                tokens.push(Token::Word(&sql[start..i]));
            }
            _ => {
                i += 1;
                tokens.push(Token::Punct(char::from(c)));
            }
        }
        first.get_or_insert(start);
        last = i;
    }
    if let Some(f) = first {
        statements.push(Statement {
            sql: &sql[f..last],
            tokens,
        });
    }
    Ok(statements)
}

/// The end (past the closing quote) of the literal or name opened by `quote` at `open`; a
/// doubled quote stands for itself. A backslash is refused: whether it escapes depends on the
/// server's `sql_mode`.
fn quoted(bytes: &[u8], open: usize, quote: u8) -> Result<usize, String> {
    let mut i = open + 1;
    loop {
        match bytes.get(i) {
            None => return Err("an unterminated quote".into()),
            Some(b'\\') if quote != b'`' => {
                return Err("a backslash in a string literal (read by sql_mode)".into())
            }
            Some(&b) if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Ok(i + 1);
                }
            }
            Some(_) => i += 1,
        }
    }
}

/// Reads tokens from the start of a statement.
struct Cursor<'t, 'a> {
    tokens: &'t [Token<'a>],
    at: usize,
}

impl<'a> Cursor<'_, 'a> {
    /// Takes keyword `word` if it is next.
    fn word(&mut self, word: &str) -> bool {
        let next = self.tokens.get(self.at).is_some_and(|t| is_word(t, word));
        if next {
            self.at += 1;
        }
        next
    }

    /// Takes keywords `words` if they are all next, in order.
    fn words(&mut self, words: &[&str]) -> bool {
        let back = self.at;
        if words.iter().all(|w| self.word(w)) {
            return true;
        }
        self.at = back;
        false
    }

    /// Takes punctuation `c` if it is next.
    fn punct(&mut self, c: char) -> bool {
        let next = self.tokens.get(self.at) == Some(&Token::Punct(c));
        if next {
            self.at += 1;
        }
        next
    }

    /// Takes a name (unqualified: not followed by `.`).
    fn name(&mut self) -> Option<String> {
        let name = match self.tokens.get(self.at)? {
            Token::Word(w) => (*w).to_owned(),
            Token::Quoted(q) => q.clone(),
            _ => return None,
        };
        self.at += 1;
        (self.tokens.get(self.at) != Some(&Token::Punct('.'))).then_some(name)
    }

    fn done(&self) -> bool {
        self.at >= self.tokens.len()
    }
}

/// How the effect of the statement of migration `version` made of `tokens` is found; `None`:
/// it cannot be.
fn classify(version: i64, tokens: &[Token<'_>]) -> Option<Kind> {
    let mut c = Cursor { tokens, at: 0 };
    if c.words(&["SET", "SESSION"]) {
        c.name()?;
        let single = c.punct('=') && !tokens[c.at..].contains(&Token::Punct(','));
        return single.then_some(Kind::Session);
    }
    if c.words(&["CREATE", "TABLE"]) {
        c.words(&["IF", "NOT", "EXISTS"]);
        let table = c.name()?;
        // Not a copy (`CREATE TABLE .. SELECT`): its rows would not be checked.
        let defined = c.punct('(') && !tokens.iter().any(|t| is_word(t, "SELECT"));
        return defined.then(|| Kind::Schema(vec![Effect::Table { table }]));
    }
    if c.word("CREATE") {
        c.word("UNIQUE");
        if !c.word("INDEX") {
            return None;
        }
        c.words(&["IF", "NOT", "EXISTS"]);
        let index = c.name()?;
        if !c.word("ON") {
            return None;
        }
        let table = c.name()?;
        return c
            .punct('(')
            .then(|| Kind::Schema(vec![Effect::Index { table, index }]));
    }
    if c.words(&["ALTER", "TABLE"]) {
        let table = c.name()?;
        let mut effects = Vec::new();
        for clause in clauses(&tokens[c.at..]) {
            if let Some(effect) = alter(&table, clause)? {
                effects.push(effect);
            }
        }
        return (!effects.is_empty()).then_some(Kind::Schema(effects));
    }
    let data = ["INSERT", "UPDATE", "DELETE", "REPLACE"];
    if data.iter().any(|w| c.word(w)) {
        let text = words_of(tokens);
        return DATA
            .iter()
            .find(|d| d.version == version && begins_with(&text, d.begins))
            .map(|d| Kind::Data(d.done_when));
    }
    None
}

/// `tokens` cut at the commas outside parentheses (an `ALTER TABLE`'s clauses).
fn clauses<'t, 'a>(tokens: &'t [Token<'a>]) -> Vec<&'t [Token<'a>]> {
    let mut out = Vec::new();
    let (mut depth, mut from) = (0usize, 0);
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth = depth.saturating_sub(1),
            Token::Punct(',') if depth == 0 => {
                out.push(&tokens[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&tokens[from..]);
    out
}

/// The effect of one clause of `ALTER TABLE table`: `Some(None)` for a clause with none of its
/// own (`ALGORITHM =`, `LOCK =`), `None` for one that cannot be checked.
fn alter(table: &str, clause: &[Token<'_>]) -> Option<Option<Effect>> {
    let mut c = Cursor {
        tokens: clause,
        at: 0,
    };
    let table = table.to_owned();
    if c.words(&["ADD", "COLUMN"]) {
        c.words(&["IF", "NOT", "EXISTS"]);
        let column = c.name()?;
        return (!c.done()).then_some(Some(Effect::Column { table, column }));
    }
    if c.word("ADD") {
        c.word("UNIQUE");
        if !(c.word("INDEX") || c.word("KEY")) {
            return None;
        }
        c.words(&["IF", "NOT", "EXISTS"]);
        let index = c.name()?;
        return c.punct('(').then_some(Some(Effect::Index { table, index }));
    }
    if c.word("MODIFY") {
        c.word("COLUMN");
        c.words(&["IF", "EXISTS"]);
        let column = c.name()?;
        let Some(Token::Word(data_type)) = clause.get(c.at) else {
            return None;
        };
        c.at += 1;
        let column_type = if c.punct('(') {
            let close = clause[c.at..]
                .iter()
                .position(|t| *t == Token::Punct(')'))?;
            let args: Vec<&str> = clause[c.at..c.at + close]
                .iter()
                .map(|t| match t {
                    Token::Word(w) => Some(*w),
                    Token::Punct(',') => Some(","),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            Some(format!("{data_type}({})", args.concat()))
        } else {
            None
        };
        let nullable = !clause
            .windows(2)
            .any(|w| is_word(&w[0], "NOT") && is_word(&w[1], "NULL"));
        return Some(Some(Effect::ColumnType {
            table,
            column,
            data_type: data_type.to_ascii_lowercase(),
            column_type: column_type.map(|t| t.to_ascii_lowercase()),
            nullable,
        }));
    }
    if (c.word("ALGORITHM") || c.word("LOCK")) && c.punct('=') {
        c.name()?;
        return c.done().then_some(None);
    }
    None
}

/// Whether `token` is keyword `word`.
fn is_word(token: &Token<'_>, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.eq_ignore_ascii_case(word))
}

/// The words and punctuation of `tokens` separated by single spaces (literals as `'…'`).
fn words_of(tokens: &[Token<'_>]) -> String {
    tokens
        .iter()
        .map(|t| match t {
            Token::Word(w) => (*w).to_owned(),
            Token::Quoted(q) => format!("`{q}`"),
            Token::Str => "'…'".to_owned(),
            Token::Punct(c) => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `text` begins with the words of `begins`, case aside.
fn begins_with(text: &str, begins: &str) -> bool {
    let mut words = text.split(' ');
    begins
        .split(' ')
        .all(|b| words.next().is_some_and(|w| w.eq_ignore_ascii_case(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(version: i64, sql: &str) -> Vec<Kind> {
        plan(version, sql)
            .unwrap()
            .into_iter()
            .map(|s| s.kind)
            .collect()
    }

    #[test]
    fn statements_end_at_semicolons_outside_literals_names_and_comments() {
        let sql = "-- it's a comment; still\n# so is this; one\nSET SESSION a = 'x;y' ; /* c; */\n\
                   CREATE TABLE `odd;name` (c INT COMMENT 'it''s; fine') ;\n-- trailing; comment";
        let statements = split(sql).unwrap();
        let texts: Vec<&str> = statements.iter().map(|s| s.sql).collect();
        assert_eq!(
            texts,
            [
                "SET SESSION a = 'x;y'",
                "CREATE TABLE `odd;name` (c INT COMMENT 'it''s; fine')"
            ]
        );
        assert_eq!(statements[1].tokens[2], Token::Quoted("odd;name".into()));
        // `--` not followed by a space is two minus signs.
        let minus = split("UPDATE t SET a = 1--1;").unwrap();
        assert_eq!(minus.len(), 1);
        assert_eq!(minus[0].sql, "UPDATE t SET a = 1--1");
    }

    #[test]
    fn what_the_splitter_cannot_read_safely_is_refused() {
        for sql in [
            "SET SESSION a = 'x\\';y';",
            "/*!50100 CREATE TABLE t (a INT) */;",
            "/*M!100100 CREATE TABLE t (a INT) */;",
            "CREATE TABLE t (a INT COMMENT 'open",
            "CREATE TABLE t (a INT) /* open",
        ] {
            assert!(split(sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn schema_statements_name_what_they_leave() {
        assert_eq!(
            kinds(
                99,
                "CREATE TABLE IF NOT EXISTS t (a INT); CREATE UNIQUE INDEX i ON t (a); \
                 ALTER TABLE t ADD COLUMN b BIGINT NULL, ADD INDEX j (b), ALGORITHM = INPLACE; \
                 ALTER TABLE t MODIFY c VARCHAR(64) NOT NULL, MODIFY COLUMN d LONGTEXT;"
            ),
            [
                Kind::Schema(vec![Effect::Table { table: "t".into() }]),
                Kind::Schema(vec![Effect::Index {
                    table: "t".into(),
                    index: "i".into()
                }]),
                Kind::Schema(vec![
                    Effect::Column {
                        table: "t".into(),
                        column: "b".into()
                    },
                    Effect::Index {
                        table: "t".into(),
                        index: "j".into()
                    }
                ]),
                Kind::Schema(vec![
                    Effect::ColumnType {
                        table: "t".into(),
                        column: "c".into(),
                        data_type: "varchar".into(),
                        column_type: Some("varchar(64)".into()),
                        nullable: false
                    },
                    Effect::ColumnType {
                        table: "t".into(),
                        column: "d".into(),
                        data_type: "longtext".into(),
                        column_type: None,
                        nullable: true
                    }
                ]),
            ]
        );
    }

    #[test]
    fn statements_whose_effect_cannot_be_found_are_refused() {
        for sql in [
            // Data statements not listed for their version.
            "INSERT INTO t VALUES (1)",
            "UPDATE inbox_messages JOIN x ON 1 SET a = 1",
            // A procedure (cut at its inner semicolons), a trigger, a drop, a rename.
            "CREATE PROCEDURE p() BEGIN INSERT INTO t VALUES (1); END",
            "CREATE TRIGGER g BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1",
            "DROP TABLE t",
            "ALTER TABLE t RENAME TO u",
            "ALTER TABLE t ADD COLUMN b INT, DROP COLUMN c",
            // A table elsewhere, a copy of another, a global setting.
            "CREATE TABLE other.t (a INT)",
            "CREATE TABLE t LIKE u",
            "CREATE TABLE t (a INT) SELECT a FROM u",
            "SET GLOBAL a = 1",
            "SET SESSION a = 1, GLOBAL b = 2",
        ] {
            assert!(plan(12, sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn every_statement_of_every_mysql_migration_can_be_checked() {
        let migrator = <sqlx::MySql as Dialect>::migrator();
        for m in migrator.iter() {
            let steps =
                plan(m.version, &m.sql).unwrap_or_else(|e| panic!("migration {}: {e}", m.version));
            assert!(!steps.is_empty(), "migration {}", m.version);
        }
        for d in DATA {
            let m = migrator.iter().find(|m| m.version == d.version).unwrap();
            let matching = split(&m.sql)
                .unwrap()
                .iter()
                .filter(|s| begins_with(&words_of(&s.tokens), d.begins))
                .count();
            assert_eq!(matching, 1, "{} {}", d.version, d.begins);
        }
        let kinds_of = |version: i64| {
            let m = migrator.iter().find(|m| m.version == version).unwrap();
            kinds(version, &m.sql)
        };
        let inbox = |what: Effect| Kind::Schema(vec![what]);
        assert_eq!(
            kinds_of(10),
            [
                Kind::Session,
                inbox(Effect::Table {
                    table: "inbox_positions".into()
                }),
                Kind::Data(DATA[4].done_when),
                inbox(Effect::Column {
                    table: "inbox_messages".into(),
                    column: "position".into()
                }),
            ]
        );
        assert_eq!(
            kinds_of(11),
            [
                Kind::Session,
                Kind::Data(DATA[5].done_when),
                inbox(Effect::Index {
                    table: "inbox_messages".into(),
                    index: "inbox_messages_by_position".into()
                }),
                inbox(Effect::Index {
                    table: "inbox_messages".into(),
                    index: "inbox_messages_unplaced".into()
                }),
            ]
        );
        let longtext = |column: &str| Effect::ColumnType {
            table: "campaign_outcomes".into(),
            column: column.into(),
            data_type: "longtext".into(),
            column_type: None,
            nullable: false,
        };
        assert_eq!(
            kinds_of(8),
            [Kind::Schema(vec![longtext("entrants"), longtext("awards")])]
        );
    }

    #[test]
    fn attempts_begin_until_the_bound_after_the_first_failure() {
        let mut none = Waits::new(LockRetry {
            pause: Duration::from_millis(1),
            give_up_after: Duration::ZERO,
        });
        assert!(!none.again());
        let mut some = Waits::new(LockRetry::STANDARD);
        assert!(some.again());
        some.first = Some(Instant::now() - Duration::from_secs(111));
        assert!(!some.again());
        assert_eq!(some.attempts, 2);
    }
}
