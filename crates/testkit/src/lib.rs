//! What LiveOps's tests share, used as a dev-dependency only: the conformance suite of every port
//! (an adapter is done when it passes its port's suite), a bus that fails on demand, the
//! reference events, typed bus events, arbitrary JSON for property tests, a router caller, a
//! `redis-server` of a test's own and an Azure Storage emulator to run against.

#![allow(clippy::unwrap_used)] // test support may unwrap

pub mod azurite;
pub mod conformance;
pub mod fixtures;
pub mod flaky;
pub mod json;
pub mod logs;
pub mod operators;
pub mod received;
pub mod redis_server;
pub mod relay;
pub mod served;

/// Runs `cmd` to the end and asserts it succeeded (its stderr and stdout tell why not).
pub fn succeed(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}
