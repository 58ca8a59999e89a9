//! The `liveops` binary's library: configuration, telemetry, wiring and the CLI commands, kept in
//! a library so end-to-end tests can start the real application in-process.

pub mod app;
pub mod bench;
pub mod config;
pub mod send;
pub mod telemetry;

pub use app::Application;
pub use config::{RawConfig, Settings};
