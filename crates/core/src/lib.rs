//! LiveOps core: domain types, validation, signing, receipts, windows, scoring and the port
//! traits. No I/O: everything here is pure and testable without servers.

#[cfg(feature = "consumer")]
pub mod consume;
pub mod event;
pub mod ports;
pub mod problem;
pub mod scoring;
pub mod signing;
pub mod window;

pub use event::{Envelope, Event, EventType, InvalidEvent, Limits, Payload, PlayerId};
pub use ports::{Board, Bus, HotState, PortError, PortResult, RankEntry, RankStore, Repository};
pub use problem::Problem;
pub use scoring::{LevelCurve, Welford};
pub use signing::{AuthError, Keyring, Receipt, Verification};
pub use window::{Calendar, Period, Window};

/// Current server time in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
