//! The settings that pick among a few named choices.

use clap::ValueEnum;

/// Deployment environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Env {
    /// A developer's machine: a missing secret is generated.
    Dev,
    /// Pre-production.
    Staging,
    /// Production.
    Prod,
}

/// Where the process runs (informational; selects nothing yet beyond labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cloud {
    /// A laptop or VM.
    Local,
    /// Microsoft Azure.
    Azure,
    /// Amazon Web Services.
    Aws,
}

/// Which bus backs the event flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BusKind {
    /// Durable local log in a SQLite file (the embedded default).
    Sqlite,
    /// In memory; tests only: unconsumed events are lost on a crash.
    Inmem,
    /// Redis Streams (`BUS_CONN`, default `REDIS_URL`), partitioned by player.
    Redis,
}
