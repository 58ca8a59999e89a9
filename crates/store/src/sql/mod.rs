//! SQL adapters (sqlx): the `Repository` and the durable local bus on SQLite.
