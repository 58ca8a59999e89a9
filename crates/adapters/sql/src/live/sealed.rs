//! Secrets at rest in the rows (ADR 0032): what each sealed value is bound to, opening them, and
//! the upkeep that seals again what the current settings want sealed otherwise.

use liveops_core::sealing::{Sealer, Stored};
use liveops_core::{PortError, PortResult};

use super::sql_impl;
use crate::dialect::Text;

/// What the AEAD binds an API key's sealed secret to: the key.
pub(crate) fn api_key_row(key_id: &str) -> String {
    format!("api_keys.secret:{key_id}")
}

/// What the AEAD binds a webhook's sealed secret to: the webhook.
pub(crate) fn webhook_row(id: &str) -> String {
    format!("webhooks.secret:{id}")
}

/// What the AEAD binds a campaign's sealed seed to: the campaign.
pub(crate) fn seed_row(id: &str) -> String {
    format!("campaigns.seed:{id}")
}

/// What the AEAD binds a keyed write's sealed answer to: its operator and key.
pub(crate) fn answer_row(operator_id: &str, idem_key: &str) -> String {
    format!("operator_requests.answer:{operator_id}:{idem_key}")
}

/// The clear value of a secret `row` stores as `text`, sealed with `key` (`None`: in the
/// clear); a value that does not open is `Corrupt`, naming the row and never the value.
pub(crate) fn opened(
    sealer: &Sealer,
    row: &str,
    text: Text,
    key: Option<Text>,
) -> PortResult<String> {
    sealer
        .open(row, &text.0, key.as_ref().map(|k| k.0.as_str()))
        .map_err(|e| PortError::Corrupt(format!("{row}: {e}")))
}

/// `clear` as row `row` stores it (sealed, or in the clear without a sealing key).
pub(crate) fn sealed(sealer: &Sealer, row: &str, clear: &str) -> PortResult<Stored> {
    sealer
        .seal(row, clear)
        .map_err(|e| PortError::Corrupt(format!("{row}: {e}")))
}

/// Counts and logs a value of `table` that did not open and was passed over.
fn unreadable(table: &'static str, e: &PortError) {
    metrics::counter!("secrets_unreadable_total", "table" => table).increment(1);
    tracing::error!(table, error = %e, "a sealed secret does not open: passed over");
}

/// [`opened`], or `None` for a value that does not open, counted and logged as unreadable in
/// `table`: what reads that must go on without it (the other keys, campaigns, webhooks) take.
pub(crate) fn opened_or_passed_over(
    sealer: &Sealer,
    table: &'static str,
    row: &str,
    text: Text,
    key: Option<Text>,
) -> Option<String> {
    opened(sealer, row, text, key)
        .inspect_err(|e| unreadable(table, e))
        .ok()
}

/// How a row is named for the AEAD, from its key column or columns.
#[derive(Clone, Copy)]
enum Ids {
    /// Keyed by one column: its name, and the row's name from its value.
    One(&'static str, fn(&str) -> String),
    /// Keyed by two columns: their names, and the row's name from their values.
    Two(&'static str, &'static str, fn(&str, &str) -> String),
}

/// Where one kind of secret lives: its table, its key columns, the value's column and its key's.
struct Column {
    table: &'static str,
    ids: Ids,
    value: &'static str,
    key: &'static str,
}

/// Every sealed column.
const COLUMNS: [Column; 4] = [
    Column::of(
        "api_keys",
        Ids::One("key_id", api_key_row),
        "secret",
        "secret_key",
    ),
    Column::of(
        "webhooks",
        Ids::One("id", webhook_row),
        "secret",
        "secret_key",
    ),
    Column::of("campaigns", Ids::One("id", seed_row), "seed", "seed_key"),
    Column::of(
        "operator_requests",
        Ids::Two("operator_id", "idem_key", answer_row),
        "answer",
        "answer_key",
    ),
];

impl Column {
    const fn of(table: &'static str, ids: Ids, value: &'static str, key: &'static str) -> Self {
        Self {
            table,
            ids,
            value,
            key,
        }
    }

    /// The name of the row keyed `(a, b)` (`b` unused for a table keyed by one column).
    fn row(&self, a: &str, b: &str) -> String {
        match self.ids {
            Ids::One(_, row) => row(a),
            Ids::Two(_, _, row) => row(a, b),
        }
    }

    /// Whether the table is keyed by two columns.
    fn two(&self) -> bool {
        matches!(self.ids, Ids::Two(..))
    }

    /// The rows whose value is not as `target` wants (`COALESCE(key, '') <> target`), with
    /// `tail` after the condition.
    fn stale(&self, what: &str, tail: &str) -> String {
        format!(
            "SELECT {what} FROM {} WHERE {} IS NOT NULL AND COALESCE({}, '') <> ?{tail}",
            self.table, self.value, self.key
        )
    }

    /// A page of stale rows after a row, in key order: bind the target, the last row's first
    /// key column (for a table keyed by two: that column again, then the second), then the
    /// page's size.
    fn page(&self) -> String {
        let (what, after, order) = match self.ids {
            // The first column again stands in for the missing second.
            Ids::One(a, _) => (format!("{a}, {a}"), format!("{a} > ?"), a.to_owned()),
            Ids::Two(a, b, _) => (
                format!("{a}, {b}"),
                format!("({a} > ? OR ({a} = ? AND {b} > ?))"),
                format!("{a}, {b}"),
            ),
        };
        self.stale(
            &format!("{what}, {}, {}", self.value, self.key),
            &format!(" AND {after} ORDER BY {order} LIMIT ?"),
        )
    }

    /// Writes a row's value and key if the value is still what was read: bind the value, the
    /// key, the row's key column(s) and the value read.
    fn update(&self) -> String {
        let (a, second) = match self.ids {
            Ids::One(a, _) => (a, String::new()),
            Ids::Two(a, b, _) => (a, format!(" AND {b} = ?")),
        };
        format!(
            "UPDATE {} SET {} = ?, {} = ? WHERE {a} = ?{second} AND {} = ?",
            self.table, self.value, self.key, self.value
        )
    }
}

/// Each column's statements: a page of stale rows, the update of one, the count of stale rows.
/// Built once (the dialects' statements are `'static`).
fn statements(i: usize) -> &'static (String, String, String) {
    static SQL: std::sync::OnceLock<Vec<(String, String, String)>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        COLUMNS
            .iter()
            .map(|c| (c.page(), c.update(), c.stale("COUNT(*)", "")))
            .collect()
    });
    &all[i]
}

/// Rows read per page while sealing again.
const PAGE: i64 = 100;

/// What one round of [`crate::SqlRepository::reseal`] did to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// The table.
    pub table: &'static str,
    /// Values written again as the settings want them.
    pub resealed: u64,
    /// Values that did not open (passed over).
    pub unreadable: u64,
    /// Values still not as the settings want, after the round (`secrets_stale`).
    pub stale: u64,
}

sql_impl! {
    /// Seals again, table by table, up to `most` values per table that are in the clear or
    /// under a key other than the current one (with sealing off: that are sealed, written back
    /// in the clear). Each is written only if it is still what was read, so a write meanwhile
    /// stands. Counts `secrets_resealed_total{table}`, `secrets_unreadable_total{table}` and
    /// sets `secrets_stale{table}`; a table that fails leaves the others to their round, which
    /// then answers its error. Nothing to do without keys.
    pub async fn reseal(&self, most: u64) -> PortResult<Vec<Resealed>> {
        // The keys as they stand now, for the whole round.
        let sealer = self.sealer.load();
        if !sealer.opens() {
            return Ok(Vec::new());
        }
        let target = sealer.current().unwrap_or_default().to_owned();
        let (mut report, mut failed) = (Vec::with_capacity(COLUMNS.len()), None);
        // A table that fails does not keep the others from their round; the round then fails.
        for (i, column) in COLUMNS.iter().enumerate() {
            match self.reseal_column(&sealer, i, &target, most).await {
                Ok(done) => {
                    metrics::counter!("secrets_resealed_total", "table" => column.table)
                        .increment(done.resealed);
                    metrics::gauge!("secrets_stale", "table" => column.table)
                        .set(done.stale as f64);
                    report.push(done);
                }
                Err(e) => {
                    tracing::warn!(table = column.table, error = %e, "sealing secrets again failed");
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(report), Err)
    }

    /// [`Self::reseal`] for one column: pages along its key columns from the start, so values
    /// that do not open do not hold back those after them.
    async fn reseal_column(
        &self,
        sealer: &Sealer,
        i: usize,
        target: &str,
        most: u64,
    ) -> PortResult<Resealed> {
        let c = &COLUMNS[i];
        let two = c.two();
        let (page, update, count) = statements(i);
        let (page_sql, update_sql) = (DB::placeholders(page), DB::placeholders(update));
        let mut done = Resealed { table: c.table, ..Resealed::default() };
        let mut after = (String::new(), String::new());
        while done.resealed < most {
            let mut query = sqlx::query_as(&page_sql).bind(target).bind(after.0.as_str());
            if two {
                query = query.bind(after.0.as_str()).bind(after.1.as_str());
            }
            let query = query.bind(PAGE);
            let rows: Vec<(Text, Text, Text, Option<Text>)> =
                self.all_rows("reseal", query, Ok).await?;
            let last = rows.len() < usize::try_from(PAGE).unwrap_or(usize::MAX);
            for (a, b, text, key) in rows {
                let row = c.row(&a.0, &b.0);
                let was = text.0.clone();
                match opened(sealer, &row, text, key) {
                    Ok(clear) => {
                        let stored = sealed(sealer, &row, &clear)?;
                        let mut update = sqlx::query(&update_sql)
                            .bind(stored.text.as_str())
                            .bind(stored.key_id.as_deref())
                            .bind(a.0.as_str());
                        if two {
                            update = update.bind(b.0.as_str());
                        }
                        let update = update.bind(was.as_str());
                        // Only if the value is still what was read: a write meanwhile stands.
                        done.resealed += self.write_in_turn("reseal", update).await?;
                    }
                    Err(e) => {
                        unreadable(c.table, &e);
                        done.unreadable += 1;
                    }
                }
                after = (a.0, b.0);
                if done.resealed >= most {
                    break;
                }
            }
            if last {
                break;
            }
        }
        let count_sql = DB::placeholders(count);
        let count = sqlx::query_as(&count_sql).bind(target);
        let stale = self.optional_row("secrets_stale", count, |(n,): (i64,)| Ok(n)).await?;
        done.stale = stale.map_or(0, |n| u64::try_from(n).unwrap_or(0));
        Ok(done)
    }
}
