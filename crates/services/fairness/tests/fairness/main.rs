//! The fairness service end to end: its consumer over a real in-memory bus, in-memory hot state
//! and a SQLite repository in a temporary directory, and its routes over `oneshot`.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod consumer;
mod helpers;
mod routes;
