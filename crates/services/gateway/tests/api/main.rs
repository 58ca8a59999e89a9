//! The gateway end to end over its router (no socket) and the in-memory adapters.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod batch;
mod events;
mod helpers;
mod properties;
