//! The Redis adapter: hot state, the rank store (single node or Redis Cluster) and the Streams
//! bus.

pub mod bus;
pub mod conn;
pub mod hot;
pub mod rank;
mod replicas;

pub use conn::{RedisConn, RedisHandle};
pub use hot::{ClaimNonce, RedisHotState};
pub use rank::RedisRankStore;
