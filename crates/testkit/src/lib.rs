//! What LiveOps's tests share, used as a dev-dependency only: the conformance suite of every port
//! (an adapter is done when it passes its port's suite), a bus that fails on demand, the
//! reference events, typed bus events and a router caller.

#![allow(clippy::unwrap_used)] // test support may unwrap

pub mod conformance;
pub mod fixtures;
pub mod flaky;
pub mod received;
pub mod served;
