//! SQL adapters (sqlx): the `Repository` and the durable local bus on SQLite.

pub mod bus;
pub mod repository;
mod sqlite;

pub use bus::{BusOptions, SqliteBus};
pub use repository::SqlRepository;
