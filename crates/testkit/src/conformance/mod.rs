//! Conformance suites: one per port, run unchanged against every adapter of that port. An adapter
//! is done when it passes its suite. Each suite panics (like a test assertion) on a violation.

pub mod bus;
pub mod bus_faults;
pub mod hot;
pub mod live;
pub mod rank;
pub mod stores;
