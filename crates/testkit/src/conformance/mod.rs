//! Conformance suites: one per port, run unchanged against every adapter of that port. An adapter
//! is done when it passes its suite. Each suite panics (like a test assertion) on a violation.

pub mod bus;
pub mod bus_faults;
pub mod caps;
pub mod hot;
pub mod live;
pub mod rank;
pub mod stores;

use liveops_core::ports::PortResult;

/// The value of a call that must succeed; a failure panics naming the call.
fn ok<T>(result: PortResult<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what} failed: {err}"),
    }
}

/// A suffix unique to this run (letters and digits: it fits ids, names and periods).
fn suffix() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}
