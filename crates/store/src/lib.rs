//! LiveOps port adapters: one folder per backend. The binary picks which adapter backs each port;
//! services never see these types, only the traits in `liveops-core`.

pub mod conformance;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sql;
