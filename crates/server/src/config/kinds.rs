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

/// Where the process runs: picks the bus when `BUS_KIND` is unset, and on Azure where secret
/// files are mounted.
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
    /// AWS SQS FIFO queues, one per consumer group (`AWS_REGION`, `SQS_QUEUE_PREFIX`).
    Sqs,
    /// Azure Service Bus over AMQP 1.0, one subscription per consumer group (`BUS_CONN`).
    #[value(name = "servicebus")]
    ServiceBus,
}
