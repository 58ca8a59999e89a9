//! LiveOps core: domain types, validation, signing, receipts, windows, scoring, the port traits
//! and the per-service store traits. No I/O: everything here is pure and testable without servers.

pub mod draw;
pub mod event;
pub mod event_schema;
pub mod ports;
pub mod scoring;
pub mod signing;
pub mod stores;
pub mod time;
pub mod window;

pub use event::{Envelope, Event, EventType, InvalidEvent, Limits, Payload, PlayerId};
pub use ports::{Board, Bus, Health, PortError, PortResult, RankEntry, RankStore};
pub use scoring::{LevelCurve, Welford};
pub use signing::{AuthError, KeyStore, Keyring, Receipt, Verification};
pub use window::{Calendar, Period, Window};

/// Current server time in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
