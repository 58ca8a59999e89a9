//! [`Statement`]: SQL text written piece by piece with the values it binds, placeholders in the
//! backend's form (`?`, or `$1`.. on PostgreSQL).
//!
//! sqlx's `QueryBuilder` lends its query from a borrow of itself; code generic over the driver
//! cannot express that for drivers whose arguments carry a lifetime (SQLite's). A statement here
//! is taken apart instead ([`Statement::finish`]) and run with `sqlx::query_with`.

use liveops_core::PortError;
use sqlx::{Arguments, Database, Encode, Type};

/// A statement being written.
pub(crate) struct Statement<'q, DB: Database> {
    sql: String,
    args: DB::Arguments<'q>,
    error: Option<String>,
}

/// One row of a `VALUES` list being written; see [`Statement::values`].
pub(crate) struct Tuple<'s, 'q, DB: Database> {
    stmt: &'s mut Statement<'q, DB>,
    first: bool,
}

impl<'q, DB: Database> Statement<'q, DB> {
    /// Starts with `sql`.
    pub(crate) fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            args: Default::default(),
            error: None,
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder and binds `value` to it.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + Encode<'q, DB> + Type<DB>,
    {
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert_with(|| e.to_string());
        }
        // Writing to a String cannot fail.
        let _ = self.args.format_placeholder(&mut self.sql);
        self
    }

    /// Appends ` IN (?, ?, ..)` binding every item.
    pub(crate) fn in_list<T>(&mut self, items: impl IntoIterator<Item = T>) -> &mut Self
    where
        T: 'q + Encode<'q, DB> + Type<DB>,
    {
        self.sql.push_str(" IN (");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.bind(item);
        }
        self.sql.push(')');
        self
    }

    /// Appends `VALUES (..), (..)`, one row per item; `row` binds the row's values in order.
    pub(crate) fn values<I>(
        &mut self,
        rows: I,
        mut row: impl FnMut(&mut Tuple<'_, 'q, DB>, I::Item),
    ) -> &mut Self
    where
        I: IntoIterator,
    {
        self.sql.push_str("VALUES ");
        for (i, item) in rows.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.sql.push('(');
            row(
                &mut Tuple {
                    stmt: &mut *self,
                    first: true,
                },
                item,
            );
            self.sql.push(')');
        }
        self
    }

    /// The SQL and its arguments, for `sqlx::query_with(&sql, args)`; fails if a value could
    /// not be encoded.
    pub(crate) fn finish(self) -> Result<(String, DB::Arguments<'q>), PortError> {
        match self.error {
            None => Ok((self.sql, self.args)),
            Some(e) => Err(PortError::Unavailable(format!(
                "{}: cannot encode a value: {e}",
                DB::NAME
            ))),
        }
    }
}

impl<'q, DB: Database> Tuple<'_, 'q, DB> {
    /// Binds the row's next value.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + Encode<'q, DB> + Type<DB>,
    {
        if !self.first {
            self.stmt.sql.push_str(", ");
        }
        self.first = false;
        self.stmt.bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Sqlite;

    #[test]
    fn writes_values_and_in_lists_with_one_placeholder_per_value() {
        let mut s = Statement::<Sqlite>::new("INSERT INTO t (a, b) ");
        s.values([(1_i64, "x"), (2, "y")], |row, (a, b)| {
            row.bind(a).bind(b);
        })
        .push(" ON CONFLICT (a) DO NOTHING");
        let (sql, args) = s.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            sql,
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(args.len(), 4);

        let mut s = Statement::<Sqlite>::new("SELECT a FROM t WHERE b = ");
        s.bind("x").push(" AND a").in_list([1_i64, 2, 3]);
        let (sql, args) = s.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sql, "SELECT a FROM t WHERE b = ? AND a IN (?, ?, ?)");
        assert_eq!(args.len(), 4);
    }
}
