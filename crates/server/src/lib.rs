//! The `liveops` binary's library: configuration, the module table, the wiring of adapters,
//! telemetry and the CLI commands, kept in a library so end-to-end tests can start the real
//! application in-process.

pub mod app;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data_lock;
pub mod dead_letters;
pub mod edge;
pub mod key_files;
pub mod live_cli;
pub mod modules;
pub mod ops;
pub mod peers;
pub mod send;
pub mod supervisor;
pub mod telemetry;
pub mod wiring;

pub use app::Application;
pub use config::{RawConfig, Settings};
pub use modules::Table;
